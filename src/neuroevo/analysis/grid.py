"""The experiment grid of one preset, as the workflow resolved it into `results/<preset>/grid.json`.

The Snakefile owns the grid (configs/experiments.yaml); it writes the part the analysis needs —
tasks, their variants, seeds, the plotted fitness column and the compared groups — so that every
table and figure is a function of files alone and the analysis never parses the workflow config.
`engine_settings` reads what a variant's runs were configured with (population, elites, evaluation
set) from its engine config files, for the report's comparison with the paper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config_files import read_with_extends


@dataclass(frozen=True)
class Variant:
    """One engine configuration of a task: a config file plus explicit `--set` overrides."""

    name: str
    config: str
    overrides: dict[str, Any]
    rank: int | None  # the factorization rank it searches; None for dense/small
    label: str | None  # legend name; None means style.label() picks the paper's name


@dataclass(frozen=True)
class Task:
    """A task of the grid and how its results are compared."""

    name: str
    family: str
    title: str
    series: str  # fitness.csv column plotted per generation and compared at the last one
    ylabel: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]  # in plotting order (fixes each variant's colour)
    compare: tuple[str, ...]  # groups of the Kruskal–Wallis and pairwise tests
    treatment: str | None  # the factorized group whose Glass's Δ is taken against each control
    figure_variants: tuple[str, ...] = ()  # drawn by fitness/runtime/final; () = every variant
    test_generations: tuple[int, ...] = ()  # earlier generations also tested (the milestones table)


@dataclass(frozen=True)
class Grid:
    """All tasks of one preset."""

    preset: str
    tasks: tuple[Task, ...]

    def task(self, name: str) -> Task:
        """The task called `name`, or a one-line error naming the preset."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"preset {self.preset!r} has no task {name!r}")


def load(path: str | Path) -> Grid:
    """Read grid.json; a missing key fails with one line naming the file and the key."""
    raw = json.loads(Path(path).read_text())
    try:
        return Grid(preset=raw["preset"], tasks=tuple(_task(n, t) for n, t in raw["tasks"].items()))
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err}") from None


def engine_settings(variant: Variant, engine_preset: str | None) -> dict[str, Any]:
    """The sections (task, ga, …) a variant's runs were loaded with: its config file over the
    files it `extends`, section by section, then the engine preset's dotted keys, then the
    variant's overrides, in the order of the engine's loader (neuroevo.config).

    Plain YAML, not the engine's validated config: the analysis does not import the engine (and
    torch). So a key no file spells out is absent here, where the engine would take its default;
    a missing config file fails in one line.
    """
    path = Path(variant.config)
    if not path.is_file():
        raise ValueError(f"variant {variant.name!r}: engine config {path} not found")
    raw = read_with_extends(path)
    presets = raw.pop("presets", None) or {}
    if engine_preset is not None and engine_preset not in presets:
        raise ValueError(f"{path}: no engine preset {engine_preset!r}")
    for dotted, value in [*(presets.get(engine_preset) or {}).items(), *variant.overrides.items()]:
        *sections, leaf = dotted.split(".")
        node = raw
        for section in sections:
            if node.get(section) is None:  # an empty section (YAML's null) counts as {}
                node[section] = {}
            node = node[section]
        node[leaf] = value
    return raw


def _task(name: str, raw: dict[str, Any]) -> Task:
    return Task(
        name=name,
        family=raw["family"],
        title=raw["title"],
        series=raw["series"],
        ylabel=raw["ylabel"],
        seeds=tuple(raw["seeds"]),
        variants=tuple(
            Variant(
                name=vn,
                config=v["config"],
                overrides=dict(v.get("set", {})),
                rank=v.get("rank"),
                label=v.get("label"),
            )
            for vn, v in raw["variants"].items()
        ),
        compare=tuple(raw["compare"]),
        treatment=raw.get("treatment"),
        figure_variants=tuple(raw.get("figure_variants", ())),
        test_generations=tuple(raw.get("test_generations", ())),
    )

