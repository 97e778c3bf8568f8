"""The flash wing: attention without the (q_pos, k_pos) matrix, from an idea in numpy to a Triton kernel (lesson 10).

    online.py    softmax one number at a time: a running maximum and sum; partial results (m, l, acc) and their merge
    tiled.py     attention by blocks of queries and keys in PyTorch, equal to softmax attention with memory linear in
                 seq; causal blocks skipped or masked; grouped-query heads by index; the bytes it reads and writes
    io.py        the bytes standard and blocked attention move to and from a GPU's main memory (FlashAttention's
                 Theorem 2), published GPUs' bandwidth and on-chip memory, the roofline
    kernel.py    FlashAttention in Triton: forward (saving the log-sum-exp), backward (FlashAttention-2), an autograd
                 Function; compiled on a GPU, run in Triton's interpreter on a CPU
    decoding.py  one new query against a long cache, the cache split into chunks and their results merged (split-K)
    __main__.py  the command: `python -m mha.flash check | memory | traffic`

The GPU timing of the kernel against PyTorch's own kernels is lesson 06's harness, with one more implementation
(`core/triton`) and suite (`python -m mha.bench --suite flash --device cuda`).

`kernel.py` imports triton, which chooses between its interpreter and its compiler when first imported; the other
modules do not need triton.
"""
