"""`python -m neuroevo.analysis <subcommand>`: the entry points the workflow rules call.

Subcommands: `aggregate` (run dirs → fitness_long.csv, runs.csv), `tables` (runs.csv → the paper's
tables), `figure NAME` (one table → one figure's PDF + PNG), `report` (tables + figures → report),
and beyond the paper (issue #7): `collect-logs` (one task's engine logs of a beyond item → one
table, committed with a preset as runs.csv is), then each one task's table + figure:
`mutation-effects`, `gradient`, `rank-study`, `sparse`. Keeping the logic here lets every rule be
a one-line shell command. Errors print one line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..atomic import replacing
from . import (aggregate, beyond_gradient, beyond_mutations, beyond_search, figures, grid, report,
               tables)
from .figures import FigureFn
from .grid import Task
from .runs import read_csv


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one subcommand; a contract violation is one line on stderr, exit 1."""
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"neuroevo.analysis {args.command}: {message}", file=sys.stderr)
        return 1
    return 0


def _aggregate(args: argparse.Namespace) -> None:
    long, runs = aggregate.aggregate(grid.load(args.grid), args.runs_root)
    for table, path in ((long, args.long), (runs, args.runs)):
        with replacing(path) as tmp:
            table.to_csv(tmp, index=False)


def _tables(args: argparse.Namespace) -> None:
    built = tables.build(_read(args.runs), _read(args.long), grid.load(args.grid))
    for name, table in built.items():
        tables.write(table, args.out_dir / name)


def _figure(args: argparse.Namespace) -> None:
    g = grid.load(args.grid)
    function, _ = figures.FIGURES[args.name]
    function(_read(args.table), g.task(args.task), g.preset, args.out)


def _report(args: argparse.Namespace) -> None:
    report.write(
        grid.load(args.grid),
        _read(args.runs),
        report.table_paths(args.tables_dir, tables.TABLES),
        [Path(p) for p in args.figures if p.suffix == ".png"],
        args.md,
        args.html,
        [p for p in args.beyond_tables if p.suffix == ".md"],
        args.beyond_figures,
    )


# Each beyond item's engine log: its module (`load`: run-directory files → one table;
# `LOG_COLUMNS`: what its analysis reads, after the task, variant and seed `load` adds).
LOGS = {"mutation_effects": beyond_mutations, "gradient": beyond_gradient}


def _collected(path: Path, item: str) -> pd.DataFrame:
    """A collect-logs table with the columns the item's analysis reads, or a one-line error."""
    return read_csv(path, ("task", "variant", "seed", *LOGS[item].LOG_COLUMNS))


def _collect_logs(args: argparse.Namespace) -> None:
    with replacing(args.out) as tmp:
        LOGS[args.item].load(args.logs).to_csv(tmp, index=False)


def _mutation_effects(args: argparse.Namespace) -> None:
    g = grid.load(args.grid)
    probes = _collected(args.probes, "mutation_effects")
    tables.write(beyond_mutations.summarize(probes, args.tolerance), args.table)
    beyond_mutations.figure(probes, g.task(args.task), g.preset, args.figure, args.tolerance)


def _gradient(args: argparse.Namespace) -> None:
    g = grid.load(args.grid)
    task = g.task(args.task)
    curves = beyond_gradient.curves(_read(args.long), _collected(args.logs, "gradient"), task)
    tables.write(beyond_gradient.table(curves, task), args.table)
    beyond_gradient.figure(curves, task, g.preset, args.figure)


def _search(table_fn: Callable[[pd.DataFrame, Task], pd.DataFrame],
            figure_fn: FigureFn) -> Callable[[argparse.Namespace], None]:
    """A runs.csv analysis of beyond_search: its table and its figure."""
    def run(args: argparse.Namespace) -> None:
        g = grid.load(args.grid)
        task, runs = g.task(args.task), _read(args.runs)
        tables.write(table_fn(runs, task), args.table)
        figure_fn(runs, task, g.preset, args.figure)
    return run


def _read(path: Path) -> pd.DataFrame:
    """A results table written by `aggregate` (nullable integer rank kept as such)."""
    return pd.read_csv(path, dtype={"rank": "Int64"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neuroevo.analysis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("aggregate", help="all run dirs of the grid → fitness_long.csv and runs.csv")
    p.add_argument("--grid", type=Path, required=True, help="results/<preset>/grid.json")
    p.add_argument("--runs-root", type=Path, required=True, help="results/<preset>/runs")
    p.add_argument("--long", type=Path, required=True, help="output: fitness_long.csv")
    p.add_argument("--runs", type=Path, required=True, help="output: runs.csv")
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("tables", help="runs.csv and fitness_long.csv → final, kruskal, pairwise, "
                                      "stages, milestones tables (.csv .md .tex)")
    p.add_argument("--grid", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--long", type=Path, required=True, help="fitness_long.csv (milestones)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=_tables)

    p = sub.add_parser("figure", help="one figure of one task → <out>.pdf and <out>.png")
    p.add_argument("name", choices=sorted(figures.FIGURES))
    p.add_argument("--grid", type=Path, required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--table", type=Path, required=True, help="fitness_long.csv or runs.csv, as the figure needs")
    p.add_argument("--out", type=Path, required=True, help="output path without extension")
    p.set_defaults(func=_figure)

    p = sub.add_parser("report", help="tables + figures → report.md and self-contained report.html")
    p.add_argument("--grid", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--tables-dir", type=Path, required=True)
    p.add_argument("--figures", type=Path, nargs="*", default=[], help="figure files (PNG are embedded)")
    p.add_argument("--md", type=Path, required=True)
    p.add_argument("--html", type=Path, required=True)
    p.add_argument("--beyond-tables", type=Path, nargs="*", default=[],
                   help="beyond-the-paper tables (<task>_<item>; the .md ones are embedded)")
    p.add_argument("--beyond-figures", type=Path, nargs="*", default=[],
                   help="beyond-the-paper figures (PNG are embedded)")
    p.set_defaults(func=_report)

    p = sub.add_parser("collect-logs", help="one beyond item's engine logs → one table")
    p.add_argument("--item", required=True, choices=sorted(LOGS))
    p.add_argument("--logs", type=Path, nargs="+", required=True,
                   help="<root>/<task>/<variant>/seed<k>/<item>.csv files")
    p.add_argument("--out", type=Path, required=True, help="output: the collected table (.csv)")
    p.set_defaults(func=_collect_logs)

    p = sub.add_parser("mutation-effects", help="collected probes → mutation-effect table and figure")
    _beyond_outputs(p)
    p.add_argument("--probes", type=Path, required=True,
                   help="the mutation_effects logs, collected (collect-logs)")
    p.add_argument("--tolerance", type=float, required=True, help="|delta| up to this is neutral")
    p.set_defaults(func=_mutation_effects)

    p = sub.add_parser("gradient", help="GA fitness_long.csv + gradient logs → table and figure")
    _beyond_outputs(p)
    p.add_argument("--long", type=Path, required=True, help="fitness_long.csv")
    p.add_argument("--logs", type=Path, required=True,
                   help="the gradient logs, collected (collect-logs)")
    p.set_defaults(func=_gradient)

    for name, table_fn, figure_fn, what in (
            ("rank-study", beyond_search.rank_table, beyond_search.rank_figure,
             "score vs rank and searched dimensions per scheme"),
            ("sparse", beyond_search.sparse_table, beyond_search.sparse_figure,
             "sparse vs factorized at the same search-space size")):
        p = sub.add_parser(name, help=f"runs.csv → {what}")
        _beyond_outputs(p)
        p.add_argument("--runs", type=Path, required=True, help="runs.csv")
        p.set_defaults(func=_search(table_fn, figure_fn))
    return parser


def _beyond_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", type=Path, required=True, help="results/<preset>/grid.json")
    p.add_argument("--task", required=True)
    p.add_argument("--table", type=Path, required=True, help="table path without extension")
    p.add_argument("--figure", type=Path, required=True, help="figure path without extension")


if __name__ == "__main__":
    sys.exit(main())
