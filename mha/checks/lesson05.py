"""Checks for lesson 05, heads in a real model. Use: `from mha.checks import lesson05 as check`."""

import torch
import torch.nn.functional as F

from ..pretrained import head_scores
from ..pretrained.encoder import mean_pool as reference_pool
from ..pretrained.encoder import sentence_embeddings as reference_embeddings
from ._legacy import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape

LESSON = "05"


def _weights(seed: int, *shape) -> torch.Tensor:
    """Random attention weights: each row a distribution over keys."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).mul(2).softmax(dim=-1)


@exercise(LESSON, "previous_token_score")
def previous_token_score(fn) -> int:
    """fn(weights (heads, seq, seq)) -> (heads,): mean weight a query puts on the position just before it."""
    cases = [_weights(0, 3, 5, 5), _weights(1, 12, 9, 9), _weights(2, 1, 2, 2)]
    for w in cases:
        heads, seq, _ = w.shape
        what = f"previous_token_score on weights {tuple(w.shape)}"
        got = as_tensor(call(fn, w.clone()), what)
        expect_shape(
            got,
            (heads,),
            what,
            "one score per head: take the diagonal over the last two dimensions, "
            "diagonal(offset=-1, dim1=-2, dim2=-1), then average it",
        )
        below = w.diagonal(offset=-1, dim1=-2, dim2=-1)  # (heads, seq - 1): entries (i, i - 1)
        diagnose(
            got,
            head_scores.previous_token(w),
            [
                (
                    w.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1),
                    "that is the next token (entries (i, i+1)); the "
                    "previous token of query i is key i-1: "
                    "diagonal(offset=-1)",
                ),
                (
                    below.sum(-1) / seq,
                    "you divided by seq; the first query has no previous token, so average over the "
                    "seq-1 queries that have one",
                ),
                (w.diagonal(dim1=-2, dim2=-1).mean(-1), "that is each query's weight on itself (the main diagonal)"),
                (below.sum(-1), "that is a sum; take the mean over queries"),
            ],
            what,
        )
    return len(cases)


def _hidden(seed: int):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 6, 8, generator=g)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    return hidden, mask


def _explain_broadcast(error):
    if isinstance(error, RuntimeError) and "must match the size" in str(error):
        return (
            "mask (batch, seq) does not line up with hidden (batch, seq, d_model): use mask[..., None], (batch, seq, 1)"
        )
    return None


@exercise(LESSON, "mean_pool")
def mean_pool(fn) -> int:
    """fn(hidden (batch, seq, d_model), mask (batch, seq) True = real token) -> (batch, d_model)."""
    cases = [_hidden(3), _hidden(4)]
    for hidden, mask in cases:
        what = f"mean_pool on hidden {tuple(hidden.shape)} with lengths {mask.sum(-1).tolist()}"
        got = as_tensor(call(fn, hidden.clone(), mask.clone(), explain=_explain_broadcast), what)
        expect_shape(got, (hidden.shape[0], hidden.shape[2]), what, "one vector per sentence, (batch, d_model)")
        masked_sum = (hidden * mask[..., None]).sum(1)
        diagnose(
            got,
            reference_pool(hidden, mask),
            [
                (hidden.mean(1), "padding was included: average over the real tokens only (where the mask is True)"),
                (masked_sum / hidden.shape[1], "you divided by seq; divide by each sentence's number of real tokens"),
                (masked_sum, "that is a sum; divide by the number of real tokens"),
                (
                    (hidden * ~mask[..., None]).sum(1) / (~mask).sum(1, keepdim=True).clamp(min=1),
                    "you averaged the padding, not the tokens: the mask is True on real tokens",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "sentence_embedding")
def sentence_embedding(fn) -> int:
    """fn(hidden, mask) -> (batch, d_model): mean-pooled over real tokens, then scaled to length 1."""
    cases = [_hidden(5), _hidden(6)]
    for hidden, mask in cases:
        what = f"sentence_embedding on hidden {tuple(hidden.shape)}"
        got = as_tensor(call(fn, hidden.clone(), mask.clone()), what)
        expect_shape(got, (hidden.shape[0], hidden.shape[2]), what, "(batch, d_model)")
        diagnose(
            got,
            reference_embeddings(hidden, mask),
            [
                (reference_pool(hidden, mask), "not scaled to length 1: divide each vector by its norm (F.normalize)"),
                (
                    reference_pool(F.normalize(hidden, dim=-1), mask),
                    "you scaled each token to length 1 and then averaged; average first, then scale the average",
                ),
                (F.normalize(hidden.mean(1), dim=-1), "padding was included in the average"),
                (
                    reference_pool(hidden, mask) / reference_pool(hidden, mask).norm(),
                    "you divided by the norm of the whole "
                    "batch; each sentence's vector must "
                    "have length 1 on its own (dim=-1)",
                ),
                (
                    F.normalize(reference_pool(hidden, mask), dim=0),
                    "normalised along the wrong dimension: each sentence's vector must have length 1 (dim=-1)",
                ),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "stack_qkv")
def stack_qkv(fn) -> int:
    """fn(query_w, key_w, value_w), each (d_model, d_model) as in BERT -> in_proj weight (3 * d_model, d_model)."""
    for seed, d_model in enumerate([4, 6]):
        g = torch.Generator().manual_seed(10 + seed)
        q, k, v = (torch.randn(d_model, d_model, generator=g) for _ in range(3))
        what = f"stack_qkv on three ({d_model}, {d_model}) matrices"
        got = as_tensor(call(fn, q.clone(), k.clone(), v.clone()), what)
        if tuple(got.shape) == (d_model, 3 * d_model):
            raise CheckFailed(
                f"{what}: shape {tuple(got.shape)}, expected {(3 * d_model, d_model)}: stack them as "
                f"rows (torch.cat along dim 0), as nn.Linear(d_model, 3 * d_model) stores its weight"
            )
        expect_shape(got, (3 * d_model, d_model), what, "(3 * d_model, d_model)")
        diagnose(
            got,
            torch.cat([q, k, v]),
            [
                (
                    torch.cat([q.T, k.T, v.T]),
                    "each block is transposed: BERT's query, key and value are nn.Linear "
                    "weights, (out_features, in_features), the layout of ours; no transpose",
                ),
                (torch.cat([q, v, k]), "the order is [W_Q; W_K; W_V]: query rows first, then key, then value"),
                (torch.cat([k, q, v]), "the order is [W_Q; W_K; W_V]: query rows first, then key, then value"),
                (torch.cat([v, k, q]), "the order is [W_Q; W_K; W_V]: query rows first, then key, then value"),
            ],
            what,
        )
    return 2


@exercise(LESSON, "top_heads")
def top_heads(fn) -> int:
    """fn(scores (layers, heads), k) -> the k largest as [(layer, head, score), ...], largest first."""
    cases = [
        (torch.rand(6, 12, generator=torch.Generator().manual_seed(20)), 3),
        (torch.rand(2, 5, generator=torch.Generator().manual_seed(21)), 4),
    ]
    for scores, k in cases:
        layers, heads = scores.shape
        what = f"top_heads on scores {tuple(scores.shape)} with k={k}"
        got = call(fn, scores.clone(), k)
        if not isinstance(got, list | tuple) or len(got) != k:
            raise CheckFailed(f"{what}: return a list of k={k} (layer, head, score) triples, got {got!r:.80}")
        flat = scores.flatten()
        order = flat.argsort(descending=True)[:k].tolist()
        expected = [(i // heads, i % heads) for i in order]
        pairs = [(int(t[0]), int(t[1])) for t in got]
        if pairs == [(i // layers, i % layers) for i in order]:
            raise CheckFailed(
                f"{what}: index i of the flattened (layers, heads) scores is layer i // heads, head "
                f"i % heads; you divided by layers"
            )
        if pairs == [(i // heads, i % heads) for i in flat.argsort()[:k].tolist()]:
            raise CheckFailed(f"{what}: those are the smallest scores; sort descending")
        if pairs != expected:
            raise CheckFailed(f"{what}: got heads {pairs}, expected {expected}")
        for layer, head, score in got:
            if not (isinstance(layer, int) and isinstance(head, int) and isinstance(score, float)):
                raise CheckFailed(
                    f"{what}: return plain Python numbers, (int, int, float), e.g. int(i) // heads and "
                    f"float(v); got ({type(layer).__name__}, {type(head).__name__}, "
                    f"{type(score).__name__})"
                )
            if abs(float(score) - float(scores[layer, head])) > 1e-6:
                raise CheckFailed(
                    f"{what}: the score of layer {layer}, head {head} should be "
                    f"{float(scores[layer, head]):.4f}, got {float(score):.4f}"
                )
    return len(cases)


TOKENS = ["[CLS]", "apple", "released", "a", "new", "iphone", ",", "but", "it", "is", "expensive", ".", "[SEP]"]


@exercise(LESSON, "word_link")
def word_link(fn) -> int:
    """fn(weights (layers, heads, seq, seq), tokens, query_word, key_word) -> (layers, heads)."""
    w = _weights(30, 6, 12, len(TOKENS), len(TOKENS))
    cases = [("it", "iphone"), ("iphone", "apple"), ("but", "[CLS]")]
    for query_word, key_word in cases:
        what = f"word_link(weights, tokens, {query_word!r}, {key_word!r})"
        got = as_tensor(call(fn, w.clone(), list(TOKENS), query_word, key_word), what)
        expect_shape(got, w.shape[:2], what, "one weight per (layer, head)")
        q, k = TOKENS.index(query_word), TOKENS.index(key_word)
        diagnose(
            got,
            w[..., q, k],
            [
                (
                    w[..., k, q],
                    f"reversed: that is how much {key_word!r} looks at {query_word!r}; the row is the query, "
                    f"the column the key: weights[..., q, k]",
                ),
                (w[..., q, :].max(-1).values, f"that is the largest weight of {query_word!r}'s row, whatever the key"),
            ],
            what,
        )
    return len(cases)
