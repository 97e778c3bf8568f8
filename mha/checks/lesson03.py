"""Checks for lesson 03, many heads. Use: `from mha.checks import lesson03 as check`."""

import math

import torch
from torch import nn

from ..attention import attention
from ..heads import merge_heads as reference_merge
from ..heads import split_heads as reference_split
from ..multihead import MultiHeadAttention
from ._legacy import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape, same

LESSON = "03"


def _x(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _module(seed: int, d_model: int, heads: int) -> MultiHeadAttention:
    """A batched module with random weights and biases (zero biases would hide a bias that is dropped)."""
    torch.manual_seed(seed)
    m = MultiHeadAttention(d_model, heads)
    with torch.no_grad():
        m.in_proj.bias.normal_()
        m.out_proj.bias.normal_()
    return m


@exercise(LESSON, "split_heads")
def split_heads(fn) -> int:
    """fn(x, heads): (batch, seq, d_model) -> (batch, heads, seq, d_head)."""
    cases = [(_x(0, 2, 3, 8), 2), (_x(1, 1, 5, 12), 3), (_x(2, 3, 4, 6), 1)]
    for x, heads in cases:
        batch, seq, d_model = x.shape
        d_head = d_model // heads
        what = f"split_heads on x {tuple(x.shape)} with heads={heads}"
        got = as_tensor(call(fn, x.clone(), heads), what)
        expect_shape(got, (batch, heads, seq, d_head), what, "(batch, heads, seq, d_head)")
        diagnose(
            got,
            reference_split(x, heads),
            [
                (
                    x.reshape(batch, heads, seq, d_head),
                    "heads split with view and no transpose: that cuts the memory in "
                    "order and hands whole positions to heads; view to (batch, seq, "
                    "heads, d_head), then transpose(1, 2)",
                ),
                (
                    x.reshape(batch, seq, d_head, heads).permute(0, 3, 1, 2),
                    "each head must take a block of consecutive "
                    "features, h*d_head to (h+1)*d_head-1; you gave "
                    "it every heads-th feature",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "merge_heads")
def merge_heads(fn) -> int:
    """fn(x): (batch, heads, seq, d_head) -> (batch, seq, heads * d_head)."""
    cases = [_x(3, 2, 2, 3, 4), _x(4, 1, 3, 5, 2), _x(5, 2, 4, 4, 3)]
    for x in cases:
        batch, heads, seq, d_head = x.shape
        what = f"merge_heads on x {tuple(x.shape)}"
        got = as_tensor(call(fn, x.clone()), what)
        expect_shape(got, (batch, seq, heads * d_head), what, "(batch, seq, heads * d_head)")
        diagnose(
            got,
            reference_merge(x),
            [
                (
                    x.reshape(batch, seq, heads * d_head),
                    "heads merged in the wrong order: reshaping (batch, heads, seq, "
                    "d_head) directly mixes positions; transpose(1, 2) first, then "
                    "reshape",
                ),
                (
                    x.permute(0, 2, 3, 1).reshape(batch, seq, heads * d_head),
                    "the features of one head must stay together "
                    "(head 0's d_head features, then head 1's, "
                    "...); you interleaved them",
                ),
            ],
            what,
        )
    return len(cases)


def _forward_mistakes(m: MultiHeadAttention, x: torch.Tensor):
    """Outputs of classic wrong batched forward passes, with their hints."""
    heads, d_head = m.heads, m.d_head
    w_in, b_in = m.in_proj.weight, m.in_proj.bias
    batch, seq, d_model = x.shape
    q, k, v = (x @ w_in.T + b_in).chunk(3, dim=-1)

    def run(split, scale, project=True, axis=-1):
        qh, kh, vh = (split(t) for t in (q, k, v))
        w = (qh @ kh.transpose(-2, -1) / scale).softmax(axis)
        merged = reference_merge(w @ vh)
        return (m.out_proj(merged) if project else merged), w

    def bad_split(t):
        return t.reshape(batch, heads, seq, d_head)

    def good_split(t):
        return reference_split(t, heads)

    return [
        (
            run(good_split, math.sqrt(d_model)),
            "scores scaled by sqrt(d_model); each head's dot products have d_head terms, so divide by sqrt(d_head)",
        ),
        (
            run(good_split, math.sqrt(d_head), project=False),
            "the output projection W_O is missing: apply out_proj weight and bias to the merged heads",
        ),
        (run(good_split, 1.0), "the scores were not scaled: divide by sqrt(d_head)"),
        (run(bad_split, math.sqrt(d_head)), "heads split with view and no transpose"),
        (run(good_split, math.sqrt(d_head), axis=-2), "softmax over the wrong axis: over the keys, dim=-1"),
    ]


@exercise(LESSON, "multihead_forward")
def multihead_forward(fn) -> int:
    """fn(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads) -> (output, per-head weights)."""
    cases = [
        (_module(6, 8, 2), _x(7, 2, 5, 8)),
        (_module(8, 12, 3), _x(9, 1, 4, 12)),
        (_module(10, 16, 4), _x(11, 3, 6, 16)),
    ]
    for m, x in cases:
        what = f"multihead_forward on x {tuple(x.shape)} with heads={m.heads}"
        with torch.no_grad():
            result = call(
                fn,
                x.clone(),
                m.in_proj.weight.clone(),
                m.in_proj.bias.clone(),
                m.out_proj.weight.clone(),
                m.out_proj.bias.clone(),
                m.heads,
            )
            if not isinstance(result, tuple) or len(result) != 2:
                raise CheckFailed(f"{what}: return (output, weights); got {type(result).__name__}")
            out, w = as_tensor(result[0], "the output"), as_tensor(result[1], "the weights")
            expected_out, expected_w = m(x, need_weights=True, average_weights=False)
            mistakes = _forward_mistakes(m, x)
        batch, seq, _ = x.shape
        expect_shape(w, (batch, m.heads, seq, seq), f"{what}: the weights", "(batch, heads, q_pos, k_pos)")
        expect_shape(out, x.shape, f"{what}: the output", "(batch, seq, d_model)")
        diagnose(
            w,
            expected_w,
            [(mw, hint) for (_, mw), hint in mistakes if not same(mw, expected_w)],
            f"{what}: the weights",
        )
        diagnose(out, expected_out, [(mo, hint) for (mo, _), hint in mistakes], f"{what}: the output")
    return len(cases)


def _head_weights(m: MultiHeadAttention):
    """Per-head projection weights cut from a batched module, as the exercise hands them to the learner."""
    w_q, w_k, w_v = m.in_proj.weight.detach().chunk(3)
    b_q, b_k, b_v = m.in_proj.bias.detach().chunk(3)
    rows = [slice(h * m.d_head, (h + 1) * m.d_head) for h in range(m.heads)]
    return [
        {
            "W_Q": w_q[r].clone(),
            "b_Q": b_q[r].clone(),
            "W_K": w_k[r].clone(),
            "b_K": b_k[r].clone(),
            "W_V": w_v[r].clone(),
            "b_V": b_v[r].clone(),
        }
        for r in rows
    ]


def _loop_output(x, heads, w_out, b_out, order=None, shared_q=False, project=True):
    outs = []
    for h in order or range(len(heads)):
        p = heads[h]
        q = x @ (heads[0] if shared_q else p)["W_Q"].T + (heads[0] if shared_q else p)["b_Q"]
        out, _ = attention(q, x @ p["W_K"].T + p["b_K"], x @ p["W_V"].T + p["b_V"])
        outs.append(out)
    concat = torch.cat(outs, dim=-1)
    return concat @ w_out.T + b_out if project else concat


@exercise(LESSON, "loop_forward")
def loop_forward(fn) -> int:
    """fn(x, head_weights, out_proj_weight, out_proj_bias) -> output, with a separate W_Q, W_K, W_V per head."""
    cases = [(_module(12, 8, 2), _x(13, 2, 4, 8)), (_module(14, 12, 4), _x(15, 1, 5, 12))]
    for m, x in cases:
        what = f"loop_forward on x {tuple(x.shape)} with {m.heads} heads"
        heads = _head_weights(m)
        w_out, b_out = m.out_proj.weight.detach(), m.out_proj.bias.detach()
        with torch.no_grad():
            got = as_tensor(call(fn, x.clone(), heads, w_out.clone(), b_out.clone()), what)
            expected, _ = m(x)
            mistakes = [
                (
                    _loop_output(x, heads, w_out, b_out, shared_q=True),
                    "one W_Q shared by all heads: each head must use its own W_Q (and W_K, W_V)",
                ),
                (
                    _loop_output(x, [heads[0]] * len(heads), w_out, b_out),
                    "every head used head 0's weights: inside the loop, take head h's own dictionary",
                ),
                (
                    _loop_output(x, heads, w_out, b_out, project=False),
                    "the output projection W_O is missing: concatenate, then apply it",
                ),
                (
                    _loop_output(x, heads, w_out, b_out, order=list(range(m.heads))[::-1]),
                    "heads concatenated in the wrong order: head 0 first",
                ),
            ]
        expect_shape(got, x.shape, what, "(batch, seq, d_model)")
        diagnose(got, expected, mistakes, what)
    return len(cases)


@exercise(LESSON, "load_from_torch")
def load_from_torch(fn) -> int:
    """fn(ours, theirs) copies nn.MultiheadAttention `theirs` into mha.MultiHeadAttention `ours`, in place."""
    for seed, (d_model, heads) in enumerate([(8, 2), (12, 3)]):
        torch.manual_seed(20 + seed)
        theirs = nn.MultiheadAttention(d_model, heads, batch_first=True)
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
        ours = MultiHeadAttention(d_model, heads)
        before = {name: p.detach().clone() for name, p in ours.named_parameters()}
        call(fn, ours, theirs, explain=_explain_load_crash)
        after = dict(ours.named_parameters())
        sources = {
            "in_proj.weight": theirs.in_proj_weight,
            "in_proj.bias": theirs.in_proj_bias,
            "out_proj.weight": theirs.out_proj.weight,
            "out_proj.bias": theirs.out_proj.bias,
        }
        for name, source in sources.items():
            mine, source = after[name].detach(), source.detach()
            transposed = source.ndim == 2 and (mine.shape == source.T.shape != source.shape or same(mine, source.T))
            if transposed and not same(mine, source):
                raise CheckFailed(
                    f"ours.{name} is transposed: nn.MultiheadAttention stores its weights like "
                    f"nn.Linear, (out_features, in_features), the same layout as ours; copy as is"
                )
            if mine.shape != source.shape:
                raise CheckFailed(f"ours.{name} has shape {tuple(mine.shape)}, expected {tuple(source.shape)}")
            if same(mine, source):
                continue
            if same(mine, before[name]):
                raise CheckFailed(f"ours.{name} was not copied: it still holds its initial values")
            if name == "in_proj.weight" and (swap := _qkv_swapped(mine, source)):
                raise CheckFailed(
                    f"ours.in_proj.weight has the {swap}: its rows are [W_Q; W_K; W_V] in that "
                    f"order, as in nn.MultiheadAttention's in_proj_weight"
                )
            diagnose(mine, source, [], f"ours.{name}")
        x = _x(30 + seed, 2, 4, d_model)
        with torch.no_grad():
            if not same(ours(x)[0], theirs(x, x, x)[0]):
                raise CheckFailed("the weights look copied but the outputs differ from nn.MultiheadAttention's")
    return 2


def _explain_load_crash(error):
    if isinstance(error, RuntimeError) and "size" in str(error):
        return (
            "the shapes do not match: nn.MultiheadAttention stores its weights like nn.Linear, (out_features, "
            "in_features), the same layout as ours; copy them as they are, without .T"
        )
    return None


def _qkv_swapped(mine, source):
    blocks, theirs = mine.chunk(3), source.chunk(3)
    names = ["W_Q", "W_K", "W_V"]
    for i in range(3):
        for j in range(3):
            if i != j and same(blocks[i], theirs[j]):
                return f"{names[j]} block where {names[i]} belongs"
    return None


@exercise(LESSON, "head_contributions")
def head_contributions(fn) -> int:
    """fn(module, x) -> (batch, heads, seq, d_model): what each head adds to the output (bias excluded)."""
    cases = [(_module(40, 8, 2), _x(41, 2, 3, 8)), (_module(42, 12, 4), _x(43, 1, 5, 12))]
    for m, x in cases:
        what = f"head_contributions for {m.heads} heads on x {tuple(x.shape)}"
        with torch.no_grad():
            got = as_tensor(call(fn, m, x.clone()), what)
            q, k, v = (reference_split(t, m.heads) for t in m.in_proj(x).chunk(3, dim=-1))
            o, _ = attention(q, k, v)  # (batch, heads, seq, d_head)
            W = m.out_proj.weight
            blocks = [slice(h * m.d_head, (h + 1) * m.d_head) for h in range(m.heads)]
            expected = torch.stack([o[:, h] @ W[:, b].T for h, b in enumerate(blocks)], dim=1)
            rows = None
            if m.heads * m.d_head == W.shape[0]:
                rows = torch.stack([o[:, h] @ W[b, :] for h, b in enumerate(blocks)], dim=1)
        batch, seq, d_model = x.shape
        expect_shape(
            got,
            (batch, m.heads, seq, d_model),
            what,
            "(batch, heads, seq, d_model): each head's output times its own block of W_O",
        )
        diagnose(
            got,
            expected,
            [
                (
                    expected + m.out_proj.bias.detach(),
                    "the bias belongs to no head: leave it out (it is added once, after the sum)",
                ),
                (
                    rows,
                    "you used rows of W_O; head h's block is its columns h*d_head..(h+1)*d_head-1, because out_proj "
                    "computes concat @ W_O.T",
                ),
            ],
            what,
        )
        total = got.sum(dim=1) + m.out_proj.bias.detach()
        if not same(total, m(x)[0].detach()):
            raise CheckFailed(f"{what}: the contributions plus the bias do not add up to the layer's output")
    return len(cases)
