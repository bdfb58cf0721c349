"""One look for every figure: seaborn "paper" theme, the colourblind palette the paper's scripts use,
the paper's legend names, a fixed colour per variant, and a preset stamp in the corner.

Colours follow a task's variant order in the grid (dense, factorized, small, smaller rank, …), so
the same condition has the same colour in every figure of that task.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (also under SLURM)

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import seaborn as sns  # noqa: E402

from ..atomic import replacing  # noqa: E402
from .grid import Task, Variant  # noqa: E402

# Legend names of the paper's figures (tinystories/plot.py), keyed by the grid's variant names.
PAPER_LABELS = {
    "dense": "No Factorization",
    "factorized-r4": "Low-Rank Factorization (Larger Rank)",
    "factorized": "Low-Rank Factorization",
    "small": "No Factorization (Small)",
    "factorized-r1": "Low-Rank Factorization (Smaller Rank)",
}
FIGSIZE = (5.0, 4.0)  # inches, as the paper's tinystories/plot.py
LEGEND_INSIDE_MAX = 4  # entries a legend may have inside the axes (the paper's figures have four)
LEGEND_ROW = 0.17  # inches a legend entry takes at fontsize 7: what a legend below the axes adds
TICK_LABEL_CHARS = 40  # a variant's name on an axis wraps past this (the paper's longest has 37)
PANEL_TITLE_CHARS = 44  # a panel's title wraps past this (a 3 in panel at fontsize 8)


def apply() -> None:
    """Set the theme once per process; every figure function calls it."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"savefig.bbox": "tight", "savefig.dpi": 200, "pdf.fonttype": 42})


def label(variant: Variant) -> str:
    """The legend name: the grid's explicit label, else the paper's, else the rank or the name."""
    if variant.label:
        return variant.label
    if variant.name in PAPER_LABELS:
        return PAPER_LABELS[variant.name]
    if variant.rank is not None:
        return f"Low-Rank Factorization (Rank {variant.rank})"
    return variant.name


def palette(task: Task) -> dict[str, tuple[float, float, float]]:
    """Variant name → colour: the colourblind palette in the task's variant order, the variants
    its main figures draw (`figure_variants`) first, so the paper's conditions keep the paper's
    colours however long the sweeps are; past its 10 colours the rest are spread around husl."""
    drawn = [v.name for v in task.variants if v.name in task.figure_variants]
    names = drawn + [v.name for v in task.variants if v.name not in drawn]
    colours = sns.color_palette("colorblind", n_colors=10)[:len(names)]
    if len(names) > len(colours):
        colours += sns.color_palette("husl", n_colors=len(names) - len(colours))
    return dict(zip(names, colours))


def labels(task: Task) -> dict[str, str]:
    """Variant name → legend name for one task."""
    return {v.name: label(v) for v in task.variants}


def wrapped(text: str, width: int) -> str:
    """`text` on lines of at most `width` characters, broken at spaces: an ablation's label
    ("…, embedding started at the factorized scale") is twice the paper's longest and would run
    into its neighbours on an axis or over a panel."""
    return textwrap.fill(text, width, break_long_words=False)


def legend(ax: plt.Axes) -> None:
    """The axes' legend: inside, where matplotlib finds room, for up to `LEGEND_INSIDE_MAX`
    entries (the paper's look); for more, below the axes in a figure grown by its height, since
    a legend of six long ablation labels fills a third of a 5 × 4 in axes and no place inside
    leaves every curve visible."""
    entries = len(ax.get_legend_handles_labels()[0])
    if entries <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize=7)
        return
    fig = ax.figure
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + LEGEND_ROW * entries)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


def stamp(fig: plt.Figure, preset: str) -> None:
    """Write the preset in the lower-right corner so a quick figure is never taken for the paper's.

    It goes just below the laid-out figure (the tight bounding box of `save` takes it in), so it
    never covers tick labels or the axis label.
    """
    fig.tight_layout()
    text = f"preset: {preset}" if preset == "paper" else f"preset: {preset} (not the paper's scale)"
    colour = "0.4" if preset == "paper" else "tab:red"
    fig.text(0.995, 0.0, text, ha="right", va="top", fontsize=7, color=colour)


def save(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """Write `<stem>.pdf` and `<stem>.png`, close the figure, return both paths. The PDF carries
    no creation date, so the same results give the same bytes (committed figures change in git
    only when their data do)."""
    stem = Path(stem)
    paths = [stem.parent / f"{stem.name}.pdf", stem.parent / f"{stem.name}.png"]
    for path in paths:
        with replacing(path) as tmp:
            fig.savefig(tmp, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def ordered(task: Task, present: Sequence[str]) -> list[str]:
    """The task's variant names that are present, in grid order."""
    return [v.name for v in task.variants if v.name in set(present)]
