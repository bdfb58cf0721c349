"""The reproduction report `paper/<preset>/report.{md,html}`: setup, every table, every figure, and
what the paper states next to what this reproduction measured.

Markdown links figures relative to the report; the HTML is self-contained (PNG figures inlined as
data URIs, Markdown rendered with markdown-it-py, which `rich` already depends on), so it can be
mailed or archived on its own.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from ..atomic import atomic_write_text
from . import beyond
from .figures import FIGURES
from .grid import Grid, Task, engine_settings
from .style import label

# The paper's runs as the authors' code (Jevo.jl's experiments/) sets them, per task family. None =
# not determined from it (shown as "n/a"). `conditions`: the variants (experiments.yaml's names)
# that are the paper's own conditions; any other variant of the family is an extension (a rank
# sweep, a sparse genome).
# Genome sizes are the reference's own count, layer-norm parameters included. The evaluation set
# is worded as `_evaluation_set` words ours.
PAPER = {
    # experiments/tinystories/: 01-relu-nofa, 02-relu-lora, 03-relu-nofa-small, 07-relu-rank1-lora
    "tinystories": {
        "conditions": ("dense", "factorized-r4", "small", "factorized-r1"),
        "generations": 300,
        "seeds": None,  # not determined from the authors' code (plots iterate seed folders)
        "population": 512,
        "elites": 16,
        "evaluation set": "the first 1,024 stories, the same every generation, no truncation",
        "genome": {"dense": 99_507, "factorized-r4": 75_955, "small": 11_671, "factorized-r1": 13_023},
    },
    # experiments/car-racing/: 01-nofa, 02-lora, 03-nofa-small; the elites are the second wave's best 8
    "car_racing": {
        "conditions": ("dense", "factorized", "small"),
        "generations": 40,
        "seeds": 15,
        "population": 256,
        "elites": 8,
        "evaluation set": "2 episodes each, the best 32 play 4 more; ≤ 1,000 steps an episode",
        "genome": {},
    },
    "atari": {  # experiments/atari/<game>/: 01-<game>-nofa, 02-<game>-lora, 03-<game>-nofa-small
        "conditions": ("dense", "factorized", "small"),
        "generations": 300,
        "seeds": None,
        "population": 512,
        "elites": 16,
        "evaluation set": "1 episode each; ≤ 2,500 steps an episode",
        "genome": {},
    },
}
NOT_IN_PAPER = "not in the paper"
NOTE = (
    "The paper's final scores are not carried into this package (the authors' code, as read for it, "
    "does not state them), so those cells read n/a; its genome sizes count layer-norm parameters, "
    "which an engine may or may not count in `params.genome`. This reproduction's population, "
    "elites and evaluation set are those its runs were loaded with (each run's summary, defaults "
    "included; for tables from before runs.csv's `settings` column, each variant's engine config "
    "with the runs' engine preset and the variant's overrides). A variant or task the paper did "
    f"not run reads \"{NOT_IN_PAPER}\": an extension."
)
EFFECT_SIZES = (  # the pairwise captions' reading of both effect sizes
    "Glass's Δ = (mean(a) − mean(b)) / std(b, ddof 0) is the paper's: unbounded, and unreliable "
    "when the control barely varies (few seeds, scores tied on a plateau), whose small std(b) "
    "inflates it; empty when b does not vary at all. The Vargha–Delaney A = P(a run of a beats "
    "one of b) + ½·P(tie) = U / (n_a·n_b) is bounded: 0.5 no effect, 1 (0) every run of a above "
    "(below) every run of b; it uses the scores' order alone, like the rank tests."
)
CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;font-size:.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:.2em .5em}"
    "img{max-width:100%}code{background:#f4f4f4}.warn{color:#b00}"
)


def write(grid: Grid, runs: pd.DataFrame, tables: dict[str, Path], figures: list[Path],
          out_md: Path, out_html: Path, beyond_tables: Sequence[Path] = (),
          beyond_figures: Sequence[Path] = ()) -> None:
    """Write both reports; `tables` maps table name → its .md file, `figures` lists PNG files;
    the `beyond_*` files (analysis.beyond) make the "Beyond the paper" section."""
    def relative(png: Path) -> str:
        return os.path.relpath(png, out_md.parent)

    def inline(png: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()

    beyond_files = (beyond_tables, beyond_figures)
    atomic_write_text(out_md, markdown(grid, runs, tables, figures, relative, *beyond_files))
    body = MarkdownIt("commonmark").enable("table").render(
        markdown(grid, runs, tables, figures, inline, *beyond_files))
    atomic_write_text(
        out_html,
        f"<!doctype html><html><head><meta charset='utf-8'><title>Report ({grid.preset})</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )


# what each figure's lines and bands are, under it in the report (two kinds of interval: the
# paper's band on the curves, a Student-t interval on the last-generation points)
FIGURE_CAPTIONS = {
    "fitness": "mean over seeds per generation ± 1.96·SEM, the paper's band (a normal band: "
               "with few seeds it covers less than 95%, about 81% at 3).",
    "seeds": "the fitness figure's series for every run: one panel per variant, one line per "
             "seed (what its mean and band summarise).",
    "runtime": "evaluation seconds per generation, mean over seeds ± 1.96·SEM.",
    "final": "last-generation score, one dot per seed.",
    "rank": "last-generation score against rank: seeds as dots, mean with its 95% Student-t "
            "interval.",
    "searched": "last-generation score against searched genome dimensions: mean with its 95% "
                "Student-t interval.",
    "stages": "each evaluation stage's last-generation score and wall time, one dot per seed.",
}


def markdown(grid: Grid, runs: pd.DataFrame, tables: dict[str, Path], figures: list[Path],
             image_src: Callable[[Path], str], beyond_tables: Sequence[Path] = (),
             beyond_figures: Sequence[Path] = ()) -> str:
    """The report as Markdown; `image_src` turns a PNG path into the `src` written for it."""
    parts = [f"# Reproduction report — preset `{grid.preset}`\n"]
    if grid.preset != "paper":
        parts.append(f"**Preset `{grid.preset}`: reduced scale; these numbers are not the "
                     "paper's experiment.**\n")
    parts += [_setup(grid, runs), "## Tables\n"]
    captions = {
        "final": "Last-generation score per variant over seeds (mean, std, 95% Student-t interval) "
                 "and parameter counts.",
        "kruskal": "Kruskal–Wallis test across the compared groups at the last generation.",
        "pairwise": "Pairwise Wilcoxon rank-sum (as the paper) and Mann–Whitney U tests, and two "
                    f"effect sizes of a against b. {EFFECT_SIZES} The Mann–Whitney p is exact for "
                    "small groups (ties included); with n seeds a group its smallest value is "
                    "2 / C(2n, n), 0.1 at 3 seeds, while the rank-sum's normal approximation can "
                    "go lower.",
        "stages": "CarRacing's evaluation stages at the last generation: mean score (first stage: "
                  "the population's mean episode return; second: the elites' 6-episode mean) and "
                  "wall time, factorized (a) against each control (b): rank-sum p, Glass's Δ and "
                  "the Vargha–Delaney A (as in the pairwise table).",
        "milestones": "The tests at earlier generations a task names (the paper's Asteroids at "
                      "generation 10): the Kruskal–Wallis p across the compared groups, and per "
                      "pair the rank-sum p, Glass's Δ and the Vargha–Delaney A (as in the "
                      "pairwise table), on the series at that generation.",
    }
    for name, path in tables.items():
        text = path.read_text()
        if len(text.splitlines()) <= 2:
            continue  # header only: the preset runs no two-wave task, or tests no earlier generation
        parts.append(f"### {name}\n\n{captions.get(name, '')}\n\n{text}\n")
    parts.append("## Figures\n")
    for task in grid.tasks:
        parts.append(f"### {task.title}\n")
        extensions = [v.name for v in task.variants if not in_paper(task, v.name)]
        if task.family not in PAPER:  # e.g. MuJoCo: even the `paper` preset runs it as an extension
            parts.append(f"*Not in the paper: an extension ({task.family}).*\n")
        elif extensions:  # e.g. the `paper` preset's rank sweep and sparse genomes
            parts.append(f"*Not in the paper: {', '.join(extensions)} (extensions; the paper's "
                         f"conditions are {', '.join(PAPER[task.family]['conditions'])}).*\n")
        for png in sorted((p for p in figures if p.stem.rsplit("_", 1)[0] == task.name),
                          key=_figure_order):
            name = png.stem.rsplit("_", 1)[1]
            parts.append(f"![{task.title}: {name}]({image_src(png)})\n\n*{name}* — "
                         f"{FIGURE_CAPTIONS.get(name, '')} `{png.with_suffix('.pdf')}`\n")
    parts += ["## Paper vs this reproduction\n", _paper_vs_repro(grid, runs).to_markdown(index=False) + "\n",
              f"\n{NOTE}\n"]
    if beyond_tables:
        parts.append(beyond.section(beyond_tables, beyond_figures, image_src))
    return "\n".join(parts)


def _figure_order(png: Path) -> tuple[int, str]:
    """A task's figures in `figures.FIGURES` order (the curves first, each seed's beside their
    mean), unknown names last."""
    name = png.stem.rsplit("_", 1)[1]
    order = list(FIGURES)
    return (order.index(name) if name in order else len(order), name)


def _setup(grid: Grid, runs: pd.DataFrame) -> str:
    """Which engine configs, overrides and seeds ran, on which devices and software versions."""
    rows = [
        {"task": t.name, "variant": v.name, "legend": label(v),
         "in the paper": "yes" if in_paper(t, v.name) else "no: an extension",
         "config": f"`{v.config}`",
         "overrides": " ".join(f"`{k}={val}`" for k, val in v.overrides.items()) or "—",
         "seeds": ", ".join(map(str, t.seeds))}
        for t in grid.tasks for v in t.variants
    ]
    presets = _distinct(runs, "engine_preset")
    engine = (f"Engine preset: {', '.join(f'`{p}`' for p in presets)} (each engine config's "
              "`presets` entry of that name, applied before the overrides). " if presets else "")
    corpora = _distinct(runs, "data")
    data = f"Text: {', '.join(f'`{d}`' for d in corpora)}. " if corpora else ""
    devices = ", ".join(_distinct(runs, "device")) or "n/a"
    versions = "\n".join(f"- `{v}`" for v in _distinct(runs, "versions"))
    days = sorted({str(t)[:10] for t in runs.get("finished_utc", pd.Series()).dropna()})
    dates = f" Runs finished {' to '.join(dict.fromkeys((days[0], days[-1])))} (UTC)." if days else ""
    return ("## Setup\n\n" + pd.DataFrame(rows).to_markdown(index=False) +
            f"\n\n{engine}{data}Devices: {devices}.{dates} Software versions recorded by the runs:"
            f"\n\n{versions}\n")


def _distinct(runs: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of a runs.csv column, sorted; none where the column is absent (tables
    written before it existed)."""
    return sorted(runs[column].dropna().astype(str).unique()) if column in runs else []


def in_paper(task: Task, variant: str) -> bool:
    """Whether the paper ran this variant: one of its task family's conditions in PAPER."""
    return variant in PAPER.get(task.family, {}).get("conditions", ())


def _paper_vs_repro(grid: Grid, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, variant, quantity): the paper's value (n/a where it is not stated,
    "not in the paper" for an extension) next to ours."""
    rows = []
    for task in grid.tasks:
        paper = PAPER.get(task.family, {})
        for variant in task.variants:
            group = runs[(runs["task"] == task.name) & (runs["variant"] == variant.name)]
            scores = group["final_score"]
            settings = _run_settings(group) or [engine_settings(variant, _engine_preset(group))]
            ours = {
                "generations": str(int(group["final_generation"].max())),
                "seeds": str(len(group)),
                **{quantity: " / ".join(dict.fromkeys(_cell(read(s)) for s in settings))
                   for quantity, read in SETTINGS_READ.items()},
                "genome dimensions": _cell(int(group["params_genome"].iloc[0])),
                "final score (mean ± std)": f"{_plain(scores.mean())} ± {_plain(scores.std(ddof=1))}"
                if len(scores) > 1 else _plain(scores.mean()),
            }
            theirs = {q: paper.get(q) for q in ("generations", "seeds", "population", "elites",
                                                "evaluation set")}
            theirs["genome dimensions"] = paper.get("genome", {}).get(variant.name)
            theirs["final score (mean ± std)"] = None
            extension = not in_paper(task, variant.name)
            rows += [{"task": task.name, "variant": variant.name, "quantity": q,
                      "paper": NOT_IN_PAPER if extension else _cell(theirs[q]),
                      "this reproduction": ours[q]}
                     for q in ours]
    return pd.DataFrame(rows)


# The comparison's quantities read from a variant's GA and task sections.
SETTINGS_READ = {
    "population": lambda s: (s.get("ga") or {}).get("population"),
    "elites": lambda s: (s.get("ga") or {}).get("elites"),
    "evaluation set": lambda s: _evaluation_set(s.get("task") or {}),
}


def _run_settings(group: pd.DataFrame) -> list[dict]:
    """The distinct GA and task sections a variant's runs were loaded with (runs.csv's
    `settings`, defaults filled in), or [] for tables from before the column, whose report reads
    the engine config instead. Seeds run under different settings show each value."""
    if "settings" not in group or group["settings"].isna().any():
        return []
    return [json.loads(text) for text in dict.fromkeys(group["settings"])]


def _engine_preset(group: pd.DataFrame) -> str | None:
    """The engine preset a variant's runs were loaded with (runs.csv; none: the configs as
    written, also for tables from before the column existed)."""
    presets = group["engine_preset"].dropna().unique() if "engine_preset" in group else []
    return str(presets[0]) if len(presets) else None


def _evaluation_set(task: dict) -> str | None:
    """What an individual is scored on each generation, worded as PAPER's entries, from a task
    section of engine_settings; None where its keys are not all spelled out."""
    try:
        if "n_sequences" in task:  # language: a fixed or resampled set of stories
            chosen = ("the first {:,} stories, the same every generation"
                      if task["sampling"] == "fixed" else "{:,} stories drawn afresh each generation")
            cut = "no truncation" if task["max_len"] is None else f"truncated to {task['max_len']} tokens"
            return f"{chosen.format(task['n_sequences'])}, {cut}"
        steps = f"≤ {task['max_steps']:,} steps an episode"
        if "finalists" in task:  # CarRacing's two waves
            return (f"{task['first_wave_episodes']} episodes each, the best {task['finalists']} "
                    f"play {task['second_wave_episodes']} more; {steps}")
        episodes = task["episodes"]
        return f"{episodes} episode{'s' if episodes != 1 else ''} each; {steps}"
    except KeyError:
        return None


def _cell(value: object) -> str:
    """A table cell: integers with thousands separators, None as n/a."""
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _plain(value: float) -> str:
    """Four significant digits without an exponent (4,240, not 4.24e+03; 256, not 2.6e+02)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def table_paths(tables_dir: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """name → `<tables_dir>/<name>.md`, failing with one line if one is missing."""
    paths = {name: tables_dir / f"{name}.md" for name in names}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"report: missing table(s) {', '.join(missing)}")
    return paths

