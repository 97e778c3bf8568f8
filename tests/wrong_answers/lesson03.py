"""Wrong answers to lesson 03's exercises."""

import math

import torch

import mha


def split_view_only(x, heads):
    batch, seq, d_model = x.shape
    return x.view(batch, heads, seq, d_model // heads)


def split_reshape_only(x, heads):
    batch, seq, d_model = x.shape
    return x.reshape(batch, heads, seq, d_model // heads)


def split_interleaved(x, heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, d_model // heads, heads).permute(0, 3, 1, 2)


def split_forgot_heads_dim(x, heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, heads, d_model // heads)


def split_two_heads_only(x, heads):
    batch, seq, d_model = x.shape
    return x.view(batch, seq, 2, d_model // 2).transpose(1, 2)  # fitted to heads=2


def merge_no_transpose(x):
    batch, heads, seq, d_head = x.shape
    return x.reshape(batch, seq, heads * d_head)


def merge_interleaved(x):
    batch, heads, seq, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, seq, heads * d_head)


def merge_summed(x):
    return x.sum(dim=1)


def merge_in_place(x):
    batch, heads, seq, d_head = x.shape
    return x.transpose_(1, 2).reshape(batch, seq, heads * d_head)


def _forward(x, w_in, b_in, w_out, b_out, heads, scale=None, project=True, split=mha.split_heads):
    q, k, v = (x @ w_in.T + b_in).chunk(3, dim=-1)
    q, k, v = (split(t, heads) for t in (q, k, v))
    d = scale or q.shape[-1]
    w = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(-1)
    merged = mha.merge_heads(w @ v)
    return (merged @ w_out.T + b_out if project else merged), w


def forward_sqrt_d_model(x, w_in, b_in, w_out, b_out, heads):
    return _forward(x, w_in, b_in, w_out, b_out, heads, scale=x.shape[-1])


def forward_no_out_proj(x, w_in, b_in, w_out, b_out, heads):
    return _forward(x, w_in, b_in, w_out, b_out, heads, project=False)


def forward_view_split(x, w_in, b_in, w_out, b_out, heads):
    return _forward(x, w_in, b_in, w_out, b_out, heads, split=split_reshape_only)


def forward_averaged_weights(x, w_in, b_in, w_out, b_out, heads):
    out, w = _forward(x, w_in, b_in, w_out, b_out, heads)
    return out, w.mean(dim=1)


def forward_d_head_4(x, w_in, b_in, w_out, b_out, heads):
    return _forward(x, w_in, b_in, w_out, b_out, heads, scale=4)  # fitted to d_head 4


def forward_no_out_bias(x, w_in, b_in, w_out, b_out, heads):
    out, w = _forward(x, w_in, b_in, w_out, b_out, heads)
    return out - b_out, w


def forward_in_place_bias(x, w_in, b_in, w_out, b_out, heads):
    b_in /= 1.0 + 0.0 * b_in.sum()  # harmless numbers, but written into the caller's tensor
    b_in.mul_(2)
    return _forward(x, w_in, b_in / 2, w_out, b_out, heads)


def _loop(x, head_weights, w_out, b_out, shared_q=False, project=True, reverse=False):
    outs = []
    for p in head_weights:
        wq, bq = (head_weights[0]["W_Q"], head_weights[0]["b_Q"]) if shared_q else (p["W_Q"], p["b_Q"])
        out, _ = mha.attention(x @ wq.T + bq, x @ p["W_K"].T + p["b_K"], x @ p["W_V"].T + p["b_V"])
        outs.append(out)
    if reverse:
        outs = outs[::-1]
    concat = torch.cat(outs, dim=-1)
    return concat @ w_out.T + b_out if project else concat


def loop_head_zero_everywhere(x, head_weights, w_out, b_out):
    return _loop(x, [head_weights[0]] * len(head_weights), w_out, b_out)


def loop_shared_w_q(x, head_weights, w_out, b_out):
    return _loop(x, head_weights, w_out, b_out, shared_q=True)


def loop_no_out_proj(x, head_weights, w_out, b_out):
    return _loop(x, head_weights, w_out, b_out, project=False)


def loop_reversed(x, head_weights, w_out, b_out):
    return _loop(x, head_weights, w_out, b_out, reverse=True)


def loop_reverses_the_list(x, head_weights, w_out, b_out):
    head_weights.reverse()
    return _loop(x, head_weights, w_out, b_out, reverse=True)


def load_out_proj_transposed(ours, theirs):
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight)
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.weight.copy_(theirs.out_proj.weight.T)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)


def load_in_proj_transposed(ours, theirs):
    with torch.no_grad():
        ours.in_proj.weight.data = theirs.in_proj_weight.T.clone()
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())


def load_in_proj_transposed_copy(ours, theirs):
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight.T)


def load_forgot_biases(ours, theirs):
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)


def load_q_k_swapped(ours, theirs):
    w_q, w_k, w_v = theirs.in_proj_weight.chunk(3)
    with torch.no_grad():
        ours.in_proj.weight.copy_(torch.cat([w_k, w_q, w_v]))
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())


def load_shared_parameters(ours, theirs):
    ours.in_proj.weight = theirs.in_proj_weight
    ours.in_proj.bias = theirs.in_proj_bias
    ours.out_proj.weight = theirs.out_proj.weight
    ours.out_proj.bias = theirs.out_proj.bias


def load_moved_their_weights(ours, theirs):
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight)
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)
        theirs.out_proj.bias.zero_()  # "tidying up" the source


def _contributions(module, x, rows=False, bias=False):
    d, W = module.d_head, module.out_proj.weight
    q, k, v = (mha.split_heads(t, module.heads) for t in module.in_proj(x).chunk(3, dim=-1))
    o, _ = mha.attention(q, k, v)
    parts = []
    for h in range(module.heads):
        block = W[h * d : (h + 1) * d, :] if rows else W[:, h * d : (h + 1) * d].T
        parts.append(o[:, h] @ block + (module.out_proj.bias if bias else 0))
    return torch.stack(parts, dim=1)


def contributions_rows(module, x):
    return _contributions(module, x, rows=True)


def contributions_with_bias(module, x):
    return _contributions(module, x, bias=True)


def contributions_without_w_o(module, x):
    q, k, v = (mha.split_heads(t, module.heads) for t in module.in_proj(x).chunk(3, dim=-1))
    return mha.attention(q, k, v)[0]


def contributions_bias_zeroed(module, x):
    with torch.no_grad():
        module.out_proj.bias.zero_()
    return _contributions(module, x, bias=True)


def contributions_bias_shared(module, x):
    return _contributions(module, x) + module.out_proj.bias / module.heads


WRONG = [
    ("split_heads", split_view_only, "heads split with view and no transpose", "classic"),
    ("split_heads", split_interleaved, "you gave it every heads-th feature", "classic"),
    ("split_heads", split_forgot_heads_dim, "heads must come before seq: transpose(1, 2)", "classic"),
    ("split_heads", split_two_heads_only, "split_heads", "uniform cases"),
    ("merge_heads", merge_no_transpose, "heads merged in the wrong order", "classic"),
    ("merge_heads", merge_interleaved, "you interleaved them", "classic"),
    ("merge_heads", merge_summed, "you added the heads' outputs; concatenate them", "coinciding sizes"),
    ("merge_heads", merge_in_place, "changed its input `x`: its shape changed", "side effect"),
    ("multihead_forward", forward_sqrt_d_model, "scores scaled by sqrt(d_model)", "classic"),
    ("multihead_forward", forward_no_out_proj, "the output projection W_O is missing", "classic"),
    ("multihead_forward", forward_view_split, "heads split with view and no transpose", "classic"),
    ("multihead_forward", forward_averaged_weights, "(batch, heads, q_pos, k_pos)", "classic"),
    ("multihead_forward", forward_d_head_4, "values differ", "uniform cases"),
    ("multihead_forward", forward_no_out_bias, "the output projection's bias is missing", "classic"),
    ("multihead_forward", forward_in_place_bias, "changed its input `in_proj_bias`", "side effect"),
    ("loop_forward", loop_shared_w_q, "one W_Q shared by all heads", "classic"),
    ("loop_forward", loop_head_zero_everywhere, "every head used head 0's weights", "classic"),
    ("loop_forward", loop_no_out_proj, "the output projection W_O is missing", "classic"),
    ("loop_forward", loop_reversed, "heads concatenated in the wrong order", "classic"),
    ("loop_forward", loop_reverses_the_list, "it was reversed in place", "side effect"),
    ("load_from_torch", load_out_proj_transposed, "ours.out_proj.weight is transposed", "classic"),
    ("load_from_torch", load_in_proj_transposed, "ours.in_proj.weight is transposed", "classic"),
    ("load_from_torch", load_in_proj_transposed_copy, "copy them as they are, without .T", "classic"),
    ("load_from_torch", load_forgot_biases, "ours.in_proj.bias was not copied", "classic"),
    ("load_from_torch", load_q_k_swapped, "W_K block where W_Q belongs", "classic"),
    ("load_from_torch", load_shared_parameters, "now shares its memory with theirs.in_proj_weight", "side effect"),
    ("load_from_torch", load_moved_their_weights, "changed `theirs.out_proj.bias`", "side effect"),
    ("head_contributions", contributions_rows, "you used rows of W_O", "classic"),
    ("head_contributions", contributions_with_bias, "the bias belongs to no head", "classic"),
    ("head_contributions", contributions_without_w_o, "multiply each head's output by its own block of W_O", "classic"),
    ("head_contributions", contributions_bias_zeroed, "changed `module.out_proj.bias`", "side effect"),
    ("head_contributions", contributions_bias_shared, "you shared the bias out among the heads", "coinciding sizes"),
]
