"""The Triton kernels' launch constants as the GPU scripts set them (bench/triton_sweep.py,
bench/triton_compile_check.py): precision names, and gpu.py's module constants overridden
within a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from neuroevo.kernels import gpu as gpu_kernels

NAMES = gpu_kernels.PRECISION_NAMES
PRECISIONS = {name: code for code, name in NAMES.items()}


@contextlib.contextmanager
def configured(settings: dict[str, int], precision: int) -> Iterator[None]:
    """gpu.py's launch constants set to `settings` within (the per-precision tables at
    `precision`), restored after. Names are gpu.py's (QUERY_BLOCK, NUM_WARPS,
    ATTENTION_CAUSAL_SPLIT, …); an unknown one stops with the list of known ones."""
    saved = {}
    try:
        for name, value in settings.items():
            if not hasattr(gpu_kernels, name) or not name.isupper():
                known = sorted(n for n in vars(gpu_kernels) if n.isupper() and n[0] != "_")
                raise SystemExit(f"unknown launch constant {name!r}; gpu.py has {known}")
            current = getattr(gpu_kernels, name)
            if isinstance(current, dict):
                saved[name] = dict(current)
                current[precision] = value
            else:
                saved[name] = current
                setattr(gpu_kernels, name, value)
        yield
    finally:
        for name, value in saved.items():
            if isinstance(value, dict):
                getattr(gpu_kernels, name).update(value)
            else:
                setattr(gpu_kernels, name, value)
