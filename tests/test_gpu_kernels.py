"""The Triton kernels (neuroevo/kernels/triton_lm.py) against the torch ops they replace.

Without a GPU they run on CPU tensors through Triton's interpreter (conftest sets
TRITON_INTERPRET=1 before anything imports Triton), which executes the same kernel code with
numpy: these tests check what the kernels compute, not how fast. With a GPU they run compiled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from unittest import mock

import pytest
import torch

from conftest import (KERNEL_ENCODINGS, interrupt_at_checkpoint, needs_triton,
                      perturbed_transformer, record_triton_launches)
from neuroevo.data.tinystories import EvalBatch
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.sections.language import ModelConfig
from neuroevo.tasks.language import score_population

pytestmark = [
    needs_triton,
    # the interpreter's numpy reports the overflows that send a shifted softmax to its fallback
    # (scores far above the shift, on purpose or in perturbed populations); the tests check the
    # values that come out
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                               "ignore:invalid value encountered:RuntimeWarning")]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOL = 1e-4  # IEEE fp32 products summed in another order than torch's
EVERY_RANK = 1 << 16  # gpu.LOSS_FACTOR_ON_CHIP: the factor's product in the loss kernel at any rank
# The attention kernel's levers (gpu.ATTENTION_*) in each state tests set them to: all off (the
# kernel before session 9), each alone, as shipped and all on.
LEVER_NAMES = ("ATTENTION_CAUSAL_SPLIT", "ATTENTION_EXP2", "ATTENTION_KV_STORED",
               "ATTENTION_SHIFT_BY_DIAGONAL")
SHIPPED = tuple(getattr(gpu_kernels, lever) for lever in LEVER_NAMES)
ATTENTION_LEVERS = {
    name: dict(zip(LEVER_NAMES, values)) for name, values in {
        "off": (False, False, False, False),
        "causal-split": (True, False, False, False),
        "exp2": (False, True, False, False), "kv-stored": (False, False, True, False),
        "diagonal-shift": (False, False, False, True),  # the own key projected from x
        "shipped": SHIPPED,
        "shipped-shifted": SHIPPED[:-1] + (True,),  # the own key read from the stored keys
        "all": (True, True, True, True)}.items()}


def route_through_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the model through the Triton kernels on this device (the interpreter on CPU), with
    the C kernels off so that nothing else can answer."""
    monkeypatch.setattr(gpu_kernels, "usable", gpu_kernels.eligible)
    monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)
    if DEVICE.type == "cpu":  # the interpreter runs every variant, those a GPU faulted on too
        monkeypatch.setattr(gpu_kernels, "FAULTED_ON_GPU", {})


@pytest.fixture
def triton_path(monkeypatch: pytest.MonkeyPatch):
    route_through_triton(monkeypatch)


# The kernels a transformer block launches, and the loss's
BLOCK_KERNELS = {"attention_layer_norm_kernel", "feed_forward_layer_norm_kernel"}
LOSS_KERNEL = "negative_log_likelihood_kernel"


def kernels_and_torch_ops(compute: Callable[[], torch.Tensor], kernels: set[str]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """compute() through the kernels (no autograd) and through torch's ops (autograd switches
    the kernels off), after checking that the first call launched `kernels` and the second
    none: with the Triton path silently unused both sides would be torch's ops, and agree."""
    launched, launch = [], gpu_kernels._launch

    def recording(kernel, *args, **kwargs):
        launched.append(kernel.__name__)
        return launch(kernel, *args, **kwargs)

    with mock.patch.object(gpu_kernels, "_launch", recording):
        with torch.no_grad():
            fused = compute()
        assert kernels <= set(launched), f"launched {launched}, not all of {sorted(kernels)}"
        served = len(launched)
        with torch.enable_grad():
            plain = compute().detach()
        assert len(launched) == served, "a kernel ran under autograd"
    return fused, plain


def population_fitness(encoding: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A population of 4 two-block models' fitness on 5 sequences of 2–70 tokens over a
    300-entry vocabulary (not a multiple of any vocabulary tile), by `kernels_and_torch_ops`."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(n_blocks=2),
                                     vocab=300, pop=4, device=DEVICE)
    tokens = torch.randint(3, 300, (5, 70), generator=torch.Generator().manual_seed(seed)
                           ).to(DEVICE)
    lengths = torch.tensor([70, 20, 9, 66, 2], device=DEVICE)
    return kernels_and_torch_ops(lambda: model.negative_cross_entropy(p, tokens, lengths),
                                 BLOCK_KERNELS | {LOSS_KERNEL})


@pytest.mark.parametrize("encoding", list(KERNEL_ENCODINGS))
@pytest.mark.parametrize("t, cfg", [(20, ModelConfig()), (70, ModelConfig()), (1, ModelConfig()),
                                    (9, ModelConfig(hidden=4, ff=16)),
                                    (13, ModelConfig(hidden=24, ff=40, n_heads=3, head_dim=8))],
                         ids=["paper", "two-query-blocks", "T=1", "small", "odd-sizes"])
def test_triton_block_equals_torch_ops(triton_path, encoding: str, t: int, cfg: ModelConfig):
    """One block through the attention and feed-forward kernels equals torch's SDPA, bmm and
    layer_norm, for every encoding, a sequence spanning two query blocks, a single token, the
    small model (hidden 4: operands padded to 16 on chip) and widths that are not powers of 2."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], cfg, device=DEVICE)
    block, batch = model.blocks[0], 2
    x = torch.randn(3, batch * t, cfg.hidden, generator=torch.Generator().manual_seed(t)
                    ).to(DEVICE)
    fused, plain = kernels_and_torch_ops(lambda: block(p, x.clone(), batch), BLOCK_KERNELS)
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("levers", list(ATTENTION_LEVERS))
def test_triton_attention_survives_extreme_scores(triton_path, monkeypatch, levers: str):
    """Scores hundreds of nats apart give finite output equal to torch's: masked and
    underflowing keys contribute exactly 0, never NaN, across key blocks; with every state of
    the attention levers."""
    for name, value in ATTENTION_LEVERS[levers].items():
        monkeypatch.setattr(gpu_kernels, name, value)
    model, p = perturbed_transformer(KERNEL_ENCODINGS["dense"], ModelConfig(), device=DEVICE)
    block = model.blocks[0]
    for layer in (block.q, block.k):
        p[f"{layer.name}.weight"].mul_(40)
    x = torch.randn(3, 2 * 70, 32, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    fused, plain = kernels_and_torch_ops(lambda: block(p, x.clone(), 2), BLOCK_KERNELS)
    assert torch.isfinite(fused).all()
    # At scores of hundreds of nats fp32 rounding of a score (3e-5 at 500) moves the layer-normed
    # output by up to 1e-3, so any other summation order than torch's reference shows: its fused
    # SDPA on a GPU (H100: 1.0e-3 at 21 of 13,440 entries, 2026-11-26), folding log2(e) into the
    # queries (exp2; interpreter: 9e-4 at 17 entries), its CPU matmuls on another instruction set
    # (AVX2 Zen 3: 3.4e-4 at 5 entries, 2026-11-29; 1e-4 held on an earlier EPYC). A masked or
    # underflowing key that leaked in would move entries by order 1.
    torch.testing.assert_close(fused, plain, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("precision", [gpu_kernels.IEEE, gpu_kernels.TF32, gpu_kernels.TF32X3],
                         ids=["ieee", "tf32", "tf32x3"])
@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_triton_fitness_equals_torch_ops(triton_path, monkeypatch, encoding: str,
                                         precision: int):
    """The whole population's fitness (blocks + the on-chip log-likelihood over a vocabulary
    that is not a multiple of the 128-entry tiles) equals the torch path to 1e-5 nats; also
    with the TF32 and split-TF32 launch configurations, whose products the interpreter computes
    in fp32 and a GPU in (split) TF32 (hence the looser tolerances there)."""
    monkeypatch.setattr(gpu_kernels, "matmul_precision", lambda: precision)
    fused, plain = population_fitness(encoding, seed=0)
    gpu_tol = {gpu_kernels.IEEE: 1e-5, gpu_kernels.TF32: 2e-2, gpu_kernels.TF32X3: 1e-3}
    tol = gpu_tol[precision] if DEVICE.type == "cuda" else 1e-5
    torch.testing.assert_close(fused, plain, atol=tol, rtol=tol)


def test_triton_fitness_with_layer_types_left_dense(triton_path):
    """Factorized blocks beside a dense embedding, and a factorized embedding beside dense
    feed-forward layers (encoding.ranks null for those types): the kernels take each layer's
    operands as it has them, and the fitness equals torch's ops."""
    from neuroevo.sections.encoding import EncodingConfig

    for ranks in ({"embedding": None}, {"ff": None, "qkv": None}):
        model, p = perturbed_transformer(EncodingConfig("factorized", 4, ranks),
                                         ModelConfig(n_blocks=2), vocab=300, pop=3, device=DEVICE)
        tokens = torch.randint(3, 300, (4, 40), generator=torch.Generator().manual_seed(2)
                               ).to(DEVICE)
        lengths = torch.tensor([40, 17, 3, 31], device=DEVICE)
        fused, plain = kernels_and_torch_ops(
            lambda: model.negative_cross_entropy(p, tokens, lengths), BLOCK_KERNELS | {LOSS_KERNEL})
        tol = 2e-2 if DEVICE.type == "cuda" else 1e-5  # a GPU may run TF32 products
        torch.testing.assert_close(fused, plain, atol=tol, rtol=tol)


@pytest.mark.parametrize("cap, query_block", [(168, 32), (128, 64)])
@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_register_caps_compute_the_same_fitness(triton_path, monkeypatch, encoding: str,
                                                cap: int, query_block: int):
    """With the attention and loss kernels' registers capped (gpu.ATTENTION_MAX_REGISTERS,
    LOSS_MAX_REGISTERS: Triton's maxnreg, so that ptxas spills what no longer fits; on CPU the
    interpreter takes the option and ignores it) the population's fitness still equals torch's
    ops, and both launches carry the cap."""
    monkeypatch.setattr(gpu_kernels, "ATTENTION_MAX_REGISTERS", cap)
    monkeypatch.setattr(gpu_kernels, "LOSS_MAX_REGISTERS", cap)
    monkeypatch.setattr(gpu_kernels, "QUERY_BLOCK", query_block)
    caps, launch = {}, gpu_kernels._launch

    def recording(kernel, *args, max_registers: int = 0, **kwargs):
        caps[kernel.__name__] = max_registers
        return launch(kernel, *args, max_registers=max_registers, **kwargs)

    monkeypatch.setattr(gpu_kernels, "_launch", recording)
    fused, plain = population_fitness(encoding, seed=7)
    tol = 2e-2 if DEVICE.type == "cuda" else 1e-5  # a GPU may run TF32 products
    torch.testing.assert_close(fused, plain, atol=tol, rtol=tol)
    assert caps["attention_layer_norm_kernel"] == caps[LOSS_KERNEL] == cap
    assert caps["feed_forward_layer_norm_kernel"] == 0


@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_aligned_operands_leave_the_fitness_alone(triton_path, monkeypatch, encoding: str):
    """With gpu.ALIGNED_OPERANDS, score_population hands the kernels the population's padded
    copy, in which every tensor the kernels read starts on a 64-byte boundary in every
    individual (without it, with this genome's length not a multiple of 16, some do not), and
    the fitness is the unpadded population's, bit for bit in the interpreter."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(n_blocks=2),
                                     vocab=300, pop=4, device=DEVICE)
    theta = next(iter(p.values()))._base  # the population the views were cut from
    tokens = torch.randint(3, 300, (5, 40), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    buckets = [EvalBatch(tokens, torch.tensor([40, 20, 9, 33, 2], device=DEVICE))]
    misaligned, launch = [], gpu_kernels._launch

    def recording(kernel, grid, precision, *args, **kwargs):
        misaligned.extend(a.data_ptr() % 64 for a in args
                          if isinstance(a, torch.Tensor) and a.data_ptr() % 64)
        return launch(kernel, grid, precision, *args, **kwargs)

    monkeypatch.setattr(gpu_kernels, "_launch", recording)
    fitness = {}
    for aligned in (False, True):
        monkeypatch.setattr(gpu_kernels, "ALIGNED_OPERANDS", aligned)
        misaligned.clear()
        with torch.no_grad():
            fitness[aligned] = score_population(model, theta, buckets, 0, 512, None)
        assert bool(misaligned) != aligned
    assert model.layout.dim % 16  # a genome length that leaves rows unaligned
    if DEVICE.type == "cpu":
        assert torch.equal(fitness[True], fitness[False])
    else:  # the GPU compiles other (vector) loads for the aligned operands: allow reordering
        torch.testing.assert_close(fitness[True], fitness[False], atol=1e-4, rtol=0)


@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_triton_fitness_with_every_lever_on(triton_path, monkeypatch, encoding: str):
    """All the levers on at once, those left off by default too (the feed-forward layer in
    chunks, the embedding's factor in the loss kernel at every rank): the population's fitness
    still equals torch's ops to 1e-5 nats."""
    for name, value in {**ATTENTION_LEVERS["all"], "LOSS_EXP2": True,
                        "LOSS_SHIFT_BY_TARGET": True, "LOSS_TAIL_SPLIT": True,
                        "FEED_FORWARD_SPLIT": 2, "LOSS_FACTOR_ON_CHIP": EVERY_RANK,
                        "EMBED_KERNEL": True}.items():
        monkeypatch.setattr(gpu_kernels, name, value)
    fused, plain = population_fitness(encoding, seed=6)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("levers", list(ATTENTION_LEVERS))
@pytest.mark.parametrize("encoding", ["dense", "factorized"])
@pytest.mark.parametrize("key_block", [32, 16], ids=["keys32", "keys16"])
def test_attention_levers_compute_the_same_block(triton_path, monkeypatch, encoding: str,
                                                 levers: str, key_block: int):
    """Each state of the attention levers (gpu.ATTENTION_*) leaves the block's output
    equal to torch's ops, over 70-token sequences (more than one query block, so whole key blocks
    of 16 or 32 lie below the diagonal), with or without factor operands; the stored keys and
    values really come from their own kernel's launch."""
    for name, value in ATTENTION_LEVERS[levers].items():
        monkeypatch.setattr(gpu_kernels, name, value)
    monkeypatch.setattr(gpu_kernels, "KEY_BLOCK", key_block)
    launched = record_triton_launches(monkeypatch)
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(), device=DEVICE)
    block = model.blocks[0]
    x = torch.randn(3, 2 * 70, 32, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    fused, plain = kernels_and_torch_ops(lambda: block(p, x.clone(), 2), BLOCK_KERNELS)
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)
    assert ("key_value_kernel" in launched) == gpu_kernels.ATTENTION_KV_STORED


# (the online softmax) is test_triton_block_equals_torch_ops[odd-sizes]
@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_odd_heads_compute_the_same_block_shifted(triton_path, monkeypatch, encoding: str):
    """3 heads of 8 features (a head count that is not a power of two, so the padded fourth
    head's columns and rows must stay out) with the diagonal shift
    (gpu.ATTENTION_SHIFT_BY_DIAGONAL): the block equals torch's ops."""
    monkeypatch.setattr(gpu_kernels, "ATTENTION_SHIFT_BY_DIAGONAL", True)
    cfg = ModelConfig(hidden=24, ff=40, n_heads=3, head_dim=8, rotary_dims=6)
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], cfg, device=DEVICE)
    block = model.blocks[0]
    x = torch.randn(3, 2 * 70, 24, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    fused, plain = kernels_and_torch_ops(lambda: block(p, x.clone(), 2), BLOCK_KERNELS)
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_triton_fitness_under_bf16_autocast(triton_path, encoding: str):
    """Under bf16 autocast (task.precision: bf16) the factorized embedding's bmm hands the
    kernels bf16 activations; they still run and stay within bf16's error of torch's ops."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(), vocab=300,
                                     device=DEVICE)
    tokens = torch.randint(3, 300, (3, 19), generator=torch.Generator().manual_seed(2)
                           ).to(DEVICE)
    lengths = torch.tensor([19, 7, 12], device=DEVICE)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        fused, plain = kernels_and_torch_ops(
            lambda: model.negative_cross_entropy(p, tokens, lengths), BLOCK_KERNELS | {LOSS_KERNEL})
    assert fused.dtype == torch.float32 and torch.isfinite(fused).all()
    torch.testing.assert_close(fused, plain.float(), atol=0.05, rtol=0.01)


# The loss kernel's levers, each state tests set: (LOSS_SHIFT_BY_TARGET, LOSS_TAIL_SPLIT)
LOSS_LEVERS = {"online": (False, False), "target-shift": (True, False),
               "tail-split": (False, True), "shift-and-split": (True, True)}


@pytest.mark.parametrize("vocab", [257, 256], ids=["partial-tile", "whole-tiles"])
@pytest.mark.parametrize("levers", list(LOSS_LEVERS))
@pytest.mark.parametrize("exp2", [False, True], ids=["exp", "exp2"])
def test_log_likelihood_kernel_writes_every_output_and_matches_float64(monkeypatch, exp2: bool,
                                                                       levers: str, vocab: int):
    """Against a float64 reference on fresh random inputs (an unwritten output element cannot
    match): rows gathered out of order, targets anywhere in the vocabulary, a population of 2;
    also with the exp2 lever (gpu.LOSS_EXP2: log2 units inside, nats out), with the sum
    shifted by the target's logit (gpu.LOSS_SHIFT_BY_TARGET) and with the tiles inside the
    vocabulary unmasked (gpu.LOSS_TAIL_SPLIT), over a vocabulary that ends in a partial tile
    and one that does not."""
    monkeypatch.setattr(gpu_kernels, "LOSS_EXP2", exp2)
    for name, value in zip(("LOSS_SHIFT_BY_TARGET", "LOSS_TAIL_SPLIT"), LOSS_LEVERS[levers]):
        monkeypatch.setattr(gpu_kernels, name, value)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 40, 32, generator=gen).to(DEVICE)
    weight = torch.randn(2, vocab, 32, generator=gen).to(DEVICE)
    bias = torch.randn(2, vocab, generator=gen).to(DEVICE)
    rows = torch.randperm(40, generator=gen)[:29].to(DEVICE)
    targets = torch.randint(0, vocab, (29,), generator=gen).to(DEVICE)
    logits = torch.einsum("pmk,pvk->pmv", x[:, rows].double(), weight.double()) \
        + bias.double()[:, None]
    expected = logits.logsumexp(-1) - logits.gather(2, targets.expand(2, -1)[..., None])[..., 0]
    with torch.no_grad():
        got = gpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("levers", list(LOSS_LEVERS))
def test_log_likelihood_survives_logits_far_above_the_target(monkeypatch, levers: str):
    """Rows whose logits lie hundreds of nats above their target's (exp of the shifted logit
    overflows fp32) next to ordinary rows in the same block: with the target shift
    (gpu.LOSS_SHIFT_BY_TARGET) the block goes through the online walk and every row still
    equals a float64 reference, finite; in each state of the loss levers."""
    for name, value in zip(("LOSS_SHIFT_BY_TARGET", "LOSS_TAIL_SPLIT"), LOSS_LEVERS[levers]):
        monkeypatch.setattr(gpu_kernels, name, value)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 40, 32, generator=gen)
    x[:, ::3] *= 60  # every third row: logits spread over hundreds of nats
    weight = torch.randn(2, 257, 32, generator=gen)
    bias = torch.randn(2, 257, generator=gen)
    rows, targets = torch.arange(40), torch.randint(0, 257, (40,), generator=gen)
    logits = torch.einsum("pmk,pvk->pmv", x.double(), weight.double()) + bias.double()[:, None]
    expected = logits.logsumexp(-1) - logits.gather(2, targets.expand(2, -1)[..., None])[..., 0]
    assert expected[:, ::3].max() > 200  # far beyond exp's fp32 range
    with torch.no_grad():
        got = gpu_kernels.negative_log_likelihood(
            *(t.to(DEVICE) for t in (x, rows, weight, bias, targets)))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double().cpu(), expected, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("tail_split", [False, True], ids=["masked", "tail-split"])
@pytest.mark.parametrize("on_chip", [False, True], ids=["torch-ops", "on-chip"])
@pytest.mark.parametrize("rank", [1, 4, 20])
def test_log_likelihood_with_a_factor_matches_float64(monkeypatch, on_chip: bool, rank: int,
                                                      tail_split: bool):
    """A factorized tied embedding's logits (x·inner)·weightᵀ: x's scored rows times each
    individual's (hidden, r) factor, in the kernel (gpu.LOSS_FACTOR_ON_CHIP) or as torch's ops
    before it, equal a float64 reference; ranks narrower than a dot, and not a power of two
    (so the unmasked tiles of gpu.LOSS_TAIL_SPLIT still mask the factor's columns)."""
    monkeypatch.setattr(gpu_kernels, "LOSS_FACTOR_ON_CHIP", rank if on_chip else 0)
    monkeypatch.setattr(gpu_kernels, "LOSS_TAIL_SPLIT", tail_split)
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(2, 40, 32, generator=gen).to(DEVICE)
    factor = torch.randn(2, rank, 32, generator=gen).to(DEVICE) / 4  # A (P, r, H), as stored
    weight = torch.randn(2, 257, rank, generator=gen).to(DEVICE)
    bias = torch.randn(2, 257, generator=gen).to(DEVICE)
    rows = torch.randperm(40, generator=gen)[:29].to(DEVICE)
    targets = torch.randint(0, 257, (29,), generator=gen).to(DEVICE)
    inner = factor.transpose(1, 2)  # (P, H, r): the strided view output_projection hands over
    logits = torch.einsum("pmh,phk,pvk->pmv", x[:, rows].double(), inner.double(),
                          weight.double()) + bias.double()[:, None]
    expected = logits.logsumexp(-1) - logits.gather(2, targets.expand(2, -1)[..., None])[..., 0]
    with torch.no_grad():
        got = gpu_kernels.negative_log_likelihood(x, rows, weight, bias, targets, inner)
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("rank", [4, 5])
def test_the_factor_goes_on_chip_up_to_the_shipped_rank(monkeypatch, rank: int):
    """gpu.LOSS_FACTOR_ON_CHIP as shipped (4): a rank-4 embedding factor is multiplied in the
    loss kernel, a rank-5 one by torch's ops before it (the H100 timed rank 4 faster on chip,
    rank 32 slower)."""
    assert gpu_kernels.LOSS_FACTOR_ON_CHIP == 4
    before_kernel = []
    factored_rows = gpu_kernels.factored_rows
    monkeypatch.setattr(gpu_kernels, "factored_rows", lambda *args: (
        before_kernel.append(True), factored_rows(*args))[1])
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(2, 12, 32, generator=gen).to(DEVICE)
    inner = torch.randn(2, 32, rank, generator=gen).to(DEVICE)
    weight = torch.randn(2, 65, rank, generator=gen).to(DEVICE)
    rows, targets = torch.arange(8, device=DEVICE), torch.arange(8, device=DEVICE)
    with torch.no_grad():
        gpu_kernels.negative_log_likelihood(x, rows, weight, torch.zeros(2, 65, device=DEVICE),
                                            targets, inner)
    assert bool(before_kernel) == (rank > 4)


@pytest.mark.parametrize("encoding", ["factorized", "rank1"])
def test_triton_fitness_with_the_factor_on_chip(triton_path, monkeypatch, encoding: str):
    """With the factorized embedding's product in the loss kernel the population's fitness
    equals torch's ops, as with the product before it (the lever's two states)."""
    monkeypatch.setattr(gpu_kernels, "LOSS_FACTOR_ON_CHIP", EVERY_RANK)
    fused, plain = population_fitness(encoding, seed=8)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", list(KERNEL_ENCODINGS))
@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(rotary_dims=0),
                                 ModelConfig(hidden=24, ff=40, n_heads=3, head_dim=8,
                                             rotary_dims=6)],
                         ids=["paper", "no-rotary", "odd"])
def test_embedding_kernel_equals_the_lookup_and_rotation(triton_path, monkeypatch, encoding: str,
                                                         cfg: ModelConfig):
    """gpu.EMBED_KERNEL: the embedding of 3 sequences of 37 tokens (through the factors when
    factorized) with its rotary encoding, from one kernel, equals the lookup and `_rotary` as
    torch's ops (positions restart with each sequence; features past the rotated ones, and all
    of them without rotation, are the lookup's); and the model's forward takes it."""
    monkeypatch.setattr(gpu_kernels, "EMBED_KERNEL", True)
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], cfg, vocab=300, device=DEVICE)
    tokens = torch.randint(0, 300, (3, 37), generator=torch.Generator().manual_seed(2)
                           ).to(DEVICE)
    launched = record_triton_launches(monkeypatch)
    monkeypatch.setattr(model, "blocks", [])  # hidden_states = the embedding alone
    fused, plain = kernels_and_torch_ops(lambda: model.hidden_states(p, tokens),
                                         {"embedding_rotary_kernel"})
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)
    assert launched == ["embedding_rotary_kernel"]


@pytest.mark.parametrize("split", [2, 4])
@pytest.mark.parametrize("encoding", list(KERNEL_ENCODINGS))
@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(hidden=24, ff=40, n_heads=3,
                                                            head_dim=8)], ids=["paper", "odd"])
def test_feed_forward_in_chunks_computes_the_same_block(triton_path, monkeypatch, split: int,
                                                        encoding: str, cfg: ModelConfig):
    """The feed-forward lever not yet on by default (gpu.FEED_FORWARD_SPLIT: the hidden layer in
    column chunks, each chunk's ff2 part accumulated, through B2 when ff2 is factorized) leaves
    the block's output equal to torch's ops, also when ff (40) is not a multiple of the chunks."""
    monkeypatch.setattr(gpu_kernels, "FEED_FORWARD_SPLIT", split)
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], cfg, device=DEVICE)
    block = model.blocks[0]
    x = torch.randn(3, 2 * 20, cfg.hidden, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    fused, plain = kernels_and_torch_ops(lambda: block(p, x.clone(), 2), BLOCK_KERNELS)
    torch.testing.assert_close(fused, plain, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("asked, factorized, launched", [
    (gpu_kernels.TF32, False, gpu_kernels.TF32), (gpu_kernels.TF32, True, gpu_kernels.TF32),
    (gpu_kernels.BF16, False, gpu_kernels.TF32), (gpu_kernels.BF16, True, gpu_kernels.IEEE),
    (gpu_kernels.IEEE, True, gpu_kernels.IEEE), (gpu_kernels.TF32X3, False, gpu_kernels.TF32X3),
    (gpu_kernels.TF32X3, True, gpu_kernels.TF32X3)])
def test_precisions_that_faulted_on_a_gpu_are_replaced(monkeypatch, asked: int,
                                                        factorized: bool, launched: int):
    """A launch whose precision faulted on the H100 (gpu.FAULTED_ON_GPU) runs in the nearest
    precision that ran clean there; the rest (split TF32 since session 9's H100 run) as
    asked."""
    monkeypatch.setattr(gpu_kernels, "matmul_precision", lambda: asked)
    assert gpu_kernels.launch_precision(factorized) == launched
    monkeypatch.setenv("NEUROEVO_GPU_KERNELS", "unverified")  # every precision as asked
    assert gpu_kernels.launch_precision(factorized) == asked


def test_a_run_records_every_launch_constant():
    """A run's summary.json records gpu.launch_settings(): every launch constant gpu.py has
    (blocks, warps, stages, each lever) must be there, since another value can move a fitness
    in its last digits; a lever added without it would go unrecorded. Not launch constants: the
    precision codes and names, tl.dot's minimum width, and FAULTED_ON_GPU (its effect is
    recorded as the products' precision)."""
    settings = gpu_kernels.launch_settings()
    recorded = set(settings) | set(settings["factorized"])
    not_settings = {"IEEE", "TF32", "BF16", "TF32X3", "PRECISIONS", "PRECISION_NAMES", "MIN_DOT",
                    "FAULTED_ON_GPU"}
    constants = {name for name in vars(gpu_kernels) if name.isupper() and name[0] != "_"}
    assert constants - not_settings <= recorded, constants - not_settings - recorded


def test_precision_follows_the_runs_torch_settings():
    """task.precision reaches the kernels through torch's own switches: TF32 when fp32 matmuls
    may use it, bf16 under autocast, IEEE fp32 otherwise; tf32x3 through the kernels' own
    process-wide switch, which float32_matmuls sets and restores like torch's."""
    from neuroevo.tasks.language import float32_matmuls, scorer

    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert gpu_kernels.matmul_precision() == gpu_kernels.IEEE
        torch.set_float32_matmul_precision("high")
        assert gpu_kernels.matmul_precision() == gpu_kernels.TF32
        scorer("tf32x3", False, DEVICE)
        assert gpu_kernels.matmul_precision() == gpu_kernels.TF32X3
        assert torch.get_float32_matmul_precision() == "highest"  # torch's matmuls stay fp32
        with float32_matmuls("fp32"):
            assert gpu_kernels.matmul_precision() == gpu_kernels.IEEE
        assert gpu_kernels.matmul_precision() == gpu_kernels.TF32X3
        scorer("fp32", False, DEVICE)
        assert gpu_kernels.matmul_precision() == gpu_kernels.IEEE
    finally:
        torch.set_float32_matmul_precision(previous)
        gpu_kernels.use_split_tf32(False)
    if torch.cuda.is_available():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert gpu_kernels.matmul_precision() == gpu_kernels.BF16


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch):
    """NEUROEVO_GPU_KERNELS=0 leaves CUDA runs on torch's ops (for A/B timing and bisecting)."""
    monkeypatch.setenv("NEUROEVO_GPU_KERNELS", "0")
    gpu_kernels.kernels.cache_clear()
    try:
        assert gpu_kernels.kernels() is None
    finally:
        gpu_kernels.kernels.cache_clear()


def test_a_whole_run_through_the_triton_kernels_is_reproducible(tmp_path, tiny_lm_overrides,
                                                                monkeypatch):
    """`neuroevo run` with every transformer kernel on the Triton path (the GPU's, run here
    through the interpreter), on stories in several length buckets: the first generation's
    scores match the path without the Triton kernels, and on a GPU two runs give byte-identical
    logs (the kernels have no atomics or order-dependent reductions; the interpreter runs their
    programs one after another, so on a CPU that second run could not fail and is skipped)."""
    from neuroevo.cli import main

    def run(out) -> list[list[str]]:
        overrides = [*tiny_lm_overrides, "ga.generations=2", "task.max_len=64",
                     "task.bucket_padding=0"]  # stories of 51, 60 and 64 tokens: 3 buckets
        sets = [arg for override in overrides for arg in ("--set", override)]
        assert main(["run", "configs/tinystories/factorized.yaml", "--out", str(out),
                     "--quiet", *sets]) == 0
        return [line.split(",") for line in (out / "fitness.csv").read_text().splitlines()]

    reference = run(tmp_path / "cpu-kernels")
    route_through_triton(monkeypatch)
    first = run(tmp_path / "a")
    if DEVICE.type == "cuda":
        assert run(tmp_path / "b") == first
    details = json.loads((tmp_path / "a" / "summary.json").read_text())["task_details"]
    assert details["eval_buckets"] > 1
    assert details["gpu_kernels"].startswith("on: within")
    launch = details["gpu_kernel_launch"]  # what the kernels ran with, for whoever reruns it
    assert launch["QUERY_BLOCK"] == gpu_kernels.QUERY_BLOCK and launch["products"] == "fp32"
    assert launch["ATTENTION_KV_STORED"] is gpu_kernels.ATTENTION_KV_STORED
    header = first[0]
    for column in ("best", "mean", "worst"):
        i = header.index(column)
        assert abs(float(first[1][i]) - float(reference[1][i])) < 1e-4, column


def test_a_run_switches_off_kernels_that_disagree_with_torch_ops(tmp_path, tiny_lm_overrides,
                                                                monkeypatch, caplog):
    """A kernel that computes the wrong thing (as Triton's miscompiled tensor-core products did
    on an H100) is caught by the run's once-a-run check: the run warns, scores with torch's ops
    — the same fitness as a run that never used the kernels — and says so in its summary."""
    from neuroevo.cli import main
    from neuroevo.kernels import triton_lm

    def run(out) -> tuple[list[str], dict]:
        sets = [arg for override in [*tiny_lm_overrides, "ga.generations=1"]
                for arg in ("--set", override)]
        assert main(["run", "configs/tinystories/dense.yaml", "--out", str(out), "--quiet",
                     *sets]) == 0
        return ((out / "fitness.csv").read_text().splitlines(),
                json.loads((out / "summary.json").read_text())["task_details"])

    monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)
    monkeypatch.setattr(gpu_kernels, "usable", lambda x: False)  # on a GPU too
    reference, _ = run(tmp_path / "torch-ops")
    monkeypatch.setattr(gpu_kernels, "usable", gpu_kernels.eligible)
    monkeypatch.setattr(triton_lm, "negative_log_likelihood_kernel",
                        Miscompiled(triton_lm.negative_log_likelihood_kernel))
    fitness, details = run(tmp_path / "miscompiled")
    assert details["gpu_kernels"].startswith("off: 5")
    assert "Triton kernels' fitness is 5" in caplog.text
    assert fitness == reference


class Miscompiled:
    """A loss kernel that launches the real one, then moves every output by 5 nats (as Triton's
    miscompiled tensor-core launches were whole nats off)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel

    def __getitem__(self, grid):
        def launch(*args, **constants):
            self.kernel[grid](*args, **constants)
            args[9].add_(5.0)  # out
        return launch


@pytest.mark.parametrize("first", ["miscompiled", "right", "retuned"])
def test_a_resumed_run_scores_as_the_process_it_resumes(tmp_path, tiny_lm_overrides,
                                                         monkeypatch, caplog, first: str):
    """The kernel check's verdict is in the checkpoint. A run whose first process found the
    kernels wrong (so scored with torch's ops) and is resumed where they pass keeps torch's ops:
    its log is the uninterrupted torch-ops run's, byte for byte. One whose first process used
    them and is resumed where they fail uses torch's ops, and warns that its log departs; so
    does one resumed with the kernels under other launch settings ("retuned")."""
    from neuroevo.cli import main
    from neuroevo.kernels import triton_lm

    sets = [arg for override in [*tiny_lm_overrides, "ga.generations=3"]
            for arg in ("--set", override)]

    def run(out, *extra) -> int:
        return main(["run", "configs/tinystories/dense.yaml", "--out", str(out), "--quiet",
                     *sets, *extra])

    monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)
    monkeypatch.setattr(gpu_kernels, "usable", lambda x: False)
    assert run(tmp_path / "torch-ops") == 0
    monkeypatch.setattr(gpu_kernels, "usable", gpu_kernels.eligible)
    right = triton_lm.negative_log_likelihood_kernel
    loss_kernel = {"right": right, "miscompiled": Miscompiled(right)}
    out = tmp_path / "run"
    restore = interrupt_at_checkpoint(monkeypatch, 2)
    monkeypatch.setattr(triton_lm, "negative_log_likelihood_kernel",
                        loss_kernel["right" if first == "retuned" else first])
    assert run(out) == 130
    restore()
    then = {"miscompiled": "right", "right": "miscompiled", "retuned": "right"}[first]
    monkeypatch.setattr(triton_lm, "negative_log_likelihood_kernel", loss_kernel[then])
    if first == "retuned":
        monkeypatch.setattr(gpu_kernels, "QUERY_BLOCK", gpu_kernels.QUERY_BLOCK // 2)
    assert run(out, "--resume") == 0
    verdict = json.loads((out / "summary.json").read_text())["task_details"]["gpu_kernels"]
    if first == "miscompiled":
        assert verdict.startswith("off: 5")  # the first process's, though they pass here
        assert verdict.endswith("(kept from the process this run resumed from)")
        assert (out / "fitness.csv").read_bytes() == (tmp_path / "torch-ops" / "fitness.csv"
                                                      ).read_bytes()
    elif first == "right":
        assert verdict.startswith("off: 5")
        assert verdict.endswith("(the process resumed from used the kernels)")
        assert "uses torch's ops now" in caplog.text
    else:
        assert verdict.startswith("on: within")
        assert "launch settings differ" in caplog.text


def test_a_kept_verdict_is_not_marked_twice() -> None:
    """Resumed again, a run whose verdict was already kept from an earlier process keeps it as
    it is, not with a second mark."""
    from types import SimpleNamespace

    from neuroevo.tasks.language import KEPT, LanguageTask

    kept = f"off: 5 nats from torch's fp32 ops {KEPT}"
    task = SimpleNamespace(_resumed={"gpu_kernels": kept})
    assert LanguageTask._resumed_path(task, "on: within 1e-06 nats") == kept
    first = SimpleNamespace(_resumed={"gpu_kernels": "off: 5 nats"})
    assert LanguageTask._resumed_path(first, "on: within 1e-06 nats") == f"off: 5 nats {KEPT}"


@pytest.mark.parametrize("asked, block_ff, used", [(1, 128, 1), (2, 128, 2), (3, 128, 2),
                                                   (8, 128, 8), (8, 64, 4), (5, 32, 2)])
def test_feed_forward_split_is_a_power_of_two_that_keeps_chunks_dot_wide(
        monkeypatch, asked: int, block_ff: int, used: int) -> None:
    """A chunk's width is a tl.arange length (a power of two) and a tl.dot operand (≥ 16 wide):
    the asked split is rounded down and capped to fit both (no GPU needed: pure arithmetic)."""
    monkeypatch.setattr(gpu_kernels, "FEED_FORWARD_SPLIT", asked)
    assert gpu_kernels.feed_forward_split(block_ff) == used
