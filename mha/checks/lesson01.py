"""Checks for lesson 01, attention from scratch. Use: `from mha.checks import lesson01 as check`.

Cases vary the rank (2 to 5 dimensions), the sizes (q_pos != k_pos, odd d_head, d_v != d_head), the dtype (float32
and float64) and the masks (broadcast, with and without fully masked rows); two are drawn afresh on every run.
"""

import math

import torch

from . import Case, CheckFailed, Exercise, describe_value, items, read_tensor, register, same, tolerance, verify

LESSON = "01"
DTYPES = (torch.float32, torch.float64)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _shape(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {_name(t.dtype)}"


def _randn(g, *shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250101)


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The right masked softmax, in the scores' dtype: masked keys 0, a fully masked row all zeros."""
    if mask is None:
        return scores.softmax(-1)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return weights.masked_fill(~mask.any(-1, keepdim=True), 0.0)


# --- exercise 1: scores ------------------------------------------------------------------------------------------


def _scores_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    shapes = [((3, 5), 7, torch.float32), ((2, 4, 6), 9, torch.float64), ((2, 3, 5, 12), 2, torch.float32)]
    drawn = []
    for _ in range(2):
        q_pos, k_pos = (int(x) + 2 for x in torch.randperm(8, generator=g)[:2])
        d_head = _pick(g, [d for d in (3, 5, 6, 7, 10, 11, 12, 13) if d not in (q_pos, k_pos)])
        lead = tuple(int(x) for x in torch.randint(1, 4, (int(torch.randint(0, 4, (), generator=g)),), generator=g))
        drawn.append(((*lead, q_pos, d_head), k_pos, _pick(g, DTYPES)))
    cases, fixed = [], _fixed()
    for i, (q_shape, k_pos, dtype) in enumerate(shapes + drawn):
        gen = fixed if i < len(shapes) else g
        q = _randn(gen, *q_shape, dtype=dtype)
        k = _randn(gen, *q_shape[:-2], k_pos, q_shape[-1], dtype=dtype)
        cases.append(Case((q, k), what=f"scores for q {_shape(q)} and k {_shape(k)}", drawn=i >= len(shapes)))
    return cases


def _scores_judge(case: Case, got, changed) -> None:
    q, k = case.inputs()
    raw = q.double() @ k.double().transpose(-2, -1)
    q_pos, k_pos, d_head = q.shape[-2], k.shape[-2], q.shape[-1]
    expected = raw / math.sqrt(d_head)
    verify(
        got,
        expected,
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
            (
                expected.transpose(-2, -1),
                "that is (..., k_pos, q_pos): did you compute k @ q^T instead of q @ k^T?",
            ),
        ],
        what=case.what,
        dtype=q.dtype,
        shape_hint="(..., q_pos, k_pos): one score per (query, key) pair",
    )


def _explain_rank(error: dict, case: Case):
    """A crash that comes from code written for 3-dimensional inputs only."""
    ranks = {a.ndim for a in case.args if isinstance(a, torch.Tensor)}
    words = ("Dimension out of range", "3D", "3-D", "must be a 3D")
    if ranks != {3} and error["type"] in ("IndexError", "RuntimeError") and any(w in error["message"] for w in words):
        return (
            "your code handles 3-dimensional inputs only (bmm, transpose(1, 2), ...); the inputs may have any "
            "number of leading dimensions: use @ and transpose(-2, -1)"
        )
    return None


def _explain_scores_crash(error: dict, case: Case):
    if case.args[0].ndim > 2 and error["type"] == "RuntimeError" and "must match the size" in error["message"]:
        return (
            "on a tensor with more than 2 dimensions `.T` reverses all of them; swap only the last two: "
            "k.transpose(-2, -1) (or k.mT)"
        )
    return _explain_rank(error, case)


scores = register(
    Exercise(
        LESSON,
        "scores",
        function="scores",
        signature="scores(q, k)",
        cases=_scores_cases,
        judge=_scores_judge,
        explain=_explain_scores_crash,
    )
)


# --- exercise 2: masked_softmax ----------------------------------------------------------------------------------


def _random_mask(g, shape, empty_row: bool) -> torch.Tensor:
    mask = torch.rand(*shape, generator=g) > 0.4
    mask[..., int(torch.randint(shape[-1], (), generator=g))] = True  # every query keeps a key...
    if empty_row:
        mask.reshape(-1, shape[-2], shape[-1])[0, shape[-2] // 2] = False  # ...but one
    return mask


def _masked_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    cases = []
    s = _randn(fixed, 4, 6, scale=2.0)
    cases.append((s, _random_mask(fixed, (4, 6), False)))
    s = _randn(fixed, 2, 5, 5, dtype=torch.float64)
    cases.append((s, torch.ones(5, 5, dtype=torch.bool).tril()))  # causal, broadcast over the batch
    s = _randn(fixed, 3, 4)
    m = torch.tensor([[True, False, True, True], [False, False, False, False], [False, True, False, False]])
    cases.append((s, m))
    s = _randn(fixed, 2, 3, 4, 7, dtype=torch.float64, scale=3.0)
    lengths = torch.tensor([5, 0])  # padding; the second sequence has no real token: every row of it is empty
    cases.append((s, (torch.arange(7) < lengths[:, None])[:, None, None, :]))
    for _ in range(2):
        rank = int(torch.randint(2, 5, (), generator=g))
        shape = tuple(int(x) for x in torch.randint(2, 7, (rank,), generator=g))
        s = _randn(g, *shape, dtype=_pick(g, DTYPES), scale=2.0)
        mask_shape = _pick(g, [shape, shape[-2:], (*shape[:-2], 1, shape[-1])])
        cases.append((s, _random_mask(g, mask_shape, bool(torch.rand((), generator=g) < 0.5))))
    out = []
    for i, (s, m) in enumerate(cases):
        empty = not m.expand(s.shape).any(-1).all()
        what = f"masked_softmax on scores {_shape(s)} with a mask {tuple(m.shape)}" + (
            " that leaves a query no key" if empty else ""
        )
        out.append(Case((s, m), what=what, drawn=i >= 4))
    return out


_WRONG_AXIS = "softmax over the wrong axis: each query's weights must sum to 1 over the keys, the last axis (dim=-1)"


def _softmax_mistakes(s: torch.Tensor, m: torch.Tensor) -> list:
    filled = s.masked_fill(~m, float("-inf"))
    by_query = filled.softmax(-2)
    return [
        (
            _softmax(s, ~m),
            "the mask is inverted: True means 'may attend', so keep the scores where the mask is True and block "
            "the others",
        ),
        (
            s.softmax(-1) * m,
            "you applied the mask after the softmax: blocked keys get 0 but the other weights no longer sum to 1; "
            "fill the blocked scores with -inf before the softmax",
        ),
        (s.softmax(-1), "the mask was ignored: blocked keys still get weight"),
        (s.masked_fill(~m, 0.0).softmax(-1), "blocked scores set to 0 still get weight e^0 = 1; set them to -inf"),
        (by_query, _WRONG_AXIS),
        (by_query.nan_to_num(0.0), _WRONG_AXIS),
        (by_query.masked_fill(~m.any(-1, keepdim=True), 0.0), _WRONG_AXIS),
        (
            filled.softmax(-1),
            "a query whose keys are all masked got NaN (softmax of all -inf is 0/0); give such a row all-zero "
            "weights, e.g. with masked_fill after the softmax",
        ),
        (
            s.masked_fill(~m, -1e9).softmax(-1),
            "a large negative number such as -1e9 works where some keys remain, but a query whose keys are all "
            "masked gets equal weights on all of them; give such a row all-zero weights",
        ),
    ]


def _masked_judge(case: Case, got, changed) -> None:
    s, m = case.inputs()
    s64 = s.double()
    verify(
        got,
        _softmax(s64, m),
        _softmax_mistakes(s64, m),
        what=case.what,
        dtype=s.dtype,
        shape_hint="the shape of the scores",
    )


masked_softmax = register(
    Exercise(
        LESSON,
        "masked_softmax",
        function="masked_softmax",
        signature="masked_softmax(scores, mask)",
        cases=_masked_cases,
        judge=_masked_judge,
        explain=_explain_rank,
    )
)


# --- exercise 3: causal_mask -------------------------------------------------------------------------------------


def _causal_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [4, 7, 1, 2]
    drawn = [int(x) for x in torch.randint(3, 41, (2,), generator=g)]
    return [Case((seq,), what=f"causal_mask({seq})", drawn=i >= len(fixed)) for i, seq in enumerate(fixed + drawn)]


def _causal_judge(case: Case, got, changed) -> None:
    (seq,) = case.inputs()
    expected = torch.ones(seq, seq, dtype=torch.bool).tril()
    verify(
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
            (expected.T, "that mask lets each position see the future, not the past: use the lower triangle (tril)"),
            (torch.ones(seq, seq, dtype=torch.bool), "nothing is masked: position i must not see positions after i"),
        ],
        what=case.what,
        shape_hint="(seq, seq): one row per query position, one column per key position",
        form_hint=f"a boolean tensor ({seq}, {seq})",
    )


causal_mask = register(
    Exercise(
        LESSON,
        "causal_mask",
        function="causal_mask",
        signature="causal_mask(seq)",
        cases=_causal_cases,
        judge=_causal_judge,
    )
)


# --- exercise 4: padding_mask ------------------------------------------------------------------------------------


def _padding_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [
        ([3, 1, 4], 4, torch.int64),
        ([2], 5, torch.int64),
        ([0, 2], 3, torch.int64),
        ([6, 0, 3, 8, 1], 8, torch.int32),
    ]
    drawn = []
    for _ in range(2):
        batch = int(torch.randint(1, 7, (), generator=g))
        seq = _pick(g, [s for s in range(2, 13) if s != batch])
        drawn.append(
            (torch.randint(0, seq + 1, (batch,), generator=g).tolist(), seq, _pick(g, (torch.int64, torch.int32)))
        )
    return [
        Case(
            (torch.tensor(lengths, dtype=dtype), seq), what=f"padding_mask(lengths={lengths}, seq={seq})", drawn=i >= 4
        )
        for i, (lengths, seq, dtype) in enumerate(fixed + drawn)
    ]


def _padding_judge(case: Case, got, changed) -> None:
    lengths, seq = case.inputs()
    positions, column = torch.arange(seq), lengths.long()[:, None]
    expected = positions < column
    verify(
        got,
        expected,
        [
            (~expected, "inverted: True must mark the real tokens (they may be attended to), False the padding"),
            (
                positions <= column,
                "off by one: a sequence of length n has real tokens at positions 0..n-1, so use positions < length",
            ),
            (
                positions < column - 1,
                "off by one: the last real token is missing; a sequence of length n has real tokens at positions "
                "0..n-1, so use positions < length",
            ),
            (expected.T, "that is (seq, batch); the mask is (batch, seq): one row per sequence"),
        ],
        what=case.what,
        shape_hint="(batch, seq): one row per sequence, one column per position",
        form_hint=f"a boolean tensor {tuple(expected.shape)}",
    )


padding_mask = register(
    Exercise(
        LESSON,
        "padding_mask",
        function="padding_mask",
        signature="padding_mask(lengths, seq)",
        cases=_padding_cases,
        judge=_padding_judge,
    )
)


# --- exercise 5: attention ---------------------------------------------------------------------------------------


def _attention_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (lead, q_pos, k_pos, d_head, d_v, dtype, mask: None / "mask" / "empty", how the mask is passed)
    setups = [
        ((), 3, 5, 6, 4, torch.float32, None, "omitted"),
        ((2,), 3, 5, 8, 7, torch.float64, "mask", "positional"),
        ((2, 2), 4, 6, 5, 3, torch.float32, "empty", "keyword"),
        ((3,), 2, 7, 10, 6, torch.float32, None, "keyword"),
    ]
    for _ in range(2):
        q_pos, k_pos = (int(x) + 2 for x in torch.randperm(7, generator=g)[:2])
        d_head, d_v = (int(x) + 3 for x in torch.randperm(9, generator=g)[:2])
        lead = tuple(int(x) for x in torch.randint(1, 4, (int(torch.randint(0, 3, (), generator=g)),), generator=g))
        setups.append((lead, q_pos, k_pos, d_head, d_v, _pick(g, DTYPES), _pick(g, [None, "mask", "empty"]), "keyword"))
    cases, fixed = [], _fixed()
    for i, (lead, q_pos, k_pos, d_head, d_v, dtype, masking, passing) in enumerate(setups):
        gen = fixed if i < 4 else g
        q = _randn(gen, *lead, q_pos, d_head, dtype=dtype)
        k = _randn(gen, *lead, k_pos, d_head, dtype=dtype)
        v = _randn(gen, *lead, k_pos, d_v, dtype=dtype)
        mask = None if masking is None else _random_mask(gen, (*lead[-1:], q_pos, k_pos), masking == "empty")
        what = f"attention on q {_shape(q)}, k {_shape(k)}, v {_shape(v)}"
        if mask is not None:
            what += f" with a mask {tuple(mask.shape)}" + (" that leaves a query no key" if masking == "empty" else "")
        if passing == "omitted":
            cases.append(Case((q, k, v), what=what + " (no mask given)", drawn=i >= 4))
        elif passing == "positional":
            cases.append(Case((q, k, v, mask), what=what, drawn=i >= 4))
        else:
            cases.append(Case((q, k, v), {"mask": mask}, what=what, drawn=i >= 4))
    return cases


def _attention_judge(case: Case, got, changed) -> None:
    q, k, v, *rest = case.inputs()
    mask = rest[0] if rest else case.kwargs.get("mask")
    q64, k64, v64 = q.double(), k.double(), v.double()
    raw = q64 @ k64.transpose(-2, -1)
    scaled = raw / math.sqrt(q.shape[-1])
    w = _softmax(scaled, mask)
    out = w @ v64
    output, weights = items(got, 2, what=case.what, names="(output, weights)")
    tol = tolerance(q.dtype)
    first, second = read_tensor(output), read_tensor(weights)
    if first is not None and second is not None and same(first, w, tol) and same(second, out, tol):
        raise CheckFailed("you returned (weights, output); return (output, weights)", case.what, site="returned")
    m = mask if mask is not None else torch.ones(raw.shape[-2:], dtype=torch.bool)
    verify(
        weights,
        w,
        [
            (_softmax(raw, mask), "the scores were not divided by sqrt(d_head)"),
            (_softmax(raw / q.shape[-1], mask), "you divided by d_head; divide by sqrt(d_head)"),
            (scaled.softmax(-1), "the mask was ignored: keys where the mask is False still get weight"),
            (_softmax(scaled, ~m), "the mask is inverted: True means 'may attend'"),
            (
                scaled.softmax(-1) * m,
                "you applied the mask after the softmax: the weights no longer sum to 1; fill the blocked scores "
                "with -inf before the softmax",
            ),
            (
                scaled.masked_fill(~m, float("-inf")).softmax(-1),
                "a query whose keys are all masked got NaN; give it all-zero weights",
            ),
            (
                scaled.masked_fill(~m, -1e9).softmax(-1),
                "a query whose keys are all masked got equal weights on all of them (-1e9 instead of -inf and no "
                "fix afterwards); give it all-zero weights",
            ),
            (w.transpose(-2, -1), "the weights are transposed: rows are queries, columns keys"),
        ],
        what=f"{case.what}: the weights",
        site="weights",
        dtype=q.dtype,
        shape_hint="(..., q_pos, k_pos)",
    )
    verify(
        output,
        out,
        [(w @ k64, "you mixed the keys; the output mixes the values: weights @ v")],
        what=f"{case.what}: the output (weights @ v)",
        site="output",
        dtype=q.dtype,
        shape_hint="(..., q_pos, d_v): one mixture of values per query",
    )


attention = register(
    Exercise(
        LESSON,
        "attention",
        function="attention",
        signature="attention(q, k, v, mask=None)",
        cases=_attention_cases,
        judge=_attention_judge,
        uses=("scores", "masked_softmax"),
        explain=_explain_rank,
    )
)


# --- exercise 6: design a query ----------------------------------------------------------------------------------

# Keys of the lesson's hand-made sentence, features [company, product, action, pronoun].
TOKENS = ["Apple", "released", "a", "new", "iPhone", "but", "it"]
_KEYS = [
    [1.0, 0.2, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.3, 0.0, 0.0],
    [0.1, 1.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
]
KEYS = torch.tensor(_KEYS)  # shown to the learner; the check uses its own copy, _KEYS


def _query_cases(seed: int) -> list[Case]:
    return [Case((), what="your query, under scaled attention over the sentence's keys")]


def _query_judge(case: Case, got, changed) -> None:
    q = read_tensor(got)
    if q is None:
        raise CheckFailed(
            f"returned {describe_value(got)}; expected four numbers, one per feature "
            f"[company, product, action, pronoun]",
            case.what,
            ["returned None: did you print the query instead of returning it?"] if got is None else [],
        )
    q = q.double().reshape(-1)
    if q.numel() != 4:
        raise CheckFailed(
            f"your query has {q.numel()} numbers; it needs one per feature [company, product, action, pronoun]: 4",
            case.what,
        )
    w = (torch.tensor(_KEYS, dtype=torch.float64) @ q / 2.0).softmax(-1)  # scaled by sqrt(d_head) = sqrt(4)
    shares = ", ".join(f"{t} {x:.2f}" for t, x in zip(TOKENS, w.tolist()))
    if not w[4] >= 0.9:
        hint = (
            "the weight goes where the scores are largest, and each score is q · k / 2: make the product "
            "feature of your query larger"
        )
        if w[0] >= w[4]:
            hint = "Apple scores at least as high as iPhone: Apple's key is mostly 'company', iPhone's 'product'"
        raise CheckFailed(f"iPhone gets {w[4]:.2f} of the weight, needs 0.90 ({shares}): {hint}", case.what)
    if w[0] > 0.05:
        raise CheckFailed(
            f"Apple gets {w[0]:.2f} of the weight, at most 0.05 allowed ({shares}): Apple's key has a little "
            f"'product' in it and a lot of 'company'; a negative company feature pushes it down",
            case.what,
        )


design_query = register(
    Exercise(
        LESSON,
        "design_query",
        function="query_for_it",
        signature="query_for_it()",
        cases=_query_cases,
        judge=_query_judge,
    )
)
