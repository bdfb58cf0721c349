"""The MuJoCo task's sections: `task:` (environment id, episodes, the worker pool) and `model:`
(the MLP's widths; `neuroevo.tasks.mujoco` and `neuroevo.models.mlp` use them). Checking the
environment id needs gymnasium's registry only, not MuJoCo itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym

from neuroevo.sections import check_minimums

LAYER_TYPES = ("hidden",)  # the keys `encoding.ranks` may name


def mujoco_env_ids() -> list[str]:
    """The gymnasium v5 MuJoCo environments this task accepts."""
    return sorted(env_id for env_id, spec in gym.registry.items()
                  if isinstance(spec.entry_point, str) and env_id.endswith("-v5")
                  and spec.entry_point.startswith("gymnasium.envs.mujoco"))


@dataclass(frozen=True)
class TaskConfig:
    name: str = "mujoco"
    env_id: str = ""  # any gymnasium v5 MuJoCo id; no default, so a copied config that misses it fails
    episodes: int = 1  # episodes per individual per generation; fitness = their mean return
    max_steps: int = 1000  # step cap per episode (the v5 default time limit)
    workers: int = 0  # environment worker processes; 0 = one per available core, 1 = this process
    # how much of the machine the pool uses, not what it computes: left out of the config digest
    EXECUTION_ONLY: ClassVar[tuple[str, ...]] = ("workers",)
    POOL_SIZE: ClassVar[str] = "workers"  # the key `--workers N` sets

    def __post_init__(self) -> None:
        valid = mujoco_env_ids()
        if not self.env_id:
            raise ValueError(f"task.env_id is not set: name the MuJoCo environment "
                             f"(valid: {', '.join(valid)})")
        if self.env_id not in valid:
            raise ValueError(f"unknown MuJoCo env {self.env_id!r} in task.env_id "
                             f"(valid: {', '.join(valid)})")
        check_minimums(self, (("episodes", 1, ""), ("max_steps", 1, ""),
                              ("workers", 0, " (0 = one per available core)")))


@dataclass(frozen=True)
class ModelConfig:
    """MLP widths; the small baseline uses fewer hidden units, e.g. (16, 16)."""

    hidden: tuple[int, ...] = (64, 64)  # units of each hidden layer, input side first ([]: linear)

    def __post_init__(self) -> None:
        check_minimums(self, (("hidden", 1, ""),), name="model")
