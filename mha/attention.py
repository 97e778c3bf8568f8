"""Scaled dot-product attention, in numpy and in torch.

    weights = softmax(q @ k^T / sqrt(d_head))      one distribution over keys per query
    output  = weights @ v                          a weighted average of the values

Masks follow the course convention (True = may attend). A query whose keys are all masked has nothing to attend
to: its weights are all zero and its output is the zero vector (no NaN). This is what
`torch.nn.functional.scaled_dot_product_attention` returns too; `nn.MultiheadAttention` returns NaN there.

Scores can overflow: float32 holds numbers up to about 3.4e38 (float16: 65504), and a score is a sum of d_head
products. When one becomes infinite, softmax computes inf - inf = NaN and the output is NaN. A NaN in an input (q, k,
v, or a layer's weights) makes the output NaN too. On a CPU the torch and numpy versions warn when the output is
not finite (a `RuntimeWarning` naming the cause: the input that holds NaN or infinities, or else the overflow); on a
GPU the check is skipped, because looking at the result would make the CPU wait for the GPU.
"""

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import (
    check_fits,
    check_float,
    check_mask,
    check_qkv,
    check_same_device,
    check_tensor,
    not_finite_message,
    warn_if_not_finite,
)
from .masks import with_causal


def softmax_numpy(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis (the keys), with masked keys given weight 0.

    Args:
        scores: attention scores.
        mask: bool, True = may attend; broadcasts against scores. Default: None (nothing masked).

    Shape:
        scores (..., q_pos, k_pos); mask (q_pos, k_pos) or more leading dims; returns (..., q_pos, k_pos).
        A row whose keys are all masked comes back all zeros.
    """
    scores = np.asarray(scores)
    check_float("scores", scores)
    if mask is not None:
        mask = np.asarray(mask)
        check_mask(mask, scores.shape)
        scores = np.where(mask, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # a fully masked row has max -inf
    with np.errstate(invalid="ignore"):  # inf - inf: reported below, in words
        e = np.exp(scores - row_max)  # subtracting the max changes nothing but keeps exp from overflowing
    total = e.sum(axis=-1, keepdims=True)
    # a fully masked row (total 0) attends to nothing; a NaN stays NaN, as in torch, so that it is seen
    return np.divide(e, total, out=np.zeros_like(e), where=(total > 0) | np.isnan(total))


def attention_numpy(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None):
    """Scaled dot-product attention in numpy.

    Args:
        q: queries, what each position is looking for.
        k: keys, what each position offers to be matched against.
        v: values, what each position passes on when attended to.
        mask: bool, True = may attend. Default: None (every query may attend to every key).

    Shape:
        q (..., q_pos, d_head), k (..., k_pos, d_head), v (..., k_pos, d_v), mask broadcastable to
        (..., q_pos, k_pos); returns output (..., q_pos, d_v) and weights (..., q_pos, k_pos).
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    check_qkv(q, k, v)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, in words
        scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])  # (..., q_pos, k_pos)
        weights = softmax_numpy(scores, mask)
        out = weights @ v
    if not np.isfinite(out).all():
        message = not_finite_message((("q", q), ("k", k), ("v", v)), q, k, where="attention_numpy")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return out, weights


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension (the keys), with masked keys given weight 0. `scores` is left unchanged.

    Args:
        scores: attention scores.
        mask: bool, True = may attend; broadcasts against scores. Default: None (nothing masked).

    Shape:
        scores (..., q_pos, k_pos); returns the same shape. A row whose keys are all masked comes back all zeros.
    """
    check_tensor("scores", scores)
    check_float("scores", scores)
    if mask is None:
        return scores.softmax(dim=-1)
    check_tensor("mask", mask, "a boolean torch.Tensor")
    check_mask(mask, scores.shape)
    return _softmax_of_filled(scores.masked_fill(~mask, float("-inf")), mask)


def _softmax_of_filled(filled: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of scores whose blocked entries already hold -inf; a fully masked row becomes all zeros."""
    weights = filled.softmax(dim=-1)
    # A fully masked row is softmax of all -inf = 0/0 = NaN; define it as "attends to nothing".
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def _check_torch_inputs(q, k, v, mask) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
    if mask is not None:
        check_tensor("mask", mask, "a boolean torch.Tensor")
    check_qkv(q, k, v)
    if mask is not None:
        check_same_device(("q", q), ("mask", mask))


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
        mask: bool, True = may attend; broadcasts against the scores. Default: None (nothing masked).
        causal: also hide every key that comes after its query (see `mha.masks.causal_mask`). Default: False.

    Shape:
        q (..., q_pos, d_head), k (..., k_pos, d_head), v (..., k_pos, d_v), mask broadcastable to
        (..., q_pos, k_pos); returns output (..., q_pos, d_v) and weights (..., q_pos, k_pos).
    """
    _check_torch_inputs(q, k, v, mask)
    scores_shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    check_fits(math.prod(scores_shape) * q.element_size() * 2, q.device, f"the scores and weights {scores_shape}")
    # Scaling q before the product gives the same scores as scaling them after, and touches q_pos x d_head numbers
    # instead of q_pos x k_pos.
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # (..., q_pos, k_pos)
    if mask is None and not causal:
        weights = scores.softmax(dim=-1)
    else:
        allowed = with_causal(mask, q.shape[-2], k.shape[-2], q.device) if causal else mask
        check_mask(allowed, scores.shape)
        # scores is ours (just computed), so it can be filled in place: one copy of q_pos x k_pos numbers saved
        scores = scores.masked_fill_(~allowed, float("-inf"))
        if mask is None:
            weights = scores.softmax(dim=-1)  # causal alone leaves every query its own position: no empty row
        else:
            weights = _softmax_of_filled(scores, allowed)
    out = weights @ v  # (..., q_pos, d_v)
    warn_if_not_finite(out, (("q", q), ("k", k), ("v", v)), q, k)
    return out, weights  # (..., q_pos, d_v), (..., q_pos, k_pos)


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """The same computation done by PyTorch's fused kernel, `F.scaled_dot_product_attention` (output only).

    Args:
        q, k, v: queries, keys and values.
        mask: bool, True = may attend; broadcasts against the scores. Default: None (nothing masked).
        causal: also hide every key that comes after its query. Default: False.

    Shape:
        as in `attention`; returns only the output (..., q_pos, d_v): fused kernels never build the weights.
    """
    _check_torch_inputs(q, k, v, mask)
    if mask is not None:
        check_mask(mask, (*q.shape[:-1], k.shape[-2]))
    if causal and mask is not None:
        mask, causal = with_causal(mask, q.shape[-2], k.shape[-2], q.device), False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    warn_if_not_finite(out, (("q", q), ("k", k), ("v", v)), q, k, where="sdpa")
    return out
