"""Right answers to lesson 09's exercises, in other forms than the solutions'."""

import math

import numpy as np
import torch
import torch.nn.functional as F


def table_stacked(seq, d_model):
    positions = torch.arange(seq, dtype=torch.float64)[:, None]
    theta = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = positions * theta  # (seq, d_model / 2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).reshape(seq, d_model)


def table_numpy_loops(seq, d_model):
    table = np.zeros((seq, d_model))
    for p in range(seq):
        for i in range(d_model // 2):
            table[p, 2 * i] = math.sin(p / 10000 ** (2 * i / d_model))
            table[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / d_model))
    return table


def rope_complex(x, positions):
    d_head = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    turns = torch.polar(torch.ones(len(positions), d_head // 2, dtype=torch.float64), positions[:, None] * theta)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d_head // 2, 2).contiguous())
    return torch.view_as_real(pairs * turns).flatten(-2).to(x.dtype)


def rope_matrices(x, positions):
    d_head = x.shape[-1]
    rows = []
    for j, m in enumerate(positions.tolist()):
        matrix = torch.zeros(d_head, d_head, dtype=x.dtype)
        for i in range(d_head // 2):
            angle = m * 10000.0 ** (-2 * i / d_head)
            c, s = math.cos(angle), math.sin(angle)
            matrix[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=x.dtype)
        rows.append(x[..., j, :] @ matrix.T)
    return torch.stack(rows, dim=-2)


def rotary_fused(q, k, v):
    positions = torch.arange(q.shape[-2])
    return F.scaled_dot_product_attention(rope_complex(q, positions), rope_complex(k, positions), v)


def look_back_by_matrix(k, d):
    """q = R_{-d} k: the transpose of the turn by d, which undoes it."""
    d_head = k.shape[-1]
    matrix = torch.zeros(d_head, d_head, dtype=torch.float64)
    for i in range(d_head // 2):
        angle = d * 10000.0 ** (-2 * i / d_head)
        c, s = math.cos(angle), math.sin(angle)
        matrix[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return (matrix.T @ k.double()).to(k.dtype)


def look_back_complex(k, d):
    return rope_complex(k[None], torch.tensor([-d]))[0]


def decode_step_complex(q, k, v, cached_k, cached_v):
    at = torch.tensor([cached_k.shape[-2]])  # the new token's position: one after the cached ones
    keys = torch.cat((cached_k, rope_complex(k, at)), dim=-2)
    output = F.scaled_dot_product_attention(rope_complex(q, at), keys, torch.cat((cached_v, v), dim=-2))
    return [output, keys]  # a list unpacks like a tuple


def decode_step_float64(q, k, v, cached_k, cached_v):
    at = torch.tensor([cached_k.shape[-2]])
    keys = torch.cat((cached_k.double(), rope_complex(k.double(), at)), dim=-2)
    scores = rope_complex(q.double(), at) @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.softmax(-1) @ torch.cat((cached_v, v), dim=-2).double(), keys


RIGHT = [
    ("sinusoidal_table", table_stacked),
    ("sinusoidal_table", table_numpy_loops),
    ("apply_rope", rope_complex),
    ("apply_rope", rope_matrices),
    ("rotary_attention", rotary_fused),
    ("look_back", look_back_by_matrix),
    ("look_back", look_back_complex),
    ("rotary_decode_step", decode_step_complex),
    ("rotary_decode_step", decode_step_float64),
]
