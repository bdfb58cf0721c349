"""Population-batched layers: every weight carries a leading population axis P.

A layer registers its ParamSpecs in a ParamLayout at construction and is called with the dict of
(P, *shape) views that `ParamLayout.views` cuts from a (P, D) population, so one call evaluates
every individual at once. Factorized layers never build W: a linear layer computes (x·B)·A, a
convolution runs a rank-r convolution followed by a 1×1 convolution, and the tied embedding looks
up rows of one factor and multiplies by the other.

Storage convention: activations are row vectors, so a dense linear weight is stored (in, out) and
applied as x @ W. The reference writes W as (out, in) = A·B with A (out×r) and B (r×in); here
`.B` holds Bᵀ (in×r) and `.A` holds Aᵀ (r×out), so x @ Wᵀ = (x @ Bᵀ) @ Aᵀ, and each factor keeps the
reference's name and initial std.

Sparse layers (an extension, `SparseWeight`) hold k entries of W in the genome and develop W by
writing them into a frozen matrix shared by the whole population.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from neuroevo.encoding import (
    BIAS_MUTATION_STD, ParamLayout, ParamSpec, check_rank, factor_scale, factor_std, kaiming_std,
    product_std)
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.noise import gaussian
from neuroevo.sections.encoding import SparseChoice

Params = dict[str, torch.Tensor]


def _bias(layout: ParamLayout, name: str, size: int) -> str:
    return layout.add(ParamSpec(f"{name}.bias", (size,), init_std=0.0,
                                mutation_std=BIAS_MUTATION_STD))


def _factors(layout: ParamLayout, factors: tuple[tuple[str, tuple[int, ...], float], ...],
             reference_std: float, target_std: float | None) -> tuple[list[str], float]:
    """Register a matrix's factors as (name, shape, reference std) and return their names and
    the std their product starts at. Their initial stds are scaled alike so that the product
    (of std `reference_std` at the reference's init) starts at `target_std`, None keeping the
    reference's; mutation stds stay the reference's either way."""
    scale = factor_scale(reference_std, target_std)
    names = [layout.add(ParamSpec(name, shape, std * scale, std, factor=True))
             for name, shape, std in factors]
    return names, reference_std * scale ** 2


class SparseWeight:
    """A weight matrix whose genome holds only k of its entries (lottery-ticket style search).

    k = r·(in + out), the dimensions a rank-r factorization of the same matrix searches (capped at
    the matrix size, where the encoding becomes dense), so sparse and factorized search spaces
    have the same size and differ only in structure. The other entries are frozen at a random
    init drawn once from (`encoding.sparse_seed`, layer name) with the dense init distribution,
    shared by every individual and every run seed, like the architecture.

    The genome's k values *replace* the frozen entries. They start from each individual's own
    initial gene with the dense init std and mutate with the dense rule (std·mr), so at k = in·out
    the encoding is exactly dense. Selection `random` picks k entries uniformly (seeded);
    `magnitude` picks the k largest |init|, leaving the frozen remainder the weakest part of the
    random matrix.
    """

    def __init__(self, layout: ParamLayout, name: str, shape: tuple[int, ...], init_std: float,
                 choice: SparseChoice, k: int, mutation_std: float | None = None) -> None:
        self.name, self.shape, self.choice = f"{name}.values", shape, choice
        numel = math.prod(shape)
        self.k = min(k, numel)
        layer_seed = (choice.seed << 32) | zlib.crc32(name.encode())
        # drawn on the CPU whatever the run's device, so every device develops the same weights
        self.base = init_std * gaussian([layer_seed], numel)[0]                   # (n,)
        if choice.selection == "magnitude":
            index = torch.topk(self.base.abs(), self.k).indices
        else:
            rng = np.random.default_rng([choice.seed, zlib.crc32(name.encode())])
            index = torch.as_tensor(rng.choice(numel, self.k, replace=False))
        self.index = index.sort().values                                           # (k,)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        layout.add(ParamSpec(self.name, (self.k,), init_std,
                             init_std if mutation_std is None else mutation_std))

    @property
    def label(self) -> str:
        return f"sparse k={self.k} ({self.choice.selection}, r={self.choice.rank})"

    def develop(self, p: Params) -> torch.Tensor:
        """(P, *shape): the frozen matrix with each individual's k values written in."""
        values = p[self.name]                                                      # (P, k)
        if values.device not in self._on_device:
            self._on_device[values.device] = (self.base.to(values.device),
                                              self.index.to(values.device))
        base, index = self._on_device[values.device]
        full = base.expand(values.shape[0], -1).index_copy(1, index, values)      # (P, n)
        return full.view(values.shape[0], *self.shape)


class Linear:
    """y = x·W + b for every individual; W dense (in, out), factorized (x·B)·A at rank r, or
    sparse (k entries of W searched, `sparse` given). With `dense_start`, the factors start
    scaled so that W's entries start at the dense std (`encoding.factor_init: dense`)."""

    def __init__(self, layout: ParamLayout, name: str, d_in: int, d_out: int,
                 rank: int | None = None, bias: bool = True, kind: str = "linear",
                 sparse: SparseChoice | None = None, dense_start: bool = False) -> None:
        self.name, self.rank, self.sparse = name, rank, None
        w_std = kaiming_std(d_in)  # W's entries at init, dense or sparse
        if sparse is not None:
            check_rank(name, sparse.rank, d_in, d_out)
            self.sparse = SparseWeight(layout, name, (d_in, d_out), w_std, sparse,
                                       k=sparse.rank * (d_in + d_out))
            names = [self.sparse.name]
        elif rank is None:
            names = [layout.add(ParamSpec(f"{name}.weight", (d_in, d_out), w_std, w_std))]
        else:
            check_rank(name, rank, d_in, d_out)
            std_b = factor_std(d_in, d_out, factor_fan_in=d_in)  # B: r×in, fan_in = in
            std_a = factor_std(d_in, d_out, factor_fan_in=rank)  # A: out×r, fan_in = r
            names, w_std = _factors(
                layout, ((f"{name}.B", (d_in, rank), std_b), (f"{name}.A", (rank, d_out), std_a)),
                product_std(std_b, std_a, rank), w_std if dense_start else None)
        self.bias = bias
        if bias:
            names.append(_bias(layout, name, d_out))
        layout.describe_layer(name, kind, (d_out, d_in), rank, names,
                              weights=d_in * d_out + (d_out if bias else 0),
                              encoding=self.sparse.label if self.sparse else None,
                              w_init_std=w_std)

    def weight(self, p: Params) -> torch.Tensor:
        """(P, in, out) W of an unfactorized layer: the genome's, or the developed sparse one."""
        if self.sparse is not None:
            return self.sparse.develop(p)
        return p[f"{self.name}.weight"]

    def __call__(self, p: Params, x: torch.Tensor,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (P, N, in) → (P, N, out); with `residual` (P, N, out), returns residual + x·W + b.

        The residual rides in the GEMM's accumulator (baddbmm with a full-size `input`), and the
        bias is added in place to the fresh output: on a CPU these tiny layers are bound by memory
        passes, not FLOPs, and baddbmm with a broadcast (P, 1, out) bias measured ~1.2–3× slower
        than bmm + add_ here. Nothing the caller holds is modified, so autograd (gradient.py) works.
        """
        if self.rank is None:
            w = self.weight(p)                                              # (P, in, out)
        else:
            x = torch.bmm(x, p[f"{self.name}.B"])                           # (P, N, r)
            w = p[f"{self.name}.A"]                                         # (P, r, out)
        out = torch.bmm(x, w) if residual is None else torch.baddbmm(residual, x, w)
        return _add_bias(out, p[f"{self.name}.bias"]) if self.bias else out

    def operands(self, p: Params) -> cpu_kernels.LinearOperands:
        """(B, A, bias) for a factorized layer, else (None, W, bias): what a kernel that applies
        the layer itself needs (neuroevo/kernels). A sparse layer's W is developed here."""
        bias = p[f"{self.name}.bias"] if self.bias else None
        if self.rank is None:
            return None, self.weight(p), bias
        return p[f"{self.name}.B"], p[f"{self.name}.A"], bias


def _add_bias(out: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """out (P, N, d) += bias (P, d), in place: `out` is a fresh GEMM result that no backward
    needs (bmm saves its inputs, not its output), so this is autograd-safe too."""
    return out.add_(bias.unsqueeze(1))


def fused_linear(layers: list[Linear], p: Params, x: torch.Tensor) -> torch.Tensor:
    """Several linear layers reading the same x, as one GEMM: x (P, N, in) → (P, N, Σ out).

    Attention's Q, K and V are three (hidden → 16) maps; one (hidden → 48) GEMM costs a third of
    the calls. Factorized layers concatenate their B factors and multiply by a block-diagonal
    stack of their A factors, so W is still never built. Every layer must have a bias (one
    concatenated bias is added to the fused product).
    """
    if not all(layer.bias for layer in layers):
        raise ValueError(f"fused_linear needs biased layers: {[layer.name for layer in layers]}")
    if all(layer.rank is None for layer in layers):
        w = torch.cat([layer.weight(p) for layer in layers], dim=2)            # (P, in, Σout)
    elif all(layer.rank is not None for layer in layers):
        x = torch.bmm(x, torch.cat([p[f"{layer.name}.B"] for layer in layers], dim=2))
        w = _block_diagonal([p[f"{layer.name}.A"] for layer in layers])      # (P, Σr, Σout)
    else:
        return torch.cat([layer(p, x) for layer in layers], dim=2)
    return _add_bias(torch.bmm(x, w), torch.cat([p[f"{layer.name}.bias"] for layer in layers],
                                                dim=1))


def _block_diagonal(blocks: list[torch.Tensor]) -> torch.Tensor:
    """(P, r_i, o_i) blocks → (P, Σ r_i, Σ o_i) with the blocks on the diagonal."""
    rows, cols = sum(b.shape[1] for b in blocks), sum(b.shape[2] for b in blocks)
    out = blocks[0].new_zeros(blocks[0].shape[0], rows, cols)
    r = c = 0
    for block in blocks:
        out[:, r:r + block.shape[1], c:c + block.shape[2]] = block
        r, c = r + block.shape[1], c + block.shape[2]
    return out


class TiedEmbedding:
    """Token embedding E (vocab, hidden) shared with the output projection, as in the paper.

    Dense E starts N(0, 1) (a plain Gaussian, not Kaiming). Factorized, E = Bᵀ·Aᵀ with Bᵀ
    (vocab, r) and Aᵀ (r, hidden); the full matrix is hidden×vocab with in = vocab > out, so both
    factors use std √(2/fan_in), and E's entries start with std √(r·(2/vocab)·(2/r)) = 2/√vocab
    at every rank. The output bias (vocab,) starts at std √2 like the reference.

    `init_std` (beyond the paper) sets the std of E's initial entries instead — each factor's
    initial std scaled by the same √(init_std / (2/√vocab)) — while every mutation std stays the
    reference's: the two encodings can then start from one scale and differ in how they search.
    `dense_start` (`encoding.factor_init: dense`) is `init_std` 1, a dense E's, unless given.
    """

    def __init__(self, layout: ParamLayout, name: str, vocab: int, hidden: int,
                 rank: int | None = None, sparse: SparseChoice | None = None,
                 init_std: float | None = None, dense_start: bool = False) -> None:
        self.name, self.rank, self.sparse = name, rank, None
        entry_std = 1.0  # a dense E's entries, at init (unless init_std) and in mutations (× mr)
        if init_std is None and dense_start:
            init_std = entry_std
        w_std = init_std or entry_std  # E's entries at init, dense or sparse
        if sparse is not None:
            check_rank(name, sparse.rank, vocab, hidden)
            self.sparse = SparseWeight(layout, name, (vocab, hidden), w_std,
                                       sparse, k=sparse.rank * (vocab + hidden),
                                       mutation_std=entry_std)
            names = [self.sparse.name]
        elif rank is None:
            names = [layout.add(ParamSpec(f"{name}.weight", (vocab, hidden), w_std, entry_std))]
        else:
            check_rank(name, rank, vocab, hidden)
            std_b = factor_std(vocab, hidden, factor_fan_in=vocab)
            std_a = factor_std(vocab, hidden, factor_fan_in=rank)
            names, w_std = _factors(  # the reference's product starts at std 2/√vocab
                layout, ((f"{name}.B", (vocab, rank), std_b), (f"{name}.A", (rank, hidden), std_a)),
                product_std(std_b, std_a, rank), init_std)
        names.append(layout.add(ParamSpec(f"{name}.out_bias", (vocab,), BIAS_MUTATION_STD,
                                          BIAS_MUTATION_STD)))
        layout.describe_layer(name, "embedding (tied)", (hidden, vocab), rank, names,
                              weights=vocab * hidden + vocab,
                              encoding=self.sparse.label if self.sparse else None,
                              w_init_std=w_std)

    def _weight(self, p: Params) -> torch.Tensor:
        """(P, vocab, H) E of an unfactorized embedding (the genome's, or developed sparse)."""
        if self.sparse is not None:
            return self.sparse.develop(p)
        return p[f"{self.name}.weight"]

    def embed(self, p: Params, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N,) shared by all individuals → (P, N, hidden)."""
        table, factor = self.lookup_operands(p)
        # advanced indexing, not index_select: the latter copies the strided (P, V, ·) view
        rows = table[:, tokens]                                              # (P, N, H or r)
        return rows if factor is None else torch.bmm(rows, factor)           # (P,N,r)·(P,r,H)

    def lookup_operands(self, p: Params) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What `embed` looks tokens up in (a fused kernel too): (E (P, vocab, H), None), or
        factorized (B (P, vocab, r), A (P, r, H)), the embedding being B[token]·A."""
        if self.rank is None:
            return self._weight(p), None
        return p[f"{self.name}.B"], p[f"{self.name}.A"]

    def output_projection(self, p: Params) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The hidden→logits map as (M, inner): logits = (h·inner)·Mᵀ + bias.

        Dense: M = E (vocab, H), inner None. Factorized: M = Bᵀ (vocab, r), inner = A (H, r), so the
        logits GEMM runs at K = r instead of K = hidden.
        """
        table, factor = self.lookup_operands(p)
        return table, None if factor is None else factor.transpose(1, 2)

    def out_bias(self, p: Params) -> torch.Tensor:
        return p[f"{self.name}.out_bias"]                                    # (P, vocab)


class LayerNorm:
    """Layer norm with scale 1 and bias 0 that the GA never mutates (the paper's no_layer_norm)."""

    def __init__(self, layout: ParamLayout, name: str, size: int, eps: float = 1e-7) -> None:
        self.name, self.size, self.eps = name, size, eps
        names = [layout.add(ParamSpec(f"{name}.scale", (size,), 0.0, 0.0, init_value=1.0,
                                      mutable=False)),
                 layout.add(ParamSpec(f"{name}.bias", (size,), 0.0, 0.0, mutable=False))]
        layout.describe_layer(name, "layer norm (frozen)", (size,), None, names, weights=2 * size)

    def __call__(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """x (P, ..., size) → same shape.

        Frozen parameters start constant (init std 0) and are never mutated, so every individual
        holds the same scale and bias: row 0 serves the whole population in the fused kernel.
        """
        return F.layer_norm(x, (self.size,), *self.scale_shift(p), eps=self.eps)

    def scale_shift(self, p: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """The (size,) scale and shift every individual shares (row 0 of the frozen rows)."""
        return p[f"{self.name}.scale"][0], p[f"{self.name}.bias"][0]


# Kernels of at least this many weights per individual run as unfold + bmm, not as a grouped
# convolution: at P = 64, one observation each, MKL-DNN's grouped convolution measured 12.5 vs
# 4.5 ms (CarRacing conv3, 64→128, 4×4, 14² input) and 42.5 vs 8.2 ms (conv4, 128→256, 6² input),
# where the work is reading the weights; on the smaller Atari and CarRacing kernels (≤ 37K
# weights) it was the faster of the two (1.3–3.6 vs 2.3–9.1 ms). A static rule, so that the
# choice, and the rounding, never depend on timing.
UNFOLD_MIN_WEIGHTS = 65_536

# On CPU, convolutions reading at most this many channels into at least one SIMD vector of outputs
# (the first layer of the Atari and CarRacing nets: 12 → 32) run in the fused C kernel: at P = 64,
# one observation each, 5.7 vs 12.2 ms (Atari 8×8 s4 on 84²) and 3.6 vs 7.6 ms (CarRacing 4×4 s2
# on 64²) against the grouped convolution; on the deeper layers its per-individual kernel
# transpose costs more than it saves (measured 1.4–3.7× slower there).
DIRECT_MAX_IN_CHANNELS = 16
DIRECT_MIN_OUT_CHANNELS = 16


class Conv2d:
    """A convolution per individual, run as one grouped convolution with groups = P.

    Activations travel population-folded: (N, P·C, H, W), N observations per individual. The
    factorized form is the reference's: the kernel is A·B reshaped, A (kh·kw·cin × r) and
    B (r × cout), halved; here that is a rank-r convolution (kernel A) followed by a 1×1
    convolution (kernel B), times ½. Conv factors always use the √(√2/fan_in) branch. Large
    unfactorized kernels run as unfold + one bmm instead (`UNFOLD_MIN_WEIGHTS`), and on CPU
    first layers (few input channels) in a fused C kernel (`DIRECT_MAX_IN_CHANNELS`). With
    `dense_start`, the factors start scaled so that the kernel's entries start at the dense std.
    """

    def __init__(self, layout: ParamLayout, name: str, c_in: int, c_out: int, kernel: int,
                 stride: int, rank: int | None = None, sparse: SparseChoice | None = None,
                 dense_start: bool = False) -> None:
        self.name, self.rank, self.stride, self.sparse = name, rank, stride, None
        self.c_in, self.c_out, self.kernel = c_in, c_out, kernel
        fan_in = kernel * kernel * c_in
        w_std = kaiming_std(fan_in)  # the kernel's entries at init, dense or sparse
        if sparse is not None:  # k matches the rank-r conv factors: r·(kh·kw·cin + cout)
            check_rank(name, sparse.rank, fan_in, c_out)
            self.sparse = SparseWeight(layout, name, (c_out, c_in, kernel, kernel), w_std, sparse,
                                       k=sparse.rank * (fan_in + c_out))
            names = [self.sparse.name]
        elif rank is None:
            names = [layout.add(ParamSpec(f"{name}.weight", (c_out, c_in, kernel, kernel),
                                          w_std, w_std))]
        else:
            check_rank(name, rank, fan_in, c_out)
            std_a = factor_std(fan_in, c_out, factor_fan_in=rank, conv=True)
            std_b = factor_std(fan_in, c_out, factor_fan_in=c_out, conv=True)
            names, w_std = _factors(  # the product halved, as `developed_kernel`
                layout, ((f"{name}.A", (rank, c_in, kernel, kernel), std_a),
                         (f"{name}.B", (c_out, rank), std_b)),
                0.5 * product_std(std_a, std_b, rank), w_std if dense_start else None)
        names.append(_bias(layout, name, c_out))
        layout.describe_layer(name, "conv", (c_out, c_in, kernel, kernel), rank, names,
                              weights=fan_in * c_out + c_out,
                              encoding=self.sparse.label if self.sparse else None,
                              w_init_std=w_std)

    def __call__(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """x (N, P·c_in, H, W) → (N, P·c_out, H', W')."""
        pop = p[f"{self.name}.bias"].shape[0]
        bias = p[f"{self.name}.bias"].reshape(pop * self.c_out)              # (P·cout,)
        if self.rank is None:
            if (self.c_in <= DIRECT_MAX_IN_CHANNELS and self.c_out >= DIRECT_MIN_OUT_CHANNELS
                    and cpu_kernels.usable(x)):
                return cpu_kernels.conv2d_population(x, self._weight(p),
                                                     p[f"{self.name}.bias"], self.stride)
            if self.c_out * self.c_in * self.kernel ** 2 >= UNFOLD_MIN_WEIGHTS:
                return self._unfolded(x, self._weight(p), p[f"{self.name}.bias"])
            kernel = self._weight(p).reshape(pop * self.c_out, self.c_in, self.kernel,
                                             self.kernel)
            return F.conv2d(x, kernel, bias, stride=self.stride, groups=pop)
        kernel_a = p[f"{self.name}.A"].reshape(pop * self.rank, self.c_in, self.kernel,
                                               self.kernel)
        low = F.conv2d(x, kernel_a, stride=self.stride, groups=pop)           # (N, P·r, H', W')
        kernel_b = (0.5 * p[f"{self.name}.B"]).reshape(pop * self.c_out, self.rank, 1, 1)
        return F.conv2d(low, kernel_b, bias, groups=pop)

    def _unfolded(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor
                  ) -> torch.Tensor:
        """The convolution as patches × kernel: x (N, P·cin, H, W), kernel (P, cout, cin, k, k),
        bias (P, cout) → (N, P·cout, H', W'). With N = 1, every reshape but the unfold is a view."""
        n, pop = x.shape[0], kernel.shape[0]
        h_out = (x.shape[2] - self.kernel) // self.stride + 1
        w_out = (x.shape[3] - self.kernel) // self.stride + 1
        cols = F.unfold(x.reshape(n * pop, self.c_in, *x.shape[2:]), self.kernel,
                        stride=self.stride)                                  # (N·P, cin·k², L)
        cols = cols.view(n, pop, cols.shape[1], -1).permute(1, 2, 0, 3).reshape(
            pop, cols.shape[1], -1)                                          # (P, cin·k², N·L)
        out = torch.baddbmm(bias.unsqueeze(2), kernel.reshape(pop, self.c_out, -1), cols)
        out = out.view(pop, self.c_out, n, h_out * w_out).permute(2, 0, 1, 3)  # (N, P, cout, L)
        return out.reshape(n, pop * self.c_out, h_out, w_out)

    def developed_kernel(self, p: Params) -> torch.Tensor:
        """The full (P, cout, cin, k, k) kernel a factorized conv stands for (tests, analysis)."""
        if self.rank is None:
            return self._weight(p)
        a = p[f"{self.name}.A"].flatten(2)                                   # (P, r, cin·k·k)
        w = 0.5 * torch.bmm(p[f"{self.name}.B"], a)                          # (P, cout, cin·k·k)
        return w.unflatten(2, (self.c_in, self.kernel, self.kernel))

    def _weight(self, p: Params) -> torch.Tensor:
        """(P, cout, cin, k, k) kernel of an unfactorized conv (the genome's, or sparse)."""
        if self.sparse is not None:
            return self.sparse.develop(p)
        return p[f"{self.name}.weight"]


def developed_linear_weight(layer: Linear, p: Params) -> torch.Tensor:
    """The (P, in, out) matrix a linear layer stands for: W itself, or Bᵀ·Aᵀ for factors."""
    if layer.rank is None:
        return layer.weight(p)
    return torch.bmm(p[f"{layer.name}.B"], p[f"{layer.name}.A"])
