"""Right answers to lesson 10's exercises, in forms other than the solution's."""

import math

import numpy as np
import torch
import triton  # noqa: E402, I001
import triton.language as tl  # noqa: E402

from mha.flash import kernel  # noqa: F401 (before triton: on a CPU, its interpreter)


def merge_by_log_sum_exp(a, b):
    # through each part's log-sum-exp, log l + m: the (out, lse) form of the lesson's section 5
    (m_a, l_a, acc_a), (m_b, l_b, acc_b) = a, b
    m = torch.maximum(m_a, m_b)
    wa, wb = torch.exp(torch.log(l_a) + m_a - m), torch.exp(torch.log(l_b) + m_b - m)
    ratio_a = torch.where(l_a > 0, wa / l_a, torch.zeros_like(l_a))
    ratio_b = torch.where(l_b > 0, wb / l_b, torch.zeros_like(l_b))
    return m, wa + wb, acc_a * ratio_a[:, None] + acc_b * ratio_b[:, None]


def merge_numpy(a, b):
    (m_a, l_a, acc_a), (m_b, l_b, acc_b) = ([t.numpy() for t in part] for part in (a, b))
    m = np.maximum(m_a, m_b)
    sa, sb = np.exp(m_a - m), np.exp(m_b - m)
    return m, l_a * sa + l_b * sb, acc_a * sa[:, None] + acc_b * sb[:, None]


def step_through_merge(m, l, acc, q, k, v):
    s = q @ k.T / math.sqrt(q.shape[-1])
    m_b = s.amax(-1)
    p = torch.exp(s - m_b[:, None])
    m_new = torch.maximum(m, m_b)
    sa, sb = torch.exp(m - m_new), torch.exp(m_b - m_new)
    return m_new, l * sa + p.sum(-1) * sb, acc * sa[:, None] + (p @ v) * sb[:, None]


def step_einsum(m, l, acc, q, k, v):
    s = torch.einsum("rd,kd->rk", q, k) / q.shape[-1] ** 0.5
    m_new = torch.maximum(m, s.max(dim=1).values)
    p = (s - m_new.unsqueeze(1)).exp()
    alpha = (m - m_new).exp()
    return m_new, alpha * l + p.sum(1), alpha.unsqueeze(1) * acc + torch.einsum("rk,kv->rv", p, v)


def blocks_key_by_key(q_start, q_end, k_pos, block_k):
    visit, masked = [], []
    for s in range(0, k_pos, block_k):
        keys = range(s, min(s + block_k, k_pos))
        seen = [[key <= query for key in keys] for query in range(q_start, q_end)]
        if any(any(row) for row in seen):
            visit.append(s)
            if not all(all(row) for row in seen):
                masked.append(s)
    return visit, masked


def blocks_as_arrays(q_start, q_end, k_pos, block_k):
    starts = np.arange(0, k_pos, block_k)
    visit = starts[starts <= q_end - 1]
    ends = np.minimum(visit + block_k, k_pos) - 1
    return visit, visit[ends > q_start]


def backward_by_autograd(q, k, v, out, lse, d_out):
    # ignores the saved out and lse: recomputes the forward and lets autograd differentiate it
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    result = torch.softmax(leaves[0] @ leaves[1].T / math.sqrt(q.shape[-1]), dim=-1) @ leaves[2]
    return torch.autograd.grad(result, leaves, d_out)


def backward_with_the_jacobian(q, k, v, out, lse, d_out):
    p = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1)
    dp = d_out @ v.T
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))  # rowsum(P ∘ dP), the D of the lesson computed another way
    return ds @ k / math.sqrt(q.shape[-1]), ds.T @ q / math.sqrt(q.shape[-1]), p.T @ d_out


@triton.jit
def _kernel_exp2(Q, K, V, O, seq, scale, D: tl.constexpr, BLOCK: tl.constexpr):
    # FlashAttention's own habit: exp2 on scores pre-multiplied by log2(e), a cheaper instruction on a GPU
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    feats = tl.arange(0, D)
    q = tl.load(Q + rows[:, None] * D + feats[None, :], mask=rows[:, None] < seq, other=0.0)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, D], tl.float32)
    for start in range(0, seq, BLOCK):
        keys = start + tl.arange(0, BLOCK)
        k = tl.load(K + keys[:, None] * D + feats[None, :], mask=keys[:, None] < seq, other=0.0)
        v = tl.load(V + keys[:, None] * D + feats[None, :], mask=keys[:, None] < seq, other=0.0)
        s = tl.dot(q, tl.trans(k)) * (scale * 1.4426950408889634)
        s = tl.where(keys[None, :] < seq, s, -1.0e30)
        m_new = tl.maximum(m, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m - m_new)
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p, v)
        m = m_new
    tl.store(O + rows[:, None] * D + feats[None, :], acc / l[:, None], mask=rows[:, None] < seq)


def kernel_with_exp2(q, k, v):
    seq, d = q.shape
    out = torch.empty_like(q)
    _kernel_exp2[(triton.cdiv(seq, 16),)](q, k, v, out, seq, 1 / math.sqrt(d), D=d, BLOCK=16)
    return out


def kernel_in_pytorch_blocks(q, k, v):
    # not Triton at all, but the same function: the check judges what comes back
    from mha.flash.tiled import tiled_attention

    return tiled_attention(q[None, None], k[None, None], v[None, None], block_q=16, block_k=16)[0][0, 0]


RIGHT = [
    ("merge", merge_by_log_sum_exp),
    ("merge", merge_numpy),
    ("tile_step", step_through_merge),
    ("tile_step", step_einsum),
    ("key_blocks", blocks_key_by_key),
    ("key_blocks", blocks_as_arrays),
    ("attention_backward", backward_by_autograd),
    ("attention_backward", backward_with_the_jacobian),
    ("triton_attention", kernel_with_exp2),
    ("triton_attention", kernel_in_pytorch_blocks),
]
