"""The CarRacing policy CNN of Garbus & Pollack (2025), built by the shared `ConvPolicy`.

12×64×64 (4 stacked RGB frames) → four unpadded 4×4 stride-2 convolutions 32, 64, 128, 256
(spatial 31, 14, 6, 2) → flatten 1024 → dense 256 → dense 3 (steer, gas, brake), ReLU after every
layer but the last (the reference's config puts `relu` on all four convolutions). The outputs are
the raw actions: no tanh or clamp, the environment clips them itself. Small baseline: channels
(4, 4, 8, 16), flatten 64, 32 hidden units.
"""

from __future__ import annotations

from neuroevo.models.atari_cnn import ConvPolicy
from neuroevo.sections.car_racing import CAR_RACING_KERNELS, ModelConfig
from neuroevo.sections.encoding import EncodingConfig

N_ACTIONS = 3  # steer, gas, brake
__all__ = ["car_racing_cnn"]


def car_racing_cnn(config: ModelConfig, encoding: EncodingConfig, frame_stack: int = 4,
                   resolution: int = 64) -> ConvPolicy:
    """The paper's network on `frame_stack` RGB frames of resolution², 3 raw action outputs."""
    return ConvPolicy(encoding, (3 * frame_stack, resolution, resolution), CAR_RACING_KERNELS,
                      config.channels, config.hidden, N_ACTIONS)
