"""Classic mistakes in lesson 01's exercises."""

import math

import torch


def scores_unscaled(q, k):
    return q @ k.transpose(-2, -1)


def scores_by_d_head(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1]


def scores_k_at_q(q, k):
    return k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])


def scores_by_seq(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2])


def softmax_wrong_axis(scores, mask):
    w = scores.masked_fill(~mask, float("-inf")).softmax(dim=-2)
    return w.masked_fill(~mask.any(-1, keepdim=True), 0.0)


def softmax_mask_inverted(scores, mask):
    w = scores.masked_fill(mask, float("-inf")).softmax(dim=-1)
    return w.masked_fill(~(~mask).any(-1, keepdim=True), 0.0)


def softmax_mask_after(scores, mask):
    return scores.softmax(dim=-1) * mask


def softmax_nan_on_empty_row(scores, mask):
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


def softmax_mask_with_zero(scores, mask):
    return scores.masked_fill(~mask, 0.0).softmax(dim=-1)


def softmax_minus_1e9(scores, mask):
    return scores.masked_fill(~mask, -1e9).softmax(dim=-1)


def scores_dot_t(q, k):
    return q @ k.T / math.sqrt(q.shape[-1])


def softmax_mask_ignored(scores, mask):
    return scores.softmax(dim=-1)


def causal_no_diagonal(seq):
    return torch.ones(seq, seq, dtype=torch.bool).tril(diagonal=-1)


def causal_upper(seq):
    return torch.ones(seq, seq, dtype=torch.bool).triu()


def causal_torch_convention(seq):
    return torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)


def causal_float(seq):
    return torch.ones(seq, seq).tril()


def padding_inverted(lengths, seq):
    return torch.arange(seq) >= lengths[:, None]


def padding_off_by_one(lengths, seq):
    return torch.arange(seq) <= lengths[:, None]


def padding_transposed(lengths, seq):
    return torch.arange(seq)[:, None] < lengths


def _attention(q, k, v, mask=None, scale=True, zero_empty_rows=True, mix="v"):
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(-1)
    if mask is not None and zero_empty_rows:
        w = w.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    return w @ (v if mix == "v" else k), w


def attention_unscaled(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=False)


def attention_nan(q, k, v, mask=None):
    return _attention(q, k, v, mask, zero_empty_rows=False)


def attention_mixes_keys(q, k, v, mask=None):
    return _attention(q, k, v, mask, mix="k")


def attention_output_only(q, k, v, mask=None):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ v


def attention_swapped(q, k, v, mask=None):
    output, weights = _attention(q, k, v, mask)
    return weights, output


def query_as_list():
    return [0.0, 2.0, 0.0, 0.0]


def query_too_weak():
    return torch.tensor([0.0, 2.0, 0.0, 0.0])


def query_for_company():
    return torch.tensor([10.0, 0.0, 0.0, 0.0])


def query_apple_leaks():
    return torch.tensor([5.0, 12.0, 0.0, 0.0])


WRONG = [
    ("scores", scores_unscaled, "you did not scale"),
    ("scores", scores_by_d_head, "you divided by d_head; divide by its square root"),
    ("scores", scores_k_at_q, "did you compute k @ q^T instead of q @ k^T?"),
    ("scores", scores_by_seq, "square root of the number of keys"),
    ("masked_softmax", softmax_wrong_axis, "softmax over the wrong axis"),
    ("masked_softmax", softmax_mask_inverted, "the mask is inverted"),
    ("masked_softmax", softmax_mask_after, "you applied the mask after the softmax"),
    ("masked_softmax", softmax_nan_on_empty_row, "keys are all masked got NaN"),
    ("masked_softmax", softmax_mask_with_zero, "blocked scores set to 0 still get weight"),
    ("masked_softmax", softmax_mask_ignored, "the mask was ignored"),
    ("masked_softmax", softmax_minus_1e9, "a large negative number such as -1e9"),
    ("scores", scores_dot_t, "swap only the last two"),
    ("attention", attention_swapped, "you returned (weights, output)"),
    ("design_query", query_as_list, "make the product feature of your query larger"),
    ("causal_mask", causal_no_diagonal, "off by one: a position may attend to itself"),
    ("causal_mask", causal_upper, "lets each position see the future"),
    ("causal_mask", causal_torch_convention, "nn.MultiheadAttention's convention"),
    ("causal_mask", causal_float, "a mask must be boolean"),
    ("padding_mask", padding_inverted, "inverted: True must mark the real tokens"),
    ("padding_mask", padding_off_by_one, "off by one"),
    ("padding_mask", padding_transposed, "the mask is (batch, seq): one row per sequence"),
    ("attention", attention_unscaled, "not divided by sqrt(d_head)"),
    ("attention", attention_nan, "keys are all masked got NaN"),
    ("attention", attention_mixes_keys, "you mixed the keys"),
    ("attention", attention_output_only, "return two things, (output, weights)"),
    ("design_query", query_too_weak, "make the product feature of your query larger"),
    ("design_query", query_for_company, "Apple scores at least as high as iPhone"),
    ("design_query", query_apple_leaks, "Apple gets"),
]
