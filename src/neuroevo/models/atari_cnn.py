"""The Atari policy CNN of Garbus & Pollack (2025), evaluated for a whole population at once.

It is the Nature-DQN network (Mnih et al. 2015) that Such et al.'s (2017) Deep GA evolved, fed
RGB instead of grayscale: 12×84×84 (4 stacked RGB frames) → conv 8×8 s4 → 32, conv 4×4 s2 → 64,
conv 3×3 s1 → 64 (spatial 20, 9, 7) → flatten 3136 → dense 256 → dense |A| logits, ReLU after every
layer but the last. The paper's small baseline uses channels (4, 8, 8) and 32 hidden units.

`ConvPolicy` is the shared builder: any stack of unpadded convolutions, a hidden dense layer and a
dense output. The CarRacing network (`car_racing_cnn.py`) is the same family with other kernels.
Layer types for `EncodingConfig.rank_for` / `sparse_for`: every convolution is `conv`, the dense
layer after the flatten is `hidden`; the output layer is always dense, as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuroevo.encoding import ParamLayout
from neuroevo.layers import Conv2d, Linear, Params
from neuroevo.sections.atari import ATARI_KERNELS, ModelConfig
from neuroevo.sections.conv_policy import smallest_input
from neuroevo.sections.encoding import EncodingConfig


class ConvPolicy:
    """Unpadded convs (ReLU) → flatten → dense (ReLU) → dense output, for P individuals at once.

    Convolutions run as one grouped convolution over the population (`layers.Conv2d`), dense layers
    as one bmm, so a forward has no Python loop over individuals.
    """

    def __init__(self, encoding: EncodingConfig, in_shape: tuple[int, int, int],
                 kernels: tuple[tuple[int, int], ...], channels: tuple[int, ...], hidden: int,
                 n_outputs: int) -> None:
        smallest = smallest_input(kernels)  # the TaskConfigs check task.resolution against it
        if min(in_shape[1:]) < smallest:
            raise ValueError(f"input {in_shape} is smaller than the {smallest}×{smallest} the "
                             f"convolutions {kernels} need")
        self.layout = ParamLayout()
        self.in_shape, self.n_outputs = in_shape, n_outputs
        c, h, w = in_shape
        self.convs: list[Conv2d] = []
        for i, ((kernel, stride), c_out) in enumerate(zip(kernels, channels, strict=True),
                                                      start=1):
            self.convs.append(Conv2d(self.layout, f"conv{i}", c, c_out, kernel, stride,
                                     rank=encoding.rank_for("conv"),
                                     sparse=encoding.sparse_for("conv"),
                                     dense_start=encoding.dense_start))
            c, h, w = c_out, (h - kernel) // stride + 1, (w - kernel) // stride + 1
        self.features = c * h * w  # flatten size: 3136 for the paper's Atari net
        self.hidden = Linear(self.layout, "hidden", self.features, hidden,
                             rank=encoding.rank_for("hidden"), kind="hidden",
                             sparse=encoding.sparse_for("hidden"),
                             dense_start=encoding.dense_start)
        self.out = Linear(self.layout, "out", hidden, n_outputs, rank=None, kind="output")

    def forward(self, p: Params, obs: torch.Tensor) -> torch.Tensor:
        """obs (P, N, C, H, W) float → (P, N, n_outputs); N observations per individual."""
        pop, n = obs.shape[:2]
        x = obs.transpose(0, 1).reshape(n, pop * self.in_shape[0], *obs.shape[3:])  # (N, P·C, H, W)
        for conv in self.convs:
            x = F.relu(conv(p, x))                                         # (N, P·C', H', W')
        x = x.reshape(n, pop, self.features).transpose(0, 1)               # (P, N, C'·H'·W')
        x = F.relu(self.hidden(p, x))                                      # (P, N, hidden)
        return self.out(p, x)                                              # (P, N, n_outputs)


def atari_cnn(config: ModelConfig, encoding: EncodingConfig, n_actions: int,
              frame_stack: int = 4, resolution: int = 84) -> ConvPolicy:
    """The paper's network for `n_actions` logits on `frame_stack` RGB frames of resolution²."""
    return ConvPolicy(encoding, (3 * frame_stack, resolution, resolution), ATARI_KERNELS,
                      config.channels, config.hidden, n_actions)
