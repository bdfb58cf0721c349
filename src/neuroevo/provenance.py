"""Which source a run came from: the git commit of the checkout, for its summary and the report.

Package versions do not pin results while the code is developed at one version number; the
commit does. A run records it at start, with `+modified` when the files that shape results
(the engine, the configs, the shipped data) differ from that commit. Regenerated tables, figures
and run directories under results/ do not count: the workflow rewrites those while it runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# the package lives at <checkout>/src/neuroevo/ in an editable install
CHECKOUT = Path(__file__).resolve().parents[2]
RESULT_SHAPING_PATHS = ("src", "configs", "data")


def source_revision(checkout: Path = CHECKOUT) -> str | None:
    """The checkout's commit (40 hex digits), `+modified` when tracked files under src/,
    configs/ or data/ differ from it, `+unknown` when git could not tell; None outside a git checkout (an installed wheel) or
    without git."""
    commit = _git(checkout, "rev-parse", "HEAD")
    if commit is None:
        return None
    changed = _git(checkout, "status", "--porcelain", "--untracked-files=no", "--",
                   *RESULT_SHAPING_PATHS)
    if changed is None:  # status failed (timeout, an unsafe directory): not known clean
        return f"{commit}+unknown"
    return f"{commit}+modified" if changed else commit


def _git(checkout: Path, *args: str) -> str | None:
    """A git command's stripped output, or None where it fails (no repository, no git)."""
    if not (checkout / ".git").exists():  # don't let git find a repository further up
        return None
    try:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()
