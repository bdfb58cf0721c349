"""The `ga:` section: population, elites, generations and mutation rates of the Deep GA
(`neuroevo.ga` runs it)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GAConfig:
    """Deep-GA settings; defaults are the paper's TinyStories values."""

    population: int = 512  # N, individuals evaluated per generation
    elites: int = 16  # k, truncation survivors, carried over unmutated
    generations: int = 300  # G
    mutation_rates: tuple[float, ...] = (0.01,)  # mr choices; factors use √mr
    n_back: int = 10000  # reference's NBackMutator window (a no-op with one mr)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mutation_rates", tuple(float(m) for m in self.mutation_rates))
        # checked here, not at the first `tell`: a bad value must stop a run before its first
        # (possibly hour-long) evaluation
        for name in ("population", "generations", "n_back"):
            if getattr(self, name) < 1:
                raise ValueError(f"ga.{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.elites <= self.population:
            raise ValueError(f"ga.elites ({self.elites}) must be between 1 and ga.population "
                             f"({self.population})")
        if not self.mutation_rates or not all(0 < m < math.inf for m in self.mutation_rates):
            raise ValueError(f"ga.mutation_rates must be a non-empty list of positive, finite "
                             f"rates, e.g. [0.01], got {list(self.mutation_rates)}")
