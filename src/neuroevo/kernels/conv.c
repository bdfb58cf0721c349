/* Direct convolution of population-folded activations, for the CNNs' first layers.
 *
 * MKL-DNN's grouped convolution (one group per individual, one observation each) is about twice
 * as slow as it need be on the 12-channel first layer of the Atari and CarRacing nets; this one
 * keeps 12–16 accumulators of LANES output channels in registers per output position block.
 */
#include "simd.h"

/* One individual's convolution, outputs in vectors of LANES channels: for every output position
 * and every input (channel, kh, kw) one input pixel is broadcast into NV·NCOL multiply-adds with
 * the matching weight vectors of NCOL neighbouring output columns, all accumulators in
 * registers (NV·NCOL = 12–16). x: (cin, h, w); wt: (cin, k, k, cpad), the kernel transposed so
 * output channels are contiguous; out: (cout, ho, wo). Columns past the edge repeat the last
 * one and are not stored. Written out per NV (vectors of output channels per pass) so that
 * every loop bound is a constant the compiler unrolls. */
#define DEFINE_CONV_BLOCK(NV, NCOL)                                                              \
    static void conv_block_##NV(const float *x, const float *wt, const float *bias, float *out,   \
                                int64_t cin, int64_t h, int64_t w, int64_t k, int64_t s,          \
                                int64_t cout, int64_t cpad, int64_t ho, int64_t wo) {             \
        for (int64_t c0 = 0; c0 < cpad; c0 += NV * LANES) {                                       \
            vfloat b[NV];                                                                         \
            for (int v = 0; v < NV; ++v)                                                          \
                for (int l = 0; l < LANES; ++l)                                                   \
                    b[v][l] = c0 + v * LANES + l < cout ? bias[c0 + v * LANES + l] : 0.0f;        \
            for (int64_t i = 0; i < ho; ++i)                                                      \
                for (int64_t j0 = 0; j0 < wo; j0 += NCOL) {                                       \
                    vfloat acc[NCOL][NV];                                                         \
                    int64_t col[NCOL];                                                            \
                    for (int c = 0; c < NCOL; ++c) {                                              \
                        col[c] = (j0 + c < wo ? j0 + c : wo - 1) * s;                             \
                        for (int v = 0; v < NV; ++v) acc[c][v] = b[v];                            \
                    }                                                                             \
                    for (int64_t ci = 0; ci < cin; ++ci)                                          \
                        for (int64_t kh = 0; kh < k; ++kh) {                                      \
                            const float *xr = x + (ci * h + i * s + kh) * w;                      \
                            const float *wr = wt + (ci * k + kh) * k * cpad + c0;                 \
                            for (int64_t kw = 0; kw < k; ++kw) {                                  \
                                vfloat wv[NV];                                                    \
                                for (int v = 0; v < NV; ++v)                                      \
                                    __builtin_memcpy(&wv[v], wr + kw * cpad + v * LANES,          \
                                                     sizeof(vfloat));                             \
                                for (int c = 0; c < NCOL; ++c) {                                  \
                                    const float xv = xr[col[c] + kw];                             \
                                    for (int v = 0; v < NV; ++v) acc[c][v] += xv * wv[v];         \
                                }                                                                 \
                            }                                                                     \
                        }                                                                         \
                    for (int c = 0; c < NCOL && j0 + c < wo; ++c)                                 \
                        for (int v = 0; v < NV; ++v)                                              \
                            for (int l = 0; l < LANES && c0 + v * LANES + l < cout; ++l)          \
                                out[((c0 + v * LANES + l) * ho + i) * wo + j0 + c] = acc[c][v][l];\
                }                                                                                 \
        }                                                                                         \
    }
DEFINE_CONV_BLOCK(1, 12)
DEFINE_CONV_BLOCK(2, 6)
DEFINE_CONV_BLOCK(4, 3)

/* out ← conv(x) + bias, unpadded, for every individual and observation. x: (n, pop·cin, h, w)
 * and out: (n, pop·cout, ho, wo), population-folded as the engine's convolutions are; w: the
 * (cout, cin, k, k) kernel of individual 0, individual p's at p·w_stride; bias likewise. Each
 * task transposes one individual's kernel once and applies it to its n observations. */
void conv2d_population(const float *x, const float *w, int64_t w_stride, const float *bias,
                       int64_t b_stride, float *out, int64_t n, int64_t pop, int64_t cin,
                       int64_t cout, int64_t h, int64_t wd, int64_t k, int64_t s,
                       int n_threads) {
    const int64_t ho = (h - k) / s + 1, wo = (wd - k) / s + 1;
    /* four vectors of output channels a pass (12 accumulators, 4 weight vectors, a broadcast)
     * fit 32 registers but spill from 16: on an AVX2 Zen 3, Atari's 12 → 32 first layer at
     * P = 8 took 12.2 ms in passes of 4 vectors and 3.5 ms in passes of 2 */
    const int64_t nv = cout > 2 * LANES && WIDE_REGISTER_FILE ? 4 : cout > LANES ? 2 : 1;
    const int64_t cpad = (cout + nv * LANES - 1) / (nv * LANES) * (nv * LANES);
#pragma omp parallel num_threads(n_threads)
    {
        float *wt = aligned_alloc(sizeof(vfloat), sizeof(vfloat) * (size_t)(cin * k * k * cpad));
#pragma omp for schedule(static)
        for (int64_t p = 0; p < pop; ++p) {
            const float *wp = w + p * w_stride;
            for (int64_t ci = 0; ci < cin; ++ci)
                for (int64_t kk = 0; kk < k * k; ++kk)
                    for (int64_t co = 0; co < cpad; ++co)
                        wt[(ci * k * k + kk) * cpad + co] =
                            co < cout ? wp[(co * cin + ci) * k * k + kk] : 0.0f;
            for (int64_t b = 0; b < n; ++b) {
                const float *xp = x + (b * pop + p) * cin * h * wd;
                float *op = out + (b * pop + p) * cout * ho * wo;
                const float *bp = bias + p * b_stride;
                if (nv == 4) conv_block_4(xp, wt, bp, op, cin, h, wd, k, s, cout, cpad, ho, wo);
                else if (nv == 2) conv_block_2(xp, wt, bp, op, cin, h, wd, k, s, cout, cpad, ho, wo);
                else conv_block_1(xp, wt, bp, op, cin, h, wd, k, s, cout, cpad, ho, wo);
            }
        }
        free(wt);
    }
}
