"""What a language-model elite writes (neuroevo/story_samples.py, `neuroevo replay --sample`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import KERNEL_ENCODINGS, perturbed_transformer
from neuroevo.cli import main
from neuroevo.config import load_config
from neuroevo.data.tinystories import BOS_ID, EOS_ID, PAD_ID
from neuroevo.genome import Genome, save_genome
from neuroevo.sections.language import ModelConfig
from neuroevo.story_samples import NEVER_TARGETS, continue_tokens


@pytest.mark.parametrize("encoding", ["dense", "factorized"])
def test_next_token_logits_score_as_the_fitness_does(encoding: str) -> None:
    """The cross-entropy of each prefix's next-token logits against the token that follows,
    averaged as the fitness averages, is minus the fitness (which the fused loss kernel
    computes without ever forming logits): the logits are those of the right position, through
    the factorized output projection too."""
    model, p = perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(n_blocks=2),
                                     vocab=60, pop=2)
    tokens = torch.randint(3, 60, (3, 9), generator=torch.Generator().manual_seed(1))
    lengths = torch.full((3,), 9)
    with torch.no_grad():
        fitness = model.negative_cross_entropy(p, tokens, lengths)
        per_token = torch.stack([
            F.cross_entropy(model.next_token_logits(p, tokens[:, :t]).flatten(0, 1),
                            tokens[:, t].repeat(2), reduction="none").view(2, 3)
            for t in range(1, 9)])                                            # (T − 1, P, B)
    torch.testing.assert_close(-per_token.mean(0).mean(1), fitness, atol=1e-5, rtol=1e-5)


def one_individual(encoding: str = "dense"):
    """A paper-sized model over a 40-token vocabulary and its population of one."""
    return perturbed_transformer(KERNEL_ENCODINGS[encoding], ModelConfig(), vocab=40, pop=1)


def test_continuations_keep_the_prompt_and_never_draw_padding_or_bos() -> None:
    """Rows start with their prompt; written tokens are never <unk>/<s> (never targets, so the
    fitness gave them no meaning) except as padding after a row's </s>; the same generator
    seed writes the same tokens, another seed other ones."""
    model, p = one_individual()
    prompts = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 9, 9, 9], [BOS_ID, 30, 3, 4]])

    def write(seed: int, temperature: float = 3.0) -> torch.Tensor:
        return continue_tokens(model, p, prompts, 25, temperature,
                               torch.Generator().manual_seed(seed))

    written = write(0)
    assert torch.equal(written[:, :4], prompts)
    for row in written[:, 4:].tolist():
        real = row[:row.index(EOS_ID) + 1] if EOS_ID in row else row
        assert not set(real) & set(NEVER_TARGETS)
        assert all(token == PAD_ID for token in row[len(real):])
    assert torch.equal(written, write(0))
    assert not torch.equal(written, write(1))


def test_temperature_zero_writes_the_most_likely_token() -> None:
    """At temperature 0 each written token is the argmax of the model's logits after the row
    so far (and the generator is not consulted)."""
    model, p = one_individual("factorized")
    prompts = torch.tensor([[BOS_ID, 11, 12], [BOS_ID, 20, 21]])
    written = continue_tokens(model, p, prompts, 5, 0.0, torch.Generator().manual_seed(0))
    for t in range(3, written.shape[1]):
        logits = model.next_token_logits(p, written[:, :t])[0]
        logits[:, list(NEVER_TARGETS)] = float("-inf")
        expected = logits.argmax(1)
        live = (written[:, 3:t] != EOS_ID).all(1)  # rows that have not ended
        assert torch.equal(written[live, t], expected[live])


def test_a_row_that_writes_eos_is_padded_and_the_loop_stops_when_all_have(monkeypatch) -> None:
    """A model that always prefers </s> ends every row at its first written token: the loop stops
    there instead of writing the whole budget."""
    model, p = one_individual()

    def eos_logits(p_, tokens):
        logits = torch.zeros(1, tokens.shape[0], model.vocab)
        logits[..., EOS_ID] = 50.0
        return logits

    monkeypatch.setattr(model, "next_token_logits", eos_logits)
    prompts = torch.tensor([[BOS_ID, 5], [BOS_ID, 6]])
    written = continue_tokens(model, p, prompts, 40, 1.0, torch.Generator().manual_seed(0))
    assert written.tolist() == [[BOS_ID, 5, EOS_ID], [BOS_ID, 6, EOS_ID]]


def test_replay_sample_prints_held_out_openings_continued(tmp_path: Path, tiny_lm_overrides,
                                                          capsys) -> None:
    """`replay --sample 2` reproduces the fitness, then prints two stories from after the
    evaluation set (task.n_sequences = 8 here: stories 8 and 9 when long enough), each with its
    bracketed opening of --prompt-tokens tokens; the same command prints the same text."""
    out = tmp_path / "run"
    assert main(["run", "configs/tinystories/small.yaml", "--quiet", "--out", str(out),
                 *[arg for override in tiny_lm_overrides for arg in ("--set", override)]]) == 0
    command = ["replay", str(out / "elite.json"), "--device", "cpu", "--sample", "2",
               "--prompt-tokens", "4", "--max-tokens", "6"]
    capsys.readouterr()
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "matches the logged" in printed
    stories = [line for line in printed.splitlines() if line.startswith("story ")]
    assert [line.split(":")[0] for line in stories] == ["story 8", "story 9"]
    for line in stories:
        opening = line[line.index("[") + 1:line.index("]")]
        assert len(opening.split()) >= 4  # 4 BPE tokens: at least 4 space-joined pieces
        assert len(line[line.index("]") + 1:].split()) <= 7  # ≤ 6 tokens and the end mark
    assert main(command) == 0
    assert capsys.readouterr().out == printed


def test_replay_sample_of_an_rl_elite_fails_in_one_line(tmp_path: Path, capsys) -> None:
    """--sample for an elite that plays a game is a one-line user error."""
    config = load_config("configs/mujoco/hopper/small.yaml")
    elite = tmp_path / "elite.json"
    save_genome(elite, Genome(0), fitness=0.0, generation=1, config=config.to_dict())
    assert json.loads(elite.read_text())["config"]["task"]["name"] == "mujoco"
    assert main(["replay", str(elite), "--device", "cpu", "--sample", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--sample is for the language task" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("option, value", [("--sample", "0"), ("--temperature", "-1"),
                                           ("--max-tokens", "0")])
def test_replay_sample_options_out_of_range_are_refused(option: str, value: str,
                                                        capsys) -> None:
    """Counts below 1 and a negative temperature stop at argument parsing, naming the option."""
    with pytest.raises(SystemExit) as stop:
        main(["replay", "elite.json", option, value])
    assert stop.value.code == 2 and option in capsys.readouterr().err
