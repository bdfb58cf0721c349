"""RL rollout throughput, every figure from one run on one machine, the device named on each line.

    python bench/bench_rl.py                          # all three families, ~3 minutes on 2 cores
    python bench/bench_rl.py --families mujoco        # one family
    python bench/bench_rl.py --device cuda            # the policy forward on a GPU

Per family (Atari: Frostbite; CarRacing-v3; MuJoCo: HalfCheetah-v5), with the paper's networks:

1. raw env stepping: the task's own pool and preprocessing, random actions, all cores, one reset
   per slot then `--steps` steps of every slot; for CarRacing and MuJoCo also the same
   environments in GymPool without and with worker processes and in gymnasium's SyncVectorEnv and
   AsyncVectorEnv, for the choice of pool;
2. the batched policy forward alone, observations/s, for the dense, factorized and small nets;
3. the batched forward against a loop over individuals (same weights, same observations);
4. the full rollout (`task.play`: forward + stepping + frame stacks + masking), env steps/s;
5. the acceptance ratio: rollout time per env step ÷ (raw env step time + forward time per
   observation, each measured alone). Target ≤ 1.25 on CPU.

The rollouts cap episodes at `--steps` and switch CarRacing's early stop off, so every slot plays
as many steps as the raw measurement; Atari episodes that end earlier are stepped with NOOP to the
end (the vector environment cannot skip them), which the ratio then pays for.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from neuroevo.config import load_config
from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.run import cpu_model
from neuroevo.tasks import task_module
from neuroevo.tasks.rollout import GymPool, available_cores, episode_seeds

FAMILIES = {
    # family: (config directory, env slots, steps): MuJoCo at its configured population; Atari
    # (512) and CarRacing (256) smaller, so that the whole run takes a few minutes on 2 cores
    "atari": ("configs/atari/frostbite", 64, 100),
    "car_racing": ("configs/car_racing", 16, 40),
    "mujoco": ("configs/mujoco/halfcheetah", 256, 200),
}
VARIANTS = ("dense", "factorized", "small")


@dataclass
class Timing:
    seconds: float
    count: int  # steps or observations

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def per_item(self) -> float:
        return self.seconds / self.count


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}"
    return f"{cpu_model()}, {available_cores()} cores, torch {torch.get_num_threads()} threads"


def report(device: str, text: str) -> None:
    print(f"[{device}] {text}", flush=True)


def repeat(fn: Callable[[], None], seconds: float) -> Timing:
    """Call fn (after one warm-up call) until `seconds` have passed; time per call."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls == 0:
        fn()
        calls += 1
    return Timing(time.perf_counter() - start, calls)


def build(family: str, variant: str, population: int, steps: int, device: torch.device):
    folder = FAMILIES[family][0]
    overrides = [f"ga.population={population}", "ga.elites=1", f"task.max_steps={steps}"]
    if family == "car_racing":
        overrides += ["task.negative_streak=0", "task.finalists=1"]
    config = load_config(f"{folder}/{variant}.yaml", overrides=overrides)
    return task_module(config.task.name).build(config, device)


def action_sampler(family: str, task) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Uniform random actions of the family's action space, for n slots at once."""
    if family == "atari":
        return lambda rng, n: rng.integers(task.n_actions, size=n)
    if family == "car_racing":
        from neuroevo.tasks.car_racing import make_env

        space = make_env().action_space
        low, high = space.low, space.high
    else:
        low = (task.model.center - task.model.half_range).numpy()
        high = (task.model.center + task.model.half_range).numpy()
    return lambda rng, n: rng.uniform(low, high, size=(n, len(low))).astype(np.float32)


def observation_shape(family: str, task) -> tuple[int, ...]:
    return (task.obs_dim,) if family == "mujoco" else task.model.in_shape


def raw_stepping(task, pool, sample: Callable, population: int, steps: int) -> Timing:
    """One reset of every slot, then `steps` random steps of all of them, preprocessing included
    (after a warm-up reset, so building the environments is not timed)."""
    rng = np.random.default_rng(0)
    slots = np.arange(population)
    seeds = episode_seeds(0, 0, range(population), [0]).ravel()
    pool.reset(seeds)
    start = time.perf_counter()
    task.preprocess(pool.reset(seeds))
    for _ in range(steps):
        raw, _, _ = pool.step(slots, sample(rng, population))
        task.preprocess(raw)
    return Timing(time.perf_counter() - start, population * steps)


@torch.no_grad()
def forward_timing(task, shape: tuple[int, ...], population: int, device: torch.device,
                   seconds: float, loop: bool = True) -> tuple[Timing, Timing | None]:
    """(batched forward, loop over individuals) on the same weights and observations."""
    model = task.model
    theta = initial_weights(task.layout, list(range(population)), device)
    params = {k: v.contiguous() for k, v in task.layout.views(theta).items()}
    obs = torch.rand(population, 1, *shape, device=device)                 # (P, 1, ...)

    def batched() -> None:
        model.forward(params, obs)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def looped() -> None:
        for i in range(population):
            model.forward({k: v[i:i + 1] for k, v in params.items()}, obs[i:i + 1])
        if device.type == "cuda":
            torch.cuda.synchronize()

    threads = torch.get_num_threads()
    torch.set_num_threads(task.spec.forward_threads or threads)  # as the rollout runs it
    try:
        fast = repeat(batched, seconds)
        slow = repeat(looped, seconds) if loop else None
    finally:
        torch.set_num_threads(threads)
    return (Timing(fast.seconds, fast.count * population),
            None if slow is None else Timing(slow.seconds, slow.count * population))


def rollout_timing(task, population: int, device: torch.device) -> Timing:
    theta = initial_weights(task.layout, list(range(population)), device)
    start = time.perf_counter()
    result = task.play(theta, episode_seeds(0, 1, range(population), [0]))
    return Timing(time.perf_counter() - start, result.env_steps)


def gymnasium_vector(task, make_env: Callable[[], gym.Env], n: int, steps: int,
                     asynchronous: bool) -> Timing:
    """gymnasium's own vector env on the same environments, preprocessing included."""
    vector = (gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv)(
        [make_env] * n)
    try:
        vector.reset(seed=0)
        start = time.perf_counter()
        task.preprocess(vector.reset(seed=0)[0])
        for _ in range(steps):
            task.preprocess(vector.step(vector.action_space.sample())[0])
        return Timing(time.perf_counter() - start, n * steps)
    finally:
        vector.close()


def pool_choice(family: str, task, sample: Callable, n: int, steps: int, label: str) -> None:
    """The same n environments stepped four ways: which vectorisation is fastest here."""
    if family == "car_racing":
        from neuroevo.tasks.car_racing import make_env
    else:
        from neuroevo.tasks.mujoco import make_env

        make_env = functools.partial(make_env, task.config.env_id, steps)
    for workers in (0, available_cores()):
        pool = GymPool(make_env, workers)
        timing = raw_stepping(task, pool, sample, n, steps)
        pool.close()
        report(label, f"{family}: raw env stepping, GymPool with {workers} worker processes, "
                      f"{n} slots: {timing.rate:,.0f} steps/s")
    for asynchronous in (False, True):
        name = "AsyncVectorEnv" if asynchronous else "SyncVectorEnv"
        timing = gymnasium_vector(task, make_env, n, steps, asynchronous)
        report(label, f"{family}: raw env stepping, gymnasium {name}, {n} envs: "
                      f"{timing.rate:,.0f} steps/s")


def bench_family(family: str, args: argparse.Namespace, device: torch.device, label: str
                 ) -> None:
    _, population, steps = FAMILIES[family]
    population = args.population or population
    steps = args.steps or steps
    task = build(family, "dense", population, steps, device)
    pool, sample, shape = task.pool, action_sampler(family, task), observation_shape(family, task)
    raw = raw_stepping(task, pool, sample, population, steps)
    pool_name = type(pool).__name__
    report(label, f"{family}: raw env stepping ({pool_name}, {population} slots, random actions, "
                  f"preprocessing): {raw.rate:,.0f} steps/s")
    if family != "atari" and args.vector_envs:
        pool_choice(family, task, sample, args.vector_envs, steps, label)
    for variant in VARIANTS:
        model_task = task if variant == "dense" else build(family, variant, population, steps,
                                                           device)
        batched, looped = forward_timing(model_task, shape, args.forward_population, device,
                                         args.seconds)
        threads = model_task.spec.forward_threads or torch.get_num_threads()
        report(label, f"{family}: policy forward {variant} (P={args.forward_population}, "
                      f"{threads} thread{'s' * (threads > 1)}): "
                      f"{batched.rate:,.0f} obs/s batched, {looped.rate:,.0f} obs/s looped "
                      f"over individuals → batched ×{looped.per_item / batched.per_item:.2f}")
    forward, _ = forward_timing(task, shape, population, device, args.seconds, loop=False)
    rolled = rollout_timing(task, population, device)
    report(label, f"{family}: full rollout, dense (P={population}, {steps} steps): "
                  f"{rolled.rate:,.0f} env steps/s (forward alone at P={population}: "
                  f"{forward.rate:,.0f} obs/s)")
    ratio = rolled.per_item / (raw.per_item + forward.per_item)
    report(label, f"{family}: rollout time per env step ÷ (raw env step + forward per obs) = "
                  f"{rolled.per_item * 1e3:.3f} ms ÷ ({raw.per_item * 1e3:.3f} + "
                  f"{forward.per_item * 1e3:.3f}) ms = {ratio:.2f} (target ≤ 1.25)")
    pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--device", default="cpu", help="where the policy forward runs")
    parser.add_argument("--population", type=int, default=0,
                        help="env slots of the raw and rollout measurements (0: per family, "
                             "Atari 64, CarRacing 16, MuJoCo 256)")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per slot (0: per family, Atari 100, CarRacing 40, MuJoCo 200)")
    parser.add_argument("--forward-population", type=int, default=64,
                        help="individuals in the forward-only measurements")
    parser.add_argument("--vector-envs", type=int, default=16,
                        help="environments in the pool comparison (GymPool in-process and with "
                             "workers, gymnasium Sync/AsyncVectorEnv); 0 skips it")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="minimum wall time of each forward measurement")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu_kernels.retain_freed_memory()  # as `neuroevo run` does on CPU (the envs always are)
    label = f"{device.type}: {device_label(device)}"
    report(label, f"torch {torch.__version__}, gymnasium {gym.__version__}, float32, "
                  f"one warm-up call before each forward timing; {_load()}")
    for family in args.families:
        bench_family(family, args, device, label)
    report(label, f"done; {_load()}")


def _load() -> str:
    """Other processes' load skews every figure on a shared machine: print it beside them."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


if __name__ == "__main__":
    main()
