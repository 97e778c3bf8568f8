"""Right answers to lesson 07's exercises, in other forms than the solutions'."""

import math

import numpy as np
import torch

from mha.decoding.model import left_pad


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


def generate_one_sequence_at_a_time_positions(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    batch, prompt = tokens.shape
    positions = torch.zeros(batch, prompt, dtype=torch.int64)
    for b, p in enumerate(prompts):
        positions[b, prompt - len(p) :] = torch.arange(len(p))  # the padding keeps position 0
    cache = model.new_cache(batch, prompt + new_tokens)
    logits = model(tokens, positions, mask, cache)
    generated = []
    for step in range(new_tokens):  # runs the last new token too: its logits go unused, which does no harm
        nxt = logits[:, -1].argmax(dim=-1)
        generated.append(nxt.tolist())
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.bool)], dim=1)
        positions = torch.tensor([[len(p) + step] for p in prompts])
        logits = model(nxt[:, None], positions, mask, cache)
    return [list(row) for row in zip(*generated)]  # a list of lists of ints


def generate_with_a_position_counter(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    cache = model.new_cache(tokens.shape[0])
    logits = model(tokens, (mask.long().cumsum(-1) - 1).clamp(min=0), mask, cache)[:, -1]
    following = mask.sum(-1, keepdim=True)  # (batch, 1) the position of the next token
    out = torch.empty(tokens.shape[0], new_tokens, dtype=torch.int64)
    for t in range(new_tokens):
        out[:, t] = logits.argmax(-1)
        if t + 1 < new_tokens:
            mask = torch.nn.functional.pad(mask, (0, 1), value=True)
            logits = model(out[:, t : t + 1], following + t, mask, cache)[:, -1]
    return out


def pool_by_loop(w, heads, kv_heads):
    d_head, group = w.shape[0] // heads, heads // kv_heads
    rows = []
    for g in range(kv_heads):
        members = [w[h * d_head : (h + 1) * d_head] for h in range(g * group, (g + 1) * group)]
        rows.append(sum(members) / group)
    return torch.cat(rows, dim=0)


def pool_by_einsum(w, heads, kv_heads):
    group = heads // kv_heads
    grouped = w.reshape(kv_heads, group, w.shape[0] // heads, *w.shape[1:])  # (kv_heads, group, d_head, ...)
    return torch.einsum("kgd...->kd...", grouped).div(group).reshape(-1, *w.shape[1:])


def pool_numpy_weight_or_bias(w, heads, kv_heads):
    d_head = w.shape[0] // heads
    a = w.numpy().reshape(kv_heads, heads // kv_heads, d_head, -1).mean(axis=1)  # a bias as one column, then back
    return torch.from_numpy(a.reshape(kv_heads * d_head, *w.shape[1:]))


RIGHT = [
    ("grouped_attention", grouped_by_einsum),
    ("grouped_attention", grouped_head_by_head),
    ("append_to_cache", append_by_filling),
    ("append_to_cache", append_numpy),
    ("cache_bytes", bytes_from_an_empty_tensor),
    ("cache_bytes", bytes_numpy),
    ("decode_step", step_with_sdpa),
    ("decode_step", step_one_query_at_a_time),
    ("generate", generate_one_sequence_at_a_time_positions),
    ("generate", generate_with_a_position_counter),
    ("pool_kv_heads", pool_by_loop),
    ("pool_kv_heads", pool_by_einsum),
    ("pool_kv_heads", pool_numpy_weight_or_bias),
]
