"""Gradient-descent reference (beyond the paper): the GA's language model trained with Adam.

The point is a yardstick, not a competitor: how far does the same transformer get on the same
data when its loss is followed downhill, for the forward passes the GA spends? The model is the
population model itself with P = 1 (the genome row a leaf tensor, developed by `layout.views`,
scored by `negative_cross_entropy`), so GD and GA share every line of the forward pass, the
tokenizer, the evaluation batches and the initial weights: GD starts from the GA's first initial
individual (the run seed's first init seed).

Budget: the GA scores `population × generations` individuals, one forward pass over the batch
each; one Adam step is a forward and a backward, counted as `forward_cost` = 3 forward passes
(the backward of a matmul costs two), so GD gets population·generations/3 steps. Step s trains on
the evaluation batch of the GA generation that the same budget pays for (with the paper's fixed
set, the same batch every step), and logs the fitness before its update.

What is trained: every parameter the GA mutates for `dense` and `sparse` (layer norms stay frozen,
as in the GA); for `factorized` only the factor entries (LoRA-style, from the same random init;
biases stay at their init), which separates "low rank" from "evolution".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from neuroevo.atomic import atomic_torch_save, atomic_write_text
from neuroevo.config import RunConfig
from neuroevo.encoding import ParamLayout
from neuroevo.ga import initial_seeds
from neuroevo.genome import initial_weights
from neuroevo.logs import progress_interval, write_json
from neuroevo.run import RunError, build_task, check_out_directory, resolve_device
from neuroevo.tasks.language import LanguageTask

COLUMNS = ("step", "forward_passes", "generation", "fitness")


@dataclass(frozen=True)
class GradientConfig:
    """Adam settings and the budget rule; the defaults are this reproduction's choice."""

    lr: float = 3e-3  # Adam step size (betas 0.9, 0.999)
    forward_cost: float = 3.0  # forward passes one step costs (forward + backward)
    steps: int | None = None  # None: matched to the GA, population·generations / forward_cost


def matched_steps(config: RunConfig, forward_cost: float) -> int:
    """Adam steps that cost what the GA's population × generations forward passes cost."""
    return max(1, round(config.ga.population * config.ga.generations / forward_cost))


def trained_index(layout: ParamLayout, kind: str) -> torch.Tensor:
    """Genome dimensions GD moves: the factors for `factorized`, every mutable one otherwise."""
    chosen = [torch.arange(layout.offsets[s.name], layout.offsets[s.name] + s.numel)
              for s in layout.specs if (s.factor if kind == "factorized" else s.mutable)]
    return torch.cat(chosen)


def train(config: RunConfig, out: Path, settings: GradientConfig, progress: bool = True) -> dict:
    """Train with Adam; write `gradient.csv` (one row per step), the trained (1, D) genome row
    `weights.pt` and `summary.json` into `out`.

    Deterministic on one device, so there is no checkpoint: a rerun starts over and overwrites.
    """
    out = Path(out)
    _check_settings(settings)
    if config.encoding.kind == "factorized" and None in config.encoding.ranks.values():
        raise RunError("gradient descent trains a factorized model LoRA-style (its factors only), "
                       "which has no counterpart for layer types left dense (encoding.ranks "
                       "null): give every layer type a rank, or use encoding.kind dense")
    check_out_directory(out)
    device = resolve_device(config.device)
    task = build_task(config, device)
    if not isinstance(task, LanguageTask):
        raise RunError(f"gradient descent needs a differentiable task; {config.task.name!r} is "
                       "scored by episodes (use tinystories)")
    steps = (settings.steps if settings.steps is not None
             else matched_steps(config, settings.forward_cost))
    init_seed = initial_seeds(config.seed, config.ga.population)[0]        # the GA's individual 0
    theta0 = initial_weights(task.layout, [init_seed], device)               # (1, D)
    index = trained_index(task.layout, config.encoding.kind).to(device)     # (n,)
    values = theta0[0, index].clone().requires_grad_()                      # (n,) the leaf
    optimizer = torch.optim.Adam([values], lr=settings.lr)

    rows, started = [], time.perf_counter()
    batch_on_device = _batches_on(task, device)
    for step in tqdm(range(1, steps + 1), disable=not progress, unit="step",
                     desc=f"gradient/{config.encoding.kind}", dynamic_ncols=True,
                     mininterval=progress_interval()):
        generation = 1 + (step - 1) * config.ga.generations // steps
        theta = theta0.index_copy(1, index, values[None])                   # (1, D)
        fitness = task.model.negative_cross_entropy(
            task.layout.views(theta), *batch_on_device(generation), task.config.token_chunk)[0]
        optimizer.zero_grad()
        (-fitness).backward()
        optimizer.step()
        rows.append((step, step * settings.forward_cost, generation, fitness.item()))

    lines = [",".join(COLUMNS)] + [f"{s},{f!r},{g},{v!r}" for s, f, g, v in rows]
    atomic_write_text(out / "gradient.csv", "\n".join(lines) + "\n")
    atomic_torch_save(theta0.index_copy(1, index, values.detach()[None]).cpu(), out / "weights.pt")
    summary = {
        "task": config.task.name, "encoding": config.encoding.kind, "seed": config.seed,
        "preset": config.preset, "device": str(device), "init_seed": init_seed,
        "optimizer": {"name": "Adam", "lr": settings.lr}, "steps": steps,
        "forward_cost": settings.forward_cost, "forward_passes": steps * settings.forward_cost,
        "ga_forward_passes": config.ga.population * config.ga.generations,
        "trained_dims": int(index.numel()), "searched_dims": task.layout.searched_dim,
        "final": {"fitness": rows[-1][3], "best": max(r[3] for r in rows)},
        "wall_seconds": time.perf_counter() - started, "config": config.to_dict(),
    }
    write_json(out / "summary.json", summary)
    return summary


def _check_settings(settings: GradientConfig) -> None:
    """Refuse settings Adam or the budget rule cannot use, before the task is built."""
    if not settings.lr > 0:
        raise RunError(f"--lr must be positive, got {settings.lr}")
    if not settings.forward_cost > 0:
        raise RunError(f"--forward-cost must be positive, got {settings.forward_cost}")
    if settings.steps is not None and settings.steps < 1:
        raise RunError(f"--steps must be at least 1 (or left out: the GA's budget), got "
                       f"{settings.steps}")


def _batches_on(task: LanguageTask, device: torch.device
                ) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """generation → (tokens, lengths) of the GA's batch for it, on `device`, copied once per
    distinct batch (once a run for the paper's fixed set). The model caches scored positions by
    tensor: a fresh copy every step would miss that cache and keep every copy alive on a GPU."""
    last: dict = {}

    def on_device(generation: int) -> tuple[torch.Tensor, torch.Tensor]:
        if last.get("generation") != generation:
            batch = task.batch(generation)
            if last.get("batch") is not batch:
                last.update(batch=batch, tensors=(batch.tokens.to(device),
                                                  batch.lengths.to(device)))
            last["generation"] = generation
        return last["tensors"]

    return on_device
