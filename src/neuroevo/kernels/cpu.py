"""Fused CPU kernels for the paper's tiny transformer, compiled from C on first use.

Why: at the paper's sizes (hidden 32, four heads of width 4, ff 128) a block is a dozen tiny
GEMMs and element-wise passes, and the time goes to memory traffic and per-call overhead rather
than arithmetic; torch's causal `scaled_dot_product_attention` alone spent ~3 µs per (sequence,
head) on a handful of 4-wide dot products (18 of 40 ms of block work per generation in
bench/bench_lm.py). `transformer.c` runs each post-norm sub-layer, x ← LN(x + f(x)), as one
kernel over blocks of 16 tokens held in registers and L1 (the feed-forward one reaches ~70% of
this CPU's fp32 peak), so nothing between a sub-layer's input and output reaches memory. For the
Atari and CarRacing CNNs, MKL-DNN's grouped convolution (one group per individual) is 2× slower
than it need be on the 12-channel first layer; `conv2d_population` computes it directly.

How: the C files are compiled once per source, compiler and CPU with the system C compiler
(`cc -O3 -march=native -fopenmp`, about a second) into `~/.cache/neuroevo/kernels/` (or
`$NEUROEVO_CACHE/kernels`, or a temporary directory when those are read-only), then loaded with
ctypes. Without a compiler, after a failed build, on
tensors that need gradients, or with `NEUROEVO_CPU_KERNELS=0`, the model uses torch's own ops,
which agree to ~1e-5 (tests/test_cpu_kernels.py).
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

HERE = Path(__file__).parent
SOURCES = sorted(HERE.glob("*.c"))  # transformer.c, conv.c; both include simd.h
_BASE_FLAGS = ["-O3", "-fopenmp", "-fno-math-errno"]
FLAG_SETS = (_BASE_FLAGS + ["-march=native", "-mprefer-vector-width=512"],  # x86 with AVX-512
             _BASE_FLAGS + ["-march=native"],
             _BASE_FLAGS)

LinearOperands = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]  # B, A or W, bias

log = logging.getLogger(__name__)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels can replace torch's ops for these inputs: CPU float32 tensors,
    no autograd, and not inside torch.compile (which traces torch's ops instead)."""
    return (not torch.compiler.is_compiling()
            and not torch.is_grad_enabled()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and library() is not None)


def attention_layer_norm(x: torch.Tensor, batch: int, q: LinearOperands, k: LinearOperands,
                         v: LinearOperands, out: LinearOperands, scale: torch.Tensor,
                         shift: torch.Tensor, eps: float, n_heads: int, head_dim: int
                         ) -> torch.Tensor:
    """LN(x + out(causal multi-head attention(q(x), k(x), v(x)))) · scale + shift, computed in
    place: x (contiguous; else a contiguous copy of it) is overwritten and returned. The GPU
    version (`gpu.attention_layer_norm`) returns a new tensor instead: callers use the result
    and treat x as consumed.

    x (P, B·T, C), the B sequences of each individual attended separately; q, k, v map C → h·d
    and `out` maps back, each as `Linear.operands` gives them; scores scaled by 1/√d.
    """
    x = x.contiguous()
    require_float32(x, scale, shift)
    pop, n, c = x.shape
    maps = [_LinearMap.of(operands) for operands in (q, k, v, out)]
    library().attention_layer_norm(x.data_ptr(), *maps, scale.contiguous().data_ptr(),
                                   shift.contiguous().data_ptr(), pop, batch, n // batch, c,
                                   n_heads, head_dim, eps, torch.get_num_threads())
    return x


def feed_forward_layer_norm_(x: torch.Tensor, ff1: LinearOperands, ff2: LinearOperands,
                             scale: torch.Tensor, shift: torch.Tensor, eps: float
                             ) -> torch.Tensor:
    """In place: x (P, N, C) ← LN(x + ff2(relu(ff1(x)))) · scale + shift; the (P, N, ff) hidden
    layer never reaches memory. ff1, ff2 as `Linear.operands` gives them."""
    assert x.is_contiguous()
    require_float32(x, scale, shift)
    pop, rows, c = x.shape
    maps = [_LinearMap.of(ff1), _LinearMap.of(ff2)]
    library().feed_forward_layer_norm(x.data_ptr(), *maps, scale.contiguous().data_ptr(),
                                      shift.contiguous().data_ptr(), pop, rows, c,
                                      ff1[1].shape[-1], eps, torch.get_num_threads())
    return x


def rotary_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """In place: x (…, T, C) with its first 2·k features rotated pairwise by angles whose cos and
    sin are (T, k)."""
    assert x.is_contiguous()
    require_float32(x, cos, sin)
    t, c = x.shape[-2:]
    cos, sin = cos.contiguous(), sin.contiguous()
    library().rotary(x.data_ptr(), cos.data_ptr(), sin.data_ptr(), x.numel() // c, t, c,
                     2 * cos.shape[1], torch.get_num_threads())
    return x


def negative_log_likelihood(x: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor, targets: torch.Tensor,
                            inner: torch.Tensor | None = None) -> torch.Tensor:
    """(P, M): for each individual and scored token m, logsumexp(logits) − logits[target],
    logits = (x[:, rows[m]] · inner[p]) · weight[p]ᵀ + bias[p], never stored. x (P, N, H),
    inner (P, H, K) or None (then K = H), weight (P, V, K), bias (P, V), rows and targets (M,)
    int64. Everything in float32, the product by inner too: like the other kernels, this one
    ignores autocast (under which that product would come back in bf16)."""
    if inner is not None:
        with torch.autocast("cpu", enabled=False):
            x, rows = factored_rows(x, rows, inner)
    x, weight, bias = per_individual(x), per_individual(weight), per_individual(bias)
    require_float32(x, weight, bias)
    rows, targets = rows.contiguous(), targets.contiguous()
    pop, n = x.shape[0], rows.numel()
    vocab, k = weight.shape[1:]
    out = x.new_empty(pop, n)
    library().negative_log_likelihood(x.data_ptr(), x.stride(0), rows.data_ptr(),
                                      targets.data_ptr(), n, weight.data_ptr(), weight.stride(0),
                                      bias.data_ptr(), bias.stride(0), out.data_ptr(), pop, vocab,
                                      k, torch.get_num_threads())
    return out


def conv2d_population(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor,
                      stride: int) -> torch.Tensor:
    """x (N, P·cin, H, W) population-folded → conv(x) + bias, (N, P·cout, H', W'), unpadded;
    kernel (P, cout, cin, k, k) and bias (P, cout), each contiguous within an individual."""
    pop, cout, cin, k = kernel.shape[:4]
    n, _, h, w = x.shape
    x, kernel, bias = x.contiguous(), per_individual(kernel), per_individual(bias)
    require_float32(x, kernel, bias)
    out = x.new_empty(n, pop * cout, (h - k) // stride + 1, (w - k) // stride + 1)
    library().conv2d_population(x.data_ptr(), kernel.data_ptr(), kernel.stride(0),
                                bias.data_ptr(), bias.stride(0), out.data_ptr(), n, pop, cin,
                                cout, h, w, k, stride, torch.get_num_threads())
    return out


class _LinearMap(ctypes.Structure):
    """transformer.c's `linear_map`: individual 0's tensors and the step to the next individual.

    Views of the population matrix are passed as they are (the step is the genome length);
    anything not contiguous within an individual is copied first, and kept alive here for the
    duration of the call.
    """

    _fields_ = [("b_factor", ctypes.c_void_p), ("a", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("rank", ctypes.c_int64), ("b_stride", ctypes.c_int64),
                ("a_stride", ctypes.c_int64), ("bias_stride", ctypes.c_int64)]

    @classmethod
    def of(cls, operands: LinearOperands) -> _LinearMap:
        b_factor, a, bias = (None if t is None else per_individual(t) for t in operands)
        require_float32(b_factor, a, bias)
        made = cls(_pointer(b_factor), a.data_ptr(), _pointer(bias),
                   0 if b_factor is None else b_factor.shape[-1],
                   0 if b_factor is None else b_factor.stride(0), a.stride(0),
                   0 if bias is None else bias.stride(0))
        made.keep_alive = (b_factor, a, bias)
        return made


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MB in the heap instead of unmapping them.

    torch's CPU allocator hands every tensor back to malloc. Blocks above glibc's mmap threshold
    (dynamic, so it drifts with the mix of sizes) are unmapped on free and page-faulted back in,
    zero-filled, on the next allocation; with the LM's few-MB activations and logits tiles that
    measured generations up to 1.7× slower (113 vs 68 ms in bench/bench_lm.py's setting), with
    half the CPU time in the kernel (an Atari factorized rollout: 94K → 9K page faults, +2%).
    Process-wide, so `run.build_task` calls it for every CPU run; a no-op off glibc. Returns
    whether it took effect.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_ok = libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum on 64-bit
    trim_ok = libc.mallopt(m_trim_threshold, 2**30)
    return bool(mmap_ok and trim_ok)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None when they cannot be used: with one log line saying why,
    unless NEUROEVO_CPU_KERNELS=0 asked for torch's ops."""
    if os.environ.get("NEUROEVO_CPU_KERNELS", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: using torch's ops on CPU")
        return None
    last_error: OSError | None = None  # what stopped the last attempt, for the warning
    for cache in _cache_dirs():
        try:
            return _load_first_build(compiler, cache, [])
        except OSError as error:  # an unwritable cache, or nothing built loads: next cache
            log.debug("no kernels from cache %s: %s", cache, error)
            last_error = error
    log.warning("could not build or load %s with %s (%s): using torch's ops on CPU",
                ", ".join(path.name for path in SOURCES), compiler, last_error)
    return None


def library_variant(cache: Path, **defines: int) -> ctypes.CDLL | None:
    """The kernels built into `cache` with preprocessor overrides (LANES=4,
    WIDE_REGISTER_FILE=1, …), or None without a compiler (OSError when no build loads): the
    tests check every vector width's code on whatever CPU they run on, where `library()` builds
    only the width of this CPU."""
    compiler = _compiler()
    if compiler is None:
        return None
    extra = [f"-D{name}={value}" for name, value in sorted(defines.items())]
    return _load_first_build(compiler, cache, extra)


def _load_first_build(compiler: str, cache: Path, extra_flags: list[str]) -> ctypes.CDLL:
    """The kernels built into `cache` with the first of FLAG_SETS (plus `extra_flags`) that the
    compiler accepts and this machine loads. Raises OSError saying why none could be used."""
    why: OSError = OSError(f"{compiler} rejected every flag set")
    for flags in FLAG_SETS:
        path = _cached_build(compiler, flags + extra_flags, cache)  # OSError: unusable cache
        if path is None:
            continue
        try:
            return _declare(ctypes.CDLL(str(path)))
        except OSError as error:  # built but not loadable here: try the next flags
            log.debug("could not load %s: %s", path, error)
            why = error
    raise why


def vector_layout() -> str | None:
    """How the loaded kernels were built (their vector width, the register file they assume), or
    None without them: a run's summary records it, since builds for two kinds of CPU can give a
    TinyStories fitness that differs in the last bits."""
    lib = library()
    if lib is None:
        return None
    registers = 32 if lib.wide_register_file() else 16
    return f"{lib.vector_lanes()} floats a vector, {registers} vector registers"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cache_dirs() -> list[Path]:
    """Where builds are kept: $NEUROEVO_CACHE/kernels or ~/.cache/neuroevo/kernels, else (a
    read-only home, as on some clusters and CI runners) a per-user temporary directory."""
    home = Path(os.environ.get("NEUROEVO_CACHE", Path.home() / ".cache" / "neuroevo"))
    user = getattr(os, "getuid", lambda: 0)()
    return [home / "kernels", Path(tempfile.gettempdir()) / f"neuroevo-kernels-{user}"]


def _cached_build(compiler: str, flags: list[str], cache: Path) -> Path | None:
    """Compile into `cache` under a name made of everything that determines the binary; build,
    then rename, so concurrent runs (Snakemake jobs) never load a half-written library. None if
    the compiler rejects these flags."""
    texts = [path.read_text() for path in [*SOURCES, HERE / "simd.h"]]
    key = hashlib.sha256("\0".join([*texts, compiler, *flags, _cpu_signature()])
                         .encode()).hexdigest()[:16]
    target = cache / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *flags, "-shared", "-fPIC", f"-I{HERE}", "-o",
                                 str(built), *map(str, SOURCES)], capture_output=True, text=True)
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


def factored_rows(x: torch.Tensor, rows: torch.Tensor, inner: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """x's `rows` times inner, as torch's ops: (x[:, rows] · inner (P, M, K), rows 0 … M−1),
    what the loss kernels read for a factorized tied embedding's logits (x·inner)·weightᵀ."""
    return (torch.bmm(x.index_select(1, rows), inner),
            torch.arange(rows.numel(), device=x.device))


def require_float32(*tensors: torch.Tensor | None) -> None:
    """The C kernels read and write float32 through raw pointers: a tensor of another dtype
    (bf16 from an op under autocast) would be misread and its buffer overrun, so it is refused
    before the call, in one line."""
    wrong = [t.dtype for t in tensors if t is not None and t.dtype != torch.float32]
    if wrong:
        raise TypeError(f"the CPU kernels take float32 tensors, got {wrong[0]}: keep such "
                        "operands out of autocast, or use torch's ops (kernels.cpu.usable)")


def per_individual(t: torch.Tensor) -> torch.Tensor:
    """t (P, …) as the kernels read it: each individual's slice contiguous, individuals any
    fixed stride apart (views of the population matrix pass through uncopied)."""
    return t if t[0].is_contiguous() else t.contiguous()


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr, f32, threads = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    lib.attention_layer_norm.argtypes = [ptr, *[_LinearMap] * 4, ptr, ptr, i64, i64, i64, i64,
                                         i64, i64, f32, threads]
    lib.attention_layer_norm.restype = None
    lib.feed_forward_layer_norm.argtypes = [ptr, _LinearMap, _LinearMap, ptr, ptr, i64, i64, i64,
                                            i64, f32, threads]
    lib.feed_forward_layer_norm.restype = None
    lib.negative_log_likelihood.argtypes = [ptr, i64, ptr, ptr, i64, ptr, i64, ptr, i64, ptr,
                                            i64, i64, i64, threads]
    lib.negative_log_likelihood.restype = None
    lib.rotary.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, threads]
    lib.conv2d_population.argtypes = [ptr, ptr, i64, ptr, i64, ptr, *[i64] * 8, threads]
    lib.conv2d_population.restype = None
    lib.rotary.restype = None
    lib.vector_lanes.restype = lib.wide_register_file.restype = ctypes.c_int
    return lib
