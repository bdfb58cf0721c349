"""The commit a run records: the checkout's HEAD, marked when result-shaping files differ."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from neuroevo.provenance import CHECKOUT, source_revision


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A one-commit repository laid out like ours: src/, configs/, results/."""
    for name in ("src/engine.py", "configs/task.yaml", "results/table.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return tmp_path


def test_a_clean_checkout_gives_its_head(checkout: Path) -> None:
    assert source_revision(checkout) == _git(checkout, "rev-parse", "HEAD")


@pytest.mark.parametrize("edited", ["src/engine.py", "configs/task.yaml"])
def test_an_edited_engine_or_config_is_marked(checkout: Path, edited: str) -> None:
    (checkout / edited).write_text("2\n")
    assert source_revision(checkout) == _git(checkout, "rev-parse", "HEAD") + "+modified"


def test_regenerated_results_and_new_files_are_not_modifications(checkout: Path) -> None:
    """The workflow rewrites committed tables and creates run directories while it runs."""
    (checkout / "results/table.csv").write_text("2\n")
    (checkout / "src/new_module.py").write_text("untracked\n")
    assert source_revision(checkout) == _git(checkout, "rev-parse", "HEAD")


def test_a_status_git_cannot_give_is_not_called_clean(checkout: Path, monkeypatch) -> None:
    """`git status` failing (a timeout, an unsafe directory) marks the commit +unknown, not
    clean: the files may differ from it."""
    import neuroevo.provenance

    real = neuroevo.provenance._git
    monkeypatch.setattr(neuroevo.provenance, "_git",
                        lambda repo, *args: None if args[0] == "status" else real(repo, *args))
    assert source_revision(checkout) == _git(checkout, "rev-parse", "HEAD") + "+unknown"


def test_outside_a_checkout_there_is_no_commit(tmp_path: Path) -> None:
    """An installed package (or a directory inside another repository) records none."""
    assert source_revision(tmp_path) is None


def test_this_checkout_is_recognised() -> None:
    if not (CHECKOUT / ".git").exists():
        pytest.skip("tests run from an unpacked source tree, not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(\+modified)?", source_revision() or "")
