"""MuJoCo continuous control (gymnasium v5 environments): an extension beyond the paper.

The same Deep GA and encodings on a tanh MLP (`models/mlp.py`): each individual plays `episodes`
episodes per generation from seeds derived from (run seed, generation, individual, episode);
fitness = mean episode return (the sum of the environment's own rewards). Episodes end when the
environment terminates (e.g. Hopper falls) or after `max_steps` steps.

Kept simple on purpose: no observation normalisation (ES papers normalise with running statistics,
which would make a genome's behaviour depend on the history of the run) and no action noise.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch

from neuroevo.config import RunConfig
from neuroevo.models.mlp import MLPPolicy
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.mujoco import ModelConfig, TaskConfig
from neuroevo.tasks import Evaluation
from neuroevo.tasks.rollout import (
    GymPool, RolloutResult, RolloutSpec, available_cores, episode_seeds, mean_return,
    replay_in_process, rollout)

__all__ = ["MujocoTask", "build"]


def make_env(env_id: str, max_steps: int, render_mode: str | None = None) -> gym.Env:
    """One environment with the task's step cap (module level, so worker processes can build it)."""
    mujoco.set_mju_user_warning(_warn_once)
    return gym.make(env_id, max_episode_steps=max_steps, render_mode=render_mode)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """MuJoCo's compiler repeats a deprecation warning (HalfCheetah's `settotalmass`) for every
    environment built: hundreds of identical lines per run. Print each distinct one once."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"MuJoCo warning: {message}", file=sys.stderr)


class MujocoTask:
    """Scores a population of MLP policies on one MuJoCo environment."""

    extra_columns: tuple[str, ...] = ("env_steps",)
    timing_columns: tuple[str, ...] = ()
    data_sha256: str | None = None  # the environment is the data

    def __init__(self, task: TaskConfig, model: ModelConfig, encoding: EncodingConfig, seed: int,
                 device: torch.device) -> None:
        self.config, self.seed, self.device = task, seed, device
        probe = make_env(task.env_id, task.max_steps)
        self.obs_dim = int(probe.observation_space.shape[0])
        low, high = probe.action_space.low, probe.action_space.high
        probe.close()
        self.model = MLPPolicy(model, encoding, self.obs_dim, torch.as_tensor(low),
                               torch.as_tensor(high))
        self.layout = self.model.layout
        # one torch thread: the MLP forward takes microseconds, and idle OpenMP threads spin on
        # the cores the environment workers need (HalfCheetah, 2 cores: 17k → 30k steps/s)
        self.spec = RolloutSpec(max_steps=task.max_steps, forward_threads=1)
        self.workers = task.workers or available_cores()
        self._pool: GymPool | None = None

    @property
    def pool(self) -> GymPool:
        if self._pool is None:  # started on first use: building a task must stay cheap
            self._pool = GymPool(partial(make_env, self.config.env_id, self.config.max_steps),
                                 self.workers)
        return self._pool

    def evaluate(self, theta: torch.Tensor, generation: int) -> Evaluation:
        return mean_return(self.play, theta, self.seed, generation, self.config.episodes)

    def summary(self) -> dict:
        return {"env_id": self.config.env_id, "obs_dim": self.obs_dim,
                "act_dim": int(self.model.center.numel()), "episodes": self.config.episodes,
                "max_steps": self.config.max_steps, "workers": self.workers,
                "preprocessing": "raw observations (no normalisation); tanh actions rescaled "
                                 "to the action bounds",
                "fitness": "mean episode return over `episodes` seeded episodes"}

    def replay(self, theta: torch.Tensor, generation: int, video: Path | None = None,
               individual: int = 0) -> float:
        """Play the `episodes` episodes of `individual` at `generation` again, together as
        `evaluate` did (their seeds; see `replay_in_process`), and return their mean: the
        fitness the log holds for that individual. Episode 0 is filmed when `video` is set."""
        theta = theta.to(self.device)
        seeds = episode_seeds(self.seed, generation, [individual], range(self.config.episodes))
        if video is not None:
            os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless told otherwise
        result = replay_in_process(lambda pool: self.play(theta, seeds, pool),
                                   partial(make_env, self.config.env_id, self.config.max_steps),
                                   video)
        return float(result.returns.mean())

    def play(self, theta: torch.Tensor, seeds: np.ndarray, pool: GymPool | None = None
             ) -> RolloutResult:
        """Play one episode per seed (P, E) for each of theta's P individuals."""
        return rollout(self.model, theta, pool or self.pool, seeds, self.spec, self.preprocess,
                       _actions)

    @staticmethod
    def preprocess(raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(raw).float()                               # (n, obs_dim)


def _actions(outputs: torch.Tensor, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return outputs.numpy()                                                 # (s, act_dim), in bounds


def build(config: RunConfig, device: torch.device) -> MujocoTask:
    return MujocoTask(config.task, config.model, config.encoding, config.seed, device)
