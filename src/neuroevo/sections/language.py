"""The TinyStories task's sections: `task:` (data, batches, evaluation levers) and `model:` (the
paper's transformer sizes; `neuroevo.tasks.language` and `neuroevo.models.transformer` use them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from neuroevo.sections import check_choices, check_minimums

SAMPLING = ("fixed", "sampled")
# task.precision's choices; `kernels.gpu.PRECISION_NAMES` maps the kernels' codes to them in order
PRECISIONS = ("fp32", "tf32", "bf16", "tf32x3")
# BPE ids 0-4, where the paper's file has its 5 specials (named <unk> <pad> <s> </s> <|endoftext|>)
BPE_SPECIALS = ("[UNK]", "[PAD]", "[BOS]", "[EOS]", "[MASK]")
SPECIAL_OFFSET = 3  # BPE id b is model id b + 3
MAX_VOCAB_SIZE = 2**15 - SPECIAL_OFFSET  # the largest BPE vocabulary: model ids are int16


@dataclass(frozen=True)
class TaskConfig:
    name: str = "tinystories"
    text: str = "data/tinystories/first10k.txt"  # one story per line (relative to the cwd)
    n_stories: int | None = 10000  # stories read from `text` (tokenizer training + evaluation)
    vocab_size: int = 2048  # BPE vocabulary incl. its 5 specials; the model adds <unk> <s> </s>
    # a Hugging Face tokenizers JSON used instead of training the BPE on `text` (e.g. the authors'
    # tokenizer-bpe.json: README, "Differences from the paper"); None = train, as the paper did
    tokenizer: str | None = None
    n_sequences: int = 1024  # stories scored per generation
    max_len: int | None = None  # truncate each sequence to this many tokens (None = paper)
    sampling: str = "fixed"  # "fixed" = the paper's first n_sequences; "sampled" = fresh per gen
    cache_dir: str = "data/cache"  # tokenizer and token arrays, keyed by text and BPE settings
    pop_chunk: int = 0  # individuals per forward chunk; 0 = auto (16 on CPU, memory-bound on GPU)
    length_bucket: int = 64  # most sequences per padding bucket (sorted by length); 0 = one batch
    bucket_padding: float | None = 0.05  # padding allowed, × the real tokens (few buckets within
    # it: EvalBatch.buckets); null: buckets of exactly length_bucket sequences, however padded
    # torch's loss path only (the fused loss kernels need no tiles):
    pop_tile: int = 0  # individuals per logits tile; 0 = auto (4 on CPU, the whole chunk on GPU)
    token_chunk: int = 512  # scored tokens per logits tile
    # GPU levers (issue #6), off by default: "tf32" lets fp32 matmuls use TF32, "bf16" autocasts
    # them to bfloat16 (losses still summed in fp32), "tf32x3" splits the Triton kernels'
    # products into three TF32 ones (fp32-level error, 2.3–2.9× IEEE's speed on an H100);
    # `compile` runs the population forward through torch.compile (the first generation pays
    # for it, once per distinct chunk and bucket shape; past torch's recompile limit, 8, further
    # shapes run eagerly, so on the paper's set, with its tens of buckets, most of it does).
    # bench_lm.py prints how far each moves the fitness from the fp32 reference.
    precision: str = "fp32"
    compile: bool = False
    UNSET_NOT_DIGESTED: ClassVar[tuple[str, ...]] = ("tokenizer",)  # RunConfig.digest

    def __post_init__(self) -> None:
        check_choices(self, (("sampling", SAMPLING), ("precision", PRECISIONS)), name="task")
        if self.bucket_padding is not None and not self.bucket_padding >= 0:
            raise ValueError(f"task.bucket_padding must be a share ≥ 0 of the real tokens (or "
                             f"null), got {self.bucket_padding}")
        # the data layer and the scorer would otherwise fail on these mid-build or mid-run
        if not len(BPE_SPECIALS) < self.vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"task.vocab_size must be between {len(BPE_SPECIALS) + 1} (the BPE's "
                             f"{len(BPE_SPECIALS)} specials and a token) and {MAX_VOCAB_SIZE} "
                             f"(int16 model ids), got {self.vocab_size}")
        check_minimums(self, (("n_stories", 1, " or null (every story)"), ("n_sequences", 1, ""),
                              ("max_len", 2, " (<s> and one target) or null"),
                              ("token_chunk", 1, ""), ("pop_chunk", 0, " (0 = auto)"),
                              ("pop_tile", 0, " (0 = auto)"),
                              ("length_bucket", 0, " (0 = one batch)")))


LAYER_TYPES = ("embedding", "qkv", "attn_out", "ff")  # the keys `encoding.ranks` may name


@dataclass(frozen=True)
class ModelConfig:
    """Transformer sizes; defaults are the paper's (the small baseline uses hidden 4, ff 16)."""

    hidden: int = 32
    ff: int = 128
    n_blocks: int = 3
    n_heads: int = 4
    head_dim: int = 4  # Q/K/V width = n_heads × head_dim, independent of hidden (as in the paper)
    rotary_dims: int = 4  # features of the input embedding that carry the rotary position
    ln_eps: float = 1e-7
    # Beyond the paper: the std of the tied embedding's initial entries (E itself, or the product
    # of a factorized embedding's factors); null = the reference's, N(0, 1) for a dense or sparse
    # E and 2/√vocab for the product (≈ 0.044 at vocab 2051). Mutation stds stay the reference's,
    # so two encodings can start from the same scale (the `init_cpu` preset).
    embedding_init_std: float | None = None
    UNSET_NOT_DIGESTED: ClassVar[tuple[str, ...]] = ("embedding_init_std",)  # RunConfig.digest

    def __post_init__(self) -> None:
        check_minimums(self, (("hidden", 1, ""), ("ff", 1, ""), ("n_heads", 1, ""),
                              ("head_dim", 1, ""), ("n_blocks", 0, " (0 = the embedding alone)")),
                       name="model")
        if not self.ln_eps > 0:
            raise ValueError(f"model.ln_eps must be > 0 (LayerNorm divides by √(variance + "
                             f"eps)), got {self.ln_eps}")
        if self.embedding_init_std is not None and not self.embedding_init_std > 0:
            raise ValueError(f"model.embedding_init_std must be > 0 (or null: the reference's), "
                             f"got {self.embedding_init_std}")
        # rotated in pairs: an odd count or one past the width cannot run (checked at load)
        if self.rotary_dims % 2 or not 0 <= self.rotary_dims <= self.hidden:
            raise ValueError(f"model.rotary_dims must be even and between 0 and model.hidden "
                             f"({self.hidden}), got {self.rotary_dims}")
