"""Checks for lesson 09, positions. Use: `from mha.checks import lesson09 as check`.

Cases vary the sizes (seq, d_model and d_head, leading batch and head dimensions), the dtype (float32 and float64)
and the positions (from 0, shuffled, far from 0); two are drawn afresh on every run. The encoders and layers that
the last two exercises receive are built from plain specs (`Build`), the same in the learner's process and the
judge's.
"""

import math

import torch
from torch import nn

from ..multihead import MultiHeadAttention
from ..positions import RotaryMultiHeadAttention
from ..positions import apply_rope as reference_rope
from . import Build, Case, CheckFailed, Exercise, builder, register, verify

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


# --- exercise 4: shift_error -------------------------------------------------------------------------------------

ENCODERS = {
    "rope": "RoPE",
    "added": "an added position vector",
    "square": "a turn by position squared",
}


@builder("lesson09_encoder")
def build_encoder(scheme: str, d: int = 8, seed: int = 12):
    """rotate(x (d,), position) -> x encoded at that position: RoPE, a random table added, or a turn by position^2."""
    if scheme == "rope":

        def rope(x, position):
            return reference_rope(x[None], torch.tensor([position]))[0]

        return rope
    if scheme == "added":
        table = torch.randn(64, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

        def add_position(x, position):  # an absolute scheme: add a position vector
            return x + table[position].to(x.dtype)

        return add_position
    if scheme == "square":

        def turn_by_square(x, position):  # an absolute rotation: the angle grows like position squared
            return reference_rope(x[None], torch.tensor([position * position]))[0]

        return turn_by_square
    raise ValueError(f"unknown encoder {scheme!r}: expected one of {list(ENCODERS)}")


def _shift_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [
        ("rope", 5, 2, 7, torch.float64),
        ("rope", 1, 9, 20, torch.float32),
        ("added", 5, 2, 7, torch.float64),
        ("added", 1, 9, 20, torch.float32),
        ("square", 5, 2, 7, torch.float64),
    ]
    for _ in range(2):
        m, n, shift = (int(p) for p in torch.randint(0, 21, (3,), generator=g))
        setups.append((_pick(g, list(ENCODERS)), m, n, shift, _pick(g, DTYPES)))
    fixed = torch.Generator().manual_seed(12)  # the fixed cases' vectors include a negative difference
    cases = []
    for i, (scheme, m, n, shift, dtype) in enumerate(setups):
        q, k = _randn(fixed if i < 5 else g, 2, 8, dtype=dtype)
        what = f"shift_error with {ENCODERS[scheme]}, q and k (8,) {_name(dtype)}, m={m}, n={n}, shift={shift}"
        cases.append(Case((Build("lesson09_encoder", {"scheme": scheme}), q, k, m, n, shift), what=what, drawn=i >= 5))
    return cases


def _number(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _shift_judge(case: Case, got, changed) -> None:
    rotate, q, k, m, n, s = case.inputs()
    dtype = q.dtype
    q, k = q.double(), k.double()  # judged in float64, with the tolerance of the learner's dtype

    def score(a, b):
        return float(rotate(q, a) @ rotate(k, b))

    before, after = score(m, n), score(m + s, n + s)
    signed = before - after
    verify(
        got,
        _number(abs(signed)),
        [
            (_number(abs(before - score(m + s, n))), "you moved only the query; move both positions by the same shift"),
            (_number(abs(before - score(m, n + s))), "you moved only the key; move both positions by the same shift"),
            (_number(signed), "return the size of the difference (abs)"),
            (
                _number(abs(before - score(n + s, m + s))),
                "you swapped the query's and the key's positions after the shift",
            ),
            (_number(before), "that is a score; return the difference between the two scores"),
        ],
        what=case.what,
        dtype=dtype,
        shape_hint="one number",
        form_hint="one number, |score(m, n) - score(m + shift, n + shift)|",
    )


shift_error = register(
    Exercise(
        LESSON,
        "shift_error",
        function="shift_error",
        signature="shift_error(rotate, q, k, m, n, shift)",
        cases=_shift_cases,
        judge=_shift_judge,
    )
)


# --- exercise 5: permutation_gap ---------------------------------------------------------------------------------

LAYERS = {
    "plain": "MultiHeadAttention",
    "rotary": "RotaryMultiHeadAttention",
    "causal": "MultiHeadAttention with a causal mask",
}


class _Causal(torch.nn.Module):
    """A layer that always applies the causal mask."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x, causal=True)


@builder("lesson09_layer")
def build_layer(kind: str, dtype: str = "float64", d_model: int = 16, heads: int = 2, seed: int = 13) -> nn.Module:
    """An attention layer with weights drawn from `seed` (the learner's random state untouched), in `dtype`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "plain":
            layer = MultiHeadAttention(d_model, heads)
        elif kind == "rotary":
            layer = RotaryMultiHeadAttention(d_model, heads)
        elif kind == "causal":
            layer = _Causal(MultiHeadAttention(d_model, heads))
        else:
            raise ValueError(f"unknown layer {kind!r}: expected one of {list(LAYERS)}")
    return layer.to(getattr(torch, dtype))


def _gap_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    perm = [2, 0, 5, 1, 3, 4]  # not its own inverse: applying it the wrong way is caught
    setups = [("plain", 6, perm, torch.float32), ("rotary", 6, perm, torch.float64), ("causal", 6, perm, torch.float32)]
    for _ in range(2):
        seq = int(torch.randint(3, 10, (), generator=g))
        drawn = torch.randperm(seq, generator=g)
        while torch.equal(drawn[drawn], torch.arange(seq)):  # its own inverse: a wrong direction would pass
            drawn = torch.randperm(seq, generator=g)
        setups.append((_pick(g, list(LAYERS)), seq, drawn.tolist(), _pick(g, DTYPES)))
    fixed = torch.Generator().manual_seed(14)  # the fixed cases' inputs include a negative largest gap
    cases = []
    for i, (kind, seq, order, dtype) in enumerate(setups):
        x = _randn(fixed if i < 3 else g, 2, seq, 16, dtype=dtype)
        layer = Build("lesson09_layer", {"kind": kind, "dtype": _name(dtype)})
        what = f"permutation_gap with {LAYERS[kind]}, x (2, {seq}, 16) {_name(dtype)}, perm {order}"
        cases.append(Case((layer, x, torch.tensor(order)), what=what, drawn=i >= 3))
    return cases


def _gap_judge(case: Case, got, changed) -> None:
    layer, x, perm = case.inputs()
    dtype = x.dtype
    layer, x = layer.double(), x.double()  # judged in float64, with the tolerance of the learner's dtype
    out, out_of_permuted = layer(x)[0], layer(x[:, perm])[0]
    gap = out_of_permuted - out[:, perm]
    verify(
        got,
        gap.abs().max(),
        [
            (
                (out_of_permuted - out[:, perm.argsort()]).abs().max(),
                "you permuted the output with the inverse permutation; index it with perm, as the input",
            ),
            (
                (out_of_permuted - out).abs().max(),
                "compare with the output permuted the same way as the input, layer(x)[0][:, perm]",
            ),
            (gap.abs().mean(), "that is the mean difference; return the largest, .max()"),
            (gap.max(), "return the largest absolute difference: take .abs() before .max()"),
        ],
        what=case.what,
        dtype=dtype,
        shape_hint="one number",
        form_hint="one number, the largest absolute difference",
    )


permutation_gap = register(
    Exercise(
        LESSON,
        "permutation_gap",
        function="permutation_gap",
        signature="permutation_gap(layer, x, perm)",
        cases=_gap_cases,
        judge=_gap_judge,
    )
)
