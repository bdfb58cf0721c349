"""The genetic algorithm, and only the algorithm: Deep-GA truncation selection (Such et al. 2017)
as configured by Garbus & Pollack (2025).

Ask/tell, so any task can drive it:

    ga = GeneticAlgorithm(layout, config, seed, device)
    while not ga.done:
        fitness = task.evaluate(ga.ask())     # (P,) higher is better
        record = ga.tell(fitness)

One generation: evaluate everyone → rank → keep the top k unmutated (they are re-evaluated next
generation) → N−k children, each a copy of a uniformly chosen survivor plus one new mutation gene.
All randomness of generation g comes from numpy's generator seeded with (run seed, g), so the GA
needs no RNG state in its checkpoint and a resumed run draws exactly what an uninterrupted one did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field

import numpy as np
import torch

from neuroevo.encoding import ParamLayout
from neuroevo.genome import Genome, add_mutations, initial_weights
from neuroevo.sections.ga import GAConfig

SEED_BOUND = 2**31  # gene seeds are 31-bit: short in JSON, and keyed through SplitMix anyway


@dataclass
class GenerationRecord:
    """What one `tell` observed: the row of fitness.csv and the survivors' indices."""

    generation: int
    stats: dict[str, float]
    elite_indices: list[int]
    best_index: int  # the first-ranked individual: with a task's `order`, not always the argmax
    best_genome: Genome
    best_fitness: float  # its own fitness (stats["best"] is the population's maximum)


@dataclass
class GeneticAlgorithm:
    layout: ParamLayout
    config: GAConfig
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generation: int = 1  # the generation that `ask` returns (1-based, as in the paper's logs)
    genomes: list[Genome] = field(init=False)
    theta: torch.Tensor = field(init=False)  # (P, D) weights of `genomes`: the only weight cache
    # a `state_dict` to continue from: its survivors are bred directly, without first developing
    # the initial population a resume would discard (seconds at N = 512 on the larger networks)
    checkpoint: InitVar[dict | None] = None

    def __post_init__(self, checkpoint: dict | None) -> None:
        self._mutation_std: dict[float, torch.Tensor] = {}
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
            return
        init_seeds = initial_seeds(self.seed, self.config.population)
        self.genomes = [Genome(s) for s in init_seeds]
        self.theta = initial_weights(self.layout, init_seeds, self.device)

    @property
    def done(self) -> bool:
        return self.generation > self.config.generations

    def ask(self) -> torch.Tensor:
        """(P, D) weights of the population to evaluate this generation."""
        return self.theta

    def tell(self, fitness: torch.Tensor, order: torch.Tensor | None = None) -> GenerationRecord:
        """Rank the evaluated population, keep the elites and breed the next generation.

        `order` overrides the ranking when a task selects in stages (CarRacing's multi-wave
        evaluation ranks its finalists by more episodes than the rest ever played).
        """
        fitness = fitness.detach().to("cpu", torch.float64)
        if fitness.shape != (len(self.genomes),):
            raise ValueError(f"fitness has shape {tuple(fitness.shape)}, expected ({len(self.genomes)},)")
        if order is None:
            # rank: descending fitness; a stable sort keeps ties in population order
            # (reproducible); a NaN fitness (a diverged network) ranks as −inf
            order = torch.argsort(-_nan_as_lowest(fitness), stable=True)
        order = order.tolist()
        elite_indices = order[: self.config.elites]
        record = GenerationRecord(
            generation=self.generation,
            stats=self._statistics(fitness, elite_indices),
            elite_indices=elite_indices,
            best_index=order[0],
            best_genome=self.genomes[order[0]],
            best_fitness=fitness[order[0]].item(),
        )
        # select: survivors keep their weights untouched; everything else is discarded
        self.genomes = [self.genomes[i] for i in elite_indices]
        self.theta = self.theta[elite_indices].clone()                       # (k, D)
        self.generation += 1
        if not self.done:
            self._reproduce()
        return record

    # --- checkpointing: the survivors are the whole state (children are re-bred from them) -----

    def state_dict(self) -> dict:
        return {"generation": self.generation, "seed": self.seed,
                "elites": [g.to_dict() for g in self.genomes[: self.config.elites]],
                # a copy of the rows: torch.save of a view would store the whole population
                "elite_theta": self.theta[: self.config.elites].to("cpu", copy=True)}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError("checkpoint belongs to another seed")
        self.generation = int(state["generation"])
        self.genomes = [Genome.from_dict(g) for g in state["elites"]]
        self.theta = state["elite_theta"].to(self.device)
        if not self.done:
            self._reproduce()

    # --- internals -------------------------------------------------------------------------------

    def _rng(self, generation: int) -> np.random.Generator:
        return generation_rng(self.seed, generation)

    def _reproduce(self) -> None:
        """Clone + mutate: fill the population up to N with children of uniform survivors.

        Expects self.genomes/self.theta to hold exactly the k survivors, in rank order; appends the
        N−k children. Elites stay first and unmutated.
        """
        k, n_children = len(self.genomes), self.config.population - len(self.genomes)
        rng = self._rng(self.generation)
        parents = rng.integers(k, size=n_children)
        seeds = rng.integers(SEED_BOUND, size=n_children).tolist()
        rates = [self._mutation_rate(self.genomes[p], rng) for p in parents]
        # the next population written once: survivors first, then the parents' copies, mutated
        # in place (the weights are the GA's largest tensor: no further copies of it)
        theta = self.theta.new_empty(self.config.population, self.theta.shape[1])    # (N, D)
        theta[:k] = self.theta
        children = theta[k:]                                                 # (N−k, D) view
        torch.index_select(self.theta, 0, torch.as_tensor(parents, device=self.device),
                           out=children)
        mutate_rows(children, seeds, rates, self.mutation_std)
        self.genomes += [self.genomes[p].child(s, r) for p, s, r in zip(parents, seeds, rates)]
        self.theta = theta

    def _mutation_rate(self, parent: Genome, rng: np.random.Generator) -> float:
        """The reference's n-back rule; with a single mutation rate it always returns it."""
        rates = self.config.mutation_rates
        genes = 1 + len(parent.mutations)  # the initial gene counts
        if genes < self.config.n_back or rng.random() < 0.01:
            return float(rng.choice(rates))
        recent = [1.0] + [mr for _, mr in parent.mutations]
        ceiling = max(recent[-self.config.n_back:])
        allowed = [r for r in rates if r <= ceiling] or list(rates)
        return float(rng.choice(allowed))

    def mutation_std(self, rate: float) -> torch.Tensor:
        """(D,) per-weight std of a mutation at `rate`, on the GA's device (cached per rate)."""
        if rate not in self._mutation_std:
            self._mutation_std[rate] = self.layout.mutation_std(rate).to(self.device)
        return self._mutation_std[rate]

    def _statistics(self, fitness: torch.Tensor, elite_indices: list[int]) -> dict[str, float]:
        """The generation's row of fitness.csv. A NaN fitness counts as −inf in `best` and
        `worst`, as in the ranking; `mean`, `median` and `std` stay NaN, so the log shows it."""
        ranked = _nan_as_lowest(fitness)
        return {
            "best": ranked.max().item(),
            "mean": fitness.mean().item(),
            "median": float(np.median(fitness.numpy())),
            "std": fitness.std().item() if len(fitness) > 1 else 0.0,
            "worst": ranked.min().item(),
            "elite_mean": fitness[elite_indices].mean().item(),
            "mr_mean": float(np.mean([g.last_mutation_rate for g in self.genomes])),
        }


def _nan_as_lowest(fitness: torch.Tensor) -> torch.Tensor:
    return fitness.masked_fill(fitness.isnan(), -math.inf)


def initial_seeds(seed: int, population: int) -> list[int]:
    """The initial seeds of a run's population (generation 0's stream): gradient descent starts
    from the GA's individual 0 through this, not through a copy of the rule."""
    return generation_rng(seed, 0).integers(SEED_BOUND, size=population).tolist()


def generation_rng(seed: int, generation: int) -> np.random.Generator:
    """The GA's generator of one generation (0: the initial seeds; g: generation g's parents,
    gene seeds and rates), the same on a rerun or a resume."""
    return np.random.default_rng([seed, generation])


def mutate_rows(rows: torch.Tensor, seeds: list[int], rates: list[float],
                std: Callable[[float], torch.Tensor]) -> None:
    """Add row i's mutation (seeds[i] at rates[i], per-weight std `std(rate)`) to (n, D) `rows`
    in place, one batched call per rate: how the GA breeds, and how the mutation-effect probes
    breed exactly as the GA does."""
    for rate in sorted(set(rates)):
        chosen = [i for i, r in enumerate(rates) if r == rate]
        if len(chosen) == len(rates):  # one rate for all (the paper's setting): no gather
            add_mutations(rows, seeds, std(rate))
            continue
        block = rows[chosen]
        add_mutations(block, [seeds[i] for i in chosen], std(rate))
        rows[chosen] = block
