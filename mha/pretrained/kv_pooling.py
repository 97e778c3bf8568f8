"""Converting a trained model to grouped-query attention: mean-pool the key and value heads of all-MiniLM-L6-v2.

Ainslie et al. (2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints") turn
a multi-head checkpoint into a grouped-query one by averaging the key and value projection matrices of the heads in
each group, then train a little more ("uptraining"). Here: the averaging alone, no uptraining, for 12, 6, 4, 3, 2 and
1 key/value heads per layer, and two ways to form the groups:

  neighbours              heads 0..g-1 share, then g..2g-1, ... (the numbering carries no meaning)
  similar keys            heads whose keys, on a set of calibration sentences, point the most the same way share
  similar keys, rotated   the same, after turning each head's keys and values to agree with its group's

A group need not be neighbours: reordering the heads of a layer (rows of W_Q, W_K, W_V and columns of W_O together)
leaves it computing exactly the same function, so any grouping can be made contiguous first.

Nor are a head's d_head coordinates meaningful: rotating its queries and keys by the same orthogonal matrix R leaves
every score q . k unchanged, and rotating its values by R' and its columns of W_O by R' leaves its output unchanged.
Two heads can compute nearly the same scores in coordinates that look unrelated. The third grouping measures how
alike two heads' keys are up to such a rotation, and before pooling turns each head (exactly, the layer's function
unchanged) so that its keys and values line up with its group's (orthogonal Procrustes).

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

GROUPINGS = ("neighbours", "similar keys", "similar keys, rotated")
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


class LayerInputs(NamedTuple):
    inputs: list[torch.Tensor]  # each layer's input (batch, seq, d_model), every head present
    mask: torch.Tensor  # (batch, seq), True = real token


@torch.no_grad()
def calibrate(model: Encoder, tokenizer, sentences=TYPE_SENTENCES) -> LayerInputs:
    """Each layer's input on the calibration sentences, run through the full model."""
    batch = tokenize(tokenizer, list(sentences))
    inputs, _ = layer_inputs(model, batch)
    return LayerInputs(inputs, batch.mask)


@torch.no_grad()
def head_keys_values(attention: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor):
    """One layer's keys and values, head by head, on the real tokens of a batch.

    Shape:
        x (batch, seq, d_model), mask (batch, seq); returns keys and values (heads, tokens, d_head), tokens = all
        real tokens of the batch.
    """
    _, k, v = attention.project(x, x, x)  # (batch, seq, kv_heads * d_head)
    k, v = split_heads(k, attention.kv_heads), split_heads(v, attention.kv_heads)  # (batch, heads, seq, d_head)
    return k.transpose(0, 1)[:, mask], v.transpose(0, 1)[:, mask]  # (heads, tokens, d_head)


def key_similarity(keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the heads' keys, each head's keys flattened into one vector.

    Shape:
        keys (heads, tokens, d_head); returns (heads, heads).
    """
    flat = torch.nn.functional.normalize(keys.flatten(1), dim=-1)  # (heads, tokens * d_head)
    return flat @ flat.T


def rotation_similarity(keys: torch.Tensor) -> torch.Tensor:
    """How alike two heads' keys are up to a rotation: max over orthogonal R of cos(K_i R, K_j).

    That maximum is the sum of the singular values of K_i^T K_j (orthogonal Procrustes), over |K_i| |K_j|.

    Shape:
        keys (heads, tokens, d_head); returns (heads, heads).
    """
    cross = keys.transpose(1, 2)[:, None] @ keys[None]  # (heads, heads, d_head, d_head): K_i^T K_j
    norms = keys.flatten(1).norm(dim=-1)  # (heads,)
    return torch.linalg.svdvals(cross).sum(dim=-1) / (norms[:, None] * norms[None, :])


def procrustes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The orthogonal R that brings a closest to b: argmin |a R - b| (R = U V^T from the SVD of a^T b).

    Shape:
        a, b (tokens, d_head); returns (d_head, d_head).
    """
    u, _, vt = torch.linalg.svd(a.T @ b)
    return u @ vt


@torch.no_grad()
def rotate_heads(attention: MultiHeadAttention, groups, keys, values, rounds: int = 3) -> MultiHeadAttention:
    """A copy of `attention` computing the same function, each head turned so that within each group the keys (and
    the values) line up with the group's mean.

    Head h's query and key rows are multiplied by one rotation R_h (scores unchanged), its value rows and its
    columns of W_O by another, R'_h (output unchanged). The rotations come from orthogonal Procrustes against the
    group's mean, repeated `rounds` times.

    Shape:
        groups: lists of heads; keys, values (heads, tokens, d_head) of this layer on the calibration sentences.
    """
    turned = copy.deepcopy(attention)
    d_model, d_head = attention.d_model, attention.d_head
    w, b = turned.in_proj.weight, turned.in_proj.bias
    w_o = turned.out_proj.weight  # (d_model, d_model): head h's columns h*d_head..
    for group in groups:
        rotations = {}
        for block, data in ((1, keys), (2, values)):
            target = data[group[0]]
            for _ in range(rounds):
                turn = {h: procrustes(data[h], target) for h in group}
                target = torch.stack([data[h] @ turn[h] for h in group]).mean(dim=0)
            rotations[block] = turn
        for h in group:
            cols = slice(h * d_head, (h + 1) * d_head)
            for block, turn in ((0, rotations[1][h]), (1, rotations[1][h]), (2, rotations[2][h])):
                rows = slice(block * d_model + h * d_head, block * d_model + (h + 1) * d_head)
                w[rows] = turn.T @ w[rows]  # x W^T R = x (R^T W)^T
                if b is not None:
                    b[rows] = b[rows] @ turn
            w_o[:, cols] = w_o[:, cols] @ rotations[2][h]
    return turned


def key_error(keys: torch.Tensor, groups: list[list[int]]) -> float:
    """Share of the keys (or values) lost by averaging within groups: sum |k_h - its group's mean|^2 / sum |k_h|^2."""
    lost = sum(float((keys[g] - keys[g].mean(dim=0)).pow(2).sum()) for g in groups)
    return lost / float(keys.pow(2).sum())


def groups_for(keys: torch.Tensor, kv_heads: int, grouping: str) -> list[list[int]]:
    """One layer's groups for one grouping (see `GROUPINGS`).

    Shape:
        keys (heads, tokens, d_head), the layer's keys on the calibration sentences; returns kv_heads lists of heads.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
    if grouping == "neighbours":
        return neighbour_groups(keys.shape[0], kv_heads)
    similarity = key_similarity(keys) if grouping == "similar keys" else rotation_similarity(keys)
    return similar_groups(similarity, kv_heads)


class Pooled(NamedTuple):
    model: Encoder  # every layer with kv_heads key/value heads
    groups: list[list[list[int]]]  # per layer, the groups of heads
    key_error: float  # mean over layers of the share of the keys lost by averaging
    value_error: float  # the same for the values


@torch.no_grad()
def pooled_encoder(model: Encoder, kv_heads: int, grouping: str, calibration: LayerInputs) -> Pooled:
    """A copy of `model` whose every layer shares `kv_heads` key/value heads, mean-pooled over groups of heads.

    Args:
        model: the encoder (left unchanged).
        kv_heads: key/value heads per layer; must divide the heads.
        grouping: how to form the groups, one of `GROUPINGS`.
        calibration: from `calibrate`: the sentences on which keys are compared (and rotations fitted).
    """
    pooled = copy.deepcopy(model)
    all_groups, errors, value_errors = [], [], []
    for layer, x in zip(pooled.layers, calibration.inputs):
        keys, values = head_keys_values(layer.attention, x, calibration.mask)
        groups = groups_for(keys, kv_heads, grouping)
        attention = layer.attention
        if grouping == "similar keys, rotated":
            attention = rotate_heads(attention, groups, keys, values)
            keys, values = head_keys_values(attention, x, calibration.mask)
        errors.append(key_error(keys, groups))
        value_errors.append(key_error(values, groups))
        layer.attention = pool_kv(attention, kv_heads, [h for g in groups for h in g])
        all_groups.append(groups)
    n = len(errors)
    return Pooled(pooled.eval().requires_grad_(False), all_groups, sum(errors) / n, sum(value_errors) / n)


class PoolingRow(NamedTuple):
    kv_heads: int
    grouping: str
    key_error: float  # mean over layers of the share of the keys lost by averaging
    value_error: float  # the same for the values
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
    inputs = calibrate(model, tokenizer, calibration)
    sentences, index = unique_sentences(pairs)
    base = encode(model, tokenizer, sentences).embeddings  # (sentences, d_model)
    base_sims = pair_similarities(base, index)  # (pairs,)
    rows = []
    for k in kv_heads:
        for grouping in groupings:
            pooled = pooled_encoder(model, k, grouping, inputs)
            emb = encode(pooled.model, tokenizer, sentences).embeddings
            cos = (emb * base).sum(dim=-1)  # (sentences,)
            sims = pair_similarities(emb, index)
            rows.append(
                PoolingRow(
                    kv_heads=k,
                    grouping=grouping,
                    key_error=pooled.key_error,
                    value_error=pooled.value_error,
                    cosine=float(cos.mean()),
                    worst_cosine=float(cos.min()),
                    similarity_change=float((sims - base_sims).abs().max()),
                    rank_changes=int(rank_changes(base_sims, sims)),
                    similarities=sims.tolist(),
                )
            )
    return base_sims.tolist(), rows


def format_conversion(rows: list[PoolingRow], pairs: int = len(PAIRS)) -> str:
    """The lesson's table: per kv_heads and grouping, keys and values lost, cosine to the original, ranking flips."""
    flips = pairs * (pairs - 1) // 2
    header = (
        f"{'kv_heads':>8} | {'grouping':<21} | {'keys lost':>9} | {'values lost':>11} | {'cos mean':>8} | "
        f"{'cos worst':>9} | {'largest pair change':>19} | ranking flips (of {flips})"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.kv_heads:>8} | {r.grouping:<21} | {r.key_error:>9.1%} | {r.value_error:>11.1%} | "
            f"{r.cosine:>8.3f} | {r.worst_cosine:>9.3f} | {r.similarity_change:>19.3f} | {r.rank_changes:>2}"
        )
    return "\n".join(lines)
