"""Classic mistakes in lesson 07's exercises."""

import math

import torch

import mha
from mha.decoding.model import left_pad


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


def grouped_course_attention_without_repeating(q, k, v):
    return mha.attention(q, k, v)[0]  # the function the text suggests, given kv_heads heads of keys: a ValueError


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


def bytes_as_float(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return 2 * layers * batch * kv_heads * d_head * seq * dtype.itemsize / 1  # `/` gives a float


def bytes_as_tensor(layers, heads, kv_heads, d_head, batch, seq, dtype):
    return torch.tensor(2 * layers * batch * kv_heads * d_head * seq) * torch.empty(0, dtype=dtype).element_size()


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


def _generate(
    model,
    prompts,
    new_tokens,
    positions_from_start=False,
    decode_from_start=False,
    extend=True,
    attend_padding=False,
    last_token_twice=False,
    right_padding=False,
):
    """One generation loop with the mistakes switched on by its flags."""
    tokens, mask = left_pad(prompts)
    batch, prompt = tokens.shape
    positions = torch.arange(prompt).expand(batch, -1) if positions_from_start else (mask.cumsum(1) - 1).clamp(min=0)
    if attend_padding:
        mask = torch.ones_like(mask)
    cache = model.new_cache(batch)
    logits = model(tokens, positions, mask, cache)
    lengths = torch.tensor([len(p) for p in prompts])
    last = logits[torch.arange(batch), lengths - 1] if right_padding else logits[:, -1]
    out = [] if last_token_twice else [last.argmax(-1, keepdim=True)]
    nxt = tokens[:, -1:] if last_token_twice else out[-1]
    while len(out) < new_tokens:
        if positions_from_start or decode_from_start:
            position = torch.full((batch, 1), mask.shape[1])
        else:
            position = mask.sum(1, keepdim=True)
        if extend is not None:
            mask = torch.cat([mask, torch.full((batch, 1), extend)], dim=1)
        nxt = model(nxt, position, mask, cache)[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
    return torch.cat(out, dim=1)


def generate_positions_from_padded_start(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, positions_from_start=True)


def generate_new_positions_count_padding(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, decode_from_start=True)


def generate_mask_not_extended(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, extend=None)


def generate_mask_extended_with_false(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, extend=False)


def generate_padding_attended(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, attend_padding=True)


def generate_last_prompt_token_twice(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, last_token_twice=True)


def generate_first_token_where_right_padding_ends(model, prompts, new_tokens):
    return _generate(model, prompts, new_tokens, right_padding=True)


def generate_prompt_rerun_every_step(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    out = []
    for _ in range(new_tokens):
        cache = model.new_cache(len(prompts))  # a fresh cache each time: right tokens, all the work again
        logits = model(tokens, (mask.cumsum(1) - 1).clamp(min=0), mask, cache)
        out.append(logits[:, -1].argmax(-1, keepdim=True))
        tokens, mask = torch.cat([tokens, out[-1]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return torch.cat(out, 1)


def generate_prompt_rerun_into_the_cache(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    cache, out = model.new_cache(len(prompts)), []
    for _ in range(new_tokens):
        logits = model(tokens, (mask.cumsum(1) - 1).clamp(min=0), mask, cache)
        out.append(logits[:, -1].argmax(-1, keepdim=True))
        tokens, mask = torch.cat([tokens, out[-1]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return torch.cat(out, 1)


def generate_mask_and_positions_swapped(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    cache = model.new_cache(len(prompts))
    return model(tokens, mask, (mask.cumsum(1) - 1).clamp(min=0), cache)[:, -1:].argmax(-1)


def generate_positions_not_clamped(model, prompts, new_tokens):
    tokens, mask = left_pad(prompts)
    cache = model.new_cache(len(prompts))
    logits = model(tokens, mask.cumsum(1) - 1, mask, cache)  # -1 on the padding
    return logits[:, -1:].argmax(-1)


def pool_strided(w, heads, kv_heads):
    d_head, rest = w.shape[0] // heads, w.shape[1:]
    return w.reshape(heads // kv_heads, kv_heads, d_head, *rest).mean(dim=0).reshape(kv_heads * d_head, *rest)


def pool_sum(w, heads, kv_heads):
    d_head, rest = w.shape[0] // heads, w.shape[1:]
    return w.reshape(kv_heads, heads // kv_heads, d_head, *rest).sum(dim=1).reshape(kv_heads * d_head, *rest)


def pool_first_head(w, heads, kv_heads):
    d_head, rest = w.shape[0] // heads, w.shape[1:]
    return w.reshape(kv_heads, heads // kv_heads, d_head, *rest)[:, 0].reshape(kv_heads * d_head, *rest)


def pool_rows(w, heads, kv_heads):
    return w.reshape(w.shape[0] // (heads // kv_heads), heads // kv_heads, *w.shape[1:]).mean(dim=1)


def pool_whole_heads(w, heads, kv_heads):
    return w.reshape(kv_heads, -1, *w.shape[1:]).mean(dim=1)


def pool_weights_only(w, heads, kv_heads):
    group, d_head, d_model = heads // kv_heads, w.shape[0] // heads, w.shape[1]  # a bias has no shape[1]
    return w.reshape(kv_heads, group, d_head, d_model).mean(dim=1).reshape(kv_heads * d_head, d_model)


def pool_bias_as_column(w, heads, kv_heads):
    group, d_head = heads // kv_heads, w.shape[0] // heads
    return w.reshape(kv_heads, group, d_head, -1).mean(dim=1).reshape(kv_heads * d_head, -1)  # a bias gains a dim


WRONG = [
    ("grouped_attention", grouped_with_repeat, "use repeat_interleave(group, dim=1)", "classic"),
    ("grouped_attention", grouped_not_scaled, "the scores were not scaled", "classic"),
    ("grouped_attention", grouped_softmax_over_queries, "softmax over the wrong axis", "classic"),
    ("grouped_attention", grouped_keys_as_values, "you used the keys as values", "classic"),
    ("grouped_attention", grouped_without_repeating, "raised RuntimeError", "crash"),
    (
        "grouped_attention",
        grouped_course_attention_without_repeating,
        "repeat each key/value head for its group",
        "crash",
    ),
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
    ("cache_bytes", bytes_as_float, "returned a float", "form"),
    ("cache_bytes", bytes_as_tensor, "returned a tensor", "form"),
    ("decode_step", step_cache_only, "append the new keys and values first", "classic"),
    ("decode_step", step_no_mask, "saw the new positions after it", "classic"),
    ("decode_step", step_mask_aligned_at_start, "the causal mask is aligned at the start", "classic"),
    ("decode_step", step_not_scaled, "the scores were not scaled", "classic"),
    ("decode_step", step_new_only, "attended to the new positions only", "classic"),
    ("generate", generate_positions_from_padded_start, "counted from the padded start", "classic"),
    ("generate", generate_new_positions_count_padding, "each new token's position counted the padding", "classic"),
    ("generate", generate_mask_not_extended, "the mask was not extended", "crash"),
    ("generate", generate_mask_extended_with_false, "the new tokens were marked as padding", "classic"),
    ("generate", generate_padding_attended, "the padding was attended to", "classic"),
    ("generate", generate_last_prompt_token_twice, "the last prompt token was run twice", "classic"),
    ("generate", generate_first_token_where_right_padding_ends, "where a prompt padded on the right", "classic"),
    ("generate", generate_prompt_rerun_every_step, "was run again at every step", "classic"),
    ("generate", generate_prompt_rerun_into_the_cache, "run again into a cache that already holds it", "crash"),
    ("generate", generate_positions_not_clamped, "a padding slot got position -1", "crash"),
    ("generate", generate_mask_and_positions_swapped, "the positions come before the mask", "crash"),
    ("pool_kv_heads", pool_strided, "every kv_heads-th head", "classic"),
    ("pool_kv_heads", pool_sum, "that is the sum of each group", "classic"),
    ("pool_kv_heads", pool_first_head, "you kept the first head of each group", "classic"),
    ("pool_kv_heads", pool_rows, "you averaged neighbouring rows, not heads", "classic"),
    ("pool_kv_heads", pool_whole_heads, "you averaged away the d_head rows", "classic"),
    ("pool_kv_heads", pool_weights_only, "this w is a bias", "crash"),
    ("pool_kv_heads", pool_bias_as_column, "a bias (heads * d_head,) came back as a column", "classic"),
]
