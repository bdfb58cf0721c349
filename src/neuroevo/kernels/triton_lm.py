"""Triton kernels for the paper's transformer on a GPU: one program per individual × row block.

Imported only where Triton is installed (neuroevo/kernels/gpu.py decides). Five kernels, the
GPU counterparts of transformer.c's fused sub-layers, the loss and the embedding:

- `key_value_kernel`: each row's K and V projected once and stored (with KV_STORED, the
  default: measured faster on the H100 than recomputing them from x in every query block).
- `attention_layer_norm_kernel`: Q projection (and K/V from x when they are not stored), causal
  multi-head attention with an online softmax over key blocks (flash-attention style), the
  output projection, residual and layer norm; the query rows of x are read once, the keys' K/V
  once per key block, the result written once.
- `feed_forward_layer_norm_kernel`: ff1 → ReLU → ff2 → residual → layer norm, with the (rows, ff)
  hidden layer held in registers, in place.
- `negative_log_likelihood_kernel`: tied-embedding logits and cross-entropy with an online
  log-sum-exp over vocabulary tiles, so the (individuals, tokens, vocab) logits never reach memory.
- `embedding_rotary_kernel`: the embedding lookup (through the factors when factorized) and
  the rotary position encoding in one pass.

Every linear map is applied from its operands (dense W, or the factors B then A), so a
factorized W is never built. Heads are stacked along rows rather than sliced (a head is 4
columns wide, tl.dot's operands at least 16): row h·BLOCK_Q + i of the stacked queries is query
i with q masked to head h's columns, so one product gives every head's scores and one online
softmax (running max and sum per row) serves them all; at the end each output column is taken
from its own head's rows. Matrix products go through `_dot`, whose PRECISION (gpu.py's IEEE =
0, TF32 = 1, BF16 = 2: bf16 operands, fp32 accumulation, TF32X3 = 3: each fp32 operand split
into a TF32 head and tail, three TF32 products, near-fp32 error) the caller picks; everything
else is fp32.

Levers are constexpr switches (gpu.py's ATTENTION_*, FEED_FORWARD_SPLIT and LOSS_* constants,
set from H100 timings; bench/triton_sweep.py sweeps them): CAUSAL_SPLIT masks only the key
blocks that straddle the diagonal, EXP2 (attention and loss) folds log2(e) into an operand and
takes exp2, KV_STORED reads each row's keys and values, projected once by `key_value_kernel`,
instead of recomputing them from x in every query block, SHIFT_BY_DIAGONAL (attention) and
SHIFT_BY_TARGET (loss) drop the softmax's running max for a fixed shift per row that bounds the
sum of exponentials from below (a query's score against its own key; the target's logit), with
the online softmax as a fallback for the rare blocks whose sum leaves fp32's range, TAIL_SPLIT
(loss) walks the vocabulary tiles inside the vocabulary unmasked and the partial last one apart,
FF_SPLIT computes the feed-forward hidden layer in column chunks (fewer live registers: the
whole (128, 128) layer spills in TF32), and the loss's FACTOR (gpu.LOSS_FACTOR_ON_CHIP)
multiplies hidden states by a factorized embedding's factor on chip (up to a rank).

Tested on CPU through Triton's interpreter (TRITON_INTERPRET=1) against the torch path.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Triton's interpreter (3.9) multiplies bf16 operands as their raw 16-bit patterns; under it a
# bf16 product is taken as the IEEE fp32 product of the bf16-rounded operands, which is what
# the tensor cores compute (a bf16 × bf16 product is exact in fp32), so that the CPU tests check
# the bf16 arithmetic (the interpreter rounds toward zero where a GPU rounds to nearest).
_INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    if PRECISION == 2 and _INTERPRETED:
        return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32),
                      input_precision="ieee")
    elif PRECISION == 2:
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    elif PRECISION == 1:
        return tl.dot(a, b, input_precision="tf32")
    elif PRECISION == 3:
        return tl.dot(a, b, input_precision="tf32x3")
    else:
        return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _load_tile(w_ptr, row0, col0, n_rows, n_cols, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """W[row0 : row0 + BLOCK_R, col0 : col0 + BLOCK_C] of a row-major (n_rows, n_cols) W,
    zero outside it."""
    r = row0 + tl.arange(0, BLOCK_R)
    c = col0 + tl.arange(0, BLOCK_C)
    return tl.load(w_ptr + r[:, None] * n_cols + c[None, :],
                   mask=(r[:, None] < n_rows) & (c[None, :] < n_cols), other=0.0)


@triton.jit
def _matmul(x, w_ptr, n_in, n_out, BLOCK_IN: tl.constexpr, BLOCK_OUT: tl.constexpr,
            PRECISION: tl.constexpr):
    """x (rows, BLOCK_IN) · W, W (n_in, n_out) row-major at w_ptr, zero-padded to the blocks."""
    return _dot(x, _load_tile(w_ptr, 0, 0, n_in, n_out, BLOCK_IN, BLOCK_OUT), PRECISION)


@triton.jit
def _linear(x, b_ptr, a_ptr, bias_ptr, n_in, rank, n_out, BLOCK_IN: tl.constexpr,
            BLOCK_RANK: tl.constexpr, BLOCK_OUT: tl.constexpr, FACTORIZED: tl.constexpr,
            HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr):
    """One individual's linear map of the row tile x: x·B·A if FACTORIZED (B (n_in, rank) at
    b_ptr, A (rank, n_out) at a_ptr), else x·W (W at a_ptr); plus the bias if it has one."""
    if FACTORIZED:
        y = _matmul(_matmul(x, b_ptr, n_in, rank, BLOCK_IN, BLOCK_RANK, PRECISION),
                    a_ptr, rank, n_out, BLOCK_RANK, BLOCK_OUT, PRECISION)
    else:
        y = _matmul(x, a_ptr, n_in, n_out, BLOCK_IN, BLOCK_OUT, PRECISION)
    if HAS_BIAS:
        cols = tl.arange(0, BLOCK_OUT)
        y += tl.load(bias_ptr + cols, mask=cols < n_out, other=0.0)[None, :]
    return y


@triton.jit
def _residual_layer_norm(x, y, scale_ptr, shift_ptr, n_cols, eps, BLOCK_C: tl.constexpr):
    """LN(x + y) · scale + shift over the first n_cols columns (the rest come out 0)."""
    cols = tl.arange(0, BLOCK_C)
    real = (cols < n_cols)[None, :]
    z = tl.where(real, x + y, 0.0)
    mean = tl.sum(z, axis=1) / n_cols
    centred = tl.where(real, z - mean[:, None], 0.0)
    var = tl.sum(centred * centred, axis=1) / n_cols
    scale = tl.load(scale_ptr + cols, mask=cols < n_cols, other=0.0)
    shift = tl.load(shift_ptr + cols, mask=cols < n_cols, other=0.0)
    return centred * tl.rsqrt(var + eps)[:, None] * scale[None, :] + shift[None, :]


@triton.jit
def _feed_forward_in_chunks(x, n_cols, n_ff, b1_ptr, a1_ptr, bias1_ptr, rank1, b2_ptr, a2_ptr,
                            bias2_ptr, rank2, BLOCK_C: tl.constexpr, BLOCK_FF: tl.constexpr,
                            BLOCK_R1: tl.constexpr, BLOCK_R2: tl.constexpr,
                            FACT1: tl.constexpr, FACT2: tl.constexpr, BIAS1: tl.constexpr,
                            BIAS2: tl.constexpr, FF_SPLIT: tl.constexpr,
                            PRECISION: tl.constexpr):
    """ff2(relu(ff1(x))) with the hidden layer FF_SPLIT column chunks at a time: each chunk's
    ff2 contribution is accumulated (into the rank-wide x·…·B2 when ff2 is factorized), so
    only BLOCK_FF / FF_SPLIT hidden columns are live at once."""
    CHUNK: tl.constexpr = BLOCK_FF // FF_SPLIT
    if FACT1:
        inner = _matmul(x, b1_ptr, n_cols, rank1, BLOCK_C, BLOCK_R1, PRECISION)  # x·B1
    if FACT2:
        acc = tl.zeros((x.shape[0], BLOCK_R2), tl.float32)
    else:
        acc = tl.zeros((x.shape[0], BLOCK_C), tl.float32)
    for i in tl.static_range(FF_SPLIT):
        if FACT1:
            hidden = _dot(inner, _load_tile(a1_ptr, 0, i * CHUNK, rank1, n_ff, BLOCK_R1, CHUNK),
                          PRECISION)
        else:
            hidden = _dot(x, _load_tile(a1_ptr, 0, i * CHUNK, n_cols, n_ff, BLOCK_C, CHUNK),
                          PRECISION)
        if BIAS1:
            cols = i * CHUNK + tl.arange(0, CHUNK)
            hidden += tl.load(bias1_ptr + cols, mask=cols < n_ff, other=0.0)[None, :]
        hidden = tl.maximum(hidden, 0.0)
        if FACT2:
            acc += _dot(hidden, _load_tile(b2_ptr, i * CHUNK, 0, n_ff, rank2, CHUNK, BLOCK_R2),
                        PRECISION)
        else:
            acc += _dot(hidden, _load_tile(a2_ptr, i * CHUNK, 0, n_ff, n_cols, CHUNK, BLOCK_C),
                        PRECISION)
    if FACT2:
        y = _matmul(acc, a2_ptr, rank2, n_cols, BLOCK_R2, BLOCK_C, PRECISION)
    else:
        y = acc
    if BIAS2:
        cols = tl.arange(0, BLOCK_C)
        y += tl.load(bias2_ptr + cols, mask=cols < n_cols, other=0.0)[None, :]
    return y


@triton.jit
def feed_forward_layer_norm_kernel(
        x_ptr, n_rows, n_cols, n_ff,
        b1_ptr, b1_stride, a1_ptr, a1_stride, bias1_ptr, bias1_stride, rank1,
        b2_ptr, b2_stride, a2_ptr, a2_stride, bias2_ptr, bias2_stride, rank2,
        scale_ptr, shift_ptr, eps,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_FF: tl.constexpr,
        BLOCK_R1: tl.constexpr, BLOCK_R2: tl.constexpr, FACT1: tl.constexpr,
        FACT2: tl.constexpr, BIAS1: tl.constexpr, BIAS2: tl.constexpr,
        FF_SPLIT: tl.constexpr, PRECISION: tl.constexpr):
    """In place, rows of x (P, n_rows, n_cols): x ← LN(x + ff2(relu(ff1(x)))). Grid (row
    blocks, P). FF_SPLIT > 1: the hidden layer in that many column chunks
    (`_feed_forward_in_chunks`); 1: whole, as timed on the H100."""
    p = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    ptrs = x_ptr + p * n_rows * n_cols + rows[:, None].to(tl.int64) * n_cols + cols[None, :]
    x = tl.load(ptrs, mask=mask, other=0.0)
    if FF_SPLIT == 1:
        hidden = _linear(x, b1_ptr + p * b1_stride, a1_ptr + p * a1_stride,
                         bias1_ptr + p * bias1_stride, n_cols, rank1, n_ff,
                         BLOCK_C, BLOCK_R1, BLOCK_FF, FACT1, BIAS1, PRECISION)
        hidden = tl.maximum(hidden, 0.0)
        y = _linear(hidden, b2_ptr + p * b2_stride, a2_ptr + p * a2_stride,
                    bias2_ptr + p * bias2_stride, n_ff, rank2, n_cols,
                    BLOCK_FF, BLOCK_R2, BLOCK_C, FACT2, BIAS2, PRECISION)
    else:
        y = _feed_forward_in_chunks(
            x, n_cols, n_ff, b1_ptr + p * b1_stride, a1_ptr + p * a1_stride,
            bias1_ptr + p * bias1_stride, rank1, b2_ptr + p * b2_stride, a2_ptr + p * a2_stride,
            bias2_ptr + p * bias2_stride, rank2, BLOCK_C, BLOCK_FF, BLOCK_R1, BLOCK_R2, FACT1,
            FACT2, BIAS1, BIAS2, FF_SPLIT, PRECISION)
    tl.store(ptrs, _residual_layer_norm(x, y, scale_ptr, shift_ptr, n_cols, eps, BLOCK_C),
             mask=mask)


@triton.jit
def key_value_kernel(
        x_ptr, k_ptr, v_ptr, n_rows, n_cols, width,
        kb_ptr, kb_stride, ka_ptr, ka_stride, kbias_ptr, kbias_stride, k_rank,
        vb_ptr, vb_stride, va_ptr, va_stride, vbias_ptr, vbias_stride, v_rank,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
        BLOCK_RK: tl.constexpr, BLOCK_RV: tl.constexpr, FACT_K: tl.constexpr,
        FACT_V: tl.constexpr, BIAS_K: tl.constexpr, BIAS_V: tl.constexpr,
        PRECISION: tl.constexpr):
    """k, v (P, n_rows, width) ← k(x), v(x) for a block of rows of one individual, x (P, n_rows,
    n_cols): the attention kernel's keys and values when KV_STORED. Grid (row blocks, P)."""
    p = tl.program_id(1).to(tl.int64)
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    x = tl.load(x_ptr + p * n_rows * n_cols + rows[:, None] * n_cols + cols[None, :],
                mask=(rows < n_rows)[:, None] & (cols < n_cols)[None, :], other=0.0)
    k = _linear(x, kb_ptr + p * kb_stride, ka_ptr + p * ka_stride, kbias_ptr + p * kbias_stride,
                n_cols, k_rank, width, BLOCK_C, BLOCK_RK, BLOCK_W, FACT_K, BIAS_K, PRECISION)
    v = _linear(x, vb_ptr + p * vb_stride, va_ptr + p * va_stride, vbias_ptr + p * vbias_stride,
                n_cols, v_rank, width, BLOCK_C, BLOCK_RV, BLOCK_W, FACT_V, BIAS_V, PRECISION)
    w_cols = tl.arange(0, BLOCK_W)
    offsets = p * n_rows * width + rows[:, None] * width + w_cols[None, :]
    mask = (rows < n_rows)[:, None] & (w_cols < width)[None, :]
    tl.store(k_ptr + offsets, k, mask=mask)
    tl.store(v_ptr + offsets, v, mask=mask)


@triton.jit
def _attend_key_block(
        q, row_pos, shift, run_max, run_sum, acc, start, x_ptr, k_ptr, v_ptr, seq_len, n_cols,
        width, kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
        BLOCK_RK: tl.constexpr, BLOCK_RV: tl.constexpr, FACT_K: tl.constexpr,
        FACT_V: tl.constexpr, BIAS_K: tl.constexpr, BIAS_V: tl.constexpr,
        MASKED: tl.constexpr, SHIFTED: tl.constexpr, EXP2: tl.constexpr,
        KV_STORED: tl.constexpr, PRECISION: tl.constexpr):
    """One step of the softmax: the stacked queries q against keys start … start + BLOCK_K of
    the sequence; returns the updated (run_max, run_sum, acc). Without MASKED every key precedes
    every query (a block wholly below the diagonal), so no mask is computed. SHIFTED: each row's
    scores less its fixed `shift`, no running max (run_max passes through); else the online
    softmax's running max and rescaling."""
    k_pos = start + tl.arange(0, BLOCK_K)
    if KV_STORED:
        w_cols = tl.arange(0, BLOCK_W)
        offsets = k_pos[:, None] * width + w_cols[None, :]
        kv_mask = (k_pos < seq_len)[:, None] & (w_cols < width)[None, :]
        k = tl.load(k_ptr + offsets, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + offsets, mask=kv_mask, other=0.0)
    else:
        cols = tl.arange(0, BLOCK_C)
        x_k = tl.load(x_ptr + k_pos[:, None] * n_cols + cols[None, :],
                      mask=(k_pos < seq_len)[:, None] & (cols < n_cols)[None, :], other=0.0)
        k = _linear(x_k, kb_ptr, ka_ptr, kbias_ptr, n_cols, k_rank, width,
                    BLOCK_C, BLOCK_RK, BLOCK_W, FACT_K, BIAS_K, PRECISION)
        v = _linear(x_k, vb_ptr, va_ptr, vbias_ptr, n_cols, v_rank, width,
                    BLOCK_C, BLOCK_RV, BLOCK_W, FACT_V, BIAS_V, PRECISION)
    scores = _dot(q, tl.trans(k), PRECISION)
    if SHIFTED:
        scores = scores - shift[:, None]
    if MASKED:
        causal = (k_pos[None, :] <= row_pos[:, None]) & (k_pos < seq_len)[None, :]
        scores = tl.where(causal, scores, float("-inf"))
    if SHIFTED:
        if EXP2:  # scores are in log2 units (gpu.py folds log2(e) into the query scale)
            probs = tl.exp2(scores)
        else:
            probs = tl.exp(scores)
        run_sum = run_sum + tl.sum(probs, axis=1)
        acc = acc + _dot(probs, v, PRECISION)  # every head's columns of v
        new_max = run_max
    else:
        block_max = tl.max(scores, axis=1)  # finite in the first block: key 0 is in every row
        new_max = tl.maximum(run_max, block_max)
        if EXP2:
            rescale = tl.exp2(run_max - new_max)
            probs = tl.exp2(scores - new_max[:, None])
        else:
            rescale = tl.exp(run_max - new_max)
            probs = tl.exp(scores - new_max[:, None])
        run_sum = run_sum * rescale + tl.sum(probs, axis=1)
        acc = acc * rescale[:, None] + _dot(probs, v, PRECISION)
    return new_max, run_sum, acc


@triton.jit
def _attend_key_blocks(
        q, row_pos, shift, unmasked_end, q_end, x_ptr, k_ptr, v_ptr, seq_len, n_cols, width,
        kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
        BLOCK_RK: tl.constexpr, BLOCK_RV: tl.constexpr, FACT_K: tl.constexpr,
        FACT_V: tl.constexpr, BIAS_K: tl.constexpr, BIAS_V: tl.constexpr,
        SHIFTED: tl.constexpr, EXP2: tl.constexpr, KV_STORED: tl.constexpr,
        PRECISION: tl.constexpr, STAGES: tl.constexpr = None):
    """(run_sum, acc) of rows q at positions row_pos over keys 0 … q_end − 1, key block by key
    block (those before unmasked_end without the causal mask), software-pipelined STAGES deep
    (None: the launch's num_stages)."""
    run_max = tl.full((q.shape[0],), float("-inf"), tl.float32)
    run_sum = tl.zeros((q.shape[0],), tl.float32)
    acc = tl.zeros((q.shape[0], BLOCK_W), tl.float32)
    for start in tl.range(0, unmasked_end, BLOCK_K, num_stages=STAGES):
        run_max, run_sum, acc = _attend_key_block(
            q, row_pos, shift, run_max, run_sum, acc, start, x_ptr, k_ptr, v_ptr, seq_len,
            n_cols, width, kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
            BLOCK_K, BLOCK_C, BLOCK_W, BLOCK_RK, BLOCK_RV, FACT_K, FACT_V, BIAS_K, BIAS_V,
            False, SHIFTED, EXP2, KV_STORED, PRECISION)
    for start in tl.range(unmasked_end, q_end, BLOCK_K, num_stages=STAGES):
        run_max, run_sum, acc = _attend_key_block(
            q, row_pos, shift, run_max, run_sum, acc, start, x_ptr, k_ptr, v_ptr, seq_len,
            n_cols, width, kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
            BLOCK_K, BLOCK_C, BLOCK_W, BLOCK_RK, BLOCK_RV, FACT_K, FACT_V, BIAS_K, BIAS_V,
            True, SHIFTED, EXP2, KV_STORED, PRECISION)
    return run_sum, acc


@triton.jit
def _attend(q, row_pos, diagonal, unmasked_end, q_end, x_ptr, k_ptr, v_ptr, seq_len, n_cols,
            width, kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
            BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
            BLOCK_RK: tl.constexpr, BLOCK_RV: tl.constexpr, FACT_K: tl.constexpr,
            FACT_V: tl.constexpr, BIAS_K: tl.constexpr, BIAS_V: tl.constexpr,
            SHIFT_BY_DIAGONAL: tl.constexpr, EXP2: tl.constexpr, KV_STORED: tl.constexpr,
            PRECISION: tl.constexpr):
    """The causal attention of query rows q (rows, BLOCK_W) at positions row_pos: the values
    weighted by each row's softmax over keys 0 … q_end − 1.

    With SHIFT_BY_DIAGONAL each row's exponentials are of its scores less `diagonal`, its score
    against its own key (always among its keys), so their sum is ≥ 1 (that key's term) and needs
    no running max; only a score ~88 nats above the diagonal's (exp overflows fp32) or a NaN
    sends the block of queries through the online softmax (running max, rescaling) instead.
    Rows past the sequence's end are not checked: their output is never stored."""
    run_sum, acc = _attend_key_blocks(
        q, row_pos, diagonal, unmasked_end, q_end, x_ptr, k_ptr, v_ptr, seq_len, n_cols, width,
        kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank, BLOCK_K, BLOCK_C,
        BLOCK_W, BLOCK_RK, BLOCK_RV, FACT_K, FACT_V, BIAS_K, BIAS_V, SHIFT_BY_DIAGONAL, EXP2,
        KV_STORED, PRECISION)
    weighted = acc / run_sum[:, None]
    if SHIFT_BY_DIAGONAL:
        # comparisons with NaN are false: a NaN counts as out of range
        out_of_range = tl.sum(tl.where(tl.abs(weighted) < float("inf"), 0, 1), axis=1) \
            + tl.where(run_sum < float("inf"), 0, 1)
        if tl.max(tl.where(row_pos < seq_len, out_of_range, 0), axis=0) > 0:
            # rare: unpipelined, so that its buffers do not add to the shifted loop's
            run_sum, acc = _attend_key_blocks(
                q, row_pos, diagonal, unmasked_end, q_end, x_ptr, k_ptr, v_ptr, seq_len, n_cols,
                width, kb_ptr, ka_ptr, kbias_ptr, k_rank, vb_ptr, va_ptr, vbias_ptr, v_rank,
                BLOCK_K, BLOCK_C, BLOCK_W, BLOCK_RK, BLOCK_RV, FACT_K, FACT_V, BIAS_K, BIAS_V,
                False, EXP2, KV_STORED, PRECISION, 1)
            weighted = acc / run_sum[:, None]
    return weighted


@triton.jit
def attention_layer_norm_kernel(
        x_ptr, out_ptr, seq_len, n_rows, n_cols, width,
        qb_ptr, qb_stride, qa_ptr, qa_stride, qbias_ptr, qbias_stride, q_rank,
        kb_ptr, kb_stride, ka_ptr, ka_stride, kbias_ptr, kbias_stride, k_rank,
        vb_ptr, vb_stride, va_ptr, va_stride, vbias_ptr, vbias_stride, v_rank,
        ob_ptr, ob_stride, oa_ptr, oa_stride, obias_ptr, obias_stride, o_rank,
        scale_ptr, shift_ptr, eps, sm_scale, k_ptr, v_ptr,
        HEAD_DIM: tl.constexpr, N_HEADS: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
        BLOCK_RQ: tl.constexpr, BLOCK_RK: tl.constexpr, BLOCK_RV: tl.constexpr,
        BLOCK_RO: tl.constexpr, FACT_Q: tl.constexpr, FACT_K: tl.constexpr,
        FACT_V: tl.constexpr, FACT_O: tl.constexpr, BIAS_Q: tl.constexpr,
        BIAS_K: tl.constexpr, BIAS_V: tl.constexpr, BIAS_O: tl.constexpr,
        CAUSAL_SPLIT: tl.constexpr, EXP2: tl.constexpr, KV_STORED: tl.constexpr,
        SHIFT_BY_DIAGONAL: tl.constexpr, PRECISION: tl.constexpr):
    """out ← LN(x + out_proj(causal attention(q(x), k(x), v(x)))) for one block of queries of
    one sequence of one individual. x, out (P, n_rows = B·seq_len, n_cols); width = heads ×
    HEAD_DIM; BLOCK_H = heads rounded up to a power of 2; sm_scale multiplies the queries (in
    log2 units when EXP2); k, v (P, n_rows, width) from `key_value_kernel` when KV_STORED (else
    unread). Grid (query blocks, B, P). Not in place: other programs read x's rows as keys."""
    p = tl.program_id(2).to(tl.int64)
    first = tl.program_id(1).to(tl.int64) * seq_len
    base = p * n_rows * n_cols + first * n_cols
    q_first = tl.program_id(0) * BLOCK_Q
    q_pos = q_first + tl.arange(0, BLOCK_Q)
    cols = tl.arange(0, BLOCK_C)
    real_cols = (cols < n_cols)[None, :]
    q_mask = (q_pos < seq_len)[:, None] & real_cols
    x_q = tl.load(x_ptr + base + q_pos[:, None] * n_cols + cols[None, :], mask=q_mask, other=0.0)
    q = _linear(x_q, qb_ptr + p * qb_stride, qa_ptr + p * qa_stride,
                qbias_ptr + p * qbias_stride, n_cols, q_rank, width,
                BLOCK_C, BLOCK_RQ, BLOCK_W, FACT_Q, BIAS_Q, PRECISION) * sm_scale
    head_of = tl.arange(0, BLOCK_W) // HEAD_DIM                                # column → head
    kv_base = p * n_rows * width + first * width
    kb, ka, kbias = kb_ptr + p * kb_stride, ka_ptr + p * ka_stride, kbias_ptr + p * kbias_stride
    vb, va, vbias = vb_ptr + p * vb_stride, va_ptr + p * va_stride, vbias_ptr + p * vbias_stride
    # Key blocks wholly before the first query need no causal mask (CAUSAL_SPLIT); the rest, up
    # to the last query, do.
    if CAUSAL_SPLIT:
        unmasked_end = (q_first // BLOCK_K) * BLOCK_K
    else:
        unmasked_end = 0
    if SHIFT_BY_DIAGONAL:  # each query's own key: its score against it is the softmax's shift
        if KV_STORED:
            w_cols = tl.arange(0, BLOCK_W)
            own_key = tl.load(k_ptr + kv_base + q_pos[:, None] * width + w_cols[None, :],
                              mask=(q_pos < seq_len)[:, None] & (w_cols < width)[None, :],
                              other=0.0)
        else:
            own_key = _linear(x_q, kb, ka, kbias, n_cols, k_rank, width, BLOCK_C, BLOCK_RK,
                              BLOCK_W, FACT_K, BIAS_K, PRECISION)
    # Heads stacked along rows: row h·BLOCK_Q + i is query i with q masked to head h's
    # columns, so one product gives every head's scores and one online softmax serves them
    # all.
    own = (tl.arange(0, BLOCK_H)[:, None, None] == head_of[None, None, :]) \
        & (head_of < N_HEADS)[None, None, :]                       # (heads, 1, columns)
    stacked_q = tl.reshape(tl.where(own, q[None, :, :], 0.0), (BLOCK_H * BLOCK_Q, BLOCK_W))
    row_pos = q_first + tl.arange(0, BLOCK_H * BLOCK_Q) % BLOCK_Q
    if SHIFT_BY_DIAGONAL:
        stacked_key = tl.reshape(tl.broadcast_to(own_key[None, :, :],
                                                 (BLOCK_H, BLOCK_Q, BLOCK_W)),
                                 (BLOCK_H * BLOCK_Q, BLOCK_W))
        diagonal = tl.sum(stacked_q * stacked_key, axis=1)  # q is 0 off its head's columns
    else:
        diagonal = 0.0  # unread
    weighted = _attend(
        stacked_q, row_pos, diagonal, unmasked_end, q_first + BLOCK_Q, x_ptr + base,
        k_ptr + kv_base, v_ptr + kv_base, seq_len, n_cols, width, kb, ka, kbias, k_rank, vb,
        va, vbias, v_rank, BLOCK_K, BLOCK_C, BLOCK_W, BLOCK_RK, BLOCK_RV, FACT_K, FACT_V,
        BIAS_K, BIAS_V, SHIFT_BY_DIAGONAL, EXP2, KV_STORED, PRECISION)
    stacked = tl.reshape(weighted, (BLOCK_H, BLOCK_Q, BLOCK_W))
    attended = tl.sum(tl.where(own, stacked, 0.0), axis=0)  # each column from its own head
    y = _linear(attended, ob_ptr + p * ob_stride, oa_ptr + p * oa_stride,
                obias_ptr + p * obias_stride, width, o_rank, n_cols,
                BLOCK_W, BLOCK_RO, BLOCK_C, FACT_O, BIAS_O, PRECISION)
    tl.store(out_ptr + base + q_pos[:, None] * n_cols + cols[None, :],
             _residual_layer_norm(x_q, y, scale_ptr, shift_ptr, n_cols, eps, BLOCK_C),
             mask=q_mask)


@triton.jit
def embedding_rotary_kernel(
        table_ptr, table_stride, a_ptr, a_stride, tokens_ptr, cos_ptr, sin_ptr, out_ptr,
        n_rows, seq_len, n_cols, k_dim, half_dims,
        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
        FACTOR: tl.constexpr, PRECISION: tl.constexpr):
    """out[p, n] ← the embedding of tokens[n], its first 2·half_dims features rotated by the
    angles of position n mod seq_len (cos, sin (seq_len, half_dims)): pairs (2i, 2i+1) become
    (e·cos − o·sin, e·sin + o·cos). The embedding is table[p, token] (P, vocab, n_cols), or with
    FACTOR table[p, token] (P, vocab, k_dim) times a[p] (P, k_dim, n_cols). Each feature's pair
    partner (column c xor 1) comes from a second load (or product), so the rotation is
    element-wise. Grid (row blocks, P); out (P, n_rows, n_cols)."""
    p = tl.program_id(1).to(tl.int64)
    n = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    real_n = n < n_rows
    tokens = tl.load(tokens_ptr + n, mask=real_n, other=0).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    partner = cols ^ 1
    real_c, real_partner = cols < n_cols, partner < n_cols
    if FACTOR:
        ks = tl.arange(0, BLOCK_K)
        real_k = ks < k_dim
        b = tl.load(table_ptr + p * table_stride + tokens[:, None] * k_dim + ks[None, :],
                    mask=real_n[:, None] & real_k[None, :], other=0.0)
        a_rows = a_ptr + p * a_stride + ks[:, None] * n_cols
        a = tl.load(a_rows + cols[None, :], mask=real_k[:, None] & real_c[None, :], other=0.0)
        a_partner = tl.load(a_rows + partner[None, :],
                            mask=real_k[:, None] & real_partner[None, :], other=0.0)
        x = _dot(b, a, PRECISION)
        x_partner = _dot(b, a_partner, PRECISION)
    else:
        rows = table_ptr + p * table_stride + tokens[:, None] * n_cols
        x = tl.load(rows + cols[None, :], mask=real_n[:, None] & real_c[None, :], other=0.0)
        x_partner = tl.load(rows + partner[None, :], mask=real_n[:, None] & real_partner[None, :],
                            other=0.0)
    pair = cols // 2
    angles = (n % seq_len)[:, None] * half_dims + pair[None, :]
    rotated = real_n[:, None] & (pair < half_dims)[None, :]
    cos = tl.load(cos_ptr + angles, mask=rotated, other=1.0)   # features past the rotated ones:
    sin = tl.load(sin_ptr + angles, mask=rotated, other=0.0)   # cos 1, sin 0, unchanged
    sign = tl.where(cols % 2 == 0, -1.0, 1.0)
    out = x * cos + sign[None, :] * (x_partner * sin)
    tl.store(out_ptr + p * n_rows * n_cols + n[:, None] * n_cols + cols[None, :], out,
             mask=real_n[:, None] & real_c[None, :])


@triton.jit
def _vocabulary_logits(x, w_base, b_base, first, vocab, k_dim, ks, BLOCK_V: tl.constexpr,
                       MASKED: tl.constexpr, K_EXACT: tl.constexpr, EXP2: tl.constexpr,
                       PRECISION: tl.constexpr):
    """Rows x's logits over vocabulary entries first … first + BLOCK_V (−inf past the end), in
    log2 units with EXP2 (x already scaled by log2(e); the bias scaled here). Without MASKED
    the tile lies wholly inside the vocabulary, and with K_EXACT (k_dim is the block's width)
    too, nothing is masked."""
    vs = first + tl.arange(0, BLOCK_V)
    if MASKED:
        w = tl.load(w_base + vs[:, None] * k_dim + ks[None, :],
                    mask=(vs < vocab)[:, None] & (ks < k_dim)[None, :], other=0.0)
        bias = tl.load(b_base + vs, mask=vs < vocab, other=float("-inf"))
    else:
        if K_EXACT:
            w = tl.load(w_base + vs[:, None] * k_dim + ks[None, :])
        else:
            w = tl.load(w_base + vs[:, None] * k_dim + ks[None, :],
                        mask=(ks < k_dim)[None, :], other=0.0)
        bias = tl.load(b_base + vs)
    if EXP2:
        bias = bias * 1.4426950408889634
    return _dot(x, tl.trans(w), PRECISION) + bias[None, :]


@triton.jit
def _exp_sum_tile(x, shift, run_max, run_sum, w_base, b_base, first, vocab, k_dim, ks,
                  BLOCK_V: tl.constexpr, MASKED: tl.constexpr, K_EXACT: tl.constexpr,
                  SHIFTED: tl.constexpr, EXP2: tl.constexpr, PRECISION: tl.constexpr):
    """One vocabulary tile of the sum of exponentials: the updated (run_max, run_sum).
    SHIFTED: of each row's logits less its fixed `shift`, no running max (run_max passes
    through); else the online log-sum-exp's running max, the sum rescaled whenever it rises."""
    logits = _vocabulary_logits(x, w_base, b_base, first, vocab, k_dim, ks, BLOCK_V, MASKED,
                                K_EXACT, EXP2, PRECISION)
    if SHIFTED:
        if EXP2:
            run_sum = run_sum + tl.sum(tl.exp2(logits - shift[:, None]), axis=1)
        else:
            run_sum = run_sum + tl.sum(tl.exp(logits - shift[:, None]), axis=1)
        new_max = run_max
    else:
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        if EXP2:
            run_sum = (run_sum * tl.exp2(run_max - new_max)
                       + tl.sum(tl.exp2(logits - new_max[:, None]), axis=1))
        else:
            run_sum = (run_sum * tl.exp(run_max - new_max)
                       + tl.sum(tl.exp(logits - new_max[:, None]), axis=1))
    return new_max, run_sum


@triton.jit
def _exp_sum(x, shift, w_base, b_base, vocab, k_dim, ks, BLOCK_M: tl.constexpr,
             BLOCK_V: tl.constexpr, SHIFTED: tl.constexpr, TAIL_SPLIT: tl.constexpr,
             K_EXACT: tl.constexpr, EXP2: tl.constexpr, PRECISION: tl.constexpr,
             STAGES: tl.constexpr = None):
    """(run_max, run_sum) of each row's exponentials over the whole vocabulary (`_exp_sum_tile`),
    tile by tile, software-pipelined STAGES deep (None: the launch's num_stages). TAIL_SPLIT: the
    tiles wholly inside the vocabulary unmasked, then the last, partial one."""
    run_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_M,), tl.float32)
    if TAIL_SPLIT:
        whole = (vocab // BLOCK_V) * BLOCK_V
        for first in tl.range(0, whole, BLOCK_V, num_stages=STAGES):
            run_max, run_sum = _exp_sum_tile(x, shift, run_max, run_sum, w_base, b_base, first,
                                             vocab, k_dim, ks, BLOCK_V, False, K_EXACT, SHIFTED,
                                             EXP2, PRECISION)
        for first in tl.range(whole, vocab, BLOCK_V, num_stages=1):  # at most one tile
            run_max, run_sum = _exp_sum_tile(x, shift, run_max, run_sum, w_base, b_base, first,
                                             vocab, k_dim, ks, BLOCK_V, True, K_EXACT, SHIFTED,
                                             EXP2, PRECISION)
    else:
        for first in tl.range(0, vocab, BLOCK_V, num_stages=STAGES):
            run_max, run_sum = _exp_sum_tile(x, shift, run_max, run_sum, w_base, b_base, first,
                                             vocab, k_dim, ks, BLOCK_V, True, K_EXACT, SHIFTED,
                                             EXP2, PRECISION)
    return run_max, run_sum


@triton.jit
def _log_sum_exp(run_max, run_sum, EXP2: tl.constexpr):
    """The online walk's log-sum-exp, in nats."""
    if EXP2:  # back from log2 units
        return (run_max + tl.log2(run_sum)) * 0.6931471805599453
    else:
        return run_max + tl.log(run_sum)


@triton.jit
def negative_log_likelihood_kernel(
        x_ptr, x_stride, rows_ptr, targets_ptr, n_scored, w_ptr, w_stride, bias_ptr,
        bias_stride, out_ptr, vocab, k_dim, a_ptr, a_stride, h_dim,
        BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
        BLOCK_HID: tl.constexpr, FACTOR: tl.constexpr, EXP2: tl.constexpr,
        SHIFT_BY_TARGET: tl.constexpr, TAIL_SPLIT: tl.constexpr, K_EXACT: tl.constexpr,
        PRECISION: tl.constexpr):
    """out[p, m] = logsumexp_v(x[p, rows[m]]·w[p, v] + bias[p, v]) − (the same at targets[m]).

    x (P, ·, k_dim) rows, w (P, vocab, k_dim), bias (P, vocab), out (P, n_scored). Grid (scored
    blocks, P). The vocabulary is walked in tiles with a running max and sum of exponentials;
    with EXP2 the logits are taken in log2 units (x and the bias scaled by log2(e) as they are
    loaded) so that each exponential is a bare exp2. With FACTOR (a factorized tied embedding,
    logits = (h·Aᵀ)·Bᵀ) x holds hidden states (P, ·, h_dim) and each row is multiplied by its
    individual's factor a (P, k_dim, h_dim) on chip, instead of by torch's gather and bmm.

    SHIFT_BY_TARGET: out = log Σ_v exp(logit_v − target's logit) directly, the target's logit
    (computed before the vocabulary walk) as a fixed shift: the sum is ≥ 1 (the target's own
    term), so no running max is kept. Only a logit ~88 nats above its target's (exp overflows
    fp32) or a NaN sends the block of rows through the online walk instead.

    TAIL_SPLIT: the tiles wholly inside the vocabulary are walked without masks, the partial last
    one apart (K_EXACT: k_dim = BLOCK_K, so the columns need no mask either)."""
    p = tl.program_id(1).to(tl.int64)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    scored = m < n_scored
    ks = tl.arange(0, BLOCK_K)
    real_k = (ks < k_dim)[None, :]
    rows = tl.load(rows_ptr + m, mask=scored, other=0).to(tl.int64)
    if FACTOR:
        hs = tl.arange(0, BLOCK_HID)
        real_h = hs < h_dim
        h = tl.load(x_ptr + p * x_stride + rows[:, None] * h_dim + hs[None, :],
                    mask=scored[:, None] & real_h[None, :], other=0.0)
        a_t = tl.load(a_ptr + p * a_stride + ks[None, :] * h_dim + hs[:, None],
                      mask=real_h[:, None] & real_k, other=0.0)            # (hidden, k) = Aᵀ
        x = _dot(h, a_t, PRECISION)
    else:
        x = tl.load(x_ptr + p * x_stride + rows[:, None] * k_dim + ks[None, :],
                    mask=scored[:, None] & real_k, other=0.0)
    w_base = w_ptr + p * w_stride
    b_base = bias_ptr + p * bias_stride
    targets = tl.load(targets_ptr + m, mask=scored, other=0).to(tl.int64)
    w_target = tl.load(w_base + targets[:, None] * k_dim + ks[None, :], mask=real_k, other=0.0)
    target_logit = tl.sum(x * w_target, axis=1) + tl.load(b_base + targets)
    if EXP2:
        x = x * 1.4426950408889634  # log2(e)
    if SHIFT_BY_TARGET:
        shift = target_logit
        if EXP2:
            shift = shift * 1.4426950408889634
        run_max, run_sum = _exp_sum(x, shift, w_base, b_base, vocab, k_dim, ks, BLOCK_M, BLOCK_V,
                                    True, TAIL_SPLIT, K_EXACT, EXP2, PRECISION)
        if EXP2:
            nll = tl.log2(run_sum) * 0.6931471805599453
        else:
            nll = tl.log(run_sum)
        # comparisons with NaN are false: a NaN counts as out of range
        if tl.max(tl.where(scored & ~(run_sum < float("inf")), 1, 0), axis=0) > 0:
            # rare: unpipelined, so that its buffers do not add to the shifted walk's
            run_max, run_sum = _exp_sum(x, shift, w_base, b_base, vocab, k_dim, ks, BLOCK_M,
                                        BLOCK_V, False, TAIL_SPLIT, K_EXACT, EXP2, PRECISION, 1)
            nll = _log_sum_exp(run_max, run_sum, EXP2) - target_logit
    else:
        run_max, run_sum = _exp_sum(x, target_logit, w_base, b_base, vocab, k_dim, ks, BLOCK_M,
                                    BLOCK_V, False, TAIL_SPLIT, K_EXACT, EXP2, PRECISION)
        nll = _log_sum_exp(run_max, run_sum, EXP2) - target_logit
    tl.store(out_ptr + p * n_scored + m, nll, mask=scored)
