"""A small decoder-only language model built on the core's `MultiHeadAttention`, with and without a KV cache.

    x      = token_embedding(tokens) + position_embedding(positions)     (batch, seq, d_model)
    x      = x + MultiHeadAttention(LayerNorm(x), causal)                 in each of `layers` blocks
    x      = x + MLP(LayerNorm(x))                                        d_model -> d_ff -> d_model, GELU
    logits = head(LayerNorm(x))                                           (batch, seq, vocab): the next token

Two ways to run it compute the same numbers: `forward` recomputes every position (what training does, and what
generating without a cache does at every step); `forward_cached` computes only the new positions, reading the
keys and values of the earlier ones from one `mha.kv_cache.KVCache` per layer.

Prompts of different lengths are padded on the left (`mask` False on padding); each token's position counts the
real tokens before it, so padding changes no number of a real token.

`StepDecoder` is the same model called the way the decoders of real libraries are: the caller passes each call's
positions and the mask of every position the cache holds, and writes the generation loop itself (lesson 07's
exercise).
"""

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from .._portable import TRAINING_DTYPE, seeded
from .._validate import check_rank, check_same_device, check_tensor, fmt_shape, head_size, kv_group_size
from ..kv_cache import KVCache, cached_self_attention
from ..multihead import MultiHeadAttention


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of a `Decoder`.

    Args:
        vocab: distinct tokens (in and out).
        seq: longest sequence; one learned position embedding per position.
        d_model: features per position.
        heads: query heads per layer; each gets d_head = d_model // heads features.
        kv_heads: key/value heads per layer (default: heads); must divide heads.
        layers: decoder blocks.
        d_ff: width of the MLP's hidden layer (default: 4 * d_model).
    """

    vocab: int = 64
    seq: int = 32
    d_model: int = 64
    heads: int = 4
    kv_heads: int | None = None
    layers: int = 2
    d_ff: int | None = None

    def __post_init__(self):
        for name in ("vocab", "seq", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_ff is not None and (isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 1):
            raise ValueError(f"d_ff must be a positive integer (the MLP's hidden width) or None, got {self.d_ff!r}")
        head_size(self.d_model, self.heads)
        object.__setattr__(self, "kv_heads", self.heads if self.kv_heads is None else self.kv_heads)
        kv_group_size(self.heads, self.kv_heads)
        object.__setattr__(self, "d_ff", 4 * self.d_model if self.d_ff is None else self.d_ff)

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, then an MLP, each added to its input.

    Args:
        config: the sizes.

    Shape:
        x (batch, seq, d_model); mask (batch, seq), True = real token; returns (batch, seq, d_model).
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.d_model)
        self.attention = MultiHeadAttention(config.d_model, config.heads, kv_heads=config.kv_heads)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff), nn.GELU(), nn.Linear(config.d_ff, config.d_model)
        )

    def forward(self, x, mask=None):
        mixed, _ = self.attention(self.attention_norm(x), causal=True, key_padding_mask=mask)  # (batch, seq, d_model)
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x))

    def forward_cached(self, x, cache: KVCache, mask=None):
        x = x + cached_self_attention(self.attention, self.attention_norm(x), cache, mask)  # (batch, new, d_model)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    """A decoder-only transformer: embeddings, `layers` causal blocks, a final norm, and next-token logits.

    Args:
        config: the sizes.

    Shape:
        see `forward`.
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.d_model)
        self.position_embedding = nn.Embedding(config.seq, config.d_model)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits at every position, every position computed afresh.

        Args:
            tokens: token ids, padded on the left when the sequences differ in length.
            mask: bool, True = real token (default: all real).

        Shape:
            tokens and mask (batch, seq); returns logits (batch, seq, vocab).
        """
        mask = self._check(tokens, mask)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, seq): real tokens before each one
        if positions.numel() and int(positions.max()) >= self.config.seq:
            raise ValueError(
                f"tokens hold {int(positions.max()) + 1} real tokens in a sequence, more than the model's "
                f"seq={self.config.seq} positions"
            )
        x = self.token_embedding(tokens) + self.position_embedding(positions)  # (batch, seq, d_model)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))  # (batch, seq, vocab)

    def new_cache(self, batch: int, max_seq: int | None = None) -> list[KVCache]:
        """One empty `KVCache` per layer, for `batch` sequences of up to `max_seq` positions (default: config.seq)."""
        p = next(self.parameters())
        max_seq = self.config.seq if max_seq is None else max_seq
        kv_heads, d_head = self.config.kv_heads, self.config.d_head
        return [KVCache(batch, kv_heads, d_head, max_seq, p.dtype, p.device) for _ in self.blocks]

    def forward_cached(self, tokens: torch.Tensor, cache: list[KVCache], mask: torch.Tensor | None = None):
        """Next-token logits at the new positions only; the earlier positions' keys and values come from `cache`.

        Args:
            tokens: the new tokens (the whole prompt for prefill, one token per sequence for a decoding step).
            cache: from `new_cache`, one per layer; each grows by the new positions.
            mask: bool, True = real token (default: all real).

        Shape:
            tokens and mask (batch, new); returns logits (batch, new, vocab).
        """
        mask = self._check(tokens, mask)
        if not isinstance(cache, list | tuple) or len(cache) != len(self.blocks):
            raise ValueError(
                f"cache must be a list of one KVCache per layer ({len(self.blocks)}), as new_cache returns, got "
                f"{len(cache) if isinstance(cache, list | tuple) else type(cache).__name__}"
            )
        seen = cache[0].real[:, : cache[0].length].sum(dim=1, keepdim=True)  # (batch, 1) real tokens so far
        positions = (seen + mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, new)
        if int(positions.max()) >= self.config.seq:
            raise ValueError(f"position {int(positions.max())} is beyond the model's seq={self.config.seq} positions")
        x = self.token_embedding(tokens) + self.position_embedding(positions)  # (batch, new, d_model)
        for block, layer_cache in zip(self.blocks, cache):
            x = block.forward_cached(x, layer_cache, mask)
        return self.head(self.norm(x))  # (batch, new, vocab)

    def _check(self, tokens, mask):
        check_tensor("tokens", tokens)
        check_rank("tokens", tokens, (2,), "(batch, seq)")
        if tokens.dtype != torch.int64:
            raise TypeError(f"tokens must be int64 token ids, got dtype {tokens.dtype}")
        check_same_device(("the model", self.head.weight), ("tokens", tokens))
        if ((tokens < 0) | (tokens >= self.config.vocab)).any():  # one reduction: a decoding step is timed
            raise ValueError(
                f"tokens must be ids from 0 to vocab - 1 = {self.config.vocab - 1}, got values from "
                f"{int(tokens.min())} to {int(tokens.max())}"
            )
        if mask is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        check_tensor("mask", mask)
        if mask.dtype != torch.bool or mask.shape != tokens.shape:
            raise ValueError(
                f"mask must be bool with the shape of tokens {fmt_shape(tokens.shape)}, got {mask.dtype} "
                f"{fmt_shape(mask.shape)}"
            )
        check_same_device(("tokens", tokens), ("mask", mask))
        return mask


def build_decoder(config: DecoderConfig, seed: int, dtype: torch.dtype = TRAINING_DTYPE) -> Decoder:
    """A fresh decoder whose starting weights depend on `seed` alone (the global random state is left untouched).

    The weights are drawn as float32 numbers that are the same on every CPU (`mha._portable`), then held in `dtype`
    (default: float64, in which the course trains its small models, so that every CPU prints the same results).
    """
    with seeded(seed, portable=True):
        decoder = Decoder(config)
    return decoder.to(dtype)


def _shown(value, chars: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def left_pad(sequences: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of different lengths as one batch, padded on the left, and the mask of real tokens.

    Shape:
        returns tokens (batch, seq) int64 and mask (batch, seq) bool, seq the longest length.
    """
    if isinstance(sequences, torch.Tensor | str) or not isinstance(sequences, list | tuple):
        raise TypeError(f"expected a list of token lists, e.g. [[1, 2], [3]], got {type(sequences).__name__}")
    if not sequences or any(not isinstance(s, list | tuple) or len(s) == 0 for s in sequences):
        raise ValueError(f"expected at least one sequence, each a non-empty list of token ids, got {_shown(sequences)}")
    if any(isinstance(t, bool) or not isinstance(t, numbers.Integral) for s in sequences for t in s):
        raise TypeError(f"token ids must be whole numbers, got {_shown(sequences)}")
    seq = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), seq), pad, dtype=torch.int64)
    mask = torch.zeros(len(sequences), seq, dtype=torch.bool)
    for b, s in enumerate(sequences):
        tokens[b, seq - len(s) :] = torch.tensor(s, dtype=torch.int64)
        mask[b, seq - len(s) :] = True
    return tokens, mask


@torch.no_grad()
def generate(model: Decoder, prompts: list[list[int]], new_tokens: int, use_cache: bool = True) -> torch.Tensor:
    """Greedy generation: append the most likely next token, `new_tokens` times.

    Args:
        model: the decoder.
        prompts: token ids of each prompt (lengths may differ: they are padded on the left).
        new_tokens: tokens to generate per prompt.
        use_cache: keep each layer's keys and values (prefill once, then one position per step); False recomputes
            every position at every step.

    Shape:
        returns the generated tokens (batch, new_tokens), int64.
    """
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, numbers.Integral) or new_tokens < 1:
        raise ValueError(f"new_tokens must be a whole number of at least 1 (tokens to generate), got {new_tokens!r}")
    tokens, mask = left_pad(prompts)  # (batch, prompt)
    tokens, mask = tokens.to(model.head.weight.device), mask.to(model.head.weight.device)
    out = []
    if use_cache:
        cache = model.new_cache(len(prompts), tokens.shape[1] + new_tokens)
        logits = model.forward_cached(tokens, cache, mask)[:, -1]  # prefill: (batch, vocab) at the last position
        for _ in range(new_tokens):
            out.append(logits.argmax(dim=-1))  # (batch,)
            if len(out) < new_tokens:
                logits = model.forward_cached(out[-1][:, None], cache)[:, -1]  # one position: (batch, vocab)
    else:
        for _ in range(new_tokens):
            logits = model(tokens, mask)[:, -1]  # every position again: (batch, vocab)
            out.append(logits.argmax(dim=-1))
            tokens = torch.cat([tokens, out[-1][:, None]], dim=1)  # (batch, seq + 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return torch.stack(out, dim=1)  # (batch, new_tokens)


class StepDecoder:
    """A `Decoder` called as real libraries call theirs: the caller gives the positions and the whole mask.

    `model(tokens, positions, mask, cache)` runs the new positions, appends their keys and values to `cache`, and
    returns the logits at the new positions. Nothing is worked out for the caller: which positions the new tokens
    sit at, and which of the cached positions are real, are the caller's to say (as `position_ids` and
    `attention_mask` are in Hugging Face's transformers). It keeps count of the calls and of the positions run
    (`state()`), so that a check can tell a loop that runs each position once from one that runs the prompt again.

    Args:
        decoder: the model.

    Shape:
        see `__call__`.
    """

    def __init__(self, decoder: Decoder):
        self._decoder = decoder.eval()
        self.calls = 0
        self.positions_run = 0  # sequences x positions, summed over the calls

    @property
    def config(self) -> DecoderConfig:
        return self._decoder.config

    def new_cache(self, batch: int, max_seq: int | None = None) -> list[KVCache]:
        """One empty cache per layer for `batch` sequences of up to `max_seq` positions (default: config.seq)."""
        return self._decoder.new_cache(batch, max_seq)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: list[KVCache]):
        """Next-token logits at the new positions; their keys and values join `cache`.

        Args:
            tokens: the new tokens (the padded prompt at first, then one token per sequence).
            positions: where each new token sits in its own sequence, counted in real tokens (padding has none;
                give it any position in range, 0 say).
            mask: bool, True = a real token, over every position the cache holds after this call: the `past` it
                held before, then the `new` ones.
            cache: from `new_cache`.

        Shape:
            tokens and positions (batch, new), int64; mask (batch, past + new); returns logits (batch, new, vocab).
        """
        decoder = self._decoder
        check_rank("tokens", tokens, (2,), "(batch, new)")
        if tokens.dtype != torch.int64 or not isinstance(positions, torch.Tensor) or positions.dtype != torch.int64:
            raise TypeError(f"tokens and positions must be int64 tensors, got {_kind(tokens)} and {_kind(positions)}")
        if positions.shape != tokens.shape:
            raise ValueError(
                f"positions must have the shape of tokens {fmt_shape(tokens.shape)}, one per new token, got "
                f"{fmt_shape(positions.shape)}"
            )
        if not isinstance(cache, list) or len(cache) != len(decoder.blocks):
            raise TypeError(f"cache must be what model.new_cache(batch) returns, got {type(cache).__name__}")
        batch, new = tokens.shape
        past = cache[0].length
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 2:
            raise TypeError(f"mask must be a bool tensor (batch, past + new), got {_kind(mask)}")
        if tuple(mask.shape) != (batch, past + new):
            raise ValueError(
                f"mask covers {mask.shape[1]} positions of {mask.shape[0]} sequences, but the cache holds {past} "
                f"and this call adds {new}: it must cover {past + new}, shape (batch, past + new) = "
                f"{fmt_shape((batch, past + new))}"
            )
        if past + new > cache[0].max_seq:
            raise ValueError(
                f"the cache has room for {cache[0].max_seq} positions; it holds {past} and this call adds {new}"
            )
        low, high = int(positions.min()), int(positions.max())
        if low < 0 or high >= decoder.config.seq:
            raise ValueError(f"positions must lie in 0..{decoder.config.seq - 1}, got {low}..{high}")
        x = decoder.token_embedding(tokens) + decoder.position_embedding(positions)  # (batch, new, d_model)
        for block, layer_cache in zip(decoder.blocks, cache):
            layer_cache.real[:, :past] = mask[:, :past]  # the caller's mask says which cached positions are real
            x = block.forward_cached(x, layer_cache, mask[:, past:])
        self.calls += 1
        self.positions_run += batch * new
        return decoder.head(decoder.norm(x))  # (batch, new, vocab)

    def state(self) -> dict:
        """What it has run: {"calls": calls so far, "positions_run": sequences x positions, summed}."""
        return {"calls": self.calls, "positions_run": self.positions_run}


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {fmt_shape(value.shape)}"
    return type(value).__name__
