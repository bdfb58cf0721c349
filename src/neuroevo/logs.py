"""The run directory: the one interface between the engine and the workflow.

    fitness.csv   one row per generation, deterministic (same config + seed ⇒ same bytes)
    timing.csv    eval_seconds, wall_seconds per generation (kept apart so fitness.csv is exact)
    elite.json    the best individual of the latest generation as its seed chain
    summary.json  written last: its presence means the run finished
    checkpoint/   what --resume needs

Every file is written whole to a temporary name and renamed into place, so a killed run never
leaves a half-written file; rows are rewritten each generation (a few hundred lines at most).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FITNESS_COLUMNS = ("generation", "best", "mean", "median", "std", "worst", "elite_mean", "mr_mean",
                   "evaluations")
TIMING_COLUMNS = ("generation", "eval_seconds", "wall_seconds")
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A temporary file in path's folder (so the rename is atomic), readable like a normal file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
    return fd, tmp


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
