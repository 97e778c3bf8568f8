"""Multi-head attention, from one head to many: the code the course notebooks import.

The core, a short read beside lessons 01 and 03, sits at the top of the package:

    masks.py       causal and padding masks; True means "may attend", everywhere
    attention.py   scaled dot-product attention, in numpy and in torch
    heads.py       split the features into heads, and merge them back
    multihead.py   multi-head attention in named versions: one head, a loop of heads, all heads at once
                   (batched), einsum, and PyTorch's fused kernel; kv_heads to share keys and values (lesson 07)
    kv_cache.py    the KV cache: generate one token at a time without recomputing the past; its size; attention
                   with shared keys and values that never copies them (lesson 07)
    plots.py       pictures of attention weights and masks
    positions.py   how a head knows where: learned and sinusoidal tables, RoPE (rotary), none (lesson 09)
    _validate.py   argument checks: every error names what was expected and what arrived
    _runtime.py    run with N threads, wait for the device: shared by the timing and training wings
    _provenance.py every results file written in one format (command, torch, date, device), and the one rule of
                   every command: no file replaced that it did not write, checked before any work
    _commands.py   what the wings' commands share: subcommands, one-line errors, option types, output checks
    _portable.py   the same numbers on every CPU (starting weights, float64 training), seeded blocks safe in threads
    _trained.py    the lessons' trainings marked to be run once per grading and read back by every notebook

Each lesson's machinery lives in a wing of its own, built on the core:

    mha.toy          small tasks, a template language, small models and their training; the experiments of
                     lessons 02 (one head against many), 04 (what heads learn) and 09 (positions and length)
    mha.pretrained   a real pretrained transformer (all-MiniLM-L6-v2) built from the core, and its 72 heads (lesson 05)
    mha.bench        timing every implementation on a CPU and a GPU (lesson 06)
    mha.decoding     a small decoder-only model, generation with and without the KV cache, published cache
                     sizes, timing, and what sharing keys and values costs (lesson 07)
    mha.parallel     a layer split by heads across processes with torch.distributed: tensor parallelism (lesson 08)
    mha.flash        attention without the n × n matrix: online softmax, blocks, bytes, a FlashAttention kernel in
                     Triton (lesson 10)
    mha.circuits     heads in different layers working together: previous-token and induction heads, ablation,
                     composition, learning in context (lesson 11)
    mha.checks       the exercise checks: `from mha.checks import lesson01 as check`
    mha.course       exercise generation, grading, the environment check

Every experiment is also a command that prints the lesson's table and can write JSON with its provenance:
`python -m mha.toy`, `python -m mha.pretrained`, `python -m mha.bench`, `python -m mha.decoding`,
`python -m mha.parallel`, `python -m mha.flash`, `python -m mha.circuits`, `python -m mha.course`.

Dimension names used everywhere: batch, seq, q_pos, k_pos, heads, d_model, d_head (and kv_heads, lesson 07).
Mask convention used everywhere: True means "may attend" (see `mha.masks`).
"""

from .attention import attention, attention_numpy, masked_softmax, sdpa, softmax_numpy
from .heads import merge_heads, repeat_kv, split_heads
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
    "repeat_kv",
    "sdpa",
    "softmax_numpy",
    "split_heads",
    "to_torch_mha_mask",
]
