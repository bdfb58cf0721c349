"""Time each Triton kernel alone under alternative launch configurations (issue #6).

The kernels' block sizes and warps (constants in src/neuroevo/kernels/gpu.py) were chosen from
ptxas's register counts without a GPU. This script times, at the issue's fixed setting by
default, each kernel of the paper's transformer — the attention sub-layer, the feed-forward
sub-layer (both for block 0), the loss and the embedding lookup with its rotation
(EMBED_KERNEL) — under every combination of its knobs, checks each configuration against the
same kernel with IEEE fp32 products, and prints the milliseconds per
call, the effective bandwidth and the best configuration. It also shows where a generation's time
goes: multiply each block kernel's time by the number of blocks (3).

    python bench/triton_sweep.py                                   # P=512, 256 × 128, TF32
    python bench/triton_sweep.py --precision bf16 --model "paper factorized r4"
    python bench/triton_sweep.py --isolate 8 --population 64 --unverified --precision bf16
    python bench/triton_sweep.py --kernels attention --knob QUERY_BLOCK=32 --knob KEY_BLOCK=32 \
        --knob NUM_WARPS=4 --knob ATTENTION_CAUSAL_SPLIT=0,1 --knob ATTENTION_EXP2=0,1 \
        --knob ATTENTION_KV_STORED=0,1                    # the attention levers, 8 combinations

`--isolate N` runs every configuration in its own process (N at a time, with
CUDA_LAUNCH_BLOCKING=1): an illegal memory access poisons a process's CUDA context, so only
isolation tells which configurations fault and still measures the rest.

On a machine without a GPU, `--device cpu` runs it through Triton's interpreter (tiny sizes
only: it checks that the script works, not speed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_lm import MODELS  # noqa: E402
from ceilings import exp_rate  # noqa: E402
from launch_constants import PRECISIONS, configured  # noqa: E402

from neuroevo.genome import initial_weights  # noqa: E402
from neuroevo.kernels import gpu as gpu_kernels  # noqa: E402
from neuroevo.models.transformer import Transformer, rotary_angles, scored_positions  # noqa: E402
from neuroevo.tasks.language import use_float32_matmuls  # noqa: E402

VOCAB = 2051
# Each kernel's knobs (gpu.py's constants) and the values a sweep tries; `--knob NAME=a,b`
# narrows or widens one (the attention levers double the configurations each: sweep them at a
# few block sizes).
KNOBS = {
    "attention": {"QUERY_BLOCK": [16, 32, 64], "KEY_BLOCK": [16, 32, 64], "NUM_WARPS": [4, 8],
                  "NUM_STAGES": [3],
                  "ATTENTION_MAX_REGISTERS": [gpu_kernels.ATTENTION_MAX_REGISTERS],  # 0: ptxas's
                  "ATTENTION_CAUSAL_SPLIT": [int(gpu_kernels.ATTENTION_CAUSAL_SPLIT)],
                  "ATTENTION_EXP2": [int(gpu_kernels.ATTENTION_EXP2)],
                  "ATTENTION_KV_STORED": [int(gpu_kernels.ATTENTION_KV_STORED)],
                  "ATTENTION_SHIFT_BY_DIAGONAL": [int(gpu_kernels.ATTENTION_SHIFT_BY_DIAGONAL)]},
    "feed-forward": {"FEED_FORWARD_ROWS": [64, 128, 256], "NUM_WARPS": [4, 8],
                     "FEED_FORWARD_SPLIT": [1]},
    "loss": {"LOSS_ROWS": [64, 128, 256], "VOCAB_BLOCK": [64, 128, 256], "NUM_WARPS": [4, 8],
             "NUM_STAGES": [3], "LOSS_EXP2": [int(gpu_kernels.LOSS_EXP2)],
             "LOSS_MAX_REGISTERS": [gpu_kernels.LOSS_MAX_REGISTERS],
             "LOSS_SHIFT_BY_TARGET": [int(gpu_kernels.LOSS_SHIFT_BY_TARGET)],
             "LOSS_TAIL_SPLIT": [int(gpu_kernels.LOSS_TAIL_SPLIT)],
             "LOSS_FACTOR_ON_CHIP": [gpu_kernels.LOSS_FACTOR_ON_CHIP]},  # a rank: 0 never
    "embedding": {"EMBED_ROWS": [32, 64, 128, 256], "NUM_WARPS": [4, 8]},
}


@contextlib.contextmanager
def ieee_products() -> Iterator[None]:
    """The kernels' products in IEEE fp32 within, whatever the torch settings: the reference
    each configuration is checked against (not the current configuration, which may itself be
    the one that faults)."""
    saved = gpu_kernels.matmul_precision
    gpu_kernels.matmul_precision = lambda: gpu_kernels.IEEE
    try:
        yield
    finally:
        gpu_kernels.matmul_precision = saved


def kernel_calls(model: Transformer, p: dict, tokens: torch.Tensor, lengths: torch.Tensor
                 ) -> dict[str, tuple[Callable[[], torch.Tensor], Callable[[], object], int,
                                      float]]:
    """{kernel: (a call from fixed inputs to check against, the call to time, the bytes it must
    move at least, the exponentials it must take)} on realistic inputs: block 0's input for the
    sub-layers, the model's final hidden states for the loss. The feed-forward kernel works in
    place, so its checked call starts from a fresh copy and its timed call reuses one buffer."""
    block = model.blocks[0]
    with gpu_kernels.switched_off():
        x = model.hidden_states(p, tokens).float()  # as the attention kernel hands it on
    batch = tokens.shape[0]
    positions, targets, _ = scored_positions(tokens, lengths)
    weight, inner = model.embedding.output_projection(p)
    hidden_bytes = x.numel() * 4
    buffer = x.clone()

    def attention() -> torch.Tensor:
        return gpu_kernels.attention_layer_norm(
            x, batch, *(layer.operands(p) for layer in (block.q, block.k, block.v, block.out)),
            *block.ln1.scale_shift(p), block.ln1.eps, block.n_heads, block.head_dim)

    def feed_forward(fresh: bool) -> torch.Tensor:
        return gpu_kernels.feed_forward_layer_norm_(
            x.clone() if fresh else buffer, block.ff1.operands(p), block.ff2.operands(p),
            *block.ln2.scale_shift(p), block.ln2.eps)

    def loss() -> torch.Tensor:
        # a factorized embedding's product by its factor included (LOSS_FACTOR_ON_CHIP: in
        # the kernel, else torch's gather and bmm before it)
        return gpu_kernels.negative_log_likelihood(x, positions, weight,
                                                   model.embedding.out_bias(p), targets, inner)

    def embedding() -> torch.Tensor:  # with its rotation (the kernel gpu.EMBED_KERNEL turns on)
        return gpu_kernels.embedding_rotary(
            tokens.reshape(-1), tokens.shape[1], *model.embedding.lookup_operands(p),
            *rotary_angles(tokens.shape[1], model.cfg.rotary_dims, x.device))

    pop, vocab = x.shape[0], weight.shape[1]
    causal_pairs = float((lengths.double() * (lengths.double() + 1) / 2).sum())
    return {"attention": (attention, attention, 2 * hidden_bytes,
                          pop * block.n_heads * causal_pairs),
            "feed-forward": (lambda: feed_forward(True), lambda: feed_forward(False),
                             2 * hidden_bytes, 0.0),
            "loss": (loss, loss, pop * positions.numel() * (x.shape[-1] + 1) * 4,
                     pop * positions.numel() * vocab),
            "embedding": (embedding, embedding, hidden_bytes, 0.0)}


def median_ms(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of one kernel call after a warm-up: on CUDA between device events,
    so that one launch's host overhead (tens of µs, comparable to a small kernel) is not counted,
    unlike timing.interleaved_medians, which times whole generations by the host clock."""
    call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            call()
            times.append(1e3 * (time.perf_counter() - begin))
    return statistics.median(times)


def swept_knobs(kernel: str, overrides: list[tuple[str, list[int]]]) -> dict[str, list[int]]:
    """KNOBS[kernel] with the `--knob` values in place of the defaults (a knob the kernel does
    not have is left to the kernels that do)."""
    knobs = dict(KNOBS[kernel])
    for name, values in overrides:
        if name in knobs:
            knobs[name] = values
    return knobs


def knob(text: str) -> tuple[str, list[int]]:
    """--knob NAME=a,b → (NAME, [a, b])."""
    name, _, values = text.partition("=")
    names = sorted({name for knobs in KNOBS.values() for name in knobs})
    if not values or name not in names:
        raise argparse.ArgumentTypeError(f"--knob NAME=a,b with NAME one of {names}")
    return name, [int(v) for v in values.split(",")]


def isolated(args: argparse.Namespace) -> None:
    """Each (kernel, configuration) of the sweep in a child process of this script, `isolate`
    at a time; prints the child's result line, or FAULT and the child's last error line."""
    jobs = [(kernel, dict(zip(knobs, combo))) for kernel in args.kernels
            for knobs in [swept_knobs(kernel, args.knob)]
            for combo in itertools.product(*knobs.values())]
    common = [sys.executable, __file__, "--device", args.device, "--population",
              str(args.population), "--batch", str(args.batch), "--seq-len", str(args.seq_len),
              "--model", args.model, "--precision", args.precision, "--repeats", str(args.repeats),
              *(["--unverified"] if args.unverified else [])]
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")

    def run(job: tuple[str, dict[str, int]]) -> str:
        kernel, settings = job
        child = subprocess.run([*common, "--kernels", kernel, "--config", json.dumps(settings)],
                               capture_output=True, text=True, env=env)
        lines = [line for line in child.stdout.splitlines() if " | {" in line]
        if child.returncode == 0 and lines:
            return lines[0]
        errors = [line for line in child.stderr.splitlines() if "Error" in line] or ["no output"]
        return f"{kernel:>12} | {settings} | FAULT ({args.model}, {args.precision}): {errors[-1]}"

    print(f"# triton_sweep --isolate — {args.model}, P={args.population} B={args.batch} "
          f"T={args.seq_len}, {args.precision}, one process per configuration")
    with ThreadPoolExecutor(args.isolate) as pool:
        for line in pool.map(run, jobs):
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--population", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--model", default="paper dense", choices=list(MODELS))
    parser.add_argument("--precision", default="tf32", choices=list(PRECISIONS))
    parser.add_argument("--kernels", nargs="+", default=list(KNOBS), choices=list(KNOBS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--first-only", action="store_true",
                        help="only the first value of each knob (a smoke test)")
    parser.add_argument("--knob", type=knob, action="append", default=[], metavar="NAME=a,b",
                        help="the values to sweep for one knob (repeatable), e.g. "
                             "--knob ATTENTION_EXP2=0,1 --knob QUERY_BLOCK=32")
    parser.add_argument("--config", type=json.loads, default=None,
                        help='one configuration, as JSON: {"NUM_WARPS": 4, ...}')
    parser.add_argument("--max-deviation", type=float, default=0.1, metavar="D",
                        help="the best configuration is the fastest whose output lies within D "
                             "of IEEE fp32 products' (default 0.1: TF32's own is ~3e-2)")
    parser.add_argument("--best-config", type=Path, metavar="FILE",
                        help="merge the winning values of the knobs swept over more than one "
                             "value into this JSON file (made if missing), for bench_lm.py's "
                             "--config: a GPU script times whole generations with the winners")
    parser.add_argument("--isolate", type=int, default=0, metavar="N",
                        help="each configuration in its own process, N at a time")
    parser.add_argument("--unverified", action="store_true",
                        help="launch even the precisions that faulted on a GPU "
                             "(gpu.FAULTED_ON_GPU), to find which launch faults")
    args = parser.parse_args()
    if args.isolate:
        return isolated(args)
    if args.unverified:
        os.environ["NEUROEVO_GPU_KERNELS"] = "unverified"
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are first imported
    device = torch.device(args.device)
    precision = PRECISIONS[args.precision]
    use_float32_matmuls(args.precision)
    encoding, config = MODELS[args.model]
    model = Transformer(config, encoding, VOCAB)
    theta = initial_weights(model.layout, list(range(args.population)), device)
    p = model.layout.views(theta)
    tokens = torch.randint(3, VOCAB, (args.batch, args.seq_len), device=device)
    lengths = torch.full((args.batch,), args.seq_len, device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)"
    print(f"# triton_sweep — {name}, {args.model}, P={args.population} B={args.batch} "
          f"T={args.seq_len}, {args.precision}, median of {args.repeats}")
    with torch.no_grad(), autocast:
        calls = kernel_calls(model, p, tokens, lengths)
        exps_per_second = exp_rate(device, args.repeats)
        for kernel in args.kernels:
            checked, timed, min_bytes, min_exps = calls[kernel]
            # the kernel's own exponentials at the device's measured rate: the attention's per
            # score, the loss's per vocabulary entry (what a lever on their softmax aims at)
            exp_ms = min_exps / exps_per_second * 1e3
            with ieee_products():
                reference = checked().float()
            results = []
            knobs = swept_knobs(kernel, args.knob)
            values = [[args.config[name]] if args.config else v[:1] if args.first_only else v
                      for name, v in knobs.items()]
            for combo in itertools.product(*values):
                settings = dict(zip(knobs, combo))
                try:
                    with configured(settings, precision):
                        deviation = float((checked().float() - reference).abs().max())
                        ms = median_ms(timed, device, args.repeats)
                except Exception as error:  # noqa: BLE001 — one configuration Triton cannot
                    # compile (the rest still run) or one that faults (a GPU context that
                    # faulted fails every launch after: each says so)
                    print(f"{kernel:>12} | {settings} | FAILED: {type(error).__name__}: "
                          f"{(str(error).strip().splitlines() or [''])[0][:200]}", flush=True)
                    continue
                results.append((ms, settings, deviation))
                exps = f"exp floor {exp_ms:.3f} ms ({exp_ms / ms:.0%}) | " if min_exps else ""
                print(f"{kernel:>12} | {settings} | {ms:8.3f} ms | "
                      f"{min_bytes / ms / 1e6:7.1f} GB/s of unavoidable traffic | {exps}"
                      f"max |Δ| vs IEEE fp32 {deviation:.1e}", flush=True)
            chosen = fastest_within(results, args.max_deviation)
            if chosen is None:
                print(f"{kernel:>12} | no configuration ran within {args.max_deviation} of "
                      f"IEEE fp32")
                continue
            best_ms, best = chosen
            print(f"{kernel:>12} | best {best} at {best_ms:.3f} ms")
            if args.best_config:
                swept = {name for name, v in zip(knobs, values) if len(v) > 1}
                merge_best(args.best_config, {n: v for n, v in best.items() if n in swept})


def fastest_within(results: list[tuple[float, dict, float]], max_deviation: float
                   ) -> tuple[float, dict] | None:
    """(ms, settings) of the fastest configuration whose output lies within max_deviation of
    the IEEE reference (a fast configuration that computes something else, as Triton's
    miscompiled launches did, is no winner); None if none does."""
    good = [(ms, settings) for ms, settings, deviation in results if deviation <= max_deviation]
    return min(good, key=lambda r: r[0]) if good else None


def merge_best(path: Path, winners: dict[str, int]) -> None:
    """path's JSON object updated with `winners` (written whole, then renamed into place)."""
    merged = {**(json.loads(path.read_text()) if path.exists() else {}), **winners}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(merged) + "\n")
    partial.replace(path)


if __name__ == "__main__":
    main()
