"""The report's "Beyond the paper" section (issue #7): one entry per analysis, its title and
caption, and the section built from their tables and figures.

Each analysis writes `results/<preset>/tables/beyond/<task>_<item>.{csv,md,tex}` and
`figures/<preset>/beyond/<task>_<item>.{pdf,png}`; the modules are `beyond_mutations`
(mutation_effects), `beyond_gradient` (gradient) and `beyond_search` (rank_study, sparse).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

ITEMS: dict[str, tuple[str, str]] = {  # item → (title, caption)
    "mutation_effects": (
        "Mutation effects",
        "Many single mutations of sampled survivors at chosen generations, scored beside their "
        "parent on the same batch: the fraction that helps, is neutral (|Δ| within the task's "
        "`neutral_tolerance`) or hurts, and the mean harm of a harmful one (`mean_deleterious`). "
        "The paper's claim: deleterious factorized mutations hurt more than dense ones, so bad "
        "performers stop earlier where episodes end early (`env_steps`, episodic tasks only)."),
    "gradient": (
        "Gradient-descent reference",
        "Adam on the same transformer, data, tokenizer and initial weights (the GA's first "
        "initial individual), for the GA's budget of forward passes (one Adam step = 3). The "
        "factorized run trains only the factors (LoRA-style), separating 'low rank' from "
        "'evolution'. `passes_to_ga_final`: forward passes Adam needs to reach the GA's final "
        "mean."),
    "rank_study": (
        "Rank and search-space study",
        "Last-generation score against the rank (1…32) and against the searched degrees of "
        "freedom, for each encoding scheme, with dense and small dense as references. If the "
        "factorized advantage tracked search-space size alone, all schemes would lie on one "
        "curve in the right panel."),
    "sparse": (
        "Sparse encoding: structure or size?",
        "A sparse genome holds k = r·(in + out) entries of each matrix, the size of the rank-r "
        "factorization's, the rest frozen at a shared random init; entries chosen at random or "
        "by largest |init|. Each sparse variant against the factorized variant of its rank: "
        "`difference` = mean(factorized) − mean(sparse), rank-sum and Mann–Whitney p, Glass's Δ "
        "(unbounded; unreliable when the sparse seeds barely vary) and the Vargha–Delaney A = "
        "P(a factorized run beats a sparse one) + ½·P(tie), bounded, 0.5 = no effect."),
}


def split(stem: str) -> tuple[str, str]:
    """`<task>_<item>` → (task, item), or a one-line error for a name no analysis writes."""
    for item in ITEMS:
        if stem.endswith(f"_{item}"):
            return stem[: -len(item) - 1], item
    raise ValueError(f"{stem}: not a beyond-the-paper output (<task>_<item>, item one of "
                     f"{', '.join(ITEMS)})")


def section(tables: Sequence[Path], figures: Sequence[Path],
            image_src: Callable[[Path], str]) -> str:
    """The Markdown section: per item and task its caption, figure (PNG) and table (.md)."""
    pngs = {png.stem: png for png in figures if png.suffix == ".png"}
    found = sorted((list(ITEMS).index(split(t.stem)[1]), split(t.stem)[0], t) for t in tables)
    parts = ["## Beyond the paper\n",
             "Analyses the paper argues for but does not run (issue #7), not its results.\n"]
    for _, task, table in found:
        title, caption = ITEMS[split(table.stem)[1]]
        parts.append(f"### {title} — {task}\n\n{caption}\n")
        if table.stem in pngs:
            png = pngs[table.stem]
            parts.append(f"![{title}: {task}]({image_src(png)})\n\n`{png.with_suffix('.pdf')}`\n")
        parts.append(f"{table.read_text()}\n")
    return "\n".join(parts)
