"""Right answers to lesson 03's exercises, in other forms than the solutions'."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def split_unflatten(x, heads):
    return x.unflatten(-1, (heads, -1)).permute(0, 2, 1, 3)


def split_chunks(x, heads):
    return torch.stack(x.chunk(heads, dim=-1), dim=1)


def merge_unbind(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


def merge_permute_view(x):
    batch, heads, seq, d_head = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(batch, seq, heads * d_head)


def forward_einsum(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads):
    batch, seq, d_model = x.shape
    d_head = d_model // heads
    qkv = F.linear(x, in_proj_weight, in_proj_bias).view(batch, seq, 3, heads, d_head)
    q, k, v = qkv.unbind(dim=2)  # (batch, seq, heads, d_head) each
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d_head)
    w = s.softmax(dim=-1)
    out = torch.einsum("bhqk,bkhd->bqhd", w, v).reshape(batch, seq, d_model)
    return F.linear(out, out_proj_weight, out_proj_bias), w


def forward_with_torch_module(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads):
    d_model = x.shape[-1]
    module = nn.MultiheadAttention(d_model, heads, batch_first=True).to(x.dtype)
    with torch.no_grad():
        module.in_proj_weight.copy_(in_proj_weight)
        module.in_proj_bias.copy_(in_proj_bias)
        module.out_proj.weight.copy_(out_proj_weight)
        module.out_proj.bias.copy_(out_proj_bias)
        return module(x, x, x, need_weights=True, average_attn_weights=False)


def loop_linear(x, head_weights, out_proj_weight, out_proj_bias):
    outputs = []
    for p in head_weights:
        q = F.linear(x, p["W_Q"], p["b_Q"])
        k = F.linear(x, p["W_K"], p["b_K"])
        v = F.linear(x, p["W_V"], p["b_V"])
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        outputs.append(w @ v)
    return F.linear(torch.cat(outputs, dim=-1), out_proj_weight, out_proj_bias)


def load_state_dict_copy(ours, theirs):
    ours.load_state_dict(
        {
            "in_proj.weight": theirs.in_proj_weight,
            "in_proj.bias": theirs.in_proj_bias,
            "out_proj.weight": theirs.out_proj.weight,
            "out_proj.bias": theirs.out_proj.bias,
        }
    )


def load_new_parameters(ours, theirs):
    ours.in_proj.weight = nn.Parameter(theirs.in_proj_weight.detach().clone())
    ours.in_proj.bias = nn.Parameter(theirs.in_proj_bias.detach().clone())
    ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    return ours


def contributions_einsum(module, x):
    batch, seq, d_model = x.shape
    heads, d_head = module.heads, module.d_head
    q, k, v = (t.view(batch, seq, heads, d_head).transpose(1, 2) for t in module.in_proj(x).chunk(3, dim=-1))
    w = (q @ k.transpose(-2, -1) / math.sqrt(d_head)).softmax(-1)
    o = w @ v  # (batch, heads, seq, d_head)
    blocks = module.out_proj.weight.view(d_model, heads, d_head)  # W_O's columns, grouped by head
    return torch.einsum("bhsd,mhd->bhsm", o, blocks)


def contributions_hook_free_copy(module, x):
    import copy

    m = copy.deepcopy(module)
    heads, parts = m.heads, []
    for h in range(heads):
        keep = torch.zeros(heads, dtype=x.dtype)
        keep[h] = 1.0
        out, _ = m(x, head_mask=keep)
        parts.append(out - m.out_proj.bias)
    return torch.stack(parts, dim=1)


RIGHT = [
    ("split_heads", split_unflatten),
    ("split_heads", split_chunks),
    ("merge_heads", merge_unbind),
    ("merge_heads", merge_permute_view),
    ("multihead_forward", forward_einsum),
    ("multihead_forward", forward_with_torch_module),
    ("loop_forward", loop_linear),
    ("load_from_torch", load_state_dict_copy),
    ("load_from_torch", load_new_parameters),
    ("head_contributions", contributions_einsum),
    ("head_contributions", contributions_hook_free_copy),
]
