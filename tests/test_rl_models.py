"""The RL policy networks: batched forwards against per-individual references, and genome sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import needs_cpu_kernels
from neuroevo.genome import initial_weights
from neuroevo.layers import developed_linear_weight
from neuroevo.models.atari_cnn import ConvPolicy, atari_cnn
from neuroevo.models.car_racing_cnn import car_racing_cnn
from neuroevo.models.mlp import MLPPolicy
from neuroevo.sections.atari import ATARI_KERNELS, ModelConfig as AtariConfig
from neuroevo.sections.car_racing import CAR_RACING_KERNELS, ModelConfig as CarConfig
from neuroevo.sections.conv_policy import smallest_input
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.mujoco import ModelConfig as MLPConfig

DENSE = EncodingConfig("dense")
FACTORIZED = EncodingConfig("factorized", rank=2)
SPARSE = EncodingConfig("sparse", rank=2)
ENCODINGS = [pytest.param(DENSE, id="dense"), pytest.param(FACTORIZED, id="factorized"),
             pytest.param(SPARSE, id="sparse"),
             # a layer type's rank null: that type dense, the others factorized (or sparse)
             pytest.param(EncodingConfig("factorized", rank=2, ranks={"hidden": None}),
                          id="factorized-convs-only"),
             pytest.param(EncodingConfig("sparse", rank=2, ranks={"conv": None}),
                          id="sparse-hidden-only")]


def _population(layout, pop: int, seed: int = 0) -> torch.Tensor:
    """(P, D) weights; biases get noise too, so a wrong bias slice cannot hide behind zeros."""
    theta = initial_weights(layout, list(range(seed, seed + pop)), torch.device("cpu"))
    return theta + 0.05 * torch.randn_like(theta)


def _small_cnn(encoding: EncodingConfig) -> ConvPolicy:
    """The Atari small net on a 36×36 input: every layer type, fast enough to loop over."""
    return ConvPolicy(encoding, (12, 36, 36), ((8, 4), (4, 2), (3, 1)), (4, 8, 8), 16, 5)


def _looped_cnn(model: ConvPolicy, p: dict, obs: torch.Tensor) -> torch.Tensor:
    """The obvious reference: one individual at a time, developed kernels and matrices."""
    outs = []
    for i in range(obs.shape[0]):
        one = {name: value[i:i + 1] for name, value in p.items()}
        x = obs[i]                                                         # (N, C, H, W)
        for conv in model.convs:
            kernel = conv.developed_kernel(one)[0]
            x = F.relu(F.conv2d(x, kernel, one[f"{conv.name}.bias"][0], stride=conv.stride))
        x = x.flatten(1)
        for layer, act in ((model.hidden, F.relu), (model.out, lambda y: y)):
            x = act(x @ developed_linear_weight(layer, one)[0] + one[f"{layer.name}.bias"][0])
        outs.append(x)
    return torch.stack(outs)


def test_a_layer_type_ranked_null_is_searched_dense() -> None:
    """encoding.ranks {hidden: null} under the factorized kind: the convolutions are factorized,
    the hidden layer is an ordinary dense matrix with the dense kind's genome entries."""
    mixed = _small_cnn(EncodingConfig("factorized", rank=2, ranks={"hidden": None}))
    rows = {row["layer"]: row for row in mixed.layout.rows}
    assert all(rows[conv.name]["encoding"] == "factorized r=2" for conv in mixed.convs)
    assert rows["hidden"]["encoding"] == "dense"
    dense, factorized = _small_cnn(DENSE), _small_cnn(FACTORIZED)
    specs = {spec.name: spec for spec in mixed.layout.specs}
    for spec in dense.layout.specs:
        if spec.name.startswith("hidden."):
            assert specs[spec.name] == spec
    for spec in factorized.layout.specs:
        if spec.name.startswith("conv"):
            assert specs[spec.name] == spec


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cnn_batched_forward_equals_per_individual_loop(encoding: EncodingConfig) -> None:
    """The population-batched CNN forward gives each individual what its own network gives."""
    model = _small_cnn(encoding)
    p = model.layout.views(_population(model.layout, pop=3))
    obs = torch.rand(3, 2, 12, 36, 36)
    torch.testing.assert_close(model.forward(p, obs), _looped_cnn(model, p, obs),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_obs", [1, 3])
def test_large_conv_runs_as_unfold_and_equals_per_individual_conv(n_obs: int,
                                                                   monkeypatch) -> None:
    """A kernel over UNFOLD_MIN_WEIGHTS (CarRacing's conv3 shape) goes through unfold + bmm and
    gives each individual its own F.conv2d, for one and for several observations each."""
    from neuroevo.encoding import ParamLayout
    from neuroevo.layers import UNFOLD_MIN_WEIGHTS, Conv2d

    layout = ParamLayout()
    conv = Conv2d(layout, "conv", 64, 128, 4, 2)
    assert 128 * 64 * 16 >= UNFOLD_MIN_WEIGHTS
    unfolded, unfold = [], Conv2d._unfolded
    monkeypatch.setattr(Conv2d, "_unfolded",
                        lambda self, *args: unfolded.append(self.name) or unfold(self, *args))
    p = layout.views(_population(layout, pop=3))
    x = torch.randn(n_obs, 3 * 64, 14, 14)
    got = conv(p, x).view(n_obs, 3, 128, 6, 6)
    assert unfolded == ["conv"]  # else the grouped F.conv2d below answered, which also agrees
    for i in range(3):
        want = F.conv2d(x.view(n_obs, 3, 64, 14, 14)[:, i], p["conv.weight"][i],
                        p["conv.bias"][i], stride=2)
        torch.testing.assert_close(got[:, i], want, rtol=1e-4, atol=1e-5)


@needs_cpu_kernels
@pytest.mark.parametrize("n_obs, kernel, stride, c_out", [(1, 8, 4, 32), (2, 4, 2, 40)])
def test_first_layer_conv_kernel_equals_per_individual_conv(n_obs, kernel, stride, c_out,
                                                            monkeypatch):
    """A first-layer convolution (12 input channels) runs in the fused CPU kernel without
    autograd and gives each individual its own F.conv2d, also with output channels that do not
    fill the last SIMD vector and several observations per individual."""
    from neuroevo.encoding import ParamLayout
    from neuroevo.kernels import cpu as cpu_kernels
    from neuroevo.layers import Conv2d

    layout = ParamLayout()
    conv = Conv2d(layout, "conv", 12, c_out, kernel, stride)
    p = layout.views(_population(layout, pop=3))
    x = torch.randn(n_obs, 3 * 12, 37, 37)
    launches, conv2d_population = [], cpu_kernels.conv2d_population
    monkeypatch.setattr(cpu_kernels, "conv2d_population",
                        lambda *args: launches.append(args[0].shape) or conv2d_population(*args))
    with torch.no_grad():
        got = conv(p, x)
    assert launches == [x.shape]  # else torch's grouped conv answered, which also agrees
    side = (37 - kernel) // stride + 1
    got = got.view(n_obs, 3, c_out, side, side)
    for i in range(3):
        want = F.conv2d(x.view(n_obs, 3, 12, 37, 37)[:, i], p["conv.weight"][i],
                        p["conv.bias"][i], stride=stride)
        torch.testing.assert_close(got[:, i], want, rtol=1e-4, atol=1e-5)


def test_factorized_conv_equals_dense_conv_with_developed_kernel() -> None:
    """A rank-r conv then a halved 1×1 conv equals one conv with the kernel B·A/2 built here from
    the factors (A: r kernels over the inputs, B: how each output mixes them), and
    `developed_kernel`, which the analyses use, is that kernel."""
    model = _small_cnn(FACTORIZED)
    conv = model.convs[1]
    p = model.layout.views(_population(model.layout, pop=3))
    x = torch.rand(2, 3 * conv.c_in, 8, 8)                                 # (N, P·C, H, W)
    a, b = p[f"{conv.name}.A"], p[f"{conv.name}.B"]                        # (P,r,C,k,k), (P,O,r)
    explicit = 0.5 * torch.einsum("por,prchw->pochw", b, a)                # (P, O, C, k, k)
    torch.testing.assert_close(conv.developed_kernel(p), explicit)
    kernel = explicit.reshape(3 * conv.c_out, conv.c_in, 4, 4)
    dense = F.conv2d(x, kernel, p[f"{conv.name}.bias"].reshape(-1), stride=conv.stride, groups=3)
    torch.testing.assert_close(conv(p, x), dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_mlp_batched_forward_equals_per_individual_loop(encoding: EncodingConfig) -> None:
    """The batched MLP equals a per-individual tanh MLP whose output is rescaled to the bounds."""
    low, high = torch.tensor([-1.0, 0.0, -0.4]), torch.tensor([1.0, 2.0, 0.4])
    model = MLPPolicy(MLPConfig(hidden=(8, 8)), encoding, 5, low, high)
    p = model.layout.views(_population(model.layout, pop=4))
    obs = 3 * torch.randn(4, 6, 5)
    expected = []
    for i in range(4):
        one = {name: value[i:i + 1] for name, value in p.items()}
        x = obs[i]
        for layer in model.hidden:
            weight = developed_linear_weight(layer, one)[0]
            x = torch.tanh(x @ weight + one[f"{layer.name}.bias"][0])
        y = torch.tanh(x @ one["out.weight"][0] + one["out.bias"][0])
        expected.append(low + (y + 1) / 2 * (high - low))
    actions = model.forward(p, obs)
    torch.testing.assert_close(actions, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert bool(((actions >= low) & (actions <= high)).all())


def _conv_count(c_in: int, c_out: int, k: int, rank: int | None) -> int:
    return (k * k * c_in * c_out if rank is None else rank * (k * k * c_in + c_out)) + c_out


def _dense_count(d_in: int, d_out: int, rank: int | None) -> int:
    return (d_in * d_out if rank is None else rank * (d_in + d_out)) + d_out


@pytest.mark.parametrize("channels,hidden,rank", [
    ((32, 64, 64), 256, None), ((32, 64, 64), 256, 4), ((4, 8, 8), 32, None)])
def test_atari_cnn_searched_size_matches_hand_count(channels, hidden, rank) -> None:
    """The Atari genome holds exactly the paper net's weights (dense, rank-4 or small)."""
    encoding = DENSE if rank is None else EncodingConfig("factorized", rank=rank)
    model = atari_cnn(AtariConfig(channels, hidden), encoding, n_actions=18)
    c1, c2, c3 = channels
    expected = (_conv_count(12, c1, 8, rank) + _conv_count(c1, c2, 4, rank)
                + _conv_count(c2, c3, 3, rank) + _dense_count(c3 * 7 * 7, hidden, rank)
                + _dense_count(hidden, 18, None))
    assert model.features == c3 * 49
    assert model.layout.searched_dim == model.layout.dim == expected
    if rank is None and channels == (32, 64, 64):
        assert expected == 902_066  # 3136→256 dominates: 802,816 of it


@pytest.mark.parametrize("channels,hidden,rank", [
    ((32, 64, 128, 256), 256, None), ((32, 64, 128, 256), 256, 1), ((4, 4, 8, 16), 32, None)])
def test_car_racing_cnn_searched_size_matches_hand_count(channels, hidden, rank) -> None:
    """The CarRacing genome holds exactly the paper net's weights (dense, rank-1 or small)."""
    encoding = DENSE if rank is None else EncodingConfig("factorized", rank=rank)
    model = car_racing_cnn(CarConfig(channels, hidden), encoding)
    sizes = (12,) + channels
    expected = sum(_conv_count(sizes[i], sizes[i + 1], 4, rank) for i in range(4))
    expected += _dense_count(channels[-1] * 2 * 2, hidden, rank) + _dense_count(hidden, 3, None)
    assert model.features == channels[-1] * 4  # spatial 31, 14, 6, 2
    assert model.layout.searched_dim == expected
    p = model.layout.views(_population(model.layout, 2))
    out = model.forward(p, torch.rand(2, 1, 12, 64, 64))
    assert out.shape == (2, 1, 3)


def test_output_layer_stays_dense_when_factorized() -> None:
    """Factorizing touches `conv` and `hidden` layers only; the output layer keeps a full matrix."""
    model = atari_cnn(AtariConfig(), EncodingConfig("factorized", rank=4), n_actions=18)
    names = {spec.name for spec in model.layout.specs}
    assert {"out.weight", "hidden.A", "hidden.B", "conv1.A", "conv3.B"} <= names
    assert "hidden.weight" not in names and "out.A" not in names


def test_each_model_asks_for_exactly_its_declared_layer_types(monkeypatch) -> None:
    """`LAYER_TYPES`, which the config checks `encoding.ranks` against, lists every layer type
    each model asks a rank for, and nothing else (a type missing from it could not be set; an
    extra one would be accepted and ignored)."""
    from neuroevo.models.transformer import Transformer
    from neuroevo.sections import atari, car_racing, language, mujoco

    asked: set[str] = set()
    rank_for = EncodingConfig.rank_for

    def recording_rank_for(self: EncodingConfig, layer_type: str) -> int | None:
        asked.add(layer_type)
        return rank_for(self, layer_type)

    monkeypatch.setattr(EncodingConfig, "rank_for", recording_rank_for)
    builders = {  # each family's sections module: its model's builder
        language: lambda: Transformer(language.ModelConfig(), FACTORIZED, vocab=64),
        atari: lambda: atari_cnn(AtariConfig(), FACTORIZED, n_actions=18),
        car_racing: lambda: car_racing_cnn(CarConfig(), FACTORIZED),
        mujoco: lambda: MLPPolicy(MLPConfig(), FACTORIZED, 5, -torch.ones(2), torch.ones(2)),
    }
    for sections, build in builders.items():
        asked.clear()
        build()
        assert sorted(asked) == sorted(sections.LAYER_TYPES), sections.__name__


@pytest.mark.parametrize("kernels, smallest, channels", [
    (ATARI_KERNELS, 36, (4, 8, 8)), (CAR_RACING_KERNELS, 46, (4, 4, 8, 16))])
def test_smallest_input_is_the_least_the_convolutions_reduce_to_one_pixel(
        kernels, smallest: int, channels: tuple) -> None:
    """At `smallest_input` the last convolution leaves exactly one pixel; one less leaves none,
    and the network refuses it."""
    assert smallest_input(kernels) == smallest
    model = ConvPolicy(DENSE, (12, smallest, smallest), kernels, channels, 8, 3)
    assert model.features == channels[-1]  # 1×1 spatial
    with pytest.raises(ValueError, match=f"smaller than the {smallest}×{smallest}"):
        ConvPolicy(DENSE, (12, smallest - 1, smallest - 1), kernels, channels, 8, 3)


@pytest.mark.parametrize("config, key, value, fragment", [
    ("configs/atari/frostbite/dense.yaml", "model.hidden", "0",
     "model.hidden must be ≥ 1, got 0"),
    ("configs/atari/frostbite/dense.yaml", "model.channels", "[8,0,8]",
     "model.channels entries must each be ≥ 1, got [8, 0, 8]"),
    ("configs/atari/frostbite/dense.yaml", "model.channels", "[8,8]",
     "model.channels needs 3 entries (one per convolution), got 2"),
    ("configs/car_racing/dense.yaml", "model.hidden", "0", "model.hidden must be ≥ 1, got 0"),
    ("configs/car_racing/factorized.yaml", "model.channels", "[4,4,0,16]",
     "model.channels entries must each be ≥ 1"),
    ("configs/mujoco/halfcheetah/dense.yaml", "model.hidden", "[16,0]",
     "model.hidden entries must each be ≥ 1, got [16, 0]"),
])
def test_zero_widths_are_one_line_config_errors(capsys, config: str, key: str, value: str,
                                                fragment: str) -> None:
    """A layer of no units stops the CLI at config time, exit 2, with one `error:` line naming
    the key, instead of a ZeroDivisionError from the weight initialisation."""
    from neuroevo.cli import main

    assert main(["describe", config, "--preset", "quick", "--set", f"{key}={value}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert fragment in error
