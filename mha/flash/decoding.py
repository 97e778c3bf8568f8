"""The same merge, for decoding: one new query against a long cache, the keys split into chunks computed apart.

A decoding step (lesson 07) has one query per head and thousands of cached keys. A kernel that gives each program a
block of queries has a single block to work on, and the rest of the GPU idles. Split the *keys* instead: each chunk
of the cache gives a partial result on its own, and the partial results merge (§1's rule). FlashAttention's authors
call it flash-decoding; it is "split-K" in the language of matrix products.

A chunk's partial result can be kept as (out, lse): its normalised output and the log-sum-exp of its scores, which is
what a kernel writes anyway. Two such merge into

    lse = log(exp(lse_a) + exp(lse_b))                          (torch.logaddexp, which never overflows)
    out = out_a · exp(lse_a - lse) + out_b · exp(lse_b - lse)   (each chunk weighted by its share of the total)

the same rule as (m, l, acc), written with l = exp(lse - m) and acc = out · l.
"""

import torch

from .._validate import check_int
from .tiled import tiled_attention


def merge_results(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]):
    """The (out, lse) of attention over the keys of `a` and `b` together, from theirs.

    Shape:
        out (..., q_pos, d_head), lse (..., q_pos), for both; returns the same.
    """
    (out_a, lse_a), (out_b, lse_b) = a, b
    lse = torch.logaddexp(lse_a, lse_b)
    weight_a, weight_b = torch.exp(lse_a - lse), torch.exp(lse_b - lse)  # each chunk's share of the softmax's total
    out = out_a.to(lse.dtype) * weight_a[..., None] + out_b.to(lse.dtype) * weight_b[..., None]
    return out.to(out_a.dtype), lse


def split_k_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: int
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Attention of a few new queries over a cache, the cache split into `chunks` pieces computed apart, then merged.

    Every query sees every cached key (a decoding step: the new positions come after the whole cache; with several
    new queries, as in a prefill, use `tiled_attention(..., causal=True)` instead).

    Args:
        q: the new queries.
        k: the cached keys; `kv_heads` heads, each shared by heads // kv_heads query heads.
        v: the cached values.
        chunks: how many pieces the cache is cut into (at most k_pos).

    Shape:
        q (batch, heads, new, d_head), k and v (batch, kv_heads, k_pos, d_head); returns the output (batch, heads,
        new, d_head) and each chunk's (out, lse), as computed before merging.
    """
    chunks = check_int("chunks", chunks)
    k_pos = k.shape[-2]
    if chunks > k_pos:
        raise ValueError(f"chunks={chunks} is more than the {k_pos} cached positions: each chunk needs a key")
    bounds = [round(i * k_pos / chunks) for i in range(chunks + 1)]
    parts = [tiled_attention(q, k[..., s:e, :], v[..., s:e, :], block_k=e - s) for s, e in zip(bounds, bounds[1:])]
    merged = parts[0]
    for part in parts[1:]:
        merged = merge_results(merged, part)
    return merged[0], parts
