"""Classic mistakes in lesson 05's exercises."""

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


def pool_without_new_axis(hidden, mask):
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def pool_with_padding(hidden, mask):
    return hidden.mean(dim=1)


def pool_divided_by_seq(hidden, mask):
    return (hidden * mask[..., None]).sum(dim=1) / hidden.shape[1]


def pool_of_padding(hidden, mask):
    pad = ~mask
    return (hidden * pad[..., None]).sum(dim=1) / pad.sum(dim=1, keepdim=True).clamp(min=1)


def embedding_not_normalised(hidden, mask):
    keep = mask[..., None].float()
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


def word_link_reversed(weights, tokens, query_word, key_word):
    return weights[..., tokens.index(key_word), tokens.index(query_word)]


def word_link_row_max(weights, tokens, query_word, key_word):
    return weights[..., tokens.index(query_word), :].max(dim=-1).values


WRONG = [
    ("previous_token_score", previous_is_next, "that is the next token"),
    ("previous_token_score", previous_divided_by_seq, "you divided by seq"),
    ("previous_token_score", previous_is_self, "weight on itself"),
    ("previous_token_score", previous_without_dims, "take the diagonal over the last two dimensions"),
    ("mean_pool", pool_without_new_axis, "use mask[..., None]"),
    ("mean_pool", pool_with_padding, "padding was included"),
    ("mean_pool", pool_divided_by_seq, "you divided by seq"),
    ("mean_pool", pool_of_padding, "you averaged the padding"),
    ("sentence_embedding", embedding_not_normalised, "not scaled to length 1"),
    ("sentence_embedding", embedding_tokens_normalised, "average first, then scale"),
    ("sentence_embedding", embedding_wrong_dim, "normalised along the wrong dimension"),
    ("sentence_embedding", embedding_batch_norm, "you divided by the norm of the whole batch"),
    ("stack_qkv", stack_along_columns, "stack them as rows"),
    ("stack_qkv", stack_transposed, "each block is transposed"),
    ("stack_qkv", stack_q_v_k, "the order is [W_Q; W_K; W_V]"),
    ("top_heads", top_heads_wrong_divisor, "you divided by layers"),
    ("top_heads", top_heads_smallest, "those are the smallest scores"),
    ("top_heads", top_heads_tensors, "return plain Python numbers"),
    ("word_link", word_link_reversed, "reversed"),
    ("word_link", word_link_row_max, "the largest weight of"),
]
