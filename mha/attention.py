"""Scaled dot-product attention, in numpy and in torch.

    weights = softmax(q @ k^T / sqrt(d_head))      one distribution over keys per query
    output  = weights @ v                          a weighted average of the values

Masks follow the course convention (True = may attend). A query whose keys are all masked has nothing to attend
to: its weights are all zero and its output is the zero vector (no NaN). This is what
`torch.nn.functional.scaled_dot_product_attention` returns too; `nn.MultiheadAttention` returns NaN there.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_mask, check_qkv
from .masks import causal_mask


def softmax_numpy(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis (the keys), with masked keys given weight 0.

    Args:
        scores: attention scores.
        mask: bool, True = may attend; broadcasts against scores.

    Shape:
        scores (..., q_pos, k_pos); mask (q_pos, k_pos) or more leading dims; returns (..., q_pos, k_pos).
        A row whose keys are all masked comes back all zeros.
    """
    if mask is not None:
        mask = np.asarray(mask)
        check_mask(mask, scores.shape)
        scores = np.where(mask, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # a fully masked row has max -inf
    e = np.exp(scores - row_max)  # subtracting the max changes nothing but keeps exp from overflowing
    total = e.sum(axis=-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def attention_numpy(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None):
    """Scaled dot-product attention in numpy.

    Args:
        q: queries, what each position is looking for.
        k: keys, what each position offers to be matched against.
        v: values, what each position passes on when attended to.
        mask: bool, True = may attend.

    Shape:
        q (..., q_pos, d_head), k (..., k_pos, d_head), v (..., k_pos, d_v), mask broadcastable to
        (..., q_pos, k_pos); returns output (..., q_pos, d_v) and weights (..., q_pos, k_pos).
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    check_qkv(q, k, v)
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])  # (..., q_pos, k_pos)
    weights = softmax_numpy(scores, mask)
    return weights @ v, weights


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension (the keys), with masked keys given weight 0. `scores` is left unchanged.

    Args:
        scores: attention scores.
        mask: bool, True = may attend; broadcasts against scores.

    Shape:
        scores (..., q_pos, k_pos); returns the same shape. A row whose keys are all masked comes back all zeros.
    """
    if mask is None:
        return scores.softmax(dim=-1)
    check_mask(mask, scores.shape)
    return _softmax_of_filled(scores.masked_fill(~mask, float("-inf")), mask)


def _softmax_of_filled(filled: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of scores whose blocked entries already hold -inf; a fully masked row becomes all zeros."""
    weights = filled.softmax(dim=-1)
    # A fully masked row is softmax of all -inf = 0/0 = NaN; define it as "attends to nothing".
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention in torch: scores, softmax, weighted average. Returns output and weights.

    Args:
        q, k, v: queries, keys and values.
        mask: bool, True = may attend; broadcasts against the scores.
        causal: also hide every key that comes after its query (see `mha.masks.causal_mask`).

    Shape:
        q (..., q_pos, d_head), k (..., k_pos, d_head), v (..., k_pos, d_v), mask broadcastable to
        (..., q_pos, k_pos); returns output (..., q_pos, d_v) and weights (..., q_pos, k_pos).
    """
    check_qkv(q, k, v)
    # Scaling q before the product gives the same scores as scaling them after, and touches q_pos x d_head numbers
    # instead of q_pos x k_pos.
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # (..., q_pos, k_pos)
    if mask is None and not causal:
        weights = scores.softmax(dim=-1)
    else:
        allowed = mask
        if causal:
            future = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
            allowed = future if mask is None else mask & future
        check_mask(allowed, scores.shape)
        # scores is ours (just computed), so it can be filled in place: one copy of q_pos x k_pos numbers saved
        scores = scores.masked_fill_(~allowed, float("-inf"))
        if mask is None:
            weights = scores.softmax(dim=-1)  # causal alone leaves every query its own position: no empty row
        else:
            weights = _softmax_of_filled(scores, allowed)
    return weights @ v, weights  # (..., q_pos, d_v), (..., q_pos, k_pos)


def sdpa(q, k, v, mask=None, causal=False) -> torch.Tensor:
    """The same computation done by PyTorch's fused kernel, `F.scaled_dot_product_attention` (output only).

    Args:
        q, k, v, mask, causal: as in `attention`.

    Shape:
        as in `attention`; returns only the output (..., q_pos, d_v): fused kernels never build the weights.
    """
    check_qkv(q, k, v)
    if mask is not None:
        check_mask(mask, (*q.shape[:-1], k.shape[-2]))
    if causal and mask is not None:
        mask = mask & causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
