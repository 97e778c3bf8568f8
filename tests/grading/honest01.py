import math

import torch


def scores(q, k):
    return torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5


def masked_softmax(scores, mask):
    weights = torch.where(mask, scores, float("-inf")).softmax(-1)
    return torch.where(mask.any(-1, keepdim=True), weights, torch.zeros_like(weights))


def causal_mask(seq):
    return torch.tril(torch.ones(seq, seq)).bool()


def padding_mask(lengths, seq):
    return torch.arange(seq)[None, :] < torch.as_tensor(lengths)[:, None]


def attention(q, k, v, mask=None):
    s = scores(q, k)
    weights = s.softmax(-1) if mask is None else masked_softmax(s, mask)
    return weights @ v, weights


def query_for_it():
    return torch.tensor([-5.0, 12.0, 0.0, math.pi * 0])
