"""Vectorised episodes for a whole population: the machinery the Atari, CarRacing and MuJoCo tasks
share.

Every (individual, episode) pair gets its own environment slot, and all slots run in lockstep:
each step, one policy forward scores the observations of every individual still playing (a
grouped convolution or a bmm over the population axis, on the task's device), and the environment
pool steps only the slots whose episode is still running. A finished episode is masked out: its
slot is never stepped again. Individuals whose episodes have all finished are dropped from the
forward batch once enough of them have (`compact_below`), so late steps do not pay for the dead.

Frame stacks live in one tensor (slots, K, C, H, W) used as a ring buffer; a new episode's
stack repeats its first frame, as gymnasium's FrameStackObservation(padding_type="reset") does.
Episode seeds are a pure function of (run seed, generation, individual, episode), so a rollout is
reproducible and resuming a run replays exactly the episodes an uninterrupted one would have played.

`GymPool` holds gymnasium environments, sharded over worker processes (one per core by default)
that step only the slots they are sent. gymnasium's own AsyncVectorEnv runs one process per
environment and steps all of them every call, which cannot skip finished episodes and does not
scale to hundreds of slots on a few cores; SyncVectorEnv is GymPool with no workers.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from neuroevo.atomic import replacing
from neuroevo.encoding import ParamLayout
from neuroevo.layers import Params
from neuroevo.sections import TaskUnavailable
from neuroevo.tasks import Evaluation


class PolicyModel(Protocol):
    layout: ParamLayout

    def forward(self, p: Params, obs: torch.Tensor) -> torch.Tensor:
        """obs (P, N, ...) float → (P, N, n_outputs)."""


class EnvPool(Protocol):
    """Environment slots 0..n−1, reset together when a rollout starts, then stepped by subset."""

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        """Start one episode per seed in slots 0..len(seeds)−1 → (n, *raw_obs) first frames."""

    def step(self, slots: np.ndarray, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step only `slots` → (raw_obs (s, ...), rewards (s,), ended (s,) terminated|truncated)."""

    def close(self) -> None: ...


class RestartablePool(EnvPool, Protocol):
    """A pool whose slots can start a new episode on their own (`rollout`'s recycling)."""

    def restart(self, slots: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Start one episode per seed in `slots` → (len(slots), *raw_obs) first frames."""


# (raw observations from the pool) → (n, *frame) tensor: uint8 pixels (C, H, W) or float vectors
Preprocess = Callable[[np.ndarray], torch.Tensor]
# (policy outputs (s, n_outputs) on CPU, slots (s,), steps taken so far (s,)) → actions (s, ...)
Act = Callable[[torch.Tensor, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RolloutSpec:
    max_steps: int  # agent steps per episode, no-op steps included; the episode ends at the cap
    frame_stack: int = 1  # frames concatenated on the channel axis, oldest first
    obs_scale: float = 1.0  # frames are multiplied by this before the forward sees them (1/255)
    negative_streak: int = 0  # end an episode after this many consecutive rewards < 0 (0: never)
    compact_below: float = 0.75  # re-gather the forward batch when live individuals fall below this
    # environment slots of a recycling rollout (0: one per episode, all in lockstep); fewer slots
    # than episodes play them as a queue, each slot starting the next episode when its own ends
    slots: int = 0
    forward_threads: int = 0  # torch threads during the rollout (0: leave torch's setting)


@dataclass
class RolloutResult:
    returns: np.ndarray  # (P, E) float64: sum of the raw step rewards of each episode
    lengths: np.ndarray  # (P, E) agent steps of each episode
    env_steps: int  # Σ lengths: environment steps actually taken


@torch.no_grad()
def rollout(model: PolicyModel, theta: torch.Tensor, pool: EnvPool, seeds: np.ndarray,
            spec: RolloutSpec, preprocess: Preprocess, act: Act) -> RolloutResult:
    """Play seeds.shape[1] episodes for each of the theta.shape[0] individuals, all at once.

    theta (P, D) on the task's device; seeds (P, E), one per episode; slot i·E + e plays
    individual i's episode e.
    """
    threads = torch.get_num_threads()
    if spec.forward_threads:
        torch.set_num_threads(spec.forward_threads)
    try:
        if 0 < spec.slots < seeds.size and hasattr(pool, "restart"):
            return _recycling(model, theta, pool, seeds, spec, preprocess, act)
        return _lockstep(model, theta, pool, seeds, spec, preprocess, act)
    finally:
        torch.set_num_threads(threads)


def _lockstep(model: PolicyModel, theta: torch.Tensor, pool: EnvPool, seeds: np.ndarray,
              spec: RolloutSpec, preprocess: Preprocess, act: Act) -> RolloutResult:
    pop, episodes = seeds.shape
    n, k = pop * episodes, spec.frame_stack
    device = theta.device
    first = preprocess(pool.reset(seeds.reshape(-1))).to(device) * spec.obs_scale  # (n, *frame)
    # frame stacks as ring buffers on the device, already scaled: every live slot steps in
    # lockstep, so step t writes position t % K of all of them (one frame per slot crosses to the
    # device and is converted once) and one gather reads every stack oldest first
    stack = first.unsqueeze(1).repeat_interleave(k, dim=1)                # (n, K, *frame) float
    frame_shape = tuple(first.shape[1:])
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    streak = np.zeros(n, dtype=np.int64)  # consecutive negative rewards up to the last step
    done = np.zeros(n, dtype=bool)
    views = model.layout.views(theta)
    batch = np.empty(0, dtype=np.int64)
    t = 0
    while not done.all():
        # compact: keep the forward batch to the individuals that still play (a copy of their
        # weights, so only when enough have finished for the saving to pay for the gather)
        live = np.flatnonzero(~done.reshape(pop, episodes).all(axis=1))
        if len(batch) == 0 or len(live) <= spec.compact_below * len(batch):
            batch = live
            index = torch.as_tensor(batch, device=device)
            params = {name: view.index_select(0, index) for name, view in views.items()}
            grid = (batch[:, None] * episodes + np.arange(episodes)).reshape(-1)  # (B·E,) slots
            grid_index = torch.from_numpy(grid).to(device)
            # reused every step: a fresh buffer this size costs more in page faults than the copy
            frames = torch.empty(len(grid), k, *frame_shape, device=device)  # (B·E, K, *frame)
        # act: one forward for every live individual's E observations, stacks oldest first
        for j in range(k):
            torch.index_select(stack[:, (t + j) % k], 0, grid_index, out=frames[:, j])
        obs = frames.view(len(batch), episodes, k * frame_shape[0], *frame_shape[1:])  # (B,E,KC..)
        outputs = model.forward(params, obs).reshape(len(grid), -1).cpu()  # (B·E, n_outputs)
        playing = ~done[grid]
        slots = grid[playing]
        if not playing.all():
            outputs = outputs[torch.from_numpy(playing)]                   # (s, n_outputs)
        actions = act(outputs, slots, lengths[slots])
        # step: only the slots whose episode is still running
        raw, rewards, ended = pool.step(slots, actions)
        done[slots] = _scored(slots, rewards, ended, returns, lengths, streak, spec)
        new = preprocess(raw).to(device) * spec.obs_scale                  # (s, *frame)
        stack[:, t % k].index_copy_(0, torch.from_numpy(slots).to(device), new)  # the oldest
        t += 1
    return RolloutResult(returns.reshape(pop, episodes), lengths.reshape(pop, episodes),
                         int(lengths.sum()))


def _recycling(model: PolicyModel, theta: torch.Tensor, pool: RestartablePool, seeds: np.ndarray,
               spec: RolloutSpec, preprocess: Preprocess, act: Act) -> RolloutResult:
    """The episodes as a queue over spec.slots environment slots: a slot whose episode ends
    starts the next waiting one, so a pool that steps every slot (ale-py's vector env) no longer
    emulates ended episodes until the generation's longest one ends. Each slot has its own row of
    weights (its episode's individual's, copied in when the episode starts); `act` sees episode
    ids (individual·E + episode), as in `_lockstep`. Every episode plays what it would there."""
    pop, episodes = seeds.shape
    n, k, width = pop * episodes, spec.frame_stack, spec.slots
    device = theta.device
    flat_seeds = seeds.reshape(-1)
    job = np.arange(width)                   # the episode each slot plays; −1 once none is left
    waiting = width                          # the next episode to start
    first = preprocess(pool.reset(flat_seeds[:width])).to(device) * spec.obs_scale
    stack = first.unsqueeze(1).repeat_interleave(k, dim=1)                # (S, K, *frame)
    frame_shape = tuple(first.shape[1:])
    views = model.layout.views(theta)
    rows = {name: view.index_select(0, torch.as_tensor(job // episodes, device=device))
            for name, view in views.items()}                              # each slot's weights
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    streak = np.zeros(n, dtype=np.int64)
    batch = np.arange(width)                 # the slots the forward scores
    params, frames = rows, torch.empty(width, k, *frame_shape, device=device)
    t = 0
    while (job >= 0).any():
        live = np.flatnonzero(job >= 0)
        # once no episode waits, slots only empty: compact the forward as `_lockstep` does
        if waiting == n and len(live) <= spec.compact_below * len(batch):
            batch = live
            index = torch.as_tensor(batch, device=device)
            params = {name: row.index_select(0, index) for name, row in rows.items()}
            frames = torch.empty(len(batch), k, *frame_shape, device=device)
        batch_index = torch.as_tensor(batch, device=device)
        for j in range(k):
            torch.index_select(stack[:, (t + j) % k], 0, batch_index, out=frames[:, j])
        obs = frames.view(len(batch), 1, k * frame_shape[0], *frame_shape[1:])
        outputs = model.forward(params, obs).reshape(len(batch), -1).cpu()
        playing = job[batch] >= 0
        slots = batch[playing]
        if not playing.all():
            outputs = outputs[torch.from_numpy(playing)]
        episode = job[slots]
        actions = act(outputs, episode, lengths[episode])
        raw, rewards, ended = pool.step(slots, actions)
        ended = _scored(episode, rewards, ended, returns, lengths, streak, spec)
        new = preprocess(raw).to(device) * spec.obs_scale
        stack[:, t % k].index_copy_(0, torch.from_numpy(slots).to(device), new)
        freed = slots[ended]
        job[freed] = -1
        starting = freed[:n - waiting]
        if len(starting):  # the next waiting episodes, in order, on the freed slots
            job[starting] = np.arange(waiting, waiting + len(starting))
            waiting += len(starting)
            start = preprocess(pool.restart(starting, flat_seeds[job[starting]])).to(device)
            index = torch.from_numpy(starting).to(device)
            stack.index_copy_(0, index,
                              (start * spec.obs_scale).unsqueeze(1).expand(-1, k, *frame_shape))
            owners = torch.as_tensor(job[starting] // episodes, device=device)
            for name, row in rows.items():
                row.index_copy_(0, index, views[name].index_select(0, owners))
        t += 1
    return RolloutResult(returns.reshape(pop, episodes), lengths.reshape(pop, episodes),
                         int(lengths.sum()))


def _scored(episodes: np.ndarray, rewards: np.ndarray, ended: np.ndarray, returns: np.ndarray,
            lengths: np.ndarray, streak: np.ndarray, spec: RolloutSpec) -> np.ndarray:
    """Add one step's rewards to `episodes` (indices into returns, lengths and streak, updated
    in place) → which have ended: the environment's end, the step cap or the negative streak."""
    returns[episodes] += rewards
    lengths[episodes] += 1
    streak[episodes] = np.where(rewards < 0, streak[episodes] + 1, 0)
    ended = ended | (lengths[episodes] >= spec.max_steps)
    if spec.negative_streak:
        ended |= streak[episodes] >= spec.negative_streak
    return ended


def mean_return(play: Callable[[torch.Tensor, np.ndarray], RolloutResult], theta: torch.Tensor,
                run_seed: int, generation: int, episodes: int) -> Evaluation:
    """Every individual plays `episodes` seeded episodes: fitness = its mean return (the
    reference's sum over one episode, and ranking-equivalent to a sum over several)."""
    seeds = episode_seeds(run_seed, generation, range(theta.shape[0]), range(episodes))
    result = play(theta, seeds)
    return Evaluation(fitness=torch.from_numpy(result.returns.mean(axis=1)),
                      columns={"env_steps": result.env_steps})


def episode_seeds(run_seed: int, generation: int, individuals: range | list[int] | np.ndarray,
                  episodes: range | list[int]) -> np.ndarray:
    """(len(individuals), len(episodes)) 31-bit seeds, each a hash of (run seed, generation,
    individual, episode): independent episodes for every individual, the same ones on a rerun."""
    return np.array([[np.random.SeedSequence([run_seed, generation, int(i), int(e)])
                      .generate_state(1)[0] >> 1 for e in episodes] for i in individuals],
                    dtype=np.int64)


@contextmanager
def filmed(video: Path | None) -> Iterator[Callable[[Any], Any]]:
    """Yield a wrapper that films one environment with gymnasium's RecordVideo (the identity when
    `video` is None); when the block ends, the first episode's mp4 replaces `video` atomically
    (the scratch folder may be on another file system, where a move is a copy that a kill could
    leave half done).

    Close the filmed environment inside the block: RecordVideo writes the file on close (an early
    stop or a step cap ends the episode without the environment knowing).
    """
    if video is None:
        yield lambda env: env
        return
    from gymnasium.wrappers import RecordVideo

    # RecordVideo imports its encoder only once it writes: check before playing the episode
    if importlib.util.find_spec("moviepy") is None:
        raise TaskUnavailable('recording a video needs moviepy: pip install -e ".[video]"')
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "video"  # a new folder: RecordVideo warns about existing ones
        yield lambda env: RecordVideo(env, str(folder), name_prefix="replay",
                                      episode_trigger=lambda episode: episode == 0)
        clips = sorted(folder.glob("*.mp4"))
        if not clips:
            raise RuntimeError("the filmed environment wrote no video (was it closed?)")
        with replacing(video) as tmp:
            shutil.copyfile(clips[0], tmp)


def replay_in_process(play: Callable[[GymPool], RolloutResult],
                      make_env: Callable[[str | None], Any], video: Path | None) -> RolloutResult:
    """`play` on a pool in this process (replays of a single individual). When `video` is set,
    its first environment, slot 0's, is built by make_env("rgb_array") and filmed; the others
    are built by make_env(None) and not filmed.

    A replay plays an individual's episodes in one rollout, as its evaluation did, rather than
    one at a time: the policy's forward over E observations may round differently from E
    forwards over one, and a continuous-control episode grows that into another return.
    """
    with filmed(video) as wrap:
        first = video is not None

        def build() -> Any:
            nonlocal first
            film, first = first, False
            return wrap(make_env("rgb_array")) if film else make_env(None)

        pool = GymPool(build, workers=0)
        try:
            return play(pool)
        finally:
            pool.close()  # before the block ends: RecordVideo writes the file on close


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may use: the affinity mask (what SLURM and taskset set), capped by
    a cgroup CPU quota (what containers set; the mask then still lists every core of the host,
    and a pool sized to it oversubscribes the quota)."""
    affine = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup)
    return affine if quota is None else min(affine, quota)


def cgroup_cpu_quota(root: Path) -> int | None:
    """The CPU quota under `root` rounded up to whole cores: cgroup v2's cpu.max ("quota
    period"), else v1's cpu/cpu.cfs_quota_us and cpu.cfs_period_us; None when unlimited or
    unreadable."""
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


class GymPool:
    """Slots of gymnasium environments, stepped only where asked.

    `workers` processes each own the slots s with s % workers == their index and create their
    environments on first use; workers=0 steps every slot in this process (what SyncVectorEnv
    does), and so does workers=1: the parent waits for its one worker at every step, so a worker
    process would add only the pipe's round trip (HalfCheetah, 128 slots: 14–17% fewer steps a
    second). `make_env` must be picklable (a module-level function or a functools.partial of one).
    """

    def __init__(self, make_env: Callable[[], Any], workers: int) -> None:
        self.workers = workers
        self._local = _Shard(make_env) if workers <= 1 else None
        self._pipes: list[Any] = []
        self._procs: list[mp.process.BaseProcess] = []
        context = mp.get_context()
        for _ in range(workers if self._local is None else 0):
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, make_env), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        if self._local is not None:
            return self._local.reset(seeds)
        shards = range(min(self.workers, len(seeds)))
        parts = self._call({w: ("reset", seeds[w::self.workers]) for w in shards})
        out = np.empty((len(seeds), *parts[0].shape[1:]), dtype=parts[0].dtype)
        for w in shards:
            out[w::self.workers] = parts[w]
        return out

    def step(self, slots: np.ndarray, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._local is not None:
            return self._local.step(slots, actions)
        owner = slots % self.workers
        masks = {w: owner == w for w in range(self.workers) if (owner == w).any()}
        parts = self._call({w: ("step", slots[m] // self.workers, actions[m])
                            for w, m in masks.items()})
        obs_0 = next(iter(parts.values()))[0]
        obs = np.empty((len(slots), *obs_0.shape[1:]), dtype=obs_0.dtype)
        rewards, ended = np.empty(len(slots)), np.empty(len(slots), dtype=bool)
        for w, m in masks.items():
            obs[m], rewards[m], ended[m] = parts[w]
        return obs, rewards, ended

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        for pipe, proc in zip(self._pipes, self._procs):
            try:
                pipe.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._pipes, self._procs = [], []

    def __del__(self) -> None:
        self.close()

    def _call(self, messages: dict[int, tuple]) -> dict[int, Any]:
        """Send every worker its message first, then collect: the workers run in parallel."""
        for w, message in messages.items():
            self._pipes[w].send(message)
        replies = {w: self._pipes[w].recv() for w in messages}
        for status, payload in replies.values():
            if status == "error":
                raise RuntimeError(f"environment worker failed:\n{payload}")
        return {w: payload for w, (_, payload) in replies.items()}


class _Shard:
    """The environments of one worker; slot-local indices, created on first use."""

    def __init__(self, make_env: Callable[[], Any]) -> None:
        self.make_env = make_env
        self.envs: list[Any] = []

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        while len(self.envs) < len(seeds):
            self.envs.append(self.make_env())
        return np.stack([env.reset(seed=int(seed))[0] for env, seed in zip(self.envs, seeds)])

    def step(self, local: np.ndarray, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, ended = [], np.empty(len(local)), np.empty(len(local), dtype=bool)
        for k, (i, action) in enumerate(zip(local, actions)):
            o, rewards[k], terminated, truncated, _ = self.envs[i].step(action)
            obs.append(o)
            ended[k] = terminated or truncated
        return np.stack(obs), rewards, ended

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def _serve(pipe: Any, make_env: Callable[[], Any]) -> None:
    """A worker process: answer ("reset", seeds) / ("step", local, actions) until ("close",)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    shard = _Shard(make_env)
    try:
        while True:
            command, *args = pipe.recv()
            if command == "close":
                break
            try:
                pipe.send(("ok", getattr(shard, command)(*args)))
            except Exception:  # reported to the parent, which raises it with this traceback
                pipe.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        shard.close()
