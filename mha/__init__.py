"""Multi-head attention, from one head to many: the code the course notebooks import.

Dimension names used everywhere: batch, seq, q_pos, k_pos, heads, d_model, d_head.
Mask convention used everywhere: True means "may attend" (see `mha.masks`).
"""

from .attention import attention, attention_numpy, masked_softmax, sdpa, softmax_numpy
from .heads import merge_heads, split_heads
from .masks import causal_mask, combine_masks, from_torch_mha_mask, padding_mask, to_torch_mha_mask
from .multihead import (
    AttentionHead,
    MultiHeadAttention,
    MultiHeadAttentionEinsum,
    MultiHeadAttentionLoop,
    MultiHeadAttentionSDPA,
)

__all__ = [
    "AttentionHead",
    "MultiHeadAttention",
    "MultiHeadAttentionEinsum",
    "MultiHeadAttentionLoop",
    "MultiHeadAttentionSDPA",
    "attention",
    "attention_numpy",
    "causal_mask",
    "combine_masks",
    "from_torch_mha_mask",
    "masked_softmax",
    "merge_heads",
    "padding_mask",
    "sdpa",
    "softmax_numpy",
    "split_heads",
    "to_torch_mha_mask",
]
