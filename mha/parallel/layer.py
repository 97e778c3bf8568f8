"""One rank's share of a multi-head attention layer: its own heads, and one all-reduce.

Lesson 03 showed that concatenate-then-project is a sum over heads:

    Concat(o_1, ..., o_H) W_Oᵀ + b_O  =  Σ_h o_h W_O,hᵀ + b_O

Group the heads by rank and the sum splits into one partial output per rank. So rank r computes attention for its
heads alone (its rows of W_Q, W_K, W_V), multiplies their concatenation by its column block of W_O, and one
all-reduce adds the partial outputs of all ranks. The bias b_O is added once, after the sum.
"""

import torch
from torch import nn

from .._validate import fmt_shape, head_size
from ..attention import attention
from ..heads import merge_heads, split_heads
from ..multihead import _prepare
from .collectives import copy_to_ranks, sum_over_ranks, world_size
from .shard import KEYS, check_weights_dict, head_split, kv_heads_in, shard, weights_of


class HeadParallelAttention(nn.Module):
    """Rank `rank`'s heads of a multi-head attention layer split by heads across `world` ranks.

    Args:
        d_model: features per position, in and out.
        heads: query heads of the whole layer; rank r holds heads r·heads/world to (r+1)·heads/world − 1.
        world: number of ranks (default 1).
        rank: this rank (default 0).
        kv_heads: K/V heads of the whole layer (default: heads). Fewer than heads is grouped-query attention; a
            K/V head is held by every rank whose query heads read it.
        bias: add biases to all projections (default True).
        group: the process group of the `world` ranks (default: torch.distributed's default group).

    Shape:
        see `forward`.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        world: int = 1,
        rank: int = 0,
        kv_heads: int | None = None,
        bias: bool = True,
        group=None,
    ):
        super().__init__()
        self.d_model, self.heads, self.d_head = d_model, heads, head_size(d_model, heads)
        self.split = head_split(heads, world, kv_heads, self.d_head)
        self.split.heads_of(rank)  # checks the rank
        self.world, self.rank, self.kv_heads, self.group = world, rank, self.split.kv_heads, group
        features = self.split.heads_per_rank * self.d_head
        kv_features = len(self.split.kv_heads_of(rank)) * self.d_head
        self.q_proj = nn.Linear(d_model, features, bias=bias)  # this rank's rows of W_Q
        self.k_proj = nn.Linear(d_model, kv_features, bias=bias)  # ... of W_K
        self.v_proj = nn.Linear(d_model, kv_features, bias=bias)  # ... of W_V
        self.out_proj = nn.Linear(features, d_model, bias=False)  # its column block of W_O
        self.out_bias = nn.Parameter(torch.zeros(d_model)) if bias else None  # b_O whole, added once
        self.register_buffer("kv_index", torch.tensor(self.split.kv_index(rank)), persistent=False)

    @classmethod
    def from_weights(
        cls, weights: dict, heads: int, world: int = 1, rank: int = 0, kv_heads: int | None = None, group=None
    ) -> "HeadParallelAttention":
        """Rank `rank`'s share of the layer whose weights are `weights` (a dict of `mha.parallel.shard.KEYS`)."""
        check_weights_dict(weights)
        d_model = weights["W_Q"].shape[-1]
        if weights["W_Q"].shape[0] != d_model:
            raise ValueError(f"W_Q has shape {fmt_shape(weights['W_Q'].shape)}: expected (d_model, d_model)")
        mine = shard(weights, heads, world, rank, kv_heads)
        bias = mine["b_Q"] is not None
        layer = cls(d_model, heads, world, rank, kv_heads, bias, group).to(weights["W_Q"])
        layer.load_shard(mine)
        return layer

    @classmethod
    def from_module(cls, module, world: int = 1, rank: int = 0, group=None) -> "HeadParallelAttention":
        """Rank `rank`'s share of an existing `mha.MultiHeadAttention`, grouped-query ones included (its weights are
        copied, not shared)."""
        weights = weights_of(module)
        return cls.from_weights(weights, module.heads, world, rank, kv_heads_in(weights, module.heads), group)

    def load_shard(self, mine: dict) -> None:
        """Copy this rank's slices (a dict of `KEYS`, as `mha.parallel.shard.shard` returns) into the layer."""
        targets = {
            "W_Q": self.q_proj.weight, "b_Q": self.q_proj.bias, "W_K": self.k_proj.weight, "b_K": self.k_proj.bias,
            "W_V": self.v_proj.weight, "b_V": self.v_proj.bias, "W_O": self.out_proj.weight, "b_O": self.out_bias,
        }  # fmt: skip
        check_weights_dict(mine, "mine")
        with torch.no_grad():
            for key, target in targets.items():
                if target is None:
                    continue
                if mine[key] is None:
                    raise ValueError(f"mine[{key!r}] is None, but this layer has biases: expected a tensor")
                if tuple(mine[key].shape) != tuple(target.shape):
                    raise ValueError(
                        f"{key} for rank {self.rank} of {self.world} has shape {fmt_shape(mine[key].shape)}, "
                        f"expected {fmt_shape(target.shape)}"
                    )
                target.copy_(mine[key])

    def shard_weights(self, grad: bool = False) -> dict:
        """This rank's slices as a dict of `KEYS` (detached copies); with grad=True, their gradients instead."""

        def take(p):
            if p is None:
                return None
            t = p.grad if grad else p
            return None if t is None else t.detach().clone()

        params = (self.q_proj.weight, self.q_proj.bias, self.k_proj.weight, self.k_proj.bias,
                  self.v_proj.weight, self.v_proj.bias, self.out_proj.weight, self.out_bias)  # fmt: skip
        return dict(zip(KEYS, (take(p) for p in params)))

    def partial(
        self,
        query,
        key=None,
        value=None,
        *,
        key_padding_mask=None,
        attn_mask=None,
        causal=False,
        need_weights=False,
    ):
        """This rank's partial output: its heads' attention, concatenated, times its block of W_O. No bias.

        Summing the partial outputs of all ranks and adding b_O gives the layer's output: that is what `forward`
        does with one all-reduce, and what you can do by hand in one process.

        Args:
            query, key, value, key_padding_mask, attn_mask, causal: as in `mha.MultiHeadAttention.forward`.
            need_weights: also return the attention weights of this rank's heads.

        Shape:
            query (batch, q_pos, d_model); key, value (batch, k_pos, d_model); returns the partial output
            (batch, q_pos, d_model) and the weights: None, or (batch, heads/world, q_pos, k_pos).
        """
        query, key, value, mask = _prepare(self, query, key, value, attn_mask, key_padding_mask)
        if mask is not None and mask.shape[1] > 1:  # a mask per head: keep this rank's heads
            mine = self.split.heads_of(self.rank)
            mask = mask[:, mine.start : mine.stop]
        q = split_heads(self.q_proj(query), self.split.heads_per_rank)  # (batch, heads/world, q_pos, d_head)
        kv_here = len(self.split.kv_heads_of(self.rank))
        k = split_heads(self.k_proj(key), kv_here)  # (batch, kv heads here, k_pos, d_head)
        v = split_heads(self.v_proj(value), kv_here)
        if kv_here != self.split.heads_per_rank:  # grouped-query: each query head reads its group's K/V head
            k = k.index_select(1, self.kv_index)  # (batch, heads/world, k_pos, d_head)
            v = v.index_select(1, self.kv_index)
        out, weights = attention(q, k, v, mask, causal)  # (batch, heads/world, q_pos, d_head)
        partial = self.out_proj(merge_heads(out))  # (batch, q_pos, d_model): this rank's share of the sum
        return partial, (weights if need_weights else None)

    def forward(
        self,
        query,
        key=None,
        value=None,
        *,
        key_padding_mask=None,
        attn_mask=None,
        causal=False,
        need_weights=False,
    ):
        """The whole layer's output, on every rank: this rank's partial output, summed over ranks, plus b_O.

        Every rank must call it with the same inputs. With world > 1 it needs torch.distributed initialised (see
        `mha.parallel.launch`); for a single process, sum `partial` by hand instead.

        Args:
            as in `partial`.

        Shape:
            as in `partial`; the output is the layer's, (batch, q_pos, d_model), the same on every rank.
        """
        if self.world > 1 and world_size(self.group) != self.world:
            raise RuntimeError(
                f"this is rank {self.rank} of a {self.world}-way split, but torch.distributed has "
                f"{world_size(self.group)} rank(s): start {self.world} processes (mha.parallel.launch.run, or "
                f"torchrun --nproc-per-node {self.world}), or, in one process, sum every rank's .partial() yourself"
            )
        key = query if key is None else key
        value = key if value is None else value
        # each distinct input enters once, so that its gradient is summed over ranks once
        q_in = copy_to_ranks(query, self.group)
        k_in = q_in if key is query else copy_to_ranks(key, self.group)
        v_in = q_in if value is query else k_in if value is key else copy_to_ranks(value, self.group)
        partial, weights = self.partial(
            q_in,
            k_in,
            v_in,
            key_padding_mask=key_padding_mask,
            attn_mask=attn_mask,
            causal=causal,
            need_weights=need_weights,
        )
        out = sum_over_ranks(partial, self.group)  # one all-reduce: (batch, q_pos, d_model)
        if self.out_bias is not None:
            out = out + self.out_bias
        return out, weights

    def extra_repr(self) -> str:
        def span(r: range) -> str:
            return f"{r.start}" if len(r) == 1 else f"{r.start}-{r.stop - 1}"

        mine, kv = self.split.heads_of(self.rank), self.split.kv_heads_of(self.rank)
        return (
            f"rank {self.rank} of {self.world}: heads {span(mine)} of {self.heads}, "
            f"K/V heads {span(kv)} of {self.kv_heads}"
        )
