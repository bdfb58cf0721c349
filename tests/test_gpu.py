"""CUDA agrees with CPU (skipped without a GPU; run by bench/gpu_check.sh on a GPU machine)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from conftest import record_triton_launches
from neuroevo.genome import Genome, develop, initial_weights
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.models.transformer import Transformer
from neuroevo.noise import gaussian
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_noise_agrees_across_devices() -> None:
    """The counter-based noise is the same stream on CUDA and CPU (integers exact, floats ≈ ulp)."""
    cpu = gaussian([1, 2**31 - 1], 100_000)
    cuda = gaussian([1, 2**31 - 1], 100_000, device="cuda").cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-5, atol=1e-5)


def test_genome_develops_to_the_same_weights_on_cuda() -> None:
    """A seed chain re-develops on CUDA to the weights it has on CPU."""
    layout = Transformer(ModelConfig(), EncodingConfig("factorized", 4, {"embedding": 32}),
                         2051).layout
    genome = Genome(7, tuple((1000 + i, 0.01) for i in range(20)))
    torch.testing.assert_close(develop(genome, layout, "cuda").cpu(), develop(genome, layout),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("triton", [True, False], ids=["triton-kernels", "torch-ops"])
@pytest.mark.parametrize("encoding", [EncodingConfig("dense"),
                                      EncodingConfig("factorized", 4, {"embedding": 32})])
@torch.no_grad()  # as the GA evaluates: the CPU side runs the fused kernels
def test_population_loss_agrees_across_devices(monkeypatch, encoding: EncodingConfig,
                                               triton: bool) -> None:
    """The population's fitness on CUDA — through the Triton kernels, or torch's ops with heads
    padded for SDPA — matches CPU (the fused C kernels) within 1e-4 nats/token (fp32, TF32
    off), on sequences long enough for several query blocks; and the Triton case did run every
    kernel the shipped levers switch on (none in the torch-ops case), so a silent fallback to
    torch's ops cannot pass for the kernels."""
    torch.set_float32_matmul_precision("highest")
    launched = record_triton_launches(monkeypatch)
    model = Transformer(ModelConfig(), encoding, 2051)
    theta = initial_weights(model.layout, list(range(8)), torch.device("cpu"))
    tokens = torch.randint(3, 2051, (4, 150), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([150, 20, 9, 2])
    cpu = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths)
    with contextlib.nullcontext() if triton else gpu_kernels.switched_off():
        cuda = model.negative_cross_entropy(model.layout.views(theta.cuda()), tokens.cuda(),
                                            lengths.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-4)
    expected = {"attention_layer_norm_kernel", "feed_forward_layer_norm_kernel",
                "negative_log_likelihood_kernel"}
    expected |= {"key_value_kernel"} if gpu_kernels.ATTENTION_KV_STORED else set()
    expected |= {"embedding_rotary_kernel"} if gpu_kernels.EMBED_KERNEL else set()
    assert set(launched) == (expected if triton else set())


@torch.no_grad()
def test_cnn_forward_agrees_across_devices() -> None:
    """The Atari CNN on CUDA (grouped convolutions) matches CPU (first layer in the fused
    kernel, the rest grouped) on the same observations."""
    from neuroevo.models.atari_cnn import atari_cnn
    from neuroevo.sections.atari import ModelConfig as AtariConfig

    model = atari_cnn(AtariConfig(), EncodingConfig("dense"), n_actions=18)
    theta = initial_weights(model.layout, list(range(4)), torch.device("cpu"))
    obs = torch.rand(4, 2, 12, 84, 84, generator=torch.Generator().manual_seed(0))
    cpu = model.forward(model.layout.views(theta), obs)
    allowed, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        cuda = model.forward(model.layout.views(theta.cuda()), obs.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = allowed
    torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-4)
