"""Where a MuJoCo generation's environment time goes on this machine: one environment against many.

A CPU-preset HalfCheetah run steps a population of environments in lockstep through `GymPool`.
This prints, in one run and with random actions, the steps per second of

1. one environment stepped in a loop, in this process;
2. two such loops at once, in two processes (what the cores give without any pool);
3. `GymPool` over `--slots` environments, in-process (0 workers; 1 is the same since
   2026-11-30) and with 2 worker processes, and with 2 workers over a quarter of the slots.

If (3) in-process is slower a step than (1), the environments' state outgrows the caches; if
2 workers gain less over 0 than (2) over (1), the pool's round trips cost the difference.

    python bench/mujoco_pool.py                  # HalfCheetah-v5, 256 slots, ~1 minute on 2 cores
    python bench/mujoco_pool.py --steps 2000 --slots 128
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from functools import partial

import numpy as np

from neuroevo.run import cpu_model
from neuroevo.tasks.mujoco import make_env
from neuroevo.tasks.rollout import GymPool, available_cores

WARM_UP = 1_000  # steps before a loop's timing starts (the first ones run slower)


def one_environment(env_id: str, steps: int, seed: int = 0) -> float:
    """Steps per second of one environment stepped `steps` times with uniform random actions."""
    env = make_env(env_id, WARM_UP + steps + 1)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (WARM_UP + steps, *env.action_space.shape))
    actions = actions.astype(np.float32)
    for action in actions[:WARM_UP]:
        env.step(action)
    started = time.perf_counter()
    for action in actions[WARM_UP:]:
        env.step(action)
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def pool_rate(env_id: str, workers: int, slots: int, steps: int, seed: int = 0) -> float:
    """Steps per second of a `GymPool` stepping all `slots` together, `steps` env steps in all."""
    probe = make_env(env_id, 1)
    action_shape = probe.action_space.shape
    probe.close()
    rounds = max(1, steps // slots)
    actions = np.random.default_rng(seed).uniform(-1, 1, (rounds + 1, slots, *action_shape))
    actions = actions.astype(np.float32)
    pool = GymPool(partial(make_env, env_id, rounds + 2), workers)
    try:
        index = np.arange(slots)
        pool.reset(index + seed)
        pool.step(index, actions[-1])  # warm-up: every worker's first step
        started = time.perf_counter()
        for action in actions[:-1]:
            pool.step(index, action)
        return rounds * slots / (time.perf_counter() - started)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5",
                        help="a gymnasium MuJoCo id (actions uniform in [-1, 1])")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps a measurement")
    parser.add_argument("--slots", type=int, default=256, help="environments the pool steps")
    args = parser.parse_args()
    line = f"[cpu: {cpu_model()}, {available_cores()} cores] {args.env}:"

    alone = one_environment(args.env, args.steps)
    print(f"{line} one environment in a loop: {alone:,.0f} steps/s")
    with mp.get_context().Pool(2) as workers:
        pair = workers.starmap(one_environment, [(args.env, args.steps, seed) for seed in (0, 1)])
    print(f"{line} two loops in two processes at once: {pair[0]:,.0f} + {pair[1]:,.0f} = "
          f"{sum(pair):,.0f} steps/s ({sum(pair) / alone:.2f}× one)")
    in_process = pool_rate(args.env, 0, args.slots, args.steps)
    for workers_n, slots in ((0, args.slots), (2, args.slots), (2, max(2, args.slots // 4))):
        rate = in_process if workers_n == 0 else pool_rate(args.env, workers_n, slots, args.steps)
        print(f"{line} GymPool, {workers_n} workers, {slots} slots: {rate:,.0f} steps/s "
              f"({rate / alone:.2f}× one environment alone, {rate / in_process:.2f}× in-process)")


if __name__ == "__main__":
    main()
