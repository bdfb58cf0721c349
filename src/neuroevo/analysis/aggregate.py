"""Gather every run of a preset's grid into two long tables, the inputs of all tables and figures.

`fitness_long.csv` has one row per (run, generation): the grid's identity columns (task, variant,
encoding, rank, seed) followed by every fitness.csv and timing.csv column (task-specific ones such as
`env_steps` or CarRacing's wave columns are empty for other tasks). `runs.csv` has one row per run:
the encoding scheme, parameter counts, the final numbers of summary.json and the task's compared
score at the last generation (`final_score`, the value the paper's tests use); for CarRacing also
each evaluation stage's mean score and wall time at the last generation (`STAGE_COLUMNS`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .grid import Grid, Task, Variant
from .runs import Run, RunDirError, load_run, run_dir

ID_COLUMNS = ["task", "variant", "encoding", "rank", "seed"]
# runs.csv column → the fitness.csv or timing.csv column it takes at the last generation
STAGE_COLUMNS = {
    "first_stage_score": "first_wave_mean",  # the population's mean episode return, wave 1
    "second_stage_score": "second_wave_mean",  # the elites' mean over all their episodes
    "first_stage_seconds": "first_wave_seconds",
    "second_stage_seconds": "second_wave_seconds",
}


def aggregate(grid: Grid, runs_root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load every (task, variant, seed) of the grid from `runs_root`: (fitness_long, runs)."""
    long_parts, rows = [], []
    for task in grid.tasks:
        for variant in task.variants:
            for seed in task.seeds:
                run = load_run(run_dir(runs_root, task.name, variant.name, seed), seed=seed)
                if task.series not in run.fitness.columns:
                    raise RunDirError(f"{run.path / 'fitness.csv'}: missing column {task.series!r} (the task's series)")
                long_parts.append(_long(task, variant, run))
                rows.append(_row(task, variant, run))
    long = pd.concat(long_parts, ignore_index=True)
    runs = pd.DataFrame(rows)
    _check_one_final_generation(runs)
    for table in (long, runs):
        table["rank"] = table["rank"].astype("Int64")  # nullable: dense and small have no rank
    return long, runs


def _check_one_final_generation(runs: pd.DataFrame) -> None:
    """The tests compare a task's runs at their last generation: runs of one task that end at
    different generations (a config edited between seeds) would compare unlike with unlike."""
    for task, finals in runs.groupby("task")["final_generation"]:
        if finals.nunique() > 1:
            ends = ", ".join(map(str, sorted(finals.unique())))
            raise RunDirError(f"runs of task {task!r} end at different generations ({ends}): "
                              "rerun them with one ga.generations")


def _long(task: Task, variant: Variant, run: Run) -> pd.DataFrame:
    """One run's generations with identity columns in front and timing columns joined on."""
    frame = run.fitness.merge(run.timing, on="generation", how="left", suffixes=("", "_timing"))
    ids = _ids(task, variant, run)
    for position, column in enumerate(ID_COLUMNS):
        frame.insert(position, column, ids[column])
    return frame


def _row(task: Task, variant: Variant, run: Run) -> dict[str, object]:
    """One run's summary numbers, flattened."""
    params, final = run.summary["params"], run.summary["final"]
    return {
        **_ids(task, variant, run),
        "scheme": _scheme(run.summary),
        "engine_preset": run.summary.get("preset"),
        "data": _data(run.summary.get("task_details", {})),
        "device": run.summary.get("device"),
        "finished_utc": run.summary.get("finished_utc"),
        "versions": json.dumps(run.summary.get("versions", {}), sort_keys=True),
        "settings": _settings(run.summary),
        "params_network": params["network"],
        "params_genome": params["genome"],
        "params_searched": params["searched"],
        "final_generation": int(run.fitness["generation"].iloc[-1]),  # = summary's (load_run)
        "final_best": final.get("best"),
        "final_elite_mean": final.get("elite_mean"),
        "final_score": float(run.fitness[task.series].iloc[-1]),
        "eval_seconds_mean": float(run.timing["eval_seconds"].mean()),
        "wall_seconds": run.summary["wall_seconds"],
        **_stages(run),
    }


def _settings(summary: dict) -> str | None:
    """The GA and task sections the run was loaded with, defaults filled in (summary.json's
    config), as JSON: what the report compares with the paper. None where the summary lacks
    them."""
    config = summary.get("config") or {}
    if not config.get("ga") or not config.get("task"):
        return None
    return json.dumps({"ga": config["ga"], "task": config["task"]}, sort_keys=True)


def _data(details: dict) -> str | None:
    """A language run's corpus, and its tokenizer file when it used one (`task.tokenizer`)
    instead of training the BPE; None for the RL runs."""
    tokenizer = details.get("tokenizer", "trained")
    if tokenizer == "trained" or details.get("text") is None:
        return details.get("text")
    return f"{details['text']} (tokenizer {tokenizer})"


def _stages(run: Run) -> dict[str, float]:
    """A two-wave run's last-generation stage columns (none for other runs). The logged wave-1
    mean divides 2-episode sums by all 6 episodes, as the reference logs it; its figure script
    multiplies by 3 to get a mean episode return, and so does this."""
    last = {**run.fitness.iloc[-1].to_dict(), **run.timing.iloc[-1].to_dict()}
    if not all(column in last for column in STAGE_COLUMNS.values()):
        return {}
    waves = run.summary["config"]["task"]
    episodes = waves["first_wave_episodes"] + waves["second_wave_episodes"]
    values = {name: float(last[column]) for name, column in STAGE_COLUMNS.items()}
    values["first_stage_score"] *= episodes / waves["first_wave_episodes"]
    return values


def _ids(task: Task, variant: Variant, run: Run) -> dict[str, object]:
    return {
        "task": task.name,
        "variant": variant.name,
        "encoding": run.summary["encoding"],
        "rank": variant.rank,
        "seed": int(run.summary["seed"]),
    }


def _scheme(summary: dict) -> str:
    """The encoding with its sparse selection (`sparse-random`, `sparse-magnitude`): the analyses
    beyond the paper tell the two sparse schemes apart."""
    if summary["encoding"] != "sparse":
        return summary["encoding"]
    return f"sparse-{summary['config']['encoding']['sparse_selection']}"
