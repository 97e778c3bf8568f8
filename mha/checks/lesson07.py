"""Checks for lesson 07, sharing keys and values. Use: `from mha.checks import lesson07 as check`."""

import math

import torch

from ..attention import attention
from ..heads import repeat_kv
from ..kv_cache import cache_bytes as reference_cache_bytes
from ..kv_cache import causal_mask_after
from ..masks import causal_mask
from . import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape, same

LESSON = "07"


def _randn(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _plain_attention(q, k, v, scale=None, mask=None, axis=-1):
    """softmax(q k^T / scale) v with an optional mask (True = may attend), for the wrong answers."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(axis) @ v


def _explain_heads(error):
    if isinstance(error, RuntimeError) and "must match the size" in str(error):
        return "q has `heads` heads and k, v only `kv_heads`: repeat each key/value head for its group first"
    return None


@exercise(LESSON, "grouped_attention")
def grouped_attention(fn) -> int:
    """fn(q (batch, heads, q_pos, d_head), k, v (batch, kv_heads, k_pos, d_head)) -> (batch, heads, q_pos, d_head)."""
    cases = [(8, 2, 0), (6, 3, 1), (4, 1, 2), (4, 4, 3)]  # (heads, kv_heads, seed)
    for heads, kv_heads, seed in cases:
        q, k, v = (
            _randn(seed, 2, heads, 3, 4),
            _randn(seed + 10, 2, kv_heads, 5, 4),
            _randn(seed + 20, 2, kv_heads, 5, 4),
        )
        group = heads // kv_heads
        what = f"grouped_attention with {heads} query heads and {kv_heads} key/value heads"
        got = as_tensor(call(fn, q.clone(), k.clone(), v.clone(), explain=_explain_heads), what)
        expect_shape(got, q.shape, what, "one output per query head: (batch, heads, q_pos, d_head)")
        tiled_k, tiled_v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
        full_k, full_v = repeat_kv(k, group), repeat_kv(v, group)
        diagnose(
            got,
            attention(q, full_k, full_v)[0],
            [
                (
                    None if group == 1 or kv_heads == 1 else _plain_attention(q, tiled_k, tiled_v),
                    "query head h must read key/value head h // (heads // kv_heads), its own group's; `repeat` "
                    "gave it head h % kv_heads: use repeat_interleave(group, dim=1)",
                ),
                (_plain_attention(q, full_k, full_v, scale=1.0), "the scores were not scaled: divide by sqrt(d_head)"),
                (
                    _plain_attention(q, full_k, full_v, axis=-2),
                    "softmax over the wrong axis: each query's weights are over the keys, dim=-1",
                ),
                (_plain_attention(q, full_k, full_k), "you used the keys as values: the output averages v"),
            ],
            what,
        )
    return len(cases)


def _explain_cat(error):
    if isinstance(error, RuntimeError) and "Sizes of tensors must match" in str(error):
        return "the cache and the new positions differ only in k_pos, dim -2: join them along dim=-2"
    return None


@exercise(LESSON, "append_to_cache")
def append_to_cache(fn) -> int:
    """fn(cache_k, cache_v, k_new, v_new) -> (k, v): the cache with the new positions after the old ones."""
    # (cache shape, new positions, seed); in the first, past = new, so that joining along a wrong dimension runs
    cases = [((2, 3, 2, 5), 2, 0), ((1, 2, 6, 3), 1, 1), ((2, 1, 1, 4), 3, 2)]
    for shape, new, seed in cases:
        batch, kv_heads, past, d_head = shape
        cache_k, cache_v = _randn(seed, *shape), _randn(seed + 10, *shape)
        k_new, v_new = _randn(seed + 20, batch, kv_heads, new, d_head), _randn(seed + 30, batch, kv_heads, new, d_head)
        what = f"append_to_cache of {new} new position(s) to a cache {shape}"
        result = call(
            fn,
            cache_k.clone(),
            cache_v.clone(),
            k_new.clone(),
            v_new.clone(),
            name="append_to_cache",
            explain=_explain_cat,
        )
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed(f"{what}: return the keys and the values, (k, v); got {type(result).__name__}")
        got_k, got_v = as_tensor(result[0], f"{what}: the keys"), as_tensor(result[1], f"{what}: the values")
        if same(got_k, torch.cat([cache_v, v_new], dim=-2)) or same(got_v, torch.cat([cache_k, k_new], dim=-2)):
            raise CheckFailed(f"{what}: keys and values are swapped")
        for name, got, old, added in (("keys", got_k, cache_k, k_new), ("values", got_v, cache_v, v_new)):
            if same(got, added):
                raise CheckFailed(f"{what}: the {name} are the new positions only; keep the past: cat old and new")
            if past == new and same(got, torch.cat([old, added], dim=1)):
                raise CheckFailed(
                    f"{what}: the {name} were joined along dim 1, the kv_heads; positions are dim -2 (k_pos)"
                )
            if past == new and same(got, torch.cat([old, added], dim=-1)):
                raise CheckFailed(
                    f"{what}: the {name} were joined along the last dim, d_head; positions are dim -2 (k_pos)"
                )
            expect_shape(
                got,
                (batch, kv_heads, past + new, d_head),
                f"{what}: the {name}",
                "(batch, kv_heads, past + new, d_head)",
            )
            diagnose(
                got,
                torch.cat([old, added], dim=-2),
                [(torch.cat([added, old], dim=-2), "the new positions come after the past ones: cat([old, new])")],
                f"{what}: the {name}",
            )
    return len(cases)


# (name, layers, heads, kv_heads, d_head, batch, seq, dtype)
_SIZES = [
    ("a small float32 model", 6, 12, 4, 64, 3, 1000, torch.float32),  # every classic mistake gives its own number
    ("a Llama 3.1 8B shape", 32, 32, 8, 128, 1, 8192, torch.bfloat16),
    ("a Falcon 7B shape (MQA)", 32, 71, 1, 64, 2, 2048, torch.float16),
    ("full multi-head attention", 6, 12, 12, 64, 1, 512, torch.float32),
]


@exercise(LESSON, "cache_bytes")
def cache_bytes(fn) -> int:
    """fn(layers, heads, kv_heads, d_head, batch, seq, dtype) -> bytes of the KV cache, an int."""
    for name, layers, heads, kv_heads, d_head, batch, seq, dtype in _SIZES:
        what = (
            f"cache_bytes for {name} (layers {layers}, heads {heads}, kv_heads {kv_heads}, d_head {d_head}, "
            f"batch {batch}, seq {seq}, {dtype})"
        )
        got = call(fn, layers, heads, kv_heads, d_head, batch, seq, dtype, name="cache_bytes")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, int | float) or isinstance(got, bool):
            raise CheckFailed(f"{what}: return a number of bytes, got {type(got).__name__}")
        size = dtype.itemsize
        expected = reference_cache_bytes(layers, batch, kv_heads, d_head, seq, size)
        diagnose(
            torch.tensor(float(got)),
            torch.tensor(float(expected)),
            [
                (
                    None if heads == kv_heads else float(expected // kv_heads * heads),
                    "you used heads; the cache holds one key and one value per key/value head: kv_heads",
                ),
                (float(expected // 2), "the cache holds keys AND values: multiply by 2"),
                (float(expected * 8), "that counts bits: dtype.itemsize is the bytes per number (2 for bfloat16)"),
                (float(expected // size), "that counts numbers, not bytes: multiply by dtype.itemsize"),
                (float(expected // layers), "every layer has its own cache: multiply by layers"),
                (float(expected // batch) if batch > 1 else None, "each sequence of the batch has its own cache"),
            ],
            what,
        )
        if not isinstance(got, int) and float(got) != int(got):
            raise CheckFailed(f"{what}: bytes come whole: return an int")
    return len(_SIZES)


@exercise(LESSON, "decode_step")
def decode_step(fn) -> int:
    """fn(q_new, k_new, v_new, cache_k, cache_v) -> (output of the new positions, k, v with the new ones appended)."""
    cases = [((1, 2, 6, 3), 3, 1), ((2, 3, 4, 5), 1, 0), ((2, 2, 0, 4), 4, 2)]  # cache shape, new positions, seed
    for shape, new, seed in cases:
        batch, heads, past, d_head = shape
        cache_k, cache_v = _randn(seed, *shape), _randn(seed + 10, *shape)
        q_new, k_new, v_new = (_randn(seed + s, batch, heads, new, d_head) for s in (20, 30, 40))
        what = f"decode_step with {past} cached and {new} new position(s), shape (batch, heads) = ({batch}, {heads})"
        result = call(
            fn, q_new.clone(), k_new.clone(), v_new.clone(), cache_k.clone(), cache_v.clone(), name="decode_step"
        )
        if not isinstance(result, tuple) or len(result) != 3:
            raise CheckFailed(f"{what}: return (output, k, v); got {type(result).__name__}")
        out = as_tensor(result[0], f"{what}: the output")
        k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
        for name, got, expected in (("k", result[1], k), ("v", result[2], v)):
            got = as_tensor(got, f"{what}: the returned {name}")
            expect_shape(got, expected.shape, f"{what}: the returned {name}", "(batch, heads, past + new, d_head)")
            diagnose(got, expected, [], f"{what}: the returned {name} (the cache with the new positions appended)")
        expect_shape(
            out, q_new.shape, f"{what}: the output", "one output per new position: (batch, heads, new, d_head)"
        )
        allowed = causal_mask_after(past, new)
        mistakes = [
            (
                None if past == 0 else _plain_attention(q_new, cache_k, cache_v),
                "the new queries attended to the cached positions only: append the new keys and values first",
            ),
            (
                None if new == 1 else _plain_attention(q_new, k, v),
                "a new query saw the new positions after it: query i of the new ones sits at position past + i and "
                "may attend to keys 0..past + i",
            ),
            (
                _plain_attention(q_new, k, v, mask=causal_mask(new, past + new)) if past else None,
                "the causal mask is aligned at the start (causal_mask(new, past + new) lets new query i see keys "
                "0..i); the new queries are the LAST positions: key j is visible to new query i when j <= past + i",
            ),
            (
                _plain_attention(q_new, k, v, scale=1.0, mask=allowed),
                "the scores were not scaled: divide by sqrt(d_head)",
            ),
            (
                None if new == 1 else _plain_attention(q_new, k_new, v_new, mask=causal_mask(new)),
                "the new queries attended to the new positions only: the cache holds the past they need",
            ),
        ]
        diagnose(out, _plain_attention(q_new, k, v, mask=allowed), mistakes, f"{what}: the output")
    return len(cases)


@exercise(LESSON, "pool_kv_heads")
def pool_kv_heads(fn) -> int:
    """fn(w, heads, kv_heads): w (heads * d_head, d_model), rows of W_K or W_V -> (kv_heads * d_head, d_model)."""
    cases = [(8, 2, 3, 5, 0), (6, 3, 2, 4, 1), (4, 1, 3, 6, 2), (6, 2, 1, 3, 3)]  # heads, kv_heads, d_head, d_model
    for heads, kv_heads, d_head, d_model, seed in cases:
        w = _randn(seed, heads * d_head, d_model)
        group = heads // kv_heads
        what = f"pool_kv_heads on w {tuple(w.shape)} with heads={heads}, kv_heads={kv_heads} (d_head {d_head})"
        got = as_tensor(call(fn, w.clone(), heads, kv_heads), what)
        per_head = w.reshape(heads, d_head, d_model)
        if d_head > 1 and tuple(got.shape) == (kv_heads, d_model):
            raise CheckFailed(
                f"{what}: shape {tuple(got.shape)}: you averaged away the d_head rows of each head; keep them: "
                f"view w as (kv_heads, group, d_head, d_model) and average over the group"
            )
        expect_shape(got, (kv_heads * d_head, d_model), what, "(kv_heads * d_head, d_model)")
        diagnose(
            got,
            per_head.reshape(kv_heads, group, d_head, d_model).mean(dim=1).reshape(kv_heads * d_head, d_model),
            [
                (
                    None
                    if kv_heads == 1 or group == 1
                    else per_head.reshape(group, kv_heads, d_head, d_model).mean(dim=0).reshape(-1, d_model),
                    "your groups take every kv_heads-th head; a group is neighbouring heads: heads 0..group-1, then "
                    "group..2*group-1, ...",
                ),
                (
                    per_head.reshape(kv_heads, group, d_head, d_model).sum(dim=1).reshape(-1, d_model),
                    "that is the sum of each group; take the mean",
                ),
                (
                    per_head.reshape(kv_heads, group, d_head, d_model)[:, 0].reshape(-1, d_model),
                    "you kept the first head of each group; average all the heads of the group",
                ),
                (
                    None if d_head == 1 else w.reshape(kv_heads * d_head, group, d_model).mean(dim=1),
                    "you averaged neighbouring rows, not heads: the rows of one head are d_head consecutive rows; "
                    "view w as (kv_heads, group, d_head, d_model)",
                ),
            ],
            what,
        )
    return len(cases)
