"""A decoder trained to write the course's template language, one word at a time (lesson 07).

`train_writer` trains `mha.decoding.model.Decoder` on `mha.toy.language.NextWordLanguage` (the next word at every
position) with the course's training loop; `continue_text` completes prompts greedily, with or without the KV
cache; `is_sentence` (from the language) tells whether what came out is a sentence of the language.

    apple released a new        ->  apple released a new iphone , but it is expensive .
"""

from dataclasses import dataclass

import torch
from torch import nn

from .._trained import once
from .._validate import check_int, check_positive
from ..toy.language import INDEX, VOCAB, NextWordLanguage, is_sentence
from ..toy.train import TrainConfig, TrainResult, train
from .model import Decoder, DecoderConfig, build_decoder, generate


@dataclass(frozen=True)
class WriterSetting:
    """The writer's sizes and training.

    Args:
        d_model: features per position.
        heads: query heads per layer.
        kv_heads: key/value heads per layer (default: heads).
        layers: decoder blocks.
        steps: training steps, one fresh batch of sentences each.
        batch: sentences per batch.
        lr: Adam's learning rate.
    """

    d_model: int = 64
    heads: int = 4
    kv_heads: int | None = None
    layers: int = 2
    steps: int = 500
    batch: int = 32
    lr: float = 3e-3

    def __post_init__(self):  # checked where it enters, before any training
        for name in ("d_model", "heads", "layers", "steps", "batch"):
            check_int(name, getattr(self, name))
        check_positive("lr", self.lr, "a learning rate")
        self.config()  # d_model against heads, kv_heads against heads

    def config(self) -> DecoderConfig:
        language = NextWordLanguage()
        return DecoderConfig(language.vocab, language.seq, self.d_model, self.heads, self.kv_heads, self.layers)


class _OneRelation(nn.Module):
    """The decoder seen by `mha.toy.train`: logits (batch, seq, vocab) -> (batch, seq, 1, vocab)."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens):
        return self.decoder(tokens).unsqueeze(2)  # (batch, seq, 1, vocab)


@once()
def train_writer(setting: WriterSetting = WriterSetting(), seed: int = 0, progress: bool = True) -> TrainResult:
    """Train a decoder on the next word of the template language; its result's `model` is the `Decoder` itself.

    Shape:
        returns a `TrainResult` whose accuracy is the next-word accuracy on held-out sentences.
    """
    decoder = build_decoder(setting.config(), seed)
    config = TrainConfig(
        steps=setting.steps, batch=setting.batch, lr=setting.lr, seed=seed, eval_every=100, eval_batch=256
    )
    result = train(_OneRelation(decoder), NextWordLanguage(), config, progress=progress)
    result.model = decoder.eval()
    return result


def encode_words(text: str) -> list[int]:
    """Token ids of a text of the language, words split on spaces; a clear error for a word not in the vocabulary."""
    if not isinstance(text, str):
        raise TypeError(f"expected a text (str), got {type(text).__name__}")
    words = text.split()
    if not words:
        raise ValueError(f"expected a text of at least one word, got {text!r}")
    unknown = [w for w in words if w not in INDEX]
    if unknown:
        raise ValueError(f"words not in the language's vocabulary: {unknown}")
    return [INDEX[w] for w in words]


def continue_text(model: Decoder, prompts: list[str], new_tokens: int = 16, use_cache: bool = True) -> list[str]:
    """Complete each prompt greedily; stop each one after its first "." (or after `new_tokens` words, or at the
    model's last position).

    Returns:
        each prompt followed by its continuation, as text.
    """
    if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
        raise TypeError(f"prompts must be a list of texts, e.g. ['the phone'], got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("prompts must hold at least one text, got none")
    ids = [encode_words(p) for p in prompts]
    if max(len(i) for i in ids) >= model.config.seq:
        raise ValueError(
            f"a prompt of {max(len(i) for i in ids)} words leaves no room in the model's seq={model.config.seq} "
            f"positions: expected at most {model.config.seq - 1} words"
        )
    new_tokens = min(new_tokens, model.config.seq - max(len(i) for i in ids))  # the model has seq positions
    out = generate(model, ids, new_tokens, use_cache=use_cache)  # (batch, new_tokens)
    texts = []
    for prompt, row in zip(prompts, out.tolist()):
        words = [VOCAB[t] for t in row]
        if "." in words:
            words = words[: words.index(".") + 1]
        texts.append(" ".join(prompt.split() + words))
    return texts


def grammatical_share(texts: list[str]) -> float:
    """Share of texts that are sentences of the template language."""
    return sum(is_sentence(t.split()) for t in texts) / len(texts)


PROMPTS = [
    "apple released a new",
    "a new kindle was unveiled by",
    "last week , samsung",
    "after months of work , a new pixel was announced by google in paris ,",
    "sony launched a new walkman , but",
    "this spring , a new",
    "nintendo announced a new switch to the press , so honestly it",
    "a new",
]


def random_prompts(n: int, seed: int = 11, cut=(0.3, 0.7)) -> list[str]:
    """The first 30% to 70% of the words of `n` random sentences of the language: prompts to complete."""
    language = NextWordLanguage().language
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for s in language.sample_sentences(n, g):
        share = cut[0] + (cut[1] - cut[0]) * float(torch.rand((), generator=g))
        prompts.append(" ".join(s.words[: max(1, round(share * len(s.words)))]))
    return prompts
