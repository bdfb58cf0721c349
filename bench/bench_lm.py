"""How fast is one generation of the TinyStories GA, and how close is it to what it must cost?

All figures come from one run on one device, so their ratios are meaningful:

1. the device's ceilings (bench/ceilings.py): a large square matmul in the run's precision, and
   the rate of exponentials; with the work's FLOPs and exponentials they give each model's
   floor, the least a generation can take, and the fraction of it the engine reaches;
2. the unavoidable part: the tied-embedding logits GEMM + cross-entropy for exactly the tokens
   the engine scores, for all P individuals — the engine's own code for it, fed constant hidden
   states (`Transformer.fitness_from_hidden`) — no model can skip it; and the same as torch's
   bmm + cross_entropy (what it costs without the fused loss kernel);
3. the engine's whole population forward + loss for each model (paper dense/factorized, rank-1,
   small): seconds per generation, achieved GFLOP/s, fraction of the ceiling, ratio to (2);
4. the same models as a plain `torch.nn.Module` evaluated individual by individual — what one
   writes first — and the engine's speed-up over it.

Usage: python bench/bench_lm.py [--population 32 --batch 16 --seq-len 64 --repeats 3]
       python bench/bench_lm.py --paper-scale     # P=512, 1024 sequences (use on a GPU)
       python bench/bench_lm.py --min-length 16   # stories of 16..64 tokens, in length buckets
       python bench/bench_lm.py --median-length 32 --bucket-padding -1  # skewed, buckets of 64
       python bench/bench_lm.py --device cuda --config '{"ATTENTION_EXP2": 1}'  # a GPU lever
Tokens are random ids (the cost does not depend on their values); by default every sequence has
full length, with --min-length lengths are uniform in [min, T], with --median-length log-normal
(σ 0.5, clipped to [min, T]: a long tail, as story lengths have), and the engine scores them in
length buckets as the language task does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neuroevo.data.tinystories import PAD_ID, EvalBatch
from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.layers import Linear
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import PRECISIONS, ModelConfig
from neuroevo.tasks.language import population_chunk, score_population, scorer

from ceilings import exp_rate, matmul_ceiling  # bench/, beside this script
from launch_constants import PRECISIONS as KERNEL_PRECISIONS, configured
from timing import interleaved_medians

VOCAB = 2051
MODELS = {
    "paper dense": (EncodingConfig("dense"), ModelConfig()),
    "paper factorized r4": (EncodingConfig("factorized", 4, {"embedding": 32}), ModelConfig()),
    "paper factorized r1": (EncodingConfig("factorized", 1, {"embedding": 4}), ModelConfig()),
    "small dense": (EncodingConfig("dense"), ModelConfig(hidden=4, ff=16)),
}


@dataclass
class Setting:
    population: int
    batch: int
    seq_len: int
    device: torch.device
    pop_chunk: int
    pop_tile: int | None  # individuals per logits tile (None: the whole chunk)
    token_chunk: int
    repeats: int
    precision: str = "fp32"  # task.precision: fp32, tf32, bf16 or tf32x3
    compiled: bool = False  # task.compile
    kernel_config: dict | None = None  # launch constants of the Triton kernels set by --config

    def label(self) -> str:
        config = f" kernels {json.dumps(self.kernel_config)}" if self.kernel_config else ""
        return (f"P={self.population} B={self.batch} T={self.seq_len} device={_device_name(self.device)} "
                f"{self.precision}{' compiled' if self.compiled else ''}{config} "
                f"torch {torch.__version__}")


def main() -> None:
    args = _arguments()
    with configured(args.config, KERNEL_PRECISIONS[args.precision]):
        run(args)


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.paper_scale:
        args.population, args.batch, args.seq_len = 512, 1024, args.seq_len or 256
    on_gpu = device.type == "cuda"  # the engine's defaults (tasks/language.py)
    setting = Setting(args.population, args.batch, args.seq_len or 64, device, args.pop_chunk,
                      args.pop_tile or (None if on_gpu else 4), args.token_chunk, args.repeats,
                      args.precision, args.compile, args.config)
    if device.type == "cpu":
        cpu_kernels.retain_freed_memory()  # as `neuroevo run` does on CPU
    kernels = ("fused CPU kernels " + ("on" if cpu_kernels.library() is not None else "off")
               if device.type == "cpu" else
               "Triton kernels " + ("on" if gpu_kernels.kernels() is not None else "off"))
    print(f"# bench_lm — {setting.label()}, pop_chunk={setting.pop_chunk or 'engine rule'}, "
          f"pop_tile={setting.pop_tile or 'chunk'}, token_chunk={setting.token_chunk}, "
          f"{kernels}; median of {setting.repeats} interleaved repeats after 1 warm-up")
    flops_per_second, size = matmul_ceiling(device, setting.precision, setting.repeats)
    ceiling = flops_per_second / 1e9
    exps_per_second = exp_rate(device, setting.repeats)
    print(f"{setting.precision} GEMM ceiling ({_device_name(device)}, {size}³ matmul): "
          f"{ceiling:.1f} GFLOP/s; exponentials: {exps_per_second / 1e9:.1f} G/s")

    batch = _token_batch(setting, args.min_length, args.median_length)
    padding = args.bucket_padding if args.bucket_padding >= 0 else None
    buckets = [EvalBatch(b.tokens.to(device), b.lengths.to(device))
               for b in batch.buckets(args.length_bucket, padding)]
    computed = sum(b.tokens.numel() for b in buckets)
    print(f"sequences of {int(batch.lengths.min())}–{int(batch.lengths.max())} tokens (median "
          f"{int(batch.lengths.median())}): {int(batch.lengths.sum()):,} real tokens per "
          f"individual, {computed:,} computed in {len(buckets)} length bucket(s) of ≤ "
          f"{args.length_bucket or setting.batch} sequences (padding "
          f"{computed / int(batch.lengths.sum()) - 1:.1%} of the real tokens; budget "
          f"{'none' if padding is None or not args.length_bucket else f'{padding:.0%}'})")
    tokens, lengths = batch.tokens.to(device), batch.lengths.to(device)
    for name, (encoding, config) in MODELS.items():
        if name not in args.models:
            continue
        model = Transformer(config, encoding, VOCAB)
        theta = initial_weights(model.layout, list(range(setting.population)), device)
        levers = (setting.precision != "fp32" or setting.compiled
                  or (on_gpu and gpu_kernels.kernels() is not None))
        deviation = fitness_deviation(model, theta, buckets, setting) if levers else None
        work = [unavoidable_work(model, theta, buckets, setting),
                unavoidable_work(model, theta, buckets, setting, torch_ops=True),
                engine_work(model, theta, buckets, setting)]
        if not args.skip_loop:
            work.append(plain_loop_work(model, theta, tokens, lengths, encoding, config, setting))
        unavoidable, as_torch_ops, whole, *loop = interleaved_medians(work, device, setting.repeats)
        flops = forward_flops(model, setting.population, batch.lengths)
        floors = (flops / ceiling / 1e9,
                  forward_exponentials(model, setting.population, batch.lengths) / exps_per_second)
        chunks = sorted({_pop_chunk(config, b, setting) for b in buckets})
        line = (f"{name:>20} | {setting.label()}, pop_chunk={'/'.join(map(str, chunks))} | "
                f"engine {whole:.4f} s/gen, "
                f"{flops / whole / 1e9:.1f} GFLOP/s ({flops / whole / 1e9 / ceiling:.0%} of ceiling)"
                f" | floor {max(floors) * 1e3:.2f} ms (matmul {floors[0] * 1e3:.2f}, exp "
                f"{floors[1] * 1e3:.2f}): engine at {max(floors) / whole:.1%} of it"
                f" | logits+CE alone {unavoidable:.4f} s (as torch ops {as_torch_ops:.4f} setting)"
                f" | engine / unavoidable {whole / unavoidable:.2f}×")
        if loop:
            line += (f" | plain nn.Module loop {loop[0]:.4f} s/gen | speed-up "
                     f"{loop[0] / whole:.2f}×")
        if deviation is not None:
            line += f" | max |Δ fitness| vs fp32 eager torch ops {deviation:.2e} nats"
        if args.paper_scale:  # issue #6 goal 2: the whole run per seed
            line += f" | 300 generations ≈ {300 * whole / 60:.1f} min per seed"
        print(line, flush=True)
        if args.profile:
            print_profile(name, work[2], device)


def print_profile(name: str, work: Callable[[], None], device: torch.device,
                  top: int = 12) -> None:
    """One more generation under torch.profiler: the `top` kernels (CUDA: device time; CPU: ops'
    own time) with their calls, total and share of the profiled time, so a lever can be aimed
    at what costs most (the timing line above is without the profiler's overhead)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        work()
        if cuda:
            torch.cuda.synchronize(device)

    events = profiled_events(prof.key_averages(), cuda)
    total = sum(own_time(e, cuda) for e in events)
    what = "kernel time" if cuda else "torch ops' time (not the fused C kernels': ctypes calls)"
    print(f"{'':>20}   profile of one generation, {name}: {total / 1e3:.1f} ms of {what}")
    for event in sorted(events, key=lambda e: own_time(e, cuda), reverse=True)[:top]:
        label = event.key if len(event.key) <= 60 else event.key[:57] + "..."
        print(f"{'':>20}   {label:<60} {event.count:>6} calls "
              f"{own_time(event, cuda) / 1e3:9.2f} ms {own_time(event, cuda) / total:6.1%}")


def profiled_events(events: list, cuda: bool) -> list:
    """The events whose own times add up to the profiled time: on CUDA the kernels alone (a
    torch op's device time is its kernels', which appear as events of their own, while the
    Triton kernels appear only as kernels: counting both double-counted torch's ops); on CPU
    the ops, by their own time."""
    return [e for e in events if own_time(e, cuda) > 0
            and (not cuda or e.device_type == torch.autograd.DeviceType.CUDA)]


def own_time(event, cuda: bool) -> float:
    """An event's own time in µs: device time on CUDA (torch ≥ 2.4 says "device", older
    releases "cuda"), else CPU time."""
    if not cuda:
        return event.self_cpu_time_total
    return getattr(event, "self_device_time_total", None) or getattr(
        event, "self_cuda_time_total", 0.0)


def unavoidable_work(model: Transformer, theta: torch.Tensor, buckets: list[EvalBatch],
                     s: Setting, torch_ops: bool = False) -> Callable[[], None]:
    """The logits GEMM + cross-entropy over the scored tokens and nothing else: the engine's own
    `fitness_from_hidden`, same chunks, buckets and tiles, fed constant hidden states instead of
    the transformer's output (for a factorized embedding the logits GEMM is (h·A)·Bᵀ). With
    `torch_ops`, as torch's bmm and cross_entropy in tiles instead of the fused loss kernel (run
    with autograd on, which switches the kernels off; nothing requires a gradient, so it records
    nothing)."""
    largest = max(min(_pop_chunk(model.cfg, b, s), s.population) * b.tokens.numel()
                  for b in buckets)
    # one buffer, viewed per chunk and bucket (a tensor for each would take GBs on a GPU), made
    # up front: no state for torch.compile to guard
    ones = torch.ones(largest * model.cfg.hidden, device=theta.device)

    def logits_and_ce(model: Transformer, p: dict, tokens: torch.Tensor, lengths: torch.Tensor,
                      token_chunk: int, pop_tile: int | None) -> torch.Tensor:
        pop = next(iter(p.values())).shape[0]
        h = ones[: pop * tokens.numel() * model.cfg.hidden].view(pop, tokens.numel(), -1)
        return model.fitness_from_hidden(p, h, tokens, lengths, token_chunk, pop_tile)

    score = scorer(s.precision, s.compiled, s.device, method=logits_and_ce)

    def run() -> None:
        with torch.set_grad_enabled(torch_ops):
            score_population(model, theta, buckets, s.pop_chunk, s.token_chunk, s.pop_tile,
                             score=score)

    return run


def engine_work(model: Transformer, theta: torch.Tensor, buckets: list[EvalBatch],
                s: Setting) -> Callable[[], None]:
    """What the language task does per generation (`score_population`)."""
    score = scorer(s.precision, s.compiled, s.device)

    @torch.no_grad()
    def run() -> None:
        score_population(model, theta, buckets, s.pop_chunk, s.token_chunk, s.pop_tile,
                         score=score)

    return run


@torch.no_grad()
def fitness_deviation(model: Transformer, theta: torch.Tensor, buckets: list[EvalBatch],
                      s: Setting) -> float:
    """Largest |fitness − reference| over the population under the setting's levers; the
    reference is fp32 eager, on CUDA with torch's ops rather than the Triton kernels."""
    def fitness(precision: str, compiled: bool) -> torch.Tensor:
        return score_population(model, theta, buckets, s.pop_chunk, s.token_chunk, s.pop_tile,
                                score=scorer(precision, compiled, s.device))

    with gpu_kernels.switched_off():
        reference = fitness("fp32", False)
    return float((fitness(s.precision, s.compiled) - reference).abs().max())


def _pop_chunk(config: ModelConfig, bucket: EvalBatch, s: Setting) -> int:
    """Individuals per forward call for `bucket`: --pop-chunk, else the engine's rule."""
    return s.pop_chunk or population_chunk(config, bucket.tokens.numel(), s.population, s.device)


def _token_batch(s: Setting, min_length: int, median_length: int) -> EvalBatch:
    """Random token ids (the cost does not depend on their values), right-padded like the real
    evaluation set. Lengths: all T by default; uniform in [min_length, T] with min_length;
    log-normal around median_length (σ 0.5) clipped to [max(min_length, 2), T] with it."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, VOCAB, (s.batch, s.seq_len), generator=gen)
    if median_length:
        normal = torch.randn(s.batch, generator=gen, dtype=torch.float64)
        lengths = (median_length * torch.exp(0.5 * normal)).round().long().clamp(
            max(min_length, 2), s.seq_len)
    else:
        lengths = torch.randint(min(min_length or s.seq_len, s.seq_len), s.seq_len + 1,
                                (s.batch,), generator=gen)
    tokens[torch.arange(s.seq_len)[None, :] >= lengths[:, None]] = PAD_ID
    return EvalBatch(tokens, lengths)


class PlainLM(nn.Module):
    """The same network written the obvious way: nn.Linear layers (two per factorized matrix),
    SDPA attention, full logits and F.cross_entropy; one individual at a time."""

    def __init__(self, config: ModelConfig, encoding: EncodingConfig) -> None:
        super().__init__()
        width = config.n_heads * config.head_dim
        self.config = config

        def linear(d_in: int, d_out: int, layer_type: str) -> nn.Module:
            rank = encoding.rank_for(layer_type)
            if rank is None:
                return nn.Linear(d_in, d_out)
            return nn.Sequential(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_out))

        rank = encoding.rank_for("embedding")
        self.embed = nn.Embedding(VOCAB, config.hidden) if rank is None else nn.Sequential(
            nn.Embedding(VOCAB, rank), nn.Linear(rank, config.hidden, bias=False))
        self.out_bias = nn.Parameter(torch.zeros(VOCAB))
        self.blocks = nn.ModuleList()
        for _ in range(config.n_blocks):
            self.blocks.append(nn.ModuleDict({
                "q": linear(config.hidden, width, "qkv"), "k": linear(config.hidden, width, "qkv"),
                "v": linear(config.hidden, width, "qkv"),
                "out": linear(width, config.hidden, "attn_out"),
                "ln1": nn.LayerNorm(config.hidden, eps=config.ln_eps),
                "ff1": linear(config.hidden, config.ff, "ff"),
                "ff2": linear(config.ff, config.hidden, "ff"),
                "ln2": nn.LayerNorm(config.hidden, eps=config.ln_eps)}))

    def output_weight(self) -> torch.Tensor:
        if isinstance(self.embed, nn.Embedding):
            return self.embed.weight
        return self.embed[0].weight @ self.embed[1].weight.T                  # (V, H)

    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c = self.config
        b, t = tokens.shape
        x = self.embed(tokens)                                                # (B, T, H)
        for block in self.blocks:
            def heads(y: torch.Tensor) -> torch.Tensor:
                return y.view(b, t, c.n_heads, c.head_dim).transpose(1, 2)
            att = F.scaled_dot_product_attention(heads(block["q"](x)), heads(block["k"](x)),
                                                 heads(block["v"](x)), is_causal=True)
            x = block["ln1"](x + block["out"](att.transpose(1, 2).reshape(b, t, -1)))
            x = block["ln2"](x + block["ff2"](torch.relu(block["ff1"](x))))
        logits = x @ self.output_weight().T + self.out_bias                   # (B, T, V)
        mask = torch.arange(t - 1, device=tokens.device)[None] < (lengths[:, None] - 1)
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), tokens[:, 1:].reshape(-1),
                             reduction="none").view(b, t - 1)
        return ((ce * mask).sum(1) / mask.sum(1)).mean()


def plain_loop_work(model: Transformer, theta: torch.Tensor, tokens: torch.Tensor,
                    lengths: torch.Tensor, encoding: EncodingConfig, config: ModelConfig,
                    s: Setting) -> Callable[[], None]:
    """Per-individual loop: load each genome's weights into the module, then score it."""
    plain = PlainLM(config, encoding).to(theta.device)
    targets = _plain_parameter_map(plain, model)

    @torch.no_grad()
    def run() -> None:
        for i in range(s.population):
            p = model.layout.views(theta[i:i + 1])
            for parameter, (name, transpose) in targets.items():
                value = p[name][0]
                parameter.copy_(value.T if transpose else value)
            plain.loss(tokens, lengths)

    return run


def _plain_parameter_map(plain: PlainLM, model: Transformer) -> dict:
    """nn.Module parameter → (layout name, whether the engine stores it transposed)."""
    mapping = {}
    embed = model.embedding
    if embed.rank is None:
        mapping[plain.embed.weight] = (f"{embed.name}.weight", False)
    else:
        mapping[plain.embed[0].weight] = (f"{embed.name}.B", False)
        mapping[plain.embed[1].weight] = (f"{embed.name}.A", True)
    mapping[plain.out_bias] = (f"{embed.name}.out_bias", False)
    for block, plain_block in zip(model.blocks, plain.blocks):
        for key in ("q", "k", "v", "out", "ff1", "ff2"):
            layer: Linear = getattr(block, key)
            module = plain_block[key]
            if layer.rank is None:
                mapping[module.weight] = (f"{layer.name}.weight", True)
                mapping[module.bias] = (f"{layer.name}.bias", False)
            else:
                mapping[module[0].weight] = (f"{layer.name}.B", True)
                mapping[module[1].weight] = (f"{layer.name}.A", True)
                mapping[module[1].bias] = (f"{layer.name}.bias", False)
    return mapping


def forward_flops(model: Transformer, population: int, lengths: torch.Tensor) -> float:
    """Multiply-add FLOPs of one generation on the real tokens: every matmul, causal attention
    counted at L/2 keys per token."""
    tokens = int(lengths.sum())
    scored = int((lengths - 1).sum())
    attended = float((lengths.double() ** 2 / 2).sum())                      # Σ L·(L/2)
    c = model.cfg
    width = c.n_heads * c.head_dim

    def linear(layer: Linear, d_in: int, d_out: int) -> int:
        return 2 * (d_in * d_out if layer.rank is None else layer.rank * (d_in + d_out))

    per_token = 0 if model.embedding.rank is None else 2 * model.embedding.rank * c.hidden
    attention = 0.0
    for block in model.blocks:
        per_token += 3 * linear(block.q, c.hidden, width) + linear(block.out, width, c.hidden)
        per_token += linear(block.ff1, c.hidden, c.ff) + linear(block.ff2, c.ff, c.hidden)
        attention += 2 * 2 * attended * width                                  # QKᵀ and AV
    k = c.hidden if model.embedding.rank is None else model.embedding.rank
    logits = 2 * k * VOCAB * scored
    if model.embedding.rank is not None:
        logits += 2 * c.hidden * k * scored
    return population * (per_token * tokens + attention + logits)


def forward_exponentials(model: Transformer, population: int, lengths: torch.Tensor) -> float:
    """Exponentials of one generation on the real tokens: the vocabulary-wide softmax of every
    scored token, and one per (query, key ≤ query, head) in each block's attention."""
    scored = int((lengths - 1).sum())
    attended = float((lengths.double() * (lengths.double() + 1) / 2).sum())
    c = model.cfg
    return population * (scored * VOCAB + attended * c.n_heads * c.n_blocks)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu×{torch.get_num_threads()}"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=32, help="P, individuals per generation")
    parser.add_argument("--batch", type=int, default=16, help="sequences scored per individual")
    parser.add_argument("--seq-len", type=int, default=0, help="tokens per sequence (default 64; "
                        "256 with --paper-scale)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--pop-chunk", type=int, default=0,
                        help="individuals per forward chunk (default: the engine's rule, "
                             "tasks/language.population_chunk: 16 on CPU, a 1 GiB activation "
                             "budget on GPU)")
    parser.add_argument("--pop-tile", type=int, default=0, help="individuals per logits tile "
                        "(default: engine's: 4 on CPU, the whole chunk on GPU)")
    parser.add_argument("--token-chunk", type=int, default=512, help="scored tokens per logits tile")
    parser.add_argument("--min-length", type=int, default=0, help="sequence lengths uniform in "
                        "[MIN, seq-len] (default: every sequence seq-len tokens)")
    parser.add_argument("--median-length", type=int, default=0, help="log-normal sequence "
                        "lengths with this median (σ 0.5), clipped to [min-length, seq-len]")
    parser.add_argument("--length-bucket", type=int, default=64, help="most sequences per length "
                        "bucket, as task.length_bucket (0: one batch padded to the longest)")
    parser.add_argument("--bucket-padding", type=float, default=0.05, help="padding allowed, × "
                        "the real tokens, as task.bucket_padding (a negative value: buckets of "
                        "exactly --length-bucket sequences, as task.bucket_padding null)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="task.precision: tf32 matmuls, bf16 autocast, or the Triton "
                             "kernels' products as three TF32 ones (GPU levers)")
    parser.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                        help="the Triton kernels' launch constants (kernels/gpu.py), e.g. "
                             "'{\"QUERY_BLOCK\": 64}' (GPU levers)")
    parser.add_argument("--compile", action="store_true",
                        help="task.compile: torch.compile the population forward")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        metavar="MODEL", help=f"subset of: {', '.join(MODELS)}")
    parser.add_argument("--skip-loop", action="store_true", help="skip the slow nn.Module loop")
    parser.add_argument("--profile", action="store_true",
                        help="after each model's line, where one generation's time goes: the "
                             "kernels (CUDA) or ops (CPU) by total time, from torch.profiler")
    parser.add_argument("--paper-scale", action="store_true",
                        help="P=512 and 1024 sequences (the paper's evaluation set size)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
