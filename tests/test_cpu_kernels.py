"""The fused CPU kernels (neuroevo/kernels) against the torch ops they replace.

The kernels run only without autograd, so `torch.enable_grad()` is the switch that gives the
plain torch result of the same call.
"""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import KERNEL_ENCODINGS, needs_cpu_kernels, perturbed_transformer
from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig

TOL = 1e-4  # fp32 block outputs of size ~1 (layer-normed); the kernels sum in another order and
# use their own exp2, and the perturbed weights below make the factor products large


def test_kernels_build_wherever_a_c_compiler_exists():
    """On Linux with a C compiler on PATH the kernels compile and load (else CPU runs lose their
    speed silently). Elsewhere (e.g. macOS clang without OpenMP) the fallback is expected."""
    if sys.platform != "linux" or (shutil.which("cc") is None and shutil.which("gcc") is None):
        pytest.skip("not Linux with a C compiler")
    assert cpu_kernels.library() is not None


@needs_cpu_kernels
@pytest.mark.parametrize("encoding", list(KERNEL_ENCODINGS))
@pytest.mark.parametrize("t, cfg", [(64, ModelConfig()), (37, ModelConfig()), (1, ModelConfig()),
                                    (20, ModelConfig(hidden=4, ff=16)),
                                    (130, ModelConfig(hidden=24, ff=40, n_heads=3, head_dim=8))],
                         ids=["paper", "T=37", "T=1", "small", "odd-sizes"])
def test_fused_block_equals_torch_ops(encoding: str, t: int, cfg: ModelConfig, kernels_served):
    """One transformer block through the two fused kernels (attention sub-layer, feed-forward
    sub-layer) equals torch's ops (SDPA, bmm, layer_norm), for every encoding, T not a multiple
    of the 16 SIMD lanes, a single token, the small model and widths off the 16-blocking."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], cfg)
    block = model.blocks[0]
    batch = 2
    x = torch.randn(3, batch * t, cfg.hidden, generator=torch.Generator().manual_seed(t))
    with torch.no_grad():
        fused = block(p, x.clone(), batch)
    assert kernels_served and all(k is cpu_kernels for k in kernels_served)
    kernels_served.clear()
    with torch.enable_grad():  # switches the kernels off
        plain = block(p, x.clone(), batch)
    assert kernels_served and not any(kernels_served)
    torch.testing.assert_close(fused, plain.detach(), atol=TOL, rtol=TOL)


@needs_cpu_kernels
def test_fused_attention_survives_extreme_scores(kernels_served):
    """Weights large enough for scores hundreds of nats apart give finite output equal to
    torch's: masked and underflowing keys contribute exactly 0, never NaN."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS["dense"], ModelConfig())
    block = model.blocks[0]
    for layer in (block.q, block.k):
        p[f"{layer.name}.weight"].mul_(40)
    x = torch.randn(3, 2 * 33, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = block(p, x.clone(), 2)
    assert kernels_served == [cpu_kernels]  # else both sides below are torch's ops
    with torch.enable_grad():
        plain = block(p, x.clone(), 2).detach()
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)


@needs_cpu_kernels
@pytest.mark.parametrize("encoding", [EncodingConfig("dense"),
                                      EncodingConfig("factorized", 4, {"embedding": 32}),
                                      EncodingConfig("sparse", 4, {"embedding": 32}),
                                      EncodingConfig("factorized", 4, {"embedding": None}),
                                      EncodingConfig("factorized", 4, {"qkv": None, "ff": None})],
                         ids=["dense", "factorized", "sparse", "factorized-blocks-only",
                              "factorized-embedding-and-attn-out"])
def test_transformer_fitness_same_with_and_without_kernels(encoding: EncodingConfig,
                                                           kernels_served):
    """The whole population's fitness with the fused kernels (no autograd) equals torch's ops
    (autograd on, which switches the kernels off) to 1e-5 nats, for every encoding (the sparse
    kind's layers hand the kernels the W they develop), and with some layer types left dense
    (rank null) beside factorized ones."""
    model = Transformer(ModelConfig(), encoding, vocab=300)
    theta = initial_weights(model.layout, list(range(4)), torch.device("cpu"))
    tokens = torch.randint(3, 300, (5, 23), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([23, 20, 9, 23, 2])
    with torch.no_grad():
        fused = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    assert kernels_served and all(k is cpu_kernels for k in kernels_served)
    kernels_served.clear()
    with torch.enable_grad():
        plain = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    assert kernels_served and not any(kernels_served)
    torch.testing.assert_close(fused, plain.detach(), atol=1e-5, rtol=1e-5)


def test_failed_build_falls_back_to_torch(monkeypatch, tmp_path):
    """A compiler that fails leaves the kernels off (torch's ops run) instead of crashing."""
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("NEUROEVO_CACHE", str(tmp_path))
    cpu_kernels.library.cache_clear()
    try:
        with torch.no_grad():
            assert cpu_kernels.library() is None
            assert not cpu_kernels.usable(torch.zeros(1))
    finally:
        cpu_kernels.library.cache_clear()


@needs_cpu_kernels
def test_unusable_cache_falls_back_to_a_temporary_directory(monkeypatch, tmp_path):
    """A cache path that cannot be a directory (a read-only home on a cluster) does not switch
    the kernels off: they are built in a per-user temporary directory instead."""
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NEUROEVO_CACHE", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cpu_kernels.library.cache_clear()
    try:
        assert cpu_kernels.library() is not None
        assert list((tmp_path / "tmp").glob("neuroevo-kernels-*/cpu_kernels-*.so"))
    finally:
        cpu_kernels.library.cache_clear()


@needs_cpu_kernels
@pytest.mark.parametrize("vocab, k, n", [(2051, 32, 29), (50, 4, 16), (7, 1, 3)],
                         ids=["paper", "rank-4 embedding", "tiny"])
def test_log_likelihood_kernel_matches_float64(vocab: int, k: int, n: int):
    """The loss kernel against a float64 reference on fresh random inputs (an unwritten output
    element cannot match): rows gathered out of order, a vocabulary that is not a multiple of
    the 16-entry blocks, embedding widths down to 1, large logits."""
    gen = torch.Generator().manual_seed(vocab + k)
    x = 3 * torch.randn(2, 40, k, generator=gen)
    weight = torch.randn(2, vocab, k, generator=gen)
    bias = torch.randn(2, vocab, generator=gen)
    rows = torch.randperm(40, generator=gen)[:n]
    targets = torch.randint(0, vocab, (n,), generator=gen)
    got = cpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), _float64_nll(x, rows, weight, bias, targets),
                               atol=1e-4, rtol=1e-5)


def _float64_nll(x: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """What `negative_log_likelihood` computes, in float64 from materialised logits."""
    logits = torch.einsum("pmk,pvk->pmv", x[:, rows].double(), weight.double()) \
        + bias.double()[:, None]
    picked = logits.gather(2, targets.expand(len(x), -1)[..., None])[..., 0]
    return logits.logsumexp(-1) - picked


@needs_cpu_kernels
@pytest.mark.parametrize("lanes, wide", [(4, 0), (8, 0), (8, 1), (16, 1)],
                         ids=["SSE-NEON", "AVX2", "AVX2-wide-blocks", "AVX-512"])
def test_every_vector_width_computes_the_same(lanes: int, wide: int, tmp_path, monkeypatch,
                                              kernels_served):
    """The kernels take their vector width from the CPU they are built on (16 floats with
    AVX-512, 8 with AVX2, 4 elsewhere) and how many accumulators they keep from its register
    count; the other CPUs' builds are made and checked here too, so a mistake that shows on one
    kind of CPU cannot pass CI on another. Conv output counts fill one, two and several vectors
    a pass, the last one part-filled; the odd-sized block leaves part-filled passes too."""
    library = cpu_kernels.library_variant(tmp_path, LANES=lanes, WIDE_REGISTER_FILE=wide)
    assert library is not None
    monkeypatch.setattr(cpu_kernels, "library", lambda: library)
    registers = 32 if wide else 16
    assert cpu_kernels.vector_layout() == f"{lanes} floats a vector, {registers} vector registers"
    gen = torch.Generator().manual_seed(lanes + wide)
    with torch.no_grad():
        for c_out in (lanes - 1, 2 * lanes - 1, 3 * lanes - 1, 5 * lanes):
            x = torch.randn(2, 3 * 12, 21, 21, generator=gen)
            kernel = torch.randn(3, c_out, 12, 4, 4, generator=gen)
            bias = torch.randn(3, c_out, generator=gen)
            want = F.conv2d(x, kernel.reshape(3 * c_out, 12, 4, 4), bias.reshape(-1), stride=2,
                            groups=3)
            torch.testing.assert_close(cpu_kernels.conv2d_population(x, kernel, bias, 2), want,
                                       rtol=1e-4, atol=1e-4)
        x, weight, bias = (torch.randn(2, 40, 32, generator=gen),
                           torch.randn(2, 2051, 32, generator=gen),
                           torch.randn(2, 2051, generator=gen))
        rows, targets = torch.randperm(40, generator=gen)[:29], torch.randint(0, 2051, (29,))
        torch.testing.assert_close(
            cpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets).double(),
            _float64_nll(x, rows, weight, bias, targets), atol=1e-4, rtol=1e-5)
    odd_sizes = ModelConfig(hidden=20, ff=44, n_heads=5, head_dim=4)
    for cfg, t in ((ModelConfig(), 37), (odd_sizes, 19)):
        model, p = perturbed_transformer(KERNEL_ENCODINGS["factorized"], cfg)
        x = torch.randn(3, 2 * t, cfg.hidden, generator=gen)
        kernels_served.clear()
        with torch.no_grad():
            fused = model.blocks[0](p, x.clone(), 2)
        assert kernels_served == [cpu_kernels]
        with torch.enable_grad():
            plain = model.blocks[0](p, x.clone(), 2).detach()
        torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)


@needs_cpu_kernels
def test_factorized_loss_under_bf16_autocast_stays_float32():
    """Under autocast (task.precision bf16 on a CPU) the loss kernel's product by the factor
    used to come back in bf16 and be read as float32, overrunning its buffer (a malloc abort):
    like the other kernels, it now ignores autocast and gives the fp32 result."""
    gen = torch.Generator().manual_seed(4)
    x, inner = torch.randn(2, 40, 32, generator=gen), torch.randn(2, 32, 4, generator=gen)
    weight, bias = torch.randn(2, 257, 4, generator=gen), torch.randn(2, 257, generator=gen)
    rows, targets = torch.arange(29), torch.randint(0, 257, (29,), generator=gen)
    with torch.no_grad():
        plain = cpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets, inner)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = cpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets, inner)
    assert autocast.dtype == torch.float32
    assert torch.equal(autocast, plain)


@needs_cpu_kernels
def test_kernels_refuse_operands_that_are_not_float32():
    """A bf16 operand reaching a C kernel is refused in one line, before the raw-pointer call
    could misread it."""
    x, rows = torch.randn(2, 8, 4), torch.arange(5)
    weight, bias, targets = torch.randn(2, 7, 4), torch.randn(2, 7), torch.zeros(5, dtype=torch.long)
    with pytest.raises(TypeError, match="CPU kernels take float32 tensors, got torch.bfloat16"):
        cpu_kernels.negative_log_likelihood(x, rows, weight.bfloat16(), bias, targets)
    kernel, conv_bias = torch.randn(2, 32, 12, 4, 4), torch.randn(2, 32)
    with pytest.raises(TypeError, match="got torch.bfloat16"):
        cpu_kernels.conv2d_population(torch.randn(1, 24, 10, 10), kernel.bfloat16(), conv_bias, 2)
