"""How a head knows where: the position schemes of lesson 09.

Attention by itself has no idea of order: permute the keys and values and every query gets the same answer;
permute the whole input and the output is permuted the same way. Whatever a head knows about "where" comes from
one of these schemes:

    none         nothing: a head sees a bag of tokens (plus what a causal mask lets it count)
    learned      a table of one trained vector per position, added to the token's embedding (BERT, GPT-2)
    sinusoidal   a fixed table of sines and cosines, added the same way (Vaswani et al., 2017)
    rope         no table: each head turns its queries and keys by angles proportional to their positions
                 (rotary position embedding, Su et al., 2021), so that a score depends on the two positions only
                 through their difference m - n

RoPE pairs the features of a query or key, (0, 1), (2, 3), ..., and turns pair i by the angle m * theta_i at
position m, with theta_i = base^(-2i / d_head):

    x'[2i]   = x[2i] cos(m theta_i) - x[2i+1] sin(m theta_i)
    x'[2i+1] = x[2i] sin(m theta_i) + x[2i+1] cos(m theta_i)

`apply_rope` writes this out; `apply_rope_complex` (each pair a complex number, multiplied by e^(i m theta)) and
`rope_matrix` (one block-diagonal rotation matrix per position) compute the same thing in two other ways, so that
each can be checked against the others.
"""

import math
import numbers

import torch
from torch import nn

from ._validate import check_fits, check_float, check_tensor, fmt_shape
from .multihead import MultiHeadAttention

SCHEMES = ("none", "learned", "sinusoidal", "rope")
BASE = 10000.0  # the frequency base of both papers


def _check_even(name: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size % 2:
        raise ValueError(f"{name} must be an even positive integer (features come in sine/cosine pairs), got {size!r}")


def _check_base(base: float) -> None:
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not (math.isfinite(base) and base > 1):
        raise ValueError(
            f"base must be a finite number greater than 1 (the slowest pair turns by base^-1 per position), "
            f"got {base!r}"
        )


def frequencies(d: int, base: float = BASE) -> torch.Tensor:
    """The angle per position of each feature pair, theta_i = base^(-2i / d), from 1 radian down to about 1/base.

    Args:
        d: features (d_model for a sinusoidal table, d_head for RoPE); must be even.
        base: sets the slowest frequency (default: 10000, as in both papers).

    Shape:
        returns (d // 2,) float64.
    """
    _check_even("d", d)
    _check_base(base)
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d // 2,)


def sinusoidal_table(seq: int, d_model: int, base: float = BASE) -> torch.Tensor:
    """Vaswani et al.'s position table: sin(p theta_i) in feature 2i, cos(p theta_i) in feature 2i + 1.

    Args:
        seq: positions 0 .. seq - 1.
        d_model: features per position; must be even.
        base: frequency base (default: 10000).

    Shape:
        returns (seq, d_model) float32.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"seq must be a positive integer, got {seq!r}")
    _check_even("d_model", d_model)
    check_fits(3 * seq * d_model * 8, None, f"a sinusoidal table of (seq {seq}, d_model {d_model}), built in float64")
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * frequencies(d_model, base)  # (seq, d_model // 2)
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (seq, d_model // 2, 2): sine and cosine side by side
    return table.flatten(-2).float()  # (seq, d_model): sin, cos, sin, cos, ...


def _angles(x: torch.Tensor, positions, base: float) -> torch.Tensor:
    """Each position's angle for each pair, checked against x, in float64: (seq, d_head // 2) for positions (seq,),
    (batch, 1, seq, d_head // 2) for positions (batch, seq)."""
    check_tensor("x", x)
    check_float("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., seq, d_head), got shape {fmt_shape(x.shape)}")
    _check_even("d_head (the last dimension of x)", x.shape[-1])
    seq = x.shape[-2]
    positions = torch.arange(seq) if positions is None else torch.as_tensor(positions)
    one_per_sequence = x.ndim == 4 and positions.shape == (x.shape[0], seq)  # a row of positions per sequence
    if (
        (positions.shape != (seq,) and not one_per_sequence)
        or positions.is_floating_point()
        or positions.dtype == (torch.bool)
    ):
        raise ValueError(
            f"positions must be integers of shape (seq,) = ({seq},), one per row of x, or (batch, seq) for x of "
            f"shape (batch, heads, seq, d_head); got "
            f"{'dtype ' + str(positions.dtype) + ', ' if positions.is_floating_point() else ''}"
            f"shape {fmt_shape(positions.shape)}"
        )
    angles = positions.to(x.device, torch.float64)[..., None] * frequencies(x.shape[-1], base).to(x.device)
    return angles[:, None] if one_per_sequence else angles  # (batch, 1, seq, d_head // 2) or (seq, d_head // 2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = BASE) -> torch.Tensor:
    """Turn each feature pair (2i, 2i + 1) of the vector at position m by the angle m * theta_i.

    Args:
        x: queries or keys, one vector per position.
        positions: the position of each row of x (default: 0, 1, ..., seq - 1); one row of positions per
            sequence when the sequences of a batch sit at different positions (a KV cache with left padding).
        base: frequency base (default: 10000).

    Shape:
        x (..., seq, d_head) with d_head even; positions (seq,) integers, or (batch, seq) for x (batch, heads, seq,
        d_head); returns the same shape as x.
    """
    angles = _angles(x, positions, base)  # (seq, d_head // 2), or (batch, 1, seq, d_head // 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., seq, d_head // 2) each: the two features of every pair
    turned = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (..., seq, d_head // 2, 2)
    return turned.flatten(-2)  # (..., seq, d_head): pairs back in place


def apply_rope_complex(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = BASE) -> torch.Tensor:
    """`apply_rope` in complex numbers: pair i is x[2i] + j x[2i+1], multiplied by e^(j m theta_i).

    Args and Shape: as `apply_rope`.
    """
    angles = _angles(x, positions, base)  # (seq, d_head // 2), or (batch, 1, seq, d_head // 2)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())  # (..., seq, d_head // 2)
    turned = pairs * torch.polar(torch.ones_like(angles), angles)  # multiplying by e^(j a) turns by a
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)  # (..., seq, d_head)


def rope_matrix(position: int, d_head: int, base: float = BASE) -> torch.Tensor:
    """The rotation RoPE applies at one position, as a block-diagonal matrix R_m: rotated = R_m @ x.

    Args:
        position: the position m.
        d_head: features per head; must be even.
        base: frequency base (default: 10000).

    Shape:
        returns (d_head, d_head) float64, one 2 x 2 rotation [[cos, -sin], [sin, cos]] per pair on its diagonal.
    """
    if isinstance(position, bool) or not isinstance(position, numbers.Integral):
        raise TypeError(f"position must be an integer, got {position!r} ({type(position).__name__})")
    _check_even("d_head", d_head)
    matrix = torch.zeros(d_head, d_head, dtype=torch.float64)
    for i, theta in enumerate(frequencies(d_head, base).tolist()):
        c, s = math.cos(position * theta), math.sin(position * theta)
        matrix[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return matrix


class SinusoidalPositions(nn.Module):
    """A fixed table of sines and cosines, looked up like `nn.Embedding` (nothing in it is trained).

    Args:
        seq: positions in the table.
        d_model: features per position; must be even.
        base: frequency base (default: 10000).

    Shape:
        positions (...) integers below seq; returns (..., d_model).
    """

    def __init__(self, seq: int, d_model: int, base: float = BASE):
        super().__init__()
        self.seq, self.d_model, self.base = seq, d_model, base
        # a buffer, not a parameter: it moves with .to(device) but is not trained (and not saved: it is recomputed)
        self.register_buffer("table", sinusoidal_table(seq, d_model, base), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        check_tensor("positions", positions)
        if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
            raise TypeError(f"positions must be integers (row numbers of the table), got dtype {positions.dtype}")
        if ((positions < 0) | (positions >= self.seq)).any():
            raise ValueError(
                f"positions must lie in 0..{self.seq - 1} (the table holds {self.seq} positions), got values from "
                f"{int(positions.min())} to {int(positions.max())}"
            )
        return self.table[positions]

    def extra_repr(self) -> str:
        return f"{self.seq}, {self.d_model}, base={self.base:g}"


class RotaryMultiHeadAttention(MultiHeadAttention):
    """`MultiHeadAttention` whose heads turn their queries and keys by their positions (RoPE) before the scores.

    Queries sit at positions 0 .. q_pos - 1 and keys at 0 .. k_pos - 1 (self-attention). Values are not turned:
    they carry what a position says, not where it is.

    Args:
        d_model: features per position, in and out.
        heads: number of heads; d_head = d_model // heads must be even.
        bias: add biases to all projections.
        base: RoPE's frequency base (default: 10000).

    Shape:
        as `MultiHeadAttention`.
    """

    def __init__(self, d_model: int, heads: int, bias: bool = True, base: float = BASE, kv_heads: int | None = None):
        super().__init__(d_model, heads, bias, kv_heads=kv_heads)
        _check_even("d_head = d_model // heads", self.d_head)
        _check_base(base)
        self.base = base

    def turn(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Queries or keys turned by their positions, with this layer's base (`apply_rope`).

        Shape:
            x (batch, heads, seq, d_head); positions (seq,) or (batch, seq), default 0 .. seq - 1; returns x's shape.
        """
        return apply_rope(x, positions, base=self.base)

    def attend(self, q, k, v, mask, causal, need_weights):
        q = self.turn(q)  # (batch, heads, q_pos, d_head): the query at m turned by m theta
        k = self.turn(k)  # (batch, heads, k_pos, d_head): the key at n turned by n theta
        return super().attend(q, k, v, mask, causal, need_weights)

    def extra_repr(self) -> str:
        return f"rope base={self.base:g}"


def position_embedding(scheme: str, seq: int, d_model: int) -> nn.Module | None:
    """What a model adds to its token embeddings for `scheme`: a learned or a fixed table, or nothing.

    Args:
        scheme: one of `SCHEMES`.
        seq: positions in the table.
        d_model: features per position.

    Returns:
        `nn.Embedding(seq, d_model)` for "learned", `SinusoidalPositions` for "sinusoidal", None for "none" and
        "rope" (RoPE works inside the attention instead).
    """
    check_scheme(scheme)
    if scheme == "learned":
        return nn.Embedding(seq, d_model)  # learned: one trained vector per position
    if scheme == "sinusoidal":
        return SinusoidalPositions(seq, d_model)
    return None


def attention_layer(scheme: str, d_model: int, heads: int, kv_heads: int | None = None) -> MultiHeadAttention:
    """The attention layer for `scheme`: `RotaryMultiHeadAttention` for "rope", `MultiHeadAttention` otherwise.

    Args:
        scheme: one of `SCHEMES`.
        d_model: features per position.
        heads: attention heads.
        kv_heads: key/value heads shared by the query heads (default: None, one per query head).

    Returns:
        the layer.
    """
    check_scheme(scheme)
    if scheme == "rope":
        return RotaryMultiHeadAttention(d_model, heads, kv_heads=kv_heads)
    return MultiHeadAttention(d_model, heads, kv_heads=kv_heads)


def check_scheme(scheme: str) -> None:
    """A clear error for a scheme name that is not one of `SCHEMES`."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown position scheme {scheme!r}: expected one of {list(SCHEMES)}")
