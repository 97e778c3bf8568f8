"""Checks for lesson 01, attention from scratch. Use: `from mha.checks import lesson01 as check`."""

import math

import torch

from ..attention import attention as reference_attention
from ..attention import masked_softmax as reference_softmax
from . import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape

LESSON = "01"


def _qk(seed: int, *shape_q, k_pos: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*shape_q, generator=g)
    k = torch.randn(*shape_q[:-2], k_pos, shape_q[-1], generator=g)
    return q, k


def _explain_scores_crash(q):
    def explain(error):
        if q.ndim > 2 and isinstance(error, RuntimeError):
            return (
                "on a tensor with more than 2 dimensions `.T` reverses all of them; swap only the last two: "
                "k.transpose(-2, -1) (or k.mT)"
            )
        return None

    return explain


@exercise(LESSON, "scores")
def scores(fn) -> int:
    """fn(q, k) -> scaled dot-product scores (..., q_pos, k_pos)."""
    cases = [_qk(0, 3, 4, k_pos=5), _qk(1, 2, 3, 8, k_pos=6), _qk(2, 2, 2, 4, 16, k_pos=4)]
    for q, k in cases:
        what = f"scores for q {tuple(q.shape)} and k {tuple(k.shape)}"
        got = as_tensor(call(fn, q, k, explain=_explain_scores_crash(q)), what)
        q_pos, k_pos, d_head = q.shape[-2], k.shape[-2], q.shape[-1]
        expected_shape = (*q.shape[:-2], q_pos, k_pos)
        if tuple(got.shape) == (*q.shape[:-2], k_pos, q_pos) and q_pos != k_pos:
            raise CheckFailed(
                f"{what} have shape {tuple(got.shape)}, expected {expected_shape} = (..., q_pos, k_pos): "
                f"did you compute k @ q^T instead of q @ k^T?"
            )
        expect_shape(got, expected_shape, what, "one score per (query, key) pair: (..., q_pos, k_pos)")
        raw = q @ k.transpose(-2, -1)
        diagnose(
            got,
            raw / math.sqrt(d_head),
            [
                (raw, "you did not scale: divide q @ k^T by sqrt(d_head)"),
                (raw / d_head, "you divided by d_head; divide by its square root, sqrt(d_head)"),
                (
                    raw / math.sqrt(k_pos),
                    "you divided by the square root of the number of keys; use d_head, the last dimension of q",
                ),
                (
                    raw / math.sqrt(q_pos),
                    "you divided by the square root of the number of queries; use d_head, the last dimension of q",
                ),
                (raw * math.sqrt(d_head), "you multiplied by sqrt(d_head); divide by it"),
            ],
            what,
        )
    return len(cases)


def _masked_cases():
    g = torch.Generator().manual_seed(3)
    s1 = torch.randn(4, 6, generator=g) * 2
    m1 = torch.rand(4, 6, generator=g) > 0.4
    m1[:, 0] = True  # every query keeps a key
    s2 = torch.randn(2, 5, 5, generator=g)
    m2 = torch.ones(5, 5, dtype=torch.bool).tril()  # a causal mask, broadcast over the batch
    s3 = torch.randn(3, 4, generator=g)
    m3 = torch.tensor([[True, False, True, True], [False, False, False, False], [False, True, False, False]])
    return [(s1, m1, False), (s2, m2, False), (s3, m3, True)]


@exercise(LESSON, "masked_softmax")
def masked_softmax(fn) -> int:
    """fn(scores, mask) -> weights: softmax over keys, weight 0 on masked keys, all zeros on a fully masked row."""
    cases = _masked_cases()
    for s, m, has_empty_row in cases:
        what = f"masked_softmax on scores {tuple(s.shape)}" + (" with a fully masked row" if has_empty_row else "")
        got = as_tensor(call(fn, s.clone(), m.clone()), what)
        expect_shape(got, s.shape, what, "the weights have the same shape as the scores")
        expected = reference_softmax(s, m)
        nan_rows = torch.where(m.any(-1, keepdim=True), expected, torch.nan)
        mistakes = [
            (
                reference_softmax(s, ~m),
                "the mask is inverted: True means 'may attend', so keep the scores where the "
                "mask is True and block the others",
            ),
            (
                s.softmax(-1) * m,
                "you applied the mask after the softmax: blocked keys get 0 but the other weights no "
                "longer sum to 1; fill the blocked scores with -inf before the softmax",
            ),
            (s.softmax(-1), "the mask was ignored: blocked keys still get weight"),
            (s.masked_fill(~m, 0.0).softmax(-1), "blocked scores set to 0 still get weight e^0 = 1; set them to -inf"),
            (
                s.masked_fill(~m, float("-inf")).softmax(-2),
                "softmax over the wrong axis: each query's weights must sum to 1 over the keys, the last axis (dim=-1)",
            ),
            (
                torch.where(m, s, float("-inf")).softmax(-2),
                "softmax over the wrong axis: each query's weights must sum to 1 over the keys, the last axis (dim=-1)",
            ),
        ]
        if has_empty_row:
            mistakes.insert(
                0,
                (
                    s.masked_fill(~m, -1e9).softmax(-1),
                    "a large negative number such as -1e9 works "
                    "where some keys remain, but a query whose keys "
                    "are all masked gets equal weights on all of "
                    "them; give such a row all-zero weights",
                ),
            )
            mistakes.insert(
                0,
                (
                    nan_rows,
                    "a query whose keys are all masked got NaN (softmax of all -inf is 0/0); "
                    "give such a row all-zero weights, e.g. with masked_fill after the softmax",
                ),
            )
        diagnose(got, expected, mistakes, what)
    return len(cases)


@exercise(LESSON, "causal_mask")
def causal_mask(fn) -> int:
    """fn(seq) -> bool (seq, seq), True where key position <= query position."""
    cases = [4, 7, 1]
    for seq in cases:
        what = f"causal_mask({seq})"
        got = as_tensor(call(fn, seq), what)
        expect_shape(got, (seq, seq), what, "one row per query position, one column per key position")
        if got.dtype != torch.bool:
            raise CheckFailed(
                f"{what} has dtype {got.dtype}; a mask must be boolean (True = may attend): "
                f"use torch.bool, e.g. .bool()"
            )
        expected = torch.ones(seq, seq, dtype=torch.bool).tril()
        diagnose(
            got,
            expected,
            [
                (
                    expected.tril(-1),
                    "off by one: a position may attend to itself, so keep the diagonal (tril, not tril(diagonal=-1))",
                ),
                (
                    ~expected,
                    "that is nn.MultiheadAttention's convention (True = blocked); the course's is True = may attend",
                ),
                (
                    expected.T,
                    "that mask lets each position see the future, not the past: use the lower triangle (tril)",
                ),
                (expected.T.triu(1), "that mask blocks the past and the position itself and lets the future through"),
                (
                    torch.ones(seq, seq, dtype=torch.bool),
                    "nothing is masked: position i must not see positions after i",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "padding_mask")
def padding_mask(fn) -> int:
    """fn(lengths, seq) -> bool (batch, seq), True for the first lengths[b] positions of sequence b."""
    cases = [([3, 1, 4], 4), ([2], 5), ([5, 5], 5), ([0, 2], 3)]
    for lengths, seq in cases:
        what = f"padding_mask({lengths}, seq={seq})"
        got = as_tensor(call(fn, torch.tensor(lengths), seq), what)
        batch = len(lengths)
        if tuple(got.shape) == (seq, batch) and seq != batch:
            raise CheckFailed(
                f"{what} has shape {tuple(got.shape)}, expected (batch, seq) = {(batch, seq)}: one row per sequence"
            )
        expect_shape(got, (batch, seq), what, "one row per sequence, one column per position")
        if got.dtype != torch.bool:
            raise CheckFailed(f"{what} has dtype {got.dtype}; a mask must be boolean (True = real token)")
        positions = torch.arange(seq)
        lengths_t = torch.tensor(lengths)[:, None]
        expected = positions < lengths_t
        diagnose(
            got,
            expected,
            [
                (~expected, "inverted: True must mark the real tokens (they may be attended to), False the padding"),
                (
                    positions <= lengths_t,
                    "off by one: a sequence of length n has real tokens at positions 0..n-1, so use positions < length",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "attention")
def attention(fn) -> int:
    """fn(q, k, v, mask=None) -> (output (..., q_pos, d_v), weights (..., q_pos, k_pos))."""
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.rand(2, 3, 5, generator=g) > 0.3
    mask[..., 1] = True
    empty = mask.clone()
    empty[1, 2] = False
    cases = [(q, k, v, None), (q, k, v, mask), (q, k, v, empty)]
    for q, k, v, m in cases:
        what = f"attention on q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}" + (
            "" if m is None else " with a mask" + (" and a fully masked row" if not m.any(-1).all() else "")
        )
        result = call(fn, q, k, v, m)
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed(f"{what}: return two things, (output, weights); got {type(result).__name__}")
        expected_out, expected_w = reference_attention(q, k, v, m)
        if (
            isinstance(result[0], torch.Tensor)
            and tuple(result[0].shape) == tuple(expected_w.shape)
            and isinstance(result[1], torch.Tensor)
            and tuple(result[1].shape) == tuple(expected_out.shape)
        ):
            raise CheckFailed(f"{what}: you returned (weights, output); return (output, weights)")
        out, w = as_tensor(result[0], "the output"), as_tensor(result[1], "the weights")
        expect_shape(w, expected_w.shape, f"{what}: the weights", "(..., q_pos, k_pos)")
        expect_shape(
            out, expected_out.shape, f"{what}: the output", "(..., q_pos, d_v): one mixture of values per query"
        )
        raw = q @ k.transpose(-2, -1)
        diagnose(
            w,
            expected_w,
            [
                (reference_softmax(raw, m), "the scores were not divided by sqrt(d_head)"),
                (reference_softmax(raw / q.shape[-1], m), "you divided by d_head; divide by sqrt(d_head)"),
                (
                    torch.where(
                        (m if m is not None else torch.ones_like(raw, dtype=torch.bool)).any(-1, keepdim=True),
                        expected_w,
                        torch.nan,
                    ),
                    "a query whose keys are all masked got NaN; give it all-zero weights",
                ),
                (expected_w.transpose(-2, -1), "the weights are transposed: rows are queries, columns keys"),
            ],
            f"{what}: the weights",
        )
        diagnose(
            out,
            expected_out,
            [
                (expected_w @ k, "you mixed the keys; the output mixes the values: weights @ v"),
            ],
            f"{what}: the output (weights @ v)",
        )
    return len(cases)


# Keys of the lesson's hand-made sentence, features [company, product, action, pronoun].
TOKENS = ["Apple", "released", "a", "new", "iPhone", "but", "it"]
KEYS = torch.tensor(
    [
        [1.0, 0.2, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.3, 0.0, 0.0],
        [0.1, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


@exercise(LESSON, "design_query")
def design_query(fn) -> int:
    """fn() -> query (4,): under scaled attention over KEYS, at least 90% on "iPhone" and at most 5% on "Apple"."""
    q = as_tensor(call(fn), "your query").double().reshape(-1)
    if q.numel() != 4:
        raise CheckFailed(
            f"your query has {q.numel()} numbers; it needs one per feature [company, product, action, pronoun]: 4"
        )
    w = (KEYS.double() @ q / 2.0).softmax(-1)  # scaled by sqrt(d_head) = sqrt(4)
    shares = ", ".join(f"{t} {x:.2f}" for t, x in zip(TOKENS, w.tolist()))
    if w[4] < 0.9:
        hint = (
            "the weight goes where the scores are largest, and each score is q · k / 2: make the product "
            "feature of your query larger"
        )
        if w[0] >= w[4]:
            hint = "Apple scores at least as high as iPhone: Apple's key is mostly 'company', iPhone's 'product'"
        raise CheckFailed(f"iPhone gets {w[4]:.2f} of the weight, needs 0.90 ({shares}): {hint}")
    if w[0] > 0.05:
        raise CheckFailed(
            f"Apple gets {w[0]:.2f} of the weight, at most 0.05 allowed ({shares}): Apple's key has "
            f"a little 'product' in it and a lot of 'company'; a negative company feature pushes it down"
        )
    return 1
