"""Mutation effects (beyond the paper): the fitness change of single mutations, per encoding.

Garbus & Pollack argue that a deleterious factorized mutation hurts more than a deleterious dense
one (a perturbation of a factor moves a whole rank-one slice of W), which cuts evaluation time
where bad performers stop early (CarRacing). This module measures it directly.

It runs the GA of a config, which is the very trajectory of `neuroevo run` with the same config and
seed, and after the selection of each chosen generation takes `parents` of the survivors at random
and gives each `mutations` children with one new mutation gene apiece, drawn exactly as the GA
draws a child's (a 31-bit seed, a rate from `ga.mutation_rates`, the layout's per-dimension stds:
√mr for factors). A parent and its children are scored in one batched `task.evaluate` call at that
generation (the same evaluation batch the GA used), so delta = child − parent fitness has no data
noise for TinyStories. For episodic tasks the children play other episode seeds than the parent
(seeds follow the population index), so there delta includes episode noise (and CarRacing's two
waves score the call's finalists on more episodes than the rest), and Evaluation reports
environment steps only per call: `env_steps` is that call's mean per individual.
The probes draw from their own random stream and never change the GA's.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neuroevo.atomic import atomic_write_text
from neuroevo.config import RunConfig
from neuroevo.ga import SEED_BOUND, GeneticAlgorithm, mutate_rows
from neuroevo.logs import progress_interval, write_json
from neuroevo.run import RunError, build_task, check_out_directory, resolve_device
from neuroevo.tasks import Task

COLUMNS = ("generation", "parent", "child", "mutation_seed", "mutation_rate",
           "parent_fitness", "child_fitness", "delta", "env_steps")
PROBE_STREAM = 0x70726F6265  # third entropy word of the probes' generator ("probe")


@dataclass(frozen=True)
class ProbeConfig:
    """Where and how much to probe; the defaults are the quick preset's."""

    generations: tuple[int, ...]  # GA generations after whose selection parents are probed
    parents: int = 4  # survivors probed per generation (all of them if fewer)
    mutations: int = 32  # single-mutation children per parent, one batched call


def probe(config: RunConfig, out: Path, settings: ProbeConfig, progress: bool = True) -> dict:
    """Run the GA, probe the chosen generations, write `mutation_effects.csv` and `summary.json`."""
    bad = [g for g in settings.generations if not 1 <= g <= config.ga.generations]
    if bad:
        raise RunError(f"--generations {bad[0]} is outside 1..{config.ga.generations} "
                       "(ga.generations)")
    if settings.parents < 1 or settings.mutations < 1:
        raise RunError("--parents and --mutations must be at least 1")
    check_out_directory(Path(out))
    device = resolve_device(config.device)
    task = build_task(config, device)
    ga = GeneticAlgorithm(task.layout, config.ga, config.seed, device)
    rows: list[dict] = []
    started = time.perf_counter()
    for _ in tqdm(range(config.ga.generations), disable=not progress, unit="gen",
                  desc=f"mutation-effects/{config.encoding.kind}", dynamic_ncols=True,
                  mininterval=progress_interval()):
        generation = ga.generation
        evaluation = task.evaluate(ga.ask(), generation)
        ga.tell(evaluation.fitness, evaluation.order)  # survivors are now ga.theta[:elites]
        if generation in settings.generations:
            rows += _probe_generation(task, ga, config, settings, generation)
    _write_rows(Path(out) / "mutation_effects.csv", rows)
    summary = {
        "task": config.task.name, "encoding": config.encoding.kind, "seed": config.seed,
        "preset": config.preset, "device": str(device),
        "generations": list(settings.generations), "parents": min(settings.parents, config.ga.elites),
        "mutations": settings.mutations, "probes": len(rows),
        "searched_dims": task.layout.searched_dim,
        "wall_seconds": time.perf_counter() - started, "config": config.to_dict(),
    }
    write_json(Path(out) / "summary.json", summary)
    return summary


def _probe_generation(task: Task, ga: GeneticAlgorithm, config: RunConfig,
                      settings: ProbeConfig, generation: int) -> list[dict]:
    """Score `mutations` one-gene children of each sampled survivor beside their parent.

    `parent` is the survivor's rank (0 = best); the child of row i is the parent's chain plus the
    gene (mutation_seed, mutation_rate), so every probe can be re-developed.
    """
    k = config.ga.elites
    rng = np.random.default_rng([config.seed, generation, PROBE_STREAM])
    ranks = np.sort(rng.choice(k, size=min(settings.parents, k), replace=False))
    rows = []
    for rank in ranks.tolist():
        seeds = rng.integers(SEED_BOUND, size=settings.mutations).tolist()
        rates = rng.choice(config.ga.mutation_rates, size=settings.mutations).tolist()
        parent = ga.theta[rank:rank + 1]                                      # (1, D)
        children = parent.repeat(settings.mutations, 1)                       # (M, D)
        mutate_rows(children, seeds, rates, ga.mutation_std)
        evaluation = task.evaluate(torch.cat([parent, children]), generation)  # (1 + M,) at once
        fitness = evaluation.fitness.detach().to("cpu", torch.float64)
        steps = evaluation.columns.get("env_steps")
        per_individual = float(steps) / (settings.mutations + 1) if steps is not None else ""
        rows += [{"generation": generation, "parent": rank, "child": i, "mutation_seed": seeds[i],
                  "mutation_rate": rates[i],
                  "parent_fitness": fitness[0].item(), "child_fitness": fitness[1 + i].item(),
                  "delta": (fitness[1 + i] - fitness[0]).item(), "env_steps": per_individual}
                 for i in range(settings.mutations)]
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in row.items()}
                     for row in rows)
    atomic_write_text(path, buffer.getvalue())
