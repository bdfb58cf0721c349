"""Tasks: what a population is evaluated on. One module per task family, one small interface.

Each task module defines two config dataclasses and a builder:

* `TaskConfig` — the `task:` section of a run config (its `name` field selects the module);
* `ModelConfig` — the `model:` section (network sizes);
* `LAYER_TYPES` — the layer types of its model, the keys `encoding.ranks` may name;
* `build(config: RunConfig, device) -> Task`.

A `Task` owns the model (and so the ParamLayout) and turns a (P, D) population into an
`Evaluation`. Modules are imported lazily so that a missing optional dependency (gymnasium for the
RL tasks) is reported as one line naming the extra to install, and only when that task is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

import torch

from neuroevo.encoding import ParamLayout

TASK_MODULES = {
    "tinystories": "neuroevo.tasks.language",
    "atari": "neuroevo.tasks.atari",
    "car_racing": "neuroevo.tasks.car_racing",
    "mujoco": "neuroevo.tasks.mujoco",
}


def check_minimums(section: object, minimums: tuple[tuple[str, int, str], ...],
                   name: str = "task") -> None:
    """Refuse a count or width of config section `name` below its minimum, in one line naming
    the key: `minimums` holds (key, least value, note on what the least means); None (a key's
    "no limit") passes, and a tuple's entries are checked one by one. Each TaskConfig and
    ModelConfig calls this in __post_init__, so a run that would start and then fail (a zero
    width as a zero fan-in in the initialisation, a count in its first rollout or batch) stops
    when the config loads."""
    for key, low, note in minimums:
        value = getattr(section, key)
        if isinstance(value, tuple):
            if any(size < low for size in value):
                raise ValueError(f"{name}.{key} entries must each be ≥ {low}{note}, "
                                 f"got {list(value)}")
        elif value is not None and value < low:
            raise ValueError(f"{name}.{key} must be ≥ {low}{note}, got {value}")


class TaskUnavailable(RuntimeError):
    """A task's optional dependencies are not installed."""


@dataclass
class Evaluation:
    """The result of evaluating one generation's population."""

    fitness: torch.Tensor  # (P,) float, higher is better
    columns: dict[str, float] = field(default_factory=dict)  # extra fitness.csv columns
    order: torch.Tensor | None = None  # ranking for staged selection; None = by fitness
    seconds: dict[str, float] = field(default_factory=dict)  # stage wall times → timing.csv


class Task(Protocol):
    """What the run loop needs of a task. A task that chooses how to score at run time (the
    language task's GPU kernel check) also has `resume_state() -> dict` and
    `resume_from(state)`: the run checkpoints the one and hands it to the other on resume."""

    layout: ParamLayout
    extra_columns: tuple[str, ...]  # names of Evaluation.columns, fixed for the whole run
    data_sha256: str | None  # the data the fitness depends on besides the config (None: none)
    timing_columns: tuple[str, ...]  # names of Evaluation.seconds (timing.csv, not fitness.csv)

    def evaluate(self, theta: torch.Tensor, generation: int) -> Evaluation:
        """Score a (P, D) population at a given generation (episode seeds / batches depend on it)."""

    def summary(self) -> dict:
        """What the task ran on (data hashes, env ids, sizes), recorded in summary.json."""

    def replay(self, theta: torch.Tensor, generation: int, video: Path | None = None,
               individual: int = 0) -> float:
        """Re-evaluate one (1, D) individual as position `individual` of `generation` was (the
        data batch or the episode seeds it used), optionally filming it (RL tasks)."""


def task_module(name: str) -> ModuleType:
    """Import the module of a task family, with a one-line error for unknown names or extras."""
    if name not in TASK_MODULES:
        raise KeyError(f"unknown task {name!r}: choose one of {', '.join(TASK_MODULES)}")
    try:
        return importlib.import_module(TASK_MODULES[name])
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in {"gymnasium", "ale_py", "mujoco", "Box2D"}:
            raise TaskUnavailable(
                f"task {name!r} needs {error.name}: install the RL extra with "
                f"`pip install -e '.[rl]'`") from None
        raise
