"""Wrong answers to lesson 02's exercises."""

import numpy as np
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


def targets_in_place(tokens, offset):
    tokens[:, offset:] = tokens[:, :-offset].clone()
    tokens[:, :offset] = IGNORE_INDEX
    return tokens


def targets_as_floats(tokens, offset):
    targets = torch.full(tokens.shape, float(IGNORE_INDEX))
    targets[:, offset:] = tokens[:, :-offset].float()
    return targets


_SEEN = {}


def targets_lookup_table(tokens, offset):
    # remembers the answers to the cases it has been shown; a new case gets the last answer it remembers
    key = (tuple(tokens.flatten().tolist()), offset)
    if not _SEEN:
        for batch, seq, off in [(2, 8, 1), (3, 6, 3), (1, 5, 2), (4, 7, 6)]:
            _SEEN[(batch, seq, off)] = torch.full((batch, seq), IGNORE_INDEX)
    return _SEEN.get(key, torch.full_like(tokens, IGNORE_INDEX))


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


def count_no_w_o(vocab, seq, d_model, heads, relations):
    return vocab * d_model + seq * d_model + 3 * (d_model * d_model + d_model) + relations * (d_model + 1) * vocab


def count_printed(vocab, seq, d_model, heads, relations):
    print(vocab * d_model + seq * d_model + 4 * (d_model * d_model + d_model) + relations * (d_model + 1) * vocab)


def count_numpy_no_biases(vocab, seq, d_model, heads, relations):
    return np.int64(count_no_biases(vocab, seq, d_model, heads, relations))


def count_in_pieces(vocab, seq, d_model, heads, relations):
    embeddings = vocab * d_model + seq * d_model
    return embeddings, 4 * (d_model * d_model + d_model), relations * (d_model + 1) * vocab


def offsets_summed(weights, max_offset):
    q = torch.arange(max_offset, weights.shape[-2])
    return torch.stack([weights[:, :, q, q - d].sum(dim=(0, 2)) for d in range(max_offset + 1)], dim=1)


def offsets_different_queries(weights, max_offset):
    columns = []
    for d in range(max_offset + 1):
        q = torch.arange(d, weights.shape[-2])
        columns.append(weights[:, :, q, q - d].mean(dim=(0, 2)))
    return torch.stack(columns, dim=1)


def offsets_wrap_around(weights, max_offset):
    q = torch.arange(weights.shape[-2])  # every query, so q - d is negative for the first ones
    return torch.stack([weights[:, :, q, q - d].mean(dim=(0, 2)) for d in range(max_offset + 1)], dim=1)


def offsets_float32_only(weights, max_offset):
    q = torch.arange(max_offset, weights.shape[-2])
    return torch.stack([weights[:, :, q, q - d].float().mean(dim=(0, 2)) for d in range(max_offset + 1)], dim=1)


def served_without_guessing(heads, relations, vocab):
    return min(heads, relations) / relations


def served_without_min(heads, relations, vocab):
    return (heads + (relations - heads) / vocab) / relations


def served_not_averaged(heads, relations, vocab):
    served = min(heads, relations)
    return served + (relations - served) / vocab


def same_rate_all_positions(predictions, valid):
    return (predictions == predictions[..., :1]).all(dim=-1).float().mean().item()


def same_rate_pairwise(predictions, valid):
    return (predictions == predictions[..., :1]).float().mean().item()


def same_rate_any(predictions, valid):
    return (predictions[..., 1:] == predictions[..., :1]).any(dim=-1)[valid].float().mean()


def same_rate_in_place(predictions, valid):
    valid &= (predictions == predictions[..., :1]).all(dim=-1)
    return valid.float().sum().item() / max(1, int(valid.numel()))


WRONG = [
    ("offset_targets", targets_ahead, "those are the tokens offset positions ahead", "classic"),
    ("offset_targets", targets_rolled, "torch.roll wraps around", "classic"),
    ("offset_targets", targets_off_by_one, "off by one", "classic"),
    ("offset_targets", targets_in_place, "changed its input `tokens`", "side effect"),
    ("offset_targets", targets_as_floats, "expected integers", "form"),
    ("offset_targets", targets_lookup_table, "values differ", "uniform cases"),
    ("parameter_count", count_full_width_heads, "each head has width d_model / heads", "classic"),
    ("parameter_count", count_full_width_qkv_per_head, "you gave every head its own full d_model x d_model", "classic"),
    ("parameter_count", count_no_biases, "you left out the biases", "classic"),
    ("parameter_count", count_no_positions, "you forgot the position embedding", "classic"),
    ("parameter_count", count_one_readout, "there is one readout per relationship", "classic"),
    ("parameter_count", count_no_w_o, "you left out the output projection W_O", "coinciding sizes"),
    ("parameter_count", count_printed, "returned None: did you print the result instead of returning it?", "crash"),
    ("parameter_count", count_numpy_no_biases, "you left out the biases", "form"),
    ("parameter_count", count_in_pieces, "returned a tuple of 3 numbers; expected one whole number", "crash"),
    ("weight_by_offset", offsets_summed, "that is a sum", "classic"),
    ("weight_by_offset", offsets_different_queries, "use the same queries for every offset", "classic"),
    ("weight_by_offset", offsets_wrap_around, "is negative and wraps around to the last keys", "classic"),
    ("weight_by_offset", offsets_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("one_served", served_without_guessing, "you left out the guessed relationships", "classic"),
    ("one_served", served_without_min, "use min(heads, relations)", "classic"),
    ("one_served", served_not_averaged, "that is a total over the relationships", "coinciding sizes"),
    ("same_answer_rate", same_rate_all_positions, "you counted the positions without an answer too", "classic"),
    ("same_answer_rate", same_rate_pairwise, "all readouts agree", "classic"),
    ("same_answer_rate", same_rate_any, "not if any other readout agrees with the first", "form"),
    ("same_answer_rate", same_rate_in_place, "changed its input `valid`", "side effect"),
]
