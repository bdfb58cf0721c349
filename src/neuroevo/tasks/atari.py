"""Atari (ALE) with the paper's protocol (the authors' Jevo.jl, experiments/atari/).

The paper's `<Game>Deterministic-v4` → ResizeObservation(84, 84) → FrameStackObservation(4) is
rebuilt on ale_py's C++ vector environment (`AtariVectorEnv`, one thread per core) configured to
match: frameskip 4 returning the last frame (no max-pooling), no sticky actions, the minimal
action set, RGB (no grayscale), raw (unclipped) rewards, no FIRE or no-op on reset, no life-loss
episodes, and a resize with OpenCV's INTER_AREA, which is also what ResizeObservation uses (both
checked frame by frame against `ALE/<Game>-v5` + INTER_AREA: identical trajectories, pixels equal
up to ±1 rounding). Frames are stacked here, 4 RGB frames on the channel axis oldest first →
12×84×84, /255, a new episode's stack repeating its first frame as FrameStackObservation does.

Each episode starts with s−1 NOOP steps, s ~ U{1..noop_max} drawn from the episode's seed; after
that the action is the argmax of the logits (greedy). Episodes end at game over or after
`max_steps` agent steps (no-ops included); fitness = the raw score (mean over `episodes`).

The vector environment cannot step a subset of its environments, so a finished episode's slot is
stepped with NOOP (its results ignored, its steps not counted) until the longest episode ends; the
policy forward, the expensive part, skips it as the shared rollout does.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from ale_py import AtariVectorEnv

from neuroevo.config import RunConfig
from neuroevo.models.atari_cnn import atari_cnn
from neuroevo.sections.atari import ModelConfig, TaskConfig, rom_id
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.tasks import Evaluation
from neuroevo.tasks.rollout import (
    RolloutResult, RolloutSpec, available_cores, episode_seeds, filmed, mean_return, rollout)

__all__ = ["AtariTask", "AtariPool", "build"]

NOOP = 0  # index of NOOP in every minimal action set


class AtariPool:
    """`EnvPool` over one AtariVectorEnv with one slot per episode, or fewer (`restart`).

    Every episode starts with a reset seeded by its episode seed: an unseeded ALE reset draws the
    emulated console's power-on state (CPU registers, RAM) from a generator that advances with
    every reset of that environment, so an episode's game would depend on how many episodes its
    slot played before (a replay, a resumed run or another slot would play a different one). The
    seeded reset reloads the ROM (~90 ms an environment, spread over the pool's threads). Without
    sticky actions the episode is then fixed by its seed, its no-op count (drawn from the seed in
    `AtariTask.play`) and its actions. `shadow`, a gymnasium `ALE/<Game>-v5` environment (e.g.
    wrapped in RecordVideo) reset with slot 0's seed and fed slot 0's actions, replays slot 0's
    episode at full resolution for a video.
    """

    def __init__(self, game: str, resolution: int, threads: int, shadow: gym.Env | None = None
                 ) -> None:
        self.game, self.resolution, self.threads, self.shadow = game, resolution, threads, shadow
        self.env: AtariVectorEnv | None = None

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        if self.env is None or self.env.num_envs != len(seeds):
            self.close_vector()
            self.env = AtariVectorEnv(
                rom_id(self.game), len(seeds), num_threads=min(self.threads, len(seeds)),
                img_height=self.resolution, img_width=self.resolution, grayscale=False,
                stack_num=1, frameskip=4, maxpool=False, noop_max=0, use_fire_reset=False,
                episodic_life=False, reward_clipping=False, repeat_action_probability=0.0,
                full_action_space=False, autoreset_mode="SameStep")  # no reset left pending
                # after a game's end: a slot's next episode begins at its own seeded reset
        obs, info = self.env.reset(seed=np.asarray(seeds, dtype=np.int64))
        if self.shadow is not None:
            self.shadow.reset(seed=int(seeds[0]))
        return obs[np.argsort(info["env_id"])]                            # (n, 1, H, W, 3)

    def restart(self, slots: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Start one episode per seed in `slots` alone (seeded as `reset`) → their first
        frames."""
        mask = np.zeros(self.env.num_envs, dtype=bool)
        mask[slots] = True
        order = np.argsort(slots)                 # ALE takes one seed per reset env, in env order
        obs, info = self.env.reset(seed=np.asarray(seeds, dtype=np.int64)[order],
                                   options={"reset_mask": mask})
        return obs[np.argsort(info["env_id"])][slots]

    def step(self, slots: np.ndarray, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        full = np.full(self.env.num_envs, NOOP, dtype=np.int64)
        full[slots] = actions
        obs, rewards, terminated, truncated, info = self.env.step(full)
        row = np.empty(self.env.num_envs, dtype=np.int64)
        row[info["env_id"]] = np.arange(self.env.num_envs)                # env id → result row
        rows = row[slots]
        if self.shadow is not None and len(slots) and slots[0] == 0:
            self.shadow.step(int(actions[0]))
        return obs[rows], rewards[rows].astype(np.float64), (terminated | truncated)[rows]

    def close_vector(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def close(self) -> None:
        self.close_vector()
        if self.shadow is not None:
            self.shadow.close()


class AtariTask:
    """Scores a population of CNN players on one Atari game."""

    extra_columns: tuple[str, ...] = ("env_steps",)
    timing_columns: tuple[str, ...] = ()
    data_sha256: str | None = None  # the environment is the data

    def __init__(self, task: TaskConfig, model: ModelConfig, encoding: EncodingConfig, seed: int,
                 device: torch.device) -> None:
        self.config, self.seed, self.device = task, seed, device
        probe = AtariVectorEnv(rom_id(task.game), 1, num_threads=1)
        self.n_actions = int(probe.single_action_space.n)  # the minimal action set
        probe.close()
        self.model = atari_cnn(model, encoding, self.n_actions, task.frame_stack, task.resolution)
        self.layout = self.model.layout
        self.spec = RolloutSpec(max_steps=task.max_steps, frame_stack=task.frame_stack,
                                obs_scale=1 / 255, slots=task.slots)
        self.pool = AtariPool(task.game, task.resolution, task.threads or available_cores())

    def evaluate(self, theta: torch.Tensor, generation: int) -> Evaluation:
        return mean_return(self.play, theta, self.seed, generation, self.config.episodes)

    def summary(self) -> dict:
        cfg = self.config
        return {"env_id": f"ALE/{cfg.game}-v5 (as {cfg.game}Deterministic-v4), ale_py "
                          "AtariVectorEnv", "n_actions": self.n_actions,
                "preprocessing": f"frameskip 4 (last frame), RGB {cfg.resolution}×"
                                 f"{cfg.resolution} INTER_AREA, {cfg.frame_stack} frames stacked "
                                 "on channels (oldest first), /255, raw rewards, no sticky actions",
                "noop_max": cfg.noop_max, "max_steps": cfg.max_steps, "episodes": cfg.episodes,
                "threads": self.pool.threads,
                "fitness": "mean raw episode score; actions = argmax of the logits"}

    def replay(self, theta: torch.Tensor, generation: int, video: Path | None = None,
               individual: int = 0) -> float:
        """Play the `episodes` episodes of `individual` at `generation` again, together as
        `evaluate` did (their no-op starts, their scores), and return their mean: its logged
        fitness. Episode 0, slot 0's, is filmed at full resolution when `video` is set."""
        seeds = episode_seeds(self.seed, generation, [individual], range(self.config.episodes))
        with filmed(video) as wrap:
            shadow = None if video is None else wrap(gym.make(
                f"ALE/{self.config.game}-v5", render_mode="rgb_array", frameskip=4,
                repeat_action_probability=0.0, full_action_space=False))
            pool = AtariPool(self.config.game, self.config.resolution, 1, shadow)
            try:
                result = self.play(theta.to(self.device), seeds, pool)
            finally:
                pool.close()
        return float(result.returns.mean())

    def play(self, theta: torch.Tensor, seeds: np.ndarray, pool: AtariPool | None = None
             ) -> RolloutResult:
        """Play one episode per seed (P, E) for each of theta's P individuals; greedy actions
        after each episode's no-op start."""
        noops = no_op_steps(seeds.reshape(-1), self.config.noop_max)       # (P·E,) per slot

        def act(logits: torch.Tensor, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
            greedy = logits.argmax(dim=1).numpy()                          # (s,)
            return np.where(steps < noops[slots], NOOP, greedy)

        return rollout(self.model, theta, pool or self.pool, seeds, self.spec, self.preprocess,
                       act)

    @staticmethod
    def preprocess(raw: np.ndarray) -> torch.Tensor:
        """(n, 1, H, W, 3) uint8 from ALE → (n, 3, H, W) uint8."""
        return torch.from_numpy(raw[:, 0]).permute(0, 3, 1, 2)


def no_op_steps(seeds: np.ndarray, noop_max: int) -> np.ndarray:
    """s − 1 for s ~ U{1..noop_max} from each episode's seed: the NOOP steps it starts with."""
    return np.array([np.random.default_rng([int(seed), 1]).integers(1, noop_max + 1) - 1
                     for seed in seeds])


def build(config: RunConfig, device: torch.device) -> AtariTask:
    return AtariTask(config.task, config.model, config.encoding, config.seed, device)
