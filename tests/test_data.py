"""Tests for the TinyStories data layer and the quickstories grammar (src/neuroevo/data)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError, XetDownloadError

from conftest import N_SMALL
from neuroevo.data import story_grammar, tinystories
from neuroevo.data.story_grammar import generate_stories
from neuroevo.data.tinystories import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_OFFSET,
    DataError,
    EvalBatch,
    extract_stories,
    fetch_tinystories,
    fixed_eval_set,
    model_vocab_size,
    prepare_corpus,
    sampled_eval_set,
    train_tokenizer,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_COMMAND = "python -m neuroevo.data.story_grammar --n 1800 --seed 0 --out data/quickstories.txt"
SMALL_VOCAB = 512  # BPE size where a test is not about the paper's 2048


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, small_text: Path) -> tinystories.Corpus:
    return prepare_corpus(small_text, tmp_path_factory.mktemp("cache"), vocab_size=SMALL_VOCAB)


# --- story grammar -----------------------------------------------------------------------------


def test_generator_is_deterministic_and_seeded():
    """The same seed gives the same stories, a longer run extends a shorter one, other seeds differ."""
    stories = generate_stories(40, seed=7)
    assert stories == generate_stories(40, seed=7)
    assert generate_stories(60, seed=7)[:40] == stories
    assert generate_stories(40, seed=8) != stories
    assert all(story and "\n" not in story for story in stories)


def test_an_ending_names_the_friend_only_after_the_story_did(monkeypatch):
    """"Tim" is not introduced by a sentence about "Timmy": the friend-naming endings wait for
    the friend's own name, as a whole word."""
    cast = iter([story_grammar._Character("Timmy", "boy", "he", "him", "his"),
                 story_grammar._Character("Tim", "boy", "he", "him", "his")] * 400)
    monkeypatch.setattr(story_grammar, "_cast", lambda rng, taken: next(cast))
    endings = [e.format(name="Timmy", friend="Tim")
               for e in story_grammar.ENDINGS if "{friend}" in e]
    stories = generate_stories(400, seed=1)
    naming = [s for s in stories if any(s.endswith(e) for e in endings)]
    assert naming  # the property below is not vacuous
    for story in naming:
        ending = next(e for e in endings if story.endswith(e))
        assert re.search(r"\bTim\b", story[: -len(ending)]), story


def test_shipped_file_is_the_documented_command(quickstories: list[str]):
    """data/quickstories.txt is exactly the output of the command that data/README.md documents."""
    assert SHIPPED_COMMAND in (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    assert SHIPPED_COMMAND in story_grammar.__doc__
    assert quickstories == generate_stories(1800, seed=0)


def test_main_writes_one_story_per_line(tmp_path: Path):
    """The CLI writes generate_stories(n, seed), one story per line."""
    out = tmp_path / "sub" / "stories.txt"
    story_grammar.main(["--n", "5", "--seed", "3", "--out", str(out)])
    assert out.read_text(encoding="utf-8") == "".join(s + "\n" for s in generate_stories(5, seed=3))


# --- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_has_2048_entries_with_specials_first(quickstories: list[str]):
    """On the full quickstories text the BPE fills 2048 entries, specials at ids 0-4; the model adds 3."""
    tokenizer = train_tokenizer(quickstories, vocab_size=2048)
    assert tokenizer.get_vocab_size() == 2048
    assert [tokenizer.token_to_id(t) for t in ("[UNK]", "[PAD]", "[BOS]", "[EOS]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert model_vocab_size(tokenizer) == 2051


def test_tokenizer_training_is_deterministic(quickstories: list[str]):
    """Training twice on the same stories gives an identical tokenizer."""
    stories = quickstories[:N_SMALL]
    assert train_tokenizer(stories, SMALL_VOCAB).to_str() == train_tokenizer(stories, SMALL_VOCAB).to_str()


def test_tokenizer_lowercases_strips_accents_and_splits_digits(corpus: tinystories.Corpus):
    """'Café' normalises to 'cafe', words split on whitespace and punctuation, numbers into single digits."""
    tokenizer = corpus.tokenizer
    assert tokenizer.normalizer.normalize_str("Once Upon A Café, ÉLAN") == "once upon a cafe, elan"
    pieces = [p for p, _ in tokenizer.pre_tokenizer.pre_tokenize_str("Tom, aged 2024!")]
    assert pieces == ["Tom", ",", "aged", "2", "0", "2", "4", "!"]
    assert tokenizer.encode("10 12").tokens == ["1", "0", "1", "2"]


def test_round_trip_gives_normalised_text(corpus: tinystories.Corpus, quickstories: list[str]):
    """Decoding a stored story's model ids gives its normalised text (up to the spaces BPE drops)."""
    tokenizer = corpus.tokenizer
    for i in range(20):
        ids = corpus.story(i).astype(np.int64) - SPECIAL_OFFSET
        decoded = tokenizer.decode(ids.tolist())
        expected = tokenizer.normalizer.normalize_str(quickstories[i])
        assert "".join(decoded.split()) == "".join(expected.split())


# --- corpus and cache --------------------------------------------------------------------------


def test_corpus_layout(corpus: tinystories.Corpus):
    """Tokens are an int16 memmap of model ids ≥ 3 and < vocab_size; offsets delimit every story."""
    assert len(corpus) == N_SMALL
    assert corpus.vocab_size == corpus.tokenizer.get_vocab_size() + SPECIAL_OFFSET == SMALL_VOCAB + 3
    assert isinstance(corpus.tokens, np.memmap) and corpus.tokens.dtype == np.int16
    assert corpus.offsets.dtype == np.int64 and corpus.offsets[0] == 0 and corpus.offsets[-1] == len(corpus.tokens)
    assert corpus.tokens.min() >= SPECIAL_OFFSET and corpus.tokens.max() < corpus.vocab_size
    assert all(len(corpus.story(i)) > 0 for i in range(len(corpus)))


def test_cache_is_reused_without_retraining(tmp_path: Path, small_text: Path, monkeypatch: pytest.MonkeyPatch):
    """A second prepare_corpus call with the same text, n_stories and vocab loads the cache, not the trainer."""
    first = prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=SMALL_VOCAB)

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was retrained")

    monkeypatch.setattr(tinystories, "train_tokenizer", no_training)
    second = prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=SMALL_VOCAB)
    assert len(first) == len(second) == 50
    assert np.array_equal(first.tokens, second.tokens) and np.array_equal(first.offsets, second.offsets)
    assert second.text_sha256 == first.text_sha256
    settings = tinystories.tokenizer_settings_digest()[:8]
    assert [p.name for p in tmp_path.iterdir()] == [
        f"{first.text_sha256[:16]}-n50-v{SMALL_VOCAB}-t{settings}"]


def test_a_text_that_is_not_utf8_is_a_one_line_data_error(tmp_path: Path):
    """A user's own text with a stray Latin-1 byte stops with a DataError naming the file."""
    text = tmp_path / "mine.txt"
    text.write_bytes("Once upon a time.\nA caf\xe9.\n".encode("latin-1"))
    with pytest.raises(DataError, match="mine.txt is not UTF-8 text") as info:
        prepare_corpus(text, tmp_path / "cache", vocab_size=SMALL_VOCAB)
    assert "\n" not in str(info.value) and not (tmp_path / "cache").exists()


def test_changed_tokenizer_settings_make_a_new_cache_entry(tmp_path: Path, small_text: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """An entry is keyed by the BPE's settings too: after a change to them (or to the tokenizers
    library) the tokenizer is trained again, never loaded stale from the old entry."""
    prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=SMALL_VOCAB)
    untrained = tinystories._untrained_tokenizer

    def without_lowercase():
        tokenizer = untrained()
        tokenizer.normalizer = tinystories.normalizers.NFD()
        return tokenizer

    monkeypatch.setattr(tinystories, "_untrained_tokenizer", without_lowercase)
    corpus = prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=SMALL_VOCAB)
    assert len(list(tmp_path.iterdir())) == 2
    assert corpus.tokenizer.normalizer.normalize_str("The") == "The"  # the new settings' BPE


def test_a_cache_entry_is_shared_as_the_umask_allows(tmp_path: Path, small_text: Path):
    """An entry gets the umask's permissions, not mkdtemp's 0700: another user's run on a shared
    data directory reads it instead of failing on it."""
    from neuroevo.atomic import UMASK

    prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=SMALL_VOCAB)
    (entry,) = tmp_path.iterdir()
    assert entry.stat().st_mode & 0o777 == 0o777 & ~UMASK


def test_missing_text_is_a_one_line_data_error(tmp_path: Path):
    """A missing text file raises DataError: one line naming the path and how to fetch it."""
    missing = tmp_path / "nowhere" / "first10k.txt"
    with pytest.raises(DataError) as info:
        prepare_corpus(missing, tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message and str(missing) in message and "fetch-data" in message


# --- evaluation batches ------------------------------------------------------------------------


def test_eval_batch_layout(corpus: tinystories.Corpus):
    """Each row is <s> story </s> padded with PAD_ID to the longest; lengths count BOS and EOS."""
    batch = fixed_eval_set(corpus, n_sequences=16)
    story_lengths = torch.tensor([len(corpus.story(i)) for i in range(16)])
    assert batch.tokens.dtype == batch.lengths.dtype == torch.long
    assert batch.tokens.shape == (16, int(story_lengths.max()) + 2)
    assert torch.equal(batch.lengths, story_lengths + 2)
    assert batch.n_targets == int((story_lengths + 1).sum())
    for b in range(16):
        n = int(batch.lengths[b])
        assert batch.tokens[b, 0] == BOS_ID and batch.tokens[b, n - 1] == EOS_ID
        assert torch.equal(batch.tokens[b, 1 : n - 1], torch.from_numpy(corpus.story(b).astype(np.int64)))
        assert (batch.tokens[b, n:] == PAD_ID).all()


def _rows(buckets: list[EvalBatch]) -> list[tuple[int, ...]]:
    return sorted(tuple(b.tokens[i, : int(b.lengths[i])].tolist())
                  for b in buckets for i in range(len(b.lengths)))


def test_length_buckets_hold_every_row_once_padded_to_their_own_longest(corpus: tinystories.Corpus):
    """Buckets of 5 sorted longest first: every (row, length) appears once, each bucket is only as
    wide as its longest row, and the real tokens are untouched."""
    batch = fixed_eval_set(corpus, n_sequences=16)
    buckets = batch.buckets(5)
    assert [len(b.lengths) for b in buckets] == [5, 5, 5, 1]
    assert all(b.tokens.shape[1] == int(b.lengths.max()) for b in buckets)
    widths = [b.tokens.shape[1] for b in buckets]
    assert widths == sorted(widths, reverse=True)
    assert _rows(buckets) == _rows([batch])
    assert batch.buckets(0) == [batch] and batch.buckets(16) == [batch]


@pytest.mark.parametrize("padding", [0.0, 0.02, 0.1, 0.5])
def test_length_buckets_keep_padding_within_the_budget_in_few_buckets(padding: float):
    """A skewed length distribution (log-normal: a long tail, as stories have) split with a
    padding budget: all rows once, at most 64 per bucket, the padding within the budget, and
    fewer buckets for a larger budget; with no budget, buckets of exactly 64 rows."""
    gen = torch.Generator().manual_seed(0)
    lengths = (120 * torch.exp(0.6 * torch.randn(512, generator=gen))).round().long().clamp(2, 900)
    tokens = torch.arange(900)[None, :].repeat(512, 1) + 1000 * torch.arange(512)[:, None]
    tokens[torch.arange(900)[None, :] >= lengths[:, None]] = PAD_ID
    batch = EvalBatch(tokens, lengths)
    buckets = batch.buckets(64, padding)
    assert _rows(buckets) == _rows([batch])
    assert all(len(b.lengths) <= 64 and b.tokens.shape[1] == int(b.lengths.max()) for b in buckets)
    computed = sum(b.tokens.numel() for b in buckets)
    assert computed <= (1 + padding) * int(lengths.sum())
    fixed = batch.buckets(64)
    assert [len(b.lengths) for b in fixed] == [64] * 8
    assert sum(b.tokens.numel() for b in fixed) > 1.1 * int(lengths.sum())  # the waste it removes
    if padding >= 0.1:
        assert len(buckets) < len(batch.buckets(64, padding / 5))


def test_max_len_truncates_tail_and_keeps_bos(corpus: tinystories.Corpus):
    """With max_len, rows keep <s> and their first tokens; </s> survives only in rows that fit."""
    full = fixed_eval_set(corpus, n_sequences=32)
    max_len = int(full.lengths.float().median())
    cut = fixed_eval_set(corpus, n_sequences=32, max_len=max_len)
    assert cut.tokens.shape == (32, max_len)
    assert torch.equal(cut.lengths, full.lengths.clamp(max=max_len))
    assert torch.equal(cut.tokens, full.tokens[:, :max_len])
    fits = full.lengths <= max_len
    assert fits.any() and (~fits).any()
    assert (cut.tokens[fits, cut.lengths[fits] - 1] == EOS_ID).all()
    assert (cut.tokens[~fits, -1] != EOS_ID).all()


def test_fixed_eval_set_is_identical_across_calls(corpus: tinystories.Corpus):
    """The paper's evaluation set is the first n stories, the same on every call."""
    a, b = fixed_eval_set(corpus, n_sequences=64), fixed_eval_set(corpus, n_sequences=64)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)


def test_sampled_eval_set_depends_on_seed_and_generation(corpus: tinystories.Corpus):
    """Same (seed, generation) gives the same batch of distinct stories; another generation differs."""
    a = sampled_eval_set(corpus, n_sequences=64, max_len=None, seed=3, generation=5)
    b = sampled_eval_set(corpus, n_sequences=64, max_len=None, seed=3, generation=5)
    c = sampled_eval_set(corpus, n_sequences=64, max_len=None, seed=3, generation=6)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    assert a.tokens.shape != c.tokens.shape or not torch.equal(a.tokens, c.tokens)
    rows = {tuple(row[:n].tolist()) for row, n in zip(a.tokens, a.lengths)}
    assert len(rows) == 64  # sampled without replacement (the grammar's stories are all distinct)


def test_eval_set_larger_than_corpus_is_a_data_error(corpus: tinystories.Corpus):
    """Asking for more evaluation stories than the corpus holds raises a one-line DataError."""
    with pytest.raises(DataError, match=r"\(1024\) is more than the 300 stories of the corpus"):
        fixed_eval_set(corpus, n_sequences=1024)


# --- fetching ----------------------------------------------------------------------------------


def test_extract_stories_splits_on_endoftext(tmp_path: Path):
    """Stories end at <|endoftext|> lines, inner newlines become spaces, empty stories vanish, n caps."""
    raw = tmp_path / "TinyStories-train.txt"
    raw.write_text(
        "Once upon a time, Lily\nfound a ball.\n\nShe was happy.\n<|endoftext|>\n"
        "\n<|endoftext|>\n"
        "Tom ran.   He fell.\r\n<|endoftext|>\n"
        "Ben had a café.\n<|endoftext|>\n"
        "Last story without a separator\n",
        encoding="utf-8",
    )
    out = tmp_path / "out" / "first10k.txt"
    assert extract_stories(raw, out, n_stories=10) == 4
    assert out.read_text(encoding="utf-8").splitlines() == [
        "Once upon a time, Lily found a ball. She was happy.",
        "Tom ran. He fell.",
        "Ben had a café.",
        "Last story without a separator",
    ]
    assert extract_stories(raw, out, n_stories=2) == 2
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert [p.name for p in out.parent.iterdir()] == ["first10k.txt"]  # no temporary file left behind


def test_offline_fetch_is_a_one_line_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """When the hub cannot be reached, fetch_tinystories raises a one-line DataError and writes nothing."""

    def offline(**kwargs):
        assert kwargs["revision"] == tinystories.HF_REVISION and kwargs["repo_type"] == "dataset"
        raise LocalEntryNotFoundError("Cannot reach the Hub.\nCheck your connection.")

    monkeypatch.setattr(tinystories, "hf_hub_download", offline)
    with pytest.raises(DataError) as info:
        fetch_tinystories(tmp_path / "tinystories")
    assert "\n" not in str(info.value) and "internet" in str(info.value)
    assert not (tmp_path / "tinystories").exists()


def test_a_failed_xet_download_is_a_one_line_data_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """A download from the hub's Xet storage that fails (huggingface_hub's XetDownloadError, no
    OSError) stops the fetch with a one-line DataError naming it, and writes nothing."""

    def xet_failure(**kwargs):
        raise XetDownloadError("Data processing error:\nCAS service error")

    monkeypatch.setattr(tinystories, "hf_hub_download", xet_failure)
    with pytest.raises(DataError, match="XetDownloadError: Data processing error: CAS") as info:
        fetch_tinystories(tmp_path / "tinystories")
    assert "\n" not in str(info.value) and "internet" in str(info.value)
    assert not (tmp_path / "tinystories").exists()


def test_fetching_no_stories_is_refused_before_the_download(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """--n-stories 0 stops before a 1.9 GB download, not after it."""
    monkeypatch.setattr(tinystories, "hf_hub_download", lambda **kwargs: pytest.fail("downloaded"))
    with pytest.raises(DataError, match="--n-stories must be at least 1, got 0"):
        fetch_tinystories(tmp_path / "tinystories", n_stories=0)
    assert not (tmp_path / "tinystories").exists()


def _fake_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: bool) -> Path:
    """A three-story stand-in for TinyStories-train.txt served by a faked hf_hub_download; with
    `published`, the pinned hash and size are the stand-in's, so it counts as the real file."""
    raw = tmp_path / "TinyStories-train.txt"
    raw.write_text("One.\n<|endoftext|>\nTwo\nlines.\n<|endoftext|>\nThree.\n<|endoftext|>\n", encoding="utf-8")
    monkeypatch.setattr(tinystories, "hf_hub_download", lambda **kwargs: str(raw))
    if published:
        monkeypatch.setattr(tinystories, "PUBLISHED_SHA256", hashlib.sha256(raw.read_bytes()).hexdigest())
        monkeypatch.setattr(tinystories, "PUBLISHED_BYTES", raw.stat().st_size)
    return raw


def test_fetch_writes_stories_and_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With the download faked, fetch writes the stories (first2.txt for 2: the name says how many;
    the paper's 10,000 go to first10k.txt) and its record in SOURCE.json: the pinned revision
    and hashes."""
    raw = _fake_download(tmp_path, monkeypatch, published=True)
    out = fetch_tinystories(tmp_path / "tinystories", n_stories=2)
    assert out == tmp_path / "tinystories" / "first2.txt"
    assert tinystories.stories_filename(10_000) == "first10k.txt"
    assert out.read_text(encoding="utf-8") == "One.\nTwo lines.\n"
    source = json.loads((out.parent / "SOURCE.json").read_text(encoding="utf-8"))["first2.txt"]
    assert source["revision"] == tinystories.HF_REVISION and source["n_stories"] == 2
    assert source["sha256_download"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert source["sha256_written"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_each_stories_file_keeps_its_own_source_record(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """Fetching first1.txt into the directory that holds first2.txt adds its record to
    SOURCE.json and keeps first2.txt's; a record from before they were keyed by file (one flat
    record) is kept under its file's name."""
    _fake_download(tmp_path, monkeypatch, published=True)
    out_dir = tmp_path / "tinystories"
    two = fetch_tinystories(out_dir, n_stories=2)
    one = fetch_tinystories(out_dir, n_stories=1)
    sources = json.loads((out_dir / "SOURCE.json").read_text(encoding="utf-8"))
    assert list(sources) == ["first2.txt", "first1.txt"]
    for path in (two, one):
        assert sources[path.name]["sha256_written"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [sources[name]["n_stories"] for name in sources] == [2, 1]
    flat = sources["first2.txt"]
    (out_dir / "SOURCE.json").write_text(json.dumps(flat), encoding="utf-8")
    fetch_tinystories(out_dir, n_stories=1)
    sources = json.loads((out_dir / "SOURCE.json").read_text(encoding="utf-8"))
    assert sources == {"first2.txt": flat, "first1.txt": sources["first1.txt"]}


@pytest.mark.parametrize("text, message", [
    ("{truncated", "SOURCE.json is not JSON .*: delete it and fetch again$"),
    ("[1, 2]", "SOURCE.json holds no records of fetched files: delete it and fetch again$"),
    ('{"repo": "x"}', "SOURCE.json holds no records of fetched files: delete it and fetch again$"),
], ids=["not json", "a list", "a flat record without n_stories"])
def test_a_broken_source_record_stops_the_fetch_before_the_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str):
    """A SOURCE.json that is not JSON, or not records of fetched files, is a one-line
    DataError before anything is downloaded (its records could not be kept)."""
    monkeypatch.setattr(tinystories, "hf_hub_download", lambda **kwargs: pytest.fail("downloaded"))
    (tmp_path / "SOURCE.json").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        fetch_tinystories(tmp_path, n_stories=2)


def test_a_download_other_than_the_pinned_file_is_refused_before_extraction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """hf_hub_download checks only a file's size (and nothing for one already cached): a file
    whose sha256 is not the pinned one stops the fetch before stories are written from it."""
    _fake_download(tmp_path, monkeypatch, published=False)
    with pytest.raises(DataError, match="is not TinyStories-train.txt@f54c09f .*fetch again"):
        fetch_tinystories(tmp_path / "tinystories", n_stories=2)
    assert not (tmp_path / "tinystories").exists()