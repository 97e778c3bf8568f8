"""Classic mistakes in lesson 08's exercises."""

import math

import torch

import mha

# --- shard_rank ---------------------------------------------------------------------------------------------------


def _shard(w_in, b_in, w_out, heads, world, rank, pick_rows=None, out_rows=False, fused=False, out_t=False):
    d_model = w_out.shape[0]
    d_head = d_model // heads
    per_rank = heads // world
    rows = (
        pick_rows(rank, per_rank, d_head, heads, world)
        if pick_rows
        else slice(rank * per_rank * d_head, (rank + 1) * per_rank * d_head)
    )
    if fused:  # cut the fused matrix into world blocks, then into q, k, v
        w_q, w_k, w_v = w_in.chunk(world)[rank].chunk(3)
        b_q, b_k, b_v = b_in.chunk(world)[rank].chunk(3)
    else:
        (w_q, w_k, w_v), (b_q, b_k, b_v) = w_in.chunk(3), b_in.chunk(3)
        w_q, w_k, w_v, b_q, b_k, b_v = (t[rows] for t in (w_q, w_k, w_v, b_q, b_k, b_v))
    w_o = w_out[rows, :] if out_rows else w_out[:, rows]
    return {"W_Q": w_q, "b_Q": b_q, "W_K": w_k, "b_K": b_k, "W_V": w_v, "b_V": b_v, "W_O": w_o.T if out_t else w_o}


def shard_fused_in_proj(w_in, b_in, w_out, heads, world, rank):
    return _shard(w_in, b_in, w_out, heads, world, rank, fused=True)


def shard_rows_of_w_o(w_in, b_in, w_out, heads, world, rank):
    return _shard(w_in, b_in, w_out, heads, world, rank, out_rows=True)


def shard_one_head(w_in, b_in, w_out, heads, world, rank):
    return _shard(w_in, b_in, w_out, heads, world, rank, lambda r, p, d, h, w: slice(r * d, (r + 1) * d))


def shard_every_world_th_head(w_in, b_in, w_out, heads, world, rank):
    def rows(r, p, d, h, w):
        return torch.cat([torch.arange(head * d, (head + 1) * d) for head in range(r, h, w)])

    return _shard(w_in, b_in, w_out, heads, world, rank, rows)


def shard_w_o_transposed(w_in, b_in, w_out, heads, world, rank):
    return _shard(w_in, b_in, w_out, heads, world, rank, out_t=True)


# --- local_forward ------------------------------------------------------------------------------------------------


def _local(x, mine, heads_here, bias=False, one_head=False, scale=None, project=True):
    q, k, v = (x @ mine[w].T + mine[b] for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V")))
    heads = 1 if one_head else heads_here
    q, k, v = (mha.split_heads(t, heads) for t in (q, k, v))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(scale or q.shape[-1])).softmax(-1)
    merged = mha.merge_heads(weights @ v)
    if not project:
        return merged
    out = merged @ mine["W_O"].T
    return out + mine["b_O"] if bias else out


def local_adds_the_bias(x, mine, heads_here):
    return _local(x, mine, heads_here, bias=True)


def local_one_head(x, mine, heads_here):
    return _local(x, mine, heads_here, one_head=True)


def local_sqrt_d_model(x, mine, heads_here):
    return _local(x, mine, heads_here, scale=x.shape[-1])


def local_no_w_o(x, mine, heads_here):
    return _local(x, mine, heads_here, project=False)


# --- all_reduce_by_hand -------------------------------------------------------------------------------------------


def reduce_mean(partials, out_bias):
    return torch.stack(partials).mean(dim=0) + out_bias


def reduce_bias_per_rank(partials, out_bias):
    return sum(p + out_bias for p in partials)


def reduce_concatenate(partials, out_bias):
    return torch.cat(partials, dim=-1)


def reduce_no_bias(partials, out_bias):
    return sum(partials)


# --- allreduce_bytes ----------------------------------------------------------------------------------------------


def bytes_reduce_scatter_only(batch, seq, d_model, bytes_per_number, world):
    return (world - 1) / world * batch * seq * d_model * bytes_per_number


def bytes_whole_tensor_per_step(batch, seq, d_model, bytes_per_number, world):
    return 2 * (world - 1) * batch * seq * d_model * bytes_per_number


def bytes_numbers_not_bytes(batch, seq, d_model, bytes_per_number, world):
    return 2 * (world - 1) / world * batch * seq * d_model


def bytes_weight_matrix(batch, seq, d_model, bytes_per_number, world):
    return 2 * (world - 1) / world * d_model * d_model * bytes_per_number


def bytes_twice_the_size(batch, seq, d_model, bytes_per_number, world):
    return 2 * batch * seq * d_model * bytes_per_number


# --- ring_all_reduce ----------------------------------------------------------------------------------------------


def ring_everyone_sends_everything(tensors):
    total = sum(tensors)
    w, n = len(tensors), tensors[0].numel()
    return [total.clone() for _ in tensors], [(w - 1) * n] * w


def ring_through_rank_0(tensors):
    total = sum(tensors)
    w, n = len(tensors), tensors[0].numel()
    return [total.clone() for _ in tensors], [(w - 1) * n] + [n] * (w - 1)


def ring_reduce_scatter_only(tensors):
    w = len(tensors)
    chunks = [[c.clone() for c in t.chunk(w)] for t in tensors]
    sent = [0] * w
    for step in range(w - 1):
        messages = [(r, (r - step) % w, chunks[r][(r - step) % w].clone()) for r in range(w)]
        for r, c, piece in messages:
            chunks[(r + 1) % w][c] += piece
            sent[r] += piece.numel()
    return [torch.cat(c) for c in chunks], sent


def ring_unchanged(tensors):
    w, n = len(tensors), tensors[0].numel()
    return [t.clone() for t in tensors], [2 * (w - 1) * n // w] * w


# --- kv_heads_of_rank ---------------------------------------------------------------------------------------------


def kv_query_heads(heads, kv_heads, world, rank):
    per_rank = heads // world
    return list(range(rank * per_rank, (rank + 1) * per_rank))


def kv_round_robin(heads, kv_heads, world, rank):
    return [rank % kv_heads]


def kv_one_each(heads, kv_heads, world, rank):
    return [rank * kv_heads // world]


WRONG = [
    ("shard_rank", shard_fused_in_proj, "you cut the fused in_proj [W_Q; W_K; W_V] into world blocks", "classic"),
    ("shard_rank", shard_rows_of_w_o, "W_O: you took rows of W_O", "classic"),
    ("shard_rank", shard_one_head, "you took one head's rows", "classic"),
    ("shard_rank", shard_every_world_th_head, "every world-th head", "classic"),
    ("shard_rank", shard_w_o_transposed, "W_O's block is transposed", "classic"),
    ("local_forward", local_adds_the_bias, "you added b_O on this rank", "classic"),
    ("local_forward", local_one_head, "you treated all of the rank's features as one head", "classic"),
    ("local_forward", local_sqrt_d_model, "scores scaled by sqrt(d_model)", "classic"),
    ("local_forward", local_no_w_o, "multiply by the rank's block of W_O", "classic"),
    ("all_reduce_by_hand", reduce_mean, "you averaged the partial outputs", "classic"),
    ("all_reduce_by_hand", reduce_bias_per_rank, "b_O added once per rank", "classic"),
    ("all_reduce_by_hand", reduce_concatenate, "you concatenated the partial outputs", "classic"),
    ("all_reduce_by_hand", reduce_no_bias, "b_O is missing", "classic"),
    ("allreduce_bytes", bytes_reduce_scatter_only, "that is half of it, the reduce-scatter", "classic"),
    ("allreduce_bytes", bytes_whole_tensor_per_step, "sends one piece of size/w, not the whole tensor", "classic"),
    ("allreduce_bytes", bytes_numbers_not_bytes, "you counted numbers; multiply by bytes_per_number", "classic"),
    ("allreduce_bytes", bytes_weight_matrix, "not a weight matrix", "classic"),
    ("allreduce_bytes", bytes_twice_the_size, "the factor is 2(w−1)/w", "classic"),
    ("ring_all_reduce", ring_everyone_sends_everything, "its whole vector to every other rank", "classic"),
    ("ring_all_reduce", ring_through_rank_0, "everything went through rank 0", "classic"),
    ("ring_all_reduce", ring_reduce_scatter_only, "you stopped after the reduce-scatter", "classic"),
    ("ring_all_reduce", ring_unchanged, "came back unchanged", "classic"),
    ("kv_heads_of_rank", kv_query_heads, "are its query heads", "classic"),
    ("kv_heads_of_rank", kv_round_robin, "ranks do not take K/V heads in turn", "classic"),
    ("kv_heads_of_rank", kv_one_each, "a rank holds kv_heads/world K/V heads", "classic"),
]
