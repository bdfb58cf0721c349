"""A population-batched MLP policy for continuous control (MuJoCo): an extension, not in the paper.

obs → 64 → 64 → actions by default. Hidden activations are tanh, as in the evolution-strategies
MuJoCo policies of Salimans et al. (2017): without observation normalisation (not used here) raw
MuJoCo observations reach tens, and a bounded activation keeps a Gaussian-perturbed network's
hidden state in range instead of letting one large input dominate the way an unbounded ReLU does.
The output is squashed by tanh and rescaled to the action bounds, so every genome is a valid
policy. Layer types: every hidden layer is `hidden` (factorizable, or sparse); the output
layer is dense.
"""

from __future__ import annotations

import torch

from neuroevo.encoding import ParamLayout
from neuroevo.layers import Linear, Params
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.mujoco import ModelConfig


class MLPPolicy:
    """tanh MLP with a tanh output rescaled to [low, high] per action dimension."""

    def __init__(self, config: ModelConfig, encoding: EncodingConfig, obs_dim: int,
                 action_low: torch.Tensor, action_high: torch.Tensor) -> None:
        self.layout = ParamLayout()
        self.hidden: list[Linear] = []
        width = obs_dim
        for i, units in enumerate(config.hidden, start=1):
            self.hidden.append(Linear(self.layout, f"hidden{i}", width, units,
                                      rank=encoding.rank_for("hidden"), kind="hidden",
                                      sparse=encoding.sparse_for("hidden"),
                                      dense_start=encoding.dense_start))
            width = units
        self.out = Linear(self.layout, "out", width, len(action_low), rank=None, kind="output")
        low, high = action_low.float(), action_high.float()
        self.center, self.half_range = (high + low) / 2, (high - low) / 2  # (act,)

    def forward(self, p: Params, obs: torch.Tensor) -> torch.Tensor:
        """obs (P, N, obs_dim) float → actions (P, N, act_dim) within the bounds."""
        x = obs
        for layer in self.hidden:
            x = torch.tanh(layer(p, x))                                    # (P, N, units)
        squashed = torch.tanh(self.out(p, x))                              # (P, N, act) in (−1, 1)
        return torch.addcmul(self.center.to(x.device), squashed, self.half_range.to(x.device))
