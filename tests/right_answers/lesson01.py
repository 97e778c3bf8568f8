"""Right answers to lesson 01's exercises, in other forms than the solutions'."""

import math

import numpy as np
import torch


def scores_einsum(q, k):
    return torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])


def scores_scaled_first(q, k):
    return (q * q.shape[-1] ** -0.5) @ k.mT


def softmax_where_and_nan_to_num(scores, mask):
    return torch.where(mask, scores, float("-inf")).softmax(dim=-1).nan_to_num(0.0)


def softmax_by_hand(scores, mask):
    filled = scores.masked_fill(~mask, float("-inf"))
    top = filled.amax(dim=-1, keepdim=True).clamp(min=-1e30)  # a fully masked row has max -inf
    e = (filled - top).exp()
    total = e.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, e / total.clamp(min=1e-300), torch.zeros_like(e))


def softmax_large_negative_then_zero(scores, mask):
    weights = scores.masked_fill(~mask, -1e9).softmax(dim=-1)
    return weights * mask.any(dim=-1, keepdim=True)


def causal_by_comparison(seq):
    positions = torch.arange(seq)
    return positions[None, :] <= positions[:, None]


def causal_numpy(seq):
    return np.tril(np.ones((seq, seq), dtype=bool))


def padding_by_unsqueeze(lengths, seq):
    return lengths.unsqueeze(-1) > torch.arange(seq)


def padding_loop(lengths, seq):
    return torch.stack([torch.arange(seq) < int(n) for n in lengths])


def attention_list(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = torch.ones_like(s, dtype=torch.bool)
    w = torch.where(mask, s, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    return [w @ v, w]


def attention_float64_inside(q, k, v, mask=None):
    s = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(-1).nan_to_num(0.0).to(q.dtype)
    return w @ v, w


def query_list_of_ints():
    return [-4, 10, 0, 0]


def query_numpy():
    return np.array([-6.0, 12.0, 0.0, 0.0])


RIGHT = [
    ("scores", scores_einsum),
    ("scores", scores_scaled_first),
    ("masked_softmax", softmax_where_and_nan_to_num),
    ("masked_softmax", softmax_by_hand),
    ("masked_softmax", softmax_large_negative_then_zero),
    ("causal_mask", causal_by_comparison),
    ("causal_mask", causal_numpy),
    ("padding_mask", padding_by_unsqueeze),
    ("padding_mask", padding_loop),
    ("attention", attention_list),
    ("attention", attention_float64_inside),
    ("design_query", query_list_of_ints),
    ("design_query", query_numpy),
]
