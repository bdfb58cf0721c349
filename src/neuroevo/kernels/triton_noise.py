"""The mutation's Gaussian noise as one Triton kernel: out = base + scale · noise(seed), element
by element, with the noise never stored.

Why: torch computes `noise.gaussian` as about 35 element-wise passes over (rows, D) temporaries
(the hash, Box–Muller, then the addcmul); at P = 512 and D = 99,507 the GA's `tell` took 11.9 ms
a generation on an H100 (bench/RESULTS.md), memory traffic for what is one read and one write of
the weights. This kernel computes the same counter-based stream as noise.py (the same hash in
uint32, whose wrap-around equals torch's int32 one bit for bit; Box–Muller with a correctly
rounded sqrt, and tl.log and tl.cos, which Triton compiles for NVIDIA GPUs to libdevice's logf
and cosf, the functions torch's CUDA kernels call: same PTX as naming libdevice, checked for
sm_90a with Triton 3.9) in registers.

Tested on CPU through Triton's interpreter against noise.gaussian (tests/test_gpu_noise.py).
"""

from __future__ import annotations

import triton
import triton.language as tl
from neuroevo import noise


@triton.jit
def _lowbias32(z):
    """Wellons' lowbias32 on uint32 (logical shifts; multiplies wrap mod 2**32)."""
    z ^= z >> 16
    z *= LOWBIAS_M1
    z ^= z >> 15
    z *= LOWBIAS_M2
    return z ^ (z >> 16)


LOWBIAS_M1: tl.constexpr = tl.constexpr(noise._LOWBIAS_M1)
LOWBIAS_M2: tl.constexpr = tl.constexpr(noise._LOWBIAS_M2)
GOLDEN32: tl.constexpr = tl.constexpr(noise._GOLDEN32)
INV_2_24: tl.constexpr = tl.constexpr(noise._INV_2_24)
TWO_PI: tl.constexpr = tl.constexpr(noise._TWO_PI)


@triton.jit
def scaled_noise_kernel(out_ptr, base_ptr, base_row_stride, keys_ptr, scale_ptr, dim,
                        BLOCK: tl.constexpr):
    """out[r, j] = base[r · base_row_stride + j] + scale[j] · noise(keys[r], j) for j < dim;
    one program per (BLOCK columns, row): columns on the grid's first axis, which has room for
    2**31 − 1 blocks (the second has 65,535: rows). base may be out itself (in place) or one row
    read by every row (stride 0)."""
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    row = tl.program_id(1).to(tl.int64)
    inside = cols < dim
    key1 = tl.load(keys_ptr + 2 * row).to(tl.uint32, bitcast=True)
    key2 = tl.load(keys_ptr + 2 * row + 1).to(tl.uint32, bitcast=True)
    h1 = _lowbias32(cols.to(tl.uint32) * GOLDEN32 + key1)
    h2 = _lowbias32(h1 ^ key2)
    u1 = ((h1 >> 8).to(tl.float32) + 0.5) * INV_2_24  # (0, 1], as noise.gaussian
    u2 = ((h2 >> 8).to(tl.float32) + 0.5) * INV_2_24
    gauss = tl.sqrt_rn(tl.log(u1) * -2.0) * tl.cos(u2 * TWO_PI)
    base = tl.load(base_ptr + row * base_row_stride + cols, mask=inside)
    scale = tl.load(scale_ptr + cols, mask=inside)
    tl.store(out_ptr + row * dim + cols, base + gauss * scale, mask=inside)
