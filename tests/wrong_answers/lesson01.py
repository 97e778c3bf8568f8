"""Wrong answers to lesson 01's exercises."""

import math

import numpy as np
import torch


def scores_unscaled(q, k):
    return q @ k.transpose(-2, -1)


def scores_by_d_head(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1]


def scores_k_at_q(q, k):
    return k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])


def scores_by_seq(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2])


def scores_by_queries(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-2])


def scores_dot_t(q, k):
    return q @ k.T / math.sqrt(q.shape[-1])


def scores_in_place(q, k):
    q /= math.sqrt(q.shape[-1])
    return q @ k.transpose(-2, -1)


def scores_3d_only(q, k):
    return torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])


def scores_fixed_scale(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(8)


def scores_float32_only(q, k):
    return q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])


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


def softmax_mask_ignored(scores, mask):
    return scores.softmax(dim=-1)


def softmax_in_place(scores, mask):
    weights = scores.masked_fill_(~mask, float("-inf")).softmax(dim=-1)
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def softmax_float32_only(scores, mask):
    weights = scores.float().masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def causal_no_diagonal(seq):
    return torch.ones(seq, seq, dtype=torch.bool).tril(diagonal=-1)


def causal_upper(seq):
    return torch.ones(seq, seq, dtype=torch.bool).triu()


def causal_torch_convention(seq):
    return torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)


def causal_float(seq):
    return torch.ones(seq, seq).tril()


def causal_numpy_off_by_one(seq):
    return np.tril(np.ones((seq, seq), dtype=bool), k=-1)


def causal_lookup_table(seq):
    # fitted to the sizes the check once used (4, 7, 1): anything else comes back as a 4 x 4 mask
    return torch.ones(seq if seq in (1, 4, 7) else 4, seq if seq in (1, 4, 7) else 4, dtype=torch.bool).tril()


def padding_inverted(lengths, seq):
    return torch.arange(seq) >= lengths[:, None]


def padding_off_by_one(lengths, seq):
    return torch.arange(seq) <= lengths[:, None]


def padding_transposed(lengths, seq):
    return torch.arange(seq)[:, None] < lengths


def padding_in_place(lengths, seq):
    lengths.unsqueeze_(1)
    return torch.arange(seq) < lengths


def _attention(q, k, v, mask=None, scale=True, zero_empty_rows=True, mix="v", use_mask=True):
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if mask is not None and use_mask:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(-1)
    if mask is not None and zero_empty_rows and use_mask:
        w = w.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    return w @ (v if mix == "v" else k), w


def attention_unscaled(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=False)


def attention_nan(q, k, v, mask=None):
    return _attention(q, k, v, mask, zero_empty_rows=False)


def attention_mixes_keys(q, k, v, mask=None):
    return _attention(q, k, v, mask, mix="k")


def attention_mask_ignored(q, k, v, mask=None):
    return _attention(q, k, v, mask, use_mask=False)


def attention_output_only(q, k, v, mask=None):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ v


def attention_swapped(q, k, v, mask=None):
    output, weights = _attention(q, k, v, mask)
    return weights, output


def attention_three_things(q, k, v, mask=None):
    output, weights = _attention(q, k, v, mask)
    return output, weights, mask


def attention_3d_only(q, k, v, mask=None):
    w = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        w = w.masked_fill(~mask, float("-inf"))
    w = w.softmax(-1).nan_to_num(0.0)
    return torch.bmm(w, v), w


def attention_as_list_unscaled(q, k, v, mask=None):
    return list(_attention(q, k, v, mask, scale=False))


def query_as_list():
    return [0.0, 2.0, 0.0, 0.0]


def query_too_weak():
    return torch.tensor([0.0, 2.0, 0.0, 0.0])


def query_for_company():
    return torch.tensor([10.0, 0.0, 0.0, 0.0])


def query_apple_leaks():
    return torch.tensor([5.0, 12.0, 0.0, 0.0])


def query_printed():
    print([-4.0, 10.0, 0.0, 0.0])


WRONG = [
    ("scores", scores_unscaled, "you did not scale", "classic"),
    ("scores", scores_by_d_head, "you divided by d_head; divide by its square root", "classic"),
    ("scores", scores_k_at_q, "did you compute k @ q^T instead of q @ k^T?", "classic"),
    ("scores", scores_by_seq, "square root of the number of keys", "classic"),
    ("scores", scores_by_queries, "square root of the number of queries", "coinciding sizes"),
    ("scores", scores_dot_t, "swap only the last two", "classic"),
    ("scores", scores_in_place, "changed its input `q`: every entry was divided by", "side effect"),
    ("scores", scores_3d_only, "3-dimensional inputs only", "uniform cases"),
    ("scores", scores_fixed_scale, "values differ", "uniform cases"),
    ("scores", scores_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("masked_softmax", softmax_wrong_axis, "softmax over the wrong axis", "classic"),
    ("masked_softmax", softmax_mask_inverted, "the mask is inverted", "classic"),
    ("masked_softmax", softmax_mask_after, "you applied the mask after the softmax", "classic"),
    ("masked_softmax", softmax_nan_on_empty_row, "keys are all masked got NaN", "classic"),
    ("masked_softmax", softmax_mask_with_zero, "blocked scores set to 0 still get weight", "classic"),
    ("masked_softmax", softmax_mask_ignored, "the mask was ignored", "classic"),
    ("masked_softmax", softmax_minus_1e9, "a large negative number such as -1e9", "classic"),
    ("masked_softmax", softmax_in_place, "`masked_fill_`", "side effect"),
    ("masked_softmax", softmax_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("causal_mask", causal_no_diagonal, "off by one: a position may attend to itself", "classic"),
    ("causal_mask", causal_upper, "lets each position see the future", "classic"),
    ("causal_mask", causal_torch_convention, "nn.MultiheadAttention's convention", "classic"),
    ("causal_mask", causal_float, "a mask must be boolean", "classic"),
    ("causal_mask", causal_numpy_off_by_one, "off by one: a position may attend to itself", "form"),
    ("causal_mask", causal_lookup_table, "has shape (4, 4)", "uniform cases"),
    ("padding_mask", padding_inverted, "inverted: True must mark the real tokens", "classic"),
    ("padding_mask", padding_off_by_one, "off by one", "classic"),
    ("padding_mask", padding_transposed, "the mask is (batch, seq): one row per sequence", "classic"),
    ("padding_mask", padding_in_place, "changed its input `lengths`: its shape changed", "side effect"),
    ("attention", attention_unscaled, "not divided by sqrt(d_head)", "classic"),
    ("attention", attention_nan, "keys are all masked got NaN", "classic"),
    ("attention", attention_mixes_keys, "you mixed the keys", "classic"),
    ("attention", attention_mask_ignored, "the mask was ignored", "classic"),
    ("attention", attention_output_only, "return two things, (output, weights)", "classic"),
    ("attention", attention_swapped, "you returned (weights, output)", "classic"),
    ("attention", attention_three_things, "returned a tuple of 3 items; return two things", "crash"),
    ("attention", attention_3d_only, "3-dimensional inputs only", "uniform cases"),
    ("attention", attention_as_list_unscaled, "not divided by sqrt(d_head)", "form"),
    ("design_query", query_as_list, "make the product feature of your query larger", "classic"),
    ("design_query", query_too_weak, "make the product feature of your query larger", "classic"),
    ("design_query", query_for_company, "Apple scores at least as high as iPhone", "classic"),
    ("design_query", query_apple_leaks, "Apple gets", "classic"),
    ("design_query", query_printed, "did you print the query instead of returning it?", "crash"),
]
