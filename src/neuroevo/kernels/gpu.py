"""Fused GPU kernels for the paper's transformer (Triton), and when to use them.

Why: at hidden 32 a population-batched torch forward is a stream of tiny per-individual GEMMs
and element-wise passes over (P, tokens, ·) activations, plus (P, tokens, 2051) logits written
and read back for the cross-entropy; at the issue-#6 setting (P = 512, 256 × 128 tokens) the
logits alone are 137 GB of fp32 traffic per generation. These kernels keep everything between a
sub-layer's input and output on chip, and reduce the logits to one log-likelihood per token
without storing them (neuroevo/kernels/triton_lm.py says how).

Used on CUDA tensors without autograd, outside torch.compile, when Triton imports and
`NEUROEVO_GPU_KERNELS` is not 0; otherwise the model's torch ops run (the reference they are
tested against, tests/test_gpu_kernels.py, on CPU through Triton's interpreter). Matrix products
follow the run's precision: autocast to bf16 → bf16 operands, TF32 allowed
(`torch.set_float32_matmul_precision("high")`) → TF32, task.precision tf32x3
(`use_split_tf32`) → three TF32 products of split operands, else IEEE fp32.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator
from types import ModuleType

import torch

from neuroevo.kernels.cpu import LinearOperands, factored_rows, per_individual
from neuroevo.sections.language import PRECISIONS

IEEE, TF32, BF16, TF32X3 = 0, 1, 2, 3  # the kernels' PRECISION codes for their matrix products
# Each PRECISION code by the task.precision that asks for it (fp32, tf32, bf16, tf32x3)
PRECISION_NAMES = dict(zip((IEEE, TF32, BF16, TF32X3), PRECISIONS, strict=True))
MIN_DOT = 16  # tl.dot needs every dimension ≥ 16: narrower operands are zero-padded on chip
# Launch configuration, timed on an H100 (bench/triton_sweep.py, Triton 3.6, dense, TF32, P = 512,
# 256 × 128 tokens; bench/RESULTS.md): 4 warps a program beat 8 for every kernel in TF32 (the
# attention 13.6 vs 33.5 ms a call), 128 rows a program beat 64 and 256, and 64-entry vocabulary
# tiles beat 128 (20.7 vs 24.4 ms). IEEE fp32 keeps the register-count choices (ptxas for sm_90,
# bench/triton_compile_check.py): its products need more registers, and with 4 warps or 128 rows
# its kernels spilled up to 26 KB a thread. Rows (tokens) a program, by precision: every program
# re-reads its individual's weights (the 2051 × 32 embedding: 262 KB) from L2, so more rows
# mean less of that traffic.
# TF32X3: IEEE's 64 rows (its three products need registers like IEEE's), TF32's 4 warps and
# 64-entry vocabulary tiles: on the H100 these beat 128 rows and 8 warps for every kernel.
FEED_FORWARD_ROWS = {IEEE: 64, TF32: 128, BF16: 128, TF32X3: 64}
LOSS_ROWS = {IEEE: 64, TF32: 128, BF16: 128, TF32X3: 64}
VOCAB_BLOCK = {IEEE: 128, TF32: 64, BF16: 64, TF32X3: 64}  # vocabulary entries per log-sum-exp tile
# Attention: queries per program (× heads, stacked) and keys per step of its online softmax.
# 32 × 32 beat 16–64 × 16–64 (dense TF32: 10.8 ms a call, 64 × 32 12.8 ms; second H100 session,
# the heads-stacked kernel); with exp2 and stored keys/values 64 × 32 won (fourth H100 session,
# 2026-11-27, 3 pipelining stages: 9.2 vs 10.1 ms a call at 128 tokens, 9.5 vs 10.1 at 512;
# generations at the fixed setting 63.5 vs 66.2 ms dense, 74.7 vs 74.6 factorized; the paper's
# lengths 0.576 vs 0.584 s dense).
QUERY_BLOCK = 64
KEY_BLOCK = 32
NUM_WARPS = {IEEE: 8, TF32: 4, BF16: 4, TF32X3: 4}
# Software-pipelining depth of the kernels' loops (Triton's num_stages; 3 is its default for CUDA,
# what every timing so far used). Loads that do not depend on the loop's products (the stored
# keys and values, ATTENTION_KV_STORED; the loss's vocabulary tiles) can be fetched stages ahead.
NUM_STAGES = {IEEE: 3, TF32: 3, BF16: 3, TF32X3: 3}
# Registers a thread ptxas may give the attention and loss kernels (Triton's `maxnreg`; 0: its
# own choice). Why: under Nsight Compute (sixth H100 session, bench/RESULTS.md) the attention
# kernel took 255 registers a thread, so an SM held 2 of its 4-warp programs (12.5% occupancy)
# and half the issue slots went unused while both of a scheduler's warps waited; ≤ 168 fits 3
# programs an SM, ≤ 128 fits 4, at the price of spills to local memory (ptxas for sm_90a: 144 B
# at 168, 556 B at 128; at 32-query blocks 187 uncapped, 168 without spills). The loss kernel
# takes 149: 3 programs an SM, 4 at ≤ 128 (40 B spilled). Written without a GPU (session 20).
# On an H200 the same day (a call at P = 512, 256 × 128 tokens): the attention's caps lost
# (64-query blocks 8.49 ms uncapped, 8.94 at 168, 9.93 at 128; 32-query 10.35 vs 10.47 at 168),
# the loss's at 128 won (15.32 vs 16.22 ms). 0 until an H100 session times them at both
# settings (`bash bench/gpu_check.sh occupancy`).
ATTENTION_MAX_REGISTERS = 0
LOSS_MAX_REGISTERS = 0
# The attention kernel's levers (session 7, written without a GPU; timed on the H100 in session 9,
# bench/RESULTS.md, dense TF32, 32 × 32 blocks, 4 warps, a call at P = 512). EXP2: log2(e) folded
# into the query scale and exp2 taken, one multiply less per score. KV_STORED: keys and values
# projected once per row by a pre-pass (`key_value_kernel`, 2 × width floats a row more memory
# traffic) instead of from x in every query block. Both on: 9.9 vs 10.8 ms at 256 × 128 tokens,
# 9.7 vs 12.7 ms at 32 × 512. CAUSAL_SPLIT: the causal mask only on key blocks that straddle the
# diagonal, a second loop over the blocks wholly below it. With 32-query blocks it lost at 128
# tokens (10.7 vs 9.9 ms a call) and won at 512 (9.5 vs 9.7 ms) and in dense generations at the
# paper's lengths (0.559 vs 0.584 s; fourth H100 session, 2026-11-27); with 64-query blocks it
# tied at 128 tokens (63.1 vs 63.5 ms) and at the paper's lengths beat a split only from 256
# tokens (0.548 vs 0.550 s): on at every length.
ATTENTION_CAUSAL_SPLIT = True
ATTENTION_EXP2 = True
ATTENTION_KV_STORED = True
# The softmax without its running max: each query's exponentials shifted by its score against
# its own key (always among its keys, so their sum is ≥ 1 and cannot underflow), not by the
# running max of its scores, which costs a row-wise max, a rescaling exponential and a multiply
# of the sum and the (rows, width) accumulator at every key block. Only where a score lies ~88
# nats above the diagonal's (exp overflows fp32) or is NaN does a block of queries go through
# the online softmax after all (a test covers it). Same exponentials; results equal to rounding.
# Written without a GPU (session 16); on the H100 (sixth session, 2026-11-28, TF32, a call at
# P = 512, 64 × 32 blocks, 3 stages) it lost at 256 × 128 tokens (9.58 vs 9.14 ms) and won at
# 32 × 512 (7.85 vs 8.15 ms): off, one setting each, until a session times it at the paper's
# lengths alone.
ATTENTION_SHIFT_BY_DIAGONAL = False
# Two attention levers written without a GPU lost there (sixth session) and were removed: the
# heads one at a time (13.73 vs 9.14 ms at 128 tokens, 12.65 vs 8.15 at 512) and bf16 operands
# for the probabilities × values product (9.42 vs 9.14, 9.09 vs 8.15 ms; bench/RESULTS.md). A
# third (session 20), the heads side by side along the score columns (a quarter of the
# accumulator), lost on an H200 (32-query blocks: 15.42 vs 10.35 ms) and faulted at 64-query
# blocks (illegal memory access, Triton 3.6): removed too.
# The feed-forward kernel's hidden layer in this many column chunks, clamped so that a chunk stays
# ≥ MIN_DOT columns wide. 1 (whole) beat 2 and 4 at 128 rows and 4 warps on the H100 (3.0 vs
# 3.2 and 3.6 ms), although ptxas reports 288 B of spills for it in TF32.
FEED_FORWARD_SPLIT = 1
# (bf16 operands for the second layer alone, written without a GPU, gave fitnesses 5 nats off
# and an illegal memory access there in the sixth session, as whole bf16 launches did in the
# first: removed.)
# The same exp2 lever for the loss kernel: x and the bias scaled by log2(e) as they are loaded
# (per row and per tile, not per logit), then bare exp2s over the vocabulary: 20.1 vs 20.8 ms.
LOSS_EXP2 = True
# The loss's log-sum-exp without its running max, as ATTENTION_SHIFT_BY_DIAGONAL: the exponentials
# shifted by the target's logit, which the kernel computes before its vocabulary walk (the sum is
# ≥ 1: the target's own term), so the loss is log Σ exp(logit − target logit) directly; rows with
# a logit ~88 nats above their target's go through the online walk. Written without a GPU
# (session 16); with LOSS_TAIL_SPLIT, on the H100 (sixth session, 2026-11-28, TF32, a call at
# P = 512, 256 × 128 tokens; bench/RESULTS.md): below.
LOSS_SHIFT_BY_TARGET = True
# The loss kernel's vocabulary tiles that lie wholly inside the vocabulary (32 of the 33 at 2051
# entries and 64-entry tiles) walked without bounds masks, the partial last one apart, as
# ATTENTION_CAUSAL_SPLIT does for the diagonal: PTX for sm_90a, dense TF32, 670 instructions a
# tile shipped, 565 without masks (473 with LOSS_SHIFT_BY_TARGET too). Same arithmetic, same
# results. Written without a GPU (session 16). The two on the H100 (sixth session): dense
# 20.30 ms a call with neither, 17.68 with the split, 17.64 with the shift, 15.98 with both;
# factorized r4 23.75, 21.46, 21.46, 21.75 ms; at the paper's lengths a generation's loss
# calls took 0.112 vs 0.141 s dense, 0.140 vs 0.169 s factorized r4 (with the attention
# levers above on too, which the loss kernel does not read). Both on.
LOSS_TAIL_SPLIT = True
# A factorized tied embedding's logits are (h·Aᵀ)·Bᵀ: the loss kernel can take h's scored rows
# and A and form h·Aᵀ on chip (a (rows, hidden) × (hidden, r) product per program) instead of
# torch's gather of the rows and bmm before it. It does so for embedding ranks up to this one
# (0: never). On the H100 (fifth session, 2026-11-27, TF32, a call at P = 512, 256 × 128 tokens)
# it won at rank 4 (the rank-1 model's embedding: 16.0 vs 18.7 ms) and lost at rank 32 (the
# rank-4 model's: 24.3 vs 23.7 ms); ranks between were not timed.
LOSS_FACTOR_ON_CHIP = 4
# The embedding lookup and the rotary position encoding as one kernel (`embedding_rotary`)
# instead of torch's gather, (factorized) bmm and ~10 element-wise passes of the rotation over
# (P, tokens, ·) tensors (~40 ms of a dense and ~55 ms of a factorized r4 generation at the
# paper's lengths on the H100, fourth session's profile); the kernel takes 21 and 16 ms there
# (fifth session). With LOSS_FACTOR_ON_CHIP, TF32 generations at P = 512, 256 × 128 tokens:
# dense 60.9 vs 63.3 ms, factorized r4 65.7 vs 71.5 ms, r1 56.4 vs 62.6 ms (bench/RESULTS.md).
# EMBED_ROWS: tokens a program; swept alone there: 32 rows best dense (3.19 vs 3.41 ms at 128),
# 256 best factorized r4 (2.15 vs 2.41 ms); 128 is within 0.3 ms of the best for both.
EMBED_KERNEL = True
EMBED_ROWS = 128
# The population's weights copied once a generation (zeros, then a copy per block of columns the
# padding moves alike: ~0.6 GB of traffic at the paper's P = 512, well under a millisecond on an
# H100) into rows padded so that every row and tensor starts on a 64-byte boundary
# (encoding.ParamLayout.aligned), before the kernels read them. Why: the paper's genome length
# (99,507 dense, 75,955 factorized r4) is odd, so individual p's weights start p · D floats in, at
# no alignment Triton's JIT can prove, and it compiles their loads as 4-byte scalars (ptxas for
# sm_90a: the loss kernel's 145 of 155 global loads, the feed-forward's 89 of 97); in the padded
# rows the strides are multiples of 16 and the loads can be 16-byte vectors. Written without a GPU
# (session 20); on an H200 the loss part of a generation took 0.5–1.6 ms less with it, but whole
# dense generations 1–3 ms more with the copy then one index_copy over every column (now
# replaced). Off until `bash bench/gpu_check.sh occupancy` times it.
ALIGNED_OPERANDS = False
# Products in a precision that Triton 3.6 miscompiled on the H100 (2026-11-26; bench/RESULTS.md),
# by (precision, whether the launch has factorized operands) → the precision used instead, the
# nearest that ran right there. `bench/triton_sweep.py --isolate --unverified`, one process per
# launch configuration, found illegal memory accesses and outputs whole units off in some
# configurations of the bf16 feed-forward kernel (dense; factorized bf16 untried), and of the
# factorized model's TF32 and TF32X3 feed-forward (and TF32 attention) kernels, but only with 8
# warps: with the tuned constants above (4 warps) those ran right in the sweep, in the kernels'
# tests and at both benchmark settings (TF32 within 3e-4 nats of fp32, TF32X3 within 6e-6), so
# neither is in the table. Dense TF32 and IEEE ran right in every configuration. Rerun the
# sweep on a new Triton or GPU, or with new constants, before changing this table
# (NEUROEVO_GPU_KERNELS=unverified ignores it).
FAULTED_ON_GPU: dict[tuple[int, bool], int] = {(BF16, False): TF32, (BF16, True): IEEE}


_switched_off = False
_split_tf32 = False  # use_split_tf32


def usable(x: torch.Tensor) -> bool:
    """Whether the Triton kernels replace torch's ops for activations x: on CUDA, and
    `eligible`."""
    return x.is_cuda and eligible(x)


def available() -> bool:
    """Whether calls made now would use the kernels where eligible: Triton present, not switched
    off (what sizes the population chunks: torch's ops need wider activations)."""
    return not _switched_off and kernels() is not None


def eligible(x: torch.Tensor) -> bool:
    """Everything but the device (tests run the kernels on CPU through Triton's interpreter):
    float32 x, or bf16, which a factorized embedding's bmm gives under autocast and the kernels
    read as float32; no autograd; not inside torch.compile; Triton present; not switched off."""
    return (x.dtype in (torch.float32, torch.bfloat16) and available()
            and not torch.is_grad_enabled() and not torch.compiler.is_compiling())


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """torch's ops instead of the kernels within: the reference they are held to
    (bench/bench_lm.py's fitness deviation)."""
    global _switched_off
    previous, _switched_off = _switched_off, True
    try:
        yield
    finally:
        _switched_off = previous


@functools.cache
def kernels() -> ModuleType | None:
    """neuroevo.kernels.triton_lm, or None without Triton or with NEUROEVO_GPU_KERNELS=0."""
    if not triton_allowed():
        return None
    from neuroevo.kernels import triton_lm
    return triton_lm


def triton_allowed() -> bool:
    """Whether any Triton kernel may run: Triton installed and NEUROEVO_GPU_KERNELS not 0 (the
    language model's kernels here and the GA's noise kernel, gpu_noise.py)."""
    return (os.environ.get("NEUROEVO_GPU_KERNELS", "1") != "0"
            and importlib.util.find_spec("triton") is not None)


def attention_layer_norm(x: torch.Tensor, batch: int, q: LinearOperands, k: LinearOperands,
                         v: LinearOperands, out: LinearOperands, scale: torch.Tensor,
                         shift: torch.Tensor, eps: float, n_heads: int, head_dim: int
                         ) -> torch.Tensor:
    """LN(x + out(causal multi-head attention(q(x), k(x), v(x)))) · scale + shift, as a new
    tensor (other programs read x's rows as keys, so not in place); x (P, B·T, C), each of the
    B sequences attended separately (the arguments of `cpu.attention_layer_norm`)."""
    x = x.float().contiguous()
    pop, n_rows, n_cols = x.shape
    seq_len, width = n_rows // batch, n_heads * head_dim
    result = torch.empty_like(x)
    maps = [_Operands(ops, x) for ops in (q, k, v, out)]
    precision = launch_precision(any(m.factorized for m in maps))
    keys, values = _keys_values(x, maps[1], maps[2], precision) if ATTENTION_KV_STORED else (x, x)
    sm_scale = head_dim ** -0.5 * (math.log2(math.e) if ATTENTION_EXP2 else 1.0)
    _launch(kernels().attention_layer_norm_kernel, (_cdiv(seq_len, QUERY_BLOCK), batch, pop),
        precision,
        x, result, seq_len, n_rows, n_cols, width, *(a for m in maps for a in m.args()),
        scale.contiguous(), shift.contiguous(), eps, sm_scale, keys, values,
        HEAD_DIM=head_dim, N_HEADS=n_heads, BLOCK_H=1 << (n_heads - 1).bit_length(),
        BLOCK_Q=QUERY_BLOCK, BLOCK_K=KEY_BLOCK,
        BLOCK_C=_block(n_cols), BLOCK_W=_block(width),
        **{f"BLOCK_R{name}": m.block_rank for name, m in zip("QKVO", maps)},
        **{f"FACT_{name}": m.factorized for name, m in zip("QKVO", maps)},
        **{f"BIAS_{name}": m.has_bias for name, m in zip("QKVO", maps)},
        CAUSAL_SPLIT=ATTENTION_CAUSAL_SPLIT, EXP2=ATTENTION_EXP2, KV_STORED=ATTENTION_KV_STORED,
        SHIFT_BY_DIAGONAL=ATTENTION_SHIFT_BY_DIAGONAL, max_registers=ATTENTION_MAX_REGISTERS)
    return result


def _keys_values(x: torch.Tensor, k: _Operands, v: _Operands, precision: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's keys and values, (P, N, width) each (ATTENTION_KV_STORED)."""
    pop, n_rows, n_cols = x.shape
    keys, values = x.new_empty(pop, n_rows, k.n_out), x.new_empty(pop, n_rows, v.n_out)
    rows = FEED_FORWARD_ROWS[precision]
    _launch(kernels().key_value_kernel, (_cdiv(n_rows, rows), pop), precision,
        x, keys, values, n_rows, n_cols, k.n_out, *k.args(), *v.args(), BLOCK_M=rows,
        BLOCK_C=_block(n_cols), BLOCK_W=_block(k.n_out), BLOCK_RK=k.block_rank,
        BLOCK_RV=v.block_rank, FACT_K=k.factorized, FACT_V=v.factorized, BIAS_K=k.has_bias,
        BIAS_V=v.has_bias)
    return keys, values


def feed_forward_layer_norm_(x: torch.Tensor, ff1: LinearOperands, ff2: LinearOperands,
                             scale: torch.Tensor, shift: torch.Tensor, eps: float
                             ) -> torch.Tensor:
    """In place: x (P, N, C) ← LN(x + ff2(relu(ff1(x)))) · scale + shift (the arguments of
    `cpu.feed_forward_layer_norm_`)."""
    assert x.is_contiguous()
    pop, n_rows, n_cols = x.shape
    first, second = _Operands(ff1, x), _Operands(ff2, x)
    precision = launch_precision(first.factorized or second.factorized)
    rows = FEED_FORWARD_ROWS[precision]
    _launch(kernels().feed_forward_layer_norm_kernel, (_cdiv(n_rows, rows), pop), precision,
        x, n_rows, n_cols, first.n_out, *first.args(), *second.args(), scale.contiguous(),
        shift.contiguous(), eps, BLOCK_M=rows, BLOCK_C=_block(n_cols),
        BLOCK_FF=_block(first.n_out), BLOCK_R1=first.block_rank, BLOCK_R2=second.block_rank,
        FACT1=first.factorized, FACT2=second.factorized, BIAS1=first.has_bias,
        BIAS2=second.has_bias,
        FF_SPLIT=feed_forward_split(_block(first.n_out)))
    return x


def feed_forward_split(block_ff: int) -> int:
    """The column chunks the feed-forward kernel runs its hidden layer in: FEED_FORWARD_SPLIT
    rounded down to a power of two (the chunk width is a tl.arange length) and capped so that a
    chunk stays ≥ MIN_DOT columns wide."""
    split = max(1, min(FEED_FORWARD_SPLIT, block_ff // MIN_DOT))
    return 1 << (split.bit_length() - 1)


def embedding_rotary(tokens: torch.Tensor, seq_len: int, table: torch.Tensor,
                     factor: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor
                     ) -> torch.Tensor:
    """(P, N, H): each individual's embedding of tokens (N,) (sequences of seq_len, flattened),
    its first 2·cos.shape[1] features rotated by position (cos, sin (seq_len, dims/2)). table
    = E (P, vocab, H), or with `factor` = A (P, r, H), table = B (P, vocab, r): B[token]·A.
    The embedding and `transformer._rotary` as one pass (EMBED_KERNEL)."""
    table = per_individual(table)
    pop = table.shape[0]
    n_rows = tokens.numel()
    n_cols = table.shape[2] if factor is None else factor.shape[2]
    k_dim = table.shape[2]
    a = table if factor is None else per_individual(factor)
    out = torch.empty(pop, n_rows, n_cols, device=table.device, dtype=torch.float32)
    precision = launch_precision(factor is not None)
    _launch(kernels().embedding_rotary_kernel, (_cdiv(n_rows, EMBED_ROWS), pop), precision,
        table, table.stride(0), a, a.stride(0) if factor is not None else 0,
        tokens.contiguous(), cos.contiguous(), sin.contiguous(), out, n_rows, seq_len, n_cols,
        k_dim, cos.shape[1], BLOCK_M=EMBED_ROWS, BLOCK_C=_block(n_cols), BLOCK_K=_block(k_dim),
        FACTOR=factor is not None)
    return out


def negative_log_likelihood(x: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor, targets: torch.Tensor,
                            inner: torch.Tensor | None = None) -> torch.Tensor:
    """(P, M): for each individual and scored token m, logsumexp(logits) − logits[target],
    logits = (x[:, rows[m]] · inner[p]) · weight[p]ᵀ + bias[p], never stored. x (P, N, H),
    inner (P, H, K) or None (then K = H), weight (P, V, K), bias (P, V), rows and targets (M,).
    The product by inner runs in the kernel up to rank LOSS_FACTOR_ON_CHIP, else as torch's ops
    before it."""
    factor = inner is not None and inner.shape[2] <= LOSS_FACTOR_ON_CHIP
    if inner is not None and not factor:
        x, rows = factored_rows(x, rows, inner)
    x, weight, bias = x.float().contiguous(), per_individual(weight), per_individual(bias)
    pop, n_scored = x.shape[0], rows.numel()
    vocab, k_dim = weight.shape[1:]
    h_dim = x.shape[2]
    a = per_individual(inner.transpose(1, 2)) if factor else x  # (P, K, H): the factor A
    out = x.new_empty(pop, n_scored)
    precision = launch_precision(factor)
    rows_per_program = LOSS_ROWS[precision]
    _launch(kernels().negative_log_likelihood_kernel, (_cdiv(n_scored, rows_per_program), pop),
        precision, x, x.stride(0), rows.contiguous(), targets.contiguous(), n_scored, weight,
        weight.stride(0), bias, bias.stride(0), out, vocab, k_dim, a,
        a.stride(0) if factor else 0, h_dim,
        BLOCK_M=rows_per_program, BLOCK_V=VOCAB_BLOCK[precision], BLOCK_K=_block(k_dim),
        BLOCK_HID=_block(h_dim), FACTOR=factor, EXP2=LOSS_EXP2,
        SHIFT_BY_TARGET=LOSS_SHIFT_BY_TARGET, TAIL_SPLIT=LOSS_TAIL_SPLIT,
        K_EXACT=k_dim == _block(k_dim), max_registers=LOSS_MAX_REGISTERS)
    return out



def launch_settings() -> dict[str, int | bool | str | dict]:
    """The launch constants the kernels use now, at the run's precision: a run records them
    (summary.json), since another block size or lever sums in another order and can move a
    fitness in its last digits. Launches with factorized operands may run at another precision
    (`FAULTED_ON_GPU`), with that precision's constants: `factorized` holds them."""
    def per_precision(precision: int) -> dict[str, int | str]:
        return {"products": PRECISION_NAMES[precision],
                "FEED_FORWARD_ROWS": FEED_FORWARD_ROWS[precision],
                "LOSS_ROWS": LOSS_ROWS[precision], "VOCAB_BLOCK": VOCAB_BLOCK[precision],
                "NUM_WARPS": NUM_WARPS[precision], "NUM_STAGES": NUM_STAGES[precision]}

    return {**per_precision(launch_precision(False)),
            "factorized": per_precision(launch_precision(True)),
            "QUERY_BLOCK": QUERY_BLOCK, "KEY_BLOCK": KEY_BLOCK,
            "ATTENTION_MAX_REGISTERS": ATTENTION_MAX_REGISTERS,
            "LOSS_MAX_REGISTERS": LOSS_MAX_REGISTERS,
            "ATTENTION_CAUSAL_SPLIT": ATTENTION_CAUSAL_SPLIT, "ATTENTION_EXP2": ATTENTION_EXP2,
            "ATTENTION_KV_STORED": ATTENTION_KV_STORED,
            "ATTENTION_SHIFT_BY_DIAGONAL": ATTENTION_SHIFT_BY_DIAGONAL,
            "FEED_FORWARD_SPLIT": FEED_FORWARD_SPLIT,  # as asked; see feed_forward_split
            "LOSS_EXP2": LOSS_EXP2, "LOSS_SHIFT_BY_TARGET": LOSS_SHIFT_BY_TARGET,
            "LOSS_TAIL_SPLIT": LOSS_TAIL_SPLIT,
            "LOSS_FACTOR_ON_CHIP": LOSS_FACTOR_ON_CHIP,
            "EMBED_KERNEL": EMBED_KERNEL, "EMBED_ROWS": EMBED_ROWS,
            "ALIGNED_OPERANDS": ALIGNED_OPERANDS}


def matmul_precision() -> int:
    """The kernels' matrix-product precision, read from the run's torch settings (so that
    `task.precision` governs both paths): bf16 under autocast, TF32 when torch allows it for
    fp32 matmuls, else IEEE fp32, or TF32X3 where `use_split_tf32` asked for it."""
    if _cuda_autocast_dtype() == torch.bfloat16:
        return BF16
    if torch.get_float32_matmul_precision() != "highest":
        return TF32
    return TF32X3 if _split_tf32 else IEEE


def use_split_tf32(split: bool) -> None:
    """Process-wide, like torch.set_float32_matmul_precision (task.precision: tf32x3): the
    kernels' products that would be IEEE fp32 become three TF32 products of operands split into
    a TF32 head and tail (near-fp32 error on tensor cores). torch has no such mode: its own
    matmuls stay IEEE fp32."""
    global _split_tf32
    _split_tf32 = split


def split_tf32() -> bool:
    """What `use_split_tf32` last set."""
    return _split_tf32


def launch_precision(factorized: bool) -> int:
    """`matmul_precision`, unless that precision faulted on a GPU for such a launch
    (`FAULTED_ON_GPU`): then the precision that replaces it. NEUROEVO_GPU_KERNELS=unverified
    launches every precision as asked (to test another Triton version or GPU; the run's own
    check, LanguageTask.check_kernels, still guards against wrong results)."""
    precision = matmul_precision()
    if os.environ.get("NEUROEVO_GPU_KERNELS") == "unverified":
        return precision
    return FAULTED_ON_GPU.get((precision, factorized), precision)


def _cuda_autocast_dtype() -> torch.dtype | None:
    """The dtype CUDA autocast casts matmuls to, None when it is off (torch ≥ 2.4 names the
    device; older releases have only the GPU-specific calls)."""
    try:
        enabled = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda")
    except (TypeError, AttributeError):
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return dtype if enabled else None


def _launch(kernel, grid: tuple[int, ...], precision: int, *args, max_registers: int = 0,
            **constants) -> None:
    """Every launch passes here, its products' precision and register cap (0: none) apart from
    the other arguments (bench/triton_compile_check.py records them to compile each variant the
    model uses for the GPU without one)."""
    cap = {"maxnreg": max_registers} if max_registers else {}
    kernel[grid](*args, num_warps=NUM_WARPS[precision], num_stages=NUM_STAGES[precision],
                 PRECISION=precision, **cap, **constants)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block(n: int) -> int:
    """A power of two ≥ n and ≥ MIN_DOT: the on-chip width of an n-wide operand."""
    return max(MIN_DOT, 1 << (max(n, 1) - 1).bit_length())


class _Operands:
    """One linear map's kernel arguments: (B, stride, A or W, stride, bias, stride, rank), with
    a placeholder tensor where there is no B or bias (never read: FACT/BIAS say so)."""

    def __init__(self, operands: LinearOperands, placeholder: torch.Tensor) -> None:
        b_factor, a, bias = (None if t is None else per_individual(t) for t in operands)
        self.factorized, self.has_bias = b_factor is not None, bias is not None
        self.rank = b_factor.shape[-1] if self.factorized else 0
        self.block_rank = _block(self.rank)
        self.n_out = a.shape[-1]
        self.tensors = [b_factor if self.factorized else placeholder, a,
                        bias if self.has_bias else placeholder]

    def args(self) -> list:
        b_factor, a, bias = self.tensors
        return [b_factor, b_factor.stride(0) if self.factorized else 0, a, a.stride(0),
                bias, bias.stride(0) if self.has_bias else 0, self.rank]
