"""Grouped-query attention in the core: kv_heads key/value heads shared by the query heads."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mha import MultiHeadAttention, MultiHeadAttentionEinsum, MultiHeadAttentionLoop, MultiHeadAttentionSDPA
from mha.attention import attention
from mha.heads import merge_heads, repeat_kv, split_heads
from mha.kv_cache import grouped_attention
from mha.multihead import parameter_count


def gqa_layer(d_model, heads, kv_heads, cls=MultiHeadAttention, bias=True):
    layer = cls(d_model, heads, bias=bias, kv_heads=kv_heads)
    if bias:  # zero biases would hide a bias that is dropped
        with torch.no_grad():
            layer.in_proj.bias.normal_()
            layer.out_proj.bias.normal_()
    return layer


def reference(layer, x, causal):
    """The layer's output computed by PyTorch's own GQA: scaled_dot_product_attention(..., enable_gqa=True)."""
    q, k, v = layer.project(x, x, x)
    q, k, v = split_heads(q, layer.heads), split_heads(k, layer.kv_heads), split_heads(v, layer.kv_heads)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)  # (batch, heads, seq, d_head)
    return layer.out_proj(merge_heads(out))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(8, 8), (8, 4), (8, 2), (8, 1), (6, 3), (6, 2), (12, 4), (4, 1)]),
    d_head=st.integers(1, 6),
    batch=st.integers(1, 3),
    seq=st.integers(1, 9),
    causal=st.booleans(),
)
def test_gqa_equals_torch_enable_gqa(shape, d_head, batch, seq, causal):
    heads, kv_heads = shape
    layer = gqa_layer(heads * d_head, heads, kv_heads)
    x = torch.randn(batch, seq, heads * d_head)
    out, _ = layer(x, causal=causal)
    torch.testing.assert_close(out, reference(layer, x, causal), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", [MultiHeadAttentionEinsum, MultiHeadAttentionSDPA])
def test_every_batched_version_shares_keys_and_values_the_same_way(cls):
    layer = gqa_layer(24, 6, 2)
    other = cls(24, 6, kv_heads=2)
    other.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(other(x, causal=True)[0], layer(x, causal=True)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_gqa_equals_mha_with_key_and_value_heads_repeated(kv_heads):
    """Sharing is tying: a full MHA layer whose head h copies the K and V of group h // (heads // kv_heads)."""
    layer = gqa_layer(32, 4, kv_heads)
    full = MultiHeadAttention(32, 4)
    group = 4 // kv_heads
    w_q, w_k, w_v = layer.in_proj.weight.detach().split(layer.projection_sizes())
    b_q, b_k, b_v = layer.in_proj.bias.detach().split(layer.projection_sizes())

    def repeat_rows(w):  # (kv_heads * d_head, ...) -> (heads * d_head, ...)
        return w.reshape(kv_heads, 8, *w.shape[1:]).repeat_interleave(group, dim=0).flatten(0, 1)

    with torch.no_grad():
        full.in_proj.weight.copy_(torch.cat([w_q, repeat_rows(w_k), repeat_rows(w_v)]))
        full.in_proj.bias.copy_(torch.cat([b_q, repeat_rows(b_k), repeat_rows(b_v)]))
        full.out_proj.load_state_dict(layer.out_proj.state_dict())
    x = torch.randn(2, 6, 32)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out, w = layer(x, key_padding_mask=mask, need_weights=True, average_weights=False)
    out_full, w_full = full(x, key_padding_mask=mask, need_weights=True, average_weights=False)
    torch.testing.assert_close(out, out_full, atol=1e-6, rtol=0)
    torch.testing.assert_close(w, w_full, atol=1e-6, rtol=0)


def test_the_loop_version_of_a_gqa_layer_computes_the_same():
    layer = gqa_layer(24, 6, 3)
    loop = MultiHeadAttentionLoop.from_batched(layer)
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(loop(x, causal=True)[0], layer(x, causal=True)[0], atol=1e-6, rtol=0)


def test_repeat_kv_hands_each_query_head_its_group():
    k = torch.arange(3.0).reshape(1, 3, 1, 1)  # kv head g holds the number g
    assert repeat_kv(k, 2).flatten().tolist() == [0, 0, 1, 1, 2, 2]  # head h reads kv head h // 2
    with pytest.raises(ValueError, match="group must be a positive integer"):
        repeat_kv(k, 0)


@pytest.mark.parametrize("kv_heads", [6, 3, 2, 1])
def test_grouped_attention_equals_attention_on_repeated_keys_without_copying(kv_heads):
    q = torch.randn(2, 6, 4, 5)
    k, v = torch.randn(2, kv_heads, 7, 5), torch.randn(2, kv_heads, 7, 5)
    mask = torch.rand(2, 1, 4, 7) > 0.3
    out, w = grouped_attention(q, k, v, mask)
    ref_out, ref_w = attention(q, repeat_kv(k, 6 // kv_heads), repeat_kv(v, 6 // kv_heads), mask)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)


@pytest.mark.parametrize("d_model, heads, kv_heads", [(64, 8, 8), (64, 8, 4), (64, 8, 1), (48, 6, 2), (10, 5, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_formula(d_model, heads, kv_heads, bias):
    layer = MultiHeadAttention(d_model, heads, bias=bias, kv_heads=kv_heads)
    assert sum(p.numel() for p in layer.parameters()) == parameter_count(d_model, heads, kv_heads, bias)


def test_parameter_count_of_mha_does_not_depend_on_heads_and_mqa_saves_the_kv_rows():
    assert parameter_count(64, 1) == parameter_count(64, 8) == 4 * 64 * 65
    d_head = 8
    assert parameter_count(64, 8) - parameter_count(64, 8, 1) == 2 * (8 - 1) * d_head * 65


def test_default_kv_heads_keeps_the_layer_as_it_was():
    layer = MultiHeadAttention(16, 4)
    assert layer.kv_heads == 4 and tuple(layer.in_proj.weight.shape) == (48, 16)


@pytest.mark.parametrize(
    "heads, kv_heads, message",
    [
        (8, 3, r"heads=8 is not divisible by kv_heads=3: .* choose kv_heads among \[1, 2, 4, 8\]"),
        (8, 0, "kv_heads must be a positive integer"),
        (8, 16, "heads=8 is not divisible by kv_heads=16"),
    ],
)
def test_kv_heads_that_do_not_divide_heads_get_a_clear_error(heads, kv_heads, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(8 * heads, heads, kv_heads=kv_heads)
    with pytest.raises(ValueError, match=message):
        parameter_count(8 * heads, heads, kv_heads)
