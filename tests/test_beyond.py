"""Beyond the paper (issue #7): the sparse encoding, mutation effects, the gradient-descent
reference and the search-space analyses, each pinned on tiny or synthetic inputs with known answers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuroevo.encoding import EncodingConfig, ParamLayout, SparseChoice
from neuroevo.genome import initial_weights
from neuroevo.layers import Conv2d, Linear, TiedEmbedding
from neuroevo.models.transformer import ModelConfig, Transformer

VOCAB = 61


def _population(layout: ParamLayout, size: int = 3) -> torch.Tensor:
    return initial_weights(layout, list(range(size)), torch.device("cpu"))


# --- the sparse encoding ---------------------------------------------------------------------

@pytest.mark.parametrize("selection", ["random", "magnitude"])
def test_sparse_linear_genome_holds_k_entries_and_the_rest_is_the_frozen_init(selection: str) -> None:
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
