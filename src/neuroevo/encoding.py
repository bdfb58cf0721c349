"""How a network's parameters are laid out in a genome and how each one is searched.

Every parameter tensor is a `ParamSpec`: its shape, the std of its initial gene, the std of a
mutation gene (before × mutation rate), and whether it is a low-rank factor. A `ParamLayout`
concatenates the specs into one flat genome of dimension D; a population is then a (P, D) tensor
and each spec is a (P, *shape) view of it.

The encoding decides, per weight matrix, whether the genome holds W itself (`dense`), its
factors (`factorized`: W = A·B with a rank per layer type), or only k of its entries (`sparse`, an
extension beyond the paper: k = r·(in + out), the dimensions a rank-r factorization searches, with
the rest of W frozen at a shared seeded init; see `layers.SparseWeight`). The sparse encoding asks
whether the factorized advantage comes from the size of the search space or from its structure.
The smaller non-factorized baseline is `dense` with a smaller model config, not a separate code
path. Initial and mutation stds follow the authors' Jevo.jl:

* dense weight: Kaiming normal, std √(2/fan_in); the same std scaled by mr for mutations;
* bias: zero at init, mutations with std √2·mr (Kaiming on a vector, whose fan_in is 1);
* factor of a matrix with full shape (out, in): std √(2/fan_in(factor)) if in > out, else
  √(√2/fan_in(factor)), with fan_in(A: out×r) = r and fan_in(B: r×in) = in; factors of a
  convolution kernel always take √(√2/fan_in(factor)), whatever the shape; factor mutations use
  √mr instead of mr, because a perturbation of both factors enters W as a product;
* layer-norm scale and bias: 1 and 0, never mutated;
* sparse entries: the dense std of their matrix, for the initial gene and (× mr) for mutations.

Beyond the paper, `encoding.factor_init: dense` scales both factors' initial stds (not their
mutation stds) so that the product starts at the dense layer's std (`factor_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class EncodingError(ValueError):
    """A configuration asks for an encoding the model cannot have (e.g. a rank above the layer's)."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of the genome."""

    name: str
    shape: tuple[int, ...]
    init_std: float          # std of the initial gene (0 → constant init_value)
    mutation_std: float      # std of a mutation gene before × mr (or × √mr for factors)
    init_value: float = 0.0  # constant added to the initial gene (1 for layer-norm scales)
    factor: bool = False     # low-rank factor: mutations scale with √mr
    mutable: bool = True     # layer norms are frozen, as in the paper

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


ALIGNMENT = 16  # elements: each spec's start in `ParamLayout.aligned` rows


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class ParamLayout:
    """An ordered set of ParamSpecs, flattened into one genome vector."""

    specs: list[ParamSpec] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    network_weights: int = 0  # weights of the developed network (W, not its factors)
    rows: list[dict] = field(default_factory=list)  # one per logical layer, for `describe`

    @property
    def dim(self) -> int:
        return sum(spec.numel for spec in self.specs)

    @property
    def sparse(self) -> bool:
        """Whether any layer is sparse-encoded (a model that ignores `sparse_for` has none)."""
        return any(row["encoding"].startswith("sparse") for row in self.rows)

    @property
    def searched_dim(self) -> int:
        """Dimensions the GA actually moves: the size of the search space."""
        return sum(spec.numel for spec in self.specs if spec.mutable)

    def add(self, spec: ParamSpec) -> str:
        if spec.name in self.offsets:
            raise EncodingError(f"parameter {spec.name!r} declared twice")
        self.offsets[spec.name] = self.dim
        self.specs.append(spec)
        return spec.name

    def describe_layer(self, name: str, kind: str, full_shape: tuple[int, ...], rank: int | None,
                       param_names: list[str], weights: int, encoding: str | None = None,
                       w_init_std: float | None = None) -> None:
        """Record one logical layer: its developed shape, its weight count (W and bias) and the
        genome entries that encode it, for `neuroevo describe` (and `sparse`). `encoding`
        names it when it is neither dense nor factorized (a sparse layer). `w_init_std` is the
        std of the developed W's entries at init (a factorized W's: of the product), None for
        a layer without one (layer norms): where the encodings start the same layer differs
        (a factorized tied embedding 23× below a dense one, the init_cpu preset's question)."""
        by_name = {spec.name: spec for spec in self.specs}
        specs = [by_name[n] for n in param_names]
        self.network_weights += weights
        if encoding is None:
            encoding = "dense" if rank is None else f"factorized r={rank}"
        self.rows.append({
            "layer": name, "kind": kind, "shape": "×".join(map(str, full_shape)),
            "encoding": encoding,
            "genome": ", ".join(f"{s.name.rsplit('.', 1)[-1]} {'×'.join(map(str, s.shape))}"
                                for s in specs),
            "weights": weights,
            "searched": sum(s.numel for s in specs if s.mutable),
            "w_init_std": w_init_std,
        })

    def views(self, theta: torch.Tensor, aligned: bool = False) -> dict[str, torch.Tensor]:
        """Split a (P, D) population into (P, *shape) views, one per spec (no copies); with
        `aligned`, a (P, aligned_dim) population from `aligned`."""
        offsets = self.aligned_offsets() if aligned else self.offsets
        out = {}
        for spec in self.specs:
            start = offsets[spec.name]
            out[spec.name] = theta[:, start:start + spec.numel].unflatten(1, spec.shape)
        return out

    def aligned_offsets(self) -> dict[str, int]:
        """Each spec's offset in a row padded so that every spec starts at a multiple of
        ALIGNMENT elements (64 bytes in fp32)."""
        offsets, end = {}, 0
        for spec in self.specs:
            offsets[spec.name] = end
            end = _round_up(end + spec.numel, ALIGNMENT)
        return offsets

    @property
    def aligned_dim(self) -> int:
        """The padded row's length, a multiple of ALIGNMENT: the last spec's end, rounded up."""
        if not self.specs:
            return 0
        last = self.specs[-1]
        return _round_up(self.aligned_offsets()[last.name] + last.numel, ALIGNMENT)

    def aligned(self, theta: torch.Tensor) -> torch.Tensor:
        """A (P, aligned_dim) copy of the population theta (P, D), each spec at its
        `aligned_offsets` entry and zeros between. Why: the genome's length (99,507 for the
        paper's dense model) is odd, so an individual's weights start at no fixed alignment and
        Triton's JIT, which marks a pointer or stride it can prove divisible by 16, cannot give
        the GPU kernels vector loads of them; in the aligned copy every row and every spec
        starts on a 64-byte boundary (gpu.ALIGNED_OPERANDS)."""
        out = theta.new_zeros(theta.shape[0], self.aligned_dim)
        for source, target, length in self._aligned_runs():
            out[:, target:target + length] = theta[:, source:source + length]
        return out

    def _aligned_runs(self) -> list[tuple[int, int, int]]:
        """(source offset, aligned offset, length) of the column blocks `aligned` copies: the
        consecutive specs that the padding moves by the same amount, one block: two strided
        copies for the paper's models instead of a scatter of every column (an index_copy, which
        the first timing on an H200 used: dense generations 1–3 ms slower with it)."""
        runs: list[tuple[int, int, int]] = []
        aligned = self.aligned_offsets()
        for spec in self.specs:
            source, target = self.offsets[spec.name], aligned[spec.name]
            if runs and runs[-1][0] + runs[-1][2] == source \
                    and target - source == runs[-1][1] - runs[-1][0]:
                runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + spec.numel)
            else:
                runs.append((source, target, spec.numel))
        return runs

    def _per_dim(self, values: list[float]) -> torch.Tensor:
        return torch.cat([torch.full((spec.numel,), v, dtype=torch.float32)
                          for spec, v in zip(self.specs, values)])

    def init_std(self) -> torch.Tensor:
        """(D,) std of the initial gene per genome dimension."""
        return self._per_dim([spec.init_std for spec in self.specs])

    def init_value(self) -> torch.Tensor:
        """(D,) constant part of the initial genome (layer-norm scales are 1)."""
        return self._per_dim([spec.init_value for spec in self.specs])

    def mutation_std(self, mutation_rate: float) -> torch.Tensor:
        """(D,) std of one mutation gene at rate mr: mutation_std·mr, or ·√mr for factors."""
        return self._per_dim([
            0.0 if not spec.mutable
            else spec.mutation_std * (math.sqrt(mutation_rate) if spec.factor else mutation_rate)
            for spec in self.specs])


# --- standard specs, shared by every model -------------------------------------------------------

BIAS_MUTATION_STD = math.sqrt(2.0)  # Kaiming normal on a vector: fan_in = 1


def kaiming_std(fan_in: int) -> float:
    return math.sqrt(2.0 / fan_in)


def factor_std(full_in: int, full_out: int, factor_fan_in: int, conv: bool = False) -> float:
    """The reference's std for one factor of a (full_out × full_in) matrix (see module docstring)."""
    if full_in > full_out and not conv:
        return math.sqrt(2.0 / factor_fan_in)
    return math.sqrt(math.sqrt(2.0) / factor_fan_in)


def product_std(std_first: float, std_second: float, rank: int) -> float:
    """The std of A·B's entries for independent zero-mean factors of these stds: each entry is a
    sum of `rank` products, so the variances add."""
    return std_first * std_second * math.sqrt(rank)


def factor_scale(reference_std: float, target_std: float | None) -> float:
    """What to multiply both factors' initial stds by for their product to start at `target_std`
    instead of `reference_std` (1 for None): the product's std scales with the square."""
    return 1.0 if target_std is None else math.sqrt(target_std / reference_std)


def check_rank(name: str, rank: int, d_in: int, d_out: int) -> None:
    """A rank above min(in, out) adds no expressiveness (A·B already reaches every W at that
    rank; its r·(in + out) entries exceed W's in·out already above in·out / (in + out)): reject
    it. Sparse layers take the same bound, so one rank sweep is valid for both encodings."""
    if rank < 1 or rank > min(d_in, d_out):
        raise EncodingError(
            f"rank {rank} for layer {name!r} ({d_out}×{d_in}) must be between 1 and "
            f"{min(d_in, d_out)}: lower encoding.rank or encoding.ranks")
