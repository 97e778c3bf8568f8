"""Right answers to lesson 08's exercises, in other forms than the solutions'."""

import functools
import math

import numpy as np
import torch


def shard_by_head_view(in_proj_weight, in_proj_bias, out_proj_weight, heads, world, rank):
    d_model = out_proj_weight.shape[0]
    d_head, per_rank = d_model // heads, heads // world
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    w = in_proj_weight.view(3, heads, d_head, d_model)[:, mine].reshape(3, per_rank * d_head, d_model)
    b = in_proj_bias.view(3, heads, d_head)[:, mine].reshape(3, per_rank * d_head)
    w_o = out_proj_weight.view(d_model, heads, d_head)[:, mine].reshape(d_model, per_rank * d_head)
    return dict(W_Q=w[0], W_K=w[1], W_V=w[2], b_Q=b[0], b_K=b[1], b_V=b[2], W_O=w_o)


def shard_by_index_list(in_proj_weight, in_proj_bias, out_proj_weight, heads, world, rank):
    d_model = out_proj_weight.shape[0]
    features = d_model // world
    rows = [rank * features + i for i in range(features)]
    out = {}
    for j, name in enumerate("QKV"):
        out[f"W_{name}"] = in_proj_weight[[j * d_model + r for r in rows]].clone()
        out[f"b_{name}"] = in_proj_bias[[j * d_model + r for r in rows]].clone()
    out["W_O"] = out_proj_weight[:, rows].clone()
    return out


def local_with_sdpa(x, mine, heads_here):
    def project(name):
        y = torch.nn.functional.linear(x, mine[f"W_{name}"], mine[f"b_{name}"])
        return y.unflatten(-1, (heads_here, -1)).transpose(-3, -2)  # (..., heads_here, seq, d_head)

    out = torch.nn.functional.scaled_dot_product_attention(project("Q"), project("K"), project("V"))
    return out.transpose(-3, -2).flatten(-2) @ mine["W_O"].T


def local_by_einsum(x, mine, heads_here):
    q, k, v = (torch.einsum("...sd,fd->...sf", x, mine[f"W_{n}"]) + mine[f"b_{n}"] for n in "QKV")
    q, k, v = (t.unflatten(-1, (heads_here, -1)) for t in (q, k, v))  # (..., seq, heads_here, d_head)
    scores = torch.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1])
    out = torch.einsum("...hqk,...khd->...qhd", scores.softmax(-1), v)
    return torch.einsum("...qf,mf->...qm", out.flatten(-2), mine["W_O"])


def reduce_by_stacking(partials, out_bias):
    return torch.stack(list(partials)).sum(dim=0) + out_bias


def reduce_by_folding(partials, out_bias):
    return functools.reduce(torch.add, partials, out_bias)


def backward_with_autograd_grad(x, shards, heads_here, grad_output):
    grad_partials = [grad_output] * len(shards)  # g: the output's gradient, unchanged, on every rank
    parts = []
    for mine in shards:
        x_r = x.detach().clone().requires_grad_()
        (part,) = torch.autograd.grad(local_with_sdpa(x_r, mine, heads_here), x_r, grad_output)
        parts.append(part)
    return grad_partials, parts, torch.stack(parts).sum(dim=0)  # f: the parts summed


def backward_all_ranks_at_once(x, shards, heads_here, grad_output):
    copies = [x.detach().clone().requires_grad_() for _ in shards]  # each rank's own input
    outputs = [local_by_einsum(c, mine, heads_here) for c, mine in zip(copies, shards)]
    torch.autograd.backward(outputs, [grad_output] * len(outputs))
    parts = [c.grad for c in copies]
    return tuple(grad_output.clone() for _ in shards), tuple(parts), functools.reduce(torch.add, parts)


def bytes_two_phases(batch, seq, d_model, bytes_per_number, world):
    piece = batch * seq * d_model * bytes_per_number / world
    reduce_scatter = (world - 1) * piece
    all_gather = (world - 1) * piece
    return reduce_scatter + all_gather


def bytes_numpy(batch, seq, d_model, bytes_per_number, world):
    return np.float64(2 * (world - 1) * batch * seq * d_model * bytes_per_number) / np.int64(world)


def ring_by_slices(tensors, send):
    w, n = len(tensors), tensors[0].numel()
    size = n // w
    held = [t.clone() for t in tensors]
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(w - 1):
            messages = []
            for r in range(w):
                i = (r - step) % w if phase == "reduce-scatter" else (r + 1 - step) % w
                messages.append(((r + 1) % w, i, send(r, (r + 1) % w, i, held[r][i * size : (i + 1) * size])))
            for to, i, piece in messages:
                if phase == "reduce-scatter":
                    held[to][i * size : (i + 1) * size] += piece
                else:
                    held[to][i * size : (i + 1) * size] = piece
    return tuple(held)


def ring_one_message_at_a_time(tensors, send):
    """Each message applied as soon as it is sent: in a step, the pieces sent and received never overlap."""
    w = len(tensors)
    pieces = {(r, i): p.clone() for r, t in enumerate(tensors) for i, p in enumerate(t.chunk(w))}
    for step in range(2 * (w - 1)):
        for r in range(w):
            i = (r - step) % w if step < w - 1 else (r + 1 - (step - w + 1)) % w
            got = send(r, (r + 1) % w, i, pieces[r, i])
            pieces[(r + 1) % w, i] = pieces[(r + 1) % w, i] + got if step < w - 1 else got
    return [torch.cat([pieces[r, i] for i in range(w)]) for r in range(w)]


def kv_by_range(heads, kv_heads, world, rank):
    group = heads // kv_heads
    first, last = rank * heads // world, (rank + 1) * heads // world - 1
    return list(range(first // group, last // group + 1))


def kv_numpy(heads, kv_heads, world, rank):
    mine = np.arange(heads).reshape(world, -1)[rank]
    return np.unique(mine // (heads // kv_heads))


RIGHT = [
    ("shard_rank", shard_by_head_view),
    ("shard_rank", shard_by_index_list),
    ("local_forward", local_with_sdpa),
    ("local_forward", local_by_einsum),
    ("all_reduce_by_hand", reduce_by_stacking),
    ("all_reduce_by_hand", reduce_by_folding),
    ("backward_by_ranks", backward_with_autograd_grad),
    ("backward_by_ranks", backward_all_ranks_at_once),
    ("allreduce_bytes", bytes_two_phases),
    ("allreduce_bytes", bytes_numpy),
    ("ring_all_reduce", ring_by_slices),
    ("ring_all_reduce", ring_one_message_at_a_time),
    ("kv_heads_of_rank", kv_by_range),
    ("kv_heads_of_rank", kv_numpy),
]
