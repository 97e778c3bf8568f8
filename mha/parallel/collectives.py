"""The two communication steps of a head-parallel layer, as autograd functions (Megatron-LM's f and g).

Every rank starts from the same input and must end with the same output. In between, each computes its own heads.

    copy_to_ranks(x)     forward: nothing to do, every rank already has x.
                         backward: x fed every rank's heads, so its gradient is the SUM of every rank's part:
                         one all-reduce.
    sum_over_ranks(y)    forward: the partial outputs of all ranks, summed: one all-reduce.
                         backward: the output is the same on every rank and so is its gradient; each rank's
                         partial output receives it unchanged.

One all-reduce forward, one backward. Shoeybi et al. (2019, Megatron-LM) call `copy_to_ranks` f (identity forward,
all-reduce backward) and `sum_over_ranks` g (all-reduce forward, identity backward).
With a single process (no process group, or a group of one) both are the identity.
"""

import torch
import torch.distributed as dist


def world_size(group=None) -> int:
    """Ranks in `group` (the default group when None); 1 when torch.distributed is not initialised."""
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def _all_reduce(x: torch.Tensor, group) -> torch.Tensor:
    x = x.contiguous().clone()  # the collective works in place; never on the caller's tensor
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        return _all_reduce(x, group) if world_size(group) > 1 else x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _CopyToRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (_all_reduce(grad, ctx.group) if world_size(ctx.group) > 1 else grad), None


def sum_over_ranks(x: torch.Tensor, group=None) -> torch.Tensor:
    """The sum of `x` over all ranks of `group`, on every rank (all-reduce); gradient passed through unchanged.

    Args:
        x: this rank's partial result.
        group: a process group (default: the default group).

    Shape:
        x any shape, the same on every rank; returns the same shape.
    """
    return _SumOverRanks.apply(x, group)


def copy_to_ranks(x: torch.Tensor, group=None) -> torch.Tensor:
    """`x` unchanged; in the backward pass, its gradient summed over all ranks of `group` (all-reduce).

    Args:
        x: an input every rank holds whole.
        group: a process group (default: the default group).

    Shape:
        x any shape; returns the same shape.
    """
    return _CopyToRanks.apply(x, group)
