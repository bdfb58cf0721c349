/* Fused CPU kernels for the population-batched transformer (see cpu.py for why they exist).
 *
 * Plain C with OpenMP, no torch headers: it compiles in well under a second and is loaded with
 * ctypes. Every function works on contiguous float32 buffers whose layout the Python wrapper
 * checks. Threads come from the OpenMP runtime torch already loaded (same libgomp soname), so
 * torch's and these parallel regions share one thread pool.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 16 floats in one value: GCC's vector extension, compiled to one AVX-512 register (or two
 * AVX2 / four SSE registers elsewhere), so the kernels do not depend on the auto-vectoriser. */
#define LANES 16
#define MAX_HEAD_DIM 64
typedef float vfloat __attribute__((vector_size(4 * LANES)));
typedef int32_t vint __attribute__((vector_size(4 * LANES)));

static inline vfloat blend(vint mask, vfloat yes, vfloat no) {
    return (vfloat)(((vint)yes & mask) | ((vint)no & ~mask));
}

/* 2^x lane-wise for x <= 0 (scores in log2 units minus their row maximum): x = n + r with
 * |r| <= 1/2, 2^r by a degree-6 polynomial (relative error < 3e-7), 2^n written into the
 * exponent bits. Inputs at or below -127 (masked keys are -inf) give exactly 0, never a
 * denormal. */
static inline vfloat exp2_nonpositive(vfloat x) {
    const vfloat lowest = (vfloat){} - 127.0f;
    x = blend(x < lowest, lowest, x);
    const vfloat round = (vfloat){} + 12582912.0f;  /* 1.5·2^23: adding it rounds to an integer */
    const vfloat n = (x + round) - round;
    const vfloat r = x - n;
    vfloat p = r * 1.535336188319500e-4f + 1.339887440266574e-3f;
    p = p * r + 9.618437357674640e-3f;
    p = p * r + 5.550332471162809e-2f;
    p = p * r + 2.402264791363012e-1f;
    p = p * r + 6.931472028550421e-1f;
    p = p * r + 1.0f;
    const vint two_n = (__builtin_convertvector(n, vint) + 127) << 23;
    return p * (vfloat)two_n;
}

/* Causal multi-head attention for short sequences and narrow heads (the paper's head_dim 4).
 *
 * qkv: (n_seq, t, 3·H·D) rows [q heads | k heads | v heads], as the fused Q/K/V GEMM writes them;
 * bias: (n_seq / seq_per_bias, 3·H·D), the GEMM's bias per individual, added on load (or NULL).
 * out: (n_seq, t, H·D). scale multiplies q·k (1/sqrt(D)).
 * One (sequence, head) per task, LANES queries at a time with one query per SIMD lane: a pass
 * over the keys scores them (D multiply-adds per key) and keeps each query's maximum, a second
 * exponentiates and accumulates p·v. Nothing is reduced across lanes and no T×T matrix is
 * stored, which is what makes the generic kernels slow at this head size (their per-row work is
 * a handful of 4-wide dot products). Scores are kept in log2 units so the exponential is 2^x. */
void causal_attention(const float *qkv, const float *bias, float *out, int64_t n_seq,
                      int64_t seq_per_bias, int64_t t, int64_t n_heads, int64_t head_dim,
                      float scale, int n_threads) {
    const int64_t width = n_heads * head_dim, row = 3 * width;
    const float scale2 = scale * 1.44269504088896341f;  /* log2(e): exp(s) = 2^(s·log2 e) */
    vint lane;
    for (int l = 0; l < LANES; ++l) lane[l] = l;
#pragma omp parallel num_threads(n_threads)
    {
        /* per thread: this head's keys and values (bias added), and one block's scores */
        float *kv = malloc(sizeof(float) * (size_t)(2 * t * head_dim));
        vfloat *score = aligned_alloc(sizeof(vfloat), sizeof(vfloat) * (size_t)t);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < n_seq * n_heads; ++item) {
            const int64_t seq = item / n_heads, h = item % n_heads;
            const float *base = qkv + seq * t * row + h * head_dim;
            const float *b = bias ? bias + (seq / seq_per_bias) * row + h * head_dim : NULL;
            float *k = kv, *v = kv + t * head_dim;
            for (int64_t j = 0; j < t; ++j)
                for (int64_t d = 0; d < head_dim; ++d) {
                    k[j * head_dim + d] = base[j * row + width + d] + (b ? b[width + d] : 0.0f);
                    v[j * head_dim + d] = base[j * row + 2 * width + d]
                                          + (b ? b[2 * width + d] : 0.0f);
                }
            vfloat q[MAX_HEAD_DIM], acc[MAX_HEAD_DIM];
            for (int64_t i0 = 0; i0 < t; i0 += LANES) {
                const int64_t n_query = t - i0 < LANES ? t - i0 : LANES, n_key = i0 + n_query;
                for (int64_t d = 0; d < head_dim; ++d)
                    for (int l = 0; l < LANES; ++l)
                        q[d][l] = l < n_query ? (base[(i0 + l) * row + d] + (b ? b[d] : 0.0f))
                                                * scale2 : 0.0f;
                /* keys before the block are visible to every lane; inside it, to lanes
                 * l >= j − i0 */
                const vfloat minus_inf = (vfloat){} - INFINITY;
                vfloat m = minus_inf;
                for (int64_t j = 0; j < n_key; ++j) {
                    const float *kj = k + j * head_dim;
                    vfloat s = q[0] * kj[0];
                    for (int64_t d = 1; d < head_dim; ++d) s += q[d] * kj[d];
                    s = blend(lane >= (vint){} + (int32_t)(j - i0), s, minus_inf);
                    score[j] = s;
                    m = blend(s > m, s, m);
                }
                vfloat total = (vfloat){};
                for (int64_t d = 0; d < head_dim; ++d) acc[d] = total;
                for (int64_t j = 0; j < n_key; ++j) {
                    const float *vj = v + j * head_dim;
                    const vfloat p = exp2_nonpositive(score[j] - m);
                    total += p;
                    for (int64_t d = 0; d < head_dim; ++d) acc[d] += p * vj[d];
                }
                for (int l = 0; l < n_query; ++l)
                    for (int64_t d = 0; d < head_dim; ++d)
                        out[(seq * t + i0 + l) * width + h * head_dim + d] = acc[d][l] / total[l];
            }
        }
        free(score);
        free(kv);
    }
}

/* In place: x[p, r, :] = layer_norm(x[p, r, :] + residual[p, r, :] + bias[p, :]) · gamma + beta.
 * x, residual: (pop, rows, c), residual may be NULL; bias: (pop, c) or NULL; gamma, beta: (c,).
 * The post-norm sub-layer's whole epilogue (residual add, the GEMM's bias, the norm) in one pass
 * over rows of c floats while they are in L1, instead of four passes over the tensor. */
void residual_layer_norm(float *x, const float *residual, const float *bias, const float *gamma,
                         const float *beta, int64_t pop, int64_t rows, int64_t c, float eps,
                         int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t pr = 0; pr < pop * rows; ++pr) {
        float *v = x + pr * c;
        const float *b = bias ? bias + (pr / rows) * c : NULL;
        const float *res = residual ? residual + pr * c : NULL;
        float mean = 0.0f, var = 0.0f;
        if (res) {
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) v[j] += res[j];
        }
        if (b) {
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) v[j] += b[j];
        }
#pragma omp simd reduction(+ : mean)
        for (int64_t j = 0; j < c; ++j) mean += v[j];
        mean /= (float)c;
#pragma omp simd reduction(+ : var)
        for (int64_t j = 0; j < c; ++j) var += (v[j] - mean) * (v[j] - mean);
        const float inv = 1.0f / sqrtf(var / (float)c + eps);
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) v[j] = (v[j] - mean) * inv * gamma[j] + beta[j];
    }
}

/* In place: x[p, r, :] = max(x[p, r, :] + bias[p, :], 0), the feed-forward's first epilogue.
 * x: (pop, rows, c); bias: (pop, c). */
void bias_relu(float *x, const float *bias, int64_t pop, int64_t rows, int64_t c,
               int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t pr = 0; pr < pop * rows; ++pr) {
        float *v = x + pr * c;
        const float *b = bias + (pr / rows) * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
            const float y = v[j] + b[j];
            v[j] = y > 0.0f ? y : 0.0f;
        }
    }
}
