"""The same split done the way practitioners do it: PyTorch's tensor-parallel API on a `DeviceMesh`.

    parallelize_module(layer, mesh, {"q_proj": ColwiseParallel(), "k_proj": ColwiseParallel(),
                                     "v_proj": ColwiseParallel(), "out_proj": RowwiseParallel()})

`ColwiseParallel` shards an `nn.Linear`'s output features (rows of its weight) in contiguous blocks, one per rank:
for W_Q, W_K, W_V that is exactly "rank r holds heads r·heads/world ...". `RowwiseParallel` shards the input
features (columns of W_O) the same way and all-reduces the partial outputs; its bias is replicated and added once.

One trap: `mha.MultiHeadAttention` keeps W_Q, W_K and W_V stacked in one `in_proj` (rows [W_Q; W_K; W_V]), as
`nn.MultiheadAttention` does. Column-wise sharding of that fused matrix cuts it in `world` contiguous blocks, so
with 2 ranks rank 0 would hold all of W_Q and half of W_K, and no values at all (`fused_rows_per_rank` spells it
out). Hence `SplitQKVAttention`: the same layer with three separate projections, the layout these styles expect
(frameworks that keep one fused QKV matrix, such as vLLM's `QKVParallelLinear`, load each rank's rows of W_Q, W_K
and W_V into it one by one instead of cutting it in blocks).

After sharding, each rank's projections return only its features, so the layer counts its heads from the width it
receives (`features // d_head`): the same code runs whole and sharded.
"""

import torch
from torch import nn

from .._validate import head_size
from ..attention import attention
from ..heads import merge_heads, split_heads
from .shard import _check_weights, head_split, kv_heads_in, weights_of

TP_PLAN_NAMES = {"q_proj": "ColwiseParallel", "k_proj": "ColwiseParallel", "v_proj": "ColwiseParallel",
                 "out_proj": "RowwiseParallel"}  # fmt: skip


class SplitQKVAttention(nn.Module):
    """Multi-head (or grouped-query) self-attention with W_Q, W_K, W_V as three separate `nn.Linear`s.

    Args:
        d_model: features per position, in and out.
        heads: query heads; d_head = d_model // heads.
        kv_heads: K/V heads (default: heads).
        bias: add biases to all projections (default True).

    Shape:
        x (batch, seq, d_model); returns the output (batch, seq, d_model).
    """

    def __init__(self, d_model: int, heads: int, kv_heads: int | None = None, bias: bool = True):
        super().__init__()
        self.d_model, self.heads, self.d_head = d_model, heads, head_size(d_model, heads)
        self.kv_heads = head_split(heads, 1, kv_heads, self.d_head).kv_heads
        self.q_proj = nn.Linear(d_model, heads * self.d_head, bias=bias)
        self.k_proj = nn.Linear(d_model, self.kv_heads * self.d_head, bias=bias)
        self.v_proj = nn.Linear(d_model, self.kv_heads * self.d_head, bias=bias)
        self.out_proj = nn.Linear(heads * self.d_head, d_model, bias=bias)

    @classmethod
    def from_weights(cls, weights: dict, heads: int, kv_heads: int | None = None) -> "SplitQKVAttention":
        """The layer holding `weights` (a dict of `mha.parallel.shard.KEYS`)."""
        d_model = weights["W_Q"].shape[-1]
        _check_weights(weights, head_split(heads, 1, kv_heads, head_size(weights["W_Q"].shape[0], heads)))
        layer = cls(d_model, heads, kv_heads, bias=weights["b_Q"] is not None).to(weights["W_Q"])
        with torch.no_grad():
            for proj, w, b in ((layer.q_proj, "W_Q", "b_Q"), (layer.k_proj, "W_K", "b_K"),
                               (layer.v_proj, "W_V", "b_V"), (layer.out_proj, "W_O", "b_O")):  # fmt: skip
                proj.weight.copy_(weights[w])
                if proj.bias is not None:
                    proj.bias.copy_(weights[b])
        return layer

    @classmethod
    def from_module(cls, module) -> "SplitQKVAttention":
        """The same layer as a `mha.MultiHeadAttention` (grouped-query ones included), its fused in_proj cut into
        q_proj, k_proj, v_proj."""
        weights = weights_of(module)
        return cls.from_weights(weights, module.heads, kv_heads_in(weights, module.heads))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (batch, seq, features here) each
        heads_here, kv_here = q.shape[-1] // self.d_head, k.shape[-1] // self.d_head  # fewer when sharded
        q = split_heads(q, heads_here)  # (batch, heads here, seq, d_head)
        k, v = split_heads(k, kv_here), split_heads(v, kv_here)  # (batch, kv heads here, seq, d_head)
        if kv_here != heads_here:  # grouped-query: query head h reads K/V head h // group
            k = k.repeat_interleave(heads_here // kv_here, dim=1)  # (batch, heads here, seq, d_head)
            v = v.repeat_interleave(heads_here // kv_here, dim=1)
        out, _ = attention(q, k, v, causal=causal)
        return self.out_proj(merge_heads(out))  # (batch, seq, d_model)


def tp_plan() -> dict:
    """The tensor-parallel plan of `SplitQKVAttention`: column-wise input projections, row-wise output projection."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    return {"q_proj": ColwiseParallel(), "k_proj": ColwiseParallel(), "v_proj": ColwiseParallel(),
            "out_proj": RowwiseParallel()}  # fmt: skip


def parallelize(layer: SplitQKVAttention, mesh, input_once: bool = True) -> SplitQKVAttention:
    """Shard `layer` in place over the ranks of `mesh` with `parallelize_module` and `tp_plan`; returns it.

    Args:
        layer: the whole layer, the same on every rank.
        mesh: a one-dimensional `torch.distributed.device_mesh.DeviceMesh` (e.g. `init_device_mesh("cpu", (2,))`).
        input_once: first make the layer's input one replicated `DTensor` (`PrepareModuleInput`), so that the
            backward pass sums its gradient over ranks once. Without it each `ColwiseParallel` projection turns the
            input into a DTensor of its own, and the backward pass all-reduces the input's gradient three times,
            once per projection (default True).

    Returns:
        the layer, its parameters now `DTensor`s holding this rank's shard.
    """
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import PrepareModuleInput, parallelize_module

    world = mesh.size()
    split = head_split(layer.heads, world, layer.kv_heads, layer.d_head)
    if split.kv_heads % world:
        raise ValueError(
            f"kv_heads={split.kv_heads} cannot be sharded column-wise over {world} ranks: ColwiseParallel would cut "
            f"K/V heads in pieces; replicate them instead (mha.parallel.HeadParallelAttention does)"
        )
    if input_once:
        replicated = (Replicate(),)
        parallelize_module(layer, mesh, PrepareModuleInput(input_layouts=replicated, desired_input_layouts=replicated))
    return parallelize_module(layer, mesh, tp_plan())


def fused_rows_per_rank(d_model: int, heads: int, world: int) -> list[str]:
    """What column-wise sharding of the fused in_proj (rows [W_Q; W_K; W_V]) would give each rank, in words.

    Returns:
        one line per rank, e.g. "rank 0: rows 0-31 = W_Q heads 0-3, W_K heads 0-3" for d_model 32, 4 heads, 2 ranks.
    """
    d_head = head_size(d_model, heads)
    per_rank = 3 * d_model // world
    if 3 * d_model % world:
        return [f"3·d_model = {3 * d_model} rows do not split evenly among {world} ranks"]
    lines = []
    for rank in range(world):
        start, stop = rank * per_rank, (rank + 1) * per_rank
        parts = []
        for i, name in enumerate(("W_Q", "W_K", "W_V")):
            lo, hi = max(start, i * d_model), min(stop, (i + 1) * d_model)
            if lo < hi:
                first, last = (lo - i * d_model) / d_head, (hi - i * d_model) / d_head
                span = (
                    f"heads {first:g}-{last - 1:g}"
                    if first.is_integer() and last.is_integer()
                    else (f"features {lo - i * d_model}-{hi - i * d_model - 1} (parts of heads)")
                )
                parts.append(f"{name} {span}")
        lines.append(f"rank {rank}: rows {start}-{stop - 1} = " + ", ".join(parts))
    return lines
