"""The KV cache: generate one token at a time without recomputing the past.

A causal model's keys and values at position j depend only on tokens 0..j, so they never change once computed.
Generating token t+1 needs the query of position t and the keys and values of positions 0..t: keep the keys and
values of the past in a cache, compute those of the new position alone, append them, attend.

    prefill   run the prompt once, causal, and store every layer's keys and values
    decode    for each new token: project it, append its key and value, attend from its query to all keys

The cache holds 2 (keys and values) x layers x batch x kv_heads x seq x d_head numbers (`cache_bytes`): that, not
the arithmetic, is what limits long contexts. Sharing keys and values between query heads (kv_heads < heads,
grouped-query attention) shrinks it by heads / kv_heads. `grouped_attention` attends with shared keys and values
without copying them, so that a decoding step reads each cached key once, whatever the number of query heads.

Padding: a batch of prompts of different lengths is padded on the left, so that every sequence's next token goes
to the same slot; the cache keeps a mask of the slots that hold real tokens.

RoPE (lesson 09): a `RotaryMultiHeadAttention` turns its keys by their positions before they are cached, so the
cache holds keys already turned, and each new query is turned by its own position. A token's position counts the
real tokens before it, as `mha.decoding.model` counts them, so that padding moves no real token.
"""

import torch

from ._validate import (
    check_device,
    check_fits,
    check_float,
    check_int,
    check_mask,
    check_rank,
    check_same_device,
    check_tensor,
    fmt_shape,
)
from .attention import attention
from .heads import merge_heads, split_heads
from .multihead import MultiHeadAttention
from .positions import RotaryMultiHeadAttention


def cache_bytes(layers: int, batch: int, kv_heads: int, d_head: int, seq: int, bytes_per_number: int) -> int:
    """Bytes of a KV cache: 2 (keys and values) x layers x batch x kv_heads x d_head x seq x bytes per number.

    Args:
        layers: attention layers, each with its own cache.
        batch: sequences generated at once.
        kv_heads: key/value heads per layer (heads for multi-head attention, 1 for multi-query).
        d_head: features per head.
        seq: positions held (prompt and generated tokens).
        bytes_per_number: 2 for bfloat16 or float16, 4 for float32 (`dtype.itemsize`).

    Returns:
        the number of bytes, an int.
    """
    names = ("layers", "batch", "kv_heads", "d_head", "seq", "bytes_per_number")
    for name, value in zip(names, (layers, batch, kv_heads, d_head, seq, bytes_per_number), strict=True):
        check_int(name, value)
    return 2 * layers * batch * kv_heads * d_head * seq * bytes_per_number


class KVCache:
    """One layer's keys and values for every position seen so far, in buffers allocated once for `max_seq` positions.

    Writing into a buffer costs the new positions only; `torch.cat` onto a growing tensor would copy the whole
    past at every step.

    Args:
        batch: sequences.
        kv_heads: key/value heads of the layer.
        d_head: features per head.
        max_seq: positions the buffers hold.
        dtype: dtype of the buffers (default float32).
        device: where the buffers live (default: the CPU).

    Shape:
        keys and values (batch, kv_heads, max_seq, d_head); real (batch, max_seq), True where a slot holds a real
        token (False: padding or not yet written).
    """

    def __init__(self, batch: int, kv_heads: int, d_head: int, max_seq: int, dtype=torch.float32, device=None):
        for name, value in (("batch", batch), ("kv_heads", kv_heads), ("d_head", d_head), ("max_seq", max_seq)):
            check_int(name, value)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(
                f"dtype must be a floating-point torch dtype (keys and values are real numbers), got {dtype!r}"
            )
        device = check_device("device", device)
        nbytes = cache_bytes(1, batch, kv_heads, d_head, max_seq, dtype.itemsize)
        check_fits(
            nbytes, device, f"a KV cache of (batch {batch}, kv_heads {kv_heads}, max_seq {max_seq}, d_head {d_head})"
        )
        self.keys = torch.zeros(batch, kv_heads, max_seq, d_head, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.real = torch.zeros(batch, max_seq, dtype=torch.bool, device=device)
        self.length = 0  # slots written so far

    @property
    def max_seq(self) -> int:
        return self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor, real: torch.Tensor | None = None):
        """Write the keys and values of `new` positions after the ones already held; return everything held.

        Args:
            k, v: keys and values of the new positions.
            real: True where a new position is a real token (default: all real).

        Shape:
            k, v (batch, kv_heads, new, d_head); real (batch, new). Returns keys and values
            (batch, kv_heads, length, d_head) and real (batch, length), views of the buffers.
        """
        check_tensor("k", k)
        check_tensor("v", v)
        check_rank("k", k, (4,), "(batch, kv_heads, new, d_head)")
        for name, x in (("k", k), ("v", v)):
            if x.dtype != self.keys.dtype:
                raise TypeError(
                    f"{name} has dtype {x.dtype} but this cache holds {self.keys.dtype}: make the cache with the "
                    f"layer's dtype (KVCache(..., dtype={x.dtype})), or convert {name}"
                )
        check_same_device(("the cache", self.keys), ("k", k), ("v", v))
        batch, kv_heads, new, d_head = k.shape
        expected = (self.keys.shape[0], self.keys.shape[1], new, self.keys.shape[3])
        if tuple(k.shape) != expected or tuple(v.shape) != expected:
            raise ValueError(
                f"k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)} must have shape (batch, kv_heads, new, d_head) "
                f"= {fmt_shape(expected)} to join this cache"
            )
        end = self.length + new
        if end > self.max_seq:
            raise ValueError(f"the cache holds {self.max_seq} positions: {self.length} held + {new} new is too many")
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        if real is not None:
            check_tensor("real", real)
            if real.dtype != torch.bool or tuple(real.shape) != (batch, new):
                raise ValueError(
                    f"real must be a bool tensor of shape (batch, new) = {fmt_shape((batch, new))}, True for a real "
                    f"token, got dtype {real.dtype} and shape {fmt_shape(real.shape)}"
                )
        self.real[:, self.length : end] = True if real is None else real
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end], self.real[:, :end]

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (the buffers stay allocated)."""
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(f"length must lie in 0..{self.length} (the positions held), got {length}")
        self.real[:, length:] = False
        self.length = length

    @property
    def nbytes(self) -> int:
        """Bytes of the key and value buffers."""
        return self.keys.nbytes + self.values.nbytes


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
    """Attention in which groups of query heads share one key/value head, without copying keys or values.

    The `group = heads // kv_heads` query heads of a group are stacked along q_pos, so that one batched product
    per key/value head serves them all: (batch, kv_heads, group * q_pos, d_head) @ (batch, kv_heads, d_head, k_pos).
    The result equals `attention(q, repeat_kv(k, group), repeat_kv(v, group), mask)`, without its copies.

    Args:
        q: queries of every query head.
        k, v: keys and values of every key/value head.
        mask: bool, True = may attend; broadcastable to (batch, heads, q_pos, k_pos).

    Shape:
        q (batch, heads, q_pos, d_head), k and v (batch, kv_heads, k_pos, d_head); returns output
        (batch, heads, q_pos, d_head) and weights (batch, heads, q_pos, k_pos).
    """
    for name, x, layout in (("q", q, "(batch, heads, q_pos, d_head)"), ("k", k, "(batch, kv_heads, k_pos, d_head)"),
                            ("v", v, "(batch, kv_heads, k_pos, d_head)")):  # fmt: skip
        check_tensor(name, x)
        check_rank(name, x, (4,), layout)
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(name, x)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    check_same_device(("q", q), ("k", k), ("v", v))
    if q.shape[-1] != k.shape[-1] or k.shape[-2:] != v.shape[-2:]:
        raise ValueError(
            f"q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)} must share d_head, and k "
            f"and v their k_pos (one value per key)"
        )
    batch, heads, q_pos, d_head = q.shape
    kv_heads, k_pos = k.shape[1], k.shape[2]
    if k.shape[0] != batch or k.shape[1] != v.shape[1]:
        raise ValueError(
            f"k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)} must have q's batch ({batch}) and one number of "
            f"key/value heads: expected (batch, kv_heads, k_pos, d_head)"
        )
    if heads % kv_heads:
        raise ValueError(f"q has {heads} heads and k {kv_heads}: the key/value heads must divide the query heads")
    if mask is not None:
        check_tensor("mask", mask)
        check_mask(mask, (batch, heads, q_pos, k_pos))
    group = heads // kv_heads
    q = q.reshape(batch, kv_heads, group * q_pos, d_head)  # query heads of a group one after the other
    if mask is not None:
        while mask.ndim < 4:
            mask = mask.unsqueeze(0)
        mask = mask.expand(batch, heads, q_pos, k_pos).reshape(batch, kv_heads, group * q_pos, k_pos)
    out, weights = attention(q, k, v, mask)  # (batch, kv_heads, group * q_pos, d_head), (..., k_pos)
    return out.reshape(batch, heads, q_pos, d_head), weights.reshape(batch, heads, q_pos, k_pos)


def causal_mask_after(past: int, new: int, device=None) -> torch.Tensor:
    """Causal mask for `new` queries that come after `past` cached positions: query i sees keys 0..past + i.

    Unlike `mha.causal_mask`, queries and keys are aligned at the end: the new queries are the last positions.

    Shape:
        returns (new, past + new), bool, True = may attend.
    """
    check_int("past", past, minimum=0)
    check_int("new", new, minimum=0)
    keys = torch.arange(past + new, device=device)  # (k_pos,)
    queries = past + torch.arange(new, device=device)  # (q_pos,) where each new query sits
    return keys[None, :] <= queries[:, None]  # (q_pos, k_pos)


def cached_self_attention(layer: MultiHeadAttention, x: torch.Tensor, cache: KVCache, real: torch.Tensor | None = None):
    """Causal self-attention of `new` positions that follow the ones in `cache`; their keys and values are appended.

    Prefill is a call with the whole prompt and an empty cache; a decoding step is a call with one position.

    Args:
        layer: the attention layer whose weights to use (its kv_heads must match the cache's); a
            `RotaryMultiHeadAttention` turns the new queries and keys by their positions before the keys are cached.
        x: the new positions' inputs.
        cache: this layer's cache; it grows by `new` positions.
        real: True where a new position is a real token, False for padding (default: all real).

    Shape:
        x (batch, new, d_model); real (batch, new); returns (batch, new, d_model), what `layer(x_all, causal=True,
        key_padding_mask=...)` returns at the new positions.
    """
    check_rank("x", x, (3,), "(batch, new, d_model)")
    q, k, v = layer.project(x, x, x)  # (batch, new, d_model), k and v (batch, new, kv_heads * d_head)
    q = split_heads(q, layer.heads)  # (batch, heads, new, d_head)
    k, v = split_heads(k, layer.kv_heads), split_heads(v, layer.kv_heads)  # (batch, kv_heads, new, d_head)
    past = cache.length
    if isinstance(layer, RotaryMultiHeadAttention):  # keys are cached turned: turn the new ones, and the queries
        real_new = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if real is None else real
        seen = cache.real[:, :past].sum(dim=1, keepdim=True)  # (batch, 1) real tokens already cached
        positions = (seen + real_new.cumsum(dim=1) - 1).clamp(min=0)  # (batch, new): real tokens before each one
        q, k = layer.turn(q, positions), layer.turn(k, positions)
    k, v, held = cache.append(k, v, real)  # (batch, kv_heads, past + new, d_head), held (batch, past + new)
    allowed = causal_mask_after(past, x.shape[1], x.device) & held[:, None, None, :]  # (batch, 1, new, past + new)
    out, _ = grouped_attention(q, k, v, allowed)  # (batch, heads, new, d_head)
    return layer.out_proj(merge_heads(out))  # (batch, new, d_model)
