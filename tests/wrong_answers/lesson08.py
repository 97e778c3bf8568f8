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


def local_heads_and_d_head_swapped(x, mine, heads_here):
    d_head = mine["W_Q"].shape[0] // heads_here
    q, k, v = (x @ mine[w].T + mine[b] for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V")))
    q, k, v = (mha.split_heads(t, d_head) for t in (q, k, v))  # d_head heads of heads_here features
    out, _ = mha.attention(q, k, v)
    return mha.merge_heads(out) @ mine["W_O"].T


# --- all_reduce_by_hand -------------------------------------------------------------------------------------------


def reduce_mean(partials, out_bias):
    return torch.stack(partials).mean(dim=0) + out_bias


def reduce_bias_per_rank(partials, out_bias):
    return sum(p + out_bias for p in partials)


def reduce_concatenate(partials, out_bias):
    return torch.cat(partials, dim=-1)


def reduce_no_bias(partials, out_bias):
    return sum(partials)


# --- backward_by_ranks --------------------------------------------------------------------------------------------


def _backward(x, shards, heads_here, grad_output, g_sums=False, f="sum", shared=False):
    world = len(shards)
    grad = grad_output * world if g_sums else grad_output
    shared_x = x.detach().clone().requires_grad_()
    parts = []
    for mine in shards:
        x_r = shared_x if shared else x.detach().clone().requires_grad_()
        _local(x_r, mine, heads_here).backward(grad)
        parts.append(x_r.grad.clone())  # with a shared input: the sum so far
    total = {"sum": sum(parts), "mean": sum(parts) / world, "none": parts[0]}[f]
    return [grad] * world, parts, total


def backward_g_sums_the_gradient(x, shards, heads_here, grad_output):
    return _backward(x, shards, heads_here, grad_output, g_sums=True)


def backward_without_f(x, shards, heads_here, grad_output):
    return _backward(x, shards, heads_here, grad_output, f="none")


def backward_f_averages(x, shards, heads_here, grad_output):
    return _backward(x, shards, heads_here, grad_output, f="mean")


def backward_one_shared_input(x, shards, heads_here, grad_output):
    return _backward(x, shards, heads_here, grad_output, shared=True)


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


def _ring(tensors, send, scatter="add", gather="replace", direction=1, phases=2, give_back=None):
    """The exercise's ring, or one with a classic mistake: how a receiver combines a piece in each phase, the
    direction, the number of phases, and what is returned."""
    w = len(tensors)
    pieces = [[c.clone() for c in t.chunk(w)] for t in tensors]
    for step in range(phases * (w - 1)):
        gathering = step >= w - 1
        s = step - (w - 1) if gathering else step
        messages = []
        for r in range(w):
            if direction == 1:
                i = (r + 1 - s) % w if gathering else (r - s) % w
            else:  # the mirror image: rank r sends to r − 1, its pieces counted the other way
                i = (r - 1 + s) % w if gathering else (r + s) % w
            to = (r + direction) % w
            messages.append((to, i, send(r, to, i, pieces[r][i])))
        how = gather if gathering else scatter
        for to, i, piece in messages:
            if how == "add":
                pieces[to][i] = pieces[to][i] + piece
            elif how == "replace":
                pieces[to][i] = piece
    return give_back if give_back is not None else [torch.cat(p) for p in pieces]


def ring_everyone_sends_everything(tensors, send):
    w = len(tensors)
    for r in range(w):
        for other in range(w):
            if other != r:
                send(r, other, 0, tensors[r])
    return [sum(tensors) for _ in tensors]


def ring_through_rank_0(tensors, send):
    total = tensors[0].clone()
    for r in range(1, len(tensors)):
        total += send(r, 0, 0, tensors[r])
    return [total] + [send(0, r, 0, total) for r in range(1, len(tensors))]


def ring_reduce_scatter_only(tensors, send):
    return _ring(tensors, send, phases=1)


def ring_returns_the_inputs(tensors, send):
    _ring(tensors, send)
    return [t.clone() for t in tensors]


def ring_sums_directly(tensors, send):
    return [sum(tensors) for _ in tensors]


def ring_the_other_way_round(tensors, send):
    return _ring(tensors, send, direction=-1)


def ring_replaces_in_the_reduce_scatter(tensors, send):
    return _ring(tensors, send, scatter="replace")


def ring_never_uses_what_it_receives(tensors, send):
    return _ring(tensors, send, scatter="keep", gather="keep")


def ring_adds_in_the_all_gather(tensors, send):
    return _ring(tensors, send, gather="add")


# --- kv_heads_of_rank ---------------------------------------------------------------------------------------------


def kv_query_heads(heads, kv_heads, world, rank):
    per_rank = heads // world
    return list(range(rank * per_rank, (rank + 1) * per_rank))


def kv_round_robin(heads, kv_heads, world, rank):
    return [rank % kv_heads]


def kv_one_each(heads, kv_heads, world, rank):
    return [rank * kv_heads // world]


def kv_modulo(heads, kv_heads, world, rank):
    mine = range(rank * heads // world, (rank + 1) * heads // world)
    return sorted({h % kv_heads for h in mine})


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
    ("local_forward", local_heads_and_d_head_swapped, "into d_head heads of heads_here features", "coinciding sizes"),
    ("all_reduce_by_hand", reduce_mean, "you averaged the partial outputs", "classic"),
    ("all_reduce_by_hand", reduce_bias_per_rank, "b_O added once per rank", "classic"),
    ("all_reduce_by_hand", reduce_concatenate, "you concatenated the partial outputs", "classic"),
    ("all_reduce_by_hand", reduce_no_bias, "b_O is missing", "classic"),
    ("backward_by_ranks", backward_g_sums_the_gradient, "you summed it over the ranks in g's backward", "classic"),
    ("backward_by_ranks", backward_without_f, "that is one rank's part of the input's gradient", "classic"),
    ("backward_by_ranks", backward_f_averages, "you averaged the ranks' parts", "classic"),
    ("backward_by_ranks", backward_one_shared_input, "the ranks shared one input tensor", "classic"),
    ("allreduce_bytes", bytes_reduce_scatter_only, "that is half of it, the reduce-scatter", "classic"),
    ("allreduce_bytes", bytes_whole_tensor_per_step, "sends one piece of size/w, not the whole tensor", "classic"),
    ("allreduce_bytes", bytes_numbers_not_bytes, "you counted numbers; multiply by bytes_per_number", "classic"),
    ("allreduce_bytes", bytes_weight_matrix, "not a weight matrix", "classic"),
    ("allreduce_bytes", bytes_twice_the_size, "the factor is 2(w−1)/w", "classic"),
    ("ring_all_reduce", ring_everyone_sends_everything, "its whole vector to every other rank", "classic"),
    ("ring_all_reduce", ring_through_rank_0, "everything went through rank 0", "classic"),
    ("ring_all_reduce", ring_reduce_scatter_only, "you stopped after the reduce-scatter", "classic"),
    ("ring_all_reduce", ring_returns_the_inputs, "came back unchanged", "classic"),
    ("ring_all_reduce", ring_sums_directly, "nothing went through `send`", "classic"),
    ("ring_all_reduce", ring_the_other_way_round, "the ring runs the other way round", "classic"),
    ("ring_all_reduce", ring_replaces_in_the_reduce_scatter, "you replaced your piece with the one", "classic"),
    ("ring_all_reduce", ring_never_uses_what_it_receives, "every rank sent its own numbers unchanged", "classic"),
    ("ring_all_reduce", ring_adds_in_the_all_gather, "in the all-gather you added the piece", "classic"),
    ("kv_heads_of_rank", kv_query_heads, "are its query heads", "classic"),
    ("kv_heads_of_rank", kv_round_robin, "ranks do not take K/V heads in turn", "classic"),
    ("kv_heads_of_rank", kv_one_each, "a rank holds kv_heads/world K/V heads", "classic"),
    ("kv_heads_of_rank", kv_modulo, "you sent query head h to K/V head h % kv_heads", "classic"),
]
