"""The Atari task's sections: `task:` (game, episodes, the ALE pool) and `model:` (the paper's CNN
widths; `neuroevo.tasks.atari` and `neuroevo.models.atari_cnn` use them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ale_py import roms

from neuroevo.sections import check_minimums
from neuroevo.sections.conv_policy import CONV_LAYER_TYPES, check_widths, smallest_input

LAYER_TYPES = CONV_LAYER_TYPES  # the keys `encoding.ranks` may name

ATARI_KERNELS = ((8, 4), (4, 2), (3, 1))  # (kernel, stride) of each convolution


def rom_id(game: str) -> str:
    """'Frostbite' → 'frostbite', 'MsPacman' → 'ms_pacman': ale_py's ROM names."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()


@dataclass(frozen=True)
class TaskConfig:
    name: str = "atari"
    game: str = "Frostbite"  # ALE game, CamelCase as in the gymnasium ids (Frostbite, MsPacman)
    max_steps: int = 2500  # agent steps per episode, no-ops included
    noop_max: int = 30  # episodes start with s−1 NOOPs, s ~ U{1..noop_max}
    frame_stack: int = 4  # RGB frames on the channel axis → 12 input channels
    resolution: int = 84  # frames are resized to resolution × resolution (≥ 36: the CNN)
    episodes: int = 1  # episodes per individual per generation; fitness = their mean score
    threads: int = 0  # ALE threads; 0 = one per available core
    # environment slots; fewer than the generation's episodes play them as a queue, each slot
    # starting the next episode when its own ends (ALE steps every slot, ended or not); 0 = one
    # slot per episode, all started together
    slots: int = 0
    # how much of the machine the pool uses, not what it computes: left out of the config digest
    EXECUTION_ONLY: ClassVar[tuple[str, ...]] = ("threads", "slots")
    # the key `--workers N` sets: the ALE threads; the slots stay as configured (0: one per
    # episode), since a queue over N slots is another way of playing, not a pool size
    POOL_SIZE: ClassVar[str] = "threads"

    def __post_init__(self) -> None:
        valid = roms.get_all_rom_ids()
        if rom_id(self.game) not in valid:
            games = ", ".join("".join(part.title() for part in rom.split("_")) for rom in valid)
            raise ValueError(f"unknown Atari game {self.game!r} in task.game (valid: {games})")
        if self.noop_max < 1:
            raise ValueError("task.noop_max must be ≥ 1 (s ~ U{1..noop_max}; 1 = no no-ops)")
        check_minimums(self, (("episodes", 1, ""), ("max_steps", 1, ""), ("frame_stack", 1, ""),
                              ("resolution", smallest_input(ATARI_KERNELS),
                               " (the convolutions' smallest input)"),
                              ("threads", 0, " (0 = one per available core)"),
                              ("slots", 0, " (0 = one per episode)")))


@dataclass(frozen=True)
class ModelConfig:
    """Atari CNN widths; defaults are the paper's (the small baseline: (4, 8, 8) and 32)."""

    channels: tuple[int, ...] = (32, 64, 64)  # output channels of the three convolutions
    hidden: int = 256  # units of the dense layer after the flatten

    def __post_init__(self) -> None:
        check_widths(self, len(ATARI_KERNELS))
