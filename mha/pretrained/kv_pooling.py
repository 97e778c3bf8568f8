"""Converting a trained model to grouped-query attention: mean-pool the key and value heads of all-MiniLM-L6-v2.

Ainslie et al. (2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints") turn
a multi-head checkpoint into a grouped-query one by averaging the key and value projection matrices of the heads in
each group, then train a little more ("uptraining"). Here: the averaging alone, no uptraining, for 12, 6, 4, 3, 2 and
1 key/value heads per layer, and two ways to form the groups:

  neighbours     heads 0..g-1 share, then g..2g-1, ... (the numbering carries no meaning: any order would do)
  similar keys   heads whose keys, on a set of calibration sentences, point the most the same way share

A group need not be neighbours: reordering the heads of a layer (rows of W_Q, W_K, W_V and columns of W_O together)
leaves it computing exactly the same function, so any grouping can be made contiguous first.

Keys and values are linear in the weights, so averaging the weights averages the keys: a head whose keys are close
to its group's mean loses little. The damage is measured on the sentence embeddings: cosine to the original model's,
and whether the ranking of lesson 05's sentence pairs by similarity survives.
"""

import copy
from typing import NamedTuple

import torch

from ..heads import split_heads
from ..multihead import MultiHeadAttention
from .analysis import PAIRS, TYPE_SENTENCES, layer_inputs, pair_similarities, rank_changes, unique_sentences
from .encoder import Encoder, encode, tokenize

GROUPINGS = ("neighbours", "similar keys")
KV_HEADS = (12, 6, 4, 3, 2, 1)


def pool_kv(attention: MultiHeadAttention, kv_heads: int, order: list[int] | None = None) -> MultiHeadAttention:
    """A grouped-query copy of `attention`: heads reordered by `order`, then K and V mean-pooled over each group.

    Args:
        attention: a multi-head layer (its kv_heads equal to its heads).
        kv_heads: key/value heads of the copy; groups of heads // kv_heads consecutive heads (after reordering).
        order: the heads in their new order (default: as they are); the copy's head i is the original head order[i].

    Shape:
        returns a `MultiHeadAttention` with the same d_model and heads and `kv_heads` key/value heads.
    """
    heads, d_head, d_model = attention.heads, attention.d_head, attention.d_model
    if attention.kv_heads != heads:
        raise ValueError(
            f"pool_kv starts from multi-head attention; this layer already has kv_heads={attention.kv_heads}"
        )
    order = list(range(heads)) if order is None else list(order)
    if sorted(order) != list(range(heads)):
        raise ValueError(f"order must list each of the {heads} heads once, got {order}")
    bias = attention.in_proj.bias is not None
    pooled = MultiHeadAttention(d_model, heads, bias=bias, kv_heads=kv_heads).to(attention.in_proj.weight)
    group = heads // kv_heads
    index = torch.tensor(order)
    w_q, w_k, w_v = attention.in_proj.weight.detach().split(attention.projection_sizes())  # (d_model, d_model) each

    def by_head(w):  # (d_model, ...) rows -> (heads, d_head, ...) reordered
        return w.reshape(heads, d_head, *w.shape[1:])[index]

    def pool(w):  # (d_model, ...) -> (kv_heads * d_head, ...): mean over the heads of each group
        return by_head(w).reshape(kv_heads, group, d_head, *w.shape[1:]).mean(dim=1).flatten(0, 1)

    w_o = attention.out_proj.weight.detach().reshape(d_model, heads, d_head)[:, index]  # head h's columns, reordered
    with torch.no_grad():
        pooled.in_proj.weight.copy_(torch.cat([by_head(w_q).flatten(0, 1), pool(w_k), pool(w_v)]))
        pooled.out_proj.weight.copy_(w_o.reshape(d_model, d_model))
        if bias:
            b_q, b_k, b_v = attention.in_proj.bias.detach().split(attention.projection_sizes())
            pooled.in_proj.bias.copy_(torch.cat([by_head(b_q).flatten(), pool(b_k), pool(b_v)]))
            pooled.out_proj.bias.copy_(attention.out_proj.bias)
    return pooled


def neighbour_groups(heads: int, kv_heads: int) -> list[list[int]]:
    """Groups of consecutive heads: [[0, 1], [2, 3], ...] for 2 heads per group."""
    group = heads // kv_heads
    return [list(range(g * group, (g + 1) * group)) for g in range(kv_heads)]


def similar_groups(similarity: torch.Tensor, kv_heads: int) -> list[list[int]]:
    """Groups of heads whose keys are alike, greedily: the most similar pair of the heads left starts a group, which
    takes in the heads most similar to it on average until it is full; the last group takes what is left.

    Shape:
        similarity (heads, heads), symmetric; returns kv_heads groups of heads // kv_heads heads each.
    """
    heads = similarity.shape[0]
    size = heads // kv_heads
    left, groups = list(range(heads)), []
    while left:
        if size == 1 or len(left) == size:
            chosen = left[:size]
        else:
            sub = similarity[left][:, left].clone().fill_diagonal_(-float("inf"))
            i, j = divmod(int(sub.argmax()), len(left))
            chosen = [left[i], left[j]]
            while len(chosen) < size:
                rest = [h for h in left if h not in chosen]
                chosen.append(max(rest, key=lambda h: float(similarity[h, chosen].mean())))
        groups.append(sorted(chosen))
        left = [h for h in left if h not in chosen]
    return groups


@torch.no_grad()
def head_keys(model: Encoder, tokenizer, sentences=TYPE_SENTENCES) -> list[torch.Tensor]:
    """Each layer's keys, head by head, on the real tokens of `sentences` (run through the full model).

    Shape:
        returns `layers` tensors (heads, tokens, d_head), tokens = all real tokens of all sentences.
    """
    batch = tokenize(tokenizer, list(sentences))
    inputs, _ = layer_inputs(model, batch)
    keys = []
    for x, layer in zip(inputs, model.layers):
        _, k, _ = layer.attention.project(x, x, x)  # (batch, seq, d_model)
        k = split_heads(k, layer.attention.kv_heads)  # (batch, heads, seq, d_head)
        keys.append(k.transpose(0, 1)[:, batch.mask])  # (heads, tokens, d_head)
    return keys


def key_similarity(keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the heads' keys, each head's keys flattened into one vector.

    Shape:
        keys (heads, tokens, d_head); returns (heads, heads).
    """
    flat = torch.nn.functional.normalize(keys.flatten(1), dim=-1)  # (heads, tokens * d_head)
    return flat @ flat.T


def key_error(keys: torch.Tensor, groups: list[list[int]]) -> float:
    """Share of the keys lost by averaging within groups: sum |k_h - mean of its group|^2 / sum |k_h|^2."""
    lost = sum(float((keys[g] - keys[g].mean(dim=0)).pow(2).sum()) for g in groups)
    return lost / float(keys.pow(2).sum())


def groups_for(keys: list[torch.Tensor], kv_heads: int, grouping: str) -> list[list[list[int]]]:
    """The groups of every layer for one grouping ("neighbours" or "similar keys")."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
    heads = keys[0].shape[0]
    if grouping == "neighbours":
        return [neighbour_groups(heads, kv_heads) for _ in keys]
    return [similar_groups(key_similarity(k), kv_heads) for k in keys]


def pooled_encoder(model: Encoder, kv_heads: int, groups: list[list[list[int]]]) -> Encoder:
    """A copy of `model` whose every layer shares `kv_heads` key/value heads, pooled over the given groups.

    Shape:
        groups: per layer, kv_heads lists of heads. Returns an `Encoder` in eval mode.
    """
    pooled = copy.deepcopy(model)
    for layer, layer_groups in zip(pooled.layers, groups):
        order = [h for g in layer_groups for h in g]
        layer.attention = pool_kv(layer.attention, kv_heads, order)
    return pooled.eval().requires_grad_(False)


class PoolingRow(NamedTuple):
    kv_heads: int
    grouping: str
    key_error: float  # mean over layers of the share of the keys lost by averaging
    cosine: float  # mean cos(pooled embedding, original embedding) over the sentences
    worst_cosine: float  # the smallest of them
    similarity_change: float  # largest change of a pair's similarity
    rank_changes: int  # pairs of pairs whose similarity order flipped
    similarities: list[float]  # each pair's similarity in the pooled model


@torch.no_grad()
def conversion(
    model: Encoder, tokenizer, kv_heads=KV_HEADS, groupings=GROUPINGS, pairs=PAIRS, calibration=TYPE_SENTENCES
) -> tuple[list[float], list[PoolingRow]]:
    """Pool the K/V heads for each number of kv_heads and each grouping; measure how far the embeddings move.

    The groups are chosen on the `calibration` sentences; the damage is measured on the sentences of `pairs`.

    Returns:
        the original similarity of each pair, and one `PoolingRow` per (kv_heads, grouping).
    """
    keys = head_keys(model, tokenizer, calibration)
    sentences, index = unique_sentences(pairs)
    base = encode(model, tokenizer, sentences).embeddings  # (sentences, d_model)
    base_sims = pair_similarities(base, index)  # (pairs,)
    rows = []
    for k in kv_heads:
        for grouping in groupings:
            groups = groups_for(keys, k, grouping)
            emb = encode(pooled_encoder(model, k, groups), tokenizer, sentences).embeddings
            cos = (emb * base).sum(dim=-1)  # (sentences,)
            sims = pair_similarities(emb, index)
            rows.append(
                PoolingRow(
                    kv_heads=k,
                    grouping=grouping,
                    key_error=sum(key_error(kl, g) for kl, g in zip(keys, groups)) / len(keys),
                    cosine=float(cos.mean()),
                    worst_cosine=float(cos.min()),
                    similarity_change=float((sims - base_sims).abs().max()),
                    rank_changes=int(rank_changes(base_sims, sims)),
                    similarities=sims.tolist(),
                )
            )
    return base_sims.tolist(), rows


def format_conversion(rows: list[PoolingRow], pairs: int = len(PAIRS)) -> str:
    """The lesson's table: per kv_heads and grouping, key error, cosine to the original, pair ranking flips."""
    flips = pairs * (pairs - 1) // 2
    header = (
        f"{'kv_heads':>8} | {'grouping':<12} | {'keys lost':>9} | {'cos mean':>8} | {'cos worst':>9} | "
        f"{'largest pair change':>19} | ranking flips (of {flips})"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.kv_heads:>8} | {r.grouping:<12} | {r.key_error:>9.1%} | {r.cosine:>8.3f} | {r.worst_cosine:>9.3f} | "
            f"{r.similarity_change:>19.3f} | {r.rank_changes:>2}"
        )
    return "\n".join(lines)
