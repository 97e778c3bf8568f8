"""Attention masks.

One convention in the whole course: **True means "this query may attend to this key"**, False means "blocked".
It is the convention of `torch.nn.functional.scaled_dot_product_attention`. `torch.nn.MultiheadAttention` uses the
opposite one (True means "blocked", for both `attn_mask` and `key_padding_mask`); `to_torch_mha_mask` and
`from_torch_mha_mask` convert between the two.
"""

import torch

from ._validate import check_device, check_fits, check_int, check_tensor, fmt_shape


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Mask that lets position i attend to positions 0..i only (no peeking at the future).

    Args:
        q_len: number of query positions.
        k_len: number of key positions. Default: ``q_len``. Queries and keys are aligned at position 0, as with
            `scaled_dot_product_attention(..., is_causal=True)`.
        device: where to create the mask. Default: None (the CPU).

    Shape:
        returns (q_pos, k_pos), bool, True on and below the diagonal.
    """
    q_len = check_int("q_len", q_len)
    k_len = q_len if k_len is None else check_int("k_len", k_len)
    device = check_device("device", device)
    check_fits(q_len * k_len, device, f"a ({q_len}, {k_len}) causal mask")
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()


def with_causal(mask: torch.Tensor | None, q_len: int, k_len: int, device=None) -> torch.Tensor:
    """`mask` with every key after its query blocked too: `mask & causal_mask(q_len, k_len)`, or the causal mask alone.

    Args:
        mask: bool, True = may attend, broadcastable to (..., q_pos, k_pos); None for no other mask.
        q_len, k_len: numbers of query and key positions.
        device: where to create the causal part. Default: the mask's device (the CPU when mask is None).

    Shape:
        mask (..., q_pos, k_pos) or any shape that broadcasts to it; returns the broadcast of mask and (q_pos, k_pos).
    """
    device = mask.device if device is None and mask is not None else device
    future = causal_mask(q_len, k_len, device=device)  # (q_pos, k_pos)
    return future if mask is None else mask & future


def padding_mask(lengths, seq: int | None = None) -> torch.Tensor:
    """Mask that hides the padding at the end of each sequence of a batch.

    Args:
        lengths: true length of each sequence, a list or a 1-D integer tensor.
        seq: padded length. Default: None (the longest length).

    Shape:
        lengths (batch,); returns (batch, k_pos), bool, True for real tokens. Used as a key mask it broadcasts over
        queries: unsqueeze it to (batch, 1, k_pos) or pass it as `key_padding_mask`.
    """
    try:
        lengths = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"lengths must be a list of integers or a 1-D integer tensor, got {lengths!r}") from None
    if lengths.numel() == 0:
        raise ValueError("lengths is empty: give one length per sequence of the batch")
    if lengths.device.type == "meta":
        raise ValueError("lengths is on the meta device, which holds shapes but no values: give the lengths themselves")
    if lengths.ndim != 1 or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(
            f"lengths must be a 1-D list of integers, got shape {fmt_shape(lengths.shape)} and dtype {lengths.dtype}"
        )
    longest = int(lengths.max())
    seq = longest if seq is None else check_int("seq", seq, minimum=0)
    if int(lengths.min()) < 0 or longest > seq:
        raise ValueError(f"every length must lie in 0..seq={seq}, got {lengths.tolist()}")
    check_fits(len(lengths) * seq, lengths.device, f"a ({len(lengths)}, {seq}) padding mask")
    return torch.arange(seq, device=lengths.device) < lengths[:, None]  # (batch, k_pos)


def to_torch_mha_mask(mask: torch.Tensor) -> torch.Tensor:
    """Our mask (True = may attend) -> `nn.MultiheadAttention`'s (True = blocked).

    Args:
        mask: bool, True = may attend.

    Shape:
        mask (any shape); returns the same shape.
    """
    _check_bool(mask)
    return ~mask


def from_torch_mha_mask(mask: torch.Tensor) -> torch.Tensor:
    """`nn.MultiheadAttention`'s boolean mask (True = blocked) -> ours (True = may attend).

    Args:
        mask: bool, True = blocked.

    Shape:
        mask (any shape); returns the same shape.
    """
    _check_bool(mask)
    return ~mask


def combine_masks(
    batch: int,
    heads: int,
    q_len: int,
    k_len: int,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Merge the masks a multi-head layer accepts into one that broadcasts over (batch, heads, q_pos, k_pos).

    Args:
        batch, heads, q_len, k_len: sizes of the attention being masked.
        attn_mask: bool, True = may attend; a size of 1 broadcasts. Default: None.
        key_padding_mask: bool, True = real token. Default: None.

    Shape:
        attn_mask (q_pos, k_pos), (batch, q_pos, k_pos) or (batch, heads, q_pos, k_pos); key_padding_mask
        (batch, k_pos); returns None (nothing masked) or a bool tensor of 4 dimensions, each of size 1 or of the size
        in (batch, heads, q_pos, k_pos).
    """
    parts = []
    if attn_mask is not None:
        _check_bool(attn_mask, "attn_mask")
        layouts = {
            2: ((q_len, k_len), "(q_pos, k_pos)"),
            3: ((batch, q_len, k_len), "(batch, q_pos, k_pos)"),
            4: ((batch, heads, q_len, k_len), "(batch, heads, q_pos, k_pos)"),
        }
        target = layouts.get(attn_mask.ndim, ((),))[0]
        fits = len(target) == attn_mask.ndim and all(m in (1, t) for m, t in zip(attn_mask.shape, target, strict=True))
        if not fits:
            expected = ", ".join(f"{name} = {fmt_shape(shape)}" for shape, name in layouts.values())
            raise ValueError(
                f"attn_mask has shape {fmt_shape(attn_mask.shape)}: expected {expected} (a size of 1 broadcasts)"
            )
        if attn_mask.ndim == 3:
            attn_mask = attn_mask.unsqueeze(1)  # (batch, 1, q_pos, k_pos)
        parts.append(attn_mask)
    if key_padding_mask is not None:
        _check_bool(key_padding_mask, "key_padding_mask")
        if tuple(key_padding_mask.shape) != (batch, k_len):
            raise ValueError(
                f"key_padding_mask has shape {fmt_shape(key_padding_mask.shape)}: expected (batch, k_pos) = "
                f"{fmt_shape((batch, k_len))}"
            )
        parts.append(key_padding_mask[:, None, None, :])  # (batch, 1, 1, k_pos)
    if not parts:
        return None
    mask = parts[0]
    for part in parts[1:]:
        mask = mask & part
    while mask.ndim < 4:
        mask = mask.unsqueeze(0)
    return mask


def _check_bool(mask, name: str = "mask") -> None:
    check_tensor(name, mask, "a boolean torch.Tensor")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean tensor, got {mask.dtype}")
