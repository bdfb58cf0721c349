"""How much emulation an Atari generation pays for episodes that have already ended.

`AtariPool` steps ale-py's `AtariVectorEnv`, which cannot step a subset of its environments: every
slot is stepped (finished ones with NOOP) until the generation's longest episode ends, so a
generation emulates P × (longest episode) steps for Σ (episode lengths) useful ones.
`bench_rl.py` caps every episode at the same length and cannot show this; here a real population
evolves for a few generations (the engine's own GA, ask/tell) and each generation prints its
episode lengths, the emulated ÷ useful ratio (the most that stepping only live slots, or
recycling finished slots for waiting episodes, could save) and the wall time; with `--slots N`
it also plays each generation as a queue over N recycled slots (`task.slots`), checks that
every episode scores as it did, and prints the speed-up.

    python bench/atari_lockstep.py                                  # Frostbite, P = 32, 3 generations
    python bench/atari_lockstep.py --population 64 --generations 5 --max-steps 2500
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from neuroevo.config import load_config
from neuroevo.ga import GeneticAlgorithm
from neuroevo.tasks import task_module
from neuroevo.tasks.rollout import episode_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="frostbite", help="configs/atari/<game>/dense.yaml")
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=2500, help="the paper's 2,500")
    parser.add_argument("--threads", type=int, default=0, help="ALE threads (0: every core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slots", type=int, default=0,
                        help="also time the generation over this many recycled slots")
    args = parser.parse_args()

    config = load_config(f"configs/atari/{args.game}/dense.yaml", overrides=[
        f"ga.population={args.population}", f"ga.elites={max(1, args.population // 8)}",
        f"task.max_steps={args.max_steps}", f"task.threads={args.threads}", f"seed={args.seed}"])
    task = task_module("atari").build(config, torch.device("cpu"))
    ga = GeneticAlgorithm(task.layout, config.ga, seed=args.seed)
    print(f"{args.game}, dense, P = {args.population}, episodes capped at {args.max_steps} steps, "
          f"{torch.get_num_threads()} torch threads")
    for generation in range(1, args.generations + 1):
        theta = ga.ask()
        seeds = episode_seeds(args.seed, generation, range(theta.shape[0]), range(1))
        start = time.perf_counter()
        result = task.play(theta, seeds)
        seconds = time.perf_counter() - start
        lengths = result.lengths.ravel()
        emulated = len(lengths) * int(lengths.max())
        print(f"generation {generation}: episode lengths min {lengths.min()}, median "
              f"{int(np.median(lengths))}, max {lengths.max()}; emulated {emulated:,} steps for "
              f"{int(lengths.sum()):,} useful: ×{emulated / lengths.sum():.2f}; {seconds:.1f} s "
              f"({emulated / seconds:,.0f} emulated steps/s)")
        if args.slots:
            task.spec = dataclasses.replace(task.spec, slots=args.slots)
            start = time.perf_counter()
            recycled = task.play(theta, seeds)
            queued = time.perf_counter() - start
            task.spec = dataclasses.replace(task.spec, slots=0)
            same = np.array_equal(recycled.returns, result.returns)
            print(f"  over {args.slots} recycled slots: {queued:.1f} s, ×{seconds / queued:.2f}; "
                  f"every episode's score {'the same' if same else 'DIFFERENT'}")
        ga.tell(torch.from_numpy(result.returns.mean(axis=1)))


if __name__ == "__main__":
    main()
