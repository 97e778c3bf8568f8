"""Scores that name what an attention head does, from its weights on one sentence.

Every score is an average attention weight, so it lies in [0, 1]: 1 means "every query puts all its weight there".

- previous: weight on the token just before the query.
- next: weight on the token just after.
- self: weight on the query's own position.
- same word: weight on other positions holding the same token (averaged over the queries that have one).
- to a token (e.g. "[CLS]", "[SEP]"): weight on every position holding that token. Heads that put most of their
  weight on such a token, whatever the query, are called attention sinks: parking the weight there is how a head
  says "nothing to gather here" (softmax weights must sum to 1).

They take weights with any leading dimensions (layers, heads, ...) for one sentence: q_pos = k_pos = its length,
no padding. Average over sentences with `mean_over_sentences`.
"""

import torch

from .._validate import check_rank, fmt_shape


def _check(weights: torch.Tensor, tokens: list[str] | None = None) -> None:
    check_rank("weights", weights, range(2, 9), "(..., q_pos, k_pos)")
    q_len, k_len = weights.shape[-2:]
    if q_len != k_len or (tokens is not None and len(tokens) != k_len):
        got = "" if tokens is None else f" and {len(tokens)} tokens"
        raise ValueError(
            f"weights must be self-attention over one sentence, (..., seq, seq) with one token per position; "
            f"got shape {fmt_shape(weights.shape)}{got}"
        )


def previous_token(weights: torch.Tensor) -> torch.Tensor:
    """Average weight each query puts on the position just before it (the first query has none).

    Shape:
        weights (..., seq, seq); returns (...).
    """
    _check(weights)
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # entries (i, i - 1)


def next_token(weights: torch.Tensor) -> torch.Tensor:
    """Average weight each query puts on the position just after it (the last query has none).

    Shape:
        weights (..., seq, seq); returns (...).
    """
    _check(weights)
    return weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=-1)  # entries (i, i + 1)


def self_token(weights: torch.Tensor) -> torch.Tensor:
    """Average weight each query puts on its own position.

    Shape:
        weights (..., seq, seq); returns (...).
    """
    _check(weights)
    return weights.diagonal(dim1=-2, dim2=-1).mean(dim=-1)


def to_token(weights: torch.Tensor, tokens: list[str], token: str) -> torch.Tensor:
    """Average weight each query puts on the positions holding `token` (e.g. "[CLS]"); 0 where there is none.

    Shape:
        weights (..., seq, seq), len(tokens) = seq; returns (...).
    """
    _check(weights, tokens)
    keys = torch.tensor([t == token for t in tokens], device=weights.device)  # (k_pos,)
    return (weights * keys).sum(dim=-1).mean(dim=-1)


def same_word(weights: torch.Tensor, tokens: list[str]) -> torch.Tensor:
    """Average weight a query puts on the other positions holding its own token, over the queries that have one.

    NaN when no token of the sentence occurs twice.

    Shape:
        weights (..., seq, seq), len(tokens) = seq; returns (...).
    """
    _check(weights, tokens)
    same = torch.tensor([[a == b and i != j for j, b in enumerate(tokens)] for i, a in enumerate(tokens)])
    same = same.to(weights.device)  # (q_pos, k_pos): True where the key repeats the query's token
    has_twin = same.any(dim=-1)  # (q_pos,)
    if not has_twin.any():
        return torch.full(weights.shape[:-2], float("nan"), dtype=weights.dtype, device=weights.device)
    per_query = (weights * same).sum(dim=-1)  # (..., q_pos)
    return per_query[..., has_twin].mean(dim=-1)


def head_type_scores(weights: torch.Tensor, tokens: list[str], special=("[CLS]", "[SEP]")) -> dict[str, torch.Tensor]:
    """All the scores of this module for one sentence, by name.

    Args:
        weights: attention weights of one sentence, e.g. every head of every layer.
        tokens: the sentence's tokens, one per position.
        special: tokens to measure the weight on (attention sinks).

    Shape:
        weights (..., seq, seq); returns a dict of (...) tensors.
    """
    scores = {
        "previous": previous_token(weights),
        "next": next_token(weights),
        "self": self_token(weights),
        "same word": same_word(weights, tokens),
    }
    for token in special:
        scores[token] = to_token(weights, tokens, token)
    return scores


def mean_over_sentences(per_sentence: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Average each score over sentences, ignoring the NaN of sentences where a score is undefined.

    Shape:
        each dict's tensors (...); returns a dict of (...) tensors.
    """
    if not per_sentence:
        raise ValueError("need the scores of at least one sentence")
    return {name: torch.stack([s[name] for s in per_sentence]).nanmean(dim=0) for name in per_sentence[0]}
