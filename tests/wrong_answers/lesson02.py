"""Classic mistakes in lesson 02's exercises."""

import torch

from mha.toy.tasks import IGNORE_INDEX


def targets_ahead(tokens, offset):
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, :-offset] = tokens[:, offset:]
    return targets


def targets_rolled(tokens, offset):
    return tokens.roll(offset, dims=1)


def targets_off_by_one(tokens, offset):
    targets = torch.full_like(tokens, IGNORE_INDEX)
    if offset == 1:
        return tokens.clone()
    targets[:, offset - 1 :] = tokens[:, : -(offset - 1)]
    return targets


def count_full_width_heads(vocab, seq, d_model, heads, relations):
    return (
        vocab * d_model + seq * d_model + heads * 4 * (d_model * d_model + d_model) + relations * (d_model + 1) * vocab
    )


def count_full_width_qkv_per_head(vocab, seq, d_model, heads, relations):
    qkv = heads * 3 * (d_model * d_model + d_model)
    return vocab * d_model + seq * d_model + qkv + d_model * d_model + d_model + relations * (d_model + 1) * vocab


def count_no_biases(vocab, seq, d_model, heads, relations):
    return vocab * d_model + seq * d_model + 4 * d_model * d_model + relations * (d_model + 1) * vocab


def count_no_positions(vocab, seq, d_model, heads, relations):
    return vocab * d_model + 4 * (d_model * d_model + d_model) + relations * (d_model + 1) * vocab


def count_one_readout(vocab, seq, d_model, heads, relations):
    return vocab * d_model + seq * d_model + 4 * (d_model * d_model + d_model) + (d_model + 1) * vocab


def offsets_summed(weights, max_offset):
    q = torch.arange(max_offset, weights.shape[-2])
    return torch.stack([weights[:, :, q, q - d].sum(dim=(0, 2)) for d in range(max_offset + 1)], dim=1)


def offsets_different_queries(weights, max_offset):
    columns = []
    for d in range(max_offset + 1):
        q = torch.arange(d, weights.shape[-2])
        columns.append(weights[:, :, q, q - d].mean(dim=(0, 2)))
    return torch.stack(columns, dim=1)


def served_without_guessing(heads, relations, vocab):
    return min(heads, relations) / relations


def served_without_min(heads, relations, vocab):
    return (heads + (relations - heads) / vocab) / relations


def same_rate_all_positions(predictions, valid):
    return (predictions == predictions[..., :1]).all(dim=-1).float().mean().item()


def same_rate_pairwise(predictions, valid):
    return (predictions == predictions[..., :1]).float().mean().item()


WRONG = [
    ("offset_targets", targets_ahead, "those are the tokens offset positions ahead"),
    ("offset_targets", targets_rolled, "torch.roll wraps around"),
    ("offset_targets", targets_off_by_one, "off by one"),
    ("parameter_count", count_full_width_heads, "each head has width d_model / heads"),
    ("parameter_count", count_full_width_qkv_per_head, "you gave every head its own full d_model x d_model"),
    ("parameter_count", count_no_biases, "you left out the biases"),
    ("parameter_count", count_no_positions, "you forgot the position embedding"),
    ("parameter_count", count_one_readout, "there is one readout per relationship"),
    ("weight_by_offset", offsets_summed, "that is a sum"),
    ("weight_by_offset", offsets_different_queries, "use the same queries for every offset"),
    ("one_served", served_without_guessing, "you left out the guessed relationships"),
    ("one_served", served_without_min, "use min(heads, relations)"),
    ("same_answer_rate", same_rate_all_positions, "you counted the positions without an answer too"),
    ("same_answer_rate", same_rate_pairwise, "all readouts agree"),
]
