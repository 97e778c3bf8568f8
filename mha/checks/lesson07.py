"""Checks for lesson 07, sharing keys and values. Use: `from mha.checks import lesson07 as check`.

Cases vary the numbers of query and key/value heads (multi-head, grouped and multi-query), the sizes (q_pos != k_pos,
an empty cache, one or several new positions, odd d_head), and the dtype (float32 and float64); two are drawn afresh
on every run.
"""

import math

import torch

from ..kv_cache import cache_bytes as reference_cache_bytes
from . import Build, Case, Exercise, builder, items, register, verify, verify_number

LESSON = "07"
DTYPES = (torch.float32, torch.float64)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _shape(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {_name(t.dtype)}"


def _randn(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _int(g, low: int, high: int) -> int:
    """A whole number in low..high, both included."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _attend(q, k, v, scale=None, mask=None, axis=-1):
    """softmax(q k^T / scale) v with an optional mask (True = may attend), in the inputs' dtype."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(axis) @ v


def _heads(g) -> tuple[int, int]:
    heads = _pick(g, [2, 4, 6, 8, 12])
    return heads, _pick(g, [k for k in range(1, heads + 1) if heads % k == 0])


# --- exercise 1: grouped_attention -------------------------------------------------------------------------------


def _grouped_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (batch, heads, kv_heads, q_pos, k_pos, d_head, dtype)
    fixed = [
        (2, 8, 2, 3, 5, 4, torch.float32),
        (1, 6, 3, 4, 2, 5, torch.float64),
        (2, 4, 1, 1, 7, 3, torch.float32),  # multi-query, one new query: a decoding step
        (1, 4, 4, 3, 3, 2, torch.float64),  # as many key/value heads as query heads: plain multi-head attention
    ]
    drawn = []
    for _ in range(2):
        heads, kv_heads = _heads(g)
        drawn.append((_int(g, 1, 3), heads, kv_heads, _int(g, 1, 5), _int(g, 2, 8), _int(g, 2, 7), _pick(g, DTYPES)))
    cases = []
    for i, (batch, heads, kv_heads, q_pos, k_pos, d_head, dtype) in enumerate(fixed + drawn):
        q = _randn(g, batch, heads, q_pos, d_head, dtype=dtype)
        k, v = (_randn(g, batch, kv_heads, k_pos, d_head, dtype=dtype) for _ in range(2))
        what = f"grouped_attention for q {_shape(q)} ({heads} heads) and k, v {_shape(k)} ({kv_heads} key/value heads)"
        cases.append(Case((q, k, v), what=what, drawn=i >= len(fixed)))
    return cases


def _grouped_judge(case: Case, got, changed) -> None:
    q, k, v = case.inputs()
    q64, k64, v64 = q.double(), k.double(), v.double()
    group = q.shape[1] // k.shape[1]
    full_k, full_v = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    tiled_k, tiled_v = k64.repeat(1, group, 1, 1), v64.repeat(1, group, 1, 1)
    verify(
        got,
        _attend(q64, full_k, full_v),
        [
            (
                _attend(q64, tiled_k, tiled_v),
                "query head h must read key/value head h // (heads // kv_heads), its own group's; `repeat` gave it "
                "head h % kv_heads: use repeat_interleave(group, dim=1)",
            ),
            (_attend(q64, full_k, full_v, scale=1.0), "the scores were not scaled: divide by sqrt(d_head)"),
            (
                _attend(q64, full_k, full_v, axis=-2),
                "softmax over the wrong axis: each query's weights are over the keys, dim=-1",
            ),
            (_attend(q64, full_k, full_k), "you used the keys as values: the output averages v"),
        ],
        what=case.what,
        dtype=q.dtype,
        shape_hint="(batch, heads, q_pos, d_head): one output per query head",
    )


def _explain_heads(error: dict, case: Case):
    if error["type"] == "RuntimeError" and "must match the size" in error["message"]:
        return "q has `heads` heads and k, v only `kv_heads`: repeat each key/value head for its group first"
    return None


grouped_attention = register(
    Exercise(
        LESSON,
        "grouped_attention",
        function="grouped_attention",
        signature="grouped_attention(q, k, v)",
        cases=_grouped_cases,
        judge=_grouped_judge,
        explain=_explain_heads,
    )
)


# --- exercise 2: append_to_cache ---------------------------------------------------------------------------------


def _cache_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # ((batch, kv_heads, past, d_head), new, dtype); in the first past = new, so that joining along a wrong dimension
    # runs instead of crashing; the last fixed one starts from an empty cache
    fixed = [((2, 3, 2, 5), 2, torch.float32), ((1, 2, 6, 3), 1, torch.float64), ((2, 1, 1, 4), 3, torch.float32)]
    fixed.append(((1, 2, 0, 4), 3, torch.float64))
    drawn = [((_int(g, 1, 3), _int(g, 1, 4), _int(g, 1, 7), _int(g, 2, 6)), _int(g, 1, 3), _pick(g, DTYPES))]
    drawn.append(((_int(g, 1, 3), _int(g, 1, 4), _int(g, 1, 7), _int(g, 2, 6)), 1, _pick(g, DTYPES)))
    cases = []
    for i, (shape, new, dtype) in enumerate(fixed + drawn):
        batch, kv_heads, past, d_head = shape
        cache_k, cache_v = (_randn(g, *shape, dtype=dtype) for _ in range(2))
        k_new, v_new = (_randn(g, batch, kv_heads, new, d_head, dtype=dtype) for _ in range(2))
        what = f"append_to_cache of {new} new position(s) to a cache {_shape(cache_k)}"
        cases.append(Case((cache_k, cache_v, k_new, v_new), what=what, drawn=i >= len(fixed)))
    return cases


def _cache_judge(case: Case, got, changed) -> None:
    cache_k, cache_v, k_new, v_new = case.inputs()
    got_k, got_v = items(got, 2, what=case.what, names="(k, v)")
    for site, old, new, other in (
        ("keys", cache_k, k_new, (cache_v, v_new)),
        ("values", cache_v, v_new, (cache_k, k_new)),
    ):
        same_length = old.shape[-2] == new.shape[-2]
        verify(
            got_k if site == "keys" else got_v,
            torch.cat([old, new], dim=-2),
            [
                (new, "the new positions only; keep the past: cat([old, new], dim=-2)"),
                (torch.cat([new, old], dim=-2), "the new positions come after the past ones: cat([old, new])"),
                (torch.cat(other, dim=-2), "keys and values are swapped: return (k, v)"),
                (
                    torch.cat([old, new], dim=1) if same_length else None,
                    "joined along dim 1, the kv_heads; positions are dim -2 (k_pos)",
                ),
                (
                    torch.cat([old, new], dim=-1) if same_length else None,
                    "joined along the last dim, d_head; positions are dim -2 (k_pos)",
                ),
            ],
            what=f"{case.what}: the {site}",
            site=site,
            dtype=old.dtype,
            shape_hint="(batch, kv_heads, past + new, d_head)",
        )


def _explain_cat(error: dict, case: Case):
    if error["type"] == "RuntimeError" and "Sizes of tensors must match" in error["message"]:
        return "the cache and the new positions differ only in k_pos, dim -2: join them along dim=-2"
    return None


append_to_cache = register(
    Exercise(
        LESSON,
        "append_to_cache",
        function="append_to_cache",
        signature="append_to_cache(cache_k, cache_v, k_new, v_new)",
        cases=_cache_cases,
        judge=_cache_judge,
        explain=_explain_cat,
    )
)


# --- exercise 3: cache_bytes -------------------------------------------------------------------------------------


@builder("dtype")
def _dtype(name: str) -> torch.dtype:
    """A torch dtype from its name ("bfloat16"): a dtype is not plain data, its name is."""
    return getattr(torch, name)


def _bytes_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (description, layers, heads, kv_heads, d_head, batch, seq, dtype name)
    fixed = [
        ("a small float32 model", 6, 12, 4, 64, 3, 1000, "float32"),  # every classic mistake gives its own number
        ("a Llama 3.1 8B shape", 32, 32, 8, 128, 1, 8192, "bfloat16"),
        ("a Falcon 7B shape (MQA)", 32, 71, 1, 64, 2, 2048, "float16"),
        ("full multi-head attention", 6, 12, 12, 64, 1, 512, "float32"),
    ]
    drawn = []
    for _ in range(2):
        heads, kv_heads = _heads(g)
        size = (_int(g, 1, 40), heads, kv_heads, _pick(g, [32, 64, 80, 128]), _int(g, 1, 8), _int(g, 1, 9000))
        drawn.append(("a random shape", *size, _pick(g, ["float32", "bfloat16", "float16", "float64"])))
    cases = []
    for i, (description, layers, heads, kv_heads, d_head, batch, seq, dtype) in enumerate(fixed + drawn):
        what = (
            f"cache_bytes for {description} (layers {layers}, heads {heads}, kv_heads {kv_heads}, d_head {d_head}, "
            f"batch {batch}, seq {seq}, {dtype})"
        )
        args = (layers, heads, kv_heads, d_head, batch, seq, Build("dtype", {"name": dtype}))
        cases.append(Case(args, what=what, drawn=i >= len(fixed)))
    return cases


def _bytes_judge(case: Case, got, changed) -> None:
    layers, heads, kv_heads, d_head, batch, seq, dtype = case.inputs()
    size = dtype.itemsize
    expected = reference_cache_bytes(layers, batch, kv_heads, d_head, seq, size)
    verify_number(
        got,
        expected,
        [
            (expected // kv_heads * heads, "you used heads; the cache holds one key and one value per key/value head"),
            (expected // 2, "the cache holds keys AND values: multiply by 2"),
            (expected * 8, "that counts bits: dtype.itemsize is the bytes per number (2 for bfloat16)"),
            (expected // size, "that counts numbers, not bytes: multiply by dtype.itemsize"),
            (expected // layers, "every layer has its own cache: multiply by layers"),
            (expected // batch, "each sequence of the batch has its own cache: multiply by batch"),
        ],
        what=case.what,
        integer=True,
        form_hint="one whole number of bytes",
    )


cache_bytes = register(
    Exercise(
        LESSON,
        "cache_bytes",
        function="cache_bytes",
        signature="cache_bytes(layers, heads, kv_heads, d_head, batch, seq, dtype)",
        cases=_bytes_cases,
        judge=_bytes_judge,
    )
)


# --- exercise 4: decode_step -------------------------------------------------------------------------------------


def _step_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # ((batch, heads, past, d_head), new, dtype): several new positions after a cache, one (a decoding step), and a
    # prompt with an empty cache (prefill)
    fixed = [((1, 2, 6, 3), 3, torch.float64), ((2, 3, 4, 5), 1, torch.float32), ((2, 2, 0, 4), 4, torch.float32)]
    drawn = [((_int(g, 1, 2), _int(g, 1, 4), _int(g, 1, 7), _int(g, 2, 6)), _int(g, 2, 4), _pick(g, DTYPES))]
    drawn.append(((_int(g, 1, 2), _int(g, 1, 4), _int(g, 0, 7), _int(g, 2, 6)), 1, _pick(g, DTYPES)))
    cases = []
    for i, (shape, new, dtype) in enumerate(fixed + drawn):
        batch, heads, past, d_head = shape
        cache_k, cache_v = (_randn(g, *shape, dtype=dtype) for _ in range(2))
        q_new, k_new, v_new = (_randn(g, batch, heads, new, d_head, dtype=dtype) for _ in range(3))
        what = f"decode_step of {new} new position(s) after a cache of {past}, q_new {_shape(q_new)}"
        cases.append(Case((q_new, k_new, v_new, cache_k, cache_v), what=what, drawn=i >= len(fixed)))
    return cases


def _step_judge(case: Case, got, changed) -> None:
    q_new, k_new, v_new, cache_k, cache_v = (x.double() for x in case.inputs())
    dtype = case.args[0].dtype
    out, got_k, got_v = items(got, 3, what=case.what, names="(output, k, v)")
    k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
    for site, got_x, expected, new in (("k", got_k, k, k_new), ("v", got_v, v, v_new)):
        verify(
            got_x,
            expected,
            [(new, "the cache was not grown: return the past and the new positions, cat([cache, new], dim=-2)")],
            what=f"{case.what}: the returned {site}",
            site=site,
            dtype=dtype,
            shape_hint="(batch, heads, past + new, d_head)",
        )
    past, new = cache_k.shape[-2], q_new.shape[-2]
    keys = torch.arange(past + new)  # (k_pos,)
    allowed = keys[None, :] <= past + torch.arange(new)[:, None]  # (new, past + new): aligned at the end
    aligned_at_start = keys[None, :] <= torch.arange(new)[:, None]  # what causal_mask(new, past + new) gives
    verify(
        out,
        _attend(q_new, k, v, mask=allowed),
        [
            (
                _attend(q_new, cache_k, cache_v),
                "the new queries attended to the cached positions only: append the new keys and values first",
            ),
            (
                _attend(q_new, k, v, mask=aligned_at_start),
                "the causal mask is aligned at the start (causal_mask(new, past + new) lets new query i see keys "
                "0..i); the new queries are the LAST positions: key j is visible to new query i when j <= past + i",
            ),
            (
                _attend(q_new, k, v),
                "a new query saw the new positions after it: query i of the new ones sits at position past + i and "
                "may attend to keys 0..past + i",
            ),
            (_attend(q_new, k, v, scale=1.0, mask=allowed), "the scores were not scaled: divide by sqrt(d_head)"),
            (
                _attend(q_new, k_new, v_new, mask=torch.ones(new, new, dtype=torch.bool).tril()),
                "the new queries attended to the new positions only: the cache holds the past they need",
            ),
        ],
        what=f"{case.what}: the output",
        site="output",
        dtype=dtype,
        shape_hint="(batch, heads, new, d_head): one output per new position",
    )


decode_step = register(
    Exercise(
        LESSON,
        "decode_step",
        function="decode_step",
        signature="decode_step(q_new, k_new, v_new, cache_k, cache_v)",
        cases=_step_cases,
        judge=_step_judge,
        uses=("append_to_cache",),
    )
)


# --- exercise 5: pool_kv_heads -----------------------------------------------------------------------------------


def _pool_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (heads, kv_heads, d_head, d_model, dtype)
    fixed = [
        (8, 2, 3, 5, torch.float32),
        (6, 3, 2, 4, torch.float64),
        (4, 1, 3, 6, torch.float32),  # one key/value head: multi-query
        (6, 2, 1, 3, torch.float32),  # d_head 1
    ]
    drawn = []
    for _ in range(2):
        heads, kv_heads = _heads(g)
        drawn.append((heads, kv_heads, _int(g, 1, 5), _int(g, 2, 8), _pick(g, DTYPES)))
    cases = []
    for i, (heads, kv_heads, d_head, d_model, dtype) in enumerate(fixed + drawn):
        w = _randn(g, heads * d_head, d_model, dtype=dtype)
        what = f"pool_kv_heads on w {_shape(w)} with heads={heads}, kv_heads={kv_heads} (d_head {d_head})"
        cases.append(Case((w, heads, kv_heads), what=what, drawn=i >= len(fixed)))
    return cases


def _pool_judge(case: Case, got, changed) -> None:
    w, heads, kv_heads = case.inputs()
    w64 = w.double()
    group, d_head, d_model = heads // kv_heads, w.shape[0] // heads, w.shape[1]
    grouped = w64.reshape(kv_heads, group, d_head, d_model)  # the heads of a group on dim 1
    verify(
        got,
        grouped.mean(dim=1).reshape(kv_heads * d_head, d_model),
        [
            (
                w64.reshape(group, kv_heads, d_head, d_model).mean(dim=0).reshape(-1, d_model),
                "your groups take every kv_heads-th head; a group is neighbouring heads: heads 0..group-1, then "
                "group..2*group-1, ...",
            ),
            (grouped.sum(dim=1).reshape(-1, d_model), "that is the sum of each group; take the mean"),
            (grouped[:, 0].reshape(-1, d_model), "you kept the first head of each group; average all its heads"),
            (
                w64.reshape(kv_heads * d_head, group, d_model).mean(dim=1),
                "you averaged neighbouring rows, not heads: the rows of one head are d_head consecutive rows; view "
                "w as (kv_heads, group, d_head, d_model)",
            ),
            (
                w64.reshape(kv_heads, -1, d_model).mean(dim=1),
                "you averaged away the d_head rows of each head; keep them: view w as (kv_heads, group, d_head, "
                "d_model) and average over the group",
            ),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(kv_heads * d_head, d_model)",
    )


pool_kv_heads = register(
    Exercise(
        LESSON,
        "pool_kv_heads",
        function="pool_kv_heads",
        signature="pool_kv_heads(w, heads, kv_heads)",
        cases=_pool_cases,
        judge=_pool_judge,
    )
)
