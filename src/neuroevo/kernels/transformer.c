/* The transformer's sub-layers as fused CPU kernels, for every individual and token at once.
 *
 * Each kernel is one whole post-norm sub-layer of a block, x ← LN(x + f(x)), with its weights
 * read straight from the population's parameter views, plus the rotary step. Activations are
 * processed LANES tokens at a time and held transposed, one feature per vector and one token per
 * SIMD lane: every weight is then a scalar broadcast into a multiply-add, the layer norm's sums
 * over features are plain vector adds, and causal attention puts one query in each lane. Nothing
 * between a sub-layer's input and output reaches memory. The loss, too, is one kernel: the
 * tied-embedding logits and cross-entropy of each token, without storing the logits.
 */
#include "simd.h"

/* Accumulators held in registers: OUT_BLOCK outputs per pass over the inputs, and LOSS_BLOCK
 * vocabulary entries per pass of the loss kernel (two token vectors each). 16 and 8 (16 vectors)
 * suit AVX-512's 32 registers; the 16 of AVX2 take 8 and 6: on an AVX2 Zen 3 at P = 32, timed
 * interleaved, the paper's loss 63 → 44 ms and a dense block 11.3 → 9.4 ms. -D overrides both. */
#ifndef OUT_BLOCK
#define OUT_BLOCK (WIDE_REGISTER_FILE ? 16 : 8)
#endif
#ifndef LOSS_BLOCK
#define LOSS_BLOCK (WIDE_REGISTER_FILE ? 8 : 6)
#endif

/* The build's layout, for a run's summary: two layouts' loss sums round differently. */
int vector_lanes(void) { return LANES; }
int wide_register_file(void) { return WIDE_REGISTER_FILE; }

/* 2^x lane-wise for x <= 0 (scores in log2 units minus their row maximum): x = n + r with
 * |r| <= 1/2, 2^r by a degree-6 polynomial (relative error < 3e-7), 2^n written into the
 * exponent bits. Inputs at or below -127 (masked keys are -inf) give exactly 0, never a
 * denormal. */
static inline vfloat exp2_nonpositive(vfloat x) {
    const vfloat lowest = (vfloat){} - 127.0f;
    x = blend(x < lowest, lowest, x);
    const vfloat round = (vfloat){} + 12582912.0f; /* 1.5·2^23: adding it rounds to an integer */
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

/* ---- linear maps on transposed blocks ----------------------------------------------------- */

/* One individual-batched linear layer as the engine stores it: y = x·(B·A) + bias for factors
 * B (n_in, rank) and A (rank, n_out), or y = x·W + bias when b_factor is NULL (then `a` is W,
 * stored (n_in, n_out)). Each pointer is individual 0's tensor; individual p's lies p·stride
 * floats further (the genome length for views of the population matrix). */
typedef struct {
    const float *b_factor, *a, *bias;
    int64_t rank, b_stride, a_stride, bias_stride;
} linear_map;

static linear_map at_individual(linear_map map, int64_t p) {
    linear_map m = map;
    m.b_factor = map.b_factor ? map.b_factor + p * map.b_stride : NULL;
    m.a = map.a + p * map.a_stride;
    m.bias = map.bias ? map.bias + p * map.bias_stride : NULL;
    return m;
}

/* out[j] = bias[j] + residual[j] + Σ_k in[k]·w[k, j] for j < n_out (bias, residual optional). */
static void lane_matmul(const vfloat *in, int64_t n_in, const float *w, int64_t n_out,
                        const float *bias, const vfloat *residual, vfloat *out) {
    int64_t j0 = 0;
    for (; j0 + OUT_BLOCK <= n_out; j0 += OUT_BLOCK) {
        vfloat acc[OUT_BLOCK];
        for (int jj = 0; jj < OUT_BLOCK; ++jj)
            acc[jj] = ((vfloat){} + (bias ? bias[j0 + jj] : 0.0f))
                      + (residual ? residual[j0 + jj] : (vfloat){});
        for (int64_t k = 0; k < n_in; ++k) {
            const vfloat xk = in[k];
            const float *wk = w + k * n_out + j0;
            for (int jj = 0; jj < OUT_BLOCK; ++jj) acc[jj] += xk * wk[jj];
        }
        for (int jj = 0; jj < OUT_BLOCK; ++jj) out[j0 + jj] = acc[jj];
    }
    for (int64_t j = j0; j < n_out; ++j) {
        vfloat acc = ((vfloat){} + (bias ? bias[j] : 0.0f)) + (residual ? residual[j] : (vfloat){});
        for (int64_t k = 0; k < n_in; ++k) acc += in[k] * w[k * n_out + j];
        out[j] = acc;
    }
}

/* out = in·map (+ residual); factorized maps go through `scratch` (rank vectors): (x·B)·A, so W
 * is never built. */
static void lane_linear(const vfloat *in, int64_t n_in, linear_map map, int64_t n_out,
                        const vfloat *residual, vfloat *scratch, vfloat *out) {
    if (map.b_factor == NULL) {
        lane_matmul(in, n_in, map.a, n_out, map.bias, residual, out);
    } else {
        lane_matmul(in, n_in, map.b_factor, map.rank, NULL, NULL, scratch);
        lane_matmul(scratch, map.rank, map.a, n_out, map.bias, residual, out);
    }
}

/* rows (n <= LANES tokens of c features, row-major) → c vectors, one token per lane */
static void load_lanes(const float *rows, int64_t n, int64_t c, vfloat *out) {
    for (int64_t k = 0; k < c; ++k)
        for (int l = 0; l < LANES; ++l) out[k][l] = l < n ? rows[l * c + k] : 0.0f;
}

/* c vectors, one token per lane → rows (the first n tokens, `row` floats apart) */
static void store_lanes(const vfloat *in, int64_t n, int64_t c, float *rows, int64_t row) {
    for (int64_t k = 0; k < c; ++k)
        for (int64_t l = 0; l < n; ++l) rows[l * row + k] = in[k][l];
}

/* rows ← layer_norm(y) · gamma + beta, lane-wise over the c feature vectors of y (overwritten) */
static void store_layer_norm(vfloat *y, int64_t n, int64_t c, const float *gamma,
                             const float *beta, float eps, float *rows) {
    vfloat mean = (vfloat){}, var = (vfloat){}, inv;
    for (int64_t k = 0; k < c; ++k) mean += y[k];
    mean /= (float)c;
    for (int64_t k = 0; k < c; ++k) var += (y[k] - mean) * (y[k] - mean);
    for (int l = 0; l < LANES; ++l) inv[l] = 1.0f / sqrtf(var[l] / (float)c + eps);
    for (int64_t k = 0; k < c; ++k) y[k] = (y[k] - mean) * inv * gamma[k] + beta[k];
    store_lanes(y, n, c, rows, c);
}

/* ---- the attention sub-layer -------------------------------------------------------------- */

/* In place: x ← LN(x + Wo·attention(x)) for every sequence; x: (pop, seqs·t, c) contiguous,
 * sequence s of individual p at rows (p·seqs + s)·t. q, k, v map c → heads·head_dim; o maps back
 * to c. A block's rows are overwritten only after its keys and values are buffered, and later
 * blocks read only their own rows, so working in place is safe (and saves the write-allocate
 * traffic of a fresh output tensor).
 *
 * One sequence per task, in blocks of LANES tokens: the block's Q, K, V are projected, its keys
 * and values appended to a row-major buffer of the sequence so far, and then for each head a
 * pass over the visible keys scores them (head_dim multiply-adds per key) and keeps each query's
 * maximum, and a second exponentiates and accumulates p·v. Scores are in log2 units (exp = 2^x)
 * and no T×T matrix is stored; with head_dim 4 that is what makes torch's generic attention slow
 * (its per-row work is a handful of 4-wide dot products). */
void attention_layer_norm(float *x, linear_map q_map, linear_map k_map,
                          linear_map v_map, linear_map o_map, const float *gamma,
                          const float *beta, int64_t pop, int64_t seqs, int64_t t, int64_t c,
                          int64_t n_heads, int64_t head_dim, float eps, int n_threads) {
    const int64_t width = n_heads * head_dim;
    const float scale2 = 1.44269504088896341f / sqrtf((float)head_dim); /* log2(e)/√d */
    int64_t ranks = q_map.rank;
    ranks = k_map.rank > ranks ? k_map.rank : ranks;
    ranks = v_map.rank > ranks ? v_map.rank : ranks;
    ranks = o_map.rank > ranks ? o_map.rank : ranks;
    vint lane;
    for (int l = 0; l < LANES; ++l) lane[l] = l;
#pragma omp parallel num_threads(n_threads)
    {
        /* per thread: keys and values of the sequence so far (row j: [k heads | v heads]), one
         * block's scores, and the block's transposed activations */
        float *kv = malloc(sizeof(float) * (size_t)(2 * t * width));
        vfloat *lanes = aligned_alloc(sizeof(vfloat),
                                      sizeof(vfloat) * (size_t)(t + 2 * c + 4 * width + ranks + 1));
        vfloat *score = lanes, *xin = score + t, *y = xin + c, *q = y + c, *k = q + width;
        vfloat *v = k + width, *att = v + width, *scratch = att + width;
        const vfloat minus_inf = (vfloat){} - INFINITY;
#pragma omp for schedule(static)
        for (int64_t seq = 0; seq < pop * seqs; ++seq) {
            const int64_t p = seq / seqs;
            const linear_map qm = at_individual(q_map, p), km = at_individual(k_map, p),
                             vm = at_individual(v_map, p), om = at_individual(o_map, p);
            for (int64_t i0 = 0; i0 < t; i0 += LANES) {
                const int64_t n_query = t - i0 < LANES ? t - i0 : LANES, n_key = i0 + n_query;
                load_lanes(x + (seq * t + i0) * c, n_query, c, xin);
                lane_linear(xin, c, qm, width, NULL, scratch, q);
                lane_linear(xin, c, km, width, NULL, scratch, k);
                lane_linear(xin, c, vm, width, NULL, scratch, v);
                for (int64_t e = 0; e < width; ++e) q[e] *= scale2;
                store_lanes(k, n_query, width, kv + i0 * 2 * width, 2 * width);
                store_lanes(v, n_query, width, kv + i0 * 2 * width + width, 2 * width);
                for (int64_t h = 0; h < n_heads; ++h) {
                    const vfloat *qh = q + h * head_dim;
                    vfloat *acc = att + h * head_dim;
                    /* keys before the block are visible to every lane; inside it, key j to
                     * lanes l >= j − i0. Two running maxima halve the dependency chain. */
                    vfloat m = minus_inf, m_odd = minus_inf;
                    int64_t j = 0;
                    for (; j + 1 < i0; j += 2) {
                        const float *kj = kv + j * 2 * width + h * head_dim;
                        const float *kn = kj + 2 * width;
                        vfloat s = qh[0] * kj[0], sn = qh[0] * kn[0];
                        for (int64_t d = 1; d < head_dim; ++d) {
                            s += qh[d] * kj[d];
                            sn += qh[d] * kn[d];
                        }
                        score[j] = s;
                        score[j + 1] = sn;
                        m = blend(s > m, s, m);
                        m_odd = blend(sn > m_odd, sn, m_odd);
                    }
                    for (; j < n_key; ++j) {
                        const float *kj = kv + j * 2 * width + h * head_dim;
                        vfloat s = qh[0] * kj[0];
                        for (int64_t d = 1; d < head_dim; ++d) s += qh[d] * kj[d];
                        if (j >= i0) s = blend(lane >= (vint){} + (int32_t)(j - i0), s, minus_inf);
                        score[j] = s;
                        m = blend(s > m, s, m);
                    }
                    m = blend(m_odd > m, m_odd, m);
                    vfloat total = (vfloat){};
                    for (int64_t d = 0; d < head_dim; ++d) acc[d] = total;
                    for (int64_t j = 0; j < n_key; ++j) {
                        const float *vj = kv + j * 2 * width + width + h * head_dim;
                        const vfloat pj = exp2_nonpositive(score[j] - m);
                        total += pj;
                        for (int64_t d = 0; d < head_dim; ++d) acc[d] += pj * vj[d];
                    }
                    const vfloat inv = 1.0f / total;
                    for (int64_t d = 0; d < head_dim; ++d) acc[d] *= inv;
                }
                lane_linear(att, width, om, c, xin, scratch, y);
                store_layer_norm(y, n_query, c, gamma, beta, eps, x + (seq * t + i0) * c);
            }
        }
        free(lanes);
        free(kv);
    }
}

/* ---- the feed-forward sub-layer ----------------------------------------------------------- */

/* In place, for every individual and token row: x ← LN(x + ff2(relu(ff1(x)))) · gamma + beta.
 * x: (pop, rows, c) contiguous; ff1 maps c → f, ff2 maps f → c. The (rows, f) hidden layer
 * exists only as f vectors of one block. */
void feed_forward_layer_norm(float *x, linear_map ff1, linear_map ff2, const float *gamma,
                             const float *beta, int64_t pop, int64_t rows, int64_t c, int64_t f,
                             float eps, int n_threads) {
    const int64_t blocks = (rows + LANES - 1) / LANES;
    const int64_t widest = f > c ? f : c;
    const int64_t ranks = (ff1.rank > ff2.rank ? ff1.rank : ff2.rank) + 1;
#pragma omp parallel num_threads(n_threads)
    {
        /* per thread: the block's input, output, hidden layer and factor scratch, transposed */
        vfloat *in = aligned_alloc(sizeof(vfloat),
                                   sizeof(vfloat) * (size_t)(2 * c + widest + ranks));
        vfloat *y = in + c, *hidden = y + c, *scratch = hidden + widest;
        const vfloat zero = (vfloat){};
#pragma omp for schedule(static)
        for (int64_t task = 0; task < pop * blocks; ++task) {
            const int64_t p = task / blocks, r0 = (task % blocks) * LANES;
            const int64_t n = rows - r0 < LANES ? rows - r0 : LANES;
            float *xs = x + (p * rows + r0) * c;
            load_lanes(xs, n, c, in);
            lane_linear(in, c, at_individual(ff1, p), f, NULL, scratch, hidden);
            for (int64_t j = 0; j < f; ++j) hidden[j] = blend(hidden[j] > zero, hidden[j], zero);
            lane_linear(hidden, f, at_individual(ff2, p), c, in, scratch, y);
            store_layer_norm(y, n, c, gamma, beta, eps, xs);
        }
        free(in);
    }
}

/* ---- the loss: tied-embedding logits and cross-entropy ------------------------------------ */

/* Online log-sum-exp step, in log2 units: fold `count` logit vectors into the running maximum
 * m and sum of 2^(logit − m); one rescaling exponential per block rather than per logit. */
static inline void fold_logits(const vfloat *logits, int64_t count, vfloat *m, vfloat *sum) {
    vfloat block_max = logits[0];
    for (int64_t j = 1; j < count; ++j)
        block_max = blend(logits[j] > block_max, logits[j], block_max);
    const vfloat new_max = blend(block_max > *m, block_max, *m);
    vfloat total = *sum * exp2_nonpositive(*m - new_max);
    for (int64_t j = 0; j < count; ++j) total += exp2_nonpositive(logits[j] - new_max);
    *m = new_max;
    *sum = total;
}

/* out[p, i] = logsumexp_v(x_p[rows[i]]·w_p[v] + bias_p[v]) − the same logit at v = targets[i]
 * (natural log), for n scored tokens of every individual. Individual p's x (·, k) rows, w
 * (vocab, k) and bias (vocab) start p·x_stride, p·w_stride, p·bias_stride floats in; out is
 * (pop, n). 2·LANES tokens per task in two lane vectors, scaled by log2(e) on loading so logits
 * come out in log2 units; the vocabulary is walked LOSS_BLOCK entries at a time (each weight one
 * broadcast, multiplied into both vectors: 2·LOSS_BLOCK accumulators in registers) and folded
 * into a running maximum and sum per vector, so no logit reaches memory. */
void negative_log_likelihood(const float *x, int64_t x_stride, const int64_t *rows,
                             const int64_t *targets, int64_t n, const float *w, int64_t w_stride,
                             const float *bias, int64_t bias_stride, float *out, int64_t pop,
                             int64_t vocab, int64_t k, int n_threads) {
    const float log2e = 1.44269504088896341f, ln2 = 0.69314718055994531f;
    const int64_t tokens = 2 * LANES; /* two lane vectors: each weight broadcast serves both */
    const int64_t blocks = (n + tokens - 1) / tokens;
#pragma omp parallel num_threads(n_threads)
    {
        vfloat *xin = aligned_alloc(sizeof(vfloat), sizeof(vfloat) * (size_t)(2 * k + 1));
#pragma omp for schedule(static)
        for (int64_t task = 0; task < pop * blocks; ++task) {
            const int64_t p = task / blocks, i0 = (task % blocks) * tokens;
            const int64_t count = n - i0 < tokens ? n - i0 : tokens;
            const float *xp = x + p * x_stride, *wp = w + p * w_stride;
            const float *bp = bias + p * bias_stride;
            for (int64_t d = 0; d < k; ++d)
                for (int l = 0; l < tokens; ++l)
                    xin[2 * d + l / LANES][l % LANES] =
                        l < count ? xp[rows[i0 + l] * k + d] * log2e : 0.0f;
            vfloat m[2] = {(vfloat){} - INFINITY, (vfloat){} - INFINITY};
            vfloat sum[2] = {(vfloat){}, (vfloat){}};
            vfloat lo[LOSS_BLOCK], hi[LOSS_BLOCK];
            for (int64_t v0 = 0; v0 < vocab; v0 += LOSS_BLOCK) {
                const int64_t width = vocab - v0 < LOSS_BLOCK ? vocab - v0 : LOSS_BLOCK;
                if (width == LOSS_BLOCK) {
                    for (int jj = 0; jj < LOSS_BLOCK; ++jj)
                        lo[jj] = hi[jj] = (vfloat){} + bp[v0 + jj] * log2e;
                    for (int64_t d = 0; d < k; ++d) {
                        const vfloat a = xin[2 * d], b = xin[2 * d + 1];
                        for (int jj = 0; jj < LOSS_BLOCK; ++jj) {
                            const float wv = wp[(v0 + jj) * k + d];
                            lo[jj] += a * wv;
                            hi[jj] += b * wv;
                        }
                    }
                } else {
                    for (int64_t jj = 0; jj < width; ++jj) {
                        lo[jj] = hi[jj] = (vfloat){} + bp[v0 + jj] * log2e;
                        for (int64_t d = 0; d < k; ++d) {
                            lo[jj] += xin[2 * d] * wp[(v0 + jj) * k + d];
                            hi[jj] += xin[2 * d + 1] * wp[(v0 + jj) * k + d];
                        }
                    }
                }
                fold_logits(lo, width, &m[0], &sum[0]);
                fold_logits(hi, width, &m[1], &sum[1]);
            }
            for (int64_t l = 0; l < count; ++l) {
                const float *wt = wp + targets[i0 + l] * k, *xr = xp + rows[i0 + l] * k;
                float target = bp[targets[i0 + l]];
                for (int64_t d = 0; d < k; ++d) target += xr[d] * wt[d];
                out[p * n + i0 + l] =
                    (m[l / LANES][l % LANES] + log2f(sum[l / LANES][l % LANES])) * ln2 - target;
            }
        }
        free(xin);
    }
}

/* ---- rotary position ---------------------------------------------------------------------- */

/* In place: rotate feature pairs (0,1), (2,3), … < dims of every row by its position's angles.
 * x: (n_rows, c), row r at position r mod t; cos, sin: (t, dims/2). Only the first dims floats
 * of each row are touched (torch's strided version made several passes over the whole row). */
void rotary(float *x, const float *cos_table, const float *sin_table, int64_t n_rows, int64_t t,
            int64_t c, int64_t dims, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) {
        float *v = x + r * c;
        const float *cs = cos_table + (r % t) * (dims / 2), *sn = sin_table + (r % t) * (dims / 2);
        for (int64_t i = 0; i < dims / 2; ++i) {
            const float even = v[2 * i], odd = v[2 * i + 1];
            v[2 * i] = even * cs[i] - odd * sn[i];
            v[2 * i + 1] = even * sn[i] + odd * cs[i];
        }
    }
}
