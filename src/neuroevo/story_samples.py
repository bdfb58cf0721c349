"""What a language-model elite writes: openings of held-out stories continued token by token.

A fitness of −4.2 nats per token says how well the model predicts the evaluation stories, not
what it has learned to say; reading its continuations does (`neuroevo replay --sample N`). The
prompts are `<s>` and the first tokens of stories the run never scored (those after the fixed
evaluation set, when the corpus has them), so a continuation cannot be recalled from the data
the GA fitted. Text is decoded with the run's own BPE, whose pre-tokenizer splits at whitespace
and punctuation and keeps no spaces: the model's tokens come out lower-cased and joined by
single spaces, sub-word pieces apart, exactly as the model sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuroevo.data.tinystories import BOS_ID, EOS_ID, PAD_ID, SPECIAL_OFFSET, Corpus, DataError
from neuroevo.layers import Params
from neuroevo.models.transformer import Transformer

# never a target (padding is masked out of the loss, <s> only opens a row), so never sampled:
# the fitness never asked the model to give them any particular probability
NEVER_TARGETS = (PAD_ID, BOS_ID)
SAMPLE_SEED = 0  # the sampler's generator: the same elite and options write the same stories


@dataclass(frozen=True)
class StorySample:
    story: int  # the corpus index of the story whose opening is the prompt
    prompt: str
    continuation: str
    ended: bool  # the model wrote </s> (else it stopped at the token budget)


def prompt_stories(corpus: Corpus, first: int, n: int, prompt_tokens: int) -> list[int]:
    """Indices of `n` stories longer than `prompt_tokens` tokens, from story `first` on (wrapping
    to the start of the corpus when too few lie after it)."""
    order = [*range(first, len(corpus)), *range(min(first, len(corpus)))]
    chosen = [i for i in order if len(corpus.story(i)) > prompt_tokens][:n]
    if len(chosen) < n:
        raise DataError(f"the corpus has {len(chosen)} stories longer than {prompt_tokens} "
                         f"tokens, fewer than the {n} samples asked for: ask for fewer "
                         "(--sample) or shorter prompts (--prompt-tokens)")
    return chosen


@torch.no_grad()
def continue_tokens(model: Transformer, p: Params, prompts: torch.Tensor, new_tokens: int,
                    temperature: float, generator: torch.Generator) -> torch.Tensor:
    """prompts (B, K) continued by up to `new_tokens` tokens each → (B, K + n) model ids, n ≤
    new_tokens; a row that wrote </s> is padded with PAD_ID after it. One individual (p holds a
    population of 1); temperature 0 takes the most likely token, else tokens are drawn from the
    softmax of logits / temperature with `generator` (a CPU one, so that a CPU and a GPU replay
    draw from the same stream). Each step runs the whole prefix again: at these sizes (tens of
    tokens, a 32-wide model) that costs milliseconds, and no cache of keys is needed."""
    tokens = prompts
    done = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
    for _ in range(new_tokens):
        logits = model.next_token_logits(p, tokens)[0].float().cpu()         # (B, V)
        logits[:, list(NEVER_TARGETS)] = float("-inf")
        if temperature == 0:
            chosen = logits.argmax(1)
        else:
            chosen = torch.multinomial(torch.softmax(logits / temperature, 1), 1,
                                       generator=generator)[:, 0]
        chosen = chosen.to(tokens.device).masked_fill(done, PAD_ID)
        tokens = torch.cat([tokens, chosen[:, None]], 1)
        done |= chosen == EOS_ID
        if done.all():
            break
    return tokens


def story_samples(model: Transformer, p: Params, corpus: Corpus, first: int, n: int,
                  prompt_tokens: int, new_tokens: int, temperature: float) -> list[StorySample]:
    """`n` story openings (`prompt_stories` from story `first`) continued by the one individual
    in p (`continue_tokens`), decoded."""
    stories = prompt_stories(corpus, first, n, prompt_tokens)
    device = next(iter(p.values())).device
    prompts = torch.tensor([[BOS_ID, *corpus.story(i)[:prompt_tokens]] for i in stories],
                           dtype=torch.long, device=device)
    written = continue_tokens(model, p, prompts, new_tokens, temperature,
                              torch.Generator().manual_seed(SAMPLE_SEED)).cpu()
    samples = []
    for story, row in zip(stories, written):
        new = row[prompt_tokens + 1:].tolist()
        ended = EOS_ID in new
        new = new[:new.index(EOS_ID)] if ended else new
        samples.append(StorySample(story, decode(corpus, row[1:prompt_tokens + 1].tolist()),
                                   decode(corpus, new), ended))
    return samples


def decode(corpus: Corpus, ids: list[int]) -> str:
    """Model ids (no <s>, </s> or padding) as the BPE's text: tokens joined by spaces."""
    return corpus.tokenizer.decode([i - SPECIAL_OFFSET for i in ids], skip_special_tokens=False)
