"""Right answers to lesson 11's exercises, in other forms than the solutions'."""

import numpy as np
import torch

from mha.circuits.scores import head_terms


def batch_loops(patterns, seq):
    tokens = [[p[i % len(p)] for i in range(seq)] for p in patterns]
    predictable = [[len(p) <= i < seq - 1 for i in range(seq)] for p in patterns]
    return torch.tensor(tokens), torch.tensor(predictable)


def batch_from_the_tokens(patterns, seq):  # predictable where the current token occurred before, as numpy
    tokens = np.stack([np.resize(np.array(p), seq) for p in patterns])
    seen = np.zeros(tokens.shape, dtype=bool)
    for b, row in enumerate(tokens):
        for i in range(seq - 1):
            seen[b, i] = row[i] in row[:i]
    return tokens, seen


def previous_einsum(weights):
    seq = weights.shape[-1]
    below = torch.eye(seq, dtype=weights.dtype).roll(-1, dims=1).tril()  # ones at (i, i - 1)
    return torch.einsum("blhqk,qk->lh", weights, below) / (weights.shape[0] * (seq - 1))


def previous_loops(weights):
    batch, layers, heads, seq, _ = weights.shape
    out = torch.zeros(layers, heads, dtype=weights.dtype)
    for i in range(1, seq):
        out += weights[:, :, :, i, i - 1].sum(0)
    return out / (batch * (seq - 1))


def induction_loops(weights, tokens):
    batch, seq = tokens.shape
    total, count = torch.zeros(weights.shape[1:3], dtype=weights.dtype), 0
    for b in range(batch):
        for i in range(seq):
            after = [k + 1 for k in range(i) if tokens[b, k] == tokens[b, i]]
            if after:
                total += weights[b, :, :, i, after].sum(-1)
                count += 1
    return total / count


def induction_where(weights, tokens):
    seq = tokens.shape[1]
    previous = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)  # the token before each key
    keys = torch.arange(seq)
    target = (previous[:, None, :] == tokens[:, :, None]) & (keys[None, :] <= keys[:, None])  # k - 1 < q
    has = target.any(-1)
    on = torch.where(target[:, None, None], weights, torch.zeros_like(weights)).sum(-1)
    return on.permute(1, 2, 0, 3)[..., has].mean(-1)


def ablated_head_mask(model, tokens, layer, head):
    mask = torch.ones(model.config.layers, model.config.heads)
    mask[layer, head] = 0.0
    return model(tokens, head_mask=mask.flatten())[:, :, 0]


def ablated_subtract(model, tokens, layer, head):
    x = model.embed(tokens)
    for i, attention in enumerate(model.layers):
        out, _ = attention(x, causal=True)
        if i == layer:
            out = out - head_terms(attention, x)[:, head]  # the layer's output minus that head's term
        x = x + out
    return model.readouts[0](x)


def k_einsum(first, second, h1, h2):
    d = first.d_head
    w_q = second.in_proj.weight[: second.d_model].view(second.heads, d, -1)[h2]
    w_k = second.in_proj.weight[second.d_model : 2 * second.d_model].view(second.heads, d, -1)[h2]
    w_v = first.in_proj.weight[2 * first.d_model :].view(first.heads, d, -1)[h1]
    w_o = first.out_proj.weight.view(first.d_model, first.heads, d)[:, h1]
    w_qk = torch.einsum("dm,dn->mn", w_q, w_k)
    w_ov = torch.einsum("md,dn->mn", w_o, w_v)
    product = w_qk @ w_ov
    return np.float64((product.norm() / (w_qk.norm() * w_ov.norm())).item())


def k_traces(first, second, h1, h2):  # |A|_F^2 = trace(A^T A), in float64, without gradients
    d = first.d_head
    r1, r2 = slice(h1 * d, (h1 + 1) * d), slice(h2 * d, (h2 + 1) * d)
    with torch.no_grad():
        w_q, w_k, _ = second.in_proj.weight.double().split(second.d_model)
        _, _, w_v = first.in_proj.weight.double().split(first.d_model)
        a, b = w_q[r2].T @ w_k[r2], first.out_proj.weight.double()[:, r1] @ w_v[r1]

        def fro(m):
            return torch.trace(m.T @ m).sqrt()

        return float(fro(a @ b) / (fro(a) * fro(b)))


RIGHT = [
    ("repeat_batch", batch_loops),
    ("repeat_batch", batch_from_the_tokens),
    ("previous_token_scores", previous_einsum),
    ("previous_token_scores", previous_loops),
    ("induction_scores", induction_loops),
    ("induction_scores", induction_where),
    ("ablated_logits", ablated_head_mask),
    ("ablated_logits", ablated_subtract),
    ("k_composition", k_einsum),
    ("k_composition", k_traces),
]
