"""Right answers to lesson 02's exercises, in other forms than the solutions'."""

from fractions import Fraction

import numpy as np
import torch

from mha.toy.tasks import IGNORE_INDEX


def targets_by_cat(tokens, offset):
    batch, seq = tokens.shape
    head = torch.full((batch, min(offset, seq)), IGNORE_INDEX, dtype=tokens.dtype)
    return torch.cat([head, tokens[:, : seq - offset]], dim=1)


def targets_loop(tokens, offset):
    targets = torch.full_like(tokens, IGNORE_INDEX)
    for i in range(offset, tokens.shape[1]):
        targets[:, i] = tokens[:, i - offset]
    return targets


def count_numpy(vocab, seq, d_model, heads, relations):
    sizes = np.array(
        [vocab * d_model, seq * d_model, 4 * d_model * d_model, 4 * d_model, relations * (d_model + 1) * vocab]
    )
    return sizes.sum()


def count_float(vocab, seq, d_model, heads, relations):
    d_head = d_model / heads
    per_head = 3 * (d_model * d_head + d_head)  # each head's W_Q, W_K, W_V with biases
    return (
        vocab * d_model
        + seq * d_model
        + heads * per_head
        + d_model * d_model
        + d_model
        + relations * (d_model + 1) * vocab
    )


def offsets_loops(weights, max_offset):
    batch, heads, q_len, _ = weights.shape
    out = torch.zeros(heads, max_offset + 1, dtype=weights.dtype)
    for d in range(max_offset + 1):
        for q in range(max_offset, q_len):
            out[:, d] += weights[:, :, q, q - d].sum(dim=0)
    return out / (batch * (q_len - max_offset))


def offsets_diagonals(weights, max_offset):
    q_len = weights.shape[-2]
    columns = [weights.diagonal(offset=-d, dim1=-2, dim2=-1)[..., max_offset - d :] for d in range(max_offset + 1)]
    return torch.stack([c.mean(dim=(0, 2)) for c in columns], dim=1) if q_len > max_offset else None


def served_fraction(heads, relations, vocab):
    served = min(heads, relations)
    return (served + Fraction(relations - served, vocab)) / relations


def served_numpy(heads, relations, vocab):
    served = np.minimum(heads, relations)
    return np.float32((served + (relations - served) / vocab) / relations)


def same_rate_tensor(predictions, valid):
    agree = (predictions == predictions[..., :1]).all(dim=-1)
    return agree[valid].double().mean()


def same_rate_loops(predictions, valid):
    hits = total = 0
    for b in range(predictions.shape[0]):
        for i in range(predictions.shape[1]):
            if valid[b, i]:
                total += 1
                hits += len(set(predictions[b, i].tolist())) == 1
    return hits / total


RIGHT = [
    ("offset_targets", targets_by_cat),
    ("offset_targets", targets_loop),
    ("parameter_count", count_numpy),
    ("parameter_count", count_float),
    ("weight_by_offset", offsets_loops),
    ("weight_by_offset", offsets_diagonals),
    ("one_served", served_fraction),
    ("one_served", served_numpy),
    ("same_answer_rate", same_rate_tensor),
    ("same_answer_rate", same_rate_loops),
]
