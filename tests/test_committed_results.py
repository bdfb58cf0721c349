"""The committed presets' tables are what today's analysis code writes from their committed runs.

A committed preset keeps its aggregated runs (runs.csv, fitness_long.csv) and the tables drawn
from them, not its run directories. An edit to the statistics or the table layout that changed a
committed table would leave the README and paper/README.md quoting numbers the code no longer
gives; this rebuilds every committed preset's tables from its aggregates and compares them byte
for byte (csv at full precision, and the markdown and LaTeX the reports embed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroevo.analysis import __main__ as analysis_cli
from neuroevo.analysis import tables

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(path.parent for path in REPO.glob("results/*/grid.json")
                   if (path.parent / "tables" / "runs.csv").exists())


def test_there_are_committed_presets() -> None:
    assert len(COMMITTED) >= 10, COMMITTED


@pytest.mark.parametrize("preset_dir", COMMITTED, ids=lambda path: path.name)
def test_committed_tables_are_rebuilt_byte_for_byte(preset_dir: Path, tmp_path: Path) -> None:
    """The `tables` rule's own command, on the committed aggregates, into a scratch folder."""
    committed = preset_dir / "tables"
    assert analysis_cli.main(["tables", "--grid", str(preset_dir / "grid.json"),
                              "--runs", str(committed / "runs.csv"),
                              "--long", str(committed / "fitness_long.csv"),
                              "--out-dir", str(tmp_path)]) == 0
    for name in tables.TABLES:
        for ext in ("csv", "md", "tex"):
            rebuilt = tmp_path / f"{name}.{ext}"
            assert rebuilt.read_bytes() == (committed / rebuilt.name).read_bytes(), \
                f"{preset_dir.name}: {rebuilt.name} differs from the committed table (redraw the preset's tables)"
