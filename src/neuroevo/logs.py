"""The run directory: the one interface between the engine and the workflow.

    fitness.csv   one row per generation, deterministic (same config + seed ⇒ same bytes)
    timing.csv    eval_seconds, wall_seconds per generation (kept apart so fitness.csv is exact)
    elite.json    the best individual of the latest generation as its seed chain
    summary.json  written last: its presence means the run finished
    checkpoint/   what --resume needs

Every file is written whole to a temporary name and renamed into place (`neuroevo.atomic`), so a
killed run never leaves a half-written file; rows are rewritten each generation (a few hundred
lines at most).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from neuroevo.atomic import atomic_write_text

FITNESS_COLUMNS = ("generation", "best", "mean", "median", "std", "worst", "elite_mean", "mr_mean",
                   "evaluations")
TIMING_COLUMNS = ("generation", "eval_seconds", "wall_seconds")
# fitness.csv's statistics that are NaN in a generation with a diverged individual (NaN fitness;
# `best` and `worst` count it as −inf, as the ranking does): readers must accept NaN in these
NAN_STATISTICS = ("mean", "median", "std")


def progress_interval() -> float:
    """Seconds between progress-bar refreshes: tqdm's 0.1 on a terminal; 30 when stderr is a
    file (a Snakemake job's log), which would otherwise keep every refresh of an hours-long
    run."""
    return 0.1 if sys.stderr.isatty() else 30.0


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class CsvLog:
    """A per-generation table kept in memory and rewritten atomically after each new row."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path, self.columns = Path(path), columns
        self.rows: list[dict[str, Any]] = []

    def load_until(self, generation: int) -> None:
        """Resume: keep the rows of generations before `generation` (later ones will be redone)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            self.rows = [row for row in csv.DictReader(handle)
                         if int(row["generation"]) < generation]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({column: _format(row[column]) for column in self.columns})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def _format(value: Any) -> str:
    # repr of a float round-trips exactly, so the CSV holds the full-precision value
    return repr(float(value)) if isinstance(value, float) else str(value)
