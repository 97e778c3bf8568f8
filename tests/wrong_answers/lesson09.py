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


def attention_viewed_as_one_sequence(q, k, v):
    """Turns q.view(seq, d_head), which holds only when batch and heads are 1, and then forgets the turned ones."""
    seq, d_head = q.shape[-2:]
    positions = torch.arange(seq)
    turn(q.view(seq, d_head), positions), turn(k.view(seq, d_head), positions)
    return attention(q, k, v)[0]


# look_back(k, d)


def _at(x, position):
    return turn(x[None], torch.tensor([position]))[0]


def look_forward(k, d):
    return _at(k, d)


def look_at_itself(k, d):
    return k.clone()


def look_away(k, d):
    return -_at(k, -d)


def look_back_normalised(k, d):
    q = _at(k, -d)
    return q / q.norm()


def look_back_one_too_far(k, d):
    return _at(k, -d - 1)


def look_back_as_a_row(k, d):
    return _at(k, -d)[None]  # (1, d_head)


def look_back_as_a_list(k, d):
    return _at(k, -d).tolist()


def look_back_says_whether_it_works(k, d):
    q = _at(k, -d)
    return bool(q @ k > 0)


# rotary_decode_step(q, k, v, cached_k, cached_v)


def _decode(q, k, v, cached_k, cached_v, q_at=None, k_at=None, turn_cache=False, turn_v=False):
    past = cached_k.shape[-2]
    q_at, k_at = past if q_at is None else q_at, past if k_at is None else k_at
    new_k = k if k_at == "unturned" else turn(k, torch.tensor([k_at]))
    keys = torch.cat((turn(cached_k, torch.arange(past)) if turn_cache else cached_k, new_k), dim=-2)
    values = torch.cat((cached_v, turn(v, torch.tensor([past])) if turn_v else v), dim=-2)
    query = q if q_at == "unturned" else turn(q, torch.tensor([q_at]))
    return attention(query, keys, values)[0], keys


def decode_key_unturned(q, k, v, cached_k, cached_v):
    return _decode(q, k, v, cached_k, cached_v, k_at="unturned")


def decode_query_unturned(q, k, v, cached_k, cached_v):
    return _decode(q, k, v, cached_k, cached_v, q_at="unturned")


def decode_counting_from_one(q, k, v, cached_k, cached_v):
    past = cached_k.shape[-2]
    return _decode(q, k, v, cached_k, cached_v, q_at=past + 1, k_at=past + 1)


def decode_cache_turned_again(q, k, v, cached_k, cached_v):
    return _decode(q, k, v, cached_k, cached_v, turn_cache=True)


def decode_value_turned(q, k, v, cached_k, cached_v):
    return _decode(q, k, v, cached_k, cached_v, turn_v=True)


def decode_returns_only_the_new_key(q, k, v, cached_k, cached_v):
    output, keys = _decode(q, k, v, cached_k, cached_v)
    return output, keys[..., -1:, :]


def decode_returns_values_too(q, k, v, cached_k, cached_v):
    output, keys = _decode(q, k, v, cached_k, cached_v)
    return output, keys, torch.cat((cached_v, v), dim=-2)


def decode_output_squeezed(q, k, v, cached_k, cached_v):
    output, keys = _decode(q, k, v, cached_k, cached_v)
    return output[..., 0, :], keys


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
    ("rotary_attention", attention_viewed_as_one_sequence, "raised RuntimeError", "crash"),
    ("look_back", look_forward, "you turned k forward by d", "classic"),
    ("look_back", look_at_itself, "q = k scores highest at distance 0", "classic"),
    ("look_back", look_away, "scores *lowest* on the key d back", "classic"),
    ("look_back", look_back_normalised, "you normalised it", "classic"),
    ("look_back", look_back_one_too_far, "you turned k back by d + 1", "classic"),
    ("look_back", look_back_as_a_row, "has shape (1, ", "form"),
    ("look_back", look_back_as_a_list, "returned a list; the next cell turns it", "form"),
    ("look_back", look_back_says_whether_it_works, "a yes-or-no answer", "form"),
    ("rotary_decode_step", decode_key_unturned, "you cached the new key without turning it", "classic"),
    ("rotary_decode_step", decode_query_unturned, "you did not turn the query", "classic"),
    ("rotary_decode_step", decode_counting_from_one, "off by one", "classic"),
    ("rotary_decode_step", decode_cache_turned_again, "you turned them again", "classic"),
    ("rotary_decode_step", decode_value_turned, "you turned the new value", "classic"),
    ("rotary_decode_step", decode_returns_only_the_new_key, "return every key", "classic"),
    ("rotary_decode_step", decode_returns_values_too, "returned three things", "form"),
    ("rotary_decode_step", decode_output_squeezed, "the next cell joins the outputs on q_pos", "form"),
    ("apply_rope", rope_in_place, "changed its input `x`", "side effect"),
    ("rotary_attention", attention_with_weights, "return the output only", "form"),
]
