"""The device's own ceilings, measured in the same run as the work they bound (issue #6 goal 3).

- `matmul_ceiling`: FLOP/s of one large square matrix product in the benchmark's precision
  (fp32, TF32 or bf16 operands): what the tensor cores (or the CPU's SIMD units) deliver at best;
  the size is capped by time as well (see its docstring).
- `exp_rate`: exponentials per second when nothing else limits them. On CUDA a Triton kernel
  iterates x ← exp(−x) in registers over the whole GPU (compiled, as the loss kernel's `tl.exp`
  is: a multiply and the special-function unit's ex2); elsewhere torch's vectorised exp of a
  cache-resident buffer into another.

The LM's cross-entropy needs P × tokens × vocab exponentials per generation, a floor of its own
that no matmul speed removes.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch

from neuroevo.tasks.language import float32_matmuls
from timing import interleaved_medians  # bench/, beside this module

MATMUL_MAX_SIZE = {"cuda": 8192, "cpu": 2048}
MATMUL_PROBE_SECONDS = 0.5  # the most one product of the chosen size should take
# tf32x3 (the Triton kernels' split-TF32 products) is held to the fp32 ceiling: torch has no such
# GEMM, and it promises fp32's accuracy.
PRECISION_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
                    "tf32x3": torch.float32}


def matmul_ceiling(device: torch.device, precision: str, repeats: int) -> tuple[float, int]:
    """FLOP/s of an n×n×n product on random data, and n: the largest power of two up to 8192
    on CUDA, 2048 on CPU, whose product takes at most about MATMUL_PROBE_SECONDS. Bounded so
    that a CPU without native bf16 products (0.3 GFLOP/s on an AVX2 EPYC, where one 2048³
    product took a minute) does not spend minutes measuring its own ceiling."""
    dtype = PRECISION_DTYPES[precision]
    with float32_matmuls(precision):
        n, product = 256, _product(256, dtype, device)
        while n < MATMUL_MAX_SIZE.get(device.type, 2048):
            probe, = interleaved_medians([product], device, 1)
            if probe * 8 > MATMUL_PROBE_SECONDS:  # the next size does 8× the work
                break
            n *= 2
            product = _product(n, dtype, device)
        seconds = _median_seconds(product, device, repeats)
    return 2 * n**3 / seconds, n


def _product(n: int, dtype: torch.dtype, device: torch.device) -> Callable[[], torch.Tensor]:
    """The timed work: one n×n×n product of random operands made once, outside the timing."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return lambda: a @ b


def exp_rate(device: torch.device, repeats: int) -> float:
    """Exponentials per second (see the module docstring for how, per device)."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        return _triton_exp_rate(device, repeats)
    x = torch.rand(1 << 18, device=device)  # 1 MB in, 1 MB out: cache-resident (on this
    out = torch.empty_like(x)                # 2-core Xeon 2^15..2^22 floats gave 7–12 G/s)
    steps = 32

    def repeated() -> None:
        for _ in range(steps):
            torch.exp(x, out=out)

    return steps * x.numel() / _median_seconds(repeated, device, repeats)


def _triton_exp_rate(device: torch.device, repeats: int) -> float:
    steps, block = 1024, 1024
    programs = 64 * torch.cuda.get_device_properties(device).multi_processor_count
    x = torch.rand(programs * block, device=device)
    kernel = exp_chain_kernel()
    seconds = _median_seconds(lambda: kernel[(programs,)](x, STEPS=steps, BLOCK=block),
                              device, repeats)
    return 2 * steps * x.numel() / seconds


@functools.cache
def exp_chain_kernel():
    """A Triton kernel: each element x ← x' + y' where x' and y' are x and x + ½ after STEPS
    rounds of v ← exp(−v), in registers (two independent chains hide the unit's latency)."""
    import triton
    import triton.language as tl

    @triton.jit
    def exp_chain(x_ptr, STEPS: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        a = tl.load(x_ptr + offsets)
        b = a + 0.5
        for _ in range(STEPS):
            a = tl.exp(-a)
            b = tl.exp(-b)
        tl.store(x_ptr + offsets, a + b)

    return exp_chain


def _median_seconds(fn, device: torch.device, repeats: int) -> float:
    seconds, = interleaved_medians([fn], device, max(repeats, 3))
    return seconds
