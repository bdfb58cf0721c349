"""The `encoding:` section: which weight matrices the genome holds as low-rank factors (or as a
sparse subset of entries), and at which rank (see `neuroevo.encoding` for what each kind searches).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from neuroevo.sections import check_choices

ENCODINGS = ("dense", "factorized", "sparse")
SPARSE_SELECTIONS = ("random", "magnitude")
FACTOR_INITS = ("reference", "dense")


@dataclass(frozen=True)
class SparseChoice:
    """How one sparse-encoded matrix picks the k entries its genome holds."""

    rank: int  # k = rank·(in + out), what a factorization of this rank would search
    selection: str  # "random" entries, or those of largest |init| ("magnitude")
    seed: int  # seed of the frozen shared weights and of the random choice


@dataclass(frozen=True)
class EncodingConfig:
    """Which weight matrices are factorized (or sparse), and at which rank."""

    kind: str = "dense"  # "dense" | "factorized" | "sparse"
    rank: int = 4  # rank of every factorized layer type not named in `ranks`
    # per layer type, e.g. {"embedding": 32}; null leaves that type's matrices dense (a layer-wise
    # ablation: {"hidden": null} factorizes only an Atari policy's convolutions)
    ranks: dict[str, int | None] = field(default_factory=dict)
    sparse_selection: str = "random"  # sparse only: "random" | "magnitude" (largest |init|)
    sparse_seed: int = 0  # sparse only: frozen weights and index choice; shared by every run seed
    # factorized only (beyond the paper): where the factors' product starts. "reference": each
    # factor at the reference's std, which starts most products above the dense layer's Kaiming
    # std (×1.2–2.5 in the Atari and CarRacing nets); "dense": both factors scaled so that W's
    # entries start at the std of the same layer dense (a tied embedding's: 1), mutation stds
    # unchanged, so the encodings start alike and differ only in how they search
    factor_init: str = "reference"

    def __post_init__(self) -> None:
        # here rather than in the config loader: an EncodingConfig built in code with a kind no
        # layer wires would otherwise develop every matrix as dense, without a word
        if self.kind not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.kind!r} in encoding.kind "
                             f"(valid: {', '.join(ENCODINGS)})")
        check_choices(self, (("sparse_selection", SPARSE_SELECTIONS),
                             ("factor_init", FACTOR_INITS)), name="encoding")
        if self.factor_init != "reference" and self.kind != "factorized":
            raise ValueError(f"encoding.factor_init: {self.factor_init} applies to factors only: "
                             f"drop it, or set encoding.kind: factorized (got {self.kind})")
        if not 0 <= self.sparse_seed < 2**31:
            raise ValueError(f"encoding.sparse_seed must be in [0, 2**31), got {self.sparse_seed}")

    def rank_for(self, layer_type: str) -> int | None:
        """The rank of a matrix of this layer type, or None when it is not factorized (the dense
        kind, or the type's rank set to null)."""
        if self.kind != "factorized":
            return None
        return self.ranks.get(layer_type, self.rank)

    def sparse_for(self, layer_type: str) -> SparseChoice | None:
        """How a matrix of this layer type is sparsely searched, or None when it is not (the type's
        rank set to null: searched dense)."""
        rank = self.ranks.get(layer_type, self.rank)
        if self.kind != "sparse" or rank is None:
            return None
        return SparseChoice(rank, self.sparse_selection, self.sparse_seed)

    @property
    def dense_start(self) -> bool:
        """Whether factorized matrices start at their dense counterparts' std (`factor_init`)."""
        return self.factor_init == "dense"

    def to_dict(self) -> dict:
        """The fields as a dict, the sparse ones only for the sparse kind and `factor_init` only
        when not the reference's: adding them left every earlier config's digest, and so the
        resumability of its runs, unchanged."""
        data = dataclasses.asdict(self)
        if self.kind != "sparse":
            del data["sparse_selection"], data["sparse_seed"]
        if self.factor_init == "reference":
            del data["factor_init"]
        return data
