"""Atomic writes: a write that fails half-way leaves the previous file whole and no temporary
behind, for every kind of output the package writes (text, checkpoints, CSV logs, tables,
figures), and the analysis that writes through `neuroevo.atomic` still imports no torch."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import neuroevo.atomic
from neuroevo.analysis import tables
from neuroevo.atomic import atomic_torch_save, atomic_write_text, replacing
from neuroevo.logs import CsvLog


class Interrupted(Exception):
    """What a failure half-way through a write raises here."""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_text_write_interrupted_after_the_bytes_keeps_the_old_file(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The new bytes are on disk in the temporary file when fsync fails: the target still holds
    the old text, and the temporary is gone."""
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old\n")

    def failing_fsync(fd: int) -> None:
        raise Interrupted("disk gone")

    monkeypatch.setattr(neuroevo.atomic.os, "fsync", failing_fsync)
    with pytest.raises(Interrupted):
        atomic_write_text(path, "new and longer\n")
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_rename_interrupted_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    """A KeyboardInterrupt at the rename (the last step) leaves the old file and no temporary."""
    path = tmp_path / "fitness.csv"
    atomic_write_text(path, "generation,best\n1,0.5\n")

    def interrupted_replace(src, dst) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(neuroevo.atomic.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "generation,best\n1,0.5\n2,0.7\n")
    assert path.read_text() == "generation,best\n1,0.5\n"
    assert _leftovers(tmp_path) == []


def test_checkpoint_save_failing_half_way_keeps_the_previous_checkpoint(tmp_path: Path,
                                                                        monkeypatch) -> None:
    """torch.save that dies after writing part of its bytes: the old checkpoint still loads."""
    path = tmp_path / "checkpoint" / "state.pt"
    atomic_torch_save({"generation": 3}, path)
    save = torch.save

    def half_save(obj, handle) -> None:
        save(obj, handle)
        handle.truncate(handle.tell() // 2)
        raise Interrupted("killed mid-write")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(Interrupted):
        atomic_torch_save({"generation": 4}, path)
    assert torch.load(path) == {"generation": 3}
    assert _leftovers(path.parent) == []


def test_a_checkpoint_is_on_disk_before_it_is_renamed_in(tmp_path: Path, monkeypatch) -> None:
    """The checkpoint's bytes are fsynced before the rename, as the text files' are: after a
    power loss a renamed-in checkpoint is whole, or --resume would fail to load it."""
    path = tmp_path / "state.pt"
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(neuroevo.atomic.os, "fsync",
                        lambda fd: events.append(("fsync", os.fstat(fd).st_size)) or fsync(fd))
    monkeypatch.setattr(neuroevo.atomic.os, "replace",
                        lambda src, dst: events.append(("replace", dst)) or replace(src, dst))
    atomic_torch_save({"generation": 3}, path)
    assert [e[0] for e in events] == ["fsync", "replace"] and events[0][1] > 0
    assert torch.load(path) == {"generation": 3}


def test_csv_log_append_failing_keeps_the_rows_written_before(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A generation whose row cannot be written leaves fitness.csv as it was after the last one."""
    log = CsvLog(tmp_path / "fitness.csv", ("generation", "best"))
    log.append({"generation": 1, "best": 0.25})
    before = log.path.read_bytes()
    monkeypatch.setattr(neuroevo.atomic.os, "replace",
                        lambda src, dst: (_ for _ in ()).throw(Interrupted("full disk")))
    with pytest.raises(Interrupted):
        log.append({"generation": 2, "best": 0.5})
    assert log.path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_a_table_and_a_figure_that_fail_leave_nothing_half_written(tmp_path: Path) -> None:
    """Writers that pick their format from the file name get the target's suffix, and an error
    in the writer (here matplotlib's) leaves neither the target nor a temporary."""
    import matplotlib.pyplot as plt

    paths = tables.write(pd.DataFrame({"variant": ["dense"], "mean": [1.5]}), tmp_path / "final")
    assert [p.name for p in paths] == ["final.csv", "final.md", "final.tex"]
    assert pd.read_csv(paths[0])["mean"].tolist() == [1.5]
    fig = plt.figure()
    with replacing(tmp_path / "fig.pdf") as tmp:
        assert tmp.suffix == ".pdf"
        fig.savefig(tmp)
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError), replacing(tmp_path / "broken.png") as tmp:
        fig.savefig(tmp, format="no-such-format")
    plt.close(fig)
    assert not (tmp_path / "broken.png").exists()
    assert _leftovers(tmp_path) == []


def test_written_files_get_the_umask_permissions_not_mkstemps(tmp_path: Path) -> None:
    """mkstemp creates 0600 files; results are shared, so they get 0666 minus the umask."""
    path = tmp_path / "elite.json"
    atomic_write_text(path, "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_analysis_imports_no_torch() -> None:
    """Its conda env (envs/analysis.yaml) has no torch: importing every analysis module, which
    write through neuroevo.atomic, must not pull it in."""
    code = ("import sys, neuroevo.analysis.__main__; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
