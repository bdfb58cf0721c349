"""Find, load and validate engine run directories (the one interface between engine and workflow).

A run directory `results/<preset>/runs/<task>/<variant>/seed<k>/` holds `fitness.csv` (one row per
generation, deterministic), `timing.csv` (wall-clock, kept apart so fitness stays bit-identical),
`elite.json` and `summary.json` (written last: its presence means the run finished). Anything that
breaks the contract fails here with one line naming the file, never later inside a plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..logs import FITNESS_COLUMNS, NAN_STATISTICS, TIMING_COLUMNS  # the engine's side

SUMMARY_KEYS = ("encoding", "seed", "params", "final", "wall_seconds")
PARAM_KEYS = ("network", "genome", "searched")


class RunDirError(ValueError):
    """A run directory breaks the engine contract; the message is one line naming the file."""


@dataclass(frozen=True)
class Run:
    """One finished run: its summary and its per-generation tables."""

    path: Path
    summary: dict[str, Any]
    fitness: pd.DataFrame
    timing: pd.DataFrame


def run_dir(runs_root: str | Path, task: str, variant: str, seed: int) -> Path:
    """Where the workflow puts the run of (task, variant, seed) under `results/<preset>/runs`."""
    return Path(runs_root) / task / variant / f"seed{seed}"


def load_run(path: str | Path, seed: int | None = None) -> Run:
    """Load and validate one run directory; `seed`, if given, must match summary.json's."""
    path = Path(path)
    summary = read_summary(path / "summary.json")
    if seed is not None and summary["seed"] != seed:
        raise RunDirError(f"{path / 'summary.json'}: seed {summary['seed']} but the directory says seed{seed}")
    fitness = read_table(path / "fitness.csv", FITNESS_COLUMNS, may_be_nan=NAN_STATISTICS)
    timing = read_table(path / "timing.csv", TIMING_COLUMNS)
    last, final = len(fitness), summary["final"].get("generation", len(fitness))
    if last != final:  # a log cut short, or one another run's summary sits beside
        raise RunDirError(f"{path / 'fitness.csv'}: ends at generation {last}, but summary.json's "
                          f"final generation is {final}")
    if list(timing["generation"]) != list(fitness["generation"]):
        raise RunDirError(f"{path / 'timing.csv'}: generations differ from fitness.csv")
    return Run(path=path, summary=summary, fitness=fitness, timing=timing)


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json with the keys the analysis uses; params must be integers."""
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (the run has not finished)") from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    missing += [f"params.{k}" for k in PARAM_KEYS if k not in summary.get("params", {})]
    if missing:
        raise RunDirError(f"{path}: missing key(s) {', '.join(missing)}")
    bad = [k for k in PARAM_KEYS if not isinstance(summary["params"][k], int)]
    if bad:
        raise RunDirError(f"{path}: params.{bad[0]} is not an integer")
    return summary


def read_table(path: Path, required: tuple[str, ...],
               may_be_nan: tuple[str, ...] = ()) -> pd.DataFrame:
    """A per-generation CSV: required columns present, all values numeric (NaN only in
    `may_be_nan`: the engine writes it there for a diverged individual), generations 1..G."""
    table = read_csv(path, required)
    if table.empty:
        raise RunDirError(f"{path}: no generations (header only)")
    for column in table.columns:
        numeric = pd.to_numeric(table[column], errors="coerce")
        bad = numeric.isna() & table[column].notna()
        if bad.any():
            row = int(bad.idxmax())
            raise RunDirError(
                f"{path}: non-numeric value {table[column].iloc[row]!r} in column {column!r} (data row {row + 1})"
            )
        table[column] = numeric.astype(float)
    empty = [c for c in required if c not in may_be_nan and table[c].isna().any()]
    if empty:
        raise RunDirError(f"{path}: empty or NaN value(s) in column {empty[0]!r}")
    generations = table["generation"].tolist()
    if generations != list(range(1, len(table) + 1)):
        raise RunDirError(f"{path}: generations must run 1..{len(table)} without gaps")
    table["generation"] = table["generation"].astype(int)
    return table


def read_seed_tables(paths: list[Path], required: tuple[str, ...]) -> pd.DataFrame:
    """CSV files laid out like run directories (`<root>/<task>/<variant>/seed<k>/<file>.csv`, as
    the analyses beyond the paper write them) concatenated, with task, variant and seed in front."""
    if not paths:
        raise RunDirError("no input files given")
    frames = []
    for path in map(Path, paths):
        seed_dir = path.parent
        if not seed_dir.name.startswith("seed") or not seed_dir.name[4:].isdigit():
            raise RunDirError(f"{path}: expected <task>/<variant>/seed<k>/{path.name}")
        frame = read_csv(path, required)
        frame.insert(0, "task", seed_dir.parent.parent.name)
        frame.insert(1, "variant", seed_dir.parent.name)
        frame.insert(2, "seed", int(seed_dir.name[4:]))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A CSV with the required columns, or a one-line error naming the file."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except pd.errors.EmptyDataError:
        raise RunDirError(f"{path}: empty (no header)") from None
    except pd.errors.ParserError as err:
        raise RunDirError(f"{path}: unreadable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RunDirError(f"{path}: missing column(s) {', '.join(missing)}")
    return table
