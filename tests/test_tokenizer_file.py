"""`task.tokenizer`: a Hugging Face tokenizers JSON used instead of training the BPE.

The authors' `tokenizer-bpe.json` cannot be downloaded here (the machine is offline), so these
tests build a file of its format with the real `tokenizers` library: specials `<unk> <pad> <s>
</s> <|endoftext|>` at ids 0-4, no unknown token, NFD + lowercase + strip accents, whitespace +
single digits, trained on the shipped story corpus.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import json
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from conftest import N_SMALL
from neuroevo.cli import main
from neuroevo.data import tinystories
from neuroevo.data.tinystories import (
    BOS_ID, EOS_ID, PAPER_TOKENIZER_FILE, PAPER_TOKENIZER_URL, PAPER_VOCAB_SIZE, SPECIAL_OFFSET,
    DataError, fixed_eval_set, prepare_corpus)

PAPER_SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|endoftext|>"]
VOCAB = 512  # the tiny runs' task.vocab_size (conftest.TINY_LM_OVERRIDES)


def paper_like_tokenizer(stories: list[str], vocab_size: int = VOCAB,
                         specials: list[str] = PAPER_SPECIALS) -> Tokenizer:
    """A BPE with the settings of the authors' file, trained on `stories`."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  show_progress=False)
    tokenizer.train_from_iterator(stories, trainer=trainer)
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory, quickstories: list[str]) -> Path:
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer-bpe.json"
    paper_like_tokenizer(quickstories).save(str(path))
    return path


def test_a_file_of_the_papers_format_loads(tokenizer_file: Path):
    """The stand-in has the authors' file's layout: 5 specials at ids 0-4, no unknown token."""
    saved = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    assert [t["content"] for t in saved["added_tokens"]] == PAPER_SPECIALS
    assert [t["id"] for t in saved["added_tokens"]] == [0, 1, 2, 3, 4]
    assert saved["model"]["type"] == "BPE" and saved["model"]["unk_token"] is None
    assert len(saved["model"]["vocab"]) == VOCAB


def test_token_ids_are_the_files_encoding_offset_and_framed(tmp_path: Path, small_text: Path,
                                                             tokenizer_file: Path,
                                                             quickstories: list[str]):
    """Every story's model ids are the file's BPE ids + 3, and an evaluation row is
    <s> ids </s>; the corpus records the file's sha256."""
    corpus = prepare_corpus(small_text, tmp_path, vocab_size=VOCAB, tokenizer_path=tokenizer_file)
    reference = Tokenizer.from_file(str(tokenizer_file))
    assert corpus.vocab_size == VOCAB + SPECIAL_OFFSET and len(corpus) == N_SMALL
    assert corpus.tokenizer_sha256 == hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    for i in range(N_SMALL):
        expected = np.asarray(reference.encode(quickstories[i]).ids) + SPECIAL_OFFSET
        assert np.array_equal(corpus.story(i), expected)
    batch = fixed_eval_set(corpus, n_sequences=4)
    for b in range(4):
        ids = [BOS_ID, *(np.asarray(reference.encode(quickstories[b]).ids) + SPECIAL_OFFSET), EOS_ID]
        assert batch.tokens[b, : int(batch.lengths[b])].tolist() == ids


def test_a_files_padding_truncation_and_post_processor_do_not_reach_the_ids(
        tmp_path: Path, small_text: Path, tokenizer_file: Path):
    """The package frames and pads the stories itself: a file saved with padding, truncation
    and a post-processor (which would pad every story to the longest, cut it to 8 tokens, or
    wrap it in a second <s> … </s>) gives the same stories as the plain file."""
    dressed = Tokenizer.from_file(str(tokenizer_file))
    dressed.enable_padding(pad_id=1, pad_token="<pad>")
    dressed.enable_truncation(max_length=8)
    dressed.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    dressed_file = tmp_path / "dressed.json"
    dressed.save(str(dressed_file))
    plain = prepare_corpus(small_text, tmp_path / "plain", vocab_size=VOCAB,
                           tokenizer_path=tokenizer_file)
    got = prepare_corpus(small_text, tmp_path / "dressed", vocab_size=VOCAB,
                         tokenizer_path=dressed_file)
    assert np.array_equal(got.offsets, plain.offsets) and np.array_equal(got.tokens, plain.tokens)


def test_an_edited_file_makes_a_new_cache_entry(tmp_path: Path, small_text: Path,
                                                quickstories: list[str]):
    """The cache entry is keyed by the file's sha256: after the file changes at the same path,
    the stories are tokenised again with the new file, never read stale from the old entry."""
    path = tmp_path / "tokenizer-bpe.json"
    paper_like_tokenizer(quickstories).save(str(path))
    first = prepare_corpus(small_text, tmp_path / "cache", vocab_size=VOCAB, tokenizer_path=path)
    edited = paper_like_tokenizer(quickstories[::-1][:600])  # other stories: other merges
    edited.save(str(path))
    second = prepare_corpus(small_text, tmp_path / "cache", vocab_size=VOCAB, tokenizer_path=path)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 2 and first.tokenizer_sha256 != second.tokenizer_sha256
    assert {e.rsplit("-f", 1)[1] for e in entries} == {
        first.tokenizer_sha256[:16], second.tokenizer_sha256[:16]}
    assert np.array_equal(second.story(0),
                          np.asarray(edited.encode(quickstories[0]).ids) + SPECIAL_OFFSET)
    assert not np.array_equal(first.tokens, second.tokens)


def test_the_trained_entry_keeps_its_name(tmp_path: Path, small_text: Path):
    """Without task.tokenizer the cache entry's name is the one it had before the option
    existed (computed then, with tokenizers 0.23.3): existing caches stay valid."""
    if tokenizers.__version__ != "0.23.3":  # the name digests the library's version
        pytest.skip(f"the name was computed with tokenizers 0.23.3, not {tokenizers.__version__}")
    corpus = prepare_corpus(small_text, tmp_path, n_stories=50, vocab_size=VOCAB)
    assert [p.name for p in tmp_path.iterdir()] == ["d12ad422c1e7d5d5-n50-v512-tb7604c33"]
    assert corpus.tokenizer_sha256 is None


def _word_level(path: Path) -> None:
    vocab = {f"w{i}": i for i in range(VOCAB)}
    Tokenizer(models.WordLevel(vocab, unk_token="w0")).save(str(path))


def _no_specials(path: Path, stories: list[str]) -> None:
    paper_like_tokenizer(stories[:N_SMALL], specials=[]).save(str(path))


def _gap_in_ids(path: Path, stories: list[str]) -> None:
    saved = json.loads(paper_like_tokenizer(stories[:N_SMALL]).to_str())
    last = max(saved["model"]["vocab"], key=saved["model"]["vocab"].get)
    saved["model"]["vocab"][last] = VOCAB + 10
    path.write_text(json.dumps(saved), encoding="utf-8")


@pytest.mark.parametrize("case, message", [
    ("missing", r"task.tokenizer: no file at .*: for the paper's, `neuroevo fetch-data "
                r"paper-tokenizer` \(or `curl -fL --create-dirs -o data/tinystories/"
                r"tokenizer-bpe.json " + PAPER_TOKENIZER_URL.replace(".", r"\.")),
    ("not json", r"task.tokenizer: .* is not a Hugging Face tokenizers JSON \("),
    ("other json", r"task.tokenizer: .* is not a Hugging Face tokenizers JSON \("),
    ("word level", r"task.tokenizer: .* is a WordLevel tokenizer, not BPE"),
    ("vocab size", r"task.tokenizer: .* has 512 tokens but task.vocab_size is 600: set "
                   r"task.vocab_size=512$"),
    ("no specials", r"task.tokenizer: .* must have special tokens at ids 0-4 .*, not at none"),
    ("gap in ids", r"task.tokenizer: .*'s ids do not run 0\.\.511 \(its highest is 522\)"),
])
def test_a_file_that_does_not_fit_is_a_one_line_error_before_tokenising(
        tmp_path: Path, small_text: Path, tokenizer_file: Path, quickstories: list[str],
        case: str, message: str):
    """Each problem with the file stops prepare_corpus in one line naming task.tokenizer and the
    fix, before anything is tokenised or cached."""
    path = tmp_path / "tokenizer.json"
    vocab_size = VOCAB
    if case == "not json":
        path.write_text("<html>404: Not Found</html>", encoding="utf-8")
    elif case == "other json":
        path.write_text('{"vocab": {"a": 0}}', encoding="utf-8")
    elif case == "word level":
        _word_level(path)
    elif case == "vocab size":
        path, vocab_size = tokenizer_file, 600
    elif case == "no specials":
        _no_specials(path, quickstories)
    elif case == "gap in ids":
        _gap_in_ids(path, quickstories)
    with pytest.raises(DataError, match=message) as info:
        prepare_corpus(small_text, tmp_path / "cache", vocab_size=vocab_size, tokenizer_path=path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


def test_a_run_with_a_tokenizer_file_finishes_and_records_it(tmp_path: Path, tiny_lm_overrides,
                                                             tokenizer_file: Path):
    """A tiny language run with --set task.tokenizer=FILE finishes; its summary names the file
    and its sha256, and an in-place edit of the file makes --resume refuse the run (other data)."""
    path = tmp_path / "tokenizer-bpe.json"
    path.write_bytes(tokenizer_file.read_bytes())
    out = tmp_path / "run"
    args = ["run", "configs/tinystories/dense.yaml", "--out", str(out), "--quiet"]
    for item in [*tiny_lm_overrides, f"task.tokenizer={path}"]:
        args += ["--set", item]
    assert main(args) == 0
    details = json.loads((out / "summary.json").read_text())["task_details"]
    assert details["tokenizer"] == str(path)
    assert details["tokenizer_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert details["model_vocab"] == VOCAB + SPECIAL_OFFSET
    assert main([*args, "--resume"]) == 0  # the same file: the finished run is its own
    path.write_text(json.dumps(json.loads(path.read_text()), indent=1), encoding="utf-8")
    assert main([*args, "--resume"]) == 2


def test_a_run_without_one_records_a_trained_tokenizer(tmp_path: Path, tiny_lm_overrides):
    """Without task.tokenizer the summary says the tokenizer was trained."""
    out = tmp_path / "run"
    args = ["run", "configs/tinystories/small.yaml", "--out", str(out), "--quiet"]
    for item in tiny_lm_overrides:
        args += ["--set", item]
    assert main(args) == 0
    details = json.loads((out / "summary.json").read_text())["task_details"]
    assert details["tokenizer"] == "trained" and details["tokenizer_sha256"] is None


class _Served:
    """What urlopen returns, serving fixed bytes (the machine is offline: the download itself is
    the one thing these tests stand in for)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self) -> _Served:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        return self.data


def _serve(monkeypatch: pytest.MonkeyPatch, data: bytes | Exception) -> list[str]:
    asked: list[str] = []

    def urlopen(url: str, timeout: float) -> _Served:
        asked.append(url)
        if isinstance(data, Exception):
            raise data
        return _Served(data)

    monkeypatch.setattr(tinystories.urllib.request, "urlopen", urlopen)
    return asked


def test_fetch_paper_tokenizer_writes_the_file_and_records_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quickstories: list[str]):
    """`neuroevo fetch-data paper-tokenizer` asks for the pinned URL, writes what arrives as
    tokenizer-bpe.json once it loads as a 2,048-token BPE, and records its sha256 in SOURCE.json
    beside the records already there."""
    data = paper_like_tokenizer(quickstories, vocab_size=PAPER_VOCAB_SIZE).to_str().encode()
    asked = _serve(monkeypatch, data)
    (tmp_path / "SOURCE.json").write_text(json.dumps({"first10k.txt": {"n_stories": 10000}}))
    assert main(["fetch-data", "paper-tokenizer", "--out", str(tmp_path)]) == 0
    assert asked == [PAPER_TOKENIZER_URL] and "0c4fe40d68" in PAPER_TOKENIZER_URL
    assert (tmp_path / PAPER_TOKENIZER_FILE).read_bytes() == data
    sources = json.loads((tmp_path / "SOURCE.json").read_text())
    assert sources["first10k.txt"] == {"n_stories": 10000}
    assert sources[PAPER_TOKENIZER_FILE]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("served, message", [
    (b"404: Not Found", r"is not the paper's tokenizer: the download is not a Hugging Face "
                        r"tokenizers JSON \(.*\); nothing was written$"),
    ("small", r"is not the paper's tokenizer: the download has 512 tokens but task.vocab_size "
              r"is 2048; nothing was written$"),
    (OSError("no route to host"), r"could not download .*OSError: no route to host"),
], ids=["error page", "another bpe", "offline"])
def test_fetch_paper_tokenizer_refuses_what_is_not_it_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer_file: Path, served, message):
    """An error page, another BPE or no network: one line naming the URL, no file left."""
    _serve(monkeypatch, tokenizer_file.read_bytes() if served == "small" else served)
    with pytest.raises(DataError, match=message) as info:
        tinystories.fetch_paper_tokenizer(tmp_path)
    assert len(str(info.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _record_many(path: Path, writer: str) -> None:
    for i in range(30):
        tinystories._record_source(path, f"{writer}-{i}", {"i": i})


def test_concurrent_fetches_into_one_directory_keep_every_record(tmp_path: Path):
    """The workflow may fetch the stories and the tokenizer at once: SOURCE.json's
    read-modify-write is locked, so two writers keep all their records (unlocked, this setting
    measured 38 of 60 kept)."""
    path = tmp_path / "SOURCE.json"
    writers = [multiprocessing.get_context("fork").Process(target=_record_many, args=(path, w))
               for w in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert all(writer.exitcode == 0 for writer in writers)
    assert len(json.loads(path.read_text())) == 60
