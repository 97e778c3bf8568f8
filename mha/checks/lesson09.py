"""Checks for lesson 09, positions. Use: `from mha.checks import lesson09 as check`.

Cases vary the sizes (seq, d_model and d_head, leading batch and head dimensions), the dtype (float32 and float64)
the positions (from 0, shuffled, far from 0), the distance looked back and the positions already cached; two are
drawn afresh on every run. The answers' forms are judged by what the cell after the exercise does with them: a
list, a bool or a tensor of another shape is refused with the reason. (When the learner's function raises on some
cases and returns on others, the message leads with the error, as in every lesson: `mha.checks.framework`.)
"""

import math

import numpy as np
import torch

from . import Case, CheckFailed, Exercise, items, register, verify

LESSON = "09"
BASE = 10000.0
WRONG_BASES = (1000.0, 100000.0)  # bases a learner may type instead of 10000 (a base of 100 is the i / d mistake)
DTYPES = (torch.float32, torch.float64)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _randn(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """(..., d/2) and (..., d/2) -> (..., d) with even[i] in feature 2i and odd[i] in feature 2i + 1."""
    return torch.stack((even, odd), dim=-1).flatten(-2)


def _angles(positions: torch.Tensor, d: int, base: float = BASE, exponent_step: int = 2) -> torch.Tensor:
    """positions (seq,) -> angles (seq, d/2): position * base^(-exponent_step * i / d), in float64."""
    theta = base ** (-exponent_step * torch.arange(d // 2, dtype=torch.float64) / d)
    return positions.double()[:, None] * theta


def _table(seq: int, d_model: int, **kwargs) -> torch.Tensor:
    a = _angles(torch.arange(seq), d_model, **kwargs)
    return _interleave(a.sin(), a.cos())


# --- exercise 1: sinusoidal_table --------------------------------------------------------------------------------


def _table_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [(6, 8), (11, 4), (5, 16)]
    drawn = [(int(torch.randint(2, 40, (), generator=g)), 2 * int(torch.randint(2, 17, (), generator=g))) for _ in "ab"]
    return [
        Case((seq, d_model), what=f"sinusoidal_table(seq={seq}, d_model={d_model})", drawn=i >= len(fixed))
        for i, (seq, d_model) in enumerate(fixed + drawn)
    ]


def _table_judge(case: Case, got, changed) -> None:
    seq, d_model = case.inputs()
    a = _angles(torch.arange(seq), d_model)
    mistakes = [
        (_interleave(a.cos(), a.sin()), "sine and cosine swapped: the sine goes in the even features 2i"),
        (
            torch.cat((a.sin(), a.cos()), dim=-1),
            "you put all the sines first and all the cosines after (a layout some libraries use); here each "
            "pair sits side by side: sin in feature 2i, cos in feature 2i + 1",
        ),
        (_table(seq, d_model, exponent_step=1), "theta_i = 10000^(-2i / d_model): you used i / d_model"),
        (
            _table(seq, d_model, exponent_step=-2),
            "you multiplied the position by 10000^(2i / d_model); divide by it (theta_i = 10000^(-2i / d_model))",
        ),
        (
            _interleave(*(f(_angles(torch.arange(1, seq + 1), d_model)) for f in (torch.sin, torch.cos))),
            "positions start at 0: the first row is sin(0) = 0 and cos(0) = 1",
        ),
        (_table(seq, d_model).T, "that is (d_model, seq): one row per position, one column per feature"),
    ]
    mistakes += [
        (_table(seq, d_model, base=b), f"wrong frequency base ({b:g}): the paper's base is 10000") for b in WRONG_BASES
    ]
    verify(
        got,
        _table(seq, d_model),
        mistakes,
        what=case.what,
        shape_hint="(seq, d_model): one row per position, one column per feature",
        form_hint=f"a tensor ({seq}, {d_model})",
    )


sinusoidal_table = register(
    Exercise(
        LESSON,
        "sinusoidal_table",
        function="sinusoidal_table",
        signature="sinusoidal_table(seq, d_model)",
        cases=_table_cases,
        judge=_table_judge,
    )
)


# --- exercise 2: apply_rope --------------------------------------------------------------------------------------


def _turn(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Turn each pair (2i, 2i + 1) of x (float64) by the angles a (seq, d/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return _interleave(even * a.cos() - odd * a.sin(), even * a.sin() + odd * a.cos())


def _rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The right rotation, in float64."""
    return _turn(x.double(), _angles(positions, x.shape[-1]))


def _rope_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [
        ((5, 8), torch.arange(5), torch.float32),
        ((2, 3, 4, 6), torch.tensor([3, 0, 7, 1]), torch.float32),
        ((1, 6, 16), torch.arange(6) + 100, torch.float64),
    ]
    for _ in range(2):
        seq = int(torch.randint(2, 9, (), generator=g))
        d_head = 2 * int(torch.randint(1, 9, (), generator=g))
        lead = tuple(int(s) for s in torch.randint(1, 4, (int(torch.randint(0, 3, (), generator=g)),), generator=g))
        positions = torch.randperm(50, generator=g)[:seq]
        setups.append(((*lead, seq, d_head), positions, _pick(g, DTYPES)))
    cases = []
    for i, (shape, positions, dtype) in enumerate(setups):
        x = _randn(g, *shape, dtype=dtype)
        what = f"apply_rope on x {tuple(shape)} {_name(dtype)} at positions {positions.tolist()}"
        cases.append(Case((x, positions), what=what, drawn=i >= 3))
    return cases


def _rope_judge(case: Case, got, changed) -> None:
    x, positions = case.inputs()
    x64, d = x.double(), x.shape[-1]
    a = _angles(positions, d)
    first, second = x64[..., : d // 2], x64[..., d // 2 :]
    halves = torch.cat((first * a.cos() - second * a.sin(), first * a.sin() + second * a.cos()), dim=-1)
    full = torch.cat((a, a), dim=-1)  # (seq, d): theta_0 .. theta_{d/2-1}, then again
    concatenated = x64 * full.cos() + _interleave(-x64[..., 1::2], x64[..., 0::2]) * full.sin()
    mistakes = [
        (
            halves,
            "you paired feature i with feature i + d_head / 2 (the 'rotate half' layout of some libraries); "
            "this lesson pairs neighbours, (0, 1), (2, 3), ...",
        ),
        (
            _turn(x64, -a),
            "each pair turns the wrong way: x'[2i] = x[2i] cos - x[2i+1] sin, x'[2i+1] = x[2i] sin + x[2i+1] cos",
        ),
        (
            concatenated,
            "the two features of a pair must turn by the same angle; your angles are laid out theta_0, theta_1, "
            "... then again (torch.cat) where each theta_i is needed twice in a row (repeat_interleave)",
        ),
        (_turn(x64, _angles(positions, d, exponent_step=1)), "theta_i = 10000^(-2i / d_head): you used i / d_head"),
        (
            _rope(x64, torch.arange(x.shape[-2])),
            "you turned row j by j theta: use the positions you are given, positions[j]",
        ),
        (x64, "nothing was turned: x came back as it was"),
    ]
    mistakes += [
        (_turn(x64, _angles(positions, d, base=b)), f"wrong frequency base ({b:g}): RoPE's base is 10000")
        for b in WRONG_BASES
    ]
    verify(got, _rope(x64, positions), mistakes, what=case.what, dtype=x.dtype, shape_hint="the shape of x")


apply_rope = register(
    Exercise(
        LESSON,
        "apply_rope",
        function="apply_rope",
        signature="apply_rope(x, positions)",
        cases=_rope_cases,
        judge=_rope_judge,
    )
)


# --- exercise 3: rotary_attention --------------------------------------------------------------------------------


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: bool = True) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1)
    return (scores / math.sqrt(q.shape[-1]) if scale else scores).softmax(-1) @ v


def _rotary_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [((1, 1, 5, 4), torch.float32), ((2, 3, 6, 8), torch.float32), ((1, 2, 4, 4), torch.float64)]
    for _ in range(2):
        seq, d_head = int(torch.randint(2, 9, (), generator=g)), 2 * int(torch.randint(1, 7, (), generator=g))
        batch, heads = (int(s) for s in torch.randint(1, 4, (2,), generator=g))
        setups.append(((batch, heads, seq, d_head), _pick(g, DTYPES)))
    cases = []
    for i, (shape, dtype) in enumerate(setups):
        q, k, v = (_randn(g, *shape, dtype=dtype) for _ in range(3))
        cases.append(Case((q, k, v), what=f"rotary_attention on q, k, v {shape} {_name(dtype)}", drawn=i >= 3))
    return cases


def _rotary_judge(case: Case, got, changed) -> None:
    q, k, v = (t.double() for t in case.inputs())
    positions = torch.arange(q.shape[-2])
    rq, rk, rv = _rope(q, positions), _rope(k, positions), _rope(v, positions)
    plain = _attend(q, k, v)
    if isinstance(got, tuple | list) and len(got) == 2:
        raise CheckFailed("returned two things; return the output only, not (output, weights)", case.what)
    verify(
        got,
        _attend(rq, rk, v),
        [
            (
                _attend(rq, rk, rv),
                "you turned the values too: values carry what a position says, not where it is; turn only q and k",
            ),
            (_attend(rq, k, v), "you turned only the queries; turn the keys as well"),
            (_attend(q, rk, v), "you turned only the keys; turn the queries as well"),
            (
                _rope(plain, positions),
                "you turned after the dot product (the output of attention); the turn goes on q and k, before "
                "their dot product, so that the score sees their positions",
            ),
            (plain, "nothing was turned: this is plain attention; apply RoPE to q and k first"),
            (_attend(rq, rk, v, scale=False), "the scores are not scaled: divide by sqrt(d_head) as in lesson 01"),
        ],
        what=case.what,
        dtype=case.args[0].dtype,
        shape_hint="(batch, heads, q_pos, d_head): one output per query",
    )


rotary_attention = register(
    Exercise(
        LESSON,
        "rotary_attention",
        function="rotary_attention",
        signature="rotary_attention(q, k, v)",
        cases=_rotary_cases,
        judge=_rotary_judge,
        uses=("apply_rope",),
    )
)


# --- exercise 4: look_back -----------------------------------------------------------------------------------------


def _look_back_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(8, 3, torch.float32), (4, 1, torch.float64), (16, 7, torch.float32)]
    for _ in range(2):
        setups.append((2 * int(torch.randint(2, 9, (), generator=g)), int(torch.randint(1, 13, (), generator=g)),
                       _pick(g, DTYPES)))  # fmt: skip
    cases = []
    for i, (d_head, d, dtype) in enumerate(setups):
        k = 0.5 + _randn(g, d_head, dtype=dtype).abs()  # never of length 1, so that a normalised q shows
        cases.append(Case((k, d), what=f"look_back(k ({d_head},) {_name(dtype)}, d={d})", drawn=i >= 3))
    return cases


def _refuse_bool(got, what: str, expected: str) -> None:
    """A bool where a tensor or a number is due: say so (compared as numbers, True would read as 1)."""
    if isinstance(got, bool) or (isinstance(got, torch.Tensor) and got.dtype == torch.bool):
        value = got if isinstance(got, bool) else "a tensor of booleans"
        raise CheckFailed(f"returned {value}, a yes-or-no answer; expected {expected}", what, site="form")


def _refuse_unusable(got, shape: tuple, what: str, expected: str, next_use: str) -> None:
    """Forms the next cell cannot use: a list or a numpy array for a tensor, a shape other than `shape`."""
    if isinstance(got, list | tuple | np.ndarray):
        kind = "a numpy array" if isinstance(got, np.ndarray) else f"a {type(got).__name__}"
        raise CheckFailed(f"returned {kind}; {next_use}, which needs {expected}", what, site="form")
    if isinstance(got, torch.Tensor) and tuple(got.shape) != shape and got.numel() == math.prod(shape):
        raise CheckFailed(f"has shape {tuple(got.shape)}; {next_use}, which needs shape {shape}", what, site="form")


def _look_back_judge(case: Case, got, changed) -> None:
    k, d = case.inputs()
    k64, d_head = k.double(), k.shape[-1]
    expected_form = f"the query, a tensor ({d_head},)"
    _refuse_bool(got, case.what, expected_form)
    _refuse_unusable(got, (d_head,), case.what, expected_form, "the next cell turns it with your apply_rope")

    def turned(by: int) -> torch.Tensor:
        return _rope(k64[None], torch.tensor([by]))[0]

    right = turned(-d)
    verify(
        got,
        right,
        [
            (
                turned(d),
                "you turned k forward by d: that query scores highest on the key d positions *ahead* of it, which a "
                "causal mask hides; turn k back, by -d",
            ),
            (k64, "q = k scores highest at distance 0, the query's own position: turn k back by d"),
            (-right, "that query scores *lowest* on the key d back: q must point along k turned back by d"),
            (right / right.norm(), "q must be as long as k; yours has length 1 (you normalised it)"),
            (turned(-d - 1), "you turned k back by d + 1: the key d back sits at position m - d"),
            (turned(-d + 1), "you turned k back by d - 1: the key d back sits at position m - d"),
        ],
        what=case.what,
        dtype=k.dtype,
        shape_hint=f"({d_head},): one query, as long as k",
        form_hint=expected_form,
    )


look_back = register(
    Exercise(
        LESSON,
        "look_back",
        function="look_back",
        signature="look_back(k, d)",
        cases=_look_back_cases,
        judge=_look_back_judge,
        uses=("apply_rope",),
    )
)


# --- exercise 5: rotary_decode_step -------------------------------------------------------------------------------


def _decode_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [((1, 1, 4), 3, torch.float32), ((2, 3, 8), 5, torch.float64), ((1, 2, 4), 1, torch.float32)]
    for _ in range(2):
        sizes = tuple(int(s) for s in torch.randint(1, 4, (2,), generator=g))
        d_head, past = 2 * int(torch.randint(1, 7, (), generator=g)), int(torch.randint(0, 12, (), generator=g))
        setups.append(((*sizes, d_head), past, _pick(g, DTYPES)))
    cases = []
    for i, ((batch, heads, d_head), past, dtype) in enumerate(setups):
        q, k, v = (_randn(g, batch, heads, 1, d_head, dtype=dtype) for _ in range(3))
        raw = _randn(g, batch, heads, past, d_head, dtype=torch.float64)
        cached_k = _rope(raw, torch.arange(past)).to(dtype)  # keys of positions 0 .. past - 1, already turned
        cached_v = _randn(g, batch, heads, past, d_head, dtype=dtype)
        what = f"rotary_decode_step after {past} cached positions, q, k, v {(batch, heads, 1, d_head)} {_name(dtype)}"
        cases.append(Case((q, k, v, cached_k, cached_v), what=what, drawn=i >= 3))
    return cases


def _decode_judge(case: Case, got, changed) -> None:
    q, k, v, cached_k, cached_v = case.inputs()
    q64, k64, v64, ck, cv = (t.double() for t in (q, k, v, cached_k, cached_v))
    past, dtype = cached_k.shape[-2], q.dtype
    expected_form = "two things, (output, keys)"
    _refuse_bool(got, case.what, expected_form)
    if isinstance(got, list | tuple) and len(got) == 3:
        raise CheckFailed(
            "returned three things; return two, (output, keys): the next cell unpacks `output, keys = ...` "
            "(the values need no turning: the caller appends v itself)",
            case.what,
            site="form",
        )
    output, keys = items(got, 2, what=case.what, names="(output, keys)")

    def at(x: torch.Tensor, position: int) -> torch.Tensor:
        return _rope(x, torch.tensor([position]))

    right_keys = torch.cat((ck, at(k64, past)), dim=-2)  # (batch, heads, past + 1, d_head)
    twice = torch.cat((_rope(ck, torch.arange(past)), at(k64, past)), dim=-2)
    shape = (*q.shape[:2], past + 1, q.shape[-1])
    _refuse_unusable(keys, shape, case.what, f"keys {shape}", "the next call gets them back as cached_k")
    verify(
        keys,
        right_keys,
        [
            (torch.cat((ck, k64), dim=-2), "you cached the new key without turning it: turn it at its position first"),
            (torch.cat((ck, at(k64, past + 1)), dim=-2), _OFF_BY_ONE),
            (torch.cat((ck, at(k64, past - 1)), dim=-2), _OFF_BY_ONE),
            (twice, "the cached keys are already turned, each at its own position: you turned them again"),
            (at(k64, past), "return every key, the cached ones and the new one after them (torch.cat on dim -2)"),
        ],
        what=case.what,
        site="keys",
        dtype=dtype,
        shape_hint="(batch, heads, past + 1, d_head): the cached keys, then the new one",
    )
    out_shape = tuple(q.shape)
    _refuse_unusable(output, out_shape, case.what, f"an output {out_shape}", "the next cell joins the outputs on q_pos")
    values = torch.cat((cv, v64), dim=-2)
    turned_q = at(q64, past)
    verify(
        output,
        _attend(turned_q, right_keys, values),
        [
            (_attend(q64, right_keys, values), "you did not turn the query: it sits at position past, turn it there"),
            (_attend(at(q64, past + 1), right_keys, values), _OFF_BY_ONE),
            (_attend(at(q64, past - 1), right_keys, values), _OFF_BY_ONE),
            (
                _attend(turned_q, right_keys, torch.cat((cv, at(v64, past)), dim=-2)),
                "you turned the new value: values carry what a token says, not where it is; turn only q and k",
            ),
            (_attend(turned_q, right_keys, values, scale=False), "the scores are not scaled: divide by sqrt(d_head)"),
        ],
        what=case.what,
        site="output",
        dtype=dtype,
        shape_hint="(batch, heads, 1, d_head): the new token's output",
    )


_OFF_BY_ONE = (
    "off by one: positions start at 0, so after `past` cached positions the new token sits at position past "
    "= cached_k.shape[-2]"
)

rotary_decode_step = register(
    Exercise(
        LESSON,
        "rotary_decode_step",
        function="rotary_decode_step",
        signature="rotary_decode_step(q, k, v, cached_k, cached_v)",
        cases=_decode_cases,
        judge=_decode_judge,
        uses=("apply_rope",),
    )
)
