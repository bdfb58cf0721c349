"""The CarRacing task's sections: `task:` (the two evaluation waves, early termination, frames)
and `model:` (the paper's CNN widths; `neuroevo.tasks.car_racing` and
`neuroevo.models.car_racing_cnn` use them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from neuroevo.sections import check_minimums
from neuroevo.sections.conv_policy import CONV_LAYER_TYPES, check_widths, smallest_input

LAYER_TYPES = CONV_LAYER_TYPES  # the keys `encoding.ranks` may name

CAR_RACING_KERNELS = ((4, 2),) * 4  # (kernel, stride) of each convolution
RAW_SIZE = 96  # CarRacing's frames are 96×96 RGB


@dataclass(frozen=True)
class TaskConfig:
    name: str = "car_racing"
    max_steps: int = 1000  # step cap per episode (CarRacing-v3's own limit is also 1000)
    frame_stack: int = 4  # RGB frames on the channel axis → 12 input channels
    resolution: int = 64  # frames are resized to resolution × resolution (46 to 96)
    negative_streak: int = 21  # early stop after this many consecutive negative rewards (0: off)
    first_wave_episodes: int = 2  # episodes every individual plays
    finalists: int = 32  # individuals that play the second wave
    second_wave_episodes: int = 4  # extra episodes of each finalist
    workers: int = 0  # environment worker processes; 0 = one per available core, 1 = this process
    # how much of the machine the pool uses, not what it computes: left out of the config digest
    EXECUTION_ONLY: ClassVar[tuple[str, ...]] = ("workers",)
    POOL_SIZE: ClassVar[str] = "workers"  # the key `--workers N` sets

    def __post_init__(self) -> None:
        if self.first_wave_episodes < 1 or self.second_wave_episodes < 1:
            raise ValueError("task.first_wave_episodes and task.second_wave_episodes must be ≥ 1")
        # (ga.elites ≤ finalists is checked by `build`, which sees the GA's section)
        check_minimums(self, (("finalists", 1, ""), ("max_steps", 1, ""), ("frame_stack", 1, ""),
                              ("negative_streak", 0, " (0 = no early stop)"),
                              ("workers", 0, " (0 = one per available core)")))
        smallest = smallest_input(CAR_RACING_KERNELS)
        if not smallest <= self.resolution <= RAW_SIZE:
            raise ValueError(f"task.resolution must be between {smallest} (the convolutions' "
                             f"smallest input) and {RAW_SIZE} (a downscale), got "
                             f"{self.resolution}")


@dataclass(frozen=True)
class ModelConfig:
    """CarRacing CNN widths; defaults are the paper's (small: (4, 4, 8, 16) and 32)."""

    channels: tuple[int, ...] = (32, 64, 128, 256)  # output channels of the four convolutions
    hidden: int = 256  # units of the dense layer after the flatten

    def __post_init__(self) -> None:
        check_widths(self, len(CAR_RACING_KERNELS))
