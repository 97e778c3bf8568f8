"""The pretrained wing: a real transformer, all-MiniLM-L6-v2, rebuilt from the core's `MultiHeadAttention` (lesson 05).

    encoder.py       the encoder (embeddings, 6 layers of attention + feed-forward), loading its weights by an
                     explicit name table, the tokenizer, sentence embeddings
    head_scores.py   scores that name what a head does: previous token, next token, self, same word, [CLS], [SEP]
    analysis.py      the 72 heads over many sentences: head types, [CLS] as a sink, pronoun links, ablation, pruning
    explorer.py      an interactive widget: pick a sentence, a layer and a head, see its attention
    kv_pooling.py    lesson 07: the key/value heads mean-pooled in groups (grouped-query attention, no uptraining)
    plots.py         every head at once, and head-type score maps
    data/            the reference library's outputs the encoder is checked against (package data)
    __main__.py      the command: `python -m mha.pretrained [--sentence ...]`, `python -m mha.pretrained heads`,
                     `python -m mha.pretrained kv-pooling`

`from mha import pretrained` gives the encoder's API: `pretrained.load()`, `pretrained.encode(...)`, ...
"""

from .encoder import (
    COURSE_SENTENCE,
    FILES,
    INSTALL,
    PACKAGE,
    REFERENCE_FILE,
    UNUSED,
    Batch,
    Embeddings,
    Encoded,
    Encoder,
    EncoderConfig,
    EncoderLayer,
    EncoderOutput,
    FeedForward,
    checkpoint_names,
    encode,
    load,
    load_tokenizer,
    load_weights,
    mean_pool,
    model_dir,
    reference_file,
    sentence_embeddings,
    summarise,
    tokenize,
    top_keys,
)

__all__ = [
    "COURSE_SENTENCE",
    "FILES",
    "INSTALL",
    "PACKAGE",
    "REFERENCE_FILE",
    "UNUSED",
    "Batch",
    "Embeddings",
    "Encoded",
    "Encoder",
    "EncoderConfig",
    "EncoderLayer",
    "EncoderOutput",
    "FeedForward",
    "checkpoint_names",
    "encode",
    "load",
    "load_tokenizer",
    "load_weights",
    "mean_pool",
    "model_dir",
    "reference_file",
    "sentence_embeddings",
    "summarise",
    "tokenize",
    "top_keys",
]
