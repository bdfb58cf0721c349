"""The fused noise kernel (kernels/triton_noise.py) against noise.gaussian and the torch path of
the GA's mutation: on CPU through Triton's interpreter, on a GPU compiled."""

from __future__ import annotations

import pytest
import torch

from conftest import KERNEL_ENCODINGS, needs_triton
from neuroevo.genome import Genome, add_mutations, develop, initial_weights
from neuroevo.kernels import gpu_noise
from neuroevo.models.transformer import Transformer
from neuroevo.noise import gaussian
from neuroevo.sections.language import ModelConfig

pytestmark = needs_triton
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Triton's log and cos (numpy's in the interpreter) against torch's: a few float32 ulps of a
# value whose magnitude stays below 6
TOL = 4e-6


@pytest.fixture
def kernel_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lever on, and the kernel taken on this device (the interpreter on CPU)."""
    monkeypatch.setattr(gpu_noise, "NOISE_KERNEL", True)
    monkeypatch.setattr(gpu_noise, "usable", gpu_noise.eligible)


@pytest.mark.parametrize("dim", [1, 1000, gpu_noise.NOISE_BLOCK + 77])
def test_kernel_noise_is_the_counter_based_stream(kernel_on, dim: int):
    """base 0, scale 1: the kernel's rows are noise.gaussian's streams of the same seeds, for
    widths within one program's block and beyond it (the last block masked); the hash is exact,
    so a wrong one would be off by whole units, not ulps."""
    seeds = [0, 1, 2**40 + 3, 987654321]
    out = torch.empty(len(seeds), dim, device=DEVICE)
    gpu_noise.add_scaled_noise(out, torch.zeros(dim, device=DEVICE), seeds,
                               torch.ones(dim, device=DEVICE))
    torch.testing.assert_close(out, gaussian(seeds, dim, device=DEVICE), atol=TOL, rtol=0)


def test_kernel_adds_scaled_noise_in_place(kernel_on):
    """In place (base = out): each row gains scale · its own noise; rows of another base stride
    (a shared (D,) base) get the same noise on the shared values."""
    seeds, dim = [5, 6, 7], 300
    theta = torch.randn(3, dim, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    scale = torch.rand(dim, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    expected = theta + scale * gaussian(seeds, dim, device=DEVICE)
    gpu_noise.add_scaled_noise(theta, theta, seeds, scale)
    torch.testing.assert_close(theta, expected, atol=TOL, rtol=TOL)
    shared = torch.arange(dim, dtype=torch.float32, device=DEVICE)
    out = torch.empty(3, dim, device=DEVICE)
    gpu_noise.add_scaled_noise(out, shared, seeds, scale)
    torch.testing.assert_close(out, shared + scale * gaussian(seeds, dim, device=DEVICE),
                               atol=TOL, rtol=TOL)


@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_ga_weights_through_the_kernel_match_torchs_path(kernel_on, monkeypatch, encoding: str):
    """initial_weights and add_mutations give the torch path's weights to rounding, and a seed
    chain developed through the kernel equals the GA's kernel-built row bit for bit (both take
    the same path on one device). Launches are counted: were the kernel silently unused, both
    sides would be torch's path and agree."""
    layout = Transformer(ModelConfig(), KERNEL_ENCODINGS[encoding], 64).layout
    seeds, children = [11, 12], [21, 22]
    std = layout.mutation_std(0.01).to(DEVICE)
    launches, launch = [], gpu_noise.add_scaled_noise
    monkeypatch.setattr(gpu_noise, "add_scaled_noise",
                        lambda out, *args: launches.append(out.shape) or launch(out, *args))
    fused = initial_weights(layout, seeds, DEVICE)
    add_mutations(fused, children, std)
    assert launches == [fused.shape, fused.shape]  # one launch each, for both rows
    monkeypatch.setattr(gpu_noise, "NOISE_KERNEL", False)
    plain = initial_weights(layout, seeds, DEVICE)
    add_mutations(plain, children, std)
    assert len(launches) == 2  # the lever off: torch's path
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)
    monkeypatch.setattr(gpu_noise, "NOISE_KERNEL", True)
    chain = Genome(seeds[1]).child(children[1], 0.01)
    assert torch.equal(develop(chain, layout, DEVICE)[0], fused[1])
    assert len(launches) == 4  # develop's initial weights and its one mutation


def test_the_lever_is_on_by_default_and_needs_cuda():
    """Since the H100 timed it (bit-identical to torch's path there) CUDA runs take the kernel;
    a CPU tensor never does (the interpreter is for tests only)."""
    assert gpu_noise.NOISE_KERNEL is True
    assert not gpu_noise.usable(torch.zeros(2, 3))
