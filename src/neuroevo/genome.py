"""A genome is its seed chain: one initial seed plus one (seed, mutation rate) gene per generation.

Weights are a pure function of the chain (Such et al. 2017's compact encoding): the initial gene
draws every parameter from its init distribution, and each mutation gene adds Gaussian noise
scaled per parameter by the layout's mutation std. One seed drives every tensor of the genome
(each tensor reads its own slice of the seed's stream), which is the reference's "one new gene per
weight tensor" with the tensors' seeds derived from one integer.

`develop` replays a chain from scratch; the GA instead keeps the current population's weights and
adds only the newest gene (`add_mutations`), and both use the same noise calls, so a chain
developed on the GA's device reproduces its cached weights bit for bit (on another device, to
float rounding: see noise.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neuroevo.atomic import atomic_write_text
from neuroevo.encoding import ParamLayout
from neuroevo.kernels import gpu_noise
from neuroevo.noise import gaussian

# Noise elements generated per call (whole rows). On CPU the ~20 element-wise passes of `gaussian`
# over 2**18 elements (1 MB per intermediate) stay in cache: 31 rows × 75,955 took 13.0 ms against
# 23.7 ms at 2**22 on dev-cpu, bit for bit the same. On a GPU fewer, larger calls (fewer launches).
_NOISE_ELEMENTS_PER_CALL = {"cpu": 1 << 18, "cuda": 1 << 22}
# The metadata a run writes beside the chain (run.py) that `neuroevo replay` reads back.
ELITE_METADATA = ("config", "generation", "fitness")


@dataclass(frozen=True)
class Genome:
    """A seed chain. `mutations` is oldest first; each entry is (seed, mutation rate)."""

    init_seed: int
    mutations: tuple[tuple[int, float], ...] = field(default_factory=tuple)

    def child(self, seed: int, mutation_rate: float) -> "Genome":
        return Genome(self.init_seed, self.mutations + ((seed, mutation_rate),))

    @property
    def last_mutation_rate(self) -> float:
        """The mr of the newest gene; the initial gene counts as mr = 1."""
        return self.mutations[-1][1] if self.mutations else 1.0

    def to_dict(self) -> dict:
        rates = sorted({mr for _, mr in self.mutations})
        out: dict = {"init_seed": self.init_seed, "seeds": [s for s, _ in self.mutations]}
        if len(rates) == 1:
            out["mutation_rate"] = rates[0]  # the common case: store it once
        else:
            out["mutation_rates"] = [mr for _, mr in self.mutations]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Genome":
        """The inverse of `to_dict`. A chain without its rates is refused (KeyError) rather than
        developed unmutated, and so is one with a rate count other than its seeds' (ValueError)."""
        seeds = [int(s) for s in data["seeds"]]
        if "mutation_rates" in data:
            rates = [float(mr) for mr in data["mutation_rates"]]
        else:
            rates = [float(data["mutation_rate"])] * len(seeds)
        if len(rates) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(rates)} mutation rates")
        return cls(int(data["init_seed"]), tuple(zip(seeds, rates)))


def initial_weights(layout: ParamLayout, seeds: list[int], device: torch.device) -> torch.Tensor:
    """(len(seeds), D) weights of fresh genomes: init_value + init_std · noise(init_seed)."""
    init_std = layout.init_std().to(device)
    init_value = layout.init_value().to(device)
    theta = torch.empty(len(seeds), layout.dim, device=device)
    if gpu_noise.usable(theta):  # one fused launch on CUDA (kernels/gpu_noise.py)
        gpu_noise.add_scaled_noise(theta, init_value, seeds, init_std)
        return theta
    for rows in _row_chunks(len(seeds), layout.dim, device):
        noise = _noise(seeds[rows], layout.dim, device)                      # (n, D)
        theta[rows] = torch.addcmul(init_value, noise, init_std)
    return theta


def add_mutations(theta: torch.Tensor, seeds: list[int], mutation_std: torch.Tensor) -> None:
    """In place: theta[i] += mutation_std · noise(seeds[i]) for every row i.

    theta (n, D); mutation_std (D,) already scaled by the mutation rate (see ParamLayout).
    """
    if gpu_noise.usable(theta):
        gpu_noise.add_scaled_noise(theta, theta, seeds, mutation_std)
        return
    for rows in _row_chunks(len(seeds), theta.shape[1], theta.device):
        noise = _noise(seeds[rows], theta.shape[1], theta.device)            # (n, D)
        theta[rows] = torch.addcmul(theta[rows], noise, mutation_std)


def develop(genome: Genome, layout: ParamLayout, device: torch.device | str = "cpu"
            ) -> torch.Tensor:
    """Replay a whole chain into a (1, D) weight row, the way the GA built it gene by gene."""
    device = torch.device(device)
    theta = initial_weights(layout, [genome.init_seed], device)
    stds: dict[float, torch.Tensor] = {}
    for seed, rate in genome.mutations:
        if rate not in stds:
            stds[rate] = layout.mutation_std(rate).to(device)
        add_mutations(theta, [seed], stds[rate])
    return theta


def save_genome(path: Path, genome: Genome, **metadata) -> None:
    """Write a chain (plus metadata such as fitness and config hash) as JSON, atomically."""
    atomic_write_text(path, json.dumps({**metadata, "genome": genome.to_dict()}, indent=1))


class GenomeFileError(ValueError):
    """A file that is not a saved genome; one line naming it and what to pass instead."""


def load_genome(path: Path) -> tuple[Genome, dict]:
    """A seed chain and its metadata from a run's elite.json (see `save_genome`), with the
    metadata `neuroevo replay` needs checked here, so a partial file fails in one line."""
    path = Path(path)
    if not path.is_file():
        raise GenomeFileError(f"{path} does not exist: pass a run directory's elite.json")
    try:
        data = json.loads(path.read_text())
        genome = Genome.from_dict(data.pop("genome"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise GenomeFileError(f"{path} holds no seed chain: pass a run directory's elite.json "
                              "(written by `neuroevo run`)") from None
    missing = [key for key in ELITE_METADATA if key not in data]
    if missing or not isinstance(data["config"], dict):
        problem = f"no {missing[0]!r}" if missing else "a 'config' that is not a mapping"
        raise GenomeFileError(f"{path} holds a seed chain with {problem}: pass a run directory's "
                              "elite.json (written by `neuroevo run`)")
    return genome, data


def _noise(seeds: list[int], dim: int, device: torch.device) -> torch.Tensor:
    """(n, dim) noise, generated with rows padded to a multiple of 64 elements so every row starts
    on the same SIMD boundary whether it is drawn alone (develop) or in a batch (the GA): the
    vectorised and scalar-tail paths of log/cos then agree row for row."""
    padded = -(-dim // 64) * 64
    return gaussian(seeds, padded, device=device)[:, :dim]


def _row_chunks(n_rows: int, dim: int, device: torch.device) -> list[slice]:
    elements = _NOISE_ELEMENTS_PER_CALL.get(torch.device(device).type, 1 << 22)
    per_call = max(1, elements // max(dim, 1))
    return [slice(i, min(i + per_call, n_rows)) for i in range(0, n_rows, per_call)]
