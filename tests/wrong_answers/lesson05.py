"""Wrong answers to lesson 05's exercises."""

import numpy as np
import torch
import torch.nn.functional as F


def previous_is_next(weights):
    return weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=-1)


def previous_divided_by_seq(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(dim=-1) / weights.shape[-1]


def previous_is_self(weights):
    return weights.diagonal(dim1=-2, dim2=-1).mean(dim=-1)


def previous_without_dims(weights):
    return weights.diagonal(offset=-1).mean(dim=-1)


def previous_float32_only(weights):
    return weights.float().diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)


def pool_without_new_axis(hidden, mask):
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def pool_with_padding(hidden, mask):
    return hidden.mean(dim=1)


def pool_divided_by_seq(hidden, mask):
    return (hidden * mask[..., None]).sum(dim=1) / hidden.shape[1]


def pool_of_padding(hidden, mask):
    pad = ~mask
    return (hidden * pad[..., None]).sum(dim=1) / pad.sum(dim=1, keepdim=True).clamp(min=1)


def pool_in_place(hidden, mask):
    hidden *= mask[..., None]
    return hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True)


def embedding_not_normalised(hidden, mask):
    keep = mask[..., None].to(hidden.dtype)
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1)


def embedding_tokens_normalised(hidden, mask):
    return embedding_not_normalised(F.normalize(hidden, dim=-1), mask)


def embedding_wrong_dim(hidden, mask):
    return F.normalize(embedding_not_normalised(hidden, mask), dim=0)


def embedding_batch_norm(hidden, mask):
    pooled = embedding_not_normalised(hidden, mask)
    return pooled / pooled.norm()


def stack_along_columns(q, k, v):
    return torch.cat([q, k, v], dim=1)


def stack_transposed(q, k, v):
    return torch.cat([q.T, k.T, v.T])


def stack_q_v_k(q, k, v):
    return torch.cat([q, v, k])


def stack_new_axis(q, k, v):
    return torch.stack([q, k, v])


def top_heads_wrong_divisor(scores, k):
    layers = scores.shape[0]
    values, indices = scores.flatten().topk(k)
    return [(int(i) // layers, int(i) % layers, float(v)) for v, i in zip(values, indices)]


def top_heads_smallest(scores, k):
    heads = scores.shape[1]
    values, indices = scores.flatten().topk(k, largest=False)
    return [(int(i) // heads, int(i) % heads, float(v)) for v, i in zip(values, indices)]


def top_heads_tensors(scores, k):
    heads = scores.shape[1]
    values, indices = scores.flatten().topk(k)
    return [(i // heads, i % heads, v) for v, i in zip(values, indices)]


def top_heads_numpy_wrong_divisor(scores, k):
    flat = scores.numpy().ravel()
    order = np.argsort(-flat)[:k]
    layers = scores.shape[0]
    return [(i // layers, i % layers, flat[i]) for i in order]


def top_heads_generator(scores, k):
    heads = scores.shape[1]
    values, indices = scores.flatten().topk(k)
    return ((int(i) // heads, int(i) % heads, float(v)) for v, i in zip(values, indices))


def word_link_reversed(weights, tokens, query_word, key_word):
    return weights[..., tokens.index(key_word), tokens.index(query_word)]


def word_link_row_max(weights, tokens, query_word, key_word):
    return weights[..., tokens.index(query_word), :].max(dim=-1).values


def word_link_last_occurrence(weights, tokens, query_word, key_word):
    last = {word: i for i, word in enumerate(tokens)}  # later occurrences overwrite earlier ones
    return weights[..., last[query_word], last[key_word]]


def word_link_pops_tokens(weights, tokens, query_word, key_word):
    q = tokens.index(query_word)
    k = tokens.index(key_word)
    tokens.pop()  # drops [SEP], "not needed"
    return weights[..., q, k]


WRONG = [
    ("previous_token_score", previous_is_next, "that is the next token", "classic"),
    ("previous_token_score", previous_divided_by_seq, "you divided by seq", "classic"),
    ("previous_token_score", previous_is_self, "weight on itself", "classic"),
    ("previous_token_score", previous_without_dims, "take the diagonal over the last two dimensions", "classic"),
    ("previous_token_score", previous_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("mean_pool", pool_without_new_axis, "use mask[..., None]", "classic"),
    ("mean_pool", pool_with_padding, "padding was included", "classic"),
    ("mean_pool", pool_divided_by_seq, "you divided by seq", "classic"),
    ("mean_pool", pool_of_padding, "you averaged the padding", "classic"),
    ("mean_pool", pool_in_place, "changed its input `hidden`", "side effect"),
    ("sentence_embedding", embedding_not_normalised, "not scaled to length 1", "classic"),
    ("sentence_embedding", embedding_tokens_normalised, "average first, then scale", "classic"),
    ("sentence_embedding", embedding_wrong_dim, "normalised along the wrong dimension", "classic"),
    ("sentence_embedding", embedding_batch_norm, "you divided by the norm of the whole batch", "classic"),
    ("stack_qkv", stack_along_columns, "stack them as rows", "classic"),
    ("stack_qkv", stack_transposed, "each block is transposed", "classic"),
    ("stack_qkv", stack_q_v_k, "the order is [W_Q; W_K; W_V]", "classic"),
    ("stack_qkv", stack_new_axis, "concatenate the rows (torch.cat), do not stack", "coinciding sizes"),
    ("top_heads", top_heads_wrong_divisor, "you divided by layers", "classic"),
    ("top_heads", top_heads_smallest, "those are the smallest scores", "classic"),
    ("top_heads", top_heads_tensors, "return plain Python numbers", "classic"),
    ("top_heads", top_heads_numpy_wrong_divisor, "you divided by layers", "form"),
    ("top_heads", top_heads_generator, "returned a generator", "crash"),
    ("word_link", word_link_reversed, "reversed", "classic"),
    ("word_link", word_link_row_max, "the largest weight in the query word's row", "classic"),
    ("word_link", word_link_last_occurrence, "finds the first occurrence", "uniform cases"),
    ("word_link", word_link_pops_tokens, "changed its input `tokens`", "side effect"),
]
