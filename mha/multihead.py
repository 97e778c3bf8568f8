"""Multi-head attention, in named versions that compute the same function.

- `AttentionHead`: one head, with its own W_Q, W_K, W_V (d_model -> d_head each).
- `MultiHeadAttentionLoop`: a list of independent heads, run one after the other; outputs concatenated, then W_O.
- `MultiHeadAttention`: all heads at once: one projection to Q, K, V for every head, split into heads, one batched
  matrix product, merge, W_O. Same parameters as the loop (a head's W_Q is a slice of the big one).
- `MultiHeadAttentionEinsum`: the batched version written with `torch.einsum`, the index pattern spelled out.
- `MultiHeadAttentionSDPA`: the batched version with its attention core handed to PyTorch's fused kernel.

`MultiHeadAttention(d_model, heads, kv_heads=...)` shares keys and values between query heads (lesson 07):
`kv_heads == heads` is multi-head attention, `kv_heads == 1` multi-query attention, anything between grouped-query
attention. `parameter_count` gives its number of parameters as a formula.

All take batch-first tensors and return `(output, weights)` like `torch.nn.MultiheadAttention`; masks follow the
course convention (True = may attend), the opposite of `nn.MultiheadAttention`'s.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import (
    check_fits,
    check_float,
    check_rank,
    check_same_device,
    check_tensor,
    diagnosed_by_caller,
    fmt_shape,
    head_size,
    kv_group_size,
    warn_if_not_finite,
)
from .attention import attention, masked_softmax, sdpa
from .heads import merge_heads, repeat_kv, split_heads
from .masks import combine_masks, with_causal


class AttentionHead(nn.Module):
    """One attention head: project to queries, keys and values of width d_head, then attend.

    Args:
        d_model: features per position coming in.
        d_head: width of this head's queries, keys and values.
        bias: add a bias to the three projections. Default: True.

    Shape:
        query (batch, q_pos, d_model), key and value (batch, k_pos, d_model), mask broadcastable to
        (batch, q_pos, k_pos); returns output (batch, q_pos, d_head) and weights (batch, q_pos, k_pos).
    """

    def __init__(self, d_model: int, d_head: int, bias: bool = True):
        super().__init__()
        head_size(d_model, 1)  # d_model a positive integer
        head_size(d_head, 1)
        _check_parameters_fit(3 * (d_model + 1) * d_head, f"one head of d_model={d_model}, d_head={d_head}")
        self.q_proj = nn.Linear(d_model, d_head, bias=bias)  # W_Q: what this head looks for
        self.k_proj = nn.Linear(d_model, d_head, bias=bias)  # W_K: what it matches against
        self.v_proj = nn.Linear(d_model, d_head, bias=bias)  # W_V: what it passes on

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project, then attend (see `mha.attention.attention` for mask and causal; defaults None and False)."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            _check_input(self, name, x)
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)  # (batch, seq, d_head) each
        with diagnosed_by_caller():
            out, weights = attention(q, k, v, mask, causal)
        _diagnose(self, out, query, key, value, q, k)
        return out, weights


class MultiHeadAttentionLoop(nn.Module):
    """Multi-head attention as a loop over independent heads, concatenated and projected by W_O.

    Args:
        d_model: features per position, in and out.
        heads: number of heads; each gets d_head = d_model // heads features.
        bias: add biases to all projections. Default: True.

    Shape:
        see `MultiHeadAttention.forward`, which takes the same arguments.
    """

    def __init__(self, d_model: int, heads: int, bias: bool = True):
        super().__init__()
        self.d_model, self.heads, self.d_head = d_model, heads, head_size(d_model, heads)
        _check_parameters_fit(4 * (d_model + 1) * d_model, f"a layer of d_model={d_model}")
        self.attention_heads = nn.ModuleList(AttentionHead(d_model, self.d_head, bias) for _ in range(heads))
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        average_weights: bool = True,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One head after the other, then W_O: the arguments and results of `MultiHeadAttention.forward`."""
        query, key, value, mask = _prepare(self, query, key, value, attn_mask, key_padding_mask)
        keep = None if head_mask is None else _check_head_mask(head_mask, (query.shape[0], self.heads), query.dtype)
        outs, weights = [], []
        with diagnosed_by_caller():
            for h, head in enumerate(self.attention_heads):
                mask_h = None if mask is None else mask[:, h if mask.shape[1] > 1 else 0]  # (batch, q_pos, k_pos)
                out, w = head(query, key, value, mask_h, causal)  # (batch, q_pos, d_head), (batch, q_pos, k_pos)
                outs.append(out if keep is None else out * keep[:, h, None, None])
                weights.append(w)
        concat = torch.cat(outs, dim=-1)  # (batch, q_pos, d_model): head h in features h*d_head..(h+1)*d_head-1
        out = self.out_proj(concat)
        _diagnose(self, out, query, key, value, head_mask=head_mask)
        return out, _pack_weights(torch.stack(weights, dim=1), need_weights, average_weights)

    @classmethod
    def from_batched(cls, mha: "MultiHeadAttention") -> "MultiHeadAttentionLoop":
        """A loop version computing exactly what `mha` computes: head h gets rows h*d_head.. of each projection."""
        if not isinstance(mha, MultiHeadAttention):
            raise TypeError(f"from_batched takes a mha.MultiHeadAttention, got {type(mha).__name__}")
        bias = mha.in_proj.bias is not None
        loop = cls(mha.d_model, mha.heads, bias).to(mha.in_proj.weight)
        sizes = mha.projection_sizes()
        w_q, w_k, w_v = mha.in_proj.weight.detach().split(sizes)  # (d_model or kv_heads * d_head, d_model) each
        b_q, b_k, b_v = mha.in_proj.bias.detach().split(sizes) if bias else (None, None, None)
        group = mha.heads // mha.kv_heads  # with shared keys and values, head h copies those of its group
        with torch.no_grad():
            for h, head in enumerate(loop.attention_heads):
                rows = slice(h * mha.d_head, (h + 1) * mha.d_head)
                kv_rows = slice((h // group) * mha.d_head, (h // group + 1) * mha.d_head)
                for proj, w, b, r in (
                    (head.q_proj, w_q, b_q, rows),
                    (head.k_proj, w_k, b_k, kv_rows),
                    (head.v_proj, w_v, b_v, kv_rows),
                ):
                    proj.weight.copy_(w[r])
                    if bias:
                        proj.bias.copy_(b[r])
            loop.out_proj.load_state_dict(mha.out_proj.state_dict())
        return loop


class MultiHeadAttention(nn.Module):
    """Multi-head attention with all heads computed at once.

    Args:
        d_model: features per position, in and out.
        heads: number of heads; each gets d_head = d_model // heads features.
        bias: add biases to all projections. Default: True.
        kv_heads: number of key/value heads; query head h reads the keys and values of head
            h // (heads // kv_heads). 1 is multi-query attention; must divide heads. Default: heads.

    Shape:
        see `forward`.
    """

    def __init__(self, d_model: int, heads: int, bias: bool = True, kv_heads: int | None = None):
        super().__init__()
        self.d_model, self.heads, self.d_head = d_model, heads, head_size(d_model, heads)
        self.kv_heads = heads if kv_heads is None else heads // kv_group_size(heads, kv_heads)
        _check_parameters_fit(parameter_count(d_model, heads, self.kv_heads, bias), f"a layer of d_model={d_model}")
        # W_Q, W_K, W_V of every head stacked in one matrix, rows [W_Q; W_K; W_V], as nn.MultiheadAttention does;
        # with kv_heads < heads, W_K and W_V have kv_heads * d_head rows each.
        self.in_proj = nn.Linear(d_model, sum(self.projection_sizes()), bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O

    def projection_sizes(self) -> list[int]:
        """Rows of W_Q, W_K and W_V in `in_proj`: [d_model, kv_heads * d_head, kv_heads * d_head]."""
        return [self.d_model, self.kv_heads * self.d_head, self.kv_heads * self.d_head]

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        average_weights: bool = True,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from each query position to the key positions, in every head.

        Args:
            query: the positions that ask.
            key: the positions asked. Default: None (``query``: self-attention).
            value: what the asked positions pass on. Default: None (``key``).
            key_padding_mask: bool, True = real token, False = padding to ignore. Default: None.
            attn_mask: bool, True = may attend. Default: None.
            causal: hide every key that comes after its query. Default: False.
            need_weights: also return the attention weights. Default: False.
            average_weights: average the weights over heads (as nn.MultiheadAttention does by default).
                Default: True.
            head_mask: multiply each head's output by this before W_O; 0 removes a head (ablation). Default: None.

        Shape:
            query (batch, q_pos, d_model); key, value (batch, k_pos, d_model);
            key_padding_mask (batch, k_pos); attn_mask (q_pos, k_pos), (batch, q_pos, k_pos) or
            (batch, heads, q_pos, k_pos); head_mask (heads,) or (batch, heads).
            Returns output (batch, q_pos, d_model) and weights: None, (batch, q_pos, k_pos) averaged, or
            (batch, heads, q_pos, k_pos) per head.
        """
        query, key, value, mask = _prepare(self, query, key, value, attn_mask, key_padding_mask)
        q, k, v = self.project(query, key, value)  # (batch, seq, d_model), k and v (batch, seq, kv_heads * d_head)
        q = split_heads(q, self.heads)  # (batch, heads, seq, d_head)
        k, v = split_heads(k, self.kv_heads), split_heads(v, self.kv_heads)  # (batch, kv_heads, seq, d_head)
        if self.kv_heads != self.heads:  # each query head reads its group's keys and values
            group = self.heads // self.kv_heads
            k, v = repeat_kv(k, group), repeat_kv(v, group)  # (batch, heads, seq, d_head)
        with diagnosed_by_caller():  # a NaN is named below, in the layer's terms
            out, weights = self.attend(q, k, v, mask, causal, need_weights)  # out (batch, heads, q_pos, d_head)
        if head_mask is not None:
            out = out * _check_head_mask(head_mask, out.shape[:2], out.dtype)[..., None, None]
        out = self.out_proj(merge_heads(out))  # (batch, q_pos, d_model)
        _diagnose(self, out, query, key, value, q, k, head_mask)
        return out, _pack_weights(weights, need_weights, average_weights)

    def project(self, query, key, value):
        """Queries, keys and values of all heads side by side: one matrix product for self-attention."""
        sizes = self.projection_sizes()
        if key is query and value is query:
            return self.in_proj(query).split(sizes, dim=-1)  # (batch, seq, sum(sizes)) -> q, k, v
        w_q, w_k, w_v = self.in_proj.weight.split(sizes)
        b_q, b_k, b_v = self.in_proj.bias.split(sizes) if self.in_proj.bias is not None else (None, None, None)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def attend(self, q, k, v, mask, causal, need_weights):
        """The attention core, for all heads in one batched product: the one place the named versions differ.

        Every version reads `need_weights` the same way: it returns the weights when asked, None otherwise.

        Shape:
            q (batch, heads, q_pos, d_head), k and v (batch, heads, k_pos, d_head), mask broadcastable to
            (batch, heads, q_pos, k_pos); returns output (batch, heads, q_pos, d_head) and weights
            (batch, heads, q_pos, k_pos) or None.
        """
        out, weights = attention(q, k, v, mask, causal)
        return out, weights if need_weights else None

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of a `torch.nn.MultiheadAttention` (its weights, not its mask convention: ours is True = attend)."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"from_torch takes a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "from_torch supports nn.MultiheadAttention with kdim = vdim = embed_dim, "
                "add_bias_kv=False and add_zero_attn=False"
            )
        bias = module.in_proj_bias is not None
        ours = cls(module.embed_dim, module.num_heads, bias).to(module.in_proj_weight)
        with torch.no_grad():
            ours.in_proj.weight.copy_(module.in_proj_weight)  # (3 * d_model, d_model), same layout: no transpose
            ours.out_proj.weight.copy_(module.out_proj.weight)
            if bias:
                ours.in_proj.bias.copy_(module.in_proj_bias)
                ours.out_proj.bias.copy_(module.out_proj.bias)
        return ours


def parameter_count(d_model: int, heads: int, kv_heads: int | None = None, bias: bool = True) -> int:
    """Parameters of `MultiHeadAttention(d_model, heads, bias, kv_heads)`, by formula.

    W_Q and W_O are d_model x d_model; W_K and W_V are (kv_heads * d_head) x d_model each; with biases, one number
    per output row: 2 * (d_model + kv_heads * d_head) * (d_model + bias). With kv_heads = heads this is
    4 * d_model * (d_model + bias), whatever the number of heads.

    Args:
        d_model: features per position.
        heads: query heads.
        kv_heads: key/value heads (default: heads).
        bias: whether the projections have biases.

    Returns:
        the number of parameters, an int.
    """
    d_head = head_size(d_model, heads)
    kv_heads = heads if kv_heads is None else heads // kv_group_size(heads, kv_heads)
    return 2 * (d_model + kv_heads * d_head) * (d_model + int(bias))


class MultiHeadAttentionEinsum(MultiHeadAttention):
    """`MultiHeadAttention` with its attention core written as `torch.einsum` index patterns.

    The same computation as `attention`, with every dimension named: b = batch, h = heads, q = q_pos, k = k_pos,
    d = d_head. Summing over d gives the scores; summing over k mixes the values.

    Args and Shape: as `MultiHeadAttention`.
    """

    def attend(self, q, k, v, mask, causal, need_weights):
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])  # (batch, heads, q_pos, k_pos)
        if causal:
            mask = with_causal(mask, q.shape[-2], k.shape[-2], q.device)
        weights = masked_softmax(scores, mask)
        out = torch.einsum("bhqk,bhkd->bhqd", weights, v)  # (batch, heads, q_pos, d_head)
        return out, weights if need_weights else None


class MultiHeadAttentionSDPA(MultiHeadAttention):
    """`MultiHeadAttention` whose attention core is `torch.nn.functional.scaled_dot_product_attention`.

    The fused kernel never builds the (q_pos, k_pos) weight matrix, which is what makes it fast and lean. When you ask
    for the weights (`need_weights=True`) there is nothing to return, so this module computes them with the
    hand-written core instead, as nn.MultiheadAttention does.

    Args and Shape: as `MultiHeadAttention`.
    """

    def attend(self, q, k, v, mask, causal, need_weights):
        if need_weights:
            return attention(q, k, v, mask, causal)
        return sdpa(q, k, v, mask, causal), None


def _check_input(module, name, x) -> None:
    """A layer's input: a float tensor of (batch, seq, d_model), in the dtype and on the device of its weights."""
    check_tensor(name, x)
    check_float(name, x)
    check_rank(name, x, (3,), "(batch, seq, d_model)")
    d_model = getattr(module, "d_model", None) or module.q_proj.in_features
    if x.shape[-1] != d_model:
        raise ValueError(
            f"{name} has shape {fmt_shape(x.shape)}: expected (batch, seq, d_model) with d_model={d_model}"
        )
    weight = next(module.parameters(), None)
    if weight is None:
        return
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the layer's weights are {weight.dtype}: convert one to the other, "
            f"e.g. {name}.to({weight.dtype}) or layer.to({x.dtype})"
        )
    if x.device != weight.device:
        raise ValueError(
            f"{name} is on {x.device} but the layer's weights are on {weight.device}: move one to the other, "
            f"e.g. {name}.to({str(weight.device)!r}) or layer.to({str(x.device)!r})"
        )


def _diagnose(module, out, query, key, value, q=None, k=None, head_mask=None) -> None:
    """Warn when the layer's output is not finite: the input or weight that holds NaN, or the scores' overflow."""
    named = [("query", query), ("key", key), ("value", value), ("head_mask", head_mask)]
    warn_if_not_finite(out, [*named, *module.named_parameters()], q, k, where=type(module).__name__, stacklevel=5)


def _prepare(module, query, key, value, attn_mask, key_padding_mask):
    """Default key and value to query, check every shape, dtype and device, and merge the masks."""
    key = query if key is None else key
    value = key if value is None else value
    for name, x in (("query", query), ("key", key), ("value", value)):
        _check_input(module, name, x)
    for name, mask in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask)):
        if isinstance(mask, torch.Tensor):
            check_same_device(("query", query), (name, mask))
    if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
        raise ValueError(
            f"query {fmt_shape(query.shape)}, key {fmt_shape(key.shape)} and value "
            f"{fmt_shape(value.shape)} must share batch, and key and value must share k_pos"
        )
    batch, q_len, k_len = query.shape[0], query.shape[1], key.shape[1]
    mask = combine_masks(batch, module.heads, q_len, k_len, attn_mask, key_padding_mask)
    return query, key, value, mask


def _check_parameters_fit(numbers: int, what: str) -> None:
    """Refuse, before allocating, a layer whose float32 parameters would not fit in this machine's memory."""
    check_fits(4 * numbers, None, f"the float32 parameters of {what}")


def _pack_weights(weights, need_weights, average_weights):
    """(batch, heads, q_pos, k_pos) -> what the caller asked for."""
    if not need_weights:
        return None
    return weights.mean(dim=1) if average_weights else weights


def _check_head_mask(head_mask, batch_heads, dtype):
    """head_mask (heads,) or (batch, heads) -> (batch or 1, heads), in the output's dtype."""
    batch, heads = batch_heads
    check_tensor("head_mask", head_mask)
    if head_mask.shape not in ((heads,), (batch, heads)):
        raise ValueError(
            f"head_mask has shape {fmt_shape(head_mask.shape)}: expected (heads,) = ({heads},) "
            f"or (batch, heads) = {fmt_shape((batch, heads))}"
        )
    return head_mask.to(dtype).reshape(-1, heads)
