"""The analysis (neuroevo.analysis) on synthetic run directories whose answers are known.

A fixture writes run directories in the engine's format with fitness values chosen by formula, so
means, intervals, p-values and Glass's Δ can be checked against scipy and by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from neuroevo.analysis import __main__ as cli
from neuroevo.analysis import aggregate, figures, grid, report, stats, style, tables
from neuroevo.analysis.runs import RunDirError, load_run

GENERATIONS = 4
SEEDS = (0, 1, 2)
# Per-variant offset of the synthetic best fitness; seeds add irregular amounts so groups overlap.
OFFSET = {"dense": -6.0, "factorized-r4": -5.5, "small": -7.0, "factorized-r1": -6.5}
SEED_NOISE = (0.0, 0.31, -0.17)
RANK = {"factorized-r4": 4, "factorized-r1": 1}
SEARCHED = {"dense": 99_507, "factorized-r4": 75_955, "small": 11_671, "factorized-r1": 13_023}
# Each variant's real engine config: the report reads population, elites and evaluation set there.
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tinystories"
CONFIG = {"dense": "dense.yaml", "factorized-r4": "factorized.yaml", "small": "small.yaml",
          "factorized-r1": "factorized-rank1.yaml"}


def synthetic_best(variant: str, seed: int, generation: int) -> float:
    """The `best` column of the fixture: improves by 0.1 per generation."""
    return OFFSET[variant] + SEED_NOISE[seed] + 0.1 * generation


def final_scores(variant: str) -> list[float]:
    return [synthetic_best(variant, s, GENERATIONS) for s in SEEDS]


def write_run(path: Path, variant: str, seed: int) -> None:
    """One run directory in the engine's format (fitness.csv, timing.csv, elite.json, summary.json)."""
    path.mkdir(parents=True)
    gens = np.arange(1, GENERATIONS + 1)
    best = np.array([synthetic_best(variant, seed, g) for g in gens])
    pd.DataFrame({
        "generation": gens, "best": best, "mean": best - 1, "median": best - 1.1, "std": 0.5,
        "worst": best - 3, "elite_mean": best - 0.2, "mr_mean": 0.01, "evaluations": 8 * gens,
    }).to_csv(path / "fitness.csv", index=False)
    eval_seconds = 0.5 + 0.1 * gens + 0.01 * seed
    pd.DataFrame({"generation": gens, "eval_seconds": eval_seconds, "wall_seconds": np.cumsum(eval_seconds + 0.05)}
                 ).to_csv(path / "timing.csv", index=False)
    (path / "elite.json").write_text(json.dumps({"seeds": [seed]}))
    summary = {
        "task": "tinystories", "encoding": "factorized" if variant in RANK else "dense", "seed": seed,
        "preset": "quick", "device": "cpu (Test CPU, 2 threads)", "versions": {"torch": "2.13.0"},
        "finished_utc": f"2026-11-{25 + seed % 2}T12:00:00+00:00",
        "params": {"network": 99_000 if variant != "small" else 11_000, "genome": SEARCHED[variant],
                   "searched": SEARCHED[variant]},
        "final": {"best": float(best[-1]), "elite_mean": float(best[-1] - 0.2), "generation": GENERATIONS},
        "wall_seconds": 3.0, "config": {}, "task_details": {"text": "data/quickstories.txt"},
    }
    (path / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """results/quick/ with grid.json and one run directory per variant × seed."""
    root = tmp_path / "results" / "quick"
    variants = {v: {"config": str(CONFIGS / CONFIG[v]), "set": {}, "rank": RANK.get(v)} for v in OFFSET}
    spec = {"preset": "quick", "tasks": {"tinystories": {
        "family": "tinystories", "title": "TinyStories", "series": "best", "ylabel": "−CE",
        "seeds": list(SEEDS), "variants": variants, "compare": ["dense", "factorized-r4", "small"],
        "treatment": "factorized-r4",
    }}}
    root.mkdir(parents=True)
    (root / "grid.json").write_text(json.dumps(spec))
    for variant in OFFSET:
        for seed in SEEDS:
            write_run(root / "runs" / "tinystories" / variant / f"seed{seed}", variant, seed)
    return root


@pytest.fixture
def tables_of(results: Path) -> tuple[grid.Grid, pd.DataFrame, pd.DataFrame]:
    """The grid and the aggregated (fitness_long, runs) tables of the fixture."""
    g = grid.load(results / "grid.json")
    long, runs = aggregate.aggregate(g, results / "runs")
    return g, long, runs


def test_aggregate_long_table_has_identity_then_every_column(tables_of) -> None:
    """fitness_long has one row per run × generation, identity columns first, timing joined on."""
    _, long, _ = tables_of
    assert list(long.columns[:5]) == ["task", "variant", "encoding", "rank", "seed"]
    assert len(long) == len(OFFSET) * len(SEEDS) * GENERATIONS
    assert {"best", "elite_mean", "evaluations", "eval_seconds", "wall_seconds"} <= set(long.columns)
    row = long[(long["variant"] == "small") & (long["seed"] == 1) & (long["generation"] == 2)].iloc[0]
    assert row["best"] == pytest.approx(synthetic_best("small", 1, 2))
    assert row["eval_seconds"] == pytest.approx(0.71)
    assert row["encoding"] == "dense" and pd.isna(row["rank"])


def test_runs_table_takes_final_score_from_the_series_at_the_last_generation(tables_of) -> None:
    """runs.csv has one row per run; final_score is the task's series at generation G."""
    _, _, runs = tables_of
    assert len(runs) == len(OFFSET) * len(SEEDS)
    r1 = runs[runs["variant"] == "factorized-r1"].sort_values("seed")
    assert r1["final_score"].tolist() == pytest.approx(final_scores("factorized-r1"))
    assert r1["rank"].tolist() == [1, 1, 1]
    assert (r1["params_searched"] == SEARCHED["factorized-r1"]).all()
    assert (runs["final_generation"] == GENERATIONS).all()


def test_final_table_mean_and_t_interval_match_scipy(tables_of) -> None:
    """The final table's mean and 95% interval equal scipy.stats.t.interval over the seeds."""
    g, _, runs = tables_of
    table = tables.final_table(runs, g).set_index("variant")
    for variant in OFFSET:
        x = np.array(final_scores(variant))
        low, high = sps.t.interval(0.95, df=len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert table.loc[variant, "mean"] == pytest.approx(x.mean())
        assert table.loc[variant, "ci95_low"] == pytest.approx(low)
        assert table.loc[variant, "ci95_high"] == pytest.approx(high)
        assert table.loc[variant, "n_seeds"] == len(SEEDS)
    assert table.loc["small", "params_searched"] == SEARCHED["small"]


def test_kruskal_table_matches_scipy_over_the_compared_groups(tables_of) -> None:
    """Kruskal–Wallis runs over dense, factorized-r4 and small only (the paper leaves rank 1 out)."""
    g, _, runs = tables_of
    row = tables.kruskal_table(runs, g).iloc[0]
    expected = sps.kruskal(final_scores("dense"), final_scores("factorized-r4"), final_scores("small"))
    assert row["groups"] == "dense, factorized-r4, small"
    assert row["H"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)


def test_pairwise_table_matches_scipy_and_glass_delta_by_hand(tables_of) -> None:
    """Each pair's rank-sum and Mann–Whitney p equal scipy's; Glass's Δ uses the control's ddof-0 std."""
    g, _, runs = tables_of
    table = tables.pairwise_table(runs, g)
    assert list(zip(table["a"], table["b"])) == [
        ("factorized-r4", "dense"), ("dense", "small"), ("factorized-r4", "small")]
    for _, row in table.iterrows():
        a, b = final_scores(row["a"]), final_scores(row["b"])
        assert row["ranksums_p"] == pytest.approx(sps.ranksums(a, b).pvalue)
        assert row["mannwhitney_p"] == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        mean_b = sum(b) / len(b)
        std_b = math.sqrt(sum((v - mean_b) ** 2 for v in b) / len(b))
        assert row["glass_delta"] == pytest.approx((sum(a) / len(a) - mean_b) / std_b)


def test_pairwise_table_has_vargha_delaney_a_right_after_glass_delta(tables_of) -> None:
    """The bounded effect size sits beside the paper's, and reads U / (n_a·n_b) of each pair."""
    g, _, runs = tables_of
    table = tables.pairwise_table(runs, g)
    columns = list(table.columns)
    assert columns[columns.index("glass_delta") + 1] == "vargha_delaney_a"
    for _, row in table.iterrows():
        a, b = final_scores(row["a"]), final_scores(row["b"])
        assert row["vargha_delaney_a"] == pytest.approx(row["mannwhitney_u"] / (len(a) * len(b)))


@pytest.mark.parametrize(("treatment", "control", "expected"), [
    ([3.0, 4.0, 5.0], [1.0, 2.0, 3.5], 8 / 9),  # no ties: 8 of the 9 pairs won
    ([1.0, 2.0, 2.0], [2.0, 3.0], 1 / 6),  # ties: two pairs tied (½ each), none won, of 6
    ([250.0, 270.0, 250.0], [250.0, 250.0, 250.0], 6 / 9),  # a plateau: 3 won, 6 tied
    ([7.0, 7.0], [7.0, 7.0, 7.0], 0.5),  # all equal: no effect
], ids=["no-ties", "ties", "plateau", "all-equal"])
def test_vargha_delaney_a_by_hand(treatment: list[float], control: list[float],
                                  expected: float) -> None:
    """A = P(treatment > control) + ½·P(tie) over every pair of runs, counted by hand."""
    assert stats.vargha_delaney_a(treatment, control) == pytest.approx(expected)
    assert stats.vargha_delaney_a(control, treatment) == pytest.approx(1 - expected)


def test_vargha_delaney_a_is_the_treatments_mann_whitney_u_over_n1_n2() -> None:
    """A equals scipy's U of the treatment divided by n1·n2, ties included; NaN for a group of
    fewer than MIN_SEEDS scores (as the tests beside it), and non-finite scores are dropped as
    by every test here."""
    rng = np.random.default_rng(0)
    for n1, n2 in ((3, 3), (5, 8), (12, 4)):
        x, y = rng.integers(0, 6, n1).astype(float), rng.integers(0, 6, n2).astype(float)
        u = sps.mannwhitneyu(x, y, alternative="two-sided").statistic
        assert stats.vargha_delaney_a(x, y) == pytest.approx(u / (n1 * n2))
    assert math.isnan(stats.vargha_delaney_a([], [1.0, 2.0]))
    assert math.isnan(stats.vargha_delaney_a([2.0], [1.0, 3.0]))  # one seed: a single comparison
    assert stats.vargha_delaney_a([2.0, 3.0, float("nan")], [1.0, 0.0]) == 1.0


def test_mann_whitney_is_exact_for_small_samples_with_ties() -> None:
    """With ties (Atari's plateaus) the p-value is the share of the 20 splits of 3 + 3 pooled
    scores whose U is at least as far from its mean as the observed one, counted here by
    hand, not scipy's normal approximation; without ties it is scipy's exact p."""
    import itertools

    a, b = [250.0, 1150.0, 1390.0], [160.0, 250.0, 250.0]
    pooled = a + b
    ranks = sps.rankdata(pooled)

    def u_of(chosen: tuple[int, ...]) -> float:
        return sum(ranks[i] for i in chosen) - 3 * 4 / 2

    splits = [u_of(c) for c in itertools.combinations(range(6), 3)]
    observed = u_of((0, 1, 2))
    greater = sum(u >= observed for u in splits) / len(splits)
    less = sum(u <= observed for u in splits) / len(splits)
    assert stats.mannwhitney(a, b).p_value == pytest.approx(min(1.0, 2 * min(greater, less)))
    assert stats.mannwhitney(a, b).p_value == pytest.approx(0.3)  # scipy's default: 0.164
    assert stats.mannwhitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).p_value == pytest.approx(
        sps.mannwhitneyu([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], method="exact").pvalue)


def test_stats_are_nan_where_undefined() -> None:
    """One seed has no interval; a control without spread has no Glass's Δ; all-tied groups no H."""
    assert math.isnan(stats.t_interval([1.0]).low)
    assert math.isnan(stats.glass_delta([1.0, 2.0], [3.0, 3.0]))
    assert math.isnan(stats.kruskal([[1.0, 1.0], [1.0, 1.0]]).p_value)
    # one seed a group: no test (Kruskal–Wallis would say p = 0.37 of three single scores)
    assert math.isnan(stats.kruskal([[1.0], [2.0], [3.0]]).p_value)
    assert math.isnan(stats.ranksums([1.0], [2.0, 3.0]).p_value)
    assert math.isnan(stats.mannwhitney([1.0, 2.0], [3.0]).p_value)
    band = stats.normal_band([1.0, 2.0, 3.0])
    assert band.high - band.mean == pytest.approx(1.96 * sps.sem([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("generation,best,mean\n1,0,0\n", "missing column(s) median"),
        ("generation,best,mean,median,std,worst,elite_mean,mr_mean,evaluations\n1,abc,0,0,0,0,0,0,8\n",
         "non-numeric value 'abc' in column 'best'"),
        ("", "empty"),
        ("generation,best,mean,median,std,worst,elite_mean,mr_mean,evaluations\n", "no generations"),
        ("generation,best,mean,median,std,worst,elite_mean,mr_mean,evaluations\n2,0,0,0,0,0,0,0,8\n",
         "generations must run 1..1"),
    ],
    ids=["missing-column", "non-numeric", "empty", "header-only", "gap"],
)
def test_malformed_fitness_csv_fails_with_one_line_naming_the_file(results: Path, content: str, message: str) -> None:
    """A broken fitness.csv is rejected with a single-line error that names the file and the problem."""
    run = results / "runs" / "tinystories" / "dense" / "seed0"
    (run / "fitness.csv").write_text(content)
    with pytest.raises(RunDirError) as info:
        load_run(run)
    text = str(info.value)
    assert "\n" not in text
    assert str(run / "fitness.csv") in text and message in text


def test_a_generation_with_a_diverged_individual_loads(results: Path) -> None:
    """The engine writes NaN `mean`, `median` and `std` for a generation in which an individual
    diverged (ga.py: it ranks as −inf, `best` stays a number): such a run is not malformed, but
    a NaN `best` still is."""
    run = results / "runs" / "tinystories" / "dense" / "seed0"
    path = run / "fitness.csv"
    table = pd.read_csv(path)
    table.loc[1, ["mean", "median", "std"]] = np.nan
    table.to_csv(path, index=False)
    loaded = load_run(run).fitness
    assert loaded["mean"].isna().sum() == 1 and not loaded["best"].isna().any()
    table.loc[1, "best"] = np.nan
    table.to_csv(path, index=False)
    with pytest.raises(RunDirError, match="empty or NaN value.* in column 'best'"):
        load_run(run)


def test_a_log_shorter_than_its_summary_is_refused(results: Path) -> None:
    """fitness.csv must reach the final generation summary.json names: a log cut short would
    otherwise be compared at an earlier generation than the others, silently."""
    run = results / "runs" / "tinystories" / "dense" / "seed0"
    path = run / "fitness.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(RunDirError, match="ends at generation .*, but summary.json's final"):
        load_run(run)


def test_runs_table_names_a_tokenizer_file_with_the_corpus(tables_of, results: Path) -> None:
    """A run on a tokenizer file (task.tokenizer) shows it in runs.csv's `data` beside the text,
    so the report's corpus line tells it from a run that trained its BPE."""
    g, _, runs = tables_of
    assert (runs["data"] == "data/quickstories.txt").all()  # trained BPE: the text alone
    summary_path = results / "runs" / "tinystories" / "small" / "seed1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["task_details"].update(tokenizer="data/tinystories/tokenizer-bpe.json",
                                   tokenizer_sha256="ab" * 32)
    summary_path.write_text(json.dumps(summary))
    _, runs = aggregate.aggregate(g, results / "runs")
    data = runs.set_index(["variant", "seed"])["data"]
    assert data["small", 1] == ("data/quickstories.txt (tokenizer "
                                "data/tinystories/tokenizer-bpe.json)")
    assert data["small", 2] == "data/quickstories.txt"


def test_runs_of_one_task_must_end_at_one_generation(tables_of, results: Path) -> None:
    """Runs whose configs asked for different generation counts are not compared."""
    g, _, _ = tables_of
    run = results / "runs" / "tinystories" / "small" / "seed1"
    for name in ("fitness.csv", "timing.csv"):
        path = run / name
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    summary = json.loads((run / "summary.json").read_text())
    summary["final"]["generation"] -= 1
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunDirError, match="runs of task 'tinystories' end at different generations"):
        aggregate.aggregate(g, results / "runs")


def test_cli_reports_a_malformed_run_in_one_line(results: Path, tmp_path: Path, capsys) -> None:
    """`python -m neuroevo.analysis aggregate` exits 1 with one stderr line naming the broken file."""
    broken = results / "runs" / "tinystories" / "small" / "seed2" / "fitness.csv"
    broken.write_text("generation,best\n1,0\n")
    code = cli.main(["aggregate", "--grid", str(results / "grid.json"), "--runs-root", str(results / "runs"),
                     "--long", str(tmp_path / "l.csv"), "--runs", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and str(broken) in err


def test_summary_seed_must_match_the_directory(results: Path) -> None:
    """A summary.json whose seed disagrees with its seed<k> directory is rejected."""
    run = results / "runs" / "tinystories" / "dense" / "seed1"
    with pytest.raises(RunDirError, match="seed 1 but the directory says seed2"):
        load_run(run, seed=2)


@pytest.mark.parametrize("name", sorted(set(figures.FIGURES) - {"stages"}))  # stages: below
def test_each_figure_writes_non_empty_pdf_and_png(tables_of, tmp_path: Path, name: str) -> None:
    """Every figure function writes <stem>.pdf and <stem>.png, both non-empty, and the same
    bytes again from the same table (no dates, no unseeded jitter: committed figures change in
    git only when their results do)."""
    g, long, runs = tables_of
    function, table = figures.FIGURES[name]
    data = long if table == "long" else runs
    paths = function(data, g.task("tinystories"), g.preset, tmp_path / f"tinystories_{name}")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    again = function(data, g.task("tinystories"), g.preset, tmp_path / "again" / f"tinystories_{name}")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_figures_are_stamped_with_their_preset(tables_of, tmp_path: Path, monkeypatch) -> None:
    """A quick-preset figure carries 'preset: quick' in a corner, so it cannot pass for the paper's."""
    g, long, _ = tables_of
    seen: list[str] = []

    def spy(fig, stem):
        seen.extend(t.get_text() for t in fig.texts)
        return []

    monkeypatch.setattr(style, "save", spy)
    figures.fitness(long, g.task("tinystories"), g.preset, tmp_path / "x")
    assert any(t.startswith("preset: quick") for t in seen)


def test_figure_variants_choose_the_lines_and_keep_the_papers_colours(tables_of, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """With `figure_variants`, the fitness figure draws only those (the paper's four lines among
    a longer sweep), and they take the colourblind palette's first colours whatever the grid's
    order; every variant still gets a colour of its own."""
    import dataclasses

    import seaborn as sns

    g, long, _ = tables_of
    task = dataclasses.replace(g.task("tinystories"), figure_variants=("small", "factorized-r1"))
    drawn: list[str] = []

    def spy(fig, stem):
        drawn.extend(line.get_label() for line in fig.axes[0].get_lines())
        return []

    monkeypatch.setattr(style, "save", spy)
    figures.fitness(long, task, g.preset, tmp_path / "x")
    assert drawn == ["No Factorization (Small)", "Low-Rank Factorization (Smaller Rank)"]
    colours = style.palette(task)
    assert [colours["small"], colours["factorized-r1"]] == sns.color_palette("colorblind", 2)
    assert len(set(colours.values())) == len(task.variants)


def test_seeds_figure_draws_each_run_in_its_variants_panel(tables_of, tmp_path: Path,
                                                           monkeypatch) -> None:
    """`seeds` has one panel per drawn variant, titled with its legend name, holding one line per
    seed whose points are that run's series; panels past the variants are hidden."""
    g, long, _ = tables_of
    task = g.task("tinystories")
    panels: list[tuple[str, list]] = []

    def spy(fig, stem):
        panels.extend((ax.get_title(), [line.get_xydata() for line in ax.get_lines()])
                      for ax in fig.axes if ax.get_visible())
        return []

    monkeypatch.setattr(style, "save", spy)
    figures.seeds(long, task, g.preset, tmp_path / "x")
    data = figures._drawn_rows(long, task)  # the variants the task's figures draw
    order = style.ordered(task, data["variant"])
    assert [title for title, _ in panels] == [style.labels(task)[v] for v in order]
    for (_, lines), variant in zip(panels, order):
        runs = data[data["variant"] == variant].groupby("seed")
        assert len(lines) == len(runs)
        for points, (_, run) in zip(lines, runs):
            assert points.tolist() == run[["generation", task.series]].to_numpy().tolist()


@pytest.mark.parametrize("entries", [style.LEGEND_INSIDE_MAX, style.LEGEND_INSIDE_MAX + 2])
def test_a_long_legend_goes_below_the_axes_and_their_label(entries: int) -> None:
    """Up to four entries the legend sits inside the axes, as the paper's; more (init_cpu's six
    long ablation labels) go below the axes and the x label, in a figure grown for them, so they
    cover no curve, no tick and no label."""
    import matplotlib.pyplot as plt

    style.apply()
    fig, ax = plt.subplots(figsize=style.FIGSIZE)
    for i in range(entries):
        ax.plot([0, 1], [i, i], label=f"variant {i}, its embedding started at another scale")
    ax.set(xlabel="Searched degrees of freedom", ylabel="score")
    style.legend(ax)
    style.stamp(fig, "quick")  # lays the figure out, as every figure does before saving
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    if entries <= style.LEGEND_INSIDE_MAX:
        assert fig.get_size_inches().tolist() == list(style.FIGSIZE)
        assert axes.y0 <= legend.y0 and legend.y1 <= axes.y1
    else:
        assert fig.get_size_inches()[1] > style.FIGSIZE[1]
        assert legend.y1 < ax.xaxis.get_tightbbox().y0  # below the tick labels and the x label
    plt.close(fig)


def test_long_variant_names_wrap_and_turn_the_final_boxes_horizontal(tables_of, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """A name longer than the paper's longest (an ablation's) is wrapped: in `final` the boxes
    turn horizontal and the names lie on the y axis, in `seeds` it is a two-line panel title."""
    import dataclasses

    import matplotlib.pyplot as plt

    g, long, runs = tables_of
    name = "No Factorization, its embedding started at the factorized scale"
    task = g.task("tinystories")
    task = dataclasses.replace(task, variants=tuple(
        dataclasses.replace(v, label=name) if v.name == "dense" else v for v in task.variants))
    drawn: dict[str, plt.Figure] = {}
    monkeypatch.setattr(style, "save", lambda fig, stem: drawn.setdefault(Path(stem).name, fig) and [])

    figures.final(runs, task, g.preset, tmp_path / "final")
    ax = drawn["final"].axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[0] == style.wrapped(name, style.TICK_LABEL_CHARS) and "\n" in names[0]
    assert names[1:] == [style.labels(task)[v] for v in style.ordered(task, runs["variant"])[1:]]
    assert all(len(line) <= style.TICK_LABEL_CHARS for n in names for line in n.splitlines())
    assert ax.get_xlabel() == task.ylabel

    figures.seeds(long, task, g.preset, tmp_path / "seeds")
    titles = [a.get_title() for a in drawn["seeds"].axes if a.get_visible()]
    assert titles[0] == style.wrapped(name, style.PANEL_TITLE_CHARS) and "\n" in titles[0]
    for fig in drawn.values():
        plt.close(fig)


def test_legend_names_are_the_papers() -> None:
    """The four TinyStories conditions get the paper's legend names; other ranks name their rank."""
    names = {v: style.label(grid.Variant(v, "c.yaml", {}, RANK.get(v), None)) for v in OFFSET}
    assert names == {
        "dense": "No Factorization",
        "factorized-r4": "Low-Rank Factorization (Larger Rank)",
        "small": "No Factorization (Small)",
        "factorized-r1": "Low-Rank Factorization (Smaller Rank)",
    }
    assert style.label(grid.Variant("factorized-r8", "c.yaml", {}, 8, None)) == "Low-Rank Factorization (Rank 8)"


def test_cli_builds_tables_figures_and_a_self_contained_report(results: Path, tmp_path: Path) -> None:
    """aggregate → tables → figure → report through the CLI; the HTML inlines its figures."""
    gpath, tdir, fdir = str(results / "grid.json"), results / "tables", tmp_path / "figures"
    assert cli.main(["aggregate", "--grid", gpath, "--runs-root", str(results / "runs"),
                     "--long", str(tdir / "fitness_long.csv"), "--runs", str(tdir / "runs.csv")]) == 0
    assert cli.main(["tables", "--grid", gpath, "--runs", str(tdir / "runs.csv"),
                     "--long", str(tdir / "fitness_long.csv"), "--out-dir", str(tdir)]) == 0
    for name in tables.TABLES:
        assert all((tdir / f"{name}.{ext}").stat().st_size > 0 for ext in ("csv", "md", "tex"))
    assert cli.main(["figure", "fitness", "--grid", gpath, "--task", "tinystories",
                     "--table", str(tdir / "fitness_long.csv"), "--out", str(fdir / "tinystories_fitness")]) == 0
    md, html = tmp_path / "paper" / "report.md", tmp_path / "paper" / "report.html"
    assert cli.main(["report", "--grid", gpath, "--runs", str(tdir / "runs.csv"), "--tables-dir", str(tdir),
                     "--figures", str(fdir / "tinystories_fitness.pdf"), str(fdir / "tinystories_fitness.png"),
                     "--md", str(md), "--html", str(html)]) == 0
    text, page = md.read_text(), html.read_text()
    assert "../figures/tinystories_fitness.png" in text
    assert "Paper vs this reproduction" in text and "99,507" in text and "n/a" in text
    assert "data:image/png;base64," in page and "<table>" in page
    assert "not the paper's experiment" in text
    assert ("Engine preset: `quick` (each engine config's `presets` entry of that name, applied "
            "before the overrides). Text: `data/quickstories.txt`. Devices: cpu (Test CPU, 2 "
            "threads). Runs finished 2026-11-25 to 2026-11-26 (UTC).") in text


def test_report_paper_column_uses_reference_numbers(tables_of) -> None:
    """The paper-vs-reproduction table states the reference's genome sizes and n/a for unknown scores."""
    g, _, runs = tables_of
    rows = report._paper_vs_repro(g, runs).set_index(["variant", "quantity"])
    assert rows.loc[("factorized-r4", "genome dimensions"), "paper"] == "75,955"
    assert rows.loc[("factorized-r4", "genome dimensions"), "this reproduction"] == "75,955"
    assert rows.loc[("dense", "generations"), "paper"] == "300"
    assert rows.loc[("dense", "final score (mean ± std)"), "paper"] == "n/a"
    assert rows.loc[("dense", "seeds"), "this reproduction"] == "3"


def test_report_compares_population_elites_and_evaluation_set_with_the_paper(tables_of) -> None:
    """The paper's N, k and evaluation set (Jevo.jl's TinyStories config) beside the runs' own: the
    engine config under the runs' engine preset (the fixture's `quick`: N 32, k 4, 32 stories
    cut at 48 tokens), then the variant's overrides (here N 40)."""
    import dataclasses

    g, _, runs = tables_of
    rows = report._paper_vs_repro(g, runs).set_index(["variant", "quantity"])
    assert rows.loc[("dense", "population"), ["paper", "this reproduction"]].tolist() == ["512", "32"]
    assert rows.loc[("small", "elites"), ["paper", "this reproduction"]].tolist() == ["16", "4"]
    assert rows.loc[("dense", "evaluation set"), "paper"] == (
        "the first 1,024 stories, the same every generation, no truncation")
    assert rows.loc[("dense", "evaluation set"), "this reproduction"] == (
        "the first 32 stories, the same every generation, truncated to 48 tokens")
    task = g.task("tinystories")
    dense = dataclasses.replace(task.variants[0], overrides={"ga.population": 40})
    grid_ = dataclasses.replace(g, tasks=(dataclasses.replace(task, variants=(dense,)),))
    rows = report._paper_vs_repro(grid_, runs).set_index(["variant", "quantity"])
    assert rows.loc[("dense", "population"), "this reproduction"] == "40"


def test_report_compares_the_settings_the_runs_were_loaded_with(results: Path) -> None:
    """Where runs.csv has the runs' own settings (summary.json's config, defaults filled in)
    the comparison reads them, not the engine config: keys the YAML leaves to defaults are not
    n/a, and seeds run under different settings show each value."""
    def loaded_with(population: int) -> dict:
        return {"ga": {"population": population, "elites": 3},
                "task": {"n_sequences": 20, "sampling": "resampled", "max_len": None}}

    for seed in SEEDS:
        path = results / "runs" / "tinystories" / "dense" / f"seed{seed}" / "summary.json"
        summary = json.loads(path.read_text())
        summary["config"] = loaded_with(24 if seed == 0 else 36)
        path.write_text(json.dumps(summary))
    g = grid.load(results / "grid.json")
    _, runs = aggregate.aggregate(g, results / "runs")
    runs.to_csv(results / "runs.csv", index=False)  # as the report rule reads it back
    runs = pd.read_csv(results / "runs.csv")
    assert runs.loc[runs["variant"] == "small", "settings"].isna().all()  # config {}: none
    rows = report._paper_vs_repro(g, runs).set_index(["variant", "quantity"])
    assert rows.loc[("dense", "population"), "this reproduction"] == "24 / 36"
    assert rows.loc[("dense", "elites"), "this reproduction"] == "3"
    assert rows.loc[("dense", "evaluation set"), "this reproduction"] == (
        "20 stories drawn afresh each generation, no truncation")
    assert rows.loc[("small", "elites"), "this reproduction"] == "4"  # the engine config's


@pytest.mark.parametrize(("config", "preset"), [
    ("tinystories/factorized.yaml", None), ("tinystories/sparse.yaml", "cpu"),
    ("atari/frostbite/small.yaml", "cpu"), ("car_racing/factorized.yaml", "cpu"),
    ("mujoco/halfcheetah/dense.yaml", "quick")])
def test_engine_settings_agree_with_the_engines_loader(config: str, preset: str | None) -> None:
    """The analysis' torch-free reading of an engine config (extends, preset, overrides) gives
    the GA and task values the engine's own loader gives."""
    load_config = pytest.importorskip("neuroevo.config").load_config
    from neuroevo.sections import TaskUnavailable

    path = CONFIGS.parent / config
    overrides = {"ga.elites": 2, "task.max_steps": 77} if "car_racing" in config else {}
    settings = grid.engine_settings(grid.Variant("v", str(path), overrides, None, None), preset)
    try:
        engine = load_config(path, preset=preset,
                             overrides=[f"{k}={v}" for k, v in overrides.items()]).to_dict()
    except TaskUnavailable as err:  # the RL extra (gymnasium, ALE, MuJoCo) is not installed
        pytest.skip(str(err))
    for section in ("ga", "task"):
        assert {k: engine[section][k] for k in settings[section]} == {
            k: tuple(v) if isinstance(v, list) else v for k, v in settings[section].items()}


def test_a_task_the_paper_lacks_is_labelled_an_extension(tables_of) -> None:
    """A task of a family the paper did not run (MuJoCo) reads "not in the paper" in the
    comparison table, even under the `paper` preset; scores print without exponents."""
    import dataclasses

    g, _, runs = tables_of
    task = dataclasses.replace(g.task("tinystories"), family="mujoco")
    grid_ = dataclasses.replace(g, tasks=(task,), preset="paper")
    rows = report._paper_vs_repro(grid_, runs).set_index(["variant", "quantity"])
    assert rows.loc[("dense", "generations"), "paper"] == "not in the paper"
    assert rows.loc[("dense", "population"), "paper"] == "not in the paper"
    assert report._plain(256.0) == "256" and report._plain(4240.3) == "4,240"


def test_a_variant_the_paper_did_not_run_is_labelled_an_extension(tables_of) -> None:
    """Under the `paper` preset, a rank-sweep variant of TinyStories (the paper ran dense,
    rank 4, small and rank 1) reads "not in the paper" in the comparison table, "no: an
    extension" in the setup table and is named under its task's figures; the paper's own
    conditions keep the paper's numbers."""
    import dataclasses

    g, _, runs = tables_of
    runs = runs.copy()
    runs.loc[runs["variant"] == "factorized-r1", "variant"] = "factorized-r8"
    task = g.task("tinystories")
    variants = tuple(dataclasses.replace(v, name="factorized-r8", rank=8) if v.name == "factorized-r1"
                     else v for v in task.variants)
    grid_ = dataclasses.replace(g, preset="paper", tasks=(dataclasses.replace(task, variants=variants),))
    rows = report._paper_vs_repro(grid_, runs).set_index(["variant", "quantity"])
    assert set(rows.loc["factorized-r8", "paper"]) == {"not in the paper"}
    assert rows.loc[("factorized-r4", "population"), "paper"] == "512"
    assert not report.in_paper(grid_.tasks[0], "factorized-r8")
    text = report.markdown(grid_, runs, {}, [], str)
    assert "*Not in the paper: factorized-r8 (extensions; the paper's conditions are dense, " \
           "factorized-r4, small, factorized-r1).*" in text
    setup = next(line for line in text.splitlines() if "| factorized-r8" in line)
    assert "no: an extension" in setup


def write_two_wave_run(path: Path, variant: str, seed: int) -> None:
    """A CarRacing-like run directory: the wave columns in fitness.csv, each wave's seconds in
    timing.csv, the waves' episode counts in summary.json's config."""
    write_run(path, {"factorized": "factorized-r4"}.get(variant, variant), seed)
    fitness = pd.read_csv(path / "fitness.csv")
    shift = 1.0 if variant == "factorized" else 0.0
    fitness["first_wave_mean"] = 10.0 + shift + seed
    fitness["second_wave_mean"] = 30.0 + shift + seed
    fitness.to_csv(path / "fitness.csv", index=False)
    timing = pd.read_csv(path / "timing.csv")
    timing["first_wave_seconds"] = 5.0 + shift + 0.5 * seed
    timing["second_wave_seconds"] = 2.0 + 0.25 * seed
    timing.to_csv(path / "timing.csv", index=False)
    summary = json.loads((path / "summary.json").read_text())
    summary["task"] = "car_racing"
    summary["config"] = {"task": {"first_wave_episodes": 2, "second_wave_episodes": 4}}
    (path / "summary.json").write_text(json.dumps(summary))


def test_stages_table_and_figure_compare_each_waves_score_and_time(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """CarRacing's stages at the last generation: the wave-1 mean is logged over all 6 episodes
    (as the reference) and reported per episode (×3); rank-sum p and Glass's Δ per stage and
    quantity are scipy's and the hand formula; the figure draws both panels; other tasks get
    no rows."""
    root = tmp_path / "runs"
    variants = {"dense": {"config": "c.yaml"}, "factorized": {"config": "c.yaml", "rank": 1}}
    spec = {"preset": "quick", "tasks": {"car_racing": {
        "family": "car_racing", "title": "CarRacing", "series": "best", "ylabel": "Score",
        "seeds": list(SEEDS), "variants": variants, "compare": ["dense", "factorized"],
        "treatment": "factorized"}}}
    (tmp_path / "grid.json").write_text(json.dumps(spec))
    for variant in variants:
        for seed in SEEDS:
            write_two_wave_run(root / "car_racing" / variant / f"seed{seed}", variant, seed)
    g = grid.load(tmp_path / "grid.json")
    long, runs = aggregate.aggregate(g, root)
    factorized = runs[runs["variant"] == "factorized"].sort_values("seed")
    assert factorized["first_stage_score"].tolist() == [3 * (11.0 + s) for s in SEEDS]
    table = tables.build(runs, long, g)["stages"].set_index(["stage", "quantity"])
    assert len(table) == 4 and set(table["a"]) == {"factorized"} and set(table["b"]) == {"dense"}
    dense_time = [5.0 + 0.5 * s for s in SEEDS]
    factorized_time = [6.0 + 0.5 * s for s in SEEDS]
    row = table.loc[("first", "seconds")]
    assert row["ranksums_p"] == pytest.approx(sps.ranksums(factorized_time, dense_time).pvalue)
    assert row["glass_delta"] == pytest.approx(1.0 / np.std(dense_time))
    paths = figures.stages(runs, g.task("car_racing"), g.preset, tmp_path / "car_racing_stages")
    assert all(p.stat().st_size > 1000 for p in paths)
    panels: list[str] = []
    original_save = style.save

    def spy(fig, stem):
        panels.extend(ax.get_ylabel() for ax in fig.axes)
        return original_save(fig, stem)

    monkeypatch.setattr(style, "save", spy)
    figures.stages(runs, g.task("car_racing"), g.preset, tmp_path / "again")
    assert panels == ["Score", "Time taken (s)"]


def test_stages_table_has_no_rows_without_a_two_wave_task(tables_of) -> None:
    """A preset without CarRacing writes the stages table empty (the report leaves it out)."""
    g, long, runs = tables_of
    assert tables.build(runs, long, g)["stages"].empty


def test_milestones_test_the_series_at_each_named_earlier_generation(results: Path) -> None:
    """A task's `test_generations` (the paper's Asteroids at 10) get the last generation's tests
    on the series at that generation: the Kruskal–Wallis p across the compared groups and each
    pair's rank-sum p and Glass's Δ equal scipy's and the hand formula on those values; a
    generation no run reached gets no rows, and a grid without test generations an empty table
    (which the report leaves out)."""
    spec = json.loads((results / "grid.json").read_text())
    assert tables.build(*_tables_inputs(results))["milestones"].empty
    spec["tasks"]["tinystories"]["test_generations"] = [2, GENERATIONS + 5]
    (results / "grid.json").write_text(json.dumps(spec))
    table = tables.build(*_tables_inputs(results))["milestones"]
    assert set(table["generation"]) == {2}
    at_2 = {v: [synthetic_best(v, s, 2) for s in SEEDS] for v in OFFSET}
    assert list(zip(table["a"], table["b"])) == [
        ("factorized-r4", "dense"), ("dense", "small"), ("factorized-r4", "small")]
    kruskal = sps.kruskal(at_2["dense"], at_2["factorized-r4"], at_2["small"]).pvalue
    for _, row in table.iterrows():
        a, b = at_2[row["a"]], at_2[row["b"]]
        assert row["kruskal_p"] == pytest.approx(kruskal)
        assert row["ranksums_p"] == pytest.approx(sps.ranksums(a, b).pvalue)
        assert row["glass_delta"] == pytest.approx((np.mean(a) - np.mean(b)) / np.std(b))
        assert (row["n_a"], row["n_b"]) == (len(SEEDS), len(SEEDS))
    assert table["mean_a"].tolist() != tables.build(*_tables_inputs(results))["pairwise"]["mean_a"].tolist()


def _tables_inputs(results: Path) -> tuple[pd.DataFrame, pd.DataFrame, grid.Grid]:
    """runs.csv, fitness_long.csv and the grid of the fixture's results, as `tables.build` takes them."""
    g = grid.load(results / "grid.json")
    long, runs = aggregate.aggregate(g, results / "runs")
    return runs, long, g


def test_stages_figure_of_a_task_without_stages_fails_in_one_line(tables_of, tmp_path: Path) -> None:
    g, _, runs = tables_of
    with pytest.raises(ValueError, match="logged no evaluation stages"):
        figures.stages(runs, g.task("tinystories"), g.preset, tmp_path / "x")


def test_table_means_and_counts_are_over_the_finite_scores_the_tests_use(tables_of) -> None:
    """A diverged seed (NaN score) is dropped by the tests; the tables' means and group sizes
    say so too instead of turning NaN or counting it."""
    g, long, runs = tables_of
    runs = runs.copy()
    dense = runs.index[runs["variant"] == "dense"][0]
    runs.loc[dense, "final_score"] = float("nan")
    built = tables.build(runs, long, g)
    finite = runs.loc[(runs["variant"] == "dense") & runs["final_score"].notna(), "final_score"]
    pair = built["pairwise"].query("a == 'factorized-r4' and b == 'dense'").iloc[0]
    assert pair["mean_b"] == pytest.approx(finite.mean())
    assert built["kruskal"].iloc[0]["n_per_group"] == "2, 3, 3"
