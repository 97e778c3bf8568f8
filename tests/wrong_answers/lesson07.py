"""Classic mistakes in lesson 07's exercises."""

import math

import torch


def _attend(q, k, v, scale=None, mask=None, axis=-1):
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(axis) @ v


def grouped_with_repeat(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attend(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1))


def grouped_not_scaled(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attend(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), scale=1.0)


def grouped_softmax_over_queries(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attend(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), axis=-2)


def grouped_keys_as_values(q, k, v):
    group = q.shape[1] // k.shape[1]
    return _attend(q, k.repeat_interleave(group, 1), k.repeat_interleave(group, 1))


def grouped_without_repeating(q, k, v):
    return _attend(q, k, v)  # broadcasting fails unless kv_heads is 1 or heads


def append_only_new(cache_k, cache_v, k_new, v_new):
    return k_new, v_new


def append_new_first(cache_k, cache_v, k_new, v_new):
    return torch.cat([k_new, cache_k], dim=-2), torch.cat([v_new, cache_v], dim=-2)


def append_along_heads(cache_k, cache_v, k_new, v_new):
    return torch.cat([cache_k, k_new], dim=1), torch.cat([cache_v, v_new], dim=1)


def append_along_features(cache_k, cache_v, k_new, v_new):
    return torch.cat([cache_k, k_new], dim=-1), torch.cat([cache_v, v_new], dim=-1)


def append_swapped(cache_k, cache_v, k_new, v_new):
    return torch.cat([cache_v, v_new], dim=-2), torch.cat([cache_k, k_new], dim=-2)


def bytes_with_heads(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * layers * batch * heads * d_head * seq * dtype.itemsize


def bytes_keys_only(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return layers * batch * kv_heads * d_head * seq * dtype.itemsize


def bytes_in_bits(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * layers * batch * kv_heads * d_head * seq * torch.finfo(dtype).bits


def bytes_counts_numbers(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * layers * batch * kv_heads * d_head * seq


def bytes_one_layer(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * batch * kv_heads * d_head * seq * dtype.itemsize


def bytes_one_sequence(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * layers * kv_heads * d_head * seq * dtype.itemsize


def step_cache_only(q_new, k_new, v_new, cache_k, cache_v):
    out = _attend(q_new, cache_k, cache_v)
    return out, torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)


def step_no_mask(q_new, k_new, v_new, cache_k, cache_v):
    k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
    return _attend(q_new, k, v), k, v


def step_mask_aligned_at_start(q_new, k_new, v_new, cache_k, cache_v):
    k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
    mask = torch.ones(q_new.shape[-2], k.shape[-2], dtype=torch.bool).tril()  # like causal_mask(new, past + new)
    return _attend(q_new, k, v, mask=mask), k, v


def step_not_scaled(q_new, k_new, v_new, cache_k, cache_v):
    k, v = torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)
    past, new = cache_k.shape[-2], q_new.shape[-2]
    mask = torch.arange(past + new)[None, :] <= past + torch.arange(new)[:, None]
    return _attend(q_new, k, v, scale=1.0, mask=mask), k, v


def step_new_only(q_new, k_new, v_new, cache_k, cache_v):
    mask = torch.ones(q_new.shape[-2], q_new.shape[-2], dtype=torch.bool).tril()
    out = _attend(q_new, k_new, v_new, mask=mask)
    return out, torch.cat([cache_k, k_new], dim=-2), torch.cat([cache_v, v_new], dim=-2)


def pool_strided(w, heads, kv_heads):
    d_head = w.shape[0] // heads
    return w.reshape(heads // kv_heads, kv_heads, d_head, -1).mean(dim=0).reshape(kv_heads * d_head, -1)


def pool_sum(w, heads, kv_heads):
    d_head = w.shape[0] // heads
    return w.reshape(kv_heads, heads // kv_heads, d_head, -1).sum(dim=1).reshape(kv_heads * d_head, -1)


def pool_first_head(w, heads, kv_heads):
    d_head = w.shape[0] // heads
    return w.reshape(kv_heads, heads // kv_heads, d_head, -1)[:, 0].reshape(kv_heads * d_head, -1)


def pool_rows(w, heads, kv_heads):
    return w.reshape(w.shape[0] // (heads // kv_heads), heads // kv_heads, -1).mean(dim=1)


def pool_whole_heads(w, heads, kv_heads):
    return w.reshape(kv_heads, -1, w.shape[1]).mean(dim=1)


WRONG = [
    ("grouped_attention", grouped_with_repeat, "use repeat_interleave(group, dim=1)", "classic"),
    ("grouped_attention", grouped_not_scaled, "the scores were not scaled", "classic"),
    ("grouped_attention", grouped_softmax_over_queries, "softmax over the wrong axis", "classic"),
    ("grouped_attention", grouped_keys_as_values, "you used the keys as values", "classic"),
    ("grouped_attention", grouped_without_repeating, "raised RuntimeError", "crash"),
    ("append_to_cache", append_only_new, "the new positions only", "classic"),
    ("append_to_cache", append_new_first, "the new positions come after the past ones", "classic"),
    ("append_to_cache", append_along_heads, "joined along dim 1, the kv_heads", "classic"),
    ("append_to_cache", append_along_features, "joined along the last dim, d_head", "classic"),
    ("append_to_cache", append_swapped, "keys and values are swapped", "classic"),
    ("cache_bytes", bytes_with_heads, "you used heads", "classic"),
    ("cache_bytes", bytes_keys_only, "keys AND values", "classic"),
    ("cache_bytes", bytes_in_bits, "that counts bits", "classic"),
    ("cache_bytes", bytes_counts_numbers, "that counts numbers, not bytes", "classic"),
    ("cache_bytes", bytes_one_layer, "every layer has its own cache", "classic"),
    ("cache_bytes", bytes_one_sequence, "each sequence of the batch has its own cache", "classic"),
    ("decode_step", step_cache_only, "append the new keys and values first", "classic"),
    ("decode_step", step_no_mask, "saw the new positions after it", "classic"),
    ("decode_step", step_mask_aligned_at_start, "the causal mask is aligned at the start", "classic"),
    ("decode_step", step_not_scaled, "the scores were not scaled", "classic"),
    ("decode_step", step_new_only, "attended to the new positions only", "classic"),
    ("pool_kv_heads", pool_strided, "every kv_heads-th head", "classic"),
    ("pool_kv_heads", pool_sum, "that is the sum of each group", "classic"),
    ("pool_kv_heads", pool_first_head, "you kept the first head of each group", "classic"),
    ("pool_kv_heads", pool_rows, "you averaged neighbouring rows, not heads", "classic"),
    ("pool_kv_heads", pool_whole_heads, "you averaged away the d_head rows", "classic"),
]
