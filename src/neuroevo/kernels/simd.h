/* SIMD vocabulary shared by the fused CPU kernels (see cpu.py for why the kernels exist).
 *
 * Plain C with GCC vector extensions: a vfloat is LANES floats in one value, compiled to one
 * AVX-512 register (two AVX2 or four SSE registers elsewhere), so the kernels do not depend on the
 * auto-vectoriser. Threads come from OpenMP: the runtime torch already loaded (same libgomp
 * soname), so torch's parallel regions and the kernels' share one thread pool.
 */
#ifndef NEUROEVO_SIMD_H
#define NEUROEVO_SIMD_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* 16 floats in one value, and a lane mask of the same width */
#define LANES 16
typedef float vfloat __attribute__((vector_size(4 * LANES)));
typedef int32_t vint __attribute__((vector_size(4 * LANES)));

static inline vfloat blend(vint mask, vfloat yes, vfloat no) {
    return (vfloat)(((vint)yes & mask) | ((vint)no & ~mask));
}

#endif
