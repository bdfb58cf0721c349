"""One function per figure; each is a pure function of one results table and writes PDF + PNG.

- `fitness`: the paper's main figure — the task's series (best fitness) per generation, mean over
  seeds with the paper's mean ± 1.96·SEM band (tinystories/plot.py, */plot-series.py).
- `seeds`: the same series of every run, one panel per variant and one line per seed.
- `final`: last-generation score per variant, box plot with one dot per seed.
- `runtime`: evaluation seconds per generation per variant, mean ± 1.96·SEM (the paper's CarRacing
  result: better agents end episodes later, so evaluation time tracks early termination).
- `rank`: last-generation score against the factorization rank (rank sweep), dense/small as lines.
- `searched`: last-generation score against the searched degrees of freedom (log x).
- `stages`: two-wave tasks (CarRacing): each evaluation stage's mean score and wall time at the
  last generation, split violins per compared variant (the paper's cr-last-gen-mean-score and
  cr-last-gen-mean-time side by side).
Figures that take `fitness_long.csv` are marked "long", those that take `runs.csv` are marked "runs".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from . import stats, style, tables
from .grid import Task

FigureFn = Callable[[pd.DataFrame, Task, str, Path], list[Path]]
SEED_PANEL = (3.0, 2.6)  # inches per variant's panel in `seeds`
SEED_PANELS_A_ROW = 3  # more variants go on two rows


def fitness(long: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Best fitness per generation: mean over seeds ± 1.96·SEM, one line per variant."""
    return _curves(long, task, preset, stem, column=task.series, ylabel=task.ylabel,
                   title=f"Best fitness per generation — {task.title}")


def seeds(long: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Best fitness per generation of every run: one panel per variant, one line per seed, one
    y axis. What `fitness` summarises: with 3 seeds one run far above the others carries the
    mean, and the ±1.96·SEM band then reaches scores no run had (below 0 on atari_cpu)."""
    data = _drawn_rows(long, task)
    order = style.ordered(task, data["variant"])
    names, colours = style.labels(task), style.palette(task)
    style.apply()
    columns = len(order) if len(order) <= SEED_PANELS_A_ROW else -(-len(order) // 2)
    rows = -(-len(order) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(SEED_PANEL[0] * columns, SEED_PANEL[1] * rows),
                             sharex=True, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, order):
        for _, run in data[data["variant"] == name].groupby("seed"):
            ax.plot(run["generation"], run[task.series], color=colours[name], linewidth=1)
        ax.set_title(style.wrapped(names[name], style.PANEL_TITLE_CHARS), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for i, ax in enumerate(axes.flat):
        if i >= len(order):
            ax.set_visible(False)
        elif i + columns >= len(order):  # nothing drawn below it: its column's x axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("Generation")
    fig.supylabel(task.ylabel, fontsize=10)
    fig.suptitle(f"Best fitness per generation, each seed — {task.title}")
    return _finish(fig, preset, stem)


def runtime(long: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Evaluation wall time per generation: mean over seeds ± 1.96·SEM, one line per variant."""
    return _curves(long, task, preset, stem, column="eval_seconds", ylabel="Evaluation time (s)",
                   title=f"Evaluation time per generation — {task.title}")


def final(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Distribution of the last-generation score over seeds, one box (and dots) per variant.
    Variants whose names are longer than the paper's lie on the y axis (horizontal boxes), where
    their wrapped names do not run into each other as slanted x-axis labels do."""
    data = _drawn_rows(runs, task)
    order = style.ordered(task, data["variant"])
    names, colours = style.labels(task), style.palette(task)
    horizontal = any(len(names[v]) > style.TICK_LABEL_CHARS for v in order)
    xy = {"x": "final_score", "y": "variant"} if horizontal else {"x": "variant", "y": "final_score"}
    style.apply()
    size = (style.FIGSIZE[0] + 2, 1 + 0.5 * len(order)) if horizontal else style.FIGSIZE
    fig, ax = plt.subplots(figsize=size)
    sns.boxplot(data=data, **xy, hue="variant", order=order, hue_order=order,
                palette=colours, ax=ax, showfliers=False, legend=False, boxprops={"alpha": 0.5})
    with _seeded_global_rng():  # seaborn draws the dots' jitter from numpy's global generator
        sns.stripplot(data=data, **xy, hue="variant", order=order,
                      hue_order=order, palette=colours, ax=ax, size=5, jitter=0.15,
                      edgecolor="black", linewidth=0.5, legend=False)
    title = f"Last generation ({_last_generation(data)}) — {task.title}"
    if horizontal:
        ax.set_yticks(range(len(order)), [style.wrapped(names[v], style.TICK_LABEL_CHARS) for v in order])
        ax.set(ylabel="", xlabel=task.ylabel, title=title)
    else:
        ax.set_xticks(range(len(order)), [names[v] for v in order], rotation=20, ha="right")
        ax.set(xlabel="", ylabel=task.ylabel, title=title)
    return _finish(fig, preset, stem)


def rank(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Last-generation score against the factorization rank: seeds as dots, mean with 95%
    t-interval; dense/small as lines (sparse variants, also ranked, are in `beyond_search`)."""
    data = _task_rows(runs, task)
    ranked = data[data["rank"].notna() & (data["encoding"] == "factorized")].astype({"rank": int})
    if ranked["rank"].nunique() < 2:
        raise ValueError(f"figure rank: task {task.name!r} has fewer than two ranks in runs.csv")
    colours = style.palette(task)
    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    ax.scatter(ranked["rank"], ranked["final_score"], s=14, color="0.5", alpha=0.7, label="one seed")
    summary = _intervals(ranked, "rank")
    yerr = [summary["mean"] - summary["low"], summary["high"] - summary["mean"]]
    ax.errorbar(summary.index, summary["mean"], yerr=yerr,
                fmt="o-", color="black", capsize=3, label="mean, 95% t-interval")
    for name in style.ordered(task, data.loc[data["rank"].isna(), "variant"]):
        ax.axhline(data.loc[data["variant"] == name, "final_score"].mean(), ls="--", color=colours[name],
                   label=f"{style.labels(task)[name]} (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ranked["rank"].unique()), [str(r) for r in sorted(ranked["rank"].unique())])
    ax.set(xlabel="Rank", ylabel=task.ylabel, title=f"Rank sweep — {task.title}")
    style.legend(ax)
    return _finish(fig, preset, stem)


def searched(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Last-generation score against searched genome dimensions (log x), mean ± 95% t-interval per variant."""
    data = _task_rows(runs, task)
    names, colours = style.labels(task), style.palette(task)
    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    for name in style.ordered(task, data["variant"]):
        group = data[data["variant"] == name]
        ci = stats.t_interval(group["final_score"].tolist())
        x = float(group["params_searched"].iloc[0])
        ax.scatter([x] * len(group), group["final_score"], s=12, color=colours[name], alpha=0.5)
        ax.errorbar([x], [ci.mean], yerr=_yerr(ci), fmt="o", color=colours[name], capsize=3, label=names[name])
    ax.set_xscale("log")
    ax.set(xlabel="Searched degrees of freedom (mutable genome dimensions)", ylabel=task.ylabel,
           title=f"Score vs search-space size — {task.title}")
    style.legend(ax)
    return _finish(fig, preset, stem)


def stages(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Last-generation mean score and wall time of each evaluation stage: split violins (one half
    per stage) with one dot per seed, one pair per compared variant."""
    data = _task_rows(runs, task)
    if not tables.has_stages(runs, task):
        raise ValueError(f"figure stages: task {task.name!r} logged no evaluation stages "
                         "(only CarRacing's two-wave evaluation does)")
    data = data[data["variant"].isin(task.compare)]
    names = style.labels(task)
    stage_names = {"first": "First stage (everyone)", "second": "Second stage (finalists)"}
    long = pd.concat([
        pd.DataFrame({"variant": data["variant"].map(names), "stage": stage_names[stage],
                      "score": data[f"{stage}_stage_score"], "seconds": data[f"{stage}_stage_seconds"]})
        for stage in stage_names], ignore_index=True)
    order = [names[v] for v in style.ordered(task, data["variant"])]
    style.apply()
    fig, axes = plt.subplots(1, 2, figsize=(2 * style.FIGSIZE[0], style.FIGSIZE[1]))
    for ax, column, ylabel, title in (
            (axes[0], "score", "Score", f"Generation {_last_generation(data)} average score"),
            (axes[1], "seconds", "Time taken (s)", f"Generation {_last_generation(data)} evaluation time")):
        # cut=0: a few seeds' kernel density must not reach scores no seed had
        sns.violinplot(data=long, x="variant", y=column, hue="stage", order=order, split=True,
                       inner=None, cut=0, palette="colorblind", ax=ax, legend=ax is axes[0])
        with _seeded_global_rng():
            sns.stripplot(data=long, x="variant", y=column, hue="stage", order=order, dodge=True,
                          palette="colorblind", edgecolor="black", linewidth=0.5, size=4, ax=ax,
                          legend=False)
        ax.set(xlabel="", ylabel=ylabel, title=f"{title} — {task.title}")
        ax.tick_params(axis="x", labelrotation=15)
    axes[0].legend(fontsize=7)
    return _finish(fig, preset, stem)


# name → (function, the table it takes: "long" = fitness_long.csv, "runs" = runs.csv)
FIGURES: dict[str, tuple[FigureFn, str]] = {
    "fitness": (fitness, "long"),
    "seeds": (seeds, "long"),
    "final": (final, "runs"),
    "runtime": (runtime, "long"),
    "rank": (rank, "runs"),
    "searched": (searched, "runs"),
    "stages": (stages, "runs"),
}


def _curves(long: pd.DataFrame, task: Task, preset: str, stem: Path,
            column: str, ylabel: str, title: str) -> list[Path]:
    """Mean over seeds per generation with the paper's ±1.96·SEM band, one line per variant."""
    data = _drawn_rows(long, task)
    names, colours = style.labels(task), style.palette(task)
    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    for name in style.ordered(task, data["variant"]):
        band = _intervals(data[data["variant"] == name], "generation", column=column, interval=stats.normal_band)
        ax.plot(band.index, band["mean"], color=colours[name], label=names[name])
        ax.fill_between(band.index, band["low"], band["high"], color=colours[name], alpha=0.2, linewidth=0)
    ax.set(xlabel="Generation", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    style.legend(ax)
    return _finish(fig, preset, stem)


def _intervals(data: pd.DataFrame, by: str, column: str = "final_score",
               interval: Callable[[list[float]], stats.Interval] = stats.t_interval) -> pd.DataFrame:
    """mean/low/high of `column` over seeds for each value of `by`."""
    rows = {key: interval(group[column].tolist()) for key, group in data.groupby(by)}
    return pd.DataFrame({"mean": [i.mean for i in rows.values()], "low": [i.low for i in rows.values()],
                         "high": [i.high for i in rows.values()]}, index=list(rows))


def _yerr(ci: stats.Interval) -> list[list[float]]:
    """Asymmetric error bar lengths; zero when the interval is undefined (a single seed)."""
    if pd.isna(ci.low):
        return [[0.0], [0.0]]
    return [[ci.mean - ci.low], [ci.high - ci.mean]]


def _task_rows(table: pd.DataFrame, task: Task) -> pd.DataFrame:
    data = table[table["task"] == task.name]
    if data.empty:
        raise ValueError(f"no rows for task {task.name!r} in the table")
    return data


def _drawn_rows(table: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The task's rows of the variants its per-variant figures draw (`figure_variants`)."""
    data = _task_rows(table, task)
    return data[data["variant"].isin(task.figure_variants)] if task.figure_variants else data


def _last_generation(data: pd.DataFrame) -> str:
    generations = sorted(data["final_generation"].unique())
    return str(generations[0]) if len(generations) == 1 else "/".join(map(str, generations))


def _finish(fig: plt.Figure, preset: str, stem: Path) -> list[Path]:
    style.stamp(fig, preset)
    return style.save(fig, stem)


@contextlib.contextmanager
def _seeded_global_rng(seed: int = 0) -> Iterator[None]:
    """numpy's global generator seeded within (the same table gives the same figure), and its
    state restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
