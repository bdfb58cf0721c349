"""RL tasks: environments played by the policies, reproducible rollouts, the two-wave selection,
CarRacing's early stop and one-line config errors. Episodes are capped at a few dozen steps."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroevo.config import ConfigError, load_config
from neuroevo.genome import initial_weights
from neuroevo.tasks import task_module
# imports ale_py: the real emulator is required, so a broken install fails here, loudly (no skip)
from neuroevo.tasks.atari import no_op_steps
from neuroevo.tasks.car_racing import area_weights, rank_two_waves, select_finalists
from neuroevo.tasks.rollout import GymPool, available_cores, cgroup_cpu_quota, episode_seeds

CPU = torch.device("cpu")


def _task(config: str, *overrides: str):
    cfg = load_config(config, overrides=overrides)
    return task_module(cfg.task.name).build(cfg, CPU), cfg


def _population(task, pop: int) -> torch.Tensor:
    return initial_weights(task.layout, list(range(pop)), CPU)


@pytest.mark.parametrize("game,n_actions", [("frostbite", 18), ("asteroids", 14),
                                            ("gravitar", 18), ("kangaroo", 18)])
def test_atari_game_is_played_by_the_policy(game: str, n_actions: int) -> None:
    """Each of the paper's four games runs its minimal action set under the batched CNN."""
    task, _ = _task(f"configs/atari/{game}/small.yaml", "ga.population=2", "ga.elites=1",
                    "task.max_steps=20")
    evaluation = task.evaluate(_population(task, 2), generation=1)
    assert task.n_actions == n_actions
    assert evaluation.fitness.shape == (2,)
    assert evaluation.columns == {"env_steps": 40}  # no game ends within 20 steps


def test_atari_actions_are_the_policy_argmax_after_the_no_op_start() -> None:
    """Every step sends each slot NOOP during its no-op start and then the argmax of its logits:
    recorded from the model's outputs and the pool's step calls of one real Frostbite rollout."""
    task, _ = _task("configs/atari/frostbite/small.yaml", "ga.population=2", "ga.elites=1",
                    "task.max_steps=40", "task.noop_max=8")
    outputs: list[torch.Tensor] = []
    sent: list[tuple[np.ndarray, np.ndarray]] = []
    forward, step = task.model.forward, task.pool.step

    def recording_forward(params, obs):
        out = forward(params, obs)
        outputs.append(out.reshape(-1, out.shape[-1]).detach().clone())
        return out

    def recording_step(slots, actions):
        sent.append((slots.copy(), np.asarray(actions).copy()))
        return step(slots, actions)

    task.model.forward, task.pool.step = recording_forward, recording_step
    seeds = episode_seeds(0, 1, [0, 1], [0])
    task.play(_population(task, 2), seeds)
    noops = no_op_steps(seeds.reshape(-1), 8)
    assert len(outputs) == len(sent) == 40  # no Frostbite episode ends within 40 steps
    greedy_steps = 0
    for t, (logits, (slots, actions)) in enumerate(zip(outputs, sent)):
        expected = np.where(t < noops[slots], 0, logits[slots].argmax(dim=1).numpy())
        np.testing.assert_array_equal(actions, expected)
        greedy_steps += int((t >= noops[slots]).sum())
    assert greedy_steps >= 2 * (40 - 8)


@pytest.mark.parametrize("game", ["frostbite", "asteroids"])
def test_the_vector_env_steps_as_gymnasiums_ale_v5(game: str) -> None:
    """The C++ vector environment configured as the paper's protocol (`AtariPool`: frameskip 4
    returning the last frame, no sticky actions, the minimal action set, raw rewards) gives
    gymnasium's `ALE/<Game>-v5` configured alike the same rewards and episode end, step for step
    over seeded random actions, and the same frames area-resized to 84×84 within ±1 (rounding):
    what atari.py's docstring and the README claim."""
    from neuroevo.tasks.atari import AtariPool

    pool = AtariPool(game, 84, threads=1)
    env = gym.make(f"ALE/{game.title()}-v5", frameskip=4, repeat_action_probability=0.0,
                   full_action_space=False)
    rows, cols = area_weights(210, 84).double(), area_weights(160, 84).double()

    def resized(frame: np.ndarray) -> np.ndarray:
        return torch.einsum("oh,hwc,pw->opc", rows, torch.from_numpy(frame).double(),
                            cols).round().numpy()

    try:
        frame = pool.reset(np.array([0]))[0, 0]
        reference, _ = env.reset(seed=0)
        assert np.abs(frame.astype(int) - resized(reference)).max() <= 1
        actions = np.random.default_rng(0).integers(env.action_space.n, size=3000)
        for step, action in enumerate(actions):
            obs, rewards, done = pool.step(np.array([0]), np.array([action]))
            reference, reward, terminated, truncated, _ = env.step(int(action))
            assert rewards[0] == reward, step
            assert bool(done[0]) == (terminated or truncated), step
            if done[0]:  # its frame is the next episode's (the rollout never reads it)
                break
            assert np.abs(obs[0, 0].astype(int) - resized(reference)).max() <= 1, step
        assert done[0], "3,000 random actions did not end the episode: lengthen the test"
    finally:
        pool.close()
        env.close()


def test_car_racing_is_played_by_the_policy_in_two_waves() -> None:
    """CarRacing-v3 runs both waves under the paper's CNN and logs the wave columns."""
    task, _ = _task("configs/car_racing/dense.yaml", "ga.population=2", "ga.elites=1",
                    "task.finalists=1", "task.first_wave_episodes=1",
                    "task.second_wave_episodes=1", "task.max_steps=12", "task.workers=1")
    evaluation = task.evaluate(_population(task, 2), generation=1)
    assert set(evaluation.columns) == set(task.extra_columns)
    # 2 first-wave episodes + 1 second-wave, all capped (the early stop needs 21 steps)
    assert evaluation.columns["env_steps"] == 3 * 12
    assert sorted(evaluation.order.tolist()) == [0, 1]
    assert set(evaluation.seconds) == set(task.timing_columns)  # each wave's wall time
    assert all(np.isfinite(seconds) and seconds >= 0 for seconds in evaluation.seconds.values())


def test_mujoco_env_is_played_by_the_policy() -> None:
    """A MuJoCo v5 environment runs under the batched MLP; Hopper may fall before the cap."""
    task, _ = _task("configs/mujoco/hopper/factorized.yaml", "ga.population=3", "ga.elites=1",
                    "task.max_steps=30", "task.workers=1")
    evaluation = task.evaluate(_population(task, 3), generation=1)
    assert evaluation.fitness.shape == (3,) and torch.isfinite(evaluation.fitness).all()
    assert 3 <= evaluation.columns["env_steps"] <= 90


@pytest.mark.parametrize("config,overrides", [
    ("configs/mujoco/halfcheetah/dense.yaml", ("task.max_steps=40", "task.workers=2")),
    ("configs/atari/asteroids/small.yaml", ("task.max_steps=60",)),
])
def test_rollout_with_fixed_seed_gives_the_same_returns(config: str, overrides: tuple) -> None:
    """A generation replays the same episodes (even after others ran); another one does not."""
    task, _ = _task(config, "ga.population=4", "ga.elites=1", *overrides)
    theta = _population(task, 4)
    first = task.evaluate(theta, generation=1)
    other = task.evaluate(theta, generation=2)
    again = task.evaluate(theta, generation=1)
    assert torch.equal(first.fitness, again.fitness)
    assert first.columns == again.columns
    assert not torch.equal(first.fitness, other.fitness)


def test_replay_reproduces_an_individuals_evaluated_fitness() -> None:
    """Replaying individual i at generation g alone scores what the batched evaluation gave it.
    Asteroids scores within 60 steps (Kangaroo's 80 scored 0 for everyone, so a replay of the
    wrong individual's or generation's episode matched too), and the three scores differ."""
    task, _ = _task("configs/atari/asteroids/small.yaml", "ga.population=3", "ga.elites=1",
                    "task.max_steps=60")
    theta = _population(task, 3)
    fitness = task.evaluate(theta, generation=5).fitness
    assert len(set(fitness.tolist())) == 3  # else another individual's score could match
    replayed = [task.replay(theta[i:i + 1], 5, individual=i) for i in range(3)]
    assert replayed == fitness.tolist()


def test_car_racing_replay_scores_a_finalist_on_both_waves() -> None:
    """The first-ranked individual (the elite) is a finalist: replaying it plays its first- and
    second-wave episodes again and gives the fitness the evaluation logged for it."""
    task, _ = _task("configs/car_racing/small.yaml", "ga.population=3", "ga.elites=1",
                    "task.finalists=2", "task.first_wave_episodes=1",
                    "task.second_wave_episodes=2", "task.max_steps=30", "task.workers=0")
    theta = _population(task, 3)
    evaluation = task.evaluate(theta, generation=4)
    best = int(evaluation.order[0])
    replayed = task.replay(theta[best:best + 1], 4, individual=best)
    assert replayed == pytest.approx(float(evaluation.fitness[best]), rel=1e-9, abs=1e-9)


def test_replay_films_the_episode_it_scores(tmp_path) -> None:
    """With --video, replay writes an mp4 of the episode and still returns the same score."""
    pytest.importorskip("moviepy")
    task, _ = _task("configs/atari/frostbite/small.yaml", "ga.population=1", "ga.elites=1",
                    "task.max_steps=30")
    theta = _population(task, 1)
    video = tmp_path / "elite.mp4"
    assert task.replay(theta, 1, video=video) == task.replay(theta, 1)
    assert video.stat().st_size > 1000


def test_two_wave_selection_ranks_finalists_by_all_their_episodes() -> None:
    """Finalists come first by their 6-episode sum, the rest by wave-1 sum; fitness is a mean."""
    first = np.array([10.0, 50.0, 30.0, 40.0, 20.0, 0.0])                 # 2-episode sums
    finalists = select_finalists(first, 3)
    assert finalists.tolist() == [1, 3, 2]
    total = np.array([60.0, 120.0, 90.0])                     # 6-episode sums of 1, 3, 2
    waves = rank_two_waves(first, finalists, total, first_episodes=2, total_episodes=6, elites=2)
    assert waves.order.tolist() == [3, 2, 1, 4, 0, 5]
    assert waves.fitness.tolist() == [5.0, 10.0, 15.0, 20.0, 10.0, 0.0]
    assert waves.columns == pytest.approx({
        "first_wave_mean": 150 / 6 / 6, "first_wave_best": 50 / 6,   # the reference's /6 for all
        "second_wave_mean": (20 + 15) / 2, "second_wave_best": 20.0})  # the 2 elites


def test_finalist_ties_keep_population_order() -> None:
    """Equal wave-1 sums are broken by population index, so the selection is reproducible."""
    assert select_finalists(np.array([1.0, 3.0, 3.0, 1.0, 3.0]), 4).tolist() == [1, 2, 4, 0]


def test_early_stop_ends_a_car_racing_episode_after_21_negative_rewards() -> None:
    """A car that never moves earns one positive reward (the tile it starts on) and then −0.1 a
    step, so the paper's rule (21 negative rewards in a row) ends the episode at exactly step 22,
    far before the step cap; a streak of 22 would end it one step later."""
    task, cfg = _task("configs/car_racing/small.yaml", "ga.elites=1", "task.max_steps=200",
                      "task.workers=0")
    assert cfg.task.negative_streak == 21
    still = torch.zeros(1, task.layout.dim)  # every output 0: no steering, gas or brake
    result = task.play(still, episode_seeds(0, 1, [0], [0]))
    assert int(result.lengths[0, 0]) == 22
    longer, _ = _task("configs/car_racing/small.yaml", "ga.elites=1", "task.max_steps=200",
                      "task.workers=0", "task.negative_streak=22")
    assert int(longer.play(still, episode_seeds(0, 1, [0], [0])).lengths[0, 0]) == 23


@pytest.mark.parametrize("key,value,fragment", [
    ("task.env_id", "Cheetah-v9", "unknown MuJoCo env 'Cheetah-v9' in task.env_id (valid: Ant-v5"),
    ("task.game", "Pacmann", "unknown Atari game 'Pacmann' in task.game (valid: Adventure"),
])
def test_unknown_environment_is_a_one_line_config_error(key: str, value: str,
                                                         fragment: str) -> None:
    """A misspelt environment stops at config time with one line listing the valid choices, the
    key named once (not under a second `task:` prefix)."""
    config = ("configs/mujoco/hopper/dense.yaml" if "env_id" in key
              else "configs/atari/frostbite/dense.yaml")
    with pytest.raises(ConfigError) as error:
        load_config(config, overrides=[f"{key}={value}"])
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(f"{config}: unknown ")


def test_a_mujoco_config_without_an_env_id_is_refused() -> None:
    """The MuJoCo environment has no default: a config copied to a new folder that misses one
    `task.env_id` would otherwise run HalfCheetah under the new task's name."""
    with pytest.raises(ConfigError, match=r"configs/mujoco/_base.yaml: task.env_id is not set: "
                                          r"name the MuJoCo environment \(valid: Ant-v5"):
        load_config("configs/mujoco/_base.yaml")


def test_area_resize_weights_average_the_covered_pixels() -> None:
    """INTER_AREA weights: an integer factor is a box average; 96 → 64 mixes 2 pixels per row."""
    torch.testing.assert_close(area_weights(6, 3), torch.tensor([
        [0.5, 0.5, 0, 0, 0, 0], [0, 0, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 0.5, 0.5]]))
    weights = area_weights(96, 64)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(64))
    assert weights[0].tolist()[:3] == pytest.approx([2 / 3, 1 / 3, 0])
    assert int((weights > 0).sum(dim=1).max()) == 2


class _CountingEnv(gym.Env):
    """Observation = steps taken (the seed after a reset); reward = the action; ends at step 3."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,))
    action_space = gym.spaces.Box(-1.0, 1.0, (1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.array([seed], dtype=np.float64), {}

    def step(self, action):
        self.steps += 1
        obs = np.array([self.steps], dtype=np.float64)
        return obs, float(action[0]), self.steps >= 3, False, {}


@pytest.mark.parametrize("workers, processes", [(2, 2), (1, 0), (0, 0)])
def test_gym_pool_steps_only_the_slots_it_is_sent(workers: int, processes: int) -> None:
    """Slots spread over worker processes advance only when stepped, and come back in order; one
    worker steps in this process (a process of its own would only add the pipe's round trip)."""
    before = len(multiprocessing.active_children())
    pool = GymPool(_CountingEnv, workers=workers)
    try:
        assert len(multiprocessing.active_children()) - before == processes
        assert pool.reset(np.array([10, 11, 12, 13])).ravel().tolist() == [10, 11, 12, 13]
        pool.step(np.array([1, 2]), np.zeros((2, 1)))
        pool.step(np.array([2]), np.zeros((1, 1)))
        actions = np.array([[0.1], [0.2], [0.3], [0.4]])
        obs, rewards, ended = pool.step(np.array([0, 1, 2, 3]), actions)
        assert obs.ravel().tolist() == [1, 2, 3, 1]
        assert rewards.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
        assert ended.tolist() == [False, False, True, False]
    finally:
        pool.close()


@pytest.mark.parametrize("files, cores", [
    ({"cpu.max": "150000 100000\n"}, 2),                      # cgroup v2: 1.5 CPUs → 2 workers
    ({"cpu.max": "max 100000\n"}, None),                      # v2, no quota
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
    ({}, None),                                                # no cgroup files
])
def test_environment_pools_respect_a_container_cpu_quota(tmp_path: Path, files: dict[str, str],
                                                         cores: int | None) -> None:
    """A CPU quota caps the default pool size below the affinity mask (a container's mask lists
    every core of the host); without one the mask decides."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == cores
    affine = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path) == (affine if cores is None else min(affine, cores))


def test_episode_seeds_are_a_pure_function_of_run_generation_individual_episode() -> None:
    """Seeds repeat for the same coordinates and differ when any coordinate changes."""
    seeds = episode_seeds(7, 3, range(4), range(2))
    assert np.array_equal(seeds, episode_seeds(7, 3, range(4), range(2)))
    assert np.array_equal(seeds[2:3, 1:], episode_seeds(7, 3, [2], [1]))
    assert len({*seeds.ravel(), *episode_seeds(7, 4, range(4), range(2)).ravel(),
                *episode_seeds(8, 3, range(4), range(2)).ravel()}) == 24


def test_no_op_starts_cover_zero_to_noop_max_minus_one() -> None:
    """Each episode starts with s−1 NOOPs, s ~ U{1..noop_max}: 0..29 for the paper's 30."""
    counts = no_op_steps(np.arange(3000), noop_max=30)
    assert counts.min() == 0 and counts.max() == 29 and len(np.unique(counts)) == 30
    assert not no_op_steps(np.arange(10), noop_max=1).any()


@pytest.mark.parametrize("config, pool_key", [("configs/mujoco/hopper/dense.yaml", "task.workers"),
                                              ("configs/car_racing/dense.yaml", "task.workers"),
                                              ("configs/atari/frostbite/dense.yaml", "task.threads")])
def test_pool_size_is_left_out_of_the_config_digest(config: str, pool_key: str) -> None:
    """A job given other cores (its pool sized to them) still resumes its own run: the pool size
    does not enter the digest that a checkpoint is matched by; a setting that changes results does."""
    one, two = (load_config(config, overrides=[f"{pool_key}={n}"]) for n in (1, 2))
    assert one.digest() == two.digest()
    assert load_config(config, overrides=["task.max_steps=99"]).digest() != one.digest()


class _CountingPool:
    """An environment pool without an emulator: a slot's frame is (its seed, its step count);
    each step rewards +1 (even seeds) or −1 (odd seeds); an episode ends after 3 + seed % 7
    steps. Everything `rollout` must get right is then known in closed form."""

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.seeds, self.t = seeds.astype(np.int64), np.zeros(len(seeds), dtype=np.int64)
        return np.stack([self.seeds, self.t], axis=1).astype(np.float32)

    def step(self, slots: np.ndarray, actions: np.ndarray):
        self.t[slots] += 1
        seeds = self.seeds[slots]
        rewards = np.where(seeds % 2 == 0, 1.0, -1.0)
        ended = self.t[slots] >= 3 + seeds % 7
        return np.stack([seeds, self.t[slots]], axis=1).astype(np.float32), rewards, ended

    def close(self) -> None:
        pass


class _RecordingPolicy:
    """Records the observation batches the rollout shows it; acts with zeros."""

    def __init__(self) -> None:
        from neuroevo.encoding import ParamLayout
        from neuroevo.layers import Linear

        self.layout = ParamLayout()
        Linear(self.layout, "w", 2, 1)
        self.seen: list[torch.Tensor] = []

    def forward(self, p, obs: torch.Tensor) -> torch.Tensor:
        self.seen.append(obs.clone())
        return torch.zeros(*obs.shape[:2], 1)


def _expected_episode(seed: int, max_steps: int, streak: int) -> tuple[float, int]:
    length = min(3 + seed % 7, max_steps, streak if seed % 2 else max_steps)
    return (1.0 if seed % 2 == 0 else -1.0) * length, length


def test_rollout_plays_every_episode_to_its_own_end_with_frames_oldest_first() -> None:
    """The lockstep loop: episodes of different lengths each end at their own step (their end,
    the step cap or the negative streak), returns include the last reward, every live stack
    holds its last three frames oldest first (the first frame repeated at the start), the
    forward batch shrinks as individuals finish, and each individual scores what it scores
    alone."""
    from neuroevo.tasks.rollout import RolloutSpec, rollout

    seeds = np.array([[2, 9], [4, 6], [11, 13], [8, 1], [0, 5], [3, 10]])
    spec = RolloutSpec(max_steps=7, frame_stack=3, negative_streak=4)
    policy = _RecordingPolicy()
    theta = torch.zeros(len(seeds), policy.layout.dim)

    def act(outputs, slots, steps):
        return np.zeros(len(slots))

    def preprocess(raw):
        return torch.from_numpy(raw)

    result = rollout(policy, theta, _CountingPool(), seeds, spec, preprocess, act)
    expected = [[_expected_episode(int(s), 7, 4) for s in row] for row in seeds]
    assert result.returns.tolist() == [[r for r, _ in row] for row in expected]
    assert result.lengths.tolist() == [[n for _, n in row] for row in expected]
    assert result.env_steps == sum(n for row in expected for _, n in row)
    for step, obs in enumerate(policy.seen):
        frames = obs.reshape(-1, 3, 2)                                     # (B·E, K, frame)
        for seed, steps in zip(frames[:, 0, 0].tolist(), frames[:, :, 1].tolist()):
            if step < _expected_episode(int(seed), 7, 4)[1]:  # a slot still playing
                assert steps == [max(0, step - 2), max(0, step - 1), step]
    batch_sizes = [obs.shape[0] for obs in policy.seen]
    assert batch_sizes[0] == len(seeds) and batch_sizes[-1] < len(seeds)
    for i in range(len(seeds)):
        alone = rollout(_RecordingPolicy(), theta[i:i + 1], _CountingPool(), seeds[i:i + 1], spec,
                        preprocess, act)
        assert alone.returns.tolist() == result.returns[i:i + 1].tolist()


def test_workers_flag_sizes_the_pool_without_changing_the_run(tmp_path) -> None:
    """`--workers N` sets an RL task's pool size (task.workers; Atari's task.threads, not its
    task.slots), which the digest leaves out; for the language task, which has no pool, it
    changes nothing."""
    import argparse

    from neuroevo.cli import _load

    def loaded(config: str, workers: int | None):
        return _load(argparse.Namespace(config=Path(config), preset=None, overrides=[],
                                        device=None, workers=workers))

    mujoco = loaded("configs/mujoco/hopper/dense.yaml", 3)
    atari = loaded("configs/atari/frostbite/dense.yaml", 3)
    assert mujoco.task.workers == 3 and atari.task.threads == 3
    # Atari's slots (a queue over fewer environments) are a way of playing, not a pool size:
    # --workers leaves them as configured (0, one per episode)
    assert atari.task.slots == loaded("configs/atari/frostbite/dense.yaml", None).task.slots == 0
    assert mujoco.digest() == loaded("configs/mujoco/hopper/dense.yaml", None).digest()
    language = loaded("configs/tinystories/dense.yaml", 3)
    assert language == loaded("configs/tinystories/dense.yaml", None)


def test_runs_written_before_the_identity_fields_are_still_recognised() -> None:
    """A summary or checkpoint from before pool sizes left the digest is the same run; a
    language run's older summary is matched by its text hash, and an older checkpoint without
    any hash counts as other data (the workflow then runs it again)."""
    import types

    from neuroevo.run import _written_by

    rl = load_config("configs/mujoco/hopper/dense.yaml", overrides=["task.workers=2"])
    no_data = types.SimpleNamespace(data_sha256=None)
    assert _written_by({"config_digest": rl.digest(exclude_execution=False)}, rl, no_data)
    assert _written_by({"config_digest": rl.digest()}, rl, no_data)
    other = load_config("configs/mujoco/hopper/dense.yaml", overrides=["task.max_steps=9"])
    assert not _written_by({"config_digest": other.digest()}, rl, no_data)
    lm = load_config("configs/tinystories/dense.yaml")
    text = types.SimpleNamespace(data_sha256="abc")
    assert _written_by({"config_digest": lm.digest(), "task_details": {"text_sha256": "abc"}},
                       lm, text)
    assert not _written_by({"config_digest": lm.digest()}, lm, text)
    assert not _written_by({"config_digest": lm.digest(), "data_sha256": "xyz"}, lm, text)


@pytest.mark.parametrize("config, key, value, fragment", [
    ("configs/mujoco/hopper/dense.yaml", "task.episodes", 0, "task.episodes must be ≥ 1, got 0"),
    ("configs/mujoco/hopper/dense.yaml", "task.max_steps", 0, "task.max_steps must be ≥ 1"),
    ("configs/mujoco/hopper/dense.yaml", "task.workers", -1, "task.workers must be ≥ 0"),
    ("configs/atari/frostbite/dense.yaml", "task.episodes", 0, "task.episodes must be ≥ 1"),
    ("configs/atari/frostbite/dense.yaml", "task.max_steps", -5, "task.max_steps must be ≥ 1"),
    ("configs/atari/frostbite/dense.yaml", "task.threads", -1, "task.threads must be ≥ 0"),
    ("configs/car_racing/dense.yaml", "task.finalists", 0, "task.finalists must be ≥ 1"),
    ("configs/car_racing/dense.yaml", "task.max_steps", 0, "task.max_steps must be ≥ 1"),
    ("configs/car_racing/dense.yaml", "task.negative_streak", -1, "task.negative_streak must"),
    ("configs/car_racing/dense.yaml", "task.workers", -2, "task.workers must be ≥ 0 (0 = one per"),
])
def test_rl_counts_that_would_fail_mid_run_are_one_line_config_errors(
        config: str, key: str, value: int, fragment: str) -> None:
    """Episode counts, step caps and pool sizes that would crash the first rollout (a pool of
    −1 workers: KeyError 0) stop at config time with one line naming the key."""
    with pytest.raises(ConfigError) as error:
        load_config(config, overrides=[f"{key}={value}"])
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_negative_workers_flag_fails_in_one_line_before_the_run_dir(tmp_path, capsys) -> None:
    """`--workers -1` goes through the TaskConfig's own checks: exit 2, one line, no run dir."""
    from neuroevo.cli import main

    out = tmp_path / "never"
    assert main(["run", "configs/mujoco/hopper/small.yaml", "--workers", "-1", "--out", str(out),
                 "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--workers -1: task.workers must be ≥ 0" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_replay_video_without_moviepy_fails_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    """`replay --video` where moviepy is missing says what to install, in one line, and writes
    no video."""
    import sys

    from neuroevo.cli import main
    from neuroevo.genome import Genome, save_genome

    config = load_config("configs/atari/frostbite/small.yaml",
                         overrides=["ga.population=1", "ga.elites=1", "task.max_steps=5"])
    elite, video = tmp_path / "elite.json", tmp_path / "elite.mp4"
    save_genome(elite, Genome(0), fitness=0.0, generation=1, config=config.to_dict())
    monkeypatch.setitem(sys.modules, "moviepy", None)  # `import moviepy` now fails
    assert main(["replay", str(elite), "--device", "cpu", "--video", str(video)]) == 2
    error = capsys.readouterr().err.strip()
    assert 'recording a video needs moviepy: pip install -e ".[video]"' in error
    assert len(error.splitlines()) == 1 and not video.exists()


@pytest.mark.parametrize("config,overrides", [
    ("configs/mujoco/halfcheetah/small.yaml", ("task.max_steps=30", "task.workers=1")),
    ("configs/atari/asteroids/small.yaml", ("task.max_steps=60",)),
])
def test_replay_with_several_episodes_scores_their_mean(config: str, overrides: tuple) -> None:
    """With task.episodes = 2 the evaluated fitness is the mean of two episodes, and replaying an
    individual plays both of them again (not only the first): it scores that same mean."""
    task, _ = _task(config, "ga.population=2", "ga.elites=1", "task.episodes=2", *overrides)
    theta = _population(task, 2)
    returns = task.play(theta, episode_seeds(0, 3, range(2), range(2))).returns  # (P, E)
    assert (returns[:, 0] != returns[:, 1]).any()  # else episode 0 alone would match the mean
    fitness = task.evaluate(theta, generation=3).fitness
    replayed = [task.replay(theta[i:i + 1], 3, individual=i) for i in range(2)]
    assert replayed == pytest.approx(fitness.tolist(), rel=1e-9, abs=1e-9)


def test_replay_of_a_run_with_several_episodes_matches_its_log(tmp_path, capsys) -> None:
    """`neuroevo replay` of the elite of a MuJoCo run with task.episodes = 2 reproduces the
    logged fitness (exit 0): HalfCheetah's return moves with the last bit of an action, so this
    also pins that the replay's forwards have the evaluation's shapes."""
    from neuroevo.cli import main

    out = tmp_path / "run"
    sets = ["ga.population=8", "ga.elites=2", "ga.generations=2", "task.max_steps=50",
            "task.episodes=2", "device=cpu"]
    assert main(["run", "configs/mujoco/halfcheetah/dense.yaml", "--preset", "quick",
                 *(arg for item in sets for arg in ("--set", item)), "--out", str(out),
                 "--quiet"]) == 0
    assert main(["replay", str(out / "elite.json"), "--device", "cpu"]) == 0
    assert "matches the logged" in capsys.readouterr().out


def test_a_filmed_replay_films_and_renders_only_slot_0(monkeypatch) -> None:
    """A replay plays all of an individual's episodes in one pool; with a video, only the first
    environment built (slot 0's, episode 0) is rendered and filmed, the others play plain."""
    from contextlib import contextmanager

    from neuroevo.tasks import rollout as rollout_module

    filmed_envs, render_modes = [], []

    @contextmanager
    def recording_filmed(video):
        yield lambda env: filmed_envs.append(env) or env

    def make_env(render_mode):
        render_modes.append(render_mode)
        return _CountingEnv()

    monkeypatch.setattr(rollout_module, "filmed", recording_filmed)
    first = rollout_module.replay_in_process(lambda pool: pool.reset(np.array([4, 5, 6])),
                                             make_env, Path("replay.mp4"))
    assert first.ravel().tolist() == [4, 5, 6]
    assert render_modes == ["rgb_array", None, None] and len(filmed_envs) == 1


def test_a_video_copy_that_fails_midway_leaves_no_partial_mp4(tmp_path, monkeypatch) -> None:
    """The clip goes from the scratch folder (often another file system, where a move is a copy)
    into a temporary beside the video, renamed in only once whole: a copy that fails halfway
    leaves neither a partial video nor the temporary."""
    import errno
    import importlib.machinery
    import shutil
    import sys
    import types

    import gymnasium.wrappers

    from neuroevo.tasks.rollout import filmed

    moviepy = types.ModuleType("moviepy")
    moviepy.__spec__ = importlib.machinery.ModuleSpec("moviepy", None)
    monkeypatch.setitem(sys.modules, "moviepy", moviepy)  # present, as far as the check sees

    def fake_record_video(env, folder, name_prefix, episode_trigger):
        Path(folder).mkdir()
        (Path(folder) / f"{name_prefix}-episode-0.mp4").write_bytes(b"frame" * 1000)
        return env

    def cross_device_rename(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def half_copy(src, dst, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:2500])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gymnasium.wrappers, "RecordVideo", fake_record_video)
    monkeypatch.setattr(os, "rename", cross_device_rename)
    monkeypatch.setattr(shutil, "copyfile", half_copy)
    video = tmp_path / "videos" / "elite.mp4"
    with pytest.raises(OSError, match="No space left"):
        with filmed(video) as wrap:
            wrap(_CountingEnv())
    assert not video.exists() and list(video.parent.iterdir()) == []


@pytest.mark.parametrize("config, key, value, fragment", [
    ("configs/atari/frostbite/dense.yaml", "task.frame_stack", 0, "task.frame_stack must be ≥ 1"),
    ("configs/car_racing/dense.yaml", "task.frame_stack", 0, "task.frame_stack must be ≥ 1"),
    ("configs/atari/frostbite/dense.yaml", "task.resolution", 20,
     "task.resolution must be ≥ 36 (the convolutions' smallest input), got 20"),
    ("configs/car_racing/dense.yaml", "task.resolution", 8,
     "task.resolution must be between 46 (the convolutions' smallest input) and 96"),
])
def test_frames_the_network_cannot_take_are_one_line_errors(capsys, config: str, key: str,
                                                           value: int, fragment: str) -> None:
    """No stacked frame, or frames smaller than the convolutions reduce to one pixel, stop the
    CLI at config time: exit 2 and one `error:` line naming the key and its least value (not a
    ZeroDivisionError or the CNN's traceback)."""
    from neuroevo.cli import main

    assert main(["describe", config, "--preset", "quick", "--set", f"{key}={value}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert fragment in error


def _atari_game(pool, slots: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step `slots` of an AtariPool through `actions` (steps × slots); the rewards and frames."""
    rewards, frames = [], []
    for row in actions:
        frame, reward, _ = pool.step(slots, row)
        rewards.append(reward)
        frames.append(frame)
    return np.array(rewards), np.array(frames)


def test_an_atari_episode_is_the_same_game_however_many_its_slot_played_before() -> None:
    """An episode's game depends on its seed alone: played on a fresh pool, on one whose slots
    were reset several times before (an unseeded ALE reset draws the console's power-on state
    from a generator that advances with every reset: Frostbite's third reset in a row played a
    different game from step ~440 of these random actions), and restarted on its own
    (`restart`, a recycling rollout's slot reuse), it gives the same rewards and frames."""
    from neuroevo.tasks.atari import AtariPool
    actions = np.random.default_rng(0).integers(0, 18, size=(500, 2))
    seeds = np.array([11, 12])
    slots = np.arange(2)
    fresh = AtariPool("Frostbite", 84, 1)
    fresh.reset(seeds)
    reference = _atari_game(fresh, slots, actions)
    fresh.close()
    pool = AtariPool("Frostbite", 84, 1)
    for _ in range(2):
        pool.reset(seeds)
        _atari_game(pool, slots, actions[:20])
    pool.reset(seeds)  # the slots' third reset
    again = _atari_game(pool, slots, actions)
    pool.restart(np.array([1]), seeds[1:])
    alone = _atari_game(pool, np.array([1]), actions[:, 1:])
    pool.close()
    for game in (again, alone):
        width = game[0].shape[1]
        assert np.array_equal(game[0], reference[0][:, -width:])
        assert np.array_equal(game[1], reference[1][:, -width:])
    assert reference[0].sum() > 0  # the actions score: a game that moved


def test_recycled_slots_play_every_atari_episode_as_one_slot_each_does() -> None:
    """task.slots fewer than the episodes: the slots play them as a queue (a slot starts the
    next waiting episode when its own ends) and every episode's return and length equal the
    one-slot-per-episode rollout's; the pool holds task.slots environments."""
    task, _ = _task("configs/atari/frostbite/small.yaml", "ga.population=6", "ga.elites=1",
                    "task.max_steps=300", "task.episodes=2", "task.threads=1")
    theta = _population(task, 6)
    seeds = episode_seeds(3, 1, range(6), range(2))
    lockstep = task.play(theta, seeds)
    task.spec = dataclasses.replace(task.spec, slots=5)
    recycled = task.play(theta, seeds)
    assert task.pool.env.num_envs == 5
    assert np.array_equal(recycled.returns, lockstep.returns)
    assert np.array_equal(recycled.lengths, lockstep.lengths)
    assert len(np.unique(lockstep.lengths)) > 1 and lockstep.returns.any()
