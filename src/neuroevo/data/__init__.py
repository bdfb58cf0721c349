"""Text data for the TinyStories task.

`tinystories` fetches the real TinyStories text (online only), trains the paper's BPE (or loads a
tokenizer file, such as the authors' own) and builds the evaluation batches; `story_grammar`
generates `data/quickstories.txt`, the offline stand-in used by the CPU quick start and the tests.
"""

from neuroevo.data.tinystories import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_OFFSET,
    Corpus,
    DataError,
    EvalBatch,
    fetch_tinystories,
    fixed_eval_set,
    load_tokenizer_file,
    model_vocab_size,
    prepare_corpus,
    sampled_eval_set,
    train_tokenizer,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_OFFSET",
    "Corpus",
    "DataError",
    "EvalBatch",
    "fetch_tinystories",
    "fixed_eval_set",
    "load_tokenizer_file",
    "model_vocab_size",
    "prepare_corpus",
    "sampled_eval_set",
    "train_tokenizer",
]
