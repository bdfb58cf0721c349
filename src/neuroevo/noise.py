"""Counter-based Gaussian noise: the only random number generator that genomes use.

A gene is just an integer seed. Its noise must be a pure function of (seed, index), identical on
CPU and CUDA and independent of how many other rows are generated in the same call, so that a
genome saved as a seed chain re-develops to the same weights anywhere. Global RNG state (torch's
or numpy's) gives none of that, so the stream is built from SplitMix64 (Steele et al. 2014):
element i of stream `seed` is mix64(key(seed) + (i + 1)·γ), turned into a normal by Box–Muller.

The integer part is exact on every device (int64 arithmetic wraps modulo 2**64 on CPU and CUDA
alike). The float part (log, cos, sqrt) may differ by an ulp or two across devices or vector
widths, so compare across devices with a tolerance; on one device, one call is bit-reproducible.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # golden-ratio increment of SplitMix64
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TWO_PI = 6.283185307179586
_INV_2_24 = 1.0 / (1 << 24)


def _signed(value: int) -> int:
    """The int64 bit pattern of an unsigned 64-bit value (torch has no uint64 arithmetic)."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def mix64(value: int) -> int:
    """SplitMix64's finaliser on a Python int (exact reference for the tensor version)."""
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int) -> int:
    """Scramble a user seed so that nearby seeds (0, 1, 2, ...) start unrelated streams."""
    return mix64(seed * _GAMMA + 0x632BE59BD9B4E019)


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix64_tensor(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _signed(_MIX1)
    z = (z ^ _shr(z, 27)) * _signed(_MIX2)
    return z ^ _shr(z, 31)


def random_bits(seeds: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Raw 64-bit outputs (as int64) of each seed's stream at indices start..start+n-1.

    seeds: (S,) int64 on the target device → (S, n) int64.
    """
    keys = torch.tensor([_signed(stream_key(int(s))) for s in seeds.tolist()], dtype=torch.int64,
                        device=seeds.device)
    counters = torch.arange(start + 1, start + n + 1, dtype=torch.int64, device=seeds.device)
    state = keys[:, None] + counters[None, :] * _signed(_GAMMA)  # (S, n), wraps mod 2**64
    return _mix64_tensor(state)


def gaussian(seeds: torch.Tensor | list[int], n: int, *, device: torch.device | str = "cpu",
             start: int = 0, out: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normal noise: row s is elements start..start+n-1 of stream seeds[s].

    Box–Muller on two 24-bit uniforms from one 64-bit draw; the uniforms are offset by half a step
    so log() never sees 0. Returns (S, n) float32 (written into `out` when given).
    """
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=device).reshape(-1)
    bits = random_bits(seeds, n, start)                                     # (S, n) int64
    u1 = (_shr(bits, 40).to(torch.float32) + 0.5) * _INV_2_24             # (0, 1)
    u2 = ((bits & 0xFFFFFF).to(torch.float32) + 0.5) * _INV_2_24
    radius = torch.sqrt(-2.0 * torch.log(u1))
    return torch.mul(radius, torch.cos(_TWO_PI * u2), out=out)


def gaussian_reference(seed: int, n: int, start: int = 0) -> list[float]:
    """Pure-Python version of `gaussian` for one seed: the spec the tensor code is tested against."""
    import math

    key = stream_key(seed)
    values = []
    for i in range(start + 1, start + n + 1):
        z = mix64(key + i * _GAMMA)
        u1 = ((z >> 40) + 0.5) * _INV_2_24
        u2 = ((z & 0xFFFFFF) + 0.5) * _INV_2_24
        values.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2))
    return values
