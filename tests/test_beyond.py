"""Beyond the paper (issue #7): the sparse encoding, mutation effects, the gradient-descent
reference and the search-space analyses, each pinned on tiny or synthetic inputs with known answers.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from neuroevo.encoding import ParamLayout
from neuroevo.genome import initial_weights
from neuroevo.layers import Conv2d, Linear, TiedEmbedding
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig, SparseChoice
from neuroevo.sections.language import ModelConfig

VOCAB = 61


def _population(layout: ParamLayout, size: int = 3) -> torch.Tensor:
    return initial_weights(layout, list(range(size)), torch.device("cpu"))


# --- the sparse encoding ---------------------------------------------------------------------

@pytest.mark.parametrize("selection", ["random", "magnitude"])
def test_sparse_linear_genome_holds_k_entries_and_the_rest_is_frozen(selection: str) -> None:
    """A sparse (in=12, out=8) layer at rank 2 searches k = 2·(12+8) = 40 entries; its developed W
    equals the shared init except at those entries, which hold the genome's values."""
    layout = ParamLayout()
    layer = Linear(layout, "fc", 12, 8, sparse=SparseChoice(2, selection, seed=5), bias=False)
    assert layout.dim == layout.searched_dim == 40
    theta = _population(layout)
    w = layer.weight(layout.views(theta)).flatten(1)                          # (P, 96)
    chosen = torch.zeros(96, dtype=torch.bool)
    chosen[layer.sparse.index] = True
    assert torch.equal(w[:, ~chosen], layer.sparse.base[~chosen].expand(3, -1))
    assert torch.equal(w[:, chosen], theta)
    assert not torch.equal(w[0], w[1])  # the searched entries start individual


def test_magnitude_selection_takes_the_largest_initial_weights() -> None:
    """`magnitude` picks the k entries of largest |init|; `random` does not (for this seed)."""
    layouts = {s: ParamLayout() for s in ("magnitude", "random")}
    layers = {s: Linear(layouts[s], "fc", 12, 8, sparse=SparseChoice(1, s, 0), bias=False)
              for s in layouts}
    base = layers["magnitude"].sparse.base.abs()
    assert torch.equal(layers["random"].sparse.base, layers["magnitude"].sparse.base)
    for selection, expected in (("magnitude", True), ("random", False)):
        chosen = torch.zeros(96, dtype=torch.bool)
        chosen[layers[selection].sparse.index] = True
        assert (base[chosen].min() >= base[~chosen].max()).item() is expected


def test_sparse_k_is_capped_at_the_matrix_size() -> None:
    """Rank 8 of a (16 → 8) layer would search 8·24 = 192 > 128 entries: k is 128, i.e. dense."""
    layout = ParamLayout()
    Linear(layout, "fc", 16, 8, sparse=SparseChoice(8, "random", 0), bias=False)
    assert layout.dim == 128


def test_halfcheetah_sparse_control_searches_its_factorization_s_size(capsys) -> None:
    """The sparse control of an RL task (HalfCheetah's `sparse-r4`) is a same-size comparison
    only if it searches exactly what the factorized config does, layer by layer (1,354 here)."""
    from neuroevo.cli import main

    searched = {}
    for variant in ("factorized", "sparse"):
        config = f"configs/mujoco/halfcheetah/{variant}.yaml"
        assert main(["describe", config, "--json", "--preset", "cpu"]) == 0
        report = json.loads(capsys.readouterr().out)
        searched[variant] = {row["layer"]: row["searched"] for row in report["layers"]}
        assert report["totals"]["searched"] == sum(searched[variant].values())
    assert searched["sparse"] == searched["factorized"]
    assert sum(searched["sparse"].values()) == 1_354  # of the dense network's 5,702


def test_sparse_frozen_weights_and_choice_are_a_function_of_the_seed() -> None:
    """The same sparse seed gives the same frozen matrix and entries; another seed, others."""
    def layer(seed: int) -> Linear:
        return Linear(ParamLayout(), "fc", 12, 8, sparse=SparseChoice(2, "random", seed))
    a, b, c = layer(1), layer(1), layer(2)
    assert torch.equal(a.sparse.base, b.sparse.base) and torch.equal(a.sparse.index, b.sparse.index)
    assert not torch.equal(a.sparse.base, c.sparse.base)
    assert not torch.equal(a.sparse.index, c.sparse.index)


def test_sparse_transformer_batched_forward_equals_per_individual() -> None:
    """Scoring P sparse individuals at once equals scoring each alone (atol 1e-5)."""
    model = Transformer(ModelConfig(), EncodingConfig("sparse", 2, {"embedding": 4}), VOCAB)
    theta = _population(model.layout, 4)
    lengths = torch.tensor([10, 7, 3])
    tokens = torch.randint(3, VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))
    tokens[torch.arange(10)[None, :] >= lengths[:, None]] = 0
    batched = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    alone = torch.cat([model.negative_cross_entropy(model.layout.views(theta[i:i + 1]), tokens,
                                                    lengths) for i in range(4)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_sparse_embedding_and_conv_develop_like_their_dense_twins() -> None:
    """A sparse tied embedding looks up rows of its developed E; a sparse conv is F.conv2d with
    its developed kernel, per individual."""
    layout = ParamLayout()
    embedding = TiedEmbedding(layout, "embed", 20, 6, sparse=SparseChoice(1, "random", 0))
    conv = Conv2d(layout, "conv", 2, 3, kernel=3, stride=1, sparse=SparseChoice(1, "magnitude", 0))
    assert layout.dim == 1 * (20 + 6) + 20 + 1 * (2 * 9 + 3) + 3  # values + out_bias, values + bias
    theta = _population(layout, 2)
    p = layout.views(theta)
    tokens = torch.tensor([0, 5, 19])
    assert torch.equal(embedding.embed(p, tokens), embedding.output_projection(p)[0][:, tokens])
    x = torch.randn(4, 2, 7, 7)
    y = conv(p, x.repeat(1, 2, 1, 1))                                         # (N, P·3, 5, 5)
    kernel = conv.developed_kernel(p)
    for i in range(2):
        expected = F.conv2d(x, kernel[i], p["conv.bias"][i])
        torch.testing.assert_close(y[:, 3 * i:3 * i + 3], expected, rtol=1e-5, atol=1e-5)


def test_sparse_searches_what_the_factorization_of_the_same_rank_searches() -> None:
    """configs/tinystories/sparse.yaml's ranks give the factorized encoding's searched dimensions
    (75,571) minus the 1,024 that the rank-32 embedding's cap at 2051·32 entries removes."""
    ranks = {"embedding": 32}
    factorized = Transformer(ModelConfig(), EncodingConfig("factorized", 4, ranks), 2051).layout
    sparse = Transformer(ModelConfig(), EncodingConfig("sparse", 4, ranks), 2051).layout
    assert factorized.searched_dim == 75_571
    assert sparse.searched_dim == 75_571 - (32 * (2051 + 32) - 2051 * 32)


def test_sparse_keys_stay_out_of_dense_and_factorized_configs() -> None:
    """The sparse settings enter a config's dict (and digest) only for the sparse kind."""
    assert "sparse_seed" not in EncodingConfig("factorized", 4).to_dict()
    assert EncodingConfig("sparse", 4, sparse_selection="magnitude").to_dict()["sparse_selection"] \
        == "magnitude"
    with pytest.raises(ValueError, match="sparse_selection"):
        EncodingConfig("sparse", sparse_selection="largest")
    sparse = EncodingConfig("sparse", 4, {"embedding": 32})
    assert sparse.rank_for("ff") is None
    assert sparse.sparse_for("embedding") == SparseChoice(32, "random", 0)


# --- the gradient-descent reference ------------------------------------------------------------

def _tiny_config(path: str, overrides: list[str], *extra: str):
    from neuroevo.config import load_config
    return load_config(path, None, overrides + ["device=cpu", *extra])


def test_gradient_descent_lowers_the_loss(tiny_lm_overrides: list[str], tmp_path) -> None:
    """Adam on the dense tiny LM ends with a higher fitness (lower CE) than it started."""
    import pandas as pd

    from neuroevo.gradient import GradientConfig, train

    config = _tiny_config("configs/tinystories/dense.yaml", tiny_lm_overrides)
    summary = train(config, tmp_path, GradientConfig(lr=1e-2, steps=15), progress=False)
    log = pd.read_csv(tmp_path / "gradient.csv")
    assert list(log["step"]) == list(range(1, 16))
    assert list(log["forward_passes"]) == [3.0 * s for s in range(1, 16)]
    assert log["fitness"].iloc[-1] > log["fitness"].iloc[0] + 0.5
    assert summary["trained_dims"] == summary["searched_dims"]


def test_gradient_budget_matches_the_ga_forward_passes(tiny_lm_overrides: list[str]) -> None:
    """population 8 × 3 generations = 24 forward passes buy 24 / 3 = 8 Adam steps."""
    from neuroevo.gradient import matched_steps

    config = _tiny_config("configs/tinystories/dense.yaml", tiny_lm_overrides)
    assert matched_steps(config, forward_cost=3.0) == 8


def test_lora_style_descent_moves_only_the_factors(tiny_lm_overrides: list[str], tmp_path) -> None:
    """The factorized GD run trains the factor entries and leaves biases, output bias and layer
    norms exactly at the GA's first initial individual."""
    from neuroevo.gradient import GradientConfig, train
    from neuroevo.run import build_task

    config = _tiny_config("configs/tinystories/factorized.yaml", tiny_lm_overrides)
    summary = train(config, tmp_path, GradientConfig(lr=1e-2, steps=4), progress=False)
    layout = build_task(config, torch.device("cpu")).layout
    start = initial_weights(layout, [summary["init_seed"]], torch.device("cpu"))
    after = torch.load(tmp_path / "weights.pt")
    moved = {name: not torch.equal(a, b) for (name, a), b in
             zip(layout.views(after).items(), layout.views(start).values())}
    factors = {spec.name for spec in layout.specs if spec.factor}
    assert {name for name, m in moved.items() if m} == factors
    assert summary["trained_dims"] == sum(spec.numel for spec in layout.specs if spec.factor)


# --- mutation effects ---------------------------------------------------------------------------

def test_mutation_effects_probe_the_runs_own_survivors(tiny_lm_overrides: list[str],
                                                       tmp_path) -> None:
    """Probing leaves the GA's trajectory alone: the best survivor probed at a generation has the
    fitness `neuroevo run` logs as that generation's best, and delta = child − parent."""
    import pandas as pd

    from neuroevo.mutation_effects import ProbeConfig, probe
    from neuroevo.run import run

    config = _tiny_config("configs/tinystories/factorized.yaml", tiny_lm_overrides)
    run(config, tmp_path / "run", progress=False)
    logged = pd.read_csv(tmp_path / "run" / "fitness.csv").set_index("generation")["best"]
    probe(config, tmp_path / "probe", ProbeConfig((1, 3), parents=2, mutations=5), progress=False)
    table = pd.read_csv(tmp_path / "probe" / "mutation_effects.csv")
    assert len(table) == 2 * 2 * 5
    assert set(table["parent"]) == {0, 1}  # ga.elites = 2: both survivors
    best = table[table["parent"] == 0].groupby("generation")["parent_fitness"].first()
    assert best.to_dict() == {g: logged[g] for g in (1, 3)}
    assert (table["delta"] == table["child_fitness"] - table["parent_fitness"]).all()
    assert table["delta"].abs().gt(0).all() and table["env_steps"].isna().all()


def test_mutation_effects_reject_generations_outside_the_run(tiny_lm_overrides: list[str],
                                                             tmp_path) -> None:
    """A probed generation beyond ga.generations stops before any compute, naming the bound."""
    from neuroevo.mutation_effects import ProbeConfig, probe
    from neuroevo.run import RunError

    config = _tiny_config("configs/tinystories/dense.yaml", tiny_lm_overrides)
    with pytest.raises(RunError, match=r"outside 1\.\.3"):
        probe(config, tmp_path, ProbeConfig((4,)), progress=False)


# --- the analyses, on synthetic tables with known answers ---------------------------------------

def _task(variants: dict[str, int | None]):
    from neuroevo.analysis.grid import Task, Variant

    return Task(name="lm", family="tinystories", title="LM", series="best", ylabel="−CE",
                seeds=(0, 1, 2), compare=(), treatment=None,
                variants=tuple(Variant(v, "c.yaml", {}, r, None) for v, r in variants.items()))


def _write_seed_tables(root, name: str, tables: dict[tuple[str, int], "object"]) -> list:
    paths = []
    for (variant, seed), table in tables.items():
        path = root / "lm" / variant / f"seed{seed}" / name
        path.parent.mkdir(parents=True)
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def test_mutation_effect_statistics_of_a_known_delta_table(tmp_path) -> None:
    """Deltas (−0.5, −0.1, 0, 0.0005, 0.2) at tol 1e-3: 1/5 beneficial, 2/5 neutral, 2/5
    deleterious, mean deleterious harm 0.3, mean benefit 0.2, median 0; per generation too."""
    import pandas as pd

    from neuroevo.analysis import beyond_mutations

    probes = pd.DataFrame({"generation": [1, 1, 2, 2, 2], "mutation_seed": [7, 8, 9, 10, 11],
                           "delta": [-0.5, -0.1, 0.0, 5e-4, 0.2],
                           "env_steps": [100.0, 100.0, 50.0, 50.0, 50.0]})
    paths = _write_seed_tables(tmp_path, "mutation_effects.csv", {("dense", 0): probes})
    table = beyond_mutations.summarize(beyond_mutations.load(paths), tolerance=1e-3)
    overall = table[table["generation"] == "all"].iloc[0]
    assert (overall["n"], overall["beneficial"], overall["neutral"], overall["deleterious"]) \
        == (5, 0.2, 0.4, 0.4)
    assert overall["mean_deleterious"] == pytest.approx(0.3)
    assert (overall["mean_beneficial"], overall["median_delta"]) == (0.2, 0.0)
    assert overall["env_steps"] == pytest.approx(70.0)
    by_generation = table.set_index("generation")
    assert by_generation.loc["1", "deleterious"] == 1.0
    assert by_generation.loc["2", "neutral"] == 2 / 3
    files = beyond_mutations.figure(beyond_mutations.load(paths), _task({"dense": None}), "quick",
                                    tmp_path / "fig", 1e-3)
    assert all(f.stat().st_size > 0 for f in files)


def test_mutation_effect_fractions_recover_a_known_distribution(tmp_path) -> None:
    """20,000 deltas ~ N(−0.1, 0.1²) with tol 0.05: the beneficial and deleterious fractions are
    the normal's P(Δ > 0.05) and P(Δ < −0.05) within sampling error (±0.01), and the mean harm is
    the truncated normal's E[−Δ | Δ < −0.05]."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from neuroevo.analysis import beyond_mutations

    delta = np.random.default_rng(0).normal(-0.1, 0.1, 20_000)
    probes = pd.DataFrame({"task": "lm", "variant": "f", "generation": 1, "delta": delta})
    row = beyond_mutations.summarize(probes, tolerance=0.05).iloc[0]
    normal = stats.norm(-0.1, 0.1)
    assert row["beneficial"] == pytest.approx(normal.sf(0.05), abs=0.01)
    assert row["deleterious"] == pytest.approx(normal.cdf(-0.05), abs=0.01)
    truncated = stats.truncnorm(-np.inf, (-0.05 + 0.1) / 0.1, loc=-0.1, scale=0.1)
    assert row["mean_deleterious"] == pytest.approx(-truncated.mean(), abs=0.003)


def test_a_diverged_child_counts_as_deleterious() -> None:
    """A child whose fitness is NaN (it diverged; the GA ranks it as −inf) is deleterious, not
    neutral, and leaves the mean magnitude of the finite ones as it is."""
    import numpy as np
    import pandas as pd

    from neuroevo.analysis import beyond_mutations

    delta = pd.Series([np.nan, -0.5, 0.0, 0.3])
    assert beyond_mutations.classify(delta, 0.1).tolist() == [
        "deleterious", "deleterious", "neutral", "beneficial"]
    probes = pd.DataFrame({"task": "lm", "variant": "f", "generation": 1, "delta": delta})
    row = beyond_mutations.summarize(probes, tolerance=0.1).iloc[0]
    assert row["deleterious"] == 0.5 and row["mean_deleterious"] == 0.5


def test_gradient_table_finds_the_forward_passes_adam_needs_to_match_the_ga(tmp_path) -> None:
    """GA: 8 evaluations per generation for 3 generations, best = generation (final 3 after 24
    passes); Adam: fitness = step after 3·step passes, so it reaches 3 at step 3 = 9 passes."""
    import pandas as pd

    from neuroevo.analysis import beyond_gradient

    long = pd.DataFrame([{"task": "lm", "variant": "dense", "seed": s, "generation": g,
                          "best": float(g), "evaluations": 8} for s in (0, 1) for g in (1, 2, 3)])
    logs = {("dense", s): pd.DataFrame({"step": range(1, 9), "forward_passes": [3.0 * i for i in
                                                                               range(1, 9)],
                                        "fitness": [float(i) for i in range(1, 9)]})
            for s in (0, 1)}
    paths = _write_seed_tables(tmp_path, "gradient.csv", logs)
    task = _task({"dense": None})
    curves = beyond_gradient.curves(long, beyond_gradient.load(paths), task)
    assert curves.loc[curves["method"] == "GA", "forward_passes"].max() == 24
    table = beyond_gradient.table(curves, task).set_index("method")
    assert table.loc["GA", "final_mean"] == 3.0 and table.loc["GD", "final_mean"] == 8.0
    assert table.loc["GD", "passes_to_ga_final"] == 9.0
    assert table.loc["GD", "share_of_ga_budget"] == pytest.approx(9 / 24)
    assert all(f.stat().st_size > 0 for f in beyond_gradient.figure(curves, task, "quick",
                                                                     tmp_path / "fig"))


def test_collected_logs_are_the_run_directories_files_in_one_table(tmp_path) -> None:
    """`collect-logs` writes what the analyses read (committed with a preset, so that a redraw
    needs no engine run): every run's rows with task, variant and seed, as `load` gives them."""
    import pandas as pd

    from neuroevo.analysis import beyond_gradient
    from neuroevo.analysis.__main__ import main

    logs = {(variant, s): pd.DataFrame({"step": [1, 2], "forward_passes": [3.0, 6.0],
                                        "fitness": [-2.5 - s, -1.0 / 3.0]})
            for variant in ("dense", "factorized-r4") for s in (0, 1)}
    paths = _write_seed_tables(tmp_path, "gradient.csv", logs)
    out = tmp_path / "tables" / "lm_gradient_logs.csv"
    out.parent.mkdir()
    assert main(["collect-logs", "--item", "gradient", "--logs", *map(str, paths),
                 "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), beyond_gradient.load(paths))
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind


def _runs_table():
    """runs.csv rows: factorized r1/r4, sparse-random r1/r4, a magnitude r4 and small; 3 seeds."""
    import pandas as pd

    spec = {  # variant: (scheme, rank, searched, scores of seeds 0..2)
        "factorized-r1": ("factorized", 1, 13_000, [-8.0, -8.2, -8.1]),
        "factorized-r4": ("factorized", 4, 75_000, [-7.0, -7.1, -6.9]),
        "sparse-r1": ("sparse-random", 1, 12_900, [-9.0, -9.1, -8.9]),
        "sparse-r4": ("sparse-random", 4, 74_000, [-7.5, -7.6, -7.4]),
        "sparse-magnitude-r4": ("sparse-magnitude", 4, 74_000, [-7.2, -7.3, -7.1]),
        "small": ("dense", None, 11_600, [-9.5, -9.6, -9.4]),
    }
    rows = [{"task": "lm", "variant": v, "scheme": scheme, "encoding": scheme.split("-")[0],
             "rank": rank, "seed": seed, "params_searched": searched, "final_score": score}
            for v, (scheme, rank, searched, scores) in spec.items()
            for seed, score in enumerate(scores)]
    runs = pd.DataFrame(rows)
    runs["rank"] = runs["rank"].astype("Int64")
    ranks = {v: s[1] for v, s in spec.items()}
    return runs, _task(ranks)


def test_rank_study_table_orders_schemes_by_rank_with_their_means(tmp_path) -> None:
    """One row per variant with its scheme, rank, searched dimensions and mean over seeds;
    factorized, then sparse random, then sparse magnitude, each by rank, then the unranked."""
    from neuroevo.analysis import beyond_search

    runs, task = _runs_table()
    table = beyond_search.rank_table(runs, task)
    assert list(table["variant"]) == ["factorized-r1", "factorized-r4", "sparse-r1", "sparse-r4",
                                      "sparse-magnitude-r4", "small"]
    row = table.set_index("variant").loc["sparse-r4"]
    assert (row["scheme"], row["rank"], row["searched"]) == ("sparse-random", 4, 74_000)
    assert row["mean"] == pytest.approx(-7.5) and row["ci95_low"] < -7.5 < row["ci95_high"]
    assert all(f.stat().st_size > 0 for f in beyond_search.rank_figure(runs, task, "quick",
                                                                        tmp_path / "fig"))


def test_sparse_table_pairs_sparse_with_the_factorization_of_its_rank(tmp_path) -> None:
    """Sparse r1 vs factorized r1: difference 0.9; sparse r4 vs factorized r4: 0.5; the
    magnitude variant: 0.2; fully separated seeds give Glass's Δ = diff / std(sparse, ddof 0)."""
    import numpy as np

    from neuroevo.analysis import beyond_search

    runs, task = _runs_table()
    table = beyond_search.sparse_table(runs, task).set_index("sparse")
    assert table.loc["sparse-r1", "factorized"] == "factorized-r1"
    assert table.loc["sparse-r1", "difference"] == pytest.approx(0.9)
    assert table.loc["sparse-r4", "difference"] == pytest.approx(0.5)
    assert table.loc["sparse-magnitude-r4", "difference"] == pytest.approx(0.2)
    assert table.loc["sparse-r4", "glass_delta"] == pytest.approx(0.5 / np.std([-7.5, -7.6, -7.4]))
    assert table.loc["sparse-r4", "mannwhitney_p"] == pytest.approx(0.1)  # exact, 3 vs 3, separated
    assert table.loc["sparse-r4", "vargha_delaney_a"] == 1.0  # every factorized seed above
    assert all(f.stat().st_size > 0 for f in beyond_search.sparse_figure(runs, task, "quick",
                                                                         tmp_path / "fig"))
    with pytest.raises(ValueError, match="needs exactly one factorized variant of rank 1"):
        beyond_search.sparse_table(runs[runs["variant"] != "factorized-r1"], task)


def test_report_gains_a_beyond_section_in_item_order(tmp_path) -> None:
    """Given beyond tables and figures, the report's Markdown ends with "Beyond the paper", one
    subsection per item in the issue's order, each with its figure and table."""
    from neuroevo.analysis import beyond

    for stem in ("car_racing_mutation_effects", "lm_sparse", "lm_gradient"):
        (tmp_path / f"{stem}.md").write_text(f"| table {stem} |\n")
        (tmp_path / f"{stem}.png").write_bytes(b"png")
    text = beyond.section(sorted(tmp_path.glob("*.md")), sorted(tmp_path.glob("*.png")),
                          image_src=lambda p: p.name)
    assert text.startswith("## Beyond the paper")
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == ["### Mutation effects — car_racing", "### Gradient-descent reference — lm",
                        "### Sparse encoding: structure or size? — lm"]
    assert "![Gradient-descent reference: lm](lm_gradient.png)" in text
    assert "| table lm_sparse |" in text
    with pytest.raises(ValueError, match="not a beyond-the-paper output"):
        beyond.split("lm_fitness")


@pytest.mark.parametrize("option, message", [
    (["--lr", "-1"], "--lr must be positive, got -1.0"),
    (["--forward-cost", "0"], "--forward-cost must be positive, got 0.0"),
    (["--steps", "0"], "--steps must be at least 1 (or left out: the GA's budget), got 0"),
    (["--steps", "-5"], "--steps must be at least 1"),
])
def test_gradient_options_adam_cannot_use_fail_in_one_line(
        tiny_lm_overrides: list[str], tmp_path, capsys, option: list[str], message: str) -> None:
    """A step size, cost or step count Adam or the budget cannot use is refused before the
    task is built, and nothing is written (not a header-only gradient.csv)."""
    from neuroevo.cli import main

    out = tmp_path / "gd"
    sets = [arg for item in tiny_lm_overrides for arg in ("--set", item)]
    assert main(["gradient", "configs/tinystories/dense.yaml", *sets, "--out", str(out),
                 "--quiet", *option]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {message}" or error.startswith(f"error: {message}")
    assert not out.exists()


def test_gradient_of_a_factorized_model_with_dense_layer_types_is_refused(
        tiny_lm_overrides: list[str], tmp_path, capsys) -> None:
    """Adam trains a factorized model's factors only (LoRA-style); with a layer type left dense
    (encoding.ranks null) that has no counterpart, so the command stops in one line, writing
    nothing."""
    from neuroevo.cli import main

    out = tmp_path / "gd"
    sets = [arg for item in [*tiny_lm_overrides, "encoding.ranks.embedding=null"]
            for arg in ("--set", item)]
    assert main(["gradient", "configs/tinystories/factorized.yaml", *sets, "--out", str(out),
                 "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "layer types left dense (encoding.ranks null)" in error
    assert len(error.splitlines()) == 1 and not out.exists()


def test_help_shows_the_defaults_that_exist(capsys) -> None:
    """Each subcommand's --help gives an option's default where it has one, and no
    "(default: None)" noise for unset options and flags."""
    from neuroevo.cli import main

    with pytest.raises(SystemExit):
        main(["gradient", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Adam step size (default: 0.003)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("command", [["gradient"], ["mutation-effects", "--generations", "1"]])
def test_an_out_that_is_a_file_fails_in_one_line_for_the_analyses(
        tiny_lm_overrides: list[str], tmp_path, capsys, command: list[str]) -> None:
    """The analyses' --out is checked as `run`'s is: a file there is one line, left as it was."""
    from neuroevo.cli import main

    typo = tmp_path / "typo.csv"
    typo.write_text("not a directory\n")
    sets = [arg for item in tiny_lm_overrides for arg in ("--set", item)]
    assert main([command[0], "configs/tinystories/dense.yaml", *command[1:], *sets,
                 "--out", str(typo), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --out {typo}: {typo} is a file, not a directory: choose another --out")
    assert typo.read_text() == "not a directory\n"


def _paper_layouts(kind: str, factor_init: str = "reference") -> list[ParamLayout]:
    """The paper's CarRacing, Frostbite and language networks under one encoding kind, at the
    ranks of their factorized configs (1; 4; 4 with a rank-32 embedding)."""
    from neuroevo.models.atari_cnn import atari_cnn
    from neuroevo.models.car_racing_cnn import car_racing_cnn
    from neuroevo.sections.atari import ModelConfig as AtariModel
    from neuroevo.sections.car_racing import ModelConfig as CarRacingModel

    def encoding(rank: int, ranks: dict | None = None) -> EncodingConfig:
        return EncodingConfig(kind, rank, ranks or {}, factor_init=factor_init)

    return [car_racing_cnn(CarRacingModel(), encoding(1)).layout,
            atari_cnn(AtariModel(), encoding(4), n_actions=18).layout,
            Transformer(ModelConfig(), encoding(4, {"embedding": 32}), 2051).layout]


def test_factor_init_dense_starts_every_factorized_matrix_at_the_dense_std() -> None:
    """`encoding.factor_init: dense` scales both factors of every matrix so that W starts at the
    std of the same layer dense (a tied embedding's: 1), where the reference starts most above
    it; it leaves every mutation std, and every spec but the factors' initial std, as the
    reference's."""
    dense, reference = _paper_layouts("dense"), _paper_layouts("factorized")
    rescaled = _paper_layouts("factorized", factor_init="dense")
    for dense_net, reference_net, rescaled_net in zip(dense, reference, rescaled, strict=True):
        dense_std = {row["layer"]: row["w_init_std"] for row in dense_net.rows}
        moved = 0
        for row, before in zip(rescaled_net.rows, reference_net.rows, strict=True):
            if row["w_init_std"] is not None:
                assert row["w_init_std"] == pytest.approx(dense_std[row["layer"]], rel=1e-9)
                moved += not math.isclose(before["w_init_std"], row["w_init_std"])
        assert moved >= 3  # the reference's starts differ from dense's in each of these networks
        for spec, before in zip(rescaled_net.specs, reference_net.specs, strict=True):
            assert (spec.name, spec.shape, spec.mutation_std) == \
                (before.name, before.shape, before.mutation_std)
            if not spec.factor:
                assert spec.init_std == before.init_std
        # both factors of a matrix scaled alike: A's and B's ratios to the reference's agree
        ratios: dict[str, list[float]] = {}
        for spec, before in zip(rescaled_net.specs, reference_net.specs, strict=True):
            if spec.factor:
                ratios.setdefault(spec.name.rsplit(".", 1)[0], []).append(
                    spec.init_std / before.init_std)
        assert all(a == pytest.approx(b) for a, b in ratios.values())


def test_factor_init_dense_develops_weights_of_the_dense_spread() -> None:
    """Initial genomes of rescaled factors develop a linear W and a convolution kernel whose
    entries spread as the dense layers' (16 draws, within 10%)."""
    from neuroevo.layers import developed_linear_weight

    layout = ParamLayout()
    linear = Linear(layout, "hidden", 1024, 256, rank=1, dense_start=True)
    conv = Conv2d(layout, "conv", 64, 128, 4, 2, rank=1, dense_start=True)
    params = layout.views(initial_weights(layout, list(range(16)), torch.device("cpu")))
    assert developed_linear_weight(linear, params).std().item() == \
        pytest.approx(math.sqrt(2 / 1024), rel=0.1)
    assert conv.developed_kernel(params).std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.1)


def test_factor_init_stays_out_of_the_reference_configs_and_off_other_kinds() -> None:
    """Only a non-reference `factor_init` enters the config's dict (and digest), and only the
    factorized kind takes one; an unknown value is named."""
    assert "factor_init" not in EncodingConfig("factorized", 4).to_dict()
    assert EncodingConfig("factorized", 4, factor_init="dense").to_dict()["factor_init"] == "dense"
    with pytest.raises(ValueError, match="encoding.factor_init must be one of reference, dense"):
        EncodingConfig("factorized", factor_init="kaiming")
    with pytest.raises(ValueError, match="applies to factors only.*encoding.kind: factorized"):
        EncodingConfig("dense", factor_init="dense")
