/* SIMD vocabulary shared by the fused CPU kernels (see cpu.py for why the kernels exist).
 *
 * Plain C with GCC vector extensions: a vfloat is LANES floats in one value, compiled to one
 * vector register, so the kernels do not depend on the auto-vectoriser. Threads come from
 * OpenMP: the runtime torch already loaded (same libgomp soname), so torch's parallel regions and
 * the kernels' share one thread pool.
 */
#ifndef NEUROEVO_SIMD_H
#define NEUROEVO_SIMD_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* One value is as wide as the target's widest vector register: 16 floats with AVX-512, 8 with
 * AVX/AVX2, 4 otherwise (SSE, NEON). Wider values than the registers are legal C but GCC lowers
 * them through memory: with 16 lanes on an AVX2 CPU (AMD Zen 3) the Atari first-layer convolution
 * measured 90 ms against 12 ms with 8, and the fused LM loss 7× slower than torch's ops. -DLANES=N
 * overrides the choice (the tests build every width on whatever CPU runs them). */
#ifndef LANES
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#endif

/* Whether the target has 32 vector registers (AVX-512) rather than 16 (AVX2, SSE): the kernels
 * keep more accumulators in flight where they fit (`conv.c`, `transformer.c`).
 * -DWIDE_REGISTER_FILE=0|1 overrides it. */
#ifndef WIDE_REGISTER_FILE
#if defined(__AVX512F__)
#define WIDE_REGISTER_FILE 1
#else
#define WIDE_REGISTER_FILE 0
#endif
#endif

typedef float vfloat __attribute__((vector_size(4 * LANES)));
typedef int32_t vint __attribute__((vector_size(4 * LANES)));

static inline vfloat blend(vint mask, vfloat yes, vfloat no) {
    return (vfloat)(((vint)yes & mask) | ((vint)no & ~mask));
}

#endif
