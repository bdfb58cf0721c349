"""Wall-clock timing shared by the benchmarks: device work is waited for before the clock stops."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def interleaved_medians(work: list[Callable[[], object]], device: torch.device,
                        repeats: int) -> list[float]:
    """Median seconds of each callable, measured in turns (a, b, c, a, b, c, …) after one
    warm-up each, so a slow spell of a shared machine hits every figure of a ratio alike."""
    for fn in work:
        fn()
    sync(device)
    times: list[list[float]] = [[] for _ in work]
    for _ in range(repeats):
        for fn, bucket in zip(work, times):
            start = time.perf_counter()
            fn()
            sync(device)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
