"""The paper's comparison tables from `runs.csv`, each written as CSV, Markdown and LaTeX.

- `final`: per task × variant, the last-generation score over seeds (mean, std, 95% Student-t
  interval) with the network, genome and searched parameter counts and the mean evaluation time.
- `kruskal`: per task, Kruskal–Wallis across the compared groups (paper: dense, factorized, small).
- `pairwise`: per task and pair of compared groups, Wilcoxon rank-sum (as the paper) and
  Mann–Whitney U p-values, Glass's Δ of the first group against the second (the control), the
  paper's effect size, and the Vargha–Delaney A, a bounded one that stays readable where the
  control's seeds barely vary and Δ explodes.
- `stages`: two-wave tasks (CarRacing) only: per evaluation stage, its mean score and wall time at
  the last generation, the factorized group against each other compared one (rank-sum, Glass's
  Δ, Vargha–Delaney A), as the paper's plot-last-gen.py; no rows for a preset without such tasks.
- `milestones`: the tests of `kruskal` and `pairwise` at the earlier generations a task names
  (`test_generations`; the paper's Asteroids at generation 10), on the series at that generation
  from `fitness_long.csv`; no rows for a preset without such tasks.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_text, replacing
from . import stats
from .grid import Grid, Task
from .style import label

TABLES = ("final", "kruskal", "pairwise", "stages", "milestones")
STAGES = ("first", "second")


def final_table(runs: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Last-generation score per task × variant with its 95% t-interval and parameter counts."""
    rows = []
    for task in grid.tasks:
        for variant in task.variants:
            group = _group(runs, task.name, variant.name)
            ci = stats.t_interval(group["final_score"].tolist())
            rows.append({
                "task": task.name,
                "variant": variant.name,
                "label": label(variant),
                "rank": variant.rank,
                "n_seeds": len(group),
                "mean": ci.mean,
                "std": float(group["final_score"].std(ddof=1)) if len(group) > 1 else float("nan"),
                "ci95_low": ci.low,
                "ci95_high": ci.high,
                "params_network": _single(group, "params_network", task, variant.name),
                "params_genome": _single(group, "params_genome", task, variant.name),
                "params_searched": _single(group, "params_searched", task, variant.name),
                "eval_seconds_mean": float(group["eval_seconds_mean"].mean()),
            })
    table = pd.DataFrame(rows)
    table["rank"] = table["rank"].astype("Int64")
    return table


def kruskal_table(runs: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Kruskal–Wallis H and p across each task's compared groups (NaN if fewer than two)."""
    rows = []
    for task in grid.tasks:
        groups = [_scores(runs, task, name) for name in task.compare]
        result = stats.kruskal(groups)
        rows.append({
            "task": task.name,
            "groups": ", ".join(task.compare),
            "n_per_group": ", ".join(str(stats.finite_count(g)) for g in groups),
            "H": result.statistic,
            "p_value": result.p_value,
        })
    return pd.DataFrame(rows)


def pairwise_table(runs: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Rank-sum and Mann–Whitney p-values, Glass's Δ and the Vargha–Delaney A for every pair of
    compared groups.

    Pairs put the treatment (the factorized group) first, so Δ and A read "factorized vs
    control", the paper's orientation; pairs without it keep the grid's order.
    """
    rows = []
    for task in grid.tasks:
        for a, b in _pairs(task):
            x, y = _scores(runs, task, a), _scores(runs, task, b)
            rank_sum, mwu = stats.ranksums(x, y), stats.mannwhitney(x, y)
            rows.append({
                "task": task.name,
                "a": a,
                "b": b,
                "mean_a": stats.finite_mean(x),
                "mean_b": stats.finite_mean(y),
                "ranksums_z": rank_sum.statistic,
                "ranksums_p": rank_sum.p_value,
                "mannwhitney_u": mwu.statistic,
                "mannwhitney_p": mwu.p_value,
                "glass_delta": stats.glass_delta(x, y),
                "vargha_delaney_a": stats.vargha_delaney_a(x, y),
            })
    columns = ["task", "a", "b", "mean_a", "mean_b", "ranksums_z", "ranksums_p",
               "mannwhitney_u", "mannwhitney_p", "glass_delta", "vargha_delaney_a"]
    return pd.DataFrame(rows, columns=columns)


def stages_table(runs: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Per two-wave task, stage (first, second) and quantity (score, seconds): the factorized
    group against each other compared group at the last generation."""
    rows = []
    for task in grid.tasks:
        if not has_stages(runs, task) or task.treatment is None:
            continue
        for stage, quantity in itertools.product(STAGES, ("score", "seconds")):
            column = f"{stage}_stage_{quantity}"
            x = _values(runs, task, task.treatment, column)
            for control in (v for v in task.compare if v != task.treatment):
                y = _values(runs, task, control, column)
                rows.append({
                    "task": task.name, "stage": stage, "quantity": quantity,
                    "a": task.treatment, "b": control,
                    "mean_a": stats.finite_mean(x),
                    "mean_b": stats.finite_mean(y),
                    "ranksums_p": stats.ranksums(x, y).p_value,
                    "glass_delta": stats.glass_delta(x, y),
                    "vargha_delaney_a": stats.vargha_delaney_a(x, y),
                })
    columns = ["task", "stage", "quantity", "a", "b", "mean_a", "mean_b", "ranksums_p",
               "glass_delta", "vargha_delaney_a"]
    return pd.DataFrame(rows, columns=columns)


def milestones_table(long: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Per task, test generation and pair of compared groups: the pair's rank-sum p, Glass's Δ
    and Vargha–Delaney A, beside the Kruskal–Wallis p across all compared groups, on the task's
    series at that generation (a generation no run reached has no rows)."""
    rows = []
    for task in grid.tasks:
        for generation in task.test_generations:
            at = long[(long["task"] == task.name) & (long["generation"] == generation)]
            if at.empty:
                continue
            scores = {v: _values(at, task, v, task.series) for v in task.compare}
            kruskal_p = stats.kruskal(list(scores.values())).p_value
            for a, b in _pairs(task):
                x, y = scores[a], scores[b]
                rows.append({
                    "task": task.name, "generation": generation, "a": a, "b": b,
                    "n_a": stats.finite_count(x), "n_b": stats.finite_count(y),
                    "mean_a": stats.finite_mean(x), "mean_b": stats.finite_mean(y),
                    "kruskal_p": kruskal_p,
                    "ranksums_p": stats.ranksums(x, y).p_value,
                    "glass_delta": stats.glass_delta(x, y),
                    "vargha_delaney_a": stats.vargha_delaney_a(x, y),
                })
    columns = ["task", "generation", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "kruskal_p",
               "ranksums_p", "glass_delta", "vargha_delaney_a"]
    return pd.DataFrame(rows, columns=columns)


def has_stages(runs: pd.DataFrame, task: Task) -> bool:
    """Whether the task's runs logged two evaluation stages (CarRacing's waves)."""
    column = "first_stage_score"
    return column in runs and bool(runs.loc[runs["task"] == task.name, column].notna().any())


def build(runs: pd.DataFrame, long: pd.DataFrame, grid: Grid) -> dict[str, pd.DataFrame]:
    """All tables by name (the names of TABLES), from runs.csv and fitness_long.csv."""
    return {
        "final": final_table(runs, grid),
        "kruskal": kruskal_table(runs, grid),
        "pairwise": pairwise_table(runs, grid),
        "stages": stages_table(runs, grid),
        "milestones": milestones_table(long, grid),
    }


def write(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """`<stem>.csv` (full precision), `<stem>.md` and `<stem>.tex` (4 significant digits)."""
    stem = Path(stem)
    paths = [stem.parent / f"{stem.name}.{ext}" for ext in ("csv", "md", "tex")]
    with replacing(paths[0]) as tmp:
        table.to_csv(tmp, index=False)
    printable = table.astype(object).where(table.notna(), None)  # pandas' <NA> would print literally
    markdown = printable.to_markdown(index=False, floatfmt=".4g", missingval="—")
    atomic_write_text(paths[1], markdown + "\n")
    atomic_write_text(paths[2], table.to_latex(index=False, float_format="{:.4g}".format,
                                               na_rep="--", escape=True))
    return paths


def _pairs(task: Task) -> list[tuple[str, str]]:
    pairs = []
    for a, b in itertools.combinations(task.compare, 2):
        pairs.append((b, a) if b == task.treatment else (a, b))
    return pairs


def _group(runs: pd.DataFrame, task: str, variant: str) -> pd.DataFrame:
    return runs[(runs["task"] == task) & (runs["variant"] == variant)]


def _scores(runs: pd.DataFrame, task: Task, variant: str) -> list[float]:
    return _values(runs, task, variant, "final_score")


def _values(runs: pd.DataFrame, task: Task, variant: str, column: str) -> list[float]:
    return _group(runs, task.name, variant)[column].astype(float).tolist()


def _single(group: pd.DataFrame, column: str, task: Task, variant: str) -> int | None:
    """A count that must agree across seeds (the architecture does not depend on the seed)."""
    values = group[column].unique()
    if len(values) > 1:
        raise ValueError(f"runs.csv: {task.name}/{variant} has differing {column} across seeds: {sorted(values)}")
    return int(values[0]) if len(values) else None
