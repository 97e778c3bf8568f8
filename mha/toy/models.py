"""The smallest model in which attention is the whole story: embeddings, one attention layer, linear readouts.

    x      = token_embedding(tokens) + position_embedding        (batch, seq, d_model)
    x      = x + MultiHeadAttention(x, causal)                   the only place positions exchange information
    logits = readout_r(x), one linear readout per relationship   (batch, seq, relations, vocab)

No MLP, no normalisation: whatever the model can do with other positions, its attention does. The number of heads
changes how d_model is split, not the number of parameters. One layer unless asked (`layers`): lesson 02 stacks
attention layers, each reading what the one before wrote into the residual, to ask whether depth can stand in
for heads.

How positions are told apart is a choice (`mha.positions`, lesson 09): a learned table (the default), a fixed
sinusoidal table, none, or RoPE, which adds nothing to x and turns the queries and keys inside each head instead.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .._portable import TRAINING_DTYPE, seeded
from .._validate import check_rank, check_tensor, fmt_shape, head_size, kv_group_size
from ..multihead import MultiHeadAttention
from ..positions import attention_layer, check_scheme, position_embedding


@dataclass(frozen=True)
class AttentionOnlyConfig:
    """Sizes of an `AttentionOnlyModel`.

    Args:
        vocab: number of distinct tokens (in and out).
        seq: longest sequence; one learned position embedding per position.
        d_model: features per position.
        heads: attention heads; each gets d_head = d_model // heads features.
        relations: number of readouts, one per relationship the task asks about.
        layers: attention layers, one after the other, each with its residual (default: 1).
        kv_heads: key/value heads shared by the query heads (default: heads, plain multi-head attention; lesson 07).
        positions: how positions are told apart: "learned" (default), "sinusoidal", "rope" or "none".
    """

    vocab: int = 64
    seq: int = 32
    d_model: int = 64
    heads: int = 4
    relations: int = 3
    layers: int = 1
    kv_heads: int | None = None
    positions: str = "learned"

    def __post_init__(self):
        check_scheme(self.positions)
        for name in ("vocab", "seq", "relations", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        head_size(self.d_model, self.heads)  # raises unless heads divides d_model
        if self.kv_heads is not None:
            kv_group_size(self.heads, self.kv_heads)  # raises unless kv_heads divides heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads


class AttentionOnlyModel(nn.Module):
    """Token and position embeddings, causal multi-head attention with a residual, one readout per relation.

    Args:
        config: the sizes; one attention layer unless config.layers says more.

    Shape:
        tokens (batch, seq) int64 with seq <= config.seq; returns logits (batch, seq, relations, vocab).
    """

    def __init__(self, config: AttentionOnlyConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.d_model)
        # learned: nn.Embedding(seq, d_model), where a token sits; sinusoidal: a fixed table; rope and none: None
        self.position_embedding = position_embedding(config.positions, config.seq, config.d_model)
        self.attention = attention_layer(config.positions, config.d_model, config.heads, config.kv_heads)  # the first
        self.readouts = nn.ModuleList(nn.Linear(config.d_model, config.vocab) for _ in range(config.relations))
        if config.layers > 1:  # made last, so that a one-layer model starts from the same weights as it always did
            self.later_layers = nn.ModuleList(
                attention_layer(config.positions, config.d_model, config.heads, config.kv_heads)
                for _ in range(config.layers - 1)
            )

    @property
    def layers(self) -> list[MultiHeadAttention]:
        """The attention layers, first to last."""
        return [self.attention, *getattr(self, "later_layers", [])]

    def forward(
        self,
        tokens: torch.Tensor,
        need_weights: bool = False,
        head_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ):
        """Logits for every relationship at every position; with `need_weights`, also each head's attention.

        Args:
            tokens: token ids.
            need_weights: also return the attention weights of every head.
            head_mask: multiplies each head's output before W_O; 0 removes a head (ablation), 1 keeps it.
            attn_mask: bool, True = may attend, on top of the causal mask (default: None, the causal mask alone).

        Shape:
            tokens (batch, seq); head_mask (layers * heads,) or (batch, layers * heads); returns logits (batch,
            seq, relations, vocab), and with need_weights a tuple (logits, weights) with weights (batch,
            layers * heads, q_pos, k_pos). With one layer, layers * heads is heads; with several, the heads of
            layer 0 come first. attn_mask (q_pos, k_pos), applied in every layer.
        """
        x = self.embed(tokens)  # (batch, seq, d_model)
        heads, layers = self.config.heads, self.config.layers
        if head_mask is not None and layers > 1 and head_mask.shape[-1] != layers * heads:  # one layer checks itself
            raise ValueError(
                f"head_mask must have layers * heads = {layers * heads} entries in its last dimension "
                f"(shape (layers * heads,) or (batch, layers * heads)), got shape {fmt_shape(head_mask.shape)}"
            )
        all_weights = []
        for i, layer in enumerate(self.layers):
            mask = head_mask if head_mask is None or layers == 1 else head_mask[..., i * heads : (i + 1) * heads]
            mixed, weights = layer(
                x, attn_mask=attn_mask, causal=True, need_weights=need_weights, average_weights=False, head_mask=mask
            )
            x = x + mixed  # the residual keeps each position's own token and position next to what attention brought
            all_weights.append(weights)
        logits = torch.stack([readout(x) for readout in self.readouts], dim=2)  # (batch, seq, relations, vocab)
        if not need_weights:
            return logits
        return logits, torch.cat(all_weights, dim=1)  # (batch, layers * heads, q_pos, k_pos)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """What attention reads at each position: its token's embedding plus its position's (if the scheme adds one).

        Args:
            tokens: token ids.

        Shape:
            tokens (batch, seq); returns (batch, seq, d_model).
        """
        self._check_tokens(tokens)
        if self.position_embedding is None:
            return self.token_embedding(tokens)  # (batch, seq, d_model): no position added
        positions = torch.arange(tokens.shape[1], device=tokens.device)  # (seq,)
        return self.token_embedding(tokens) + self.position_embedding(positions)  # (batch, seq, d_model)

    def _check_tokens(self, tokens):
        check_tensor("tokens", tokens)
        check_rank("tokens", tokens, (2,), "(batch, seq)")
        if tokens.dtype != torch.int64:
            raise TypeError(f"tokens must be int64 token ids, got dtype {tokens.dtype}")
        if tokens.shape[1] > self.config.seq:
            raise ValueError(
                f"tokens has shape {fmt_shape(tokens.shape)}: at most seq={self.config.seq} positions"
                + (" (one learned position embedding each)" if self.config.positions == "learned" else "")
            )
        vocab = self.config.vocab
        if tokens.numel() and not torch.compiler.is_compiling():
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= vocab:
                raise ValueError(
                    f"tokens must be token ids from 0 to vocab - 1 = {vocab - 1} (one embedding each), got ids from "
                    f"{low} to {high}"
                )


def build_model(config: AttentionOnlyConfig, seed: int, dtype: torch.dtype = TRAINING_DTYPE) -> AttentionOnlyModel:
    """A fresh model whose starting weights depend on `seed` alone (the global random state is left untouched).

    The weights are drawn as float32 numbers that are the same on every CPU (`mha._portable`), then held in `dtype`.

    Args:
        config: the sizes.
        seed: the seed of the starting weights.
        dtype: the dtype of the parameters (default: float64, in which the course trains its small models, so
            that every CPU prints the same results).

    Shape:
        returns an `AttentionOnlyModel`.
    """
    with seeded(seed, portable=True):
        model = AttentionOnlyModel(config)
    return model.to(dtype)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable numbers in a model.

    Args:
        model: any module.

    Shape:
        returns an int.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
