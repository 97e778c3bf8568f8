"""Position schemes: attention alone is blind to order, and each scheme computes what its paper defines.

RoPE is checked against its defining property (a score depends on the positions only through m - n) and three ways
of writing it against each other: pairs turned by cos/sin, complex numbers, and block-diagonal rotation matrices.
"""

import math

import pytest
import torch

from mha import MultiHeadAttention, attention
from mha.heads import merge_heads, split_heads
from mha.positions import (
    SCHEMES,
    RotaryMultiHeadAttention,
    SinusoidalPositions,
    apply_rope,
    apply_rope_complex,
    attention_layer,
    frequencies,
    position_embedding,
    rope_matrix,
    sinusoidal_table,
)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


# --- without positions, attention is blind to order ---------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 4])
def test_permuting_the_input_permutes_the_output_exactly(heads):
    g = _generator(0)
    layer = MultiHeadAttention(32, heads).double()
    x = torch.randn(2, 9, 32, generator=g, dtype=torch.float64)
    perm = torch.randperm(9, generator=g)
    with torch.no_grad():
        out, _ = layer(x)
        out_of_permuted, _ = layer(x[:, perm])
    torch.testing.assert_close(out_of_permuted, out[:, perm], atol=1e-12, rtol=0)


def test_permuting_keys_and_values_together_changes_no_query_answer():
    g = _generator(1)
    q, k, v = (torch.randn(2, 5, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    perm = torch.randperm(7, generator=g)
    out, _ = attention(q, k, v)
    out_permuted_keys, _ = attention(q, k[..., perm, :], v[..., perm, :])
    torch.testing.assert_close(out_permuted_keys, out, atol=1e-12, rtol=0)


@pytest.mark.parametrize("broken_by", ["causal mask", "rope", "learned table"])
def test_a_mask_or_a_position_scheme_breaks_the_symmetry(broken_by):
    g = _generator(2)
    torch.manual_seed(0)
    layer = RotaryMultiHeadAttention(16, 2) if broken_by == "rope" else MultiHeadAttention(16, 2)
    table = torch.randn(6, 16, generator=g) if broken_by == "learned table" else torch.zeros(6, 16)
    x = torch.randn(1, 6, 16, generator=g)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    causal = broken_by == "causal mask"
    with torch.no_grad():
        out, _ = layer(x + table, causal=causal)
        out_of_permuted, _ = layer(x[:, perm] + table, causal=causal)
    assert (out_of_permuted - out[:, perm]).abs().max() > 1e-2


# --- the sinusoidal table -----------------------------------------------------------------------------------------


def test_sinusoidal_table_is_vaswanis_formula_entry_by_entry():
    seq, d_model = 11, 12
    table = sinusoidal_table(seq, d_model)
    assert table.shape == (seq, d_model) and table.dtype == torch.float32
    for p in range(seq):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_rows_at_a_fixed_distance_are_one_rotation_apart():
    # Vaswani et al.'s reason for the table: PE[p + k] is a fixed linear map (a rotation per pair) of PE[p]
    table = sinusoidal_table(40, 8).double()
    shift = 5
    # a row times a rotation matrix on the right turns each (sin, cos) pair by -shift * theta_i: the sine advances
    moved = table[:-shift] @ rope_matrix(shift, 8)
    torch.testing.assert_close(moved, table[shift:], atol=1e-6, rtol=0)


def test_sinusoidal_module_looks_rows_up_and_trains_nothing():
    module = SinusoidalPositions(20, 8)
    assert list(module.parameters()) == [] and module.state_dict() == {}
    torch.testing.assert_close(module(torch.tensor([3, 7])), sinusoidal_table(20, 8)[[3, 7]])


def test_frequencies_run_from_one_radian_to_almost_one_over_the_base():
    theta = frequencies(16)
    assert theta[0] == 1.0 and theta[-1] == pytest.approx(10000 ** (-14 / 16))
    assert (theta[1:] < theta[:-1]).all()


# --- RoPE: three ways to write it, and its defining property ---------------------------------------------------------


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_rope_pairs_complex_numbers_and_rotation_matrices_agree(dtype, atol):
    g = _generator(3)
    x = torch.randn(2, 3, 10, 8, generator=g, dtype=dtype)
    positions = torch.randint(0, 200, (10,), generator=g)
    by_pairs = apply_rope(x, positions)
    by_complex = apply_rope_complex(x, positions)
    by_matrix = torch.stack(
        [rope_matrix(int(m), 8).to(dtype) @ x[..., i, :, None] for i, m in enumerate(positions)], dim=-3
    )[..., 0]  # (2, 3, 10, 8)
    assert by_pairs.dtype == dtype
    torch.testing.assert_close(by_pairs, by_complex, atol=atol, rtol=0)
    torch.testing.assert_close(by_pairs, by_matrix, atol=atol, rtol=0)


@pytest.mark.parametrize("form", [apply_rope, apply_rope_complex])
def test_a_row_of_positions_per_sequence_turns_each_sequence_by_its_own(form):
    """Positions (batch, seq), as a KV cache under left padding needs them: each sequence as if turned alone."""
    x = torch.randn(3, 2, 5, 8, generator=_generator(4), dtype=torch.float64)  # (batch, heads, seq, d_head)
    positions = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    turned = form(x, positions)
    for b in range(3):
        torch.testing.assert_close(turned[b], form(x[b], positions[b]), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"or \(batch, seq\) for x of shape \(batch, heads, seq, d_head\)"):
        form(x, positions[:2])


@pytest.mark.parametrize("seed", range(5))
def test_rope_score_depends_only_on_the_offset(seed):
    """(R_m q) . (R_n k) = (R_{m+s} q) . (R_{n+s} k) for random vectors, positions and shifts, to 1e-5."""
    g = _generator(seed)
    d_head = 2 * int(torch.randint(1, 33, (), generator=g))
    q, k = torch.randn(2, 50, d_head, generator=g, dtype=torch.float64)
    m, n = torch.randint(0, 1000, (2, 50), generator=g)
    shift = torch.randint(-500, 5000, (50,), generator=g)
    m, n = m + 500, n + 500  # keep m + shift and n + shift non-negative (it would not matter: angles can be negative)

    def scores(qm, kn):  # 50 pairs: row r is query q[r] at position qm[r] against key k[r] at kn[r]
        return (apply_rope(q, qm) * apply_rope(k, kn)).sum(-1)

    torch.testing.assert_close(scores(m, n), scores(m + shift, n + shift), atol=1e-5, rtol=0)
    # and it does depend on the offset: the same positions moved apart change the score
    assert (scores(m, n) - scores(m, n + 7)).abs().max() > 1e-2


def test_rope_score_is_a_function_of_the_offset_in_float32_too():
    g = _generator(7)
    q, k = torch.randn(2, 1, 64, generator=g)
    base_score = (apply_rope(q, torch.tensor([3])) * apply_rope(k, torch.tensor([0]))).sum()
    for start in (10, 100, 400):
        moved = (apply_rope(q, torch.tensor([start + 3])) * apply_rope(k, torch.tensor([start]))).sum()
        assert moved.item() == pytest.approx(base_score.item(), abs=1e-4)


def test_rope_keeps_lengths_and_position_zero_is_the_identity():
    g = _generator(4)
    x = torch.randn(6, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x, torch.zeros(6, dtype=torch.long)), x)
    torch.testing.assert_close(rope_matrix(9, 16) @ rope_matrix(9, 16).T, torch.eye(16, dtype=torch.float64))


def test_rope_pairs_neighbouring_features():
    x = torch.zeros(2, 4)
    x[1, 0] = 1.0  # feature 0 at position 1: turned by 1 radian into features 0 and 1, nothing else
    turned = apply_rope(x)
    torch.testing.assert_close(turned[1], torch.tensor([math.cos(1.0), math.sin(1.0), 0.0, 0.0]))


# --- the rotary layer ----------------------------------------------------------------------------------------------


def test_rotary_layer_turns_queries_and_keys_and_leaves_values_alone():
    torch.manual_seed(0)
    layer = RotaryMultiHeadAttention(24, 3).double()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    with torch.no_grad():
        out, weights = layer(x, causal=True, need_weights=True, average_weights=False)
        q, k, v = (split_heads(t, 3) for t in layer.project(x, x, x))  # (batch, heads, seq, d_head)
        manual, manual_weights = attention(apply_rope(q), apply_rope(k), v, causal=True)
        manual = layer.out_proj(merge_heads(manual))
    torch.testing.assert_close(out, manual)
    torch.testing.assert_close(weights, manual_weights)


def test_rotary_layer_has_the_parameters_of_the_plain_layer():
    plain, rotary = MultiHeadAttention(16, 2), RotaryMultiHeadAttention(16, 2)
    rotary.load_state_dict(plain.state_dict())  # same names, same shapes: RoPE adds no parameter
    assert sum(p.numel() for p in rotary.parameters()) == sum(p.numel() for p in plain.parameters())


def test_rotary_scores_see_only_offsets_when_the_input_repeats():
    # the same vector at every position: a plain layer's scores are all equal; RoPE's depend on q_pos - k_pos only
    torch.manual_seed(1)
    layer = RotaryMultiHeadAttention(16, 2)
    x = torch.randn(1, 1, 16).expand(1, 12, 16)
    with torch.no_grad():
        q, k, _ = (split_heads(t, 2) for t in layer.project(x, x, x))  # (1, heads, 12, d_head)
        s = apply_rope(q) @ apply_rope(k).transpose(-2, -1)  # (1, heads, q_pos, k_pos)
    spread = []
    for d in range(-11, 12):
        same_offset = s.diagonal(offset=-d, dim1=-2, dim2=-1)  # (1, heads, 12 - |d|): every (i, i - d)
        spread.append((same_offset - same_offset[..., :1]).abs().max().item())
    assert max(spread) < 1e-4
    assert (s[..., 5, 2] - s[..., 5, 3]).abs().max() > 1e-3, "different offsets, different scores"


# --- bad input gets a clear error -----------------------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(4, 7)
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"positions must be integers of shape \(seq,\) = \(3,\)"):
        apply_rope(torch.randn(3, 4), torch.arange(4))
    with pytest.raises(ValueError, match="dtype torch.float32"):
        apply_rope(torch.randn(3, 4), torch.arange(3.0))
    with pytest.raises(TypeError, match="floating-point"):
        apply_rope(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="base must be a finite number greater than 1"):
        frequencies(8, base=1.0)
    with pytest.raises(ValueError, match=r"d_head = d_model // heads must be an even"):
        RotaryMultiHeadAttention(12, 4)
    with pytest.raises(ValueError, match="unknown position scheme 'alibi'"):
        position_embedding("alibi", 8, 8)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_gives_a_table_or_none_and_a_layer(scheme):
    table = position_embedding(scheme, 10, 8)
    layer = attention_layer(scheme, 8, 2)
    assert (table is None) == (scheme in ("none", "rope"))
    assert isinstance(layer, RotaryMultiHeadAttention) == (scheme == "rope")
