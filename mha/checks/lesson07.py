"""Checks for lesson 07, sharing keys and values. Use: `from mha.checks import lesson07 as check`.

Cases vary the numbers of query and key/value heads (multi-head, grouped and multi-query), the sizes (q_pos != k_pos,
an empty cache, one or several new positions, odd d_head, weights and biases), and the dtype (float32 and float64);
the generation loop runs on small decoders with random weights (`mha.decoding.model.StepDecoder`), on batches of
prompts of different lengths. Some cases are drawn afresh on every run.
"""

import math
import re

import torch

from ..decoding.model import DecoderConfig, StepDecoder, build_decoder, left_pad
from ..kv_cache import cache_bytes as reference_cache_bytes
from . import Build, Case, CheckFailed, Exercise, builder, items, register, verify, verify_number

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
    torch_says = error["type"] == "RuntimeError" and "must match the size" in error["message"]  # q @ k, torch's SDPA
    course_says = error["type"] == "ValueError" and "must share their leading dimensions" in error["message"]  # mha
    if torch_says or course_says:
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


# What the exercise's last cell does with the answer: `f"{size:,d}"` and `fmt_bytes(size)`. A Python int passes, and so
# does a numpy integer (made a Python int before it is judged); a float fails `:,d`, a tensor fails `fmt_bytes`.
_NOT_AN_INT = {
    "float": "a float ({got!r}); return an int: bytes are a whole number, and the last cell prints it with "
    "`:,d`, which refuses floats. Multiply whole numbers (no `/`), or wrap the result in int(...)",
    "tensor": "a tensor ({got}); return an int: the last cell formats the size with `fmt_bytes`, which a tensor "
    "breaks. Multiply plain numbers (dtype.itemsize is one), or take `.item()`",
}


def _bytes_judge(case: Case, got, changed) -> None:
    layers, heads, kv_heads, d_head, batch, seq, dtype = case.inputs()
    size = dtype.itemsize
    expected = reference_cache_bytes(layers, batch, kv_heads, d_head, seq, size)
    kind = "float" if isinstance(got, float) else "tensor" if isinstance(got, torch.Tensor) else None
    if kind is not None:
        raise CheckFailed("returned " + _NOT_AN_INT[kind].format(got=got), case.what, site="form")
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


# --- exercise 5: generate ----------------------------------------------------------------------------------------


@builder("step_decoder")
def _step_decoder(seed: int, vocab: int, seq: int, d_model: int, heads: int, layers: int) -> StepDecoder:
    """A small decoder with random weights (float64), called as libraries call theirs (`StepDecoder`)."""
    config = DecoderConfig(vocab=vocab, seq=seq, d_model=d_model, heads=heads, layers=layers)
    return StepDecoder(build_decoder(config, seed))


def _generate_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (model seed, prompt lengths, new tokens): padded batches, one without padding, and one that only prefills
    fixed = [(0, [4, 2, 6], 5), (1, [1, 5], 4), (2, [3], 3), (3, [3, 3, 7, 2], 6), (4, [5, 2], 1)]
    drawn = []
    for _ in range(2):
        lengths = [_int(g, 1, 8) for _ in range(_int(g, 2, 4))]
        drawn.append((_int(g, 10, 10**6), lengths, _int(g, 2, 8)))
    cases = []
    for i, (model_seed, lengths, new_tokens) in enumerate(fixed + drawn):
        model = Build(
            "step_decoder", {"seed": model_seed, "vocab": 32, "seq": 20, "d_model": 32, "heads": 2, "layers": 2}
        )
        prompts = [[_int(g, 1, 31) for _ in range(n)] for n in lengths]  # token 0 is the padding of left_pad
        what = f"generate of {new_tokens} token(s) after prompts of lengths {lengths}"
        cases.append(Case((model, prompts, new_tokens), what=what, drawn=i >= len(fixed)))
    return cases


def _greedy(model: StepDecoder, prompts, new_tokens: int, mistake: str = "") -> torch.Tensor:
    """Greedy generation through `model`, right or with one classic mistake (the judge's own loop).

    Shape:
        returns (batch, new_tokens), int64.
    """
    tokens, mask = left_pad(prompts)  # (batch, prompt)
    batch, prompt = tokens.shape
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, prompt): real tokens before each one
    if mistake == "padded start":
        positions = torch.arange(prompt).expand(batch, prompt)
    if mistake == "padding attended":
        mask = torch.ones_like(mask)
    cache = model.new_cache(batch)
    logits = model(tokens, positions, mask, cache)  # (batch, prompt, vocab)
    last = logits[:, -1]  # every prompt ends in the last column
    if mistake == "right padding":
        last = logits[torch.arange(batch), mask.sum(dim=1) - 1]  # where a prompt padded on the right would end
    nxt = tokens[:, -1:] if mistake == "last token twice" else last.argmax(dim=-1, keepdim=True)  # (batch, 1)
    out = [] if mistake == "last token twice" else [nxt]
    while len(out) < new_tokens:
        position = mask.sum(dim=1, keepdim=True)  # (batch, 1): the real tokens so far
        if mistake in ("padded start", "decode padded"):
            position = torch.full((batch, 1), mask.shape[1])
        mask = torch.cat([mask, torch.full((batch, 1), mistake != "new as padding")], dim=1)  # (batch, past + 1)
        nxt = model(nxt, position, mask, cache)[:, -1].argmax(dim=-1, keepdim=True)  # (batch, 1)
        out.append(nxt)
    return torch.cat(out, dim=1)


_GENERATE_MISTAKES = {
    "padded start": "the positions were counted from the padded start: a token's position counts the real tokens "
    "before it, so every sequence starts at 0 after its padding: (mask.cumsum(dim=1) - 1).clamp(min=0), and a new "
    "token's position is mask.sum(dim=1), the real tokens so far",
    "decode padded": "the prompt's positions are right, but each new token's position counted the padding: the next "
    "position of a sequence is its number of real tokens so far, mask.sum(dim=1), not mask.shape[1]",
    "new as padding": "the mask was extended with False: the new tokens were marked as padding, so no later step "
    "(nor the token itself) may attend to them; extend it with True",
    "padding attended": "the padding was attended to: the mask must be False on the padding that left_pad adds "
    "(use the mask it returns), else every real token also averages the pad tokens' values",
    "last token twice": "the last prompt token was run twice: the prefill's logits at the last position already "
    "predict the first new token; take it from them, then feed each new token once",
    "right padding": "the first new token was read where a prompt padded on the right would end; left_pad pads on "
    "the left, so every prompt ends in the last column: logits[:, -1]",
}


def _generate_judge(case: Case, got, changed) -> None:
    model, prompts, new_tokens = case.inputs()
    expected = _greedy(model, prompts, new_tokens)
    mistakes = [(_greedy(model, prompts, new_tokens, mistake), hint) for mistake, hint in _GENERATE_MISTAKES.items()]
    verify(
        got,
        expected,
        mistakes,
        what=case.what,
        shape_hint="(batch, new_tokens): the new tokens only, not the prompt",
        form_hint=f"a tensor {tuple(expected.shape)} of token ids",
    )
    state = changed.get("model", {}).get("after") or {}
    batch, prompt = len(prompts), max(len(p) for p in prompts)
    once = batch * (prompt + new_tokens - 1)  # the prompt once, then one position per new token but the last
    if state.get("positions_run", 0) > once + batch:  # (running the last new token too does no harm)
        raise CheckFailed(
            f"the tokens are right, but `generate` ran {state['positions_run']} positions in {state['calls']} calls; "
            f"a cached loop runs {once} ({batch} sequences x the padded prompt of {prompt}, once, then one position "
            f"per new token): the prompt, or the text so far, was run again at every step. After the prefill, pass "
            f"only the newest token, (batch, 1), with the same cache",
            case.what,
            site="calls",
        )


_MASK_WRONG = re.compile(
    r"mask covers (\d+) positions of \d+ sequences, but the cache holds (\d+) and this call adds (\d+)"
)
_NO_ROOM = re.compile(r"the cache has room for \d+ positions; it holds (\d+) and this call adds (\d+)")


def _explain_generate(error: dict, case: Case):
    message = error["message"]
    rerun = (
        "the prompt was run again into a cache that already holds it: after the prefill, pass only the newest token "
        "of each sequence, (batch, 1)"
    )
    wrong_mask, no_room = _MASK_WRONG.search(message), _NO_ROOM.search(message)
    if wrong_mask:
        covered, past, new = (int(x) for x in wrong_mask.groups())
        if past > 0 and new > 1:
            return rerun
        if covered == past:
            return (
                "the mask was not extended: each step adds a position to the cache, so add a True column for the "
                "new token before the call, torch.cat([mask, torch.ones(batch, 1, dtype=torch.bool)], dim=1)"
            )
        if covered == new:
            return "the mask covers the new positions only; it must cover the cached ones too: (batch, past + new)"
    if no_room:
        past, new = (int(x) for x in no_room.groups())
        return rerun if past > 0 and new > 1 else "the cache is too small: leave max_seq out of model.new_cache(batch)"
    if "positions must lie in" in message and re.search(r"got -\d", message):
        return (
            "a padding slot got position -1: mask.cumsum(dim=1) - 1 is -1 before a sequence's first real token; "
            ".clamp(min=0) it (the padding is masked, so its position does not matter)"
        )
    if "positions must have the shape of tokens" in message:
        return "each call needs one position per new token: (batch, prompt) for the prefill, (batch, 1) for a step"
    if "must be int64 tensors" in message and "torch.bool" in message:
        return "the model is called model(tokens, positions, mask, cache): the positions come before the mask"
    if error["type"] == "TypeError" and "positional argument" in message:
        return (
            "the model is called model(tokens, positions, mask, cache), and the cache comes from model.new_cache(batch)"
        )
    return None


generate = register(
    Exercise(
        LESSON,
        "generate",
        function="generate",
        signature="generate(model, prompts, new_tokens)",
        cases=_generate_cases,
        judge=_generate_judge,
        mutable=("model",),
        explain=_explain_generate,
    )
)


# --- exercise 6: pool_kv_heads -----------------------------------------------------------------------------------


def _pool_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (heads, kv_heads, d_head, d_model, dtype); d_model None: a bias, (heads * d_head,)
    fixed = [
        (8, 2, 3, 5, torch.float32),
        (6, 3, 2, 4, torch.float64),
        (4, 1, 3, 6, torch.float32),  # one key/value head: multi-query
        (6, 2, 1, 3, torch.float32),  # d_head 1
        (8, 2, 3, None, torch.float64),  # a bias
        (4, 1, 2, None, torch.float32),  # a bias, multi-query
        (6, 3, 4, 1, torch.float32),  # d_model 1: a weight that looks like a column
    ]
    drawn = []
    for d_model in (_int(g, 2, 8), None):  # a weight and a bias
        heads, kv_heads = _heads(g)
        drawn.append((heads, kv_heads, _int(g, 1, 5), d_model, _pick(g, DTYPES)))
    cases = []
    for i, (heads, kv_heads, d_head, d_model, dtype) in enumerate(fixed + drawn):
        w = _randn(g, heads * d_head, *([] if d_model is None else [d_model]), dtype=dtype)
        name = "the bias b" if d_model is None else "w"
        what = f"pool_kv_heads on {name} {_shape(w)} with heads={heads}, kv_heads={kv_heads} (d_head {d_head})"
        cases.append(Case((w, heads, kv_heads), what=what, drawn=i >= len(fixed)))
    return cases


def _pool_judge(case: Case, got, changed) -> None:
    w, heads, kv_heads = case.inputs()
    w64 = w.double()
    group, d_head, rest = heads // kv_heads, w.shape[0] // heads, tuple(w.shape[1:])  # rest: (d_model,) or ()
    grouped = w64.reshape(kv_heads, group, d_head, *rest)  # the heads of a group on dim 1
    expected = grouped.mean(dim=1).reshape(kv_heads * d_head, *rest)
    bias = w.ndim == 1
    verify(
        got,
        expected,
        [
            (
                w64.reshape(group, kv_heads, d_head, *rest).mean(dim=0).reshape(-1, *rest),
                "your groups take every kv_heads-th head; a group is neighbouring heads: heads 0..group-1, then "
                "group..2*group-1, ...",
            ),
            (grouped.sum(dim=1).reshape(-1, *rest), "that is the sum of each group; take the mean"),
            (grouped[:, 0].reshape(-1, *rest), "you kept the first head of each group; average all its heads"),
            (
                w64.reshape(kv_heads * d_head, group, *rest).mean(dim=1),
                "you averaged neighbouring rows, not heads: the rows of one head are d_head consecutive rows; view "
                "w as (kv_heads, group, d_head, d_model)",
            ),
            (
                w64.reshape(kv_heads, -1, *rest).mean(dim=1),
                "you averaged away the d_head rows of each head; keep them: view w as (kv_heads, group, d_head, "
                "d_model) and average over the group",
            ),
            (
                expected[:, None] if bias else expected,  # a weight: right, so the hint is judged on the biases
                "a bias (heads * d_head,) came back as a column (kv_heads * d_head, 1): keep w's trailing shape, "
                "w.shape[1:], which is () for a bias",
            ),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(kv_heads * d_head,) for a bias" if bias else "(kv_heads * d_head, d_model)",
    )


def _explain_pool(error: dict, case: Case):
    w = case.args[0]
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        return (
            "this w is a bias, (heads * d_head,), with no d_model dimension: pool it the same way, keeping w's "
            "trailing shape, w.shape[1:] (empty for a bias): w.reshape(kv_heads, group, d_head, *w.shape[1:])"
        )
    return None


pool_kv_heads = register(
    Exercise(
        LESSON,
        "pool_kv_heads",
        function="pool_kv_heads",
        signature="pool_kv_heads(w, heads, kv_heads)",
        cases=_pool_cases,
        judge=_pool_judge,
        explain=_explain_pool,
    )
)
