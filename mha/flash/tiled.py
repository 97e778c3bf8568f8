"""Attention by blocks, in PyTorch: equal to softmax attention, without ever holding the (q_pos, k_pos) scores.

For each block of queries, the keys and values go by in blocks; each block's scores live only while that block is
used, and a running partial result (m, l, acc) per query row takes in one block after another (lesson 10, §1):

    for each block of queries Q_i:                  m = -inf, l = 0, acc = 0            (block_q rows)
        for each block of keys and values K_j, V_j:
            S     = Q_i K_jᵀ / √d_head                                                  (block_q, block_k)
            m_new = max(m, rowmax(S))
            P     = exp(S - m_new)
            l     = l · exp(m - m_new) + rowsum(P)
            acc   = acc · exp(m - m_new) + P V_j
            m     = m_new
        O_i = acc / l,  lse_i = m + log l

Memory grows with the length (queries, output, the running m, l, acc) and one (block_q, block_k) block of scores
per head, not with q_pos · k_pos. With `causal`, a block of keys that lies wholly after the
block's last query is skipped, one wholly before its first query needs no mask, and only the blocks on the diagonal
are masked. Grouped-query attention (lesson 07) reads key/value head h // group for query head h by indexing, without
copying the keys. `Traffic` counts the bytes the loop reads and writes, the numbers a kernel would move between the
GPU's main memory and its chip (`mha.flash.io` models them).
"""

import math
from dataclasses import dataclass

import torch

from .._validate import check_int, check_qkv, check_rank, check_tensor, kv_group_size


@dataclass
class Traffic:
    """Bytes read and written by a blocked attention, as a kernel holding one block of each on the chip moves them.

    Args:
        read: bytes of q, k and v blocks loaded.
        written: bytes of the output and the log-sum-exp stored.
        blocks: (query block, key block) pairs computed, for one key/value head of one sequence (skipped ones not
            counted).
    """

    read: int = 0
    written: int = 0
    blocks: int = 0


def causal_blocks(q_start: int, q_end: int, k_pos: int, block_k: int) -> tuple[list[int], list[int]]:
    """Which key blocks the queries q_start..q_end-1 must visit under a causal mask, and which of those need the mask.

    Queries and keys are aligned at position 0 (query i sees keys 0..i, as `causal_mask` and SDPA's is_causal).

    Returns:
        (starts of the key blocks to visit, starts of those among them that hold a key after some query of the
        block: the diagonal blocks, which need the mask).
    """
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]  # some key at or before the last query
    masked = [s for s in visit if min(s + block_k, k_pos) - 1 > q_start]  # some key after the first query
    return visit, masked


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
    traffic: Traffic | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention computed block by block, never holding more than (block_q, block_k) scores per head.

    Args:
        q: queries.
        k: keys; `kv_heads` of them, each shared by heads // kv_heads query heads (lesson 07).
        v: values, as many heads as k.
        causal: query i attends to keys 0..i only (default: False).
        block_q: queries per block (default: 64).
        block_k: keys per block (default: 64).
        traffic: if given, the bytes read and written are added to it.

    Shape:
        q (batch, heads, q_pos, d_head), k and v (batch, kv_heads, k_pos, d_head); returns the output (batch, heads,
        q_pos, d_head) in q's dtype and the log-sum-exp of each query's scores (batch, heads, q_pos), in float32
        (float64 for float64 inputs).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
        check_rank(name, x, (4,), "(batch, heads, seq, d_head)")
    check_qkv(q[:, :1], k[:, :1], v[:, :1])  # dtypes and sizes; the head counts differ under grouped-query attention
    block_q, block_k = check_int("block_q", block_q), check_int("block_k", block_k)
    batch, heads, q_pos, d_head = q.shape
    kv_heads, k_pos = k.shape[1], k.shape[2]
    group = kv_group_size(heads, kv_heads)
    work = torch.float64 if q.dtype == torch.float64 else torch.float32  # accumulate half precision in float32
    scale = 1 / math.sqrt(d_head)
    qg = q.view(batch, kv_heads, group, q_pos, d_head)  # the query heads of each key/value head, side by side
    out = torch.empty(batch, kv_heads, group, q_pos, d_head, dtype=q.dtype, device=q.device)
    lse = torch.empty(batch, kv_heads, group, q_pos, dtype=work, device=q.device)
    for qs in range(0, q_pos, block_q):
        qe = min(qs + block_q, q_pos)
        qb = qg[..., qs:qe, :].to(work)  # (batch, kv_heads, group, bq, d_head): loaded once per block of queries
        m = torch.full(qb.shape[:-1], -math.inf, dtype=work, device=q.device)  # (batch, kv_heads, group, bq)
        l = torch.zeros_like(m)
        acc = torch.zeros_like(qb)
        starts, masked = causal_blocks(qs, qe, k_pos, block_k) if causal else (range(0, k_pos, block_k), ())
        if traffic is not None:
            traffic.read += qg[..., qs:qe, :].nbytes
        for ks in starts:
            ke = min(ks + block_k, k_pos)
            kb = k[:, :, None, ks:ke].to(work)  # (batch, kv_heads, 1, bk, d_head): one copy serves the whole group
            vb = v[:, :, None, ks:ke].to(work)
            s = qb @ kb.transpose(-2, -1) * scale  # (batch, kv_heads, group, bq, bk)
            if ks in masked:
                allowed = torch.arange(ks, ke, device=q.device) <= torch.arange(qs, qe, device=q.device)[:, None]
                s = s.masked_fill(~allowed, -math.inf)  # (bq, bk) broadcast: keys after their query
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # (batch, kv_heads, group, bq, bk), each at most 1
            alpha = torch.exp(m - m_new)  # rescales what was summed against the old maximum
            l = l * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ vb
            m = m_new
            if traffic is not None:
                traffic.read += k[:, :, ks:ke].nbytes + v[:, :, ks:ke].nbytes
                traffic.blocks += 1
        out[..., qs:qe, :] = (acc / l[..., None]).to(q.dtype)
        lse[..., qs:qe] = m + torch.log(l)
        if traffic is not None:
            traffic.written += out[..., qs:qe, :].nbytes + lse[..., qs:qe].nbytes
    return out.view(batch, heads, q_pos, d_head), lse.view(batch, heads, q_pos)
