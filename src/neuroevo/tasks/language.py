"""TinyStories language modelling: fitness = −(mean next-token cross-entropy), in nats per token.

The paper's protocol (the authors' Jevo.jl, experiments/tinystories/): the first `n_sequences` stories of the corpus,
each `<s> story </s>`, identical every generation and for every individual, scored as the mean over
sequences of each sequence's mean token cross-entropy. `sampling: sampled` instead draws a fresh
batch per generation from a stream seeded by the run seed, and `max_len` truncates sequences; both
are options beyond the paper (see the README's "Differences from the paper").

Every individual sees the same token batch, so the batch is built once per generation (for the
paper's fixed set, once per run) and split into length buckets, each padded only to its own
longest story: a bucket holds at most `length_bucket` stories, and the padding of all buckets
together stays within `bucket_padding` of the real tokens however skewed the lengths (the
reference pads all 1,024 to the longest). The population is evaluated in chunks of `pop_chunk`
individuals: 16 at a time on a CPU, and on a GPU as many as fit a fixed activation budget for
each bucket (the paper's 512 individuals × 1024 stories would need tens of GB at once). Within a
chunk the loss is one fused kernel that never stores the (individuals, tokens, vocab) logits;
where torch's ops compute it instead (no kernels, autograd, torch.compile) the logits are made
one tile of `pop_tile` × `token_chunk` at a time, so on a CPU they stay near the caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from neuroevo.config import ConfigError, RunConfig
from neuroevo.data.tinystories import (
    EvalBatch, check_eval_args, fixed_eval_set, model_vocab_size, prepare_corpus,
    sampled_eval_set)
from neuroevo.encoding import ParamLayout
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.models.transformer import Transformer, scored_positions
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import SPECIAL_OFFSET, ModelConfig, TaskConfig
from neuroevo.story_samples import StorySample, story_samples
from neuroevo.tasks import Evaluation

__all__ = ["LanguageTask", "build"]

log = logging.getLogger(__name__)

# How far (nats) the Triton kernels' fitness may stray from torch's ops in fp32 in the once-a-run
# check, by the run's precision: IEEE products differ only in summation order (H100: 1.5e-4 at
# the paper's size); TF32 by its rounding (H100, dense: 2.8e-2 over 512 individuals); bf16 by
# more (torch's ops in bf16: 6.6e-2); tf32x3 (split TF32 products) near IEEE's (H100: 5.7e-6).
# A miscompiled kernel strays by whole nats.
KERNEL_TOLERANCE = {"fp32": 1e-3, "tf32": 0.1, "bf16": 0.25, "tf32x3": 1e-2}
KEPT = "(kept from the process this run resumed from)"  # ends a resumed run's kept verdict


class LanguageTask:
    """Scores a population of transformers on TinyStories (or any one-story-per-line corpus)."""

    extra_columns: tuple[str, ...] = ()
    timing_columns: tuple[str, ...] = ()

    def __init__(self, task: TaskConfig, model: ModelConfig, encoding: EncodingConfig, seed: int,
                 device: torch.device) -> None:
        self.config, self.seed, self.device = task, seed, device
        # the shapes (a rank too large for a layer) are checked before the minutes a fresh corpus
        # takes to tokenise, on the full vocabulary as `describe` without data takes it
        full_vocabulary_model(task, model, encoding)
        self.corpus = prepare_corpus(Path(task.text), Path(task.cache_dir), task.n_stories,
                                     task.vocab_size,
                                     None if task.tokenizer is None else Path(task.tokenizer))
        check_eval_args(self.corpus, task.n_sequences, task.max_len)  # sampled: before evaluate
        self.model = Transformer(model, encoding, model_vocab_size(self.corpus.tokenizer))
        self.layout = self.model.layout
        self._fixed = (fixed_eval_set(self.corpus, task.n_sequences, task.max_len)
                       if task.sampling == "fixed" else None)
        self._fixed_buckets: list[EvalBatch] | None = None
        self._score = scorer(task.precision, task.compile, device)
        self._kernels: str | None = None  # the once-a-run check's verdict (check_kernels)
        self._launch: dict | None = None  # the kernels' launch settings, when they are on
        self._resumed: dict = {}  # resume_state() of the process this one resumed from

    @property
    def pop_tile(self) -> int | None:
        """Individuals per logits tile: the config's, else 4 on CPU (a 4 × 512 × 2051 tile; tiles
        from 1 × 128 to 16 × 64 measured within 10% of each other) and the whole chunk on GPU."""
        if self.config.pop_tile:
            return self.config.pop_tile
        return None if self.device.type == "cuda" else 4

    def batch(self, generation: int) -> EvalBatch:
        if self._fixed is not None:
            return self._fixed
        return sampled_eval_set(self.corpus, self.config.n_sequences, self.config.max_len,
                                self.seed, generation)

    def _device_buckets(self, generation: int) -> list[EvalBatch]:
        """This generation's batch in length buckets, on the run's device (built once for the
        paper's fixed set)."""
        if self._fixed_buckets is not None:
            return self._fixed_buckets
        # a fresh sample each generation: the scored positions of the last one are dead weight
        # (the cache holds its tensors, on the GPU, until 1,024 buckets push them out)
        scored_positions.cache_clear()
        buckets = [EvalBatch(b.tokens.to(self.device), b.lengths.to(self.device))
                   for b in self._buckets(self.batch(generation))]
        if self._fixed is not None:
            self._fixed_buckets = buckets
        return buckets

    def _buckets(self, batch: EvalBatch) -> list[EvalBatch]:
        return batch.buckets(self.config.length_bucket, self.config.bucket_padding)

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, generation: int) -> Evaluation:
        buckets = self._device_buckets(generation)
        if self._kernels is None:
            self._kernels = self._resumed_path(self.check_kernels(theta, buckets[0]))
            if self._kernels.startswith("on"):
                self._launch = gpu_kernels.launch_settings()
                if self._resumed.get("gpu_kernel_launch") not in (None, self._launch):
                    log.warning("the Triton kernels' launch settings differ from those of the "
                                "process this run resumed from (other code?): its log from here "
                                "may differ in the last digits from an uninterrupted run's")
        # off unless the check let them on: also what sizes the chunks for torch's ops when they
        # run instead (a failed check, torch.compile, no Triton)
        kernels_off = not self._kernels.startswith("on")
        with gpu_kernels.switched_off() if kernels_off else contextlib.nullcontext():
            return Evaluation(fitness=score_population(
                self.model, theta, buckets, self.config.pop_chunk, self.config.token_chunk,
                self.pop_tile, score=self._score))

    def check_kernels(self, theta: torch.Tensor, bucket: EvalBatch) -> str:
        """Whether this run may use the Triton kernels, checked once: two individuals' fitness
        on a few of the bucket's stories through the kernels, at the run's precision, and
        through torch's ops in fp32, which must agree within KERNEL_TOLERANCE. Triton has
        miscompiled tensor-core products on an H100 (bench/RESULTS.md: whole nats off, or a
        fault), so a kernel that disagrees is switched off for the run, with a warning, rather
        than trusted. The verdict goes to the run's summary."""
        if not (gpu_kernels.usable(theta) and not self.config.compile):
            return "not used"
        tokens, lengths = bucket.tokens[:8], bucket.lengths[:8]
        views = self.model.layout.views(theta[:2])
        args = (self.model, views, tokens, lengths, self.config.token_chunk, self.pop_tile)
        fused = self._score(*args)
        with gpu_kernels.switched_off(), float32_matmuls("fp32"):
            plain = Transformer.negative_cross_entropy(*args)
        deviation = float((fused - plain).abs().max())
        if deviation <= KERNEL_TOLERANCE[self.config.precision]:
            return f"on: within {deviation:.1e} nats of torch's fp32 ops"
        log.warning("the Triton kernels' fitness is %.3g nats from torch's fp32 ops (allowed %g "
                    "at %s): using torch's ops for this run; bench/triton_sweep.py --isolate "
                    "finds the faulty launch configuration", deviation,
                    KERNEL_TOLERANCE[self.config.precision], self.config.precision)
        return f"off: {deviation:.3g} nats from torch's fp32 ops"

    def resume_state(self) -> dict:
        """What a resumed process must know to score as this one did (the run checkpoints it):
        the kernel check's verdict (None before the first generation) and the kernels' launch
        settings when they ran."""
        return {"gpu_kernels": self._kernels, "gpu_kernel_launch": self._launch}

    def resume_from(self, state: dict) -> None:
        """Score as the process that wrote `state` did (see `_resumed_path`)."""
        self._resumed = state

    def _resumed_path(self, verdict: str) -> str:
        """This process's verdict, held to the resumed-from process's: kernels it did not use stay
        off (torch's ops, as before: the log goes on as an uninterrupted run's would), and kernels
        it used run again only if they pass here too (a verdict does not carry to another GPU or
        Triton); if they fail, torch's ops, and the warning that the log now departs from the
        uninterrupted run's."""
        before = self._resumed.get("gpu_kernels")
        if before is None or before.startswith("on") == verdict.startswith("on"):
            return verdict
        if not before.startswith("on"):
            return before if before.endswith(KEPT) else f"{before} {KEPT}"
        log.warning("the resumed run used the Triton kernels before and uses torch's ops now: "
                    "its log from here differs in the last digits from an uninterrupted run's")
        return f"{verdict} (the process resumed from used the kernels)"

    @property
    def data_sha256(self) -> str:
        """The text's hash (and with `task.tokenizer`, one of it and the tokenizer file's): a run
        resumed on another text, or on an edited tokenizer file at the same path, would mix two
        datasets in one log. A trained tokenizer is a function of the text and the config."""
        if self.corpus.tokenizer_sha256 is None:
            return self.corpus.text_sha256
        both = f"{self.corpus.text_sha256} {self.corpus.tokenizer_sha256}"
        return hashlib.sha256(both.encode()).hexdigest()

    def summary(self) -> dict:
        batch = self.batch(1)
        buckets = self._buckets(batch)
        return {"text": self.config.text, "text_sha256": self.corpus.text_sha256,
                "tokenizer": self.config.tokenizer or "trained",
                "tokenizer_sha256": self.corpus.tokenizer_sha256,
                "n_stories": len(self.corpus), "model_vocab": self.model.vocab,
                "eval_sequences": int(batch.tokens.shape[0]),
                "eval_padded_length": int(batch.tokens.shape[1]),
                "eval_targets": int(batch.n_targets),
                "eval_positions_computed": sum(b.tokens.numel() for b in buckets),
                "eval_buckets": len(buckets),
                "gpu_kernels": self._kernels or "not checked",
                **({"gpu_kernel_launch": self._launch} if self._launch else {}),
                "fitness": "minus mean next-token cross-entropy (nats/token), per-sequence means"}

    def replay(self, theta: torch.Tensor, generation: int, video: Path | None = None,
               individual: int = 0) -> float:
        """Re-score one individual on the batch of `generation` (every individual of a generation
        sees the same batch, so `individual` does not matter)."""
        if video is not None:
            raise ConfigError("--video is for the RL tasks; a language model has nothing to "
                              "film: drop --video")
        return float(self.evaluate(theta.to(self.device), generation).fitness[0])

    def story_samples(self, theta: torch.Tensor, n: int, prompt_tokens: int, new_tokens: int,
                      temperature: float) -> list[StorySample]:
        """The (1, D) individual's continuations of `n` story openings, from the first story
        after the evaluation set's `n_sequences` (with the paper's fixed set, stories the run
        never scored; sampled batches may have drawn any story)."""
        return story_samples(self.model, self.layout.views(theta.to(self.device)), self.corpus,
                             self.config.n_sequences, n, prompt_tokens, new_tokens, temperature)

def population_chunk(cfg: ModelConfig, positions: int, population: int,
                     device: torch.device) -> int:
    """Individuals per forward call when `task.pop_chunk` is 0, for a bucket of `positions`
    token positions: 16 on CPU (with the fused kernels, chunks of 2, 4, 8, 16, 32
    measured 25.9, 18.1, 16.3, 15.7, 15.9 ms of block work per generation of the paper's dense
    model in bench/bench_lm.py's setting) or, on GPU, as many as keep the widest activation under
    2**28 floats (1 GiB): with the Triton kernels two hidden-state tensors (P, B·T, hidden) and,
    if the attention kernel stores them, keys and values (P, B·T, heads × head_dim) each, else
    (switched off: no Triton, torch.compile, or a failed check) torch's (P, B·T, ff)."""
    if device.type != "cuda":
        return 16
    stored = 2 * cfg.n_heads * cfg.head_dim if gpu_kernels.ATTENTION_KV_STORED else 0
    widest = (2 * cfg.hidden + stored if gpu_kernels.available()
              else max(cfg.ff, 3 * cfg.n_heads * cfg.head_dim, cfg.hidden))
    return max(1, min(population, 2**28 // (positions * widest)))


def score_population(model: Transformer, theta: torch.Tensor, buckets: list[EvalBatch],
                     pop_chunk: int, token_chunk: int, pop_tile: int | None,
                     score=Transformer.negative_cross_entropy) -> torch.Tensor:
    """Fitness (P,) of the population theta (P, D) on the sequences of all `buckets`: each
    bucket's mean weighted by its share of the sequences, so the result is the mean over every
    sequence of its mean token CE, as one padded batch would give. Chunks of `pop_chunk`
    individuals bound the working set (0: `population_chunk` per bucket, so short buckets go in
    fewer, larger calls on a GPU); there is no loop over individuals. `score` is the model method
    per chunk and bucket (bench/bench_lm.py swaps in the logits + CE part alone)."""
    n_sequences = sum(len(b.lengths) for b in buckets)
    fitness = theta.new_zeros(theta.shape[0])
    theta, aligned = population_for_kernels(model.layout, theta)
    for b in buckets:
        chunk = pop_chunk or population_chunk(model.cfg, b.tokens.numel(), theta.shape[0],
                                              theta.device)
        fitness = fitness + torch.cat([
            score(model, model.layout.views(theta[i:i + chunk], aligned=aligned), b.tokens,
                  b.lengths, token_chunk, pop_tile) for i in range(0, theta.shape[0], chunk)
        ]) * (len(b.lengths) / n_sequences)
    return fitness


def population_for_kernels(layout: ParamLayout, theta: torch.Tensor
                           ) -> tuple[torch.Tensor, bool]:
    """theta (P, D) as the GPU kernels will read it, and whether that is `layout.aligned`'s
    padded copy: so when gpu.ALIGNED_OPERANDS asks for it and the kernels will run, else theta
    itself."""
    if gpu_kernels.ALIGNED_OPERANDS and gpu_kernels.usable(theta):
        return layout.aligned(theta), True
    return theta, False


def scorer(precision: str, compiled: bool, device: torch.device,
           method: Callable[..., torch.Tensor] = Transformer.negative_cross_entropy
           ) -> Callable[..., torch.Tensor]:
    """`method` (a Transformer method scoring one chunk) at the requested precision: fp32 as is,
    tf32 with TF32 matmuls allowed (a process-wide torch setting), bf16 under autocast, tf32x3
    with the Triton kernels' products split into three TF32 ones (another process-wide
    setting; torch's own matmuls stay fp32); then through torch.compile if asked."""
    use_float32_matmuls(precision)
    score = torch.compile(method, dynamic=False) if compiled else method
    if precision != "bf16":
        return score

    def autocast_score(*args, **kwargs) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return score(*args, **kwargs).float()

    return autocast_score


def build(config: RunConfig, device: torch.device) -> LanguageTask:
    return LanguageTask(config.task, config.model, config.encoding, config.seed, device)


def layout_without_data(config: RunConfig) -> ParamLayout:
    """The model's genome layout before the text is there (`neuroevo describe` on a machine that
    has not fetched TinyStories): the vocabulary taken as full, task.vocab_size plus the specials,
    as the BPE trained on the 10,000 stories makes it."""
    return full_vocabulary_model(config.task, config.model, config.encoding).layout


def full_vocabulary_model(task: TaskConfig, model: ModelConfig,
                          encoding: EncodingConfig) -> Transformer:
    """The model on the vocabulary the config asks for (task.vocab_size plus the specials), which
    a corpus's BPE can only fall short of: what is checked and described before tokenising."""
    return Transformer(model, encoding, task.vocab_size + SPECIAL_OFFSET)


def use_float32_matmuls(precision: str) -> None:
    """Process-wide, fp32 matmuls as task.precision `precision` asks: "tf32" lets torch's and the
    Triton kernels' use TF32, "tf32x3" splits the kernels' products into TF32 ones (torch's stay
    IEEE), anything else keeps IEEE fp32 (bf16 is autocast's, applied per call)."""
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    gpu_kernels.use_split_tf32(precision == "tf32x3")


@contextlib.contextmanager
def float32_matmuls(precision: str) -> Iterator[None]:
    """`use_float32_matmuls(precision)` within, the process-wide settings restored after."""
    previous, previous_split = torch.get_float32_matmul_precision(), gpu_kernels.split_tf32()
    use_float32_matmuls(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
        gpu_kernels.use_split_tf32(previous_split)
