import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mha import (
    AttentionHead,
    MultiHeadAttention,
    MultiHeadAttentionEinsum,
    MultiHeadAttentionLoop,
    MultiHeadAttentionSDPA,
    causal_mask,
    padding_mask,
    to_torch_mha_mask,
)

TOL = dict(atol=1e-5, rtol=0)


def torch_pair(d_model=16, heads=4, bias=True):
    ref = nn.MultiheadAttention(d_model, heads, bias=bias, batch_first=True)
    if bias:  # PyTorch starts biases at zero, which would hide a bias that is copied wrongly
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref, MultiHeadAttention.from_torch(ref)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("average", [True, False])
def test_matches_torch_multihead_attention_self(bias, average):
    ref, ours = torch_pair(bias=bias)
    x = torch.randn(3, 7, 16)
    out, w = ours(x, need_weights=True, average_weights=average)
    out_ref, w_ref = ref(x, x, x, need_weights=True, average_attn_weights=average)
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(w, w_ref, **TOL)


def test_matches_torch_with_masks_and_cross_attention():
    ref, ours = torch_pair()
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 8, 16)
    kpm = padding_mask([8, 6, 3])  # ours: True = real token
    attn = torch.rand(5, 8) > 0.3
    attn[:, 0] = True
    out, w = ours(q, kv, kv, key_padding_mask=kpm, attn_mask=attn, need_weights=True, average_weights=False)
    out_ref, w_ref = ref(
        q,
        kv,
        kv,
        key_padding_mask=to_torch_mha_mask(kpm),
        attn_mask=to_torch_mha_mask(attn),
        need_weights=True,
        average_attn_weights=False,
    )
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(w, w_ref, **TOL)


def test_matches_torch_with_per_head_mask():
    ref, ours = torch_pair(heads=2)
    x = torch.randn(2, 4, 16)
    attn = torch.rand(2, 2, 4, 4) > 0.5
    attn[..., 0] = True
    out, _ = ours(x, attn_mask=attn)
    out_ref, _ = ref(x, x, x, attn_mask=to_torch_mha_mask(attn.reshape(4, 4, 4)))  # torch wants (batch*heads, ...)
    torch.testing.assert_close(out, out_ref, **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_loop_equals_batched_equals_sdpa(causal):
    batched = MultiHeadAttention(24, 3)
    loop = MultiHeadAttentionLoop.from_batched(batched)
    fused = MultiHeadAttentionSDPA(24, 3)
    fused.load_state_dict(batched.state_dict())
    einsum = MultiHeadAttentionEinsum(24, 3)
    einsum.load_state_dict(batched.state_dict())
    x = torch.randn(2, 6, 24)
    kpm = padding_mask([6, 4])
    out_b, w_b = batched(x, key_padding_mask=kpm, causal=causal, need_weights=True, average_weights=False)
    out_l, w_l = loop(x, key_padding_mask=kpm, causal=causal, need_weights=True, average_weights=False)
    out_f, w_f = fused(x, key_padding_mask=kpm, causal=causal)
    out_e, w_e = einsum(x, key_padding_mask=kpm, causal=causal, need_weights=True, average_weights=False)
    torch.testing.assert_close(out_e, out_b, **TOL)
    torch.testing.assert_close(w_e, w_b, **TOL)
    torch.testing.assert_close(out_l, out_b, **TOL)
    torch.testing.assert_close(w_l, w_b, **TOL)
    torch.testing.assert_close(out_f, out_b, **TOL)
    assert w_f is None


def test_same_parameter_count_loop_and_batched():
    for heads in (1, 2, 4, 8):
        n_loop = sum(p.numel() for p in MultiHeadAttentionLoop(64, heads).parameters())
        n_batched = sum(p.numel() for p in MultiHeadAttention(64, heads).parameters())
        assert n_loop == n_batched == 4 * 64 * 64 + 4 * 64


def test_gradients_flow_and_match_between_versions():
    batched = MultiHeadAttention(12, 3)
    loop = MultiHeadAttentionLoop.from_batched(batched)
    x1 = torch.randn(2, 5, 12, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    batched(x1, causal=True)[0].square().sum().backward()
    loop(x2, causal=True)[0].square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in batched.parameters())
    # head h's W_Q gradient is rows h*d_head.. of the big W_Q gradient
    g_q = batched.in_proj.weight.grad[:12]
    for h, head in enumerate(loop.attention_heads):
        torch.testing.assert_close(head.q_proj.weight.grad, g_q[4 * h : 4 * h + 4], **TOL)
    torch.testing.assert_close(loop.out_proj.weight.grad, batched.out_proj.weight.grad, **TOL)


def test_head_mask_zero_removes_exactly_that_head():
    m = MultiHeadAttention(8, 2, bias=False)
    x = torch.randn(1, 3, 8)
    loop = MultiHeadAttentionLoop.from_batched(m)
    out, _ = m(x, head_mask=torch.tensor([0.0, 1.0]))
    # what head 1 alone writes: its output times its slice of W_O
    head1, _ = loop.attention_heads[1](x, x, x)
    torch.testing.assert_close(out, head1 @ m.out_proj.weight[:, 4:].T, **TOL)


def test_single_head_module():
    head = AttentionHead(8, 3)
    out, w = head(torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8))
    assert out.shape == (2, 4, 3) and w.shape == (2, 4, 6)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    q_pos=st.integers(1, 6),
    k_pos=st.integers(1, 6),
    heads=st.integers(1, 4),
    d_head=st.integers(1, 5),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_all_versions_agree_with_torch(batch, q_pos, k_pos, heads, d_head, causal, seed):
    torch.manual_seed(seed)
    d_model = heads * d_head
    ref, ours = torch_pair(d_model, heads)
    loop = MultiHeadAttentionLoop.from_batched(ours)
    q, kv = torch.randn(batch, q_pos, d_model), torch.randn(batch, k_pos, d_model)
    attn = causal_mask(q_pos, k_pos) if causal else None
    out_ref, w_ref = ref(
        q, kv, kv, attn_mask=None if attn is None else ~attn, need_weights=True, average_attn_weights=False
    )
    for module in (ours, loop):
        out, w = module(q, kv, kv, causal=causal, need_weights=True, average_weights=False)
        assert out.shape == (batch, q_pos, d_model) and w.shape == (batch, heads, q_pos, k_pos)
        torch.testing.assert_close(out, out_ref, **TOL)
        torch.testing.assert_close(w, w_ref, **TOL)


BAD = [
    (lambda m: MultiHeadAttention(10, 4), ValueError, "d_model=10 is not divisible by heads=4"),
    (lambda m: m(torch.randn(2, 5, 12)), ValueError, "expected (batch, seq, d_model) with d_model=16"),
    (lambda m: m(torch.randn(5, 16)), ValueError, "query must have shape (batch, seq, d_model), got 2 dimensions"),
    (lambda m: m(torch.randint(0, 5, (2, 5, 16))), TypeError, "query must hold floating-point numbers"),
    (
        lambda m: m(torch.randn(2, 5, 16), torch.randn(2, 6, 16), torch.randn(2, 7, 16)),
        ValueError,
        "key and value must share k_pos",
    ),
    (
        lambda m: m(torch.randn(2, 5, 16), key_padding_mask=torch.ones(2, 4, dtype=torch.bool)),
        ValueError,
        "key_padding_mask has shape (2, 4): expected (batch, k_pos) = (2, 5)",
    ),
    (
        lambda m: m(torch.randn(2, 5, 16), key_padding_mask=torch.ones(2, 5)),
        TypeError,
        "key_padding_mask must be a boolean tensor, got torch.float32",
    ),
    (
        lambda m: m(torch.randn(2, 5, 16), attn_mask=torch.ones(2, 5, dtype=torch.bool)),
        ValueError,
        "attn_mask has shape (2, 5): expected (q_pos, k_pos) = (5, 5)",
    ),
    (lambda m: m(torch.randn(2, 5, 16), head_mask=torch.ones(3)), ValueError, "expected (heads,) = (4,)"),
]


@pytest.mark.parametrize("call, error, words", BAD)
def test_bad_input_is_explained(call, error, words):
    m = MultiHeadAttention(16, 4)
    with pytest.raises(error) as info:
        call(m)
    assert words in str(info.value)


def test_attention_bad_input_is_explained():
    from mha import attention

    cases = [
        (
            (torch.randn(2, 4, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool)),
            ValueError,
            "mask has shape (2, 5) but scores have shape (2, 4, 5): expected (q_pos, k_pos) or (batch, q_pos, k_pos)",
        ),
        ((torch.randn(4, 3), torch.randn(5, 2), torch.randn(5, 2)), ValueError, "same last dimension d_head"),
        ((torch.randn(4, 3), torch.randn(5, 3), torch.randn(6, 3)), ValueError, "same number of positions k_pos"),
        (
            (torch.randn(4, 3), torch.randn(5, 3), torch.randn(5, 3), torch.ones(4, 5)),
            TypeError,
            "mask must be boolean",
        ),
        (
            (torch.ones(4, 3, dtype=torch.long), torch.randn(5, 3), torch.randn(5, 3)),
            TypeError,
            "q must hold floating-point numbers (e.g. float32), got dtype torch.int64",
        ),
        ((torch.randn(3), torch.randn(5, 3), torch.randn(5, 3)), ValueError, "at least 2 dimensions"),
        ((torch.randn(2, 4, 3), torch.randn(5, 3), torch.randn(5, 3)), ValueError, "same number of dimensions"),
    ]
    for args, error, words in cases:
        with pytest.raises(error) as info:
            attention(*args)
        assert words in str(info.value)


def test_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="add_bias_kv=False"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_concat_then_project_equals_sum_of_head_contributions():
    m = MultiHeadAttention(12, 3)
    loop = MultiHeadAttentionLoop.from_batched(m)
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        out, _ = m(x)
        w_o, b_o = m.out_proj.weight, m.out_proj.bias
        parts = [head(x, x, x)[0] @ w_o[:, 4 * h : 4 * h + 4].T for h, head in enumerate(loop.attention_heads)]
    torch.testing.assert_close(sum(parts) + b_o, out, **TOL)
    # and a wrong slicing (rows of W_O instead of columns) does not add up
    with torch.no_grad():
        rows = [head(x, x, x)[0] @ w_o[4 * h : 4 * h + 4, :] for h, head in enumerate(loop.attention_heads)]
    assert not torch.allclose(sum(rows) + b_o, out, atol=1e-3)
