"""GA vs gradient descent on one axis (beyond the paper, issue #7 item 2).

Inputs: `fitness_long.csv` (the GA runs) and the `gradient.csv` files of `neuroevo gradient`
(Adam on the same model, data and initial weights), which `load` collects into one table (the
workflow commits it: `collect-logs`). The shared x axis is forward passes over the
evaluation batch: the GA spends one per individual evaluated (cumulative `evaluations`), an Adam
step three (`forward_passes` in gradient.csv). The GA's y is the task's series (the best
individual's fitness); GD's is the fitness of its single network before each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import stats, style
from .grid import Task
from .runs import read_seed_tables

CURVE_COLUMNS = ["variant", "method", "seed", "forward_passes", "fitness"]
LOG_COLUMNS = ("forward_passes", "fitness")  # what the analysis reads of a gradient.csv


def load(paths: Sequence[Path]) -> pd.DataFrame:
    """Every gradient.csv in one table, task, variant and seed read from its directory."""
    return read_seed_tables(list(paths), LOG_COLUMNS)


def curves(long: pd.DataFrame, gradient: pd.DataFrame, task: Task) -> pd.DataFrame:
    """GA and GD fitness against cumulative forward passes, for the variants that have both."""
    gd = gradient[gradient["task"] == task.name]
    if gd.empty:
        raise ValueError(f"no gradient logs for task {task.name!r}")
    ga = long[(long["task"] == task.name) & long["variant"].isin(gd["variant"].unique())]
    missing = sorted(set(gd["variant"]) - set(ga["variant"]))
    if missing:
        raise ValueError(f"fitness_long.csv has no GA runs of {', '.join(missing)} to compare with")
    ga = ga.sort_values(["variant", "seed", "generation"]).assign(
        method="GA", fitness=lambda d: d[task.series],
        forward_passes=lambda d: d.groupby(["variant", "seed"])["evaluations"].cumsum())
    return pd.concat([ga[CURVE_COLUMNS], gd.assign(method="GD")[CURVE_COLUMNS]],
                     ignore_index=True)


def table(curves: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Per variant and method: the budget spent, the final fitness over seeds (mean, 95% t
    interval) and, for GD, the forward passes its mean curve needs to reach the GA's final mean."""
    rows = []
    for variant in style.ordered(task, curves["variant"]):
        final = {}
        for method in ("GA", "GD"):
            group = curves[(curves["variant"] == variant) & (curves["method"] == method)]
            last = group.sort_values("forward_passes").groupby("seed").tail(1)
            ci = stats.t_interval(last["fitness"].tolist())
            final[method] = ci.mean
            rows.append({"task": task.name, "variant": variant, "method": method,
                         "n_seeds": len(last),
                         "forward_passes": float(last["forward_passes"].max()),
                         "final_mean": ci.mean, "ci95_low": ci.low, "ci95_high": ci.high,
                         "passes_to_ga_final": float("nan"), "share_of_ga_budget": float("nan")})
        gd = curves[(curves["variant"] == variant) & (curves["method"] == "GD")]
        mean_curve = gd.groupby("forward_passes")["fitness"].mean()
        reached = mean_curve[mean_curve >= final["GA"]]
        if not reached.empty:
            rows[-1]["passes_to_ga_final"] = float(reached.index[0])
            rows[-1]["share_of_ga_budget"] = float(reached.index[0]) / rows[-2]["forward_passes"]
    return pd.DataFrame(rows)


def figure(curves: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Mean over seeds against forward passes (log x): GA solid, GD dashed, one colour per
    variant, with the paper's ±1.96·SEM band."""
    names, colours = style.labels(task), style.palette(task)
    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    for variant in style.ordered(task, curves["variant"]):
        for method, line in (("GA", "-"), ("GD", "--")):
            group = curves[(curves["variant"] == variant) & (curves["method"] == method)]
            band = {x: stats.normal_band(g["fitness"].tolist())
                    for x, g in group.groupby("forward_passes")}
            x = list(band)
            ax.plot(x, [b.mean for b in band.values()], line, color=colours[variant],
                    label=f"{names[variant]} — {'GA' if method == 'GA' else 'Adam'}")
            ax.fill_between(x, [b.low for b in band.values()], [b.high for b in band.values()],
                            color=colours[variant], alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.set(xlabel="Forward passes over the evaluation batch", ylabel=task.ylabel,
           title=f"Evolution vs gradient descent — {task.title}")
    ax.legend(fontsize=6)
    style.stamp(fig, preset)
    return style.save(fig, stem)
