"""Checks for lesson 02, tunnel vision. Use: `from mha.checks import lesson02 as check`."""

import torch

from ..toy.models import AttentionOnlyConfig, AttentionOnlyModel, count_parameters
from ..toy.tasks import IGNORE_INDEX
from ..toy.tunnel_vision import weight_by_offset as reference_by_offset
from ._legacy import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape

LESSON = "02"


@exercise(LESSON, "offset_targets")
def offset_targets(fn) -> int:
    """fn(tokens (batch, seq), offset) -> (batch, seq): the token at i - offset, IGNORE_INDEX where i < offset."""
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.randint(50, (2, 8), generator=g), 1),
        (torch.randint(50, (3, 6), generator=g), 3),
        (torch.randint(50, (1, 5), generator=g), 2),
    ]
    for tokens, offset in cases:
        what = f"offset_targets on tokens {tuple(tokens.shape)} with offset={offset}"
        got = as_tensor(call(fn, tokens.clone(), offset), what)
        expect_shape(got, tokens.shape, what, "one target per position, (batch, seq)")
        expected = torch.full_like(tokens, IGNORE_INDEX)
        expected[:, offset:] = tokens[:, :-offset]
        ahead = torch.full_like(tokens, IGNORE_INDEX)
        ahead[:, :-offset] = tokens[:, offset:]
        short = torch.full_like(tokens, IGNORE_INDEX)
        if offset > 1:
            short[:, offset - 1 :] = tokens[:, : -(offset - 1)]
        else:
            short = tokens.clone()
        diagnose(
            got,
            expected,
            [
                (
                    ahead,
                    "those are the tokens offset positions ahead (i + offset); the relationship looks back, i - offset",
                ),
                (
                    tokens.roll(offset, dims=1),
                    "torch.roll wraps around: the first positions got tokens from the end of "
                    "the sequence; they have no answer, use IGNORE_INDEX",
                ),
                (short, "off by one: position i must name the token at i - offset"),
            ],
            what,
        )
    return len(cases)


def _config(vocab, seq, d_model, heads, relations):
    return AttentionOnlyConfig(vocab=vocab, seq=seq, d_model=d_model, heads=heads, relations=relations)


@exercise(LESSON, "parameter_count")
def parameter_count(fn) -> int:
    """fn(vocab, seq, d_model, heads, relations) -> the number of parameters of an AttentionOnlyModel."""
    cases = [(64, 16, 64, 1, 3), (64, 16, 64, 4, 3), (10, 7, 12, 3, 2), (100, 32, 32, 8, 1)]
    for vocab, seq, d_model, heads, relations in cases:
        what = f"parameter_count(vocab={vocab}, seq={seq}, d_model={d_model}, heads={heads}, relations={relations})"
        got = call(fn, vocab, seq, d_model, heads, relations)
        expected = count_parameters(AttentionOnlyModel(_config(vocab, seq, d_model, heads, relations)))
        if int(got) == expected:
            continue
        embeddings, readouts = vocab * d_model + seq * d_model, relations * (d_model * vocab + vocab)
        attention = 4 * d_model * d_model + 4 * d_model
        hints = {
            embeddings + readouts + heads * attention: "each head has width d_model / heads, not d_model: the heads "
            "cut the same four d_model x d_model matrices into slices",
            embeddings + readouts + 4 * d_model * d_model: "you left out the biases (4 x d_model in the attention)",
            vocab * d_model + readouts + attention: "you forgot the position embedding (seq x d_model)",
            embeddings + relations * d_model * vocab + attention: "you forgot the readouts' biases (vocab each)",
            embeddings + d_model * vocab + vocab + attention: "there is one readout per relationship",
            embeddings + readouts + heads * 3 * (d_model * d_model + d_model) + d_model * d_model + d_model: (
                "you gave every head its own full d_model x d_model W_Q, W_K and W_V; each head's are d_model x "
                "(d_model / heads), so together they make one d_model x d_model matrix each, whatever the heads"
            ),
        }
        hint = hints.get(
            int(got),
            f"got {int(got):,}, expected {expected:,}; count the embeddings, W_Q, W_K, W_V, "
            f"W_O (with biases) and the readouts",
        )
        raise CheckFailed(f"{what}: {hint}")
    return len(cases)


@exercise(LESSON, "weight_by_offset")
def weight_by_offset(fn) -> int:
    """fn(weights (batch, heads, q_pos, k_pos), max_offset) -> (heads, max_offset + 1), as in the lesson."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for batch, heads, seq, max_offset in [(2, 3, 8, 3), (4, 1, 6, 2)]:
        scores = torch.randn(batch, heads, seq, seq, generator=g) * 2
        future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
        cases.append((scores.masked_fill(future, float("-inf")).softmax(-1), max_offset))
    for w, max_offset in cases:
        what = f"weight_by_offset on weights {tuple(w.shape)} with max_offset={max_offset}"
        got = as_tensor(call(fn, w.clone(), max_offset), what)
        expect_shape(got, (w.shape[1], max_offset + 1), what, "(heads, max_offset + 1): offsets 0..max_offset")
        queries = torch.arange(max_offset, w.shape[-2])
        all_queries = [torch.arange(d, w.shape[-2]) for d in range(max_offset + 1)]
        diagnose(
            got,
            reference_by_offset(w, max_offset),
            [
                (
                    torch.stack(
                        [w[:, :, q, q - d].sum(dim=(0, 2)) for d, q in enumerate([queries] * (max_offset + 1))], 1
                    ),
                    "that is a sum; average over the batch and the queries",
                ),
                (
                    torch.stack([w[:, :, q, q - d].mean(dim=(0, 2)) for d, q in enumerate(all_queries)], 1),
                    "each offset is averaged over different queries (all that have it); use the same queries for every "
                    "offset, q_pos >= max_offset, so that the columns compare",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "one_served")
def one_served(fn) -> int:
    """fn(heads, relations, vocab) -> accuracy if each head serves one relationship and the rest are guessed."""
    cases = [(1, 3, 64), (4, 3, 64), (2, 5, 10), (4, 6, 64), (1, 1, 2)]
    for heads, relations, vocab in cases:
        what = f"one_served(heads={heads}, relations={relations}, vocab={vocab})"
        got = float(call(fn, heads, relations, vocab))
        served = min(heads, relations)
        expected = (served + (relations - served) / vocab) / relations
        diagnose(
            got,
            expected,
            [
                (served / relations, "you left out the guessed relationships: each scores 1/vocab by chance"),
                (
                    (heads + (relations - heads) / vocab) / relations,
                    "more heads than relationships do not help beyond serving all of them: use min(heads, relations)",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "same_answer_rate")
def same_answer_rate(fn) -> int:
    """fn(predictions (batch, seq, relations), valid (batch, seq)) -> share of valid positions where all readouts
    name the same token."""
    g = torch.Generator().manual_seed(2)
    cases = []
    for batch, seq, relations in [(4, 6, 3), (2, 9, 2)]:
        predictions = torch.randint(3, (batch, seq, relations), generator=g)
        valid = torch.rand(batch, seq, generator=g) > 0.3
        cases.append((predictions, valid))
    for predictions, valid in cases:
        what = f"same_answer_rate on predictions {tuple(predictions.shape)}"
        got = float(call(fn, predictions.clone(), valid.clone()))
        same = (predictions == predictions[..., :1]).all(dim=-1)  # (batch, seq)
        expected = same[valid].float().mean().item()
        diagnose(
            got,
            expected,
            [
                (
                    same.float().mean().item(),
                    "you counted the positions without an answer too; keep only the valid ones",
                ),
                (
                    (predictions == predictions[..., :1]).float().mean().item(),
                    "that compares each readout with the first "
                    "one separately; a position counts only if "
                    "all readouts agree (.all over relations)",
                ),
            ],
            what,
        )
    return len(cases)
