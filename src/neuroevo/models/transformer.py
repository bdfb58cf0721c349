"""The paper's tiny decoder-only transformer, evaluated for a whole population at once.

Post-norm blocks (x = LN(x + Attn(x)); x = LN(x + FF(x))), causal multi-head attention with
separate Q/K/V projections, a ReLU feed-forward, a tied token embedding with its own output bias,
and rotary position encoding applied once to the first `rotary_dims` features of the input
embedding (the authors' Jevo.jl, experiments/tinystories/). Paper sizes: hidden 32, ff 128, 3 blocks, 4 heads of width 4.

The loss is the expensive part: P × tokens × 2051 logits, of which only positions that have a
target are ever computed (padding never reaches the vocabulary GEMM). Without autograd it is one
fused kernel that reduces each token's logits to its log-likelihood where they are made, never
storing them; torch's ops instead walk the population and the tokens in tiles small enough to
stay in cache.

Without autograd each block's two sub-layers run as fused kernels too (neuroevo/kernels): C on
CPU (the rotary step as well), Triton on CUDA. The torch code here is what they are tested
against, and what runs under autograd (`neuroevo gradient`), inside torch.compile, and where a
kernel is unavailable.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch
import torch.nn.functional as F

from neuroevo.encoding import ParamLayout
from neuroevo.kernels import cpu as cpu_kernels
from neuroevo.kernels import gpu as gpu_kernels
from neuroevo.layers import LayerNorm, Linear, Params, TiedEmbedding, fused_linear
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.language import ModelConfig

class Block:
    def __init__(self, layout: ParamLayout, name: str, cfg: ModelConfig,
                 encoding: EncodingConfig) -> None:
        width = cfg.n_heads * cfg.head_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim

        def linear(suffix: str, d_in: int, d_out: int, layer_type: str, kind: str) -> Linear:
            return Linear(layout, f"{name}.{suffix}", d_in, d_out, encoding.rank_for(layer_type),
                          kind=kind, sparse=encoding.sparse_for(layer_type),
                          dense_start=encoding.dense_start)

        self.q, self.k, self.v = (linear(f"attn.{p}", cfg.hidden, width, "qkv", "attention q/k/v")
                                  for p in "qkv")
        self.out = linear("attn.out", width, cfg.hidden, "attn_out", "attention out")
        self.ln1 = LayerNorm(layout, f"{name}.ln1", cfg.hidden, cfg.ln_eps)
        self.ff1 = linear("ff1", cfg.hidden, cfg.ff, "ff", "feed-forward")
        self.ff2 = linear("ff2", cfg.ff, cfg.hidden, "ff", "feed-forward")
        self.ln2 = LayerNorm(layout, f"{name}.ln2", cfg.hidden, cfg.ln_eps)

    def __call__(self, p: Params, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x (P, B·T, H) → (P, B·T, H); the B sequences of length T are attended separately.

        Without autograd each sub-layer is one fused kernel (neuroevo/kernels: C on CPU, Triton
        on CUDA), which may work in place: x, the caller's fresh activation, is consumed.
        """
        fused = _fused_kernels(x)
        if fused is not None:
            x = fused.attention_layer_norm(
                x, batch, *(layer.operands(p) for layer in (self.q, self.k, self.v, self.out)),
                *self.ln1.scale_shift(p), self.ln1.eps, self.n_heads, self.head_dim)
            return fused.feed_forward_layer_norm_(
                x, self.ff1.operands(p), self.ff2.operands(p), *self.ln2.scale_shift(p),
                self.ln2.eps)
        pop, n, _ = x.shape
        t, width = n // batch, self.n_heads * self.head_dim
        qkv = fused_linear([self.q, self.k, self.v], p, x)                      # (P, B·T, 3·h·d)
        qkv = qkv.view(pop * batch, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = causal_attention(qkv[0], qkv[1], qkv[2], pad_to=8 if x.is_cuda else 1)
        att = att.transpose(1, 2).reshape(pop, n, width)                      # (P, B·T, h·d)
        x = self.ln1(p, self.out(p, att, residual=x))
        hidden = self.ff1(p, x).relu_()                                       # (P, B·T, ff)
        return self.ln2(p, self.ff2(p, hidden, residual=x))


class Transformer:
    """The whole population's language model: tokens shared by all, weights per individual."""

    def __init__(self, cfg: ModelConfig, encoding: EncodingConfig, vocab: int) -> None:
        self.cfg, self.vocab = cfg, vocab
        self.layout = ParamLayout()
        self.embedding = TiedEmbedding(self.layout, "embed", vocab, cfg.hidden,
                                       encoding.rank_for("embedding"),
                                       encoding.sparse_for("embedding"),
                                       init_std=cfg.embedding_init_std,
                                       dense_start=encoding.dense_start)
        self.blocks = [Block(self.layout, f"blocks.{i}", cfg, encoding)
                       for i in range(cfg.n_blocks)]

    def hidden_states(self, p: Params, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) → final hidden states (P, B·T, H)."""
        batch, t = tokens.shape
        x = self._fused_embedding(p, tokens)
        if x is None:
            x = self.embedding.embed(p, tokens.reshape(-1))                   # (P, B·T, H)
            x = _rotary(x.view(x.shape[0], batch, t, -1), self.cfg.rotary_dims).flatten(1, 2)
        for block in self.blocks:
            x = block(p, x, batch)
        return x

    def _fused_embedding(self, p: Params, tokens: torch.Tensor) -> torch.Tensor | None:
        """The embedding of tokens (B, T) with its rotation from one GPU kernel (gpu.EMBED_KERNEL)
        where it serves, else None. The lever is checked first: a sparse embedding's operands
        are developed weights, not worth making for nothing."""
        if not gpu_kernels.EMBED_KERNEL:
            return None
        table, factor = self.embedding.lookup_operands(p)
        if not gpu_kernels.usable(table):
            return None
        t = tokens.shape[1]
        return gpu_kernels.embedding_rotary(tokens.reshape(-1), t, table, factor,
                                            *rotary_angles(t, self.cfg.rotary_dims, table.device))

    def negative_cross_entropy(self, p: Params, tokens: torch.Tensor, lengths: torch.Tensor,
                               token_chunk: int = 512, pop_tile: int | None = None
                               ) -> torch.Tensor:
        """Fitness (P,): minus the mean over sequences of each sequence's mean next-token CE.

        Matches the reference: position t predicts token t+1 for t < length−1; padding is masked;
        each sequence weighs equally whatever its length.
        """
        return self.fitness_from_hidden(p, self.hidden_states(p, tokens), tokens, lengths,
                                        token_chunk, pop_tile)

    def next_token_logits(self, p: Params, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (P, B, vocab) of the token after each row of tokens (B, T): what the model
        predicts from the last position, by torch's ops (writing text, not scoring: the loss
        kernels never store logits)."""
        batch, t = tokens.shape
        last = self.hidden_states(p, tokens)[:, t - 1::t]                    # (P, B, H)
        table, inner = self.embedding.output_projection(p)                    # (P, V, K), (P, H, K)
        if inner is not None:
            last = torch.bmm(last, inner)
        return torch.bmm(last, table.transpose(1, 2)) + self.embedding.out_bias(p).unsqueeze(1)

    def fitness_from_hidden(self, p: Params, h: torch.Tensor, tokens: torch.Tensor,
                            lengths: torch.Tensor, token_chunk: int = 512,
                            pop_tile: int | None = None) -> torch.Tensor:
        """The tied-embedding logits and cross-entropy part of `negative_cross_entropy`, from
        final hidden states h (P, B·T, H) — the part no model can skip (bench/bench_lm.py times
        it alone).

        With a fused loss kernel (no autograd, neuroevo/kernels) the logits never reach memory;
        with torch's ops they are made and reduced one tile of `pop_tile` individuals ×
        `token_chunk` scored tokens at a time (None: every individual of `p` in one tile), so
        they never exist for the whole population at once. Padding positions never reach the
        vocabulary GEMM.
        """
        batch = tokens.shape[0]
        pop = h.shape[0]
        positions, targets, weights = scored_positions(tokens, lengths)      # (M,) each
        weight_out, inner = self.embedding.output_projection(p)               # (P, V, K), (P, H, K)
        fused = _fused_kernels(h)
        if fused is not None:  # one kernel: the logits are reduced where made, never stored
            nll = fused.negative_log_likelihood(h, positions, weight_out,
                                                self.embedding.out_bias(p), targets, inner)
            return -(nll * weights).sum(1) / batch
        bias = self.embedding.out_bias(p).unsqueeze(1)                        # (P, 1, V)
        pop_tile = pop_tile or pop
        nll = h.new_empty(pop, positions.numel())                             # (P, M)
        for start in range(0, positions.numel(), token_chunk):
            rows = slice(start, start + token_chunk)
            hr = h.index_select(1, positions[rows])                           # (P, m, H)
            if inner is not None:
                hr = torch.bmm(hr, inner)                                     # (P, m, r)
            for first in range(0, pop, pop_tile):
                ind = slice(first, first + pop_tile)
                # bmm + add_ rather than baddbmm: a broadcast bias in baddbmm measured ~1.7×
                # slower on CPU
                logits = torch.bmm(hr[ind], weight_out[ind].transpose(1, 2)).add_(bias[ind])
                nll[ind, rows] = F.cross_entropy(logits.flatten(0, 1),        # (p·m, V) → (p, m)
                                                 targets[rows].repeat(logits.shape[0]),
                                                 reduction="none").view(logits.shape[0], -1)
        # one weighted sum per chunk (a tiny matrix-vector product per tile measured ~2 ms per
        # generation of thread start-up on CPU), element-wise so that autocast keeps it in fp32
        return -(nll * weights).sum(1) / batch


def _fused_kernels(x: torch.Tensor) -> ModuleType | None:
    """The kernels that serve activations x in place of torch's ops (neuroevo/kernels: Triton on
    CUDA, C on CPU), or None (autograd, torch.compile, no kernels built)."""
    return next((kernels for kernels in (gpu_kernels, cpu_kernels) if kernels.usable(x)), None)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     pad_to: int = 1) -> torch.Tensor:
    """Causal SDPA of (…, T, d) heads, scale 1/√d, with d zero-padded to a multiple of `pad_to`.

    On CUDA, SDPA's memory-efficient and flash kernels need d divisible by 8 (pytorch/pytorch
    #110630); with the paper's d = 4 it would fall back to the math kernel, which materialises
    the (…, T, T) scores — gigabytes at the paper's population. Zero features change neither
    q·k nor, once sliced off, the output.
    """
    d = q.shape[-1]
    if d % pad_to == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    pad = (0, pad_to - d % pad_to)
    out = F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), F.pad(v, pad),
                                         is_causal=True, scale=d ** -0.5)
    return out[..., :d]


@functools.lru_cache(maxsize=1024)
def scored_positions(tokens: torch.Tensor, lengths: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices into B·T of positions that predict a real token, their targets, and weights
    1/(length−1) so that summing weight·CE gives the sum over sequences of per-sequence means.

    Cached per (tokens, lengths) object (tensors hash by identity; the cache keeps them alive):
    the paper's evaluation buckets are the same tensors every chunk and generation, and on a GPU
    `nonzero` waits for the device, so recomputing would stall the queue once per call. Room for
    1,024 buckets: a padding budget near 0 gives one per distinct story length."""
    batch, t = tokens.shape
    pos = torch.arange(t - 1, device=tokens.device)
    valid = pos[None, :] < (lengths[:, None] - 1)                              # (B, T−1)
    rows, cols = valid.nonzero(as_tuple=True)
    positions = rows * t + cols
    targets = tokens[rows, cols + 1]
    weights = 1.0 / (lengths[rows] - 1).to(torch.float32)
    return positions, targets, weights


def _rotary(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotate feature pairs (0,1), (2,3), … of the first `dims` features by position 1..T.

    x (P, B, T, H), a fresh embedding lookup: without autograd it is rotated in place (copying
    the other H − dims features would cost more than the rotation). Frequencies
    10000^(−2i/dims), as in RoFormer.
    """
    if dims == 0:
        return x
    cos, sin = rotary_angles(x.shape[2], dims, x.device)                      # (T, dims/2) each
    if cpu_kernels.usable(x) and x.is_contiguous():
        return cpu_kernels.rotary_(x, cos, sin)
    pairs = x[..., :dims].unflatten(-1, (dims // 2, 2))                       # (P, B, T, d/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    if torch.is_grad_enabled():
        return torch.cat((rotated, x[..., dims:]), dim=-1)
    x[..., :dims] = rotated
    return x


@functools.lru_cache(maxsize=16)
def rotary_angles(t: int, dims: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, dims/2) of position·frequency, positions 1..T; the same every generation."""
    inv_freq = 10000.0 ** (-torch.arange(0, dims, 2, dtype=torch.float32, device=device) / dims)
    angle = torch.arange(1, t + 1, dtype=torch.float32, device=device)[:, None] * inv_freq
    return angle.cos(), angle.sin()
