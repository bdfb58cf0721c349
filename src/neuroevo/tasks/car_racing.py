"""CarRacing-v3 with the paper's two-stage ("multi-wave") evaluation (the authors'
Jevo.jl, experiments/car-racing/).

Environment: `gym.make("CarRacing-v3")` (continuous, its registered 1000-step limit), every frame
resized 96×96 → 64×64 with OpenCV's INTER_AREA weights (what gymnasium's ResizeObservation calls;
computed here as two small matrix products, so OpenCV is not needed), 4 RGB frames stacked on the
channel axis oldest first (12×64×64), /255. The network's 3 raw outputs are the action (steer, gas,
brake): no tanh, no clamp. An episode also ends early once 21 consecutive step rewards are
negative (the reference's "after > 20 steps, the last 21 rewards all < 0").

Each generation: every individual plays `first_wave_episodes` (2); the `finalists` (32) with the
best first-wave sums play `second_wave_episodes` (4) more; the ranking handed to the GA is the
finalists by the sum of all their episodes, then everyone else by first-wave sum. Episode seeds
come from (run seed, generation, individual, episode); the reference drew unseeded random tracks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from neuroevo.config import ConfigError, RunConfig
from neuroevo.models.car_racing_cnn import car_racing_cnn
from neuroevo.sections.car_racing import RAW_SIZE, ModelConfig, TaskConfig
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.tasks import Evaluation
from neuroevo.tasks.rollout import (
    GymPool, RolloutResult, RolloutSpec, available_cores, episode_seeds, replay_in_process,
    rollout)

__all__ = ["CarRacingTask", "WaveSelection", "build", "select_finalists", "rank_two_waves"]

ENV_ID = "CarRacing-v3"


@dataclass
class WaveSelection:
    fitness: torch.Tensor  # (P,) mean episode return: all episodes for finalists, wave 1 otherwise
    order: torch.Tensor  # (P,) the ranking: finalists by total sum, then the rest by wave-1 sum
    columns: dict[str, float]  # first_wave_{mean,best}, second_wave_{mean,best}


def make_env(render_mode: str | None = None) -> gym.Env:
    """One CarRacing-v3 (module level, so worker processes can build it)."""
    return gym.make(ENV_ID, render_mode=render_mode)


class CarRacingTask:
    """Scores a population of CNN drivers with the two-wave evaluation."""

    extra_columns: tuple[str, ...] = ("env_steps", "first_wave_mean", "first_wave_best",
                                      "second_wave_mean", "second_wave_best")
    data_sha256: str | None = None  # the environment is the data
    # each wave's wall time: the paper compares them (better drivers end episodes later)
    timing_columns: tuple[str, ...] = ("first_wave_seconds", "second_wave_seconds")

    def __init__(self, task: TaskConfig, model: ModelConfig, encoding: EncodingConfig, seed: int,
                 elites: int, device: torch.device) -> None:
        self.config, self.seed, self.elites, self.device = task, seed, elites, device
        self.model = car_racing_cnn(model, encoding, task.frame_stack, task.resolution)
        self.layout = self.model.layout
        self.spec = RolloutSpec(max_steps=task.max_steps, frame_stack=task.frame_stack,
                                obs_scale=1 / 255, negative_streak=task.negative_streak)
        self.resize = area_weights(RAW_SIZE, task.resolution)             # (res, 96)
        self.workers = task.workers or available_cores()
        self._pool: GymPool | None = None

    @property
    def pool(self) -> GymPool:
        if self._pool is None:  # started on first use: building a task must stay cheap
            self._pool = GymPool(make_env, self.workers)
        return self._pool

    def evaluate(self, theta: torch.Tensor, generation: int) -> Evaluation:
        cfg, pop = self.config, theta.shape[0]
        first_episodes = range(cfg.first_wave_episodes)
        second_episodes = range(cfg.first_wave_episodes,
                                cfg.first_wave_episodes + cfg.second_wave_episodes)
        # wave 1: everyone plays the first episodes
        started = time.perf_counter()
        first = self.play(theta, episode_seeds(self.seed, generation, range(pop), first_episodes))
        first_sums = first.returns.sum(axis=1)                             # (P,)
        first_done = time.perf_counter()
        # wave 2: the finalists play more episodes (fresh seeds: their episode indices go on)
        finalists = select_finalists(first_sums, min(cfg.finalists, pop))
        index = torch.as_tensor(finalists, device=theta.device)
        second = self.play(theta.index_select(0, index),
                            episode_seeds(self.seed, generation, finalists, second_episodes))
        seconds = {"first_wave_seconds": first_done - started,
                   "second_wave_seconds": time.perf_counter() - first_done}
        total_sums = first_sums[finalists] + second.returns.sum(axis=1)    # (F,)
        waves = rank_two_waves(first_sums, finalists, total_sums, cfg.first_wave_episodes,
                               cfg.first_wave_episodes + cfg.second_wave_episodes, self.elites)
        return Evaluation(fitness=waves.fitness, order=waves.order,
                          columns={"env_steps": first.env_steps + second.env_steps,
                                   **waves.columns}, seconds=seconds)

    def summary(self) -> dict:
        cfg = self.config
        return {"env_id": ENV_ID, "workers": self.workers,
                "preprocessing": f"96×96 RGB → {cfg.resolution}×{cfg.resolution} INTER_AREA, "
                                 f"{cfg.frame_stack} frames stacked on channels (oldest first), "
                                 "/255; raw network outputs as actions",
                "max_steps": cfg.max_steps, "negative_streak": cfg.negative_streak,
                "waves": {"first_wave_episodes": cfg.first_wave_episodes,
                          "finalists": cfg.finalists,
                          "second_wave_episodes": cfg.second_wave_episodes},
                "fitness": "mean episode return (finalists: all waves; others: first wave); "
                           "ranking: finalists first by their total"}

    def replay(self, theta: torch.Tensor, generation: int, video: Path | None = None,
               individual: int = 0) -> float:
        """Play the episodes of both waves that `individual` played at `generation` as a
        finalist (same tracks, same early stop), each wave together as `evaluate` played it
        (see `replay_in_process`), and return their mean: a finalist's logged fitness, and so
        the elite's, which is always one. Episode 0 is filmed when `video` is set."""
        cfg, theta = self.config, theta.to(self.device)
        episodes = range(cfg.first_wave_episodes + cfg.second_wave_episodes)
        seeds = episode_seeds(self.seed, generation, [individual], episodes)   # (1, E)
        first_seeds, second_seeds = np.split(seeds, [cfg.first_wave_episodes], axis=1)
        first = replay_in_process(lambda pool: self.play(theta, first_seeds, pool), make_env,
                                  video)
        second = replay_in_process(lambda pool: self.play(theta, second_seeds, pool), make_env,
                                   None)
        return float(np.concatenate([first.returns, second.returns], axis=1).mean())

    def play(self, theta: torch.Tensor, seeds: np.ndarray, pool: GymPool | None = None
             ) -> RolloutResult:
        """Play one episode per seed (P, E) for each of theta's P individuals (early stop on)."""
        return rollout(self.model, theta, pool or self.pool, seeds, self.spec, self.preprocess,
                       _raw_actions)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """(n, 96, 96, 3) uint8 → (n, 3, res, res) uint8, INTER_AREA (see `area_weights`)."""
        pixels = torch.from_numpy(raw).float()                             # (n, 96, 96, 3)
        small = torch.einsum("ah,nhwc,bw->ncab", self.resize, pixels, self.resize)
        return small.round_().to(torch.uint8)                              # (n, 3, res, res)


def select_finalists(first_sums: np.ndarray, finalists: int) -> np.ndarray:
    """Indices of the `finalists` best first-wave sums, best first (ties: population order)."""
    return np.argsort(-first_sums, kind="stable")[:finalists]


def rank_two_waves(first_sums: np.ndarray, finalists: np.ndarray, total_sums: np.ndarray,
                   first_episodes: int, total_episodes: int, elites: int) -> WaveSelection:
    """The reference's two truncations as one ranking, with its FirstWave/SecondWave statistics.

    first_sums (P,) wave-1 sums of everyone; finalists (F,) their indices (from
    `select_finalists`); total_sums (F,) the finalists' sums over all episodes. The logged waves
    divide every sum by the total episode count (6), as the reference does: FirstWave over all P,
    SecondWave over the `elites` best finalists.
    """
    fitness = first_sums / first_episodes
    fitness[finalists] = total_sums / total_episodes
    by_total = np.argsort(-total_sums, kind="stable")
    by_first = np.argsort(-first_sums, kind="stable")
    rest = by_first[~np.isin(by_first, finalists)]
    order = np.concatenate([finalists[by_total], rest])
    first_logged = first_sums / total_episodes
    second_logged = total_sums[by_total[:elites]] / total_episodes
    return WaveSelection(
        fitness=torch.from_numpy(fitness), order=torch.from_numpy(order),
        columns={"first_wave_mean": float(first_logged.mean()),
                 "first_wave_best": float(first_logged.max()),
                 "second_wave_mean": float(second_logged.mean()),
                 "second_wave_best": float(second_logged.max())})


def area_weights(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) weights of OpenCV's INTER_AREA downscale along one axis.

    Output pixel o averages the input interval [o·s, (o+1)·s), s = size_in / size_out, each input
    pixel weighted by its overlap. For 96 → 64 the 2-D weights are ninths, so no average lands
    within float error of a .5 tie: summation order cannot flip a rounded pixel. (Checked against
    ale_py's OpenCV resize for Atari's 210×160 → 84, up to ±1 on ties; OpenCV is not installed.)
    """
    scale = size_in / size_out
    lo = torch.arange(size_out, dtype=torch.float64)[:, None] * scale      # (out, 1)
    pixel = torch.arange(size_in, dtype=torch.float64)[None, :]            # (1, in)
    overlap = (torch.minimum(lo + scale, pixel + 1) - torch.maximum(lo, pixel)).clamp_(min=0)
    return (overlap / scale).float()


def _raw_actions(outputs: torch.Tensor, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return outputs.numpy()                                         # (s, 3) steer, gas, brake


def build(config: RunConfig, device: torch.device) -> CarRacingTask:
    if not config.ga.elites <= config.task.finalists:
        raise ConfigError(f"task.finalists ({config.task.finalists}) must be at least ga.elites "
                          f"({config.ga.elites}): the elites are chosen among the finalists")
    return CarRacingTask(config.task, config.model, config.encoding, config.seed,
                         config.ga.elites, device)
