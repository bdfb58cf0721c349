"""When the GA's noise runs as one fused Triton kernel (triton_noise.py), and its launch.

A lever of issue #6, on since a GPU session timed it (2026-11-27, H100, bench/RESULTS.md): 9.2 →
1.6 ms for a generation's 49 M draws of the paper's dense model, the GA's tell 13.9 → 10.4 ms,
and every weight bit-identical to torch's path (noise.gaussian, then addcmul; the hash is exact,
and Triton's log, cos and multiply-adds rounded as torch's kernels do). Were another GPU or
Triton to round otherwise, the weights would move in their last bits; within one device the GA
and `develop` take the same path, so an elite's seed chain still re-develops to the GA's weights
bit for bit. NEUROEVO_GPU_KERNELS=0 takes torch's path.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from neuroevo import noise
from neuroevo.kernels import gpu

NOISE_KERNEL = True  # the lever (bench_ga.py --torch-noise times the GA without it)
NOISE_BLOCK = 1024  # columns per program
NOISE_WARPS = 4


def usable(theta: torch.Tensor) -> bool:
    """Whether weights `theta` get their noise from the kernel: on CUDA, contiguous float32,
    the lever on, Triton present and the GPU kernels not switched off (NEUROEVO_GPU_KERNELS=0)."""
    return theta.is_cuda and eligible(theta)


def eligible(theta: torch.Tensor) -> bool:
    """Everything but the device (tests run the kernel on CPU through Triton's interpreter)."""
    return (NOISE_KERNEL and theta.dtype == torch.float32 and theta.is_contiguous()
            and kernels() is not None)


@functools.cache
def kernels() -> ModuleType | None:
    """neuroevo.kernels.triton_noise, or None without Triton or with NEUROEVO_GPU_KERNELS=0."""
    if not gpu.triton_allowed():
        return None
    from neuroevo.kernels import triton_noise
    return triton_noise


def add_scaled_noise(out: torch.Tensor, base: torch.Tensor, seeds: list[int],
                     scale: torch.Tensor) -> None:
    """out (n, D) ← base + scale · noise(seeds[i]) row by row, in one launch; base is (n, D)
    (out itself: in place) or (D,) shared by every row; scale (D,)."""
    assert out.is_contiguous() and base.stride(-1) == 1 and len(seeds) == out.shape[0]
    dim = out.shape[1]
    keys = noise.stream_key_tensor(seeds, out.device)
    row_stride = base.stride(0) if base.dim() == 2 else 0
    grid = (-(-dim // NOISE_BLOCK), len(seeds))
    kernels().scaled_noise_kernel[grid](out, base, row_stride, keys, scale.contiguous(), dim,
                                        BLOCK=NOISE_BLOCK, num_warps=NOISE_WARPS)
