"""Fused CPU kernels for the paper's tiny transformer, compiled from C on first use.

Why: at the paper's sizes the generic kernels waste most of their time. torch's causal
`scaled_dot_product_attention` with head_dim 4 and T = 64 spends ~3 µs per (sequence, head) on
a handful of 4-wide dot products (18 of the 40 ms of block work per generation in
bench/bench_lm.py), and `layer_norm` of 32-wide rows runs at a third of memory speed.
`cpu_kernels.c` does the same arithmetic with one query per SIMD lane and no stored T×T matrix
(2.7× faster than SDPA), and fuses the epilogues of the small GEMMs (bias + residual + layer
norm; bias + ReLU) into one pass each.

How: the C file is compiled once per source, compiler and CPU with the system C compiler
(`cc -O3 -march=native -fopenmp`, well under a second) into `~/.cache/neuroevo/kernels/` (or
`$NEUROEVO_CACHE/kernels`), then loaded with ctypes. Without a compiler, after a failed build, on
tensors that need gradients, or with `NEUROEVO_CPU_KERNELS=0`, callers use torch's own ops,
which agree to ~1e-6 (tests/test_cpu_kernels.py).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.c")
_BASE_FLAGS = ["-O3", "-fopenmp", "-fno-math-errno"]
FLAG_SETS = (_BASE_FLAGS + ["-march=native", "-mprefer-vector-width=512"],  # x86 with AVX-512
             _BASE_FLAGS + ["-march=native"],
             _BASE_FLAGS)
MAX_HEAD_DIM = 64  # fixed-size lane buffers in cpu_kernels.c

log = logging.getLogger(__name__)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels can replace torch's ops for these inputs."""
    return (not torch.is_grad_enabled()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and library() is not None)


def causal_attention(qkv: torch.Tensor, bias: torch.Tensor | None, batch: int, n_heads: int,
                     head_dim: int) -> torch.Tensor:
    """Causal attention of each of the B sequences in qkv (P, B·T, 3·h·d), the output of the
    fused Q/K/V GEMM, with its bias (P, 3·h·d) added on load (None: already added).

    Returns (P, B·T, h·d): `scaled_dot_product_attention(q, k, v, is_causal=True)` per sequence
    and head, scale 1/√d.
    """
    pop, n, width3 = qkv.shape
    assert width3 == 3 * n_heads * head_dim and head_dim <= MAX_HEAD_DIM
    qkv = qkv.contiguous()
    bias = bias.contiguous() if bias is not None else None
    out = qkv.new_empty(pop, n, n_heads * head_dim)
    library().causal_attention(qkv.data_ptr(), _pointer(bias), out.data_ptr(), pop * batch,
                               batch, n // batch, n_heads, head_dim, head_dim ** -0.5,
                               torch.get_num_threads())
    return out


def residual_layer_norm_(x: torch.Tensor, residual: torch.Tensor | None, bias: torch.Tensor | None,
                         scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """In place: x (P, N, C) ← layer_norm(x + residual + bias[:, None]) · scale + shift.

    residual (P, N, C) and bias (P, C) may be None; scale and shift are (C,).
    """
    assert x.is_contiguous()
    pop, rows, c = x.shape
    residual = residual.contiguous() if residual is not None else None
    bias = bias.contiguous() if bias is not None else None
    scale, shift = scale.contiguous(), shift.contiguous()
    library().residual_layer_norm(x.data_ptr(), _pointer(residual), _pointer(bias),
                                  scale.data_ptr(), shift.data_ptr(), pop, rows, c, eps,
                                  torch.get_num_threads())
    return x


def bias_relu_(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """In place: x (P, N, C) ← relu(x + bias[:, None]), bias (P, C)."""
    assert x.is_contiguous()
    pop, rows, c = x.shape
    bias = bias.contiguous()
    library().bias_relu(x.data_ptr(), bias.data_ptr(), pop, rows, c, torch.get_num_threads())
    return x


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MB in the heap instead of unmapping them.

    torch's CPU allocator hands every tensor back to malloc. Blocks above glibc's mmap threshold
    (dynamic, so it drifts with the mix of sizes) are unmapped on free and page-faulted back in,
    zero-filled, on the next allocation; with the LM's few-MB activations and logits tiles that
    measured generations up to 1.7× slower (113 vs 68 ms in bench/bench_lm.py's setting), with
    half the CPU time in the kernel. Process-wide and harmless elsewhere; a no-op off glibc.
    Returns whether it took effect.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_ok = libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum on 64-bit
    trim_ok = libc.mallopt(m_trim_threshold, 2**30)
    return bool(mmap_ok and trim_ok)


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (with one log line saying why) when they cannot be used."""
    if os.environ.get("NEUROEVO_CPU_KERNELS", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler found: using torch's attention and layer norm on CPU")
        return None
    for flags in FLAG_SETS:
        try:
            path = _cached_build(compiler, flags)
            if path is not None:
                return _declare(ctypes.CDLL(str(path)))
        except OSError as error:  # unwritable cache, vanished compiler, unloadable library
            log.debug("kernel build with %s failed: %s", " ".join(flags), error)
    log.warning("could not compile %s with %s: using torch's attention and layer norm on CPU",
                SOURCE.name, compiler)
    return None


def _cached_build(compiler: str, flags: list[str]) -> Path | None:
    """Compile to a path named by everything that determines the binary; build, then rename, so
    concurrent runs (Snakemake jobs) never load a half-written library."""
    key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, *flags, _cpu_signature()])
                         .encode()).hexdigest()[:16]
    cache = Path(os.environ.get("NEUROEVO_CACHE", Path.home() / ".cache" / "neuroevo")) / "kernels"
    target = cache / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *flags, "-shared", "-fPIC", "-o", str(built),
                                 str(SOURCE)], capture_output=True, text=True)
        if result.returncode != 0:
            log.debug("%s %s failed:\n%s", compiler, " ".join(flags), result.stderr)
            return None
        os.replace(built, target)
    return target


def _cpu_signature() -> str:
    """-march=native binaries are only valid on the CPU they were built for: key on its model
    and feature flags (a shared home directory on a heterogeneous cluster stays safe)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in info if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(wanted)))


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.causal_attention.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, ctypes.c_float,
                                     ctypes.c_int]
    lib.causal_attention.restype = None
    lib.residual_layer_norm.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i64, ctypes.c_float,
                                        ctypes.c_int]
    lib.residual_layer_norm.restype = None
    lib.bias_relu.argtypes = [ptr, ptr, i64, i64, i64, ctypes.c_int]
    lib.bias_relu.restype = None
    return lib
