"""Split the model's features into heads, and merge them back.

A projection gives every position one vector of d_model features. With `heads` heads, features
[h * d_head, (h + 1) * d_head) belong to head h. Splitting is a `view` that cuts the last dimension in two (no data
moves) followed by a transpose that brings heads next to batch, so that one batched matrix product serves all
heads. Merging undoes both steps in reverse order, with `reshape`: gluing heads and d_head back together after the
transpose cannot be a view, so it copies.

With grouped-query attention (lesson 07) there are fewer key/value heads than query heads: `repeat_kv` hands each
query head the keys or values of its group.
"""

import torch

from ._validate import check_rank, check_tensor, head_size


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, seq, d_model) -> (batch, heads, seq, d_head), head h taking features h*d_head .. (h+1)*d_head - 1.

    Args:
        x: one vector of d_model features per position.
        heads: number of heads; must divide d_model.

    Shape:
        x (batch, seq, d_model); returns (batch, heads, seq, d_head) with d_head = d_model // heads.
    """
    check_tensor("x", x)
    check_rank("x", x, (3,), "(batch, seq, d_model)")
    batch, seq, d_model = x.shape
    d_head = head_size(d_model, heads)
    # view can always cut one dimension in two, whatever the strides (even the non-contiguous q of a chunk)
    x = x.view(batch, seq, heads, d_head)  # (batch, seq, heads, d_head): cut each vector into heads pieces
    return x.transpose(1, 2)  # (batch, heads, seq, d_head)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, d_head) -> (batch, seq, heads * d_head): the heads' outputs concatenated per position.

    Args:
        x: one vector of d_head features per head and position.

    Shape:
        x (batch, heads, seq, d_head); returns (batch, seq, d_model) with d_model = heads * d_head.
    """
    check_tensor("x", x)
    check_rank("x", x, (4,), "(batch, heads, seq, d_head)")
    batch, heads, seq, d_head = x.shape
    x = x.transpose(1, 2)  # (batch, seq, heads, d_head)
    return x.reshape(batch, seq, heads * d_head)  # (batch, seq, d_model): copies, since the transpose made gaps


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """(batch, kv_heads, seq, d_head) -> (batch, kv_heads * group, seq, d_head): each key/value head repeated `group`
    times in place, so that query head h reads key/value head h // group.

    Args:
        x: the keys (or values) of the kv_heads key/value heads.
        group: query heads per key/value head, heads // kv_heads.

    Shape:
        x (batch, kv_heads, seq, d_head); returns (batch, heads, seq, d_head) with heads = kv_heads * group, a copy.
    """
    check_tensor("x", x)
    check_rank("x", x, (4,), "(batch, kv_heads, seq, d_head)")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValueError(f"group must be a positive integer (query heads per key/value head), got {group!r}")
    # heads 0..group-1 read kv head 0, the next group kv head 1, ...: repeat_interleave, not repeat (which would
    # hand head h the kv head h % kv_heads)
    return x.repeat_interleave(group, dim=1)  # (batch, kv_heads * group, seq, d_head)
