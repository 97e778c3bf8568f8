"""Checks for lesson 09, positions. Use: `from mha.checks import lesson09 as check`."""

import torch

from ..attention import attention as reference_attention
from ..multihead import MultiHeadAttention
from ..positions import RotaryMultiHeadAttention
from ..positions import apply_rope as reference_rope
from ..positions import sinusoidal_table as reference_table
from . import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape

LESSON = "09"
WRONG_BASES = (1000.0, 100000.0)  # bases a learner may type instead of 10000 (a base of 100 is the i / d mistake)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """(..., d/2) and (..., d/2) -> (..., d) with even[i] in feature 2i and odd[i] in feature 2i + 1."""
    return torch.stack((even, odd), dim=-1).flatten(-2)


def _angles(seq_positions: torch.Tensor, d: int, base: float = 10000.0, exponent_step: int = 2) -> torch.Tensor:
    """positions (seq,) -> angles (seq, d/2): position * base^(-exponent_step * i / d)."""
    theta = base ** (-exponent_step * torch.arange(d // 2, dtype=torch.float64) / d)
    return seq_positions.double()[:, None] * theta


def _table_variant(seq: int, d_model: int, **kwargs) -> torch.Tensor:
    a = _angles(torch.arange(seq), d_model, **kwargs)
    return _interleave(a.sin(), a.cos()).float()


@exercise(LESSON, "sinusoidal_table")
def sinusoidal_table(fn) -> int:
    """fn(seq, d_model) -> (seq, d_model): sin(p theta_i) in feature 2i, cos(p theta_i) in 2i + 1."""
    cases = [(6, 8), (11, 4), (5, 16)]
    for seq, d_model in cases:
        what = f"sinusoidal_table(seq={seq}, d_model={d_model})"
        got = as_tensor(call(fn, seq, d_model), what)
        expect_shape(got, (seq, d_model), what, "one row per position, one column per feature: (seq, d_model)")
        a = _angles(torch.arange(seq), d_model)
        mistakes = [
            (_interleave(a.cos(), a.sin()), "sine and cosine swapped: the sine goes in the even features 2i"),
            (
                torch.cat((a.sin(), a.cos()), dim=-1),
                "you put all the sines first and all the cosines after (a layout some libraries use); here each "
                "pair sits side by side: sin in feature 2i, cos in feature 2i + 1",
            ),
            (
                _table_variant(seq, d_model, exponent_step=1),
                "theta_i = 10000^(-2i / d_model): you used i / d_model (the same as a base of 100)",
            ),
            (
                _table_variant(seq, d_model, exponent_step=-2),
                "you multiplied the position by 10000^(2i / d_model); divide by it (theta_i = 10000^(-2i / d_model))",
            ),
            (
                _interleave(*(f(_angles(torch.arange(1, seq + 1), d_model)) for f in (torch.sin, torch.cos))),
                "positions start at 0: the first row is sin(0) = 0 and cos(0) = 1",
            ),
        ]
        mistakes += [
            (_table_variant(seq, d_model, base=b), f"wrong frequency base ({b:g}): the paper's base is 10000")
            for b in WRONG_BASES
        ]
        diagnose(got, reference_table(seq, d_model), mistakes, what)
    return len(cases)


def _rope_variant(x, positions, base=10000.0, exponent_step=2, sign=1.0, halves=False, cat_angles=False):
    """The rotation with one thing changed, for the classic mistakes."""
    d = x.shape[-1]
    a = _angles(positions, d, base, exponent_step) * sign  # (seq, d/2)
    if halves:  # pair feature i with feature i + d/2
        first, second = x[..., : d // 2], x[..., d // 2 :]
        cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
        return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
    if cat_angles:  # angles laid out [theta_0 .. theta_{d/2-1}, theta_0 ..]: the two features of a pair differ
        full = torch.cat((a, a), dim=-1)  # (seq, d)
        turned_pair = _interleave(-x[..., 1::2], x[..., 0::2])
        return x * full.cos().to(x.dtype) + turned_pair * full.sin().to(x.dtype)
    cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return _interleave(even * cos - odd * sin, even * sin + odd * cos)


def _rope_cases():
    g = torch.Generator().manual_seed(9)
    return [
        (torch.randn(5, 8, generator=g), torch.arange(5)),
        (torch.randn(2, 3, 4, 6, generator=g), torch.tensor([3, 0, 7, 1])),
        (torch.randn(1, 6, 16, generator=g, dtype=torch.float64), torch.arange(6) + 100),
    ]


@exercise(LESSON, "apply_rope")
def apply_rope(fn) -> int:
    """fn(x (..., seq, d_head), positions (seq,)) -> x with pair (2i, 2i + 1) at position m turned by m theta_i."""
    cases = _rope_cases()
    for x, positions in cases:
        what = f"apply_rope on x {tuple(x.shape)} at positions {positions.tolist()}"
        got = as_tensor(call(fn, x.clone(), positions.clone()), what)
        expect_shape(got, x.shape, what, "a rotation keeps the shape of x")
        mistakes = [
            (
                _rope_variant(x, positions, halves=True),
                "you paired feature i with feature i + d_head / 2 (the 'rotate half' layout of some libraries); "
                "this lesson pairs neighbours, (0, 1), (2, 3), ...",
            ),
            (
                _rope_variant(x, positions, sign=-1.0),
                "each pair turns the wrong way: x'[2i] = x[2i] cos - x[2i+1] sin, x'[2i+1] = x[2i] sin + x[2i+1] cos",
            ),
            (
                _rope_variant(x, positions, cat_angles=True),
                "the two features of a pair must turn by the same angle; your angles are laid out "
                "theta_0, theta_1, ... then again (torch.cat) where each theta_i is needed twice in a row "
                "(repeat_interleave)",
            ),
            (
                _rope_variant(x, positions, exponent_step=1),
                "theta_i = 10000^(-2i / d_head): you used i / d_head (the same as a base of 100)",
            ),
            (
                _rope_variant(x, torch.arange(x.shape[-2]))
                if not torch.equal(positions, torch.arange(len(positions)))
                else None,
                "you turned row j by j theta: use the positions you are given, positions[j]",
            ),
        ]
        mistakes += [
            (_rope_variant(x, positions, base=b), f"wrong frequency base ({b:g}): RoPE's base is 10000")
            for b in WRONG_BASES
        ]
        diagnose(got, reference_rope(x, positions), mistakes, what)
    return len(cases)


def _qkv(seed, batch, heads, seq, d_head):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, seq, d_head, generator=g) for _ in range(3))


@exercise(LESSON, "rotary_attention")
def rotary_attention(fn) -> int:
    """fn(q, k, v) -> attention output with q and k turned by their positions 0..seq-1 (no mask)."""
    cases = [_qkv(10, 1, 1, 5, 4), _qkv(11, 2, 3, 6, 8)]
    for q, k, v in cases:
        what = f"rotary_attention on q, k, v {tuple(q.shape)}"
        got = call(fn, q.clone(), k.clone(), v.clone())
        if isinstance(got, tuple):
            raise CheckFailed(f"{what}: return the output only, not (output, weights)")
        got = as_tensor(got, what)
        expect_shape(got, v.shape, what, "one output per query: (batch, heads, q_pos, d_head)")
        rq, rk, rv = reference_rope(q), reference_rope(k), reference_rope(v)
        plain = reference_attention(q, k, v)[0]
        mistakes = [
            (
                reference_attention(rq, rk, rv)[0],
                "you turned the values too: values carry what a position says, not where it is; turn only q and k",
            ),
            (reference_attention(rq, k, v)[0], "you turned only the queries; turn the keys as well"),
            (reference_attention(q, rk, v)[0], "you turned only the keys; turn the queries as well"),
            (
                reference_rope(plain),
                "you turned after the dot product (the output of attention); the turn goes on q and k, before "
                "their dot product, so that the score sees their positions",
            ),
            (plain, "nothing was turned: this is plain attention; apply RoPE to q and k first"),
            (
                (rq @ rk.transpose(-2, -1)).softmax(-1) @ v,
                "the scores are not scaled: divide by sqrt(d_head) as in lesson 01",
            ),
        ]
        diagnose(got, reference_attention(rq, rk, v)[0], mistakes, what)
    return len(cases)


def _rope_rotate(x, position):
    return reference_rope(x[None], torch.tensor([position]))[0]


def _table_rotate(table):
    def add_position(x, position):  # an absolute scheme: add a position vector
        return x + table[position]

    return add_position


def _turn_by_square(x, position):  # an absolute rotation: the angle grows like position squared
    return reference_rope(x[None], torch.tensor([position * position]))[0]


def _score(rotate, q, k, m, n):
    return float(rotate(q, m) @ rotate(k, n))


@exercise(LESSON, "shift_error")
def shift_error(fn) -> int:
    """fn(rotate, q, k, m, n, shift) -> |score(m, n) - score(m + shift, n + shift)|, score(a, b) = rotate(q, a) .
    rotate(k, b)."""
    g = torch.Generator().manual_seed(12)
    table = torch.randn(64, 8, generator=g)
    encoders = [("RoPE", _rope_rotate), ("an added position vector", _table_rotate(table)),
                ("a turn by position squared", _turn_by_square)]  # fmt: skip
    cases = []
    for name, rotate in encoders:
        q, k = torch.randn(2, 8, generator=g)
        cases.append((name, rotate, q, k, 5, 2, 7))
        cases.append((name, rotate, q, k, 1, 9, 20))
    for name, rotate, q, k, m, n, s in cases:
        what = f"shift_error with {name}, m={m}, n={n}, shift={s}"
        got = float(call(fn, rotate, q.clone(), k.clone(), m, n, s))
        before, after = _score(rotate, q, k, m, n), _score(rotate, q, k, m + s, n + s)
        mistakes = [
            (
                abs(before - _score(rotate, q, k, m + s, n)),
                "you moved only the query; move both positions by the same shift",
            ),
            (
                abs(before - _score(rotate, q, k, m, n + s)),
                "you moved only the key; move both positions by the same shift",
            ),
            (before - after if before - after < -1e-3 else None, "return the size of the difference (abs)"),
            (
                abs(before - _score(rotate, q, k, n + s, m + s)),
                "you swapped the query's and the key's positions after the shift",
            ),
            (before, "that is a score; return the difference between the two scores"),
        ]
        diagnose(got, abs(before - after), mistakes, what)
    return len(cases)


class _Causal(torch.nn.Module):
    """A layer that always applies the causal mask."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x, causal=True)


@exercise(LESSON, "permutation_gap")
def permutation_gap(fn) -> int:
    """fn(layer, x, perm) -> max |layer(x[:, perm])[0] - layer(x)[0][:, perm]|."""
    with torch.random.fork_rng(devices=[]):  # the same layers on every run; the learner's random state untouched
        torch.manual_seed(13)
        layers = [
            ("MultiHeadAttention", MultiHeadAttention(16, 2)),
            ("RotaryMultiHeadAttention", RotaryMultiHeadAttention(16, 2)),
            ("MultiHeadAttention with a causal mask", _Causal(MultiHeadAttention(16, 2))),
        ]
    g = torch.Generator().manual_seed(14)
    x = torch.randn(2, 6, 16, generator=g)
    perm = torch.tensor([2, 0, 5, 1, 3, 4])  # not its own inverse: applying it the wrong way is caught
    for name, layer in layers:
        what = f"permutation_gap with {name}"
        with torch.no_grad():
            got = float(call(fn, layer, x.clone(), perm.clone()))
            out, out_of_permuted = layer(x)[0], layer(x[:, perm])[0]
        gap = out_of_permuted - out[:, perm]
        mistakes = [
            (
                (out_of_permuted - out[:, perm.argsort()]).abs().max().item(),
                "you permuted the output with the inverse permutation; index it with perm, as the input",
            ),
            (
                (out_of_permuted - out).abs().max().item(),
                "compare with the output permuted the same way as the input, layer(x)[0][:, perm]",
            ),
            (gap.abs().mean().item(), "that is the mean difference; return the largest, .max()"),
            (gap.max().item(), "return the largest absolute difference: take .abs() before .max()"),
        ]
        diagnose(got, gap.abs().max().item(), mistakes, what)
    return len(layers)
