"""The engine's pieces on tiny inputs: noise, encodings' init/mutation scales, genomes, the GA."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from neuroevo.encoding import EncodingError, ParamLayout
from neuroevo.ga import GeneticAlgorithm
from neuroevo.genome import Genome, develop, initial_weights
from neuroevo.layers import Linear
from neuroevo.models.transformer import Transformer
from neuroevo.noise import gaussian, gaussian_reference
from neuroevo.sections.encoding import EncodingConfig, SparseChoice
from neuroevo.sections.ga import GAConfig
from neuroevo.sections.language import ModelConfig

PAPER_VOCAB = 2051


def test_noise_matches_pure_python_reference() -> None:
    """The tensor noise equals the integer-exact Python spec to float32 rounding, for any offset.
    The spec shares the hash constants and stream keys, so a stream's first values are pinned
    too: saved seed chains (results/*/elite.json, checkpoints) re-develop only from this stream."""
    for seed, start in [(0, 0), (12345, 0), (2**31 - 1, 1000)]:
        tensor = gaussian([seed], 300, start=start)[0]
        reference = torch.tensor(gaussian_reference(seed, 300, start), dtype=torch.float32)
        torch.testing.assert_close(tensor, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gaussian([0, 12345], 4, start=1000)[1],
                               torch.tensor([-0.546313, 0.086543, 0.058549, -0.274155]))
    torch.testing.assert_close(gaussian([0], 4)[0],
                               torch.tensor([-0.526439, 0.245294, -0.779514, -0.753951]))


def test_noise_rows_are_independent_of_batching() -> None:
    """Row s of a batched draw equals the same seed drawn alone (bit for bit on one device)."""
    batched = gaussian([3, 9, 27], 640)
    assert torch.equal(batched[1], gaussian([9], 640)[0])


def test_noise_is_standard_normal() -> None:
    """Two streams of 500,000 draws each have mean ≈ 0, std ≈ 1 and Gaussian tails (bounds about
    four standard errors out), and different seeds are uncorrelated."""
    x = gaussian([1, 2], 500_000)
    for row in x:
        assert abs(row.mean().item()) < 0.006 and abs(row.std().item() - 1) < 0.004
        assert abs((row.abs() > 2).float().mean().item() - 0.0455) < 0.0012
    assert abs(torch.corrcoef(x)[0, 1].item()) < 0.006


def _paper_layout(encoding: EncodingConfig, **model) -> ParamLayout:
    return Transformer(ModelConfig(**model), encoding, PAPER_VOCAB).layout


@pytest.mark.parametrize("encoding, model, genome", [
    (EncodingConfig("dense"), {}, 99_507),
    (EncodingConfig("factorized", 4, {"embedding": 32}), {}, 75_955),
    (EncodingConfig("dense"), {"hidden": 4, "ff": 16}, 11_671),
    (EncodingConfig("factorized", 1, {"embedding": 4}), {}, 13_023),
])
def test_genome_sizes_match_the_paper(encoding: EncodingConfig, model: dict, genome: int) -> None:
    """Genome dimensions equal the reference's counts for the four TinyStories conditions."""
    layout = _paper_layout(encoding, **model)
    assert layout.dim == genome
    layer_norms = 3 * 2 * 2 * model.get("hidden", 32)
    assert layout.searched_dim == genome - layer_norms


def test_factor_init_and_mutation_scales_follow_the_reference() -> None:
    """Factor stds use the in>out rule and mutate at √mr; dense weights Kaiming at mr; biases √2·mr."""
    layout = ParamLayout()
    Linear(layout, "wide", d_in=128, d_out=32, rank=4)     # in > out: √(2/fan_in)
    Linear(layout, "tall", d_in=32, d_out=128, rank=4)     # in ≤ out: √(√2/fan_in)
    Linear(layout, "dense", d_in=32, d_out=16)
    specs = {s.name: s for s in layout.specs}
    assert specs["wide.B"].init_std == pytest.approx(math.sqrt(2 / 128))
    assert specs["wide.A"].init_std == pytest.approx(math.sqrt(2 / 4))
    assert specs["tall.B"].init_std == pytest.approx(math.sqrt(math.sqrt(2) / 32))
    assert specs["tall.A"].init_std == pytest.approx(math.sqrt(math.sqrt(2) / 4))
    std = layout.mutation_std(0.01)
    start = layout.offsets["wide.B"]
    assert std[start].item() == pytest.approx(math.sqrt(2 / 128) * 0.1)     # √0.01 for factors
    start = layout.offsets["dense.weight"]
    assert std[start].item() == pytest.approx(math.sqrt(2 / 32) * 0.01)
    start = layout.offsets["dense.bias"]
    assert std[start].item() == pytest.approx(math.sqrt(2) * 0.01)
    assert layout.init_std()[start].item() == 0.0                            # biases start at 0


def test_conv_and_embedding_factor_scales_follow_the_reference() -> None:
    """Conv factors always take the √(√2/fan_in) branch (fan_in of A: r, of B: c_out), even where
    the kernel's fan_in exceeds c_out; the tied embedding (32 × 2051, in > out) takes √(2/fan_in)
    (B: the vocabulary, A: the rank); the unfactorized embedding starts at N(0, 1)."""
    from neuroevo.layers import Conv2d, TiedEmbedding

    layout = ParamLayout()
    Conv2d(layout, "conv", c_in=12, c_out=32, kernel=8, stride=4, rank=4)  # fan_in 768 > 32
    TiedEmbedding(layout, "embed", vocab=2051, hidden=32, rank=32)
    TiedEmbedding(layout, "plain", vocab=2051, hidden=32)
    specs = {s.name: s for s in layout.specs}
    assert specs["conv.A"].init_std == pytest.approx(math.sqrt(math.sqrt(2) / 4))
    assert specs["conv.B"].init_std == pytest.approx(math.sqrt(math.sqrt(2) / 32))
    assert specs["embed.B"].init_std == pytest.approx(math.sqrt(2 / 2051))
    assert specs["embed.A"].init_std == pytest.approx(math.sqrt(2 / 32))
    assert specs["plain.weight"].init_std == 1.0
    std = layout.mutation_std(0.01)
    assert std[layout.offsets["conv.A"]].item() == pytest.approx(math.sqrt(math.sqrt(2) / 4) * 0.1)
    assert std[layout.offsets["plain.weight"]].item() == pytest.approx(0.01)


def test_embedding_init_std_moves_where_the_embedding_starts_not_its_mutations() -> None:
    """`model.embedding_init_std` sets the std of E's initial entries, E itself or the factors'
    product (both factors scaled alike, so the product of rank r has std init_std), the frozen
    part of a sparse E too; every mutation std stays the reference's. Measured on developed
    initial genomes, not only read off the specs."""
    from neuroevo.layers import TiedEmbedding

    layout = ParamLayout()
    TiedEmbedding(layout, "fact", vocab=2051, hidden=32, rank=4, init_std=1.0)
    TiedEmbedding(layout, "plain", vocab=2051, hidden=32, init_std=0.05)
    sparse = TiedEmbedding(layout, "sparse", vocab=2051, hidden=32,
                           sparse=SparseChoice(1, "random", 0), init_std=0.05)
    reference = ParamLayout()
    TiedEmbedding(reference, "fact", vocab=2051, hidden=32, rank=4)
    TiedEmbedding(reference, "plain", vocab=2051, hidden=32)
    specs = {s.name: s for s in layout.specs}
    stds = {s.name: s.mutation_std for s in reference.specs}
    assert specs["fact.B"].init_std * specs["fact.A"].init_std * 2 == pytest.approx(1.0)
    assert specs["fact.B"].init_std / specs["fact.A"].init_std == pytest.approx(
        stds["fact.B"] / stds["fact.A"])                                    # scaled alike
    assert specs["plain.weight"].init_std == 0.05
    assert [specs[name].mutation_std for name in ("fact.B", "fact.A", "plain.weight")] == [
        stds["fact.B"], stds["fact.A"], stds["plain.weight"]]
    assert specs["sparse.values"].init_std == 0.05 and specs["sparse.values"].mutation_std == 1.0
    assert sparse.sparse.base.std().item() == pytest.approx(0.05, rel=0.02)

    theta = initial_weights(layout, [7], torch.device("cpu"))[0]
    params = layout.views(theta.unsqueeze(0))
    product = params["fact.B"][0] @ params["fact.A"][0]                      # (2051, 32) = E
    assert product.std().item() == pytest.approx(1.0, rel=0.1)
    assert params["plain.weight"][0].std().item() == pytest.approx(0.05, rel=0.02)


def test_describe_states_where_each_developed_weight_starts() -> None:
    """The `W init std` that `describe` prints per layer is the std of the developed W's entries
    in initial genomes: W itself, a sparse W (its frozen part too), the product of a linear
    layer's factors, a convolution's halved product, a tied embedding's, with or without
    `embedding_init_std`; layer norms have none."""
    from neuroevo.layers import Conv2d, LayerNorm, TiedEmbedding, developed_linear_weight

    layout = ParamLayout()
    sparse = SparseChoice(4, "random", 0)
    linears = [Linear(layout, "dense", 256, 64), Linear(layout, "wide", 256, 64, rank=4),
               Linear(layout, "tall", 64, 256, rank=4), Linear(layout, "sparse", 256, 64, sparse=sparse)]
    convs = [Conv2d(layout, "conv", 16, 32, 4, 2), Conv2d(layout, "conv_r4", 16, 32, 4, 2, rank=4),
             Conv2d(layout, "conv_sparse", 16, 32, 4, 2, sparse=sparse)]
    embeddings = [TiedEmbedding(layout, "embed", 2051, 32, rank=4),
                  TiedEmbedding(layout, "embed_dense", 2051, 32, init_std=0.05)]
    LayerNorm(layout, "ln", 32)
    theta = initial_weights(layout, list(range(16)), torch.device("cpu"))  # products vary: 16 draws
    params = layout.views(theta)
    developed = {layer.name: developed_linear_weight(layer, params) for layer in linears}
    developed.update({conv.name: conv.developed_kernel(params) for conv in convs})
    for embedding in embeddings:
        table, factor = embedding.lookup_operands(params)  # E, or its factors B and A
        developed[embedding.name] = table if factor is None else torch.bmm(table, factor)

    stated = {row["layer"]: row["w_init_std"] for row in layout.rows}
    assert stated.pop("ln") is None
    assert stated.keys() == developed.keys()
    for name, weight in developed.items():
        assert weight.std().item() == pytest.approx(stated[name], rel=0.1), name
    assert stated["wide"] > stated["dense"] and stated["embed"] == pytest.approx(2 / math.sqrt(2051))


def test_rank_above_the_layer_is_rejected() -> None:
    """A rank larger than min(in, out) raises an EncodingError naming the layer."""
    with pytest.raises(EncodingError, match="blocks.0.attn.q"):
        _paper_layout(EncodingConfig("factorized", 20, {"embedding": 32}))


def test_an_unknown_encoding_kind_is_refused_where_it_is_built() -> None:
    """Built in code, not only through a config file: a kind no layer wires would otherwise
    develop every matrix as dense."""
    with pytest.raises(ValueError, match="unknown encoding 'lowrank'.*valid: dense, factorized"):
        EncodingConfig("lowrank")


def _toy_ga(population: int = 12, elites: int = 3, generations: int = 30) -> GeneticAlgorithm:
    layout = ParamLayout()
    Linear(layout, "a", 6, 5, rank=2)
    Linear(layout, "b", 5, 3)
    return GeneticAlgorithm(layout, GAConfig(population, elites, generations), seed=7)


def _toy_fitness(theta: torch.Tensor) -> torch.Tensor:
    return -(theta - 0.5).pow(2).sum(1)


def test_elites_survive_unmutated_and_first() -> None:
    """The top-k of a generation start the next one, in rank order, with identical weights."""
    ga = _toy_ga()
    theta = ga.ask().clone()
    fitness = _toy_fitness(theta)
    record = ga.tell(fitness)
    assert record.elite_indices == torch.argsort(-fitness)[:3].tolist()
    assert torch.equal(ga.ask()[:3], theta[record.elite_indices])
    assert ga.ask().shape == theta.shape


def test_a_tasks_ranking_decides_the_best_and_its_fitness() -> None:
    """With a task's own ranking (CarRacing's finalists) the first-ranked individual is the best,
    and the record carries its fitness, not the population's maximum (elite.json pairs them)."""
    ga = _toy_ga(population=8)
    fitness = torch.tensor([5.0, 1.0, 2.0, 3.0, 0.0, -1.0, -2.0, -3.0])
    record = ga.tell(fitness, order=torch.tensor([3, 0, 2, 1, 4, 5, 6, 7]))
    assert record.best_index == 3 and record.best_fitness == 3.0
    assert record.stats["best"] == 5.0
    assert record.elite_indices == [3, 0, 2]


def test_a_nan_fitness_ranks_last_and_shows_in_the_log_row() -> None:
    """A diverged individual (NaN fitness) is never an elite, even beside −inf; best and worst
    treat it as −inf, as the ranking does, while the mean is NaN so the log shows it."""
    ga = _toy_ga(population=6, elites=3)
    nan, inf = float("nan"), float("inf")
    record = ga.tell(torch.tensor([nan, 1.0, -inf, 2.0, nan, 0.5]))
    assert record.elite_indices == [3, 1, 5] and record.best_fitness == 2.0
    assert record.stats["best"] == 2.0 and record.stats["worst"] == -inf
    assert math.isnan(record.stats["mean"]) and record.stats["elite_mean"] == 3.5 / 3


@pytest.mark.parametrize("settings, message", [
    ({"population": 0}, "ga.population must be at least 1"),
    ({"generations": 0}, "ga.generations must be at least 1"),
    ({"n_back": 0}, "ga.n_back must be at least 1"),
    ({"elites": 9}, "ga.elites (9) must be between 1 and ga.population (8)"),
    ({"mutation_rates": ()}, "ga.mutation_rates must be a non-empty list"),
    ({"mutation_rates": (0.01, -0.1)}, "ga.mutation_rates must be a non-empty list"),
    ({"mutation_rates": (float("inf"),)}, "positive, finite rates"),
    ({"mutation_rates": (float("nan"),)}, "positive, finite rates"),
])
def test_ga_config_refuses_values_that_would_fail_mid_run(settings: dict, message: str) -> None:
    """Values that would otherwise fail after the first evaluation (an empty rate list at the
    first breeding, 0 generations at the summary) are refused when the config is built."""
    with pytest.raises(ValueError, match=re.escape(message)):
        GAConfig(**{"population": 8, "elites": 3, **settings})


def test_two_mutation_rates_round_trip_and_redevelop() -> None:
    """After many generations with several mutation rates (the n-back rule picks among them),
    each chain stores one rate per gene, survives the JSON round trip, and replayed from its
    seeds gives the GA's cached weights bit for bit (the GA mutates rows with the same ops)."""
    layout = ParamLayout()
    Linear(layout, "a", 6, 5, rank=2)
    Linear(layout, "b", 5, 3)
    ga = GeneticAlgorithm(layout, GAConfig(12, 3, 40, mutation_rates=(0.1, 0.01), n_back=2),
                          seed=7)
    for _ in range(25):
        ga.tell(_toy_fitness(ga.ask()))
    assert max(len(g.mutations) for g in ga.genomes) >= 10
    rates = {rate for genome in ga.genomes for _, rate in genome.mutations}
    assert rates == {0.1, 0.01}
    for genome, cached in zip(ga.genomes, ga.ask()):
        assert Genome.from_dict(genome.to_dict()) == genome
        assert torch.equal(develop(genome, ga.layout)[0], cached)


def test_tell_and_load_state_dict_refuse_what_does_not_fit() -> None:
    """A fitness vector of the wrong length, or a checkpoint of another run seed, is refused."""
    ga = _toy_ga()
    with pytest.raises(ValueError, match="fitness has shape"):
        ga.tell(torch.zeros(5))
    state = ga.state_dict()
    other = GeneticAlgorithm(ga.layout, ga.config, seed=8)
    with pytest.raises(ValueError, match="another seed"):
        other.load_state_dict(state)


def test_layer_norms_stay_frozen_through_evolution() -> None:
    """Layer norms are in the genome but never mutated: after generations of breeding every
    individual's scales are still 1 and shifts 0."""
    layout = _paper_layout(EncodingConfig("factorized", 4, {"embedding": 32}))
    ga = GeneticAlgorithm(layout, GAConfig(6, 2, 5), seed=3)
    for _ in range(3):
        ga.tell(torch.randn(6, generator=torch.Generator().manual_seed(ga.generation)))
    views = layout.views(ga.ask())
    norms = [name for name in views if ".ln" in name]
    assert norms
    for name in norms:
        expected = 1.0 if name.endswith("scale") else 0.0
        assert torch.equal(views[name], torch.full_like(views[name], expected)), name


def test_children_carry_one_new_gene_from_a_survivor() -> None:
    """Each child is a survivor's chain plus exactly one mutation gene at the configured rate."""
    ga = _toy_ga()
    ga.tell(_toy_fitness(ga.ask()))
    elites = ga.genomes[:3]
    for child in ga.genomes[3:]:
        parent = Genome(child.init_seed, child.mutations[:-1])
        assert parent in elites
        assert child.mutations[-1][1] == 0.01


def test_ga_improves_a_known_objective() -> None:
    """On a smooth toy objective the elite's fitness rises: selection and mutation point uphill."""
    ga = _toy_ga(population=32, elites=4, generations=60)
    first = _toy_fitness(ga.ask()).max().item()
    while not ga.done:
        record = ga.tell(_toy_fitness(ga.ask()))
    assert record.stats["best"] > first + 8  # 13.6 measured; mutations 1000× too small: 1.8


def test_state_dict_round_trip_rebreeds_the_same_population() -> None:
    """Loading a checkpoint re-breeds exactly the children the original GA bred."""
    ga = _toy_ga()
    ga.tell(_toy_fitness(ga.ask()))
    restored = _toy_ga()
    restored.load_state_dict(ga.state_dict())
    assert restored.genomes == ga.genomes
    assert torch.equal(restored.ask(), ga.ask())


def test_checkpoint_holds_only_the_survivors() -> None:
    """The state a run saves every generation carries the k survivors' weights, not the storage
    of the whole population they are rows of (512 × 99,507 floats on the paper's grid)."""
    ga = _toy_ga()
    ga.tell(_toy_fitness(ga.ask()))
    elite_theta = ga.state_dict()["elite_theta"]
    assert elite_theta.shape == (3, ga.layout.dim)
    assert elite_theta.untyped_storage().nbytes() == 3 * ga.layout.dim * 4


def test_genome_json_round_trip_is_small() -> None:
    """A 300-generation chain serialises to a few KB and reads back unchanged."""
    genome = Genome(123, tuple((2**31 - 1 - i, 0.01) for i in range(300)))
    import json
    text = json.dumps(genome.to_dict())
    assert len(text) < 4000
    assert Genome.from_dict(json.loads(text)) == genome


def test_initial_weights_have_the_specified_distribution() -> None:
    """Fresh genomes draw each tensor at its init std; layer-norm scales start at exactly 1."""
    layout = _paper_layout(EncodingConfig("dense"))
    theta = initial_weights(layout, list(range(4)), torch.device("cpu"))
    views = layout.views(theta)
    assert views["embed.weight"].std().item() == pytest.approx(1.0, rel=0.02)
    assert views["blocks.0.ff1.weight"].std().item() == pytest.approx(math.sqrt(2 / 32), rel=0.05)
    assert torch.all(views["blocks.0.ln1.scale"] == 1) and torch.all(views["blocks.0.attn.q.bias"] == 0)


@pytest.mark.parametrize("encoding", [EncodingConfig("dense"),
                                      EncodingConfig("factorized", rank=4)], ids=["dense", "r4"])
def test_aligned_population_holds_the_same_weights_on_64_byte_boundaries(
        encoding: EncodingConfig) -> None:
    """`ParamLayout.aligned` (gpu.ALIGNED_OPERANDS) copies a population whose genome length is
    odd into padded rows: every tensor's view equals the unpadded one's, every view starts on a
    64-byte boundary in every row, the padding is zeros, and the row is a multiple of 16 floats."""
    layout = _paper_layout(encoding)
    theta = torch.randn(3, layout.dim, generator=torch.Generator().manual_seed(0))
    aligned = layout.aligned(theta)
    assert layout.dim % 2 == 1 and aligned.shape == (3, layout.aligned_dim)
    assert layout.aligned_dim % 16 == 0
    assert layout.aligned_dim - layout.dim < 16 * len(layout.specs)
    plain, padded = layout.views(theta), layout.views(aligned, aligned=True)
    assert plain.keys() == padded.keys()
    for name, view in padded.items():
        assert torch.equal(view, plain[name])
        assert all(view[p].data_ptr() % 64 == 0 for p in range(3)), name
    assert aligned.count_nonzero() == theta.count_nonzero()  # nothing but zeros added


def test_a_chain_without_its_mutation_rates_is_refused(tmp_path) -> None:
    """A saved chain with neither `mutation_rate` nor `mutation_rates` (or one rate too few) is
    not developed as if unmutated: load_genome refuses it in one line; an unmutated chain, which
    stores an empty rate list, still reads back."""
    from neuroevo.genome import GenomeFileError, load_genome

    assert Genome.from_dict(Genome(4).to_dict()) == Genome(4)
    with pytest.raises(KeyError):
        Genome.from_dict({"init_seed": 4, "seeds": [7, 8]})
    with pytest.raises(ValueError, match="2 seeds but 1 mutation rates"):
        Genome.from_dict({"init_seed": 4, "seeds": [7, 8], "mutation_rates": [0.1]})
    path = tmp_path / "elite.json"
    path.write_text('{"fitness": 1.0, "generation": 2, "config": {}, '
                    '"genome": {"init_seed": 4, "seeds": [7, 8]}}')
    with pytest.raises(GenomeFileError, match="holds no seed chain") as error:
        load_genome(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("metadata, problem", [
    ({"generation": 2, "fitness": 1.0}, "no 'config'"),
    ({"config": {}, "fitness": 1.0}, "no 'generation'"),
    ({"config": {}, "generation": 2}, "no 'fitness'"),
    ({"config": "dense.yaml", "generation": 2, "fitness": 1.0}, "'config' that is not a mapping"),
])
def test_load_genome_checks_the_metadata_replay_reads(tmp_path, metadata: dict,
                                                      problem: str) -> None:
    """A genome file without the config, generation or fitness a run writes beside the chain is
    a one-line GenomeFileError, not a KeyError deep in `neuroevo replay`."""
    import json

    from neuroevo.genome import GenomeFileError, load_genome

    path = tmp_path / "elite.json"
    path.write_text(json.dumps({**metadata, "genome": Genome(4, ((7, 0.1),)).to_dict()}))
    with pytest.raises(GenomeFileError, match=re.escape(problem)):
        load_genome(path)


def test_a_resumed_ga_never_develops_the_initial_population(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built from a checkpoint, the GA breeds the saved survivors straight away: the initial
    population (which a resume would discard) is never developed, and the children are the
    ones the uninterrupted GA bred."""
    ga = _toy_ga()
    ga.tell(_toy_fitness(ga.ask()))
    state = ga.state_dict()

    def refuse(*args: object) -> None:
        raise AssertionError("initial_weights called on resume")

    monkeypatch.setattr("neuroevo.ga.initial_weights", refuse)
    resumed = GeneticAlgorithm(ga.layout, ga.config, seed=ga.seed, checkpoint=state)
    assert resumed.generation == ga.generation
    assert resumed.genomes == ga.genomes
    assert torch.equal(resumed.ask(), ga.ask())


def test_n_back_rule_caps_the_rate_by_the_parents_last_genes() -> None:
    """The reference's n-back rule (Jevo.jl's NBackMutator): a parent with fewer than n_back genes
    draws its child's rate uniformly; an older one draws from the rates no larger than the
    largest among its last n_back genes (the initial gene counting as the largest), except for a
    1% escape to a uniform draw."""
    ga = _toy_ga()
    ga.config = GAConfig(12, 3, 30, mutation_rates=(0.1, 0.01), n_back=3)

    def share_of_large(parent: Genome) -> float:
        rng = np.random.default_rng(0)
        return float(np.mean([ga._mutation_rate(parent, rng) == 0.1 for _ in range(4000)]))

    young = Genome(1, [(11, 0.01)])                                   # 2 genes < 3
    small_lately = Genome(1, [(11, 0.1), (12, 0.01), (13, 0.01), (14, 0.01)])
    large_lately = Genome(1, [(11, 0.01), (12, 0.1), (13, 0.01)])
    just_born = Genome(1, [(11, 0.01), (12, 0.01)])                   # last 3 include the init
    assert 0.45 < share_of_large(young) < 0.55
    assert 0 < share_of_large(small_lately) < 0.015                   # the 1% escape, half 0.1
    assert 0.45 < share_of_large(large_lately) < 0.55
    assert 0.45 < share_of_large(just_born) < 0.55
