"""Classic mistakes in lesson 10's exercises."""

import math

import torch
import triton  # noqa: E402, I001
import triton.language as tl  # noqa: E402

from mha.flash import kernel  # noqa: F401 (before triton: on a CPU, its interpreter)

# merge(a, b)


def _scales(a, b):
    (m_a, _, _), (m_b, _, _) = a, b
    m = torch.maximum(m_a, m_b)
    return m, torch.exp(m_a - m), torch.exp(m_b - m)


def merge_acc_not_rescaled(a, b):
    m, sa, sb = _scales(a, b)
    return m, a[1] * sa + b[1] * sb, a[2] + b[2]


def merge_l_not_rescaled(a, b):
    m, sa, sb = _scales(a, b)
    return m, a[1] + b[1], a[2] * sa[:, None] + b[2] * sb[:, None]


def merge_sign_reversed(a, b):
    m = torch.maximum(a[0], b[0])
    sa, sb = torch.exp(m - a[0]), torch.exp(m - b[0])
    return m, a[1] * sa + b[1] * sb, a[2] * sa[:, None] + b[2] * sb[:, None]


def merge_assumes_a_is_larger(a, b):
    m = torch.maximum(a[0], b[0])
    sb = torch.exp(b[0] - a[0])  # b brought to a's maximum, a left as it is
    return m, a[1] + b[1] * sb, a[2] + b[2] * sb[:, None]


def merge_normalised(a, b):
    m, sa, sb = _scales(a, b)
    l = a[1] * sa + b[1] * sb
    return m, l, (a[2] * sa[:, None] + b[2] * sb[:, None]) / l[:, None]


def merge_sum_of_maxima(a, b):
    m, sa, sb = _scales(a, b)
    return a[0] + b[0], a[1] * sa + b[1] * sb, a[2] * sa[:, None] + b[2] * sb[:, None]


# tile_step(m, l, acc, q, k, v)


def _step(m, l, acc, q, k, v, scale=None):
    s = q @ k.T * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    m_new = torch.maximum(m, s.amax(-1))
    return s, m_new, torch.exp(s - m_new[:, None]), torch.exp(m - m_new)


def step_acc_not_rescaled(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v)
    return m_new, l * alpha + p.sum(-1), acc + p @ v


def step_l_not_rescaled(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v)
    return m_new, l + p.sum(-1), acc * alpha[:, None] + p @ v


def step_l_rescaled_twice(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v)
    return m_new, l * alpha * alpha + p.sum(-1), acc * alpha[:, None] + p @ v


def step_old_maximum_for_p(m, l, acc, q, k, v):
    s, m_new, _, alpha = _step(m, l, acc, q, k, v)
    p = torch.exp(s - torch.where(torch.isinf(m), torch.zeros_like(m), m)[:, None])
    return m_new, l * alpha + p.sum(-1), acc * alpha[:, None] + p @ v


def step_normalised_in_the_loop(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v)
    l_new = l * alpha + p.sum(-1)
    return m_new, l_new, (acc * alpha[:, None] + p @ v) / l_new[:, None]


def step_not_scaled(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v, scale=1.0)
    return m_new, l * alpha + p.sum(-1), acc * alpha[:, None] + p @ v


def step_divided_by_d(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v, scale=1 / q.shape[-1])
    return m_new, l * alpha + p.sum(-1), acc * alpha[:, None] + p @ v


def step_in_place(m, l, acc, q, k, v):
    _, m_new, p, alpha = _step(m, l, acc, q, k, v)
    acc *= alpha[:, None]  # writes into the caller's accumulator
    return m_new, l * alpha + p.sum(-1), acc + p @ v


def step_uniform_cases_only(m, l, acc, q, k, v):
    # right only when the running result is empty (the first block): forgets what came before
    s = q @ k.T / math.sqrt(q.shape[-1])
    m_new = s.amax(-1)
    p = torch.exp(s - m_new[:, None])
    return m_new, p.sum(-1), p @ v


# key_blocks(q_start, q_end, k_pos, block_k)


def blocks_visit_strict(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s < q_end - 1]
    return visit, [s for s in visit if min(s + block_k, k_pos) - 1 > q_start]


def blocks_visit_all(q_start, q_end, k_pos, block_k):
    visit = list(range(0, k_pos, block_k))
    return visit, [s for s in visit if s <= q_end - 1 and min(s + block_k, k_pos) - 1 > q_start]


def blocks_visit_by_first_query(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_start]
    return visit, [s for s in visit if min(s + block_k, k_pos) - 1 > q_start]


def blocks_mask_by_last_query(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]
    return visit, [s for s in visit if min(s + block_k, k_pos) - 1 > q_end - 1]


def blocks_mask_inclusive(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]
    return visit, [s for s in visit if min(s + block_k, k_pos) - 1 >= q_start]


def blocks_mask_every_visited(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]
    return visit, list(visit)


def blocks_last_block_not_cut(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]
    return visit, [s for s in visit if s + block_k - 1 > q_start]


def blocks_fitted_to_one_size(q_start, q_end, k_pos, block_k):
    # only right when block_k is 4: the sizes written in, not read
    visit = [s for s in range(0, k_pos, 4) if s <= q_end - 1]
    return visit, [s for s in visit if min(s + 4, k_pos) - 1 > q_start]


# attention_backward(q, k, v, out, lse, d_out)


def _backward(q, k, v, out, lse, d_out, with_delta=True, delta_of_d_out=False, scaled=True, p_scaled=True):
    scale = 1 / math.sqrt(q.shape[-1])
    p = torch.exp(q @ k.T * (scale if p_scaled else 1.0) - lse[:, None])
    dv = p.T @ d_out
    dp = d_out @ v.T
    delta = d_out.sum(-1) if delta_of_d_out else (d_out * out).sum(-1)
    ds = p * (dp - delta[:, None]) if with_delta else p * dp
    factor = scale if scaled else 1.0
    return ds @ k * factor, ds.T @ q * factor, dv


def backward_without_delta(q, k, v, out, lse, d_out):
    return _backward(q, k, v, out, lse, d_out, with_delta=False)


def backward_delta_of_d_out(q, k, v, out, lse, d_out):
    return _backward(q, k, v, out, lse, d_out, delta_of_d_out=True)


def backward_not_scaled(q, k, v, out, lse, d_out):
    return _backward(q, k, v, out, lse, d_out, scaled=False)


def backward_p_from_unscaled_scores(q, k, v, out, lse, d_out):
    return _backward(q, k, v, out, lse, d_out, p_scaled=False)


def backward_dv_the_wrong_way(q, k, v, out, lse, d_out):
    dq, dk, _ = _backward(q, k, v, out, lse, d_out)
    p = torch.exp(q @ k.T / math.sqrt(q.shape[-1]) - lse[:, None])
    return dq, dk, p @ d_out  # (q_pos, k_pos) @ (q_pos, d_v): fails unless q_pos == k_pos


def backward_coinciding_sizes(q, k, v, out, lse, d_out):
    # P dO instead of Pᵀ dO, made to run by swapping when the sizes allow: right only when P is symmetric
    dq, dk, _ = _backward(q, k, v, out, lse, d_out)
    p = torch.exp(q @ k.T / math.sqrt(q.shape[-1]) - lse[:, None])
    return dq, dk, (p @ d_out if p.shape[0] == p.shape[1] else p.T @ d_out)


# triton_attention(q, k, v): kernels with one classic mistake each, launched as the exercise launches its own


def _launcher(kernel_fn):
    def triton_attention(q, k, v):
        seq, d = q.shape
        out = torch.empty_like(q)
        kernel_fn[(triton.cdiv(seq, 16),)](q, k, v, out, seq, 1 / math.sqrt(d), D=d, BLOCK=16)
        return out

    return triton_attention


@triton.jit
def _kernel(Q, K, V, O, seq, scale, D: tl.constexpr, BLOCK: tl.constexpr, MISTAKE: tl.constexpr):
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
        if MISTAKE == "unscaled":
            s = tl.dot(q, tl.trans(k))
        else:
            s = tl.dot(q, tl.trans(k)) * scale
        if MISTAKE == "off by one":
            s = tl.where(keys[None, :] <= seq, s, float("-inf"))
        elif MISTAKE != "unmasked":
            s = tl.where(keys[None, :] < seq, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m - m_new)
        if MISTAKE == "l":
            l = l + tl.sum(p, 1)
        else:
            l = l * alpha + tl.sum(p, 1)
        if MISTAKE == "acc":
            acc = acc + tl.dot(p, v)
        else:
            acc = acc * alpha[:, None] + tl.dot(p, v)
        if MISTAKE == "normalised":
            acc = acc / l[:, None]
        if MISTAKE != "m kept":
            m = m_new
    tl.store(O + rows[:, None] * D + feats[None, :], acc / l[:, None], mask=rows[:, None] < seq)


def _with_mistake(mistake: str):
    def launch(q, k, v):
        seq, d = q.shape
        out = torch.empty_like(q)
        _kernel[(triton.cdiv(seq, 16),)](q, k, v, out, seq, 1 / math.sqrt(d), D=d, BLOCK=16, MISTAKE=mistake)
        return out

    launch.__name__ = f"kernel_{mistake}"
    return launch


kernel_acc_not_rescaled = _with_mistake("acc")
kernel_l_not_rescaled = _with_mistake("l")
kernel_normalised_in_the_loop = _with_mistake("normalised")
kernel_padded_keys_unmasked = _with_mistake("unmasked")
kernel_not_scaled = _with_mistake("unscaled")
kernel_mask_off_by_one = _with_mistake("off by one")
kernel_maximum_never_kept = _with_mistake("m kept")


def blocks_in_decreasing_order(q_start, q_end, k_pos, block_k):
    visit = [s for s in range(0, k_pos, block_k) if s <= q_end - 1]
    return visit[::-1], [s for s in visit if min(s + block_k, k_pos) - 1 > q_start][::-1]


def kernel_returns_numpy_of_the_wrong_shape(q, k, v):
    return _with_mistake("none")(q, k, v).T.cpu().numpy()


WRONG = [
    ("merge", merge_acc_not_rescaled, "acc needs the same rescaling as l", "classic"),
    ("merge", merge_l_not_rescaled, "each sum was taken against its own maximum", "classic"),
    ("merge", merge_sign_reversed, "the sign is reversed", "classic"),
    ("merge", merge_assumes_a_is_larger, "as if a always held the larger one", "classic"),
    ("merge", merge_normalised, "acc unnormalised", "classic"),
    ("merge", merge_sum_of_maxima, "not their sum", "classic"),
    ("tile_step", step_acc_not_rescaled, "the accumulator was not rescaled", "classic"),
    ("tile_step", step_l_not_rescaled, "the running sum was not rescaled", "classic"),
    ("tile_step", step_l_rescaled_twice, "rescaled twice", "classic"),
    ("tile_step", step_old_maximum_for_p, "P used the old maximum", "classic"),
    ("tile_step", step_normalised_in_the_loop, "you normalised inside the loop", "classic"),
    ("tile_step", step_not_scaled, "the scores were not scaled", "classic"),
    ("tile_step", step_divided_by_d, "divide by its square root", "classic"),
    ("tile_step", step_in_place, "changed its input `acc`", "side effect"),
    ("tile_step", step_uniform_cases_only, "after 5 keys seen", "uniform cases"),
    ("key_blocks", blocks_visit_strict, "visit blocks with start <= the last query", "classic"),
    ("key_blocks", blocks_visit_all, "blocks that start after the last query hold no key", "classic"),
    ("key_blocks", blocks_visit_by_first_query, "the last query sees further than the first", "classic"),
    ("key_blocks", blocks_mask_by_last_query, "not the last", "classic"),
    ("key_blocks", blocks_mask_inclusive, "(>, not >=)", "classic"),
    ("key_blocks", blocks_mask_every_visited, "the ones before are seen whole", "classic"),
    ("key_blocks", blocks_last_block_not_cut, "the last block stops at k_pos", "classic"),
    ("key_blocks", blocks_fitted_to_one_size, "blocks of 3", "uniform cases"),
    ("attention_backward", backward_without_delta, "without D the gradient of the softmax is wrong", "classic"),
    ("attention_backward", backward_delta_of_d_out, "D is rowsum(dO ∘ O)", "classic"),
    ("attention_backward", backward_not_scaled, "dQ = dS K / sqrt(d_head)", "classic"),
    ("attention_backward", backward_p_from_unscaled_scores, "recompute P from the scaled scores", "classic"),
    ("attention_backward", backward_dv_the_wrong_way, "raised RuntimeError", "crash"),
    ("attention_backward", backward_coinciding_sizes, "3 queries and 3 keys", "coinciding sizes"),
    ("triton_attention", kernel_acc_not_rescaled, "the accumulator was not rescaled", "classic"),
    ("triton_attention", kernel_l_not_rescaled, "the running sum was not rescaled", "classic"),
    ("triton_attention", kernel_normalised_in_the_loop, "you normalised inside the loop", "classic"),
    ("triton_attention", kernel_padded_keys_unmasked, "the last block's missing keys", "classic"),
    ("triton_attention", kernel_not_scaled, "the scores were not scaled", "classic"),
    ("triton_attention", kernel_returns_numpy_of_the_wrong_shape, "has shape", "form"),
    ("triton_attention", kernel_mask_off_by_one, "not <= seq", "classic"),
    ("triton_attention", kernel_maximum_never_kept, "m must become m_new", "classic"),
    ("key_blocks", blocks_in_decreasing_order, "not in increasing order", "form"),
]
