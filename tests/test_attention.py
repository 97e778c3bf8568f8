import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mha import attention, attention_numpy, causal_mask, masked_softmax, padding_mask, sdpa, softmax_numpy


def test_attention_by_hand():
    # two keys; the query matches the first key twice as well as the second
    q = torch.tensor([[2.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, w = attention(q, k, v)
    s = 2 / 2**0.5
    w0 = np.exp(s) / (np.exp(s) + 1)
    assert w[0].tolist() == pytest.approx([w0, 1 - w0], abs=1e-6)
    assert out.item() == pytest.approx(10 * w0 + 20 * (1 - w0), abs=1e-5)


def test_weights_are_distributions():
    out, w = attention(torch.randn(2, 5, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3))
    assert out.shape == (2, 5, 3) and w.shape == (2, 5, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert (w >= 0).all()


@pytest.mark.parametrize("masked", ["none", "causal", "padding", "random"])
def test_numpy_equals_torch(masked):
    q, k, v = (
        torch.randn(3, 6, 8, dtype=torch.float64),
        torch.randn(3, 6, 8, dtype=torch.float64),
        torch.randn(3, 6, 5, dtype=torch.float64),
    )
    mask = {
        "none": None,
        "causal": causal_mask(6),
        "padding": padding_mask([6, 4, 1])[:, None, :],
        "random": torch.rand(3, 6, 6) > 0.4,
    }[masked]
    out_t, w_t = attention(q, k, v, mask)
    out_n, w_n = attention_numpy(q.numpy(), k.numpy(), v.numpy(), None if mask is None else mask.numpy())
    np.testing.assert_allclose(w_n, w_t.numpy(), atol=1e-12)
    np.testing.assert_allclose(out_n, out_t.numpy(), atol=1e-12)


@pytest.mark.parametrize("masked", ["none", "causal_flag", "causal_mask", "padding", "random"])
def test_torch_equals_sdpa(masked):
    q, k, v = torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16)
    mask, causal = None, False
    if masked == "causal_flag":
        causal = True
    elif masked == "causal_mask":
        mask = causal_mask(9)
    elif masked == "padding":
        mask = padding_mask([9, 5])[:, None, None, :]
    elif masked == "random":
        mask = torch.rand(2, 3, 9, 9) > 0.3
        mask[..., 0] = True  # keep every row attending somewhere: a fully masked row is tested separately
    out, _ = attention(q, k, v, mask, causal)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(sdpa(q, k, v, mask, causal), ref, atol=1e-6, rtol=0)


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5, 2)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2] = False
    out, w = attention(q, k, v, mask)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert (w[2] == 0).all() and (out[2] == 0).all()
    # the other rows are untouched, and PyTorch's fused kernel agrees
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=0)
    _, w_n = attention_numpy(q.numpy(), k.numpy(), v.numpy(), mask.numpy())
    assert (w_n[2] == 0).all() and not np.isnan(w_n).any()


def test_gradients_do_not_see_nan_on_fully_masked_rows():
    q = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[True, False], [False, False], [True, True]])
    out, _ = attention(q, torch.randn(2, 4), torch.randn(2, 4), mask)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_softmax_numpy_is_stable_for_large_scores():
    w = softmax_numpy(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(w, [[0.5, 0.5, 0.0]])


def test_masked_softmax_puts_no_weight_on_masked_keys():
    w = masked_softmax(torch.randn(3, 4), torch.tensor([[True, False, True, False]]))
    assert (w[:, [1, 3]] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    q_pos=st.integers(1, 7),
    k_pos=st.integers(1, 7),
    d_head=st.integers(1, 9),
    d_v=st.integers(1, 5),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_matches_sdpa(batch, q_pos, k_pos, d_head, d_v, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(batch, q_pos, d_head, generator=g), torch.randn(batch, k_pos, d_head, generator=g)
    v = torch.randn(batch, k_pos, d_v, generator=g)
    out, w = attention(q, k, v, causal=causal)
    assert out.shape == (batch, q_pos, d_v) and w.shape == (batch, q_pos, k_pos)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    out_n, _ = attention_numpy(q.numpy(), k.numpy(), v.numpy(), causal_mask(q_pos, k_pos).numpy() if causal else None)
    np.testing.assert_allclose(out_n, out.numpy(), atol=1e-5)
