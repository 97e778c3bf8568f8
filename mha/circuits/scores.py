"""What each head does, and how two heads in different layers work together: scores, ablation, composition.

Attention scores, from the weights of every head on repeated sequences:

    previous token   the mean weight a query puts on the position just before it (i - 1)
    induction        the mean weight a query puts on the position just *after* an earlier occurrence of its own
                     token (k + 1, where k < i and tokens[k] == tokens[i]), over the queries whose token occurred
                     before; with several earlier occurrences, the weight on all of their next positions together

A previous-token head in the first layer writes "the token before me" into every position; an induction head in the
second layer finds, through its keys, the position whose previous token is the current token, and copies what sits
there. Both scores lie in [0, 1].

Ablation: lesson 03 showed that concatenate-then-project is a sum over heads, one term per head
(`head_terms`); a head is removed by leaving its term out of the sum (`head_mask` with a 0 for it, or
`forward_without_head`, which writes the sum out).

Composition (Elhage et al. 2021): in the residual stream, head h1 of an earlier layer writes W_OV^h1 x, and a
later head h2 reads it through its queries, keys or values. With W_QK = W_Q^T W_K (the score is x_q^T W_QK x_k)
and W_OV = W_O^h W_V (what a head writes for what it reads), each kind of composition is the size of a product,
relative to the sizes of its factors:

    K-composition   |W_QK^h2  W_OV^h1|  / (|W_QK^h2| |W_OV^h1|)      h1's output changes h2's keys
    Q-composition   |W_QK^h2ᵀ W_OV^h1|  / (|W_QK^h2| |W_OV^h1|)      ... h2's queries
    V-composition   |W_OV^h2  W_OV^h1|  / (|W_OV^h2| |W_OV^h1|)      ... h2's values

with Frobenius norms. Random matrices of the same shapes already score above 0 (`random_composition`): a score
means something against that baseline.
"""

import torch

from .._validate import check_rank, fmt_shape
from ..heads import repeat_kv, split_heads
from ..multihead import MultiHeadAttention
from ..pretrained.head_scores import previous_token
from .repeats import earlier_occurrence

KINDS = ("k", "q", "v")


def head_name(layer: int, head: int) -> str:
    """How the lessons name a head: "L0.H2" is head 2 of the first layer."""
    return f"L{layer}.H{head}"


def previous_token_scores(weights: torch.Tensor) -> torch.Tensor:
    """Mean weight on the previous position, per head, averaged over the batch and over queries 1 .. seq - 1.

    Args:
        weights: attention weights of a batch, e.g. from `model(tokens, need_weights=True)`.

    Shape:
        weights (batch, ..., seq, seq); returns (...), e.g. (layers * heads,).
    """
    check_rank("weights", weights, range(3, 9), "(batch, ..., seq, seq)")
    return previous_token(weights).mean(dim=0)  # lesson 05's score, per sequence, then over the batch


def spread_evenly(batch: int, seq: int) -> torch.Tensor:
    """The weights of a causal head that spreads its weight evenly over the keys each query sees (1 / (i + 1) on
    each of keys 0 .. i): the baseline every score of such a head is read against.

    Shape:
        returns (batch, 1, seq, seq) float64, indexed (q_pos, k_pos).
    """
    even = torch.ones(seq, seq, dtype=torch.float64).tril()  # (q_pos, k_pos)
    return (even / even.sum(-1, keepdim=True)).expand(batch, 1, seq, seq)


def after_earlier(tokens: torch.Tensor) -> torch.Tensor:
    """The keys an induction head should look at: True at (q, k) when the token at k - 1 equals the token at q,
    with k - 1 < q (the position just after an earlier occurrence of the query's token).

    Shape:
        tokens (batch, seq); returns (batch, seq, seq) bool, indexed (q_pos, k_pos).
    """
    check_rank("tokens", tokens, (2,), "(batch, seq)")
    earlier = earlier_occurrence(tokens)  # (batch, q_pos, k_pos): tokens[k] == tokens[q], k < q
    after = torch.zeros_like(earlier)
    after[..., 1:] = earlier[..., :-1]  # shift one key to the right: from the occurrence to the token after it
    return after


def induction_scores(weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean weight on the positions just after earlier occurrences of each query's token, per head.

    Averaged over every query, in every sequence of the batch, whose token occurred before (the others have no
    such position); a query with several earlier occurrences counts the weight on all of their next positions.

    Args:
        weights: attention weights of a batch, e.g. from `model(tokens, need_weights=True)`.
        tokens: the sequences the weights were computed on.

    Shape:
        weights (batch, ..., seq, seq), tokens (batch, seq); returns (...).
    """
    check_rank("weights", weights, range(3, 9), "(batch, ..., seq, seq)")
    check_rank("tokens", tokens, (2,), "(batch, seq)")
    if weights.shape[0] != tokens.shape[0] or weights.shape[-2:] != (tokens.shape[1],) * 2:
        raise ValueError(
            f"weights (batch, ..., seq, seq) and tokens (batch, seq) disagree: got {fmt_shape(weights.shape)} and "
            f"{fmt_shape(tokens.shape)}"
        )
    targets = after_earlier(tokens)  # (batch, q_pos, k_pos)
    has = targets.any(dim=-1)  # (batch, q_pos): queries whose token occurred before
    if not has.any():
        raise ValueError("no token of these sequences occurs twice: the induction score is undefined")
    extra = weights.ndim - 3
    shape = (tokens.shape[0], *([1] * extra), *targets.shape[1:])
    on_target = (weights * targets.view(shape).to(weights.dtype)).sum(dim=-1)  # (batch, ..., q_pos)
    on_target = on_target.movedim(0, -2)  # (..., batch, q_pos)
    return on_target[..., has].sum(dim=-1) / has.sum()  # pooled over every query that has one


def head_terms(layer: MultiHeadAttention, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Each head's term in the layer's output: its output times its own block of W_O (lesson 03).

    `head_terms(layer, x).sum(dim=1) + layer.out_proj.bias` equals `layer(x, causal=causal)[0]`.

    Args:
        layer: a `MultiHeadAttention` (or a subclass: RoPE turns its queries and keys in `attend`).
        x: the layer's input.
        causal: hide the keys after each query (default: True, as in the course's small models).

    Shape:
        x (batch, seq, d_model); returns (batch, heads, seq, d_model).
    """
    check_rank("x", x, (3,), "(batch, seq, d_model)")
    q, k, v = layer.project(x, x, x)  # (batch, seq, d_model), k and v (batch, seq, kv_heads * d_head)
    q = split_heads(q, layer.heads)  # (batch, heads, seq, d_head)
    k, v = split_heads(k, layer.kv_heads), split_heads(v, layer.kv_heads)
    if layer.kv_heads != layer.heads:
        group = layer.heads // layer.kv_heads
        k, v = repeat_kv(k, group), repeat_kv(v, group)  # (batch, heads, seq, d_head)
    out, _ = layer.attend(q, k, v, None, causal, False)  # (batch, heads, seq, d_head)
    w_o = layer.out_proj.weight.view(layer.d_model, layer.heads, layer.d_head)  # (d_model, heads, d_head)
    return torch.einsum("bhsd,mhd->bhsm", out, w_o)  # (batch, heads, seq, d_model): head h's block of columns


def merge_check(layer: MultiHeadAttention, x: torch.Tensor) -> float:
    """Largest difference between the layer's output and the sum of its heads' terms plus the bias (about 0).

    Shape:
        x (batch, seq, d_model); returns a float.
    """
    total = head_terms(layer, x).sum(dim=1)  # (batch, seq, d_model)
    if layer.out_proj.bias is not None:
        total = total + layer.out_proj.bias
    return (layer(x, causal=True)[0] - total).abs().max().item()


def ablation_mask(layers: int, heads: int, removed: list[tuple[int, int]] | tuple[int, int]) -> torch.Tensor:
    """The `head_mask` of an `AttentionOnlyModel` that removes the given heads: 0 for them, 1 for the others.

    Args:
        layers, heads: the model's sizes.
        removed: one (layer, head) pair or a list of them.

    Shape:
        returns (layers * heads,) float64; entry layer * heads + head belongs to that head (layer 0's first).
    """
    removed = [removed] if isinstance(removed, tuple) else list(removed)
    keep = torch.ones(layers, heads, dtype=torch.float64)
    for layer, head in removed:
        if not (0 <= layer < layers and 0 <= head < heads):
            raise ValueError(f"no head ({layer}, {head}) in a model of {layers} layers x {heads} heads")
        keep[layer, head] = 0.0
    return keep.flatten()


def forward_without_head(model, tokens: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """The logits of an `AttentionOnlyModel` with one head's term left out of its layer's sum, written out.

    The same as `model(tokens, head_mask=ablation_mask(...))`: each layer adds the sum of its heads' terms
    (`head_terms`) and W_O's bias to the residual; the removed head's term is not added.

    Shape:
        tokens (batch, seq); returns logits (batch, seq, relations, vocab).
    """
    x = model.embed(tokens)  # (batch, seq, d_model)
    for i, attention in enumerate(model.layers):
        terms = head_terms(attention, x)  # (batch, heads, seq, d_model)
        if i == layer:
            terms = torch.cat([terms[:, :head], terms[:, head + 1 :]], dim=1)  # every head but the removed one
        x = x + terms.sum(dim=1) + attention.out_proj.bias  # the residual, as in the model's forward
    return torch.stack([readout(x) for readout in model.readouts], dim=2)  # (batch, seq, relations, vocab)


def qk_matrix(layer: MultiHeadAttention, head: int) -> torch.Tensor:
    """W_QK = W_Q^T W_K of one head: the score between residual vectors x_q and x_k is x_q^T W_QK x_k (unscaled,
    biases left out).

    Shape:
        returns (d_model, d_model).
    """
    w_q, w_k, _ = layer.in_proj.weight.split(layer.projection_sizes())  # (d_model or kv_heads * d_head, d_model)
    kv = head // (layer.heads // layer.kv_heads)
    rows, kv_rows = _rows(layer, head), _rows(layer, kv)
    return w_q[rows].T @ w_k[kv_rows]  # (d_model, d_head) @ (d_head, d_model)


def ov_matrix(layer: MultiHeadAttention, head: int) -> torch.Tensor:
    """W_OV = W_O^h W_V^h of one head: reading x at a key, the head writes W_OV x (times its weight) into the
    residual (biases left out).

    Shape:
        returns (d_model, d_model).
    """
    _, _, w_v = layer.in_proj.weight.split(layer.projection_sizes())
    kv = head // (layer.heads // layer.kv_heads)
    return layer.out_proj.weight[:, _rows(layer, head)] @ w_v[_rows(layer, kv)]  # (d_model, d_head) @ (d_head, ...)


def _rows(layer: MultiHeadAttention, head: int) -> slice:
    if not 0 <= head < layer.heads:
        raise ValueError(f"head must be in 0..{layer.heads - 1}, got {head!r}")
    return slice(head * layer.d_head, (head + 1) * layer.d_head)


def composition_score(reader: torch.Tensor, writer: torch.Tensor) -> float:
    """|reader @ writer| / (|reader| |writer|), Frobenius norms: how much of what `writer` writes `reader` reads.

    Shape:
        reader (d_model, d_model), writer (d_model, d_model); returns a float in [0, 1].
    """
    return (
        torch.linalg.matrix_norm(reader @ writer)
        / (torch.linalg.matrix_norm(reader) * torch.linalg.matrix_norm(writer))
    ).item()


def composition_scores(first: MultiHeadAttention, second: MultiHeadAttention, kind: str = "k") -> torch.Tensor:
    """The composition score of every pair (head h1 of `first`, head h2 of `second`).

    Args:
        first: the earlier layer (its heads write).
        second: the later layer (its heads read).
        kind: "k" (keys), "q" (queries) or "v" (values).

    Shape:
        returns (first.heads, second.heads), entry [h1, h2].
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    table = torch.zeros(first.heads, second.heads, dtype=torch.float64)
    with torch.no_grad():
        for h2 in range(second.heads):
            qk, ov2 = qk_matrix(second, h2), ov_matrix(second, h2)
            reader = {"k": qk, "q": qk.T, "v": ov2}[kind]
            for h1 in range(first.heads):
                table[h1, h2] = composition_score(reader, ov_matrix(first, h1))
    return table


def random_composition(d_model: int, d_head: int, draws: int = 200, seed: int = 0) -> float:
    """The mean K-composition score of random heads of these sizes: Gaussian W_Q, W_K, W_V, W_O (the baseline).

    Returns:
        a float: what a score is worth when the two heads have nothing to do with each other.
    """
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        w_q, w_k, w_v = (torch.randn(d_head, d_model, generator=g, dtype=torch.float64) for _ in range(3))
        w_o = torch.randn(d_model, d_head, generator=g, dtype=torch.float64)
        total += composition_score(w_q.T @ w_k, w_o @ w_v)
    return total / draws
