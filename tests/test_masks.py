import pytest
import torch

from mha import causal_mask, combine_masks, from_torch_mha_mask, padding_mask, to_torch_mha_mask


def test_causal_mask_allows_self_and_past_only():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert bool(m[i, j]) == (j <= i), (i, j)


def test_causal_mask_rectangular_matches_sdpa_alignment():
    # is_causal=True in scaled_dot_product_attention aligns queries and keys at position 0
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, False, False, False], [True, True, False, False]]


def test_padding_mask_marks_real_tokens():
    m = padding_mask([3, 1], seq=4)
    assert m.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert padding_mask(torch.tensor([2, 2])).shape == (2, 2)


def test_mha_convention_round_trip():
    m = causal_mask(3)
    assert torch.equal(to_torch_mha_mask(m), ~m)
    assert torch.equal(from_torch_mha_mask(to_torch_mha_mask(m)), m)


def test_combine_masks_intersects_and_broadcasts():
    kpm = padding_mask([2, 3], seq=3)
    attn = causal_mask(3)
    m = combine_masks(2, 4, 3, 3, attn_mask=attn, key_padding_mask=kpm)
    assert m.shape == (2, 1, 3, 3)
    expected = attn[None] & kpm[:, None, :]
    assert torch.equal(m[:, 0], expected)
    assert combine_masks(2, 4, 3, 3) is None


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: padding_mask([[1, 2]]), ValueError, "1-D"),
        (lambda: padding_mask([5], seq=3), ValueError, "0..seq=3"),
        (lambda: to_torch_mha_mask(torch.ones(2, 2)), TypeError, "boolean"),
        (lambda: causal_mask(0), ValueError, "q_len must be at least 1"),
        (
            lambda: combine_masks(2, 1, 3, 4, key_padding_mask=torch.ones(2, 3, dtype=torch.bool)),
            ValueError,
            "expected (batch, k_pos) = (2, 4)",
        ),
        (
            lambda: combine_masks(2, 1, 3, 4, attn_mask=torch.ones(4, 3, dtype=torch.bool)),
            ValueError,
            "attn_mask has shape (4, 3): expected (q_pos, k_pos) = (3, 4)",
        ),
        (lambda: combine_masks(2, 1, 3, 4, attn_mask=torch.ones(3, 4)), TypeError, "boolean"),
    ],
)
def test_bad_masks_are_explained(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)
