"""Search-space size or structure? (beyond the paper, issue #7 items 3 and 4), from runs.csv.

The paper reads low-rank factors as an indirect encoding with a smaller search space. Two
controls separate "smaller" from "structured":

* rank study: the last-generation score against the rank (1…32) and against the searched degrees
  of freedom, with the small dense network on the same axis. If size alone mattered, every
  encoding would fall on one curve of score against searched dimensions.
* sparse encoding: at each rank, a sparse genome of the same size (k = r·(in + out) entries per
  matrix, random or largest-|init|) against the factorized one. Same size, no structure.

`scheme` (runs.csv) is the encoding with the sparse selection; ranked schemes are drawn as lines
over their ranks, dense and small as references.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import stats, style
from .grid import Task

SCHEME_STYLE = {  # scheme → (legend, colour, marker)
    "factorized": ("Factorized (W = A·B)", "tab:blue", "o"),
    "sparse-random": ("Sparse, random entries", "tab:orange", "s"),
    "sparse-magnitude": ("Sparse, largest |init|", "tab:red", "^"),
}


def rank_table(runs: pd.DataFrame, task: Task) -> pd.DataFrame:
    """One row per variant: scheme, rank, searched dimensions and the last-generation score over
    seeds (mean, 95% t interval); ranked schemes first (SCHEME_STYLE order, by rank), then the
    unranked variants in grid order."""
    rows = []
    for variant, group in _task_rows(runs, task).groupby("variant", sort=False):
        ci = stats.t_interval(group["final_score"].tolist())
        rank = group["rank"].iloc[0]
        rows.append({"task": task.name, "variant": variant, "label": style.labels(task)[variant],
                     "scheme": group["scheme"].iloc[0],
                     "rank": None if pd.isna(rank) else int(rank),
                     "searched": int(group["params_searched"].iloc[0]), "n_seeds": len(group),
                     "mean": ci.mean, "ci95_low": ci.low, "ci95_high": ci.high})
    table = pd.DataFrame(rows)
    table["rank"] = table["rank"].astype("Int64")
    order = {scheme: i for i, scheme in enumerate(SCHEME_STYLE)}
    key = table.assign(unranked=table["rank"].isna(),
                       scheme_order=table["scheme"].map(order).fillna(len(order)))
    return table.loc[key.sort_values(["unranked", "scheme_order", "rank"], kind="stable").index
                     ].reset_index(drop=True)


def rank_figure(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Score against rank (log₂) and against searched dimensions (log): a line per ranked scheme
    (mean ± 95% t interval over seeds); dense and small as dashed lines / labelled points."""
    table = rank_table(runs, task)
    ranked, unranked = table[table["rank"].notna()], table[table["rank"].isna()]
    if ranked.empty:
        raise ValueError(f"rank study: task {task.name!r} has no ranked variant in runs.csv")
    colours = style.palette(task)
    style.apply()
    fig, (by_rank, by_size) = plt.subplots(1, 2, figsize=(10, 4))
    for scheme, group in ranked.groupby("scheme", sort=False):
        name, colour, marker = SCHEME_STYLE.get(scheme, (scheme, "0.3", "o"))
        yerr = _yerr(group)
        by_rank.errorbar(group["rank"].astype(int), group["mean"], yerr=yerr, fmt=f"{marker}-",
                         color=colour, capsize=3, label=name)
        by_size.errorbar(group["searched"], group["mean"], yerr=yerr, fmt=f"{marker}-",
                         color=colour, capsize=3, label=name)
    for _, row in unranked.iterrows():
        by_rank.axhline(row["mean"], ls="--", color=colours[row["variant"]], label=row["label"])
        by_size.errorbar([row["searched"]], [row["mean"]], yerr=_yerr(row.to_frame().T), fmt="D",
                         color=colours[row["variant"]], capsize=3, label=row["label"])
    ranks = sorted(ranked["rank"].astype(int).unique())
    by_rank.set_xscale("log", base=2)
    by_rank.set_xticks(ranks, [str(r) for r in ranks])
    by_rank.set(xlabel="Rank (sparse: k of that rank)", ylabel=task.ylabel, title="Score vs rank")
    by_size.set_xscale("log")
    by_size.set(xlabel="Searched degrees of freedom", ylabel=task.ylabel,
                title="Score vs search-space size")
    by_rank.legend(fontsize=6)
    by_size.legend(fontsize=6)
    fig.suptitle(f"Rank and search-space study — {task.title}", fontsize=10)
    style.stamp(fig, preset)
    return style.save(fig, stem)


def sparse_table(runs: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Each sparse variant against the factorized variant of its rank (same search-space size):
    searched dimensions, means, factorized − sparse, rank-sum and Mann–Whitney p-values, Glass's
    Δ and the Vargha–Delaney A of factorized against sparse as the control."""
    data = _task_rows(runs, task)
    factorized = data[data["scheme"] == "factorized"]
    rows = []
    for variant, group in data[data["scheme"].str.startswith("sparse")].groupby("variant",
                                                                                 sort=False):
        rank = group["rank"].iloc[0]
        partner = factorized[factorized["rank"] == rank]
        if pd.isna(rank) or partner["variant"].nunique() != 1:
            raise ValueError(f"sparse: {task.name}/{variant} needs exactly one factorized variant "
                             f"of rank {rank} in runs.csv to be compared with")
        x, y = partner["final_score"].tolist(), group["final_score"].tolist()
        rows.append({"task": task.name, "rank": int(rank), "factorized": partner["variant"].iloc[0],
                     "sparse": variant, "scheme": group["scheme"].iloc[0],
                     "searched_factorized": int(partner["params_searched"].iloc[0]),
                     "searched_sparse": int(group["params_searched"].iloc[0]),
                     "mean_factorized": stats.finite_mean(x), "mean_sparse": stats.finite_mean(y),
                     "difference": stats.finite_mean(x) - stats.finite_mean(y),
                     "ranksums_p": stats.ranksums(x, y).p_value,
                     "mannwhitney_p": stats.mannwhitney(x, y).p_value,
                     "glass_delta": stats.glass_delta(x, y),
                     "vargha_delaney_a": stats.vargha_delaney_a(x, y)})
    if not rows:
        raise ValueError(f"sparse: task {task.name!r} has no sparse variant in runs.csv")
    return pd.DataFrame(rows).sort_values(["rank", "scheme"], ignore_index=True)


def sparse_figure(runs: pd.DataFrame, task: Task, preset: str, stem: Path) -> list[Path]:
    """Per matched rank, the last-generation score of the factorized and the sparse variants:
    one dot per seed, the mean as a short line through them; the unranked variants (dense,
    small) as dashed means."""
    pairs = sparse_table(runs, task)
    data = _task_rows(runs, task)
    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    present = {"factorized", *pairs["scheme"]}
    schemes = [s for s in SCHEME_STYLE if s in present] + sorted(present - set(SCHEME_STYLE))
    width = 0.8 / len(schemes)
    for i, rank in enumerate(sorted(pairs["rank"].unique())):
        variants = {"factorized": pairs.loc[pairs["rank"] == rank, "factorized"].iloc[0],
                    **dict(pairs.loc[pairs["rank"] == rank, ["scheme", "sparse"]].values)}
        for j, scheme in enumerate(schemes):
            if scheme not in variants:
                continue
            scores = data.loc[data["variant"] == variants[scheme], "final_score"]
            name, colour, _ = SCHEME_STYLE.get(scheme, (scheme, "0.3", "o"))
            x = i + (j - (len(schemes) - 1) / 2) * width
            ax.hlines(scores.mean(), x - width * 0.4, x + width * 0.4, color=colour, linewidth=2,
                      label=name if i == 0 else None)
            ax.scatter([x] * len(scores), scores, s=12, color=colour, alpha=0.7, zorder=3)
    colours, names = style.palette(task), style.labels(task)
    for variant, scores in data[data["rank"].isna()].groupby("variant", sort=False)["final_score"]:
        ax.axhline(scores.mean(), ls="--", color=colours[variant], label=f"{names[variant]} (mean)")
    ranks = sorted(pairs["rank"].unique())
    ax.set_xticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.set(ylabel=task.ylabel, title=f"Same search-space size, other structure — {task.title}")
    ax.legend(fontsize=6)
    style.stamp(fig, preset)
    return style.save(fig, stem)


def _yerr(group: pd.DataFrame) -> list[list[float]]:
    """Error bar lengths from a table's interval columns; zero where undefined (one seed)."""
    low = (group["mean"] - group["ci95_low"]).fillna(0.0).astype(float)
    high = (group["ci95_high"] - group["mean"]).fillna(0.0).astype(float)
    return [low.tolist(), high.tolist()]


def _task_rows(runs: pd.DataFrame, task: Task) -> pd.DataFrame:
    data = runs[runs["task"] == task.name]
    if data.empty:
        raise ValueError(f"no rows for task {task.name!r} in runs.csv")
    return data
