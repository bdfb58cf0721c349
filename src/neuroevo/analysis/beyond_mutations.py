"""Mutation effects (beyond the paper, issue #7 item 1): what one mutation does to fitness.

Input: the `mutation_effects.csv` files of `neuroevo mutation-effects`, one per task × variant ×
seed (collected into one table by `load`, which the workflow commits: `collect-logs`), each row
a single-mutation child of a sampled survivor with delta = child − parent fitness.
A child is *beneficial* if delta > tol, *deleterious* if delta < −tol and *neutral* otherwise, tol
being the task's `neutral_tolerance` in configs/experiments.yaml (TinyStories: 1e-3 nats/token).

The paper argues that deleterious factorized mutations hurt more than dense ones, so bad children
of factorized parents fail faster, which saves time where episodes stop early (CarRacing).
`mean_deleterious` (mean |delta| of the deleterious children) measures the first half; where the
task reports environment steps, `env_steps` (per evaluated individual) relates it to the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import style
from .grid import Task
from .runs import read_seed_tables

CLASSES = ("beneficial", "neutral", "deleterious")
CLASS_COLOURS = {"beneficial": "tab:green", "neutral": "0.7", "deleterious": "tab:red"}


LOG_COLUMNS = ("generation", "delta")  # what the analysis reads of a mutation_effects.csv


def load(paths: Sequence[Path]) -> pd.DataFrame:
    """Every mutation_effects.csv in one table, task, variant and seed read from its directory."""
    return read_seed_tables(list(paths), LOG_COLUMNS)


def classify(delta: pd.Series, tolerance: float) -> pd.Series:
    """'beneficial' (delta > tol), 'deleterious' (delta < −tol, or NaN: a child that diverged,
    which the GA ranks as −inf) or 'neutral' for each delta. The mean magnitudes skip NaN."""
    labels = np.where(delta > tolerance, "beneficial",
                      np.where((delta < -tolerance) | delta.isna(), "deleterious", "neutral"))
    return pd.Series(labels, index=delta.index)


def summarize(probes: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per task × variant, over all probed generations ("all") and per generation: the number of
    children, the fraction in each class, the mean |delta| of deleterious and of beneficial
    children, the median delta and (episodic tasks) environment steps per individual."""
    data = probes.assign(effect=classify(probes["delta"], tolerance))
    rows = []
    for (task, variant), group in data.groupby(["task", "variant"], sort=False):
        rows.append({"task": task, "variant": variant, "generation": "all", **_stats(group)})
        for generation, by_generation in group.groupby("generation"):
            rows.append({"task": task, "variant": variant, "generation": str(generation),
                         **_stats(by_generation)})
    return pd.DataFrame(rows)


def figure(probes: pd.DataFrame, task: Task, preset: str, stem: Path,
           tolerance: float) -> list[Path]:
    """Class fractions, the delta distribution and the deleterious magnitude per generation, per
    variant; with environment steps, a fourth panel relates harm to evaluation work."""
    data = probes[probes["task"] == task.name].assign(
        effect=lambda d: classify(d["delta"], tolerance))
    if data.empty:
        raise ValueError(f"no mutation-effect rows for task {task.name!r}")
    order = style.ordered(task, data["variant"])
    names, colours = style.labels(task), style.palette(task)
    episodic = data["env_steps"].notna().any() if "env_steps" in data else False
    style.apply()
    fig, axes = plt.subplots(1, 4 if episodic else 3, figsize=(15 if episodic else 12, 3.8))

    fractions = (data.groupby("variant")["effect"].value_counts(normalize=True)
                 .unstack(fill_value=0.0).reindex(index=order, columns=CLASSES, fill_value=0.0))
    left = np.zeros(len(order))
    for effect in CLASSES:
        axes[0].barh(range(len(order)), fractions[effect], left=left, color=CLASS_COLOURS[effect],
                     label=effect)
        left += fractions[effect].to_numpy()
    axes[0].set_yticks(range(len(order)), [names[v] for v in order], fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set(xlabel="Fraction of single mutations", xlim=(0, 1),
                title=f"|Δ| ≤ {tolerance:g} is neutral")
    axes[0].legend(fontsize=6, loc="lower right")

    axes[1].boxplot([data.loc[data["variant"] == v, "delta"] for v in order], showfliers=False,
                    widths=0.6)
    for i, variant in enumerate(order, start=1):
        deltas = data.loc[data["variant"] == variant, "delta"]
        jitter = np.random.default_rng(i).uniform(-0.2, 0.2, len(deltas))
        axes[1].scatter(i + jitter, deltas, s=4, alpha=0.4, color=colours[variant])
    axes[1].set_yscale("symlog", linthresh=max(tolerance, 1e-12))
    axes[1].set_xticks(range(1, len(order) + 1), [names[v] for v in order], rotation=25,
                       ha="right", fontsize=6)
    axes[1].set(ylabel="Δ fitness (child − parent)", title="Effect of one mutation")

    harm = (data[data["effect"] == "deleterious"].assign(harm=lambda d: -d["delta"])
            .groupby(["variant", "generation"])["harm"].mean())
    for variant in order:
        if variant in harm.index.get_level_values(0):
            series = harm.loc[variant]
            axes[2].plot(series.index, series.to_numpy(), "o-", color=colours[variant],
                         label=names[variant])
    axes[2].set(xlabel="Generation", ylabel="Mean |Δ| of deleterious mutations",
                title="Harm of a deleterious mutation")
    axes[2].legend(fontsize=6)

    if episodic:
        work = data.groupby(["variant", "generation"]).agg(
            deleterious=("effect", lambda e: (e == "deleterious").mean()),
            env_steps=("env_steps", "mean"))
        for variant in order:
            points = work.loc[variant]
            axes[3].scatter(points["deleterious"], points["env_steps"], color=colours[variant],
                            label=names[variant])
        axes[3].set(xlabel="Fraction deleterious", ylabel="Environment steps per individual",
                    title="Harm vs evaluation work")
    fig.suptitle(f"Single-mutation effects — {task.title}", fontsize=10)
    style.stamp(fig, preset)
    return style.save(fig, stem)


def _stats(group: pd.DataFrame) -> dict[str, float]:
    effect, delta = group["effect"], group["delta"]
    out = {"n": len(group)}
    out.update({effect_name: float((effect == effect_name).mean()) for effect_name in CLASSES})
    out["mean_deleterious"] = float(-delta[effect == "deleterious"].mean())
    out["mean_beneficial"] = float(delta[effect == "beneficial"].mean())
    out["median_delta"] = float(delta.median())
    if "env_steps" in group and group["env_steps"].notna().any():
        out["env_steps"] = float(group["env_steps"].mean())
    return out
