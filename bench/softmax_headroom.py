"""How far a TinyStories population's attention scores and logits rise above the shifts of the
softmaxes without a running max (gpu.ATTENTION_SHIFT_BY_DIAGONAL: a query's score against its
own key; gpu.LOSS_SHIFT_BY_TARGET: a token's target logit). Where the excess passes ~88 nats
(exp overflows fp32) the kernels fall back to the online softmax for that block, so this says
how often a lever would pay its fallback on real populations: the initial one, and with --run
a run's checkpointed survivors (evolved weights). Torch's ops on CPU; nothing is timed.

    python bench/softmax_headroom.py configs/tinystories/dense.yaml --preset cpu \\
        --run results/stories_cpu/runs/tinystories/dense/seed0
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

os.environ["NEUROEVO_CPU_KERNELS"] = "0"  # torch's ops, where the scores and logits can be seen

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import neuroevo.models.transformer as transformer  # noqa: E402
from neuroevo.config import load_config  # noqa: E402
from neuroevo.ga import initial_seeds  # noqa: E402
from neuroevo.genome import initial_weights  # noqa: E402
from neuroevo.run import build_task  # noqa: E402


OVERFLOW = 88.0  # nats: exp of more overflows fp32 (exp(88.7) ≈ 3.4e38)


class Headroom:
    """Within `recording()`, the model's attention and cross-entropy record the largest excess
    of each, and how many (individual, sequence, head) attention rows have a query past
    OVERFLOW."""

    def __init__(self) -> None:
        self.attention, self.logits = 0.0, 0.0
        self.rows_past, self.rows = 0, 0
        self._attend, self._cross_entropy = transformer.causal_attention, F.cross_entropy

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        transformer.causal_attention = self.causal_attention
        transformer.F.cross_entropy = self.cross_entropy
        try:
            yield
        finally:
            transformer.causal_attention = self._attend
            transformer.F.cross_entropy = self._cross_entropy

    def causal_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         pad_to: int = 1) -> torch.Tensor:
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5          # (…, T, T)
        t = scores.shape[-1]
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        excess = scores.masked_fill(~causal, float("-inf")).amax(-1) \
            - scores.diagonal(dim1=-2, dim2=-1)
        self.attention = max(self.attention, excess.max().item())
        self.rows_past += int((excess.amax(-1) > OVERFLOW).sum())
        self.rows += excess[..., 0].numel()
        return self._attend(q, k, v, pad_to)

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor,
                      reduction: str = "mean") -> torch.Tensor:
        excess = logits.amax(-1) - logits.gather(1, targets[:, None])[:, 0]
        self.logits = max(self.logits, excess.max().item())
        return self._cross_entropy(logits, targets, reduction=reduction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a TinyStories config, e.g. configs/tinystories/dense.yaml")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--run", default=None, help="a run directory: its survivors too")
    args = parser.parse_args()
    config = load_config(args.config, preset=args.preset)
    task = build_task(config, torch.device("cpu"))
    model, batch = task.model, task.batch(1)
    populations = {f"initial population ({config.ga.population})": initial_weights(
        model.layout, initial_seeds(config.seed, config.ga.population), torch.device("cpu"))}
    if args.run:
        state = torch.load(f"{args.run}/checkpoint/state.pt", weights_only=False)["ga"]
        populations[f"survivors of generation {state['generation'] - 1}"] = state["elite_theta"]
    for name, theta in populations.items():
        headroom = Headroom()
        with headroom.recording(), torch.no_grad():
            fitness = model.negative_cross_entropy(model.layout.views(theta), batch.tokens,
                                                   batch.lengths)
        print(f"{args.config} {name}: fitness {fitness.min():.3f} … {fitness.max():.3f}; "
              f"largest score above the query's own key {headroom.attention:.1f} nats "
              f"({headroom.rows_past / headroom.rows:.2%} of attention rows past "
              f"{OVERFLOW:.0f}), largest logit above the target's {headroom.logits:.1f} nats")


if __name__ == "__main__":
    main()
