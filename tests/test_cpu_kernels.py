"""The fused CPU kernels (neuroevo/kernels) against the torch ops they replace."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from neuroevo.encoding import EncodingConfig
from neuroevo.genome import initial_weights
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.models.transformer import ModelConfig, Transformer

TOL = 1e-5  # fp32; the kernels sum in a different order and use their own exp2

needs_kernels = pytest.mark.skipif(cpu_kernels.library() is None,
                                   reason="fused CPU kernels unavailable (no C compiler)")


def test_kernels_build_wherever_a_c_compiler_exists():
    """With a C compiler on PATH the kernels compile and load (else CPU runs lose their speed)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    assert cpu_kernels.library() is not None


@needs_kernels
@pytest.mark.parametrize("t, head_dim", [(64, 4), (37, 4), (1, 4), (20, 8), (130, 2)])
@torch.no_grad()
def test_causal_attention_equals_sdpa(t: int, head_dim: int):
    """Fused attention (Q/K/V bias added on load) == SDPA causal, for T not a multiple of the
    16 SIMD lanes, a single token, and other head widths."""
    gen = torch.Generator().manual_seed(t)
    pop, batch, heads = 3, 2, 4
    width = heads * head_dim
    qkv = 2 * torch.randn(pop, batch * t, 3 * width, generator=gen)
    bias = torch.randn(pop, 3 * width, generator=gen)
    got = cpu_kernels.causal_attention(qkv, bias, batch, heads, head_dim)
    x = (qkv + bias[:, None]).view(pop * batch, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    want = F.scaled_dot_product_attention(x[0], x[1], x[2], is_causal=True)
    want = want.transpose(1, 2).reshape(pop, batch * t, width)
    torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)


@needs_kernels
@torch.no_grad()
def test_causal_attention_survives_extreme_scores():
    """Scores hundreds of nats apart (a large evolved weight) give finite, exact-softmax output:
    masked and underflowing keys contribute exactly 0, never NaN."""
    gen = torch.Generator().manual_seed(1)
    qkv = 60 * torch.randn(2, 2 * 33, 3 * 16, generator=gen)
    got = cpu_kernels.causal_attention(qkv, None, 2, 4, 4)
    x = qkv.view(4, 33, 3, 4, 4).permute(2, 0, 3, 1, 4)
    want = F.scaled_dot_product_attention(x[0], x[1], x[2], is_causal=True)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want.transpose(1, 2).reshape(2, 66, 16), atol=1e-4, rtol=1e-4)


@needs_kernels
@pytest.mark.parametrize("with_residual, with_bias", [(True, True), (False, True), (True, False)])
@torch.no_grad()
def test_residual_layer_norm_equals_torch(with_residual: bool, with_bias: bool):
    """x ← LN(x + residual + bias)·scale + shift in place == F.layer_norm of the sum."""
    gen = torch.Generator().manual_seed(0)
    x, residual = (torch.randn(3, 50, 32, generator=gen) for _ in range(2))
    bias = torch.randn(3, 32, generator=gen)
    scale, shift = torch.rand(32, generator=gen) + 0.5, torch.randn(32, generator=gen)
    want = x + (residual if with_residual else 0) + (bias[:, None] if with_bias else 0)
    want = F.layer_norm(want, (32,), scale, shift, eps=1e-7)
    got = cpu_kernels.residual_layer_norm_(x.clone(), residual if with_residual else None,
                                           bias if with_bias else None, scale, shift, 1e-7)
    torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)


@needs_kernels
@torch.no_grad()
def test_bias_relu_equals_torch():
    """x ← relu(x + bias) in place, bias per individual."""
    gen = torch.Generator().manual_seed(0)
    x, bias = torch.randn(3, 40, 128, generator=gen), torch.randn(3, 128, generator=gen)
    torch.testing.assert_close(cpu_kernels.bias_relu_(x.clone(), bias), (x + bias[:, None]).relu())


@needs_kernels
@pytest.mark.parametrize("encoding", [EncodingConfig("dense"),
                                      EncodingConfig("factorized", 4, {"embedding": 32})],
                         ids=["dense", "factorized"])
def test_transformer_fitness_same_with_and_without_kernels(encoding: EncodingConfig):
    """The whole population's fitness with the fused kernels (no autograd) equals torch's ops
    (autograd on, which switches the kernels off) to 1e-5 nats."""
    model = Transformer(ModelConfig(), encoding, vocab=300)
    theta = initial_weights(model.layout, list(range(4)), torch.device("cpu"))
    tokens = torch.randint(3, 300, (5, 23), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([23, 20, 9, 23, 2])
    with torch.no_grad():
        fused = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    with torch.enable_grad():
        plain = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    torch.testing.assert_close(fused, plain.detach(), atol=TOL, rtol=TOL)


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
