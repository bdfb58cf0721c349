"""Where a MuJoCo generation's environment time goes on this machine: one environment against many.

A CPU-preset HalfCheetah run steps a population of environments in lockstep through `GymPool`.
This prints, in one run and with random actions, the steps per second of

1. one environment stepped in a loop, in this process;
2. two such loops at once, in two processes (what the cores give without any pool);
3. `GymPool` over `--slots` environments, in-process (0 workers; 1 is the same since
   2026-11-30) and with 2 worker processes, and with 2 workers over a quarter of the slots.

If (3) in-process is slower a step than (1), the environments' state outgrows the caches; if
2 workers gain less over 0 than (2) over (1), the pool's round trips cost the difference.

The pool is timed as `bench_rl.py` times raw stepping (`raw_stepping`: a timed reset, then
random actions in the action bounds, preprocessing included), on its MuJoCo family
(HalfCheetah-v5).

    python bench/mujoco_pool.py                  # 256 slots, ~1 minute on 2 cores
    python bench/mujoco_pool.py --steps 2000 --slots 128
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from functools import partial

import numpy as np
import torch

from bench_rl import action_sampler, build, raw_stepping
from neuroevo.run import cpu_model
from neuroevo.tasks.mujoco import make_env
from neuroevo.tasks.rollout import GymPool, available_cores

WARM_UP = 1_000  # steps before a loop's timing starts (the first ones run slower)
ENV_ID = "HalfCheetah-v5"  # bench_rl.py's MuJoCo family


def one_environment(steps: int, seed: int = 0) -> float:
    """Steps per second of one environment stepped `steps` times with uniform random actions."""
    env = make_env(ENV_ID, WARM_UP + steps + 1)
    env.reset(seed=seed)
    space = env.action_space
    actions = np.random.default_rng(seed).uniform(space.low, space.high,
                                                  (WARM_UP + steps, *space.shape))
    actions = actions.astype(np.float32)
    for action in actions[:WARM_UP]:
        env.step(action)
    started = time.perf_counter()
    for action in actions[WARM_UP:]:
        env.step(action)
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def pool_rate(workers: int, slots: int, steps: int) -> float:
    """Steps per second of a `GymPool` of `workers` stepping `slots` together, about `steps`
    env steps in all, timed as bench_rl.py's raw stepping."""
    rounds = max(1, steps // slots)
    task = build("mujoco", "dense", slots, rounds, torch.device("cpu"))
    pool = GymPool(partial(make_env, task.config.env_id, rounds), workers)
    try:
        return raw_stepping(task, pool, action_sampler("mujoco", task), slots, rounds).rate
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps a measurement")
    parser.add_argument("--slots", type=int, default=256, help="environments the pool steps")
    args = parser.parse_args()
    line = f"[cpu: {cpu_model()}, {available_cores()} cores] {ENV_ID}:"

    alone = one_environment(args.steps)
    print(f"{line} one environment in a loop: {alone:,.0f} steps/s")
    with mp.get_context().Pool(2) as workers:
        pair = workers.starmap(one_environment, [(args.steps, seed) for seed in (0, 1)])
    print(f"{line} two loops in two processes at once: {pair[0]:,.0f} + {pair[1]:,.0f} = "
          f"{sum(pair):,.0f} steps/s ({sum(pair) / alone:.2f}× one)")
    in_process = pool_rate(0, args.slots, args.steps)
    for workers_n, slots in ((0, args.slots), (2, args.slots), (2, max(2, args.slots // 4))):
        rate = in_process if workers_n == 0 else pool_rate(workers_n, slots, args.steps)
        print(f"{line} GymPool, {workers_n} workers, {slots} slots: {rate:,.0f} steps/s "
              f"({rate / alone:.2f}× one environment alone, {rate / in_process:.2f}× in-process)")


if __name__ == "__main__":
    main()
