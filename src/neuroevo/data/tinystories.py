"""TinyStories data layer: fetch the text, train the BPE, cache the tokens, build evaluation batches.

Follows the paper's pipeline (Garbus & Pollack 2025; the authors' Jevo.jl): the first 10k stories
of the TinyStories training split, a 2,048-token BPE (NFD + lowercase + strip accents; whitespace +
single digits), and the Jevo encoder's model vocabulary `<unk>`=0 (also padding), `<s>`=1, `</s>`=2,
BPE id b ↦ 3 + b; instead of training, `task.tokenizer` may name a tokenizers JSON file (the
authors' own `tokenizer-bpe.json`, PAPER_TOKENIZER_URL), checked for what the model ids assume.
Fitness is measured on the first 1,024 stories, each `<s> story </s>`, right-padded with `<unk>`
and identical every generation (`fixed_eval_set`); a fresh seeded sample per generation
(`sampled_eval_set`) and truncation to `max_len` are our options, not the paper's.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, XetDownloadError
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from neuroevo.atomic import UMASK, atomic_write_text, replacing
from neuroevo.sections.language import BPE_SPECIALS, MAX_VOCAB_SIZE, SPECIAL_OFFSET

HF_REPO = "roneneldan/TinyStories"
HF_FILENAME = "TinyStories-train.txt"  # 1.9 GB; the stories are separated by lines `<|endoftext|>`
# Pinned dataset commit (the hub's `main` since 2024-08-12), so a re-upload cannot silently change the
# stories (the hash below checks what arrives). To update, copy
# the newest sha from https://huggingface.co/datasets/roneneldan/TinyStories/commits/main, refetch, and
# compare the sha256 values that SOURCE.json records.
HF_REVISION = "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"
# The file's sha256 at that commit: the hub's own storage id for it (its LFS object), which public
# projects pinning the same commit record too. hf_hub_download checks only the byte count (and
# nothing for a file already in its cache), so the fetch checks both before extracting: a download
# that differs is refused (not checked against the hub from here: the development machines are
# offline).
PUBLISHED_SHA256 = "c5cf5e22ff13614e830afbe61a99fbcbe8bcb7dd72252b989fa1117a368d401f"
PUBLISHED_BYTES = 1_924_281_556
STORY_SEPARATOR = "<|endoftext|>"
FETCH_HINT = (
    "run `snakemake --cores 1 data/tinystories/first10k.txt` or "
    "`neuroevo fetch-data tinystories --out data/tinystories` on a machine with internet"
)

# The authors' BPE (MIT), at the commit the README cites: what `task.tokenizer` is for, fetched by
# `fetch_paper_tokenizer` (checked for the BPE the paper used, 2,048 tokens, and its sha256
# recorded; not against a pinned hash: the development machines are offline).
PAPER_TOKENIZER_URL = ("https://raw.githubusercontent.com/jarbus/Jevo.jl/"
                       "0c4fe40d6819831417ae2e25032264e16107d48d/src/environments/text/datasets/"
                       "tinystories/tokenizer-bpe.json")
PAPER_TOKENIZER_FILE = "tokenizer-bpe.json"
PAPER_VOCAB_SIZE = 2048
PAPER_TOKENIZER_HINT = ("for the paper's, `neuroevo fetch-data paper-tokenizer` (or `curl -fL "
                        f"--create-dirs -o data/tinystories/{PAPER_TOKENIZER_FILE} "
                        f"{PAPER_TOKENIZER_URL}`); or task.tokenizer=null to train one")

# model ids 0-2 come before the BPE's (BPE id b is model id b + SPECIAL_OFFSET); SPECIAL_OFFSET and
# the BPE's own specials (BPE_SPECIALS) live in neuroevo.sections.language, for task.vocab_size's check
PAD_ID = 0  # model id of <unk>; the paper pads with it and masks padding out of the loss
BOS_ID = 1
EOS_ID = 2
SAMPLE_STREAM = 0x73616D706C65  # third entropy word of the sampled batches' generator ("sample")


class DataError(Exception):
    """A data problem the user must fix; the message is one line naming the problem and the fix."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """Tokenised stories, stored back to back; story i is `tokens[offsets[i]:offsets[i + 1]]`."""

    tokenizer: Tokenizer
    tokens: np.ndarray  # (N_tok,) int16 memmap of model ids, no BOS/EOS
    offsets: np.ndarray  # (n_stories + 1,) int64 memmap
    vocab_size: int  # model vocabulary: BPE size + SPECIAL_OFFSET (2051 for the paper's 2048)
    text_sha256: str  # of the text file the corpus was built from, for the run summary
    n_stories: int
    tokenizer_sha256: str | None  # of the task.tokenizer file; None: trained on the text

    def story(self, i: int) -> np.ndarray:
        """Model ids of story `i`, without `<s>` and `</s>`."""
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self) -> int:
        return self.n_stories


@dataclass(frozen=True, eq=False)
class EvalBatch:
    """Rows `<s> story </s>` right-padded with PAD_ID; the model predicts token t+1 from tokens ≤ t."""

    tokens: torch.Tensor  # (B, T) int64
    lengths: torch.Tensor  # (B,) int64: real tokens per row, <s> and </s> included

    @property
    def n_targets(self) -> int:
        """Number of predicted tokens: positions 1..L-1 of every row."""
        return int((self.lengths - 1).sum())

    def buckets(self, size: int, padding: float | None = None) -> list[EvalBatch]:
        """The rows sorted by length (longest first) in groups of at most `size`, each padded
        only to its own longest row: with stories of very different lengths (the paper's 1,024 are
        padded to the longest) most of the padded batch is padding, and padding costs as much as
        text in every layer but the loss. Per-row results do not depend on the padding (causal
        attention never looks right), so a fitness summed over buckets equals the padded one.

        `padding` None: groups of exactly `size` rows. A number: the padding of all groups
        together stays within `padding` × the real tokens, in few groups: a group also closes
        before a row shorter than (1 − τ) × its longest, for the largest τ (bisected) whose
        groups keep within the budget. On a skewed length distribution the long tail then gets
        groups of its own instead of padding 64 rows to one long story, while stories of similar
        length stay together (every group is one kernel call per population chunk).
        `size` 0, or one group that already fits, gives [self].
        """
        if size <= 0:
            return [self]
        lengths = self.lengths.sort(descending=True, stable=True)
        bounds = _length_groups(lengths.values.tolist(), size, padding)
        if len(bounds) == 1:
            return [self]
        return [EvalBatch(self.tokens[lengths.indices[a:b], : int(lengths.values[a])],
                          lengths.values[a:b]) for a, b in bounds]


def _length_groups(lengths: list[int], size: int, padding: float | None) -> list[tuple[int, int]]:
    """(start, end) of consecutive groups of `lengths` (sorted, longest first) for
    `EvalBatch.buckets`."""
    def groups(tolerance: float) -> list[tuple[int, int]]:
        bounds, start = [], 0
        for end in range(1, len(lengths) + 1):
            if (end == len(lengths) or end - start == size
                    or lengths[end] < (1.0 - tolerance) * lengths[start]):
                bounds.append((start, end))
                start = end
        return bounds

    real = sum(lengths)

    def within_budget(bounds: list[tuple[int, int]]) -> bool:
        computed = sum((b - a) * lengths[a] for a, b in bounds)
        return padding is None or computed - real <= padding * real

    widest = groups(1.0)  # groups of exactly `size`
    if within_budget(widest):
        return widest
    low, high = 0.0, 1.0  # τ = 0 pads nothing (only equal lengths share a group)
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if within_budget(groups(middle)) else (low, middle)
    return groups(low)


def fetch_tinystories(out_dir: Path, n_stories: int = 10_000) -> Path:
    """Download the pinned TinyStories training text and write its first `n_stories`, one per line.

    Writes `out_dir/<stories_filename(n_stories)>` (first10k.txt for the paper's 10,000) and its
    record (repo, file, revision, both sha256s, n_stories) in `out_dir/SOURCE.json`, which keeps
    one record per file (keyed by its name), so fetching first500.txt next to first10k.txt, or
    the paper's tokenizer (`fetch_paper_tokenizer`), keeps the latter's. Returns the stories path.
    """
    if n_stories < 1:  # before a 1.9 GB download
        raise DataError(f"--n-stories must be at least 1, got {n_stories}")
    out_dir = Path(out_dir)
    sources_path = out_dir / "SOURCE.json"
    _read_sources(sources_path)  # a broken one stops the fetch before the download
    try:
        raw = Path(
            hf_hub_download(repo_id=HF_REPO, repo_type="dataset", filename=HF_FILENAME, revision=HF_REVISION)
        )
    # OSError also covers hf_xet's own XetAuthenticationError and XetObjectNotFoundError
    except (OSError, HfHubHTTPError, EntryNotFoundError, XetDownloadError) as err:
        raise DataError(
            f"could not download {HF_FILENAME} from {HF_REPO}@{HF_REVISION[:7]} ({type(err).__name__}: "
            f"{_one_line(err)}): {FETCH_HINT}, then copy data/tinystories/ here"
        ) from err
    downloaded = _sha256_file(raw)  # checked before anything is written from it
    if downloaded != PUBLISHED_SHA256 or raw.stat().st_size != PUBLISHED_BYTES:
        raise DataError(
            f"{raw} ({raw.stat().st_size:,} bytes, sha256 {downloaded[:12]}…) is not "
            f"{HF_FILENAME}@{HF_REVISION[:7]} ({PUBLISHED_BYTES:,} bytes, {PUBLISHED_SHA256[:12]}…): "
            "delete it from the Hugging Face cache and fetch again (if the hub's file itself "
            "changed, pin its new revision and hash in neuroevo/data/tinystories.py)")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / stories_filename(n_stories)
    written = extract_stories(raw, out, n_stories)
    _record_source(sources_path, out.name, {
        "repo": HF_REPO,
        "repo_type": "dataset",
        "filename": HF_FILENAME,
        "revision": HF_REVISION,
        "license": "CDLA-Sharing-1.0",
        "sha256_download": downloaded,
        "sha256_written": _sha256_file(out),
        "n_stories": written,
    })
    return out


def fetch_paper_tokenizer(out_dir: Path) -> Path:
    """Download the authors' `tokenizer-bpe.json` at the pinned commit (PAPER_TOKENIZER_URL) into
    `out_dir`, for `task.tokenizer`. What arrives must load as the BPE that option takes, with the
    paper's 2,048 tokens (an error page or another file is refused, and nothing is written); its
    sha256 goes to `out_dir/SOURCE.json`. Returns the file's path."""
    out = Path(out_dir) / PAPER_TOKENIZER_FILE
    sources_path = out.parent / "SOURCE.json"
    _read_sources(sources_path)  # a broken one stops the fetch before the download
    try:
        with urllib.request.urlopen(PAPER_TOKENIZER_URL, timeout=60) as response:
            data = response.read()
    except OSError as err:  # urllib's URLError and HTTPError are OSErrors
        raise DataError(f"could not download {PAPER_TOKENIZER_URL} ({type(err).__name__}: "
                        f"{_one_line(err)}): fetch it on a machine with internet and copy it to "
                        f"{out}") from err
    with replacing(out) as part:
        part.write_bytes(data)
        try:
            _, sha256 = load_tokenizer_file(part, PAPER_VOCAB_SIZE)
        except DataError as error:  # "task.tokenizer: <part><problem>: <fix>", where the
            # temporary file's name and the fix (for a config's task.tokenizer) mean nothing here
            problem = str(error).removeprefix(f"task.tokenizer: {part}").rsplit(": ", 1)[0]
            raise DataError(f"{PAPER_TOKENIZER_URL} is not the paper's tokenizer: the "
                            f"download{problem}; nothing was written") from None
    _record_source(sources_path, out.name, {"url": PAPER_TOKENIZER_URL, "license": "MIT",
                                            "sha256": sha256})
    return out


def stories_filename(n_stories: int) -> str:
    """first10k.txt for the paper's 10,000 stories (what the configs and the workflow read),
    first<n>.txt otherwise, so a file's name never claims more or fewer stories than it holds."""
    return "first10k.txt" if n_stories == 10_000 else f"first{n_stories}.txt"


def extract_stories(raw_path: Path, out_path: Path, n_stories: int) -> int:
    """Write the first `n_stories` stories of a `<|endoftext|>`-separated file, one per line.

    Each story's internal newlines (and runs of whitespace) become single spaces, and empty stories
    are dropped. The write is atomic. Returns how many stories were written (fewer if the file ends).
    """
    stories = list(itertools.islice(_split_stories(Path(raw_path)), n_stories))
    atomic_write_text(Path(out_path), "".join(story + "\n" for story in stories))
    return len(stories)


def train_tokenizer(stories: Sequence[str], vocab_size: int = 2048) -> Tokenizer:
    """Train the paper's BPE: `vocab_size` entries including the 5 specials at ids 0-4.

    Normalizer NFD + Lowercase + StripAccents, pre-tokenizer Whitespace + single Digits. The result is
    deterministic for the same stories; it has fewer entries when the text has too few distinct words
    to fill `vocab_size`.
    """
    tokenizer = _untrained_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(BPE_SPECIALS), show_progress=False)
    tokenizer.train_from_iterator(stories, trainer=trainer, length=len(stories))
    return tokenizer


def _untrained_tokenizer() -> Tokenizer:
    """The BPE's model, normalizer and pre-tokenizer before training (what `train_tokenizer`
    trains, and what the cache key digests)."""
    tokenizer = Tokenizer(models.BPE(unk_token=BPE_SPECIALS[0]))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    return tokenizer


def tokenizer_settings_digest() -> str:
    """What a cache entry depends on besides the text, `n_stories` and `vocab_size`: the BPE's
    settings, its specials, the model-id offset and the tokenizers library's version (a change
    to any of them makes a new entry instead of reusing a stale one)."""
    import tokenizers

    settings = json.dumps([_untrained_tokenizer().to_str(), BPE_SPECIALS, SPECIAL_OFFSET,
                           tokenizers.__version__])
    return hashlib.sha256(settings.encode()).hexdigest()


def load_tokenizer_file(path: Path, vocab_size: int) -> tuple[Tokenizer, str]:
    """A `task.tokenizer` file and its sha256, checked before any text is tokenised for what
    the model ids assume: a BPE of exactly `vocab_size` ids 0..vocab_size − 1 (the model's
    embedding is sized from it), with special tokens at ids 0-4, as the paper's file has (its
    names do not matter: id b is model id b + SPECIAL_OFFSET either way)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task.tokenizer: no file at {path}: {PAPER_TOKENIZER_HINT}")
    data = path.read_bytes()  # hashed and parsed from the same bytes
    try:
        tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as error:  # tokenizers raises a bare Exception for a file it cannot read
        raise DataError(f"task.tokenizer: {path} is not a Hugging Face tokenizers JSON "
                        f"({_one_line(error)}): {PAPER_TOKENIZER_HINT}") from None
    if not isinstance(tokenizer.model, models.BPE):
        raise DataError(f"task.tokenizer: {path} is a {type(tokenizer.model).__name__} "
                        f"tokenizer, not BPE: {PAPER_TOKENIZER_HINT}")
    size = tokenizer.get_vocab_size()
    if size != vocab_size:
        raise DataError(f"task.tokenizer: {path} has {size} tokens but task.vocab_size is "
                        f"{vocab_size}: set task.vocab_size={size}")
    highest = max(tokenizer.get_vocab().values())
    if highest != size - 1:
        raise DataError(f"task.tokenizer: {path}'s ids do not run 0..{size - 1} (its highest is "
                        f"{highest}): renumber them, or {PAPER_TOKENIZER_HINT}")
    specials = sorted(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)
    if not set(range(len(BPE_SPECIALS))) <= set(specials):
        raise DataError(f"task.tokenizer: {path} must have special tokens at ids "
                        f"0-{len(BPE_SPECIALS) - 1} (the paper's <unk> <pad> <s> </s> "
                        f"<|endoftext|>), not at {specials or 'none'}: train it with "
                        f"{len(BPE_SPECIALS)} special tokens first, or {PAPER_TOKENIZER_HINT}")
    # the package frames (<s> … </s>) and pads the stories itself: a file's own padding,
    # truncation or post-processor (saved with it, e.g. after enable_padding) would change every
    # story's ids, so they are switched off (the paper's file has none of them)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.post_processor = None
    return tokenizer, hashlib.sha256(data).hexdigest()


def model_vocab_size(tokenizer: Tokenizer) -> int:
    """Size of the model's vocabulary: the BPE's plus `<unk>`, `<s>`, `</s>` in front."""
    return tokenizer.get_vocab_size() + SPECIAL_OFFSET


def prepare_corpus(
    text_path: Path, cache_dir: Path, n_stories: int | None = None, vocab_size: int = 2048,
    tokenizer_path: Path | None = None,
) -> Corpus:
    """Tokenise a one-story-per-line text file, training the BPE on it (or with the tokenizer
    file `tokenizer_path`, see `load_tokenizer_file`), with an on-disk cache.

    The cache entry (`tokenizer.json`, `tokens.npy`, `offsets.npy`) is keyed by the text's sha256,
    `n_stories`, `vocab_size` and the tokenizer's settings (`tokenizer_settings_digest`, which
    also holds the library's version and the id offset), plus a tokenizer file's sha256, so an
    edited file never reuses stale tokens; a trained entry's name is what it was before files
    were possible. The entry appears atomically, so a second call (or a concurrent run) reuses
    it without retraining. Blank lines are skipped; `n_stories` keeps only the first stories.
    """
    text_path = Path(text_path)
    if not text_path.is_file():
        if not text_path.is_absolute() and not Path("configs").is_dir():
            raise DataError(f"text not found at {text_path}, which configs give relative to the "
                            f"repository root: run from there (this is {Path.cwd()})")
        raise DataError(f"text not found at {text_path}: the shipped corpus is "
                        f"data/quickstories.txt; TinyStories is fetched: {FETCH_HINT}")
    if not len(BPE_SPECIALS) < vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size must fit int16 model ids after the specials, got {vocab_size}")
    given, given_sha = (None, None) if tokenizer_path is None else load_tokenizer_file(
        tokenizer_path, vocab_size)
    text_sha = _sha256_file(text_path)
    entry = Path(cache_dir) / (f"{text_sha[:16]}-n{'all' if n_stories is None else n_stories}"
                               f"-v{vocab_size}-t{tokenizer_settings_digest()[:8]}"
                               + ("" if given_sha is None else f"-f{given_sha[:16]}"))
    if not entry.is_dir():
        stories = _read_stories(text_path, n_stories)
        if not stories:
            raise DataError(f"no stories in {text_path}: expected one story per line (task.text: "
                            f"a fetched TinyStories file, data/quickstories.txt, or your own)")
        tokenizer = train_tokenizer(stories, vocab_size) if given is None else given
        tokens, offsets = _encode(tokenizer, stories)
        _write_cache_entry(entry, tokenizer, tokens, offsets)
    tokenizer = Tokenizer.from_file(str(entry / "tokenizer.json"))
    offsets = np.load(entry / "offsets.npy", mmap_mode="r")
    return Corpus(
        tokenizer=tokenizer,
        tokens=np.load(entry / "tokens.npy", mmap_mode="r"),
        offsets=offsets,
        vocab_size=model_vocab_size(tokenizer),
        text_sha256=text_sha,
        n_stories=len(offsets) - 1,
        tokenizer_sha256=given_sha,
    )


def fixed_eval_set(corpus: Corpus, n_sequences: int = 1024, max_len: int | None = None) -> EvalBatch:
    """The paper's evaluation set: the first `n_sequences` stories, the same every generation.

    `max_len` truncates each row to that many tokens (keeps `<s>`, drops the tail, `</s>` only if it
    fits): our option for speed; the paper truncated nothing.
    """
    check_eval_args(corpus, n_sequences, max_len)
    return _batch(corpus, np.arange(n_sequences), max_len)


def sampled_eval_set(
    corpus: Corpus, n_sequences: int, max_len: int | None, seed: int, generation: int
) -> EvalBatch:
    """A fresh batch per generation: `n_sequences` distinct stories drawn from
    `default_rng([seed, generation, SAMPLE_STREAM])`.

    Same (seed, generation) gives the same batch, so every individual of a generation sees the same
    data and a resumed run sees what the uninterrupted one saw. The third word keeps this stream
    apart from the GA's `[seed, generation]`, which picks that generation's parents and seeds.
    """
    check_eval_args(corpus, n_sequences, max_len)
    rng = np.random.default_rng([seed, generation, SAMPLE_STREAM])
    return _batch(corpus, rng.choice(len(corpus), size=n_sequences, replace=False), max_len)


# --- private helpers ---------------------------------------------------------------------------


def _batch(corpus: Corpus, indices: np.ndarray, max_len: int | None) -> EvalBatch:
    rows = [np.concatenate(([BOS_ID], corpus.story(int(i)), [EOS_ID])).astype(np.int64) for i in indices]
    if max_len is not None:
        rows = [row[:max_len] for row in rows]
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)  # (B,)
    tokens = torch.full((len(rows), int(lengths.max())), PAD_ID, dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        tokens[b, : len(row)] = torch.from_numpy(row)
    return EvalBatch(tokens=tokens, lengths=lengths)


def check_eval_args(corpus: Corpus, n_sequences: int, max_len: int | None) -> None:
    """Refuse an evaluation the corpus cannot give, in one line (the language task calls this
    when it is built, before a run directory exists: sampled batches are drawn only later)."""
    if n_sequences < 1:
        raise ValueError(f"n_sequences must be >= 1, got {n_sequences}")
    if max_len is not None and max_len < 2:
        raise ValueError(f"max_len must be >= 2 (<s> and one target) or None, got {max_len}")
    if n_sequences > len(corpus):
        raise DataError(
            f"task.n_sequences ({n_sequences}) is more than the {len(corpus)} stories of the "
            "corpus: lower task.n_sequences (or raise task.n_stories, if the text has more)"
        )


def _encode(tokenizer: Tokenizer, stories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Model ids of all stories back to back (int16) and the (n + 1,) int64 offsets into them."""
    encoded = [np.asarray(e.ids, dtype=np.int64) + SPECIAL_OFFSET for e in tokenizer.encode_batch(stories)]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(ids) for ids in encoded], out=offsets[1:])
    return np.concatenate(encoded).astype(np.int16), offsets


def _write_cache_entry(entry: Path, tokenizer: Tokenizer, tokens: np.ndarray, offsets: np.ndarray) -> None:
    """Build the entry in a temporary sibling directory and rename it into place in one step."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it 0700: other users' runs read the cache
    try:
        tokenizer.save(str(tmp / "tokenizer.json"))
        np.save(tmp / "tokens.npy", tokens)
        np.save(tmp / "offsets.npy", offsets)
        os.replace(tmp, entry)
    except OSError:
        if not entry.is_dir():  # a concurrent run that finished first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_stories(path: Path, n_stories: int | None) -> list[str]:
    """The first `n_stories` non-blank lines of a UTF-8 text, stripped."""
    try:
        with open(path, encoding="utf-8") as f:
            stories = (line.strip() for line in f)
            return list(itertools.islice((s for s in stories if s), n_stories))
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason}): convert it, e.g. with "
                        "`iconv -t UTF-8`") from None


def _record_source(path: Path, name: str, record: dict) -> None:
    """Set SOURCE.json's record of the file `name`, keeping the others. Read and written under an
    exclusive lock, so two fetches into one directory at once (the workflow's TinyStories text
    and the paper's tokenizer) each keep their record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        sources = _read_sources(path)
        sources[name] = record
        atomic_write_text(path, json.dumps(sources, indent=2) + "\n")


def _read_sources(path: Path) -> dict[str, dict]:
    """SOURCE.json's records by stories file name ({} before the first fetch). A file written
    before the records were keyed holds one flat record: it is kept under the name of the file
    it describes (its n_stories names it: the full text has far more stories than any fetch)."""
    if not path.is_file():
        return {}
    try:
        sources = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(f"{path} is not JSON ({_one_line(error)}): delete it and fetch "
                        "again") from None
    if not isinstance(sources, dict) or ("repo" in sources and "n_stories" not in sources):
        raise DataError(f"{path} holds no records of fetched files: delete it and fetch again")
    return {stories_filename(sources["n_stories"]): sources} if "repo" in sources else sources


def _split_stories(path: Path) -> Iterator[str]:
    """Stories of a file where `<|endoftext|>` ends each story, whitespace collapsed to single spaces."""
    pending: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            *finished, rest = line.split(STORY_SEPARATOR)
            for piece in finished:
                story = " ".join(" ".join(pending + [piece]).split())
                pending = []
                if story:
                    yield story
            pending.append(rest)
    story = " ".join(" ".join(pending).split())
    if story:
        yield story


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(err: BaseException) -> str:
    """An exception's message on one line and short, to embed in a DataError."""
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else text[:157] + "..."
