"""The committed presets' tables are what today's analysis code writes from their committed runs.

A committed preset keeps its aggregated runs (runs.csv, fitness_long.csv) and the tables drawn
from them, not its run directories. An edit to the statistics or the table layout that changed a
committed table would leave the README and paper/README.md quoting numbers the code no longer
gives; this rebuilds every committed preset's tables from its aggregates and compares them with
the committed csv files, value by value (to 1e-9 relative: another pandas or scipy may move the
last bits, or format the markdown differently, without changing a result).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from neuroevo.analysis import __main__ as analysis_cli
from neuroevo.analysis import tables

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(path.parent for path in REPO.glob("results/*/grid.json")
                   if (path.parent / "tables" / "runs.csv").exists())


def test_there_are_committed_presets() -> None:
    assert len(COMMITTED) >= 10, COMMITTED


@pytest.mark.parametrize("preset_dir", COMMITTED, ids=lambda path: path.name)
def test_committed_tables_are_what_the_analysis_writes_today(preset_dir: Path, tmp_path: Path) -> None:
    """The `tables` rule's own command, on the committed aggregates, into a scratch folder."""
    committed = preset_dir / "tables"
    assert analysis_cli.main(["tables", "--grid", str(preset_dir / "grid.json"),
                              "--runs", str(committed / "runs.csv"),
                              "--long", str(committed / "fitness_long.csv"),
                              "--out-dir", str(tmp_path)]) == 0
    for name in tables.TABLES:
        rebuilt, kept = (pd.read_csv(folder / f"{name}.csv") for folder in (tmp_path, committed))
        pd.testing.assert_frame_equal(rebuilt, kept, check_exact=False, rtol=1e-9,
                                      obj=f"{preset_dir.name}'s {name} table (redraw the preset's tables)")
