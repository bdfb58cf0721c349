"""Tasks: what a population is evaluated on. One module per task family, one small interface.

Each task module defines a builder, `build(config: RunConfig, device) -> Task`; its config
sections (`TaskConfig`, `ModelConfig`, `LAYER_TYPES`) live in `neuroevo.sections`, whose modules
load without torch.

A `Task` owns the model (and so the ParamLayout) and turns a (P, D) population into an
`Evaluation`. Modules are imported lazily so that a missing optional dependency (gymnasium for the
RL tasks) is reported as one line naming the extra to install, and only when that task is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

import torch

from neuroevo.encoding import ParamLayout
from neuroevo.sections import FAMILY_SECTIONS, import_task_module

# each family's task module is named as its sections module: neuroevo.tasks.language, …
TASK_MODULES = {family: sections.replace("neuroevo.sections.", "neuroevo.tasks.", 1)
                for family, sections in FAMILY_SECTIONS.items()}


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
    return import_task_module(name, TASK_MODULES[name])
