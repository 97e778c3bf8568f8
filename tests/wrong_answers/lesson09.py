"""Classic mistakes in lesson 09's exercises."""

import torch

from mha import attention
from mha.positions import apply_rope as turn


def _interleave(even, odd):
    return torch.stack((even, odd), dim=-1).flatten(-2)


def _angles(positions, d, base=10000.0, step=2):
    return positions.double()[:, None] * base ** (-step * torch.arange(d // 2, dtype=torch.float64) / d)


# sinusoidal_table(seq, d_model)


def table_sin_cos_swapped(seq, d_model):
    a = _angles(torch.arange(seq), d_model)
    return _interleave(a.cos(), a.sin()).float()


def table_in_halves(seq, d_model):
    a = _angles(torch.arange(seq), d_model)
    return torch.cat((a.sin(), a.cos()), dim=-1).float()


def table_exponent_without_the_2(seq, d_model):
    a = _angles(torch.arange(seq), d_model, step=1)
    return _interleave(a.sin(), a.cos()).float()


def table_multiplied_by_the_frequency(seq, d_model):
    a = _angles(torch.arange(seq), d_model, step=-2)
    return _interleave(a.sin(), a.cos()).float()


def table_positions_from_1(seq, d_model):
    a = _angles(torch.arange(1, seq + 1), d_model)
    return _interleave(a.sin(), a.cos()).float()


def table_base_1000(seq, d_model):
    a = _angles(torch.arange(seq), d_model, base=1000.0)
    return _interleave(a.sin(), a.cos()).float()


def table_transposed(seq, d_model):
    a = _angles(torch.arange(seq), d_model)
    return _interleave(a.sin(), a.cos()).T.float()


# apply_rope(x, positions)


def _turn(x, a):
    cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return _interleave(even * cos - odd * sin, even * sin + odd * cos)


def rope_rotate_half(x, positions):
    d = x.shape[-1]
    a = _angles(positions, d)
    cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
    first, second = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


def rope_backwards(x, positions):
    return _turn(x, -_angles(positions, x.shape[-1]))


def rope_angles_concatenated(x, positions):
    a = _angles(positions, x.shape[-1])
    full = torch.cat((a, a), dim=-1)  # should have been a.repeat_interleave(2, dim=-1)
    return x * full.cos().to(x.dtype) + _interleave(-x[..., 1::2], x[..., 0::2]) * full.sin().to(x.dtype)


def rope_exponent_without_the_2(x, positions):
    return _turn(x, _angles(positions, x.shape[-1], step=1))


def rope_ignores_positions(x, positions):
    return _turn(x, _angles(torch.arange(x.shape[-2]), x.shape[-1]))


def rope_base_100000(x, positions):
    return _turn(x, _angles(positions, x.shape[-1], base=100000.0))


# rotary_attention(q, k, v)


def attention_values_turned_too(q, k, v):
    return attention(turn(q), turn(k), turn(v))[0]


def attention_only_queries_turned(q, k, v):
    return attention(turn(q), k, v)[0]


def attention_turned_after(q, k, v):
    return turn(attention(q, k, v)[0])


def attention_not_turned(q, k, v):
    return attention(q, k, v)[0]


def attention_unscaled(q, k, v):
    return (turn(q) @ turn(k).transpose(-2, -1)).softmax(-1) @ v


# shift_error(rotate, q, k, m, n, shift)


def _dot(rotate, q, k, m, n):
    return float(rotate(q, m) @ rotate(k, n))


def shift_only_the_query(rotate, q, k, m, n, shift):
    return abs(_dot(rotate, q, k, m, n) - _dot(rotate, q, k, m + shift, n))


def shift_only_the_key(rotate, q, k, m, n, shift):
    return abs(_dot(rotate, q, k, m, n) - _dot(rotate, q, k, m, n + shift))


def shift_swapped(rotate, q, k, m, n, shift):
    return abs(_dot(rotate, q, k, m, n) - _dot(rotate, q, k, n + shift, m + shift))


def shift_signed(rotate, q, k, m, n, shift):
    return _dot(rotate, q, k, m, n) - _dot(rotate, q, k, m + shift, n + shift)


def shift_returns_a_score(rotate, q, k, m, n, shift):
    return _dot(rotate, q, k, m, n)


# permutation_gap(layer, x, perm)


def gap_inverse_permutation(layer, x, perm):
    return (layer(x[:, perm])[0] - layer(x)[0][:, perm.argsort()]).abs().max().item()


def gap_output_not_permuted(layer, x, perm):
    return (layer(x[:, perm])[0] - layer(x)[0]).abs().max().item()


def gap_mean(layer, x, perm):
    return (layer(x[:, perm])[0] - layer(x)[0][:, perm]).abs().mean().item()


def gap_signed_max(layer, x, perm):
    return (layer(x[:, perm])[0] - layer(x)[0][:, perm]).max().item()


def rope_returns_x(x, positions):
    return x.clone()


def rope_in_place(x, positions):
    even, odd = x[..., 0::2].clone(), x[..., 1::2].clone()
    a = _angles(positions, x.shape[-1])
    cos, sin = a.cos().to(x.dtype), a.sin().to(x.dtype)
    x[..., 0::2] = even * cos - odd * sin
    x[..., 1::2] = even * sin + odd * cos
    return x


def attention_with_weights(q, k, v):
    positions = torch.arange(q.shape[-2])
    return attention(turn(q, positions), turn(k, positions), v)


WRONG = [
    ("sinusoidal_table", table_sin_cos_swapped, "sine and cosine swapped", "classic"),
    ("sinusoidal_table", table_in_halves, "all the sines first", "classic"),
    ("sinusoidal_table", table_exponent_without_the_2, "you used i / d_model", "classic"),
    ("sinusoidal_table", table_multiplied_by_the_frequency, "divide by it", "classic"),
    ("sinusoidal_table", table_positions_from_1, "positions start at 0", "classic"),
    ("sinusoidal_table", table_base_1000, "wrong frequency base (1000)", "classic"),
    ("sinusoidal_table", table_transposed, "that is (d_model, seq)", "classic"),
    ("apply_rope", rope_rotate_half, "pairs neighbours", "classic"),
    ("apply_rope", rope_backwards, "turns the wrong way", "classic"),
    ("apply_rope", rope_angles_concatenated, "must turn by the same angle", "classic"),
    ("apply_rope", rope_exponent_without_the_2, "you used i / d_head", "classic"),
    ("apply_rope", rope_ignores_positions, "use the positions you are given", "classic"),
    ("apply_rope", rope_base_100000, "wrong frequency base (100000)", "classic"),
    ("apply_rope", rope_returns_x, "nothing was turned", "classic"),
    ("rotary_attention", attention_values_turned_too, "you turned the values too", "classic"),
    ("rotary_attention", attention_only_queries_turned, "you turned only the queries", "classic"),
    ("rotary_attention", attention_turned_after, "you turned after the dot product", "classic"),
    ("rotary_attention", attention_not_turned, "nothing was turned", "classic"),
    ("rotary_attention", attention_unscaled, "the scores are not scaled", "classic"),
    ("shift_error", shift_only_the_query, "you moved only the query", "classic"),
    ("shift_error", shift_only_the_key, "you moved only the key", "classic"),
    ("shift_error", shift_swapped, "you swapped the query's and the key's positions", "classic"),
    ("shift_error", shift_signed, "return the size of the difference", "classic"),
    ("shift_error", shift_returns_a_score, "that is a score", "classic"),
    ("permutation_gap", gap_inverse_permutation, "inverse permutation", "classic"),
    ("permutation_gap", gap_output_not_permuted, "permuted the same way as the input", "classic"),
    ("permutation_gap", gap_mean, "that is the mean difference", "classic"),
    ("permutation_gap", gap_signed_max, "take .abs() before .max()", "classic"),
    ("apply_rope", rope_in_place, "changed its input `x`", "side effect"),
    ("rotary_attention", attention_with_weights, "return the output only", "form"),
]
