"""Right answers to lesson 07's exercises, in other forms than the solutions'."""

import math

import numpy as np
import torch


def grouped_by_einsum(q, k, v):
    batch, heads, q_pos, d_head = q.shape
    kv_heads = k.shape[1]
    q = q.reshape(batch, kv_heads, heads // kv_heads, q_pos, d_head)  # (batch, kv_heads, group, q_pos, d_head)
    scores = torch.einsum("bkgqd,bkpd->bkgqp", q, k) / math.sqrt(d_head)
    out = torch.einsum("bkgqp,bkpd->bkgqd", scores.softmax(-1), v)
    return out.reshape(batch, heads, q_pos, d_head)


def grouped_head_by_head(q, k, v):
    group = q.shape[1] // k.shape[1]
    outputs = []
    for h in range(q.shape[1]):
        scores = q[:, h] @ k[:, h // group].transpose(-2, -1) / q.shape[-1] ** 0.5
        outputs.append(torch.softmax(scores, dim=-1) @ v[:, h // group])
    return torch.stack(outputs, dim=1)


def append_by_filling(cache_k, cache_v, k_new, v_new):
    past = cache_k.shape[-2]
    shape = (*cache_k.shape[:-2], past + k_new.shape[-2], cache_k.shape[-1])
    k, v = cache_k.new_empty(shape), cache_v.new_empty(shape)
    k[..., :past, :], k[..., past:, :] = cache_k, k_new
    v[..., :past, :], v[..., past:, :] = cache_v, v_new
    return [k, v]


def append_numpy(cache_k, cache_v, k_new, v_new):
    k = np.concatenate([cache_k.numpy(), k_new.numpy()], axis=2)
    v = np.concatenate([cache_v.numpy(), v_new.numpy()], axis=2)
    return torch.from_numpy(k), torch.from_numpy(v)


def bytes_from_an_empty_tensor(layers, heads, kv_heads, d_head, batch, seq, dtype):
    one = torch.empty(0, dtype=dtype).element_size()
    return 2 * layers * batch * kv_heads * d_head * seq * one


def bytes_numpy(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return np.int64(2) * layers * batch * kv_heads * d_head * seq * dtype.itemsize


def step_with_sdpa(q_new, k_new, v_new, cache_k, cache_v):
    k, v = torch.cat([cache_k, k_new], dim=2), torch.cat([cache_v, v_new], dim=2)
    past, new = cache_k.shape[-2], q_new.shape[-2]
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)  # new query i sees keys 0..past + i
    return torch.nn.functional.scaled_dot_product_attention(q_new, k, v, attn_mask=mask), k, v


def step_one_query_at_a_time(q_new, k_new, v_new, cache_k, cache_v):
    k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
    past = cache_k.shape[-2]
    outputs = []
    for i in range(q_new.shape[-2]):
        visible_k, visible_v = k[..., : past + i + 1, :], v[..., : past + i + 1, :]
        scores = q_new[..., i : i + 1, :] @ visible_k.transpose(-2, -1) / math.sqrt(q_new.shape[-1])
        outputs.append(scores.softmax(-1) @ visible_v)
    return torch.cat(outputs, dim=-2), k, v


def pool_by_loop(w, heads, kv_heads):
    d_head, group = w.shape[0] // heads, heads // kv_heads
    rows = []
    for g in range(kv_heads):
        members = [w[h * d_head : (h + 1) * d_head] for h in range(g * group, (g + 1) * group)]
        rows.append(sum(members) / group)
    return torch.cat(rows, dim=0)


def pool_by_einsum(w, heads, kv_heads):
    group = heads // kv_heads
    grouped = w.reshape(kv_heads, group, w.shape[0] // heads, w.shape[1])  # (kv_heads, group, d_head, d_model)
    return torch.einsum("kgdm->kdm", grouped).div(group).reshape(-1, w.shape[1])


RIGHT = [
    ("grouped_attention", grouped_by_einsum),
    ("grouped_attention", grouped_head_by_head),
    ("append_to_cache", append_by_filling),
    ("append_to_cache", append_numpy),
    ("cache_bytes", bytes_from_an_empty_tensor),
    ("cache_bytes", bytes_numpy),
    ("decode_step", step_with_sdpa),
    ("decode_step", step_one_query_at_a_time),
    ("pool_kv_heads", pool_by_loop),
    ("pool_kv_heads", pool_by_einsum),
]
