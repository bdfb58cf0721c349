"""The population-batched transformer against obvious references (tolerances: float32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuroevo.genome import initial_weights
from neuroevo.layers import developed_linear_weight
from neuroevo.models.transformer import Transformer
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig

VOCAB = 61
ENCODINGS = {
    "dense": (EncodingConfig("dense"), ModelConfig()),
    "factorized": (EncodingConfig("factorized", 4, {"embedding": 8}), ModelConfig()),
    "factorized-rank1": (EncodingConfig("factorized", 1, {"embedding": 4}), ModelConfig()),
    "small": (EncodingConfig("dense"), ModelConfig(hidden=4, ff=16)),
}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four sequences of lengths 12, 9, 5, 2, right-padded with 0."""
    lengths = torch.tensor([12, 9, 5, 2])
    tokens = torch.randint(3, VOCAB, (4, 12), generator=torch.Generator().manual_seed(1))
    tokens[torch.arange(12)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def _population(model: Transformer, size: int = 5) -> torch.Tensor:
    theta = initial_weights(model.layout, list(range(size)), torch.device("cpu"))
    # a little mutation noise so individuals differ in every tensor, biases included
    return theta + 0.01 * torch.randn_like(theta) * (model.layout.mutation_std(0.01) > 0)


@pytest.mark.parametrize("name", ENCODINGS)
def test_batched_forward_equals_per_individual(name: str) -> None:
    """Scoring P individuals at once equals scoring each alone (atol 1e-5), any chunking."""
    encoding, config = ENCODINGS[name]
    model = Transformer(config, encoding, VOCAB)
    theta = _population(model)
    tokens, lengths = _batch()
    batched = model.negative_cross_entropy(model.layout.views(theta), tokens, lengths,
                                           token_chunk=5)
    alone = torch.cat([model.negative_cross_entropy(model.layout.views(theta[i:i + 1]), tokens,
                                                    lengths) for i in range(len(theta))])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def _dense_twin(factorized: Transformer, theta: torch.Tensor) -> tuple[Transformer, torch.Tensor]:
    """A dense model whose every W is the factorized model's developed A·B."""
    dense = Transformer(factorized.cfg, EncodingConfig("dense"), VOCAB)
    p = factorized.layout.views(theta)
    out = torch.empty(theta.shape[0], dense.layout.dim)
    q = dense.layout.views(out)
    for name, view in q.items():
        if name in p:
            view.copy_(p[name])
        elif name == "embed.weight":
            view.copy_(torch.bmm(p["embed.B"], p["embed.A"]))
    for block_f, block_d in zip(factorized.blocks, dense.blocks):
        for lf, ld in [(block_f.q, block_d.q), (block_f.k, block_d.k), (block_f.v, block_d.v),
                       (block_f.out, block_d.out), (block_f.ff1, block_d.ff1),
                       (block_f.ff2, block_d.ff2)]:
            q[f"{ld.name}.weight"].copy_(developed_linear_weight(lf, p))
    return dense, out


def test_factorized_forward_equals_dense_with_developed_weights() -> None:
    """(x·B)·A everywhere gives the same loss as the dense network with W = A·B (atol 1e-4)."""
    encoding, config = ENCODINGS["factorized"]
    model = Transformer(config, encoding, VOCAB)
    theta = _population(model)
    dense, dense_theta = _dense_twin(model, theta)
    tokens, lengths = _batch()
    torch.testing.assert_close(
        model.negative_cross_entropy(model.layout.views(theta), tokens, lengths),
        dense.negative_cross_entropy(dense.layout.views(dense_theta), tokens, lengths),
        rtol=1e-4, atol=1e-4)


def test_loss_is_the_mean_of_per_sequence_mean_cross_entropy() -> None:
    """Fitness equals −mean over sequences of F.cross_entropy over each sequence's own targets."""
    encoding, config = ENCODINGS["dense"]
    model = Transformer(config, encoding, VOCAB)
    theta = _population(model, 1)
    p = model.layout.views(theta)
    tokens, lengths = _batch()
    hidden = model.hidden_states(p, tokens).view(4, 12, -1)               # (B, T, H), P = 1
    logits = hidden @ p["embed.weight"][0].T + p["embed.out_bias"][0]
    per_sequence = [F.cross_entropy(logits[b, :n - 1], tokens[b, 1:n]) for b, n in
                    enumerate(lengths.tolist())]
    expected = -torch.stack(per_sequence).mean()
    torch.testing.assert_close(model.negative_cross_entropy(p, tokens, lengths)[0], expected,
                               rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_the_loss() -> None:
    """Extra right padding (any token id) leaves every individual's fitness unchanged."""
    encoding, config = ENCODINGS["factorized"]
    model = Transformer(config, encoding, VOCAB)
    theta = _population(model)
    tokens, lengths = _batch()
    padded = torch.cat([tokens, torch.randint(0, VOCAB, (4, 6))], dim=1)
    torch.testing.assert_close(
        model.negative_cross_entropy(model.layout.views(theta), tokens, lengths),
        model.negative_cross_entropy(model.layout.views(theta), padded, lengths),
        rtol=1e-5, atol=1e-5)


def test_attention_is_causal() -> None:
    """Changing a later token never changes the hidden state at earlier positions."""
    encoding, config = ENCODINGS["dense"]
    model = Transformer(config, encoding, VOCAB)
    p = model.layout.views(_population(model, 2))
    tokens, _ = _batch()
    changed = tokens.clone()
    changed[:, 6] = (changed[:, 6] + 1) % VOCAB
    before = model.hidden_states(p, tokens).view(2, 4, 12, -1)
    after = model.hidden_states(p, changed).view(2, 4, 12, -1)
    torch.testing.assert_close(before[:, :, :6], after[:, :, :6])
    assert not torch.allclose(before[:, :, 6:], after[:, :, 6:])


def test_head_padding_for_cuda_attention_kernels_changes_nothing(monkeypatch) -> None:
    """Zero-padding head_dim 4 to 8 (what the CUDA path does so that SDPA's memory-efficient
    kernel applies) gives the unpadded attention, scale 1/√4 kept; SDPA really sees 8."""
    from neuroevo.models.transformer import causal_attention

    widths, sdpa = [], F.scaled_dot_product_attention

    def recording_sdpa(q: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        widths.append(q.shape[-1])
        return sdpa(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    q, k, v = torch.randn(3, 2, 4, 9, 4, generator=torch.Generator().manual_seed(0)).unbind(0)
    torch.testing.assert_close(causal_attention(q, k, v, pad_to=8), causal_attention(q, k, v),
                               atol=1e-6, rtol=1e-6)
    assert widths == [8, 4]  # else both sides are the unpadded attention


@pytest.mark.parametrize("kernels", ["on", "absent", "switched off"])
def test_gpu_population_chunk_fills_the_activation_budget_per_bucket(kernels: str,
                                                                     monkeypatch) -> None:
    """On a GPU each length bucket gets as many individuals per call as keep its widest
    activation within 2**28 floats: short buckets go in fewer, larger calls; never 0, never more
    than the population; torch's wider activations when the kernels are absent or switched off
    (a run whose kernel check failed). (The rule only reads the device type: checked on CPU.)"""
    import contextlib

    from neuroevo.kernels import gpu as gpu_kernels
    from neuroevo.tasks.language import population_chunk

    monkeypatch.setattr(gpu_kernels, "kernels", lambda: None if kernels == "absent" else object())
    cfg, cuda = ModelConfig(), torch.device("cuda")
    stored = 2 * cfg.n_heads * cfg.head_dim if gpu_kernels.ATTENTION_KV_STORED else 0
    widest = 2 * cfg.hidden + stored if kernels == "on" else cfg.ff
    with gpu_kernels.switched_off() if kernels == "switched off" else contextlib.nullcontext():
        chunks = {positions: population_chunk(cfg, positions, 512, cuda)
                  for positions in (64 * 900, 64 * 200, 5 * 300, 10)}
    assert list(chunks.values()) == sorted(chunks.values())  # shorter bucket, larger chunk
    assert chunks[10] == 512 and chunks[64 * 900] >= 1
    for positions, chunk in chunks.items():
        assert chunk * positions * widest <= 2**28 < (chunk + 1) * positions * widest or chunk == 512
    assert population_chunk(cfg, 2**28, 512, cuda) == 1
    assert population_chunk(cfg, 64 * 900, 512, torch.device("cpu")) == 16


@pytest.mark.parametrize("config, key, value, fragment", [
    ("configs/tinystories/dense.yaml", "model.ff", "0", "model.ff must be ≥ 1, got 0"),
    ("configs/tinystories/factorized.yaml", "model.ff", "0", "model.ff must be ≥ 1, got 0"),
    ("configs/tinystories/dense.yaml", "model.n_heads", "0", "model.n_heads must be ≥ 1, got 0"),
    ("configs/tinystories/dense.yaml", "model.head_dim", "0", "model.head_dim must be ≥ 1"),
    ("configs/tinystories/dense.yaml", "model.hidden", "0", "model.hidden must be ≥ 1, got 0"),
    ("configs/tinystories/dense.yaml", "model.n_blocks", "-1", "model.n_blocks must be ≥ 0"),
    ("configs/tinystories/dense.yaml", "model.ln_eps", "0", "model.ln_eps must be > 0"),
    ("configs/tinystories/factorized.yaml", "model.embedding_init_std", "0",
     "model.embedding_init_std must be > 0 (or null: the reference's), got 0"),
])
def test_sizes_that_cannot_build_are_one_line_config_errors(capsys, config: str, key: str,
                                                            value: str, fragment: str) -> None:
    """A transformer size of zero stops the CLI at config time, exit 2, with one `error:` line
    naming that key (not a ZeroDivisionError, nor a factorized layer's rank bound that points
    at encoding.rank)."""
    from neuroevo.cli import main

    assert main(["describe", config, "--preset", "quick", "--set", f"{key}={value}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert fragment in error
