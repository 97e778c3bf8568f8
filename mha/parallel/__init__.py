"""The parallel wing: multi-head attention split by heads across processes, tensor parallelism (lesson 08).

Heads are independent, and concatenate-then-project is a sum over heads (lesson 03). So rank r of w can hold heads
r·heads/w to (r+1)·heads/w − 1 alone, compute their attention and their part of the output, and one all-reduce
adds the parts: Megatron-LM's split of attention (Shoeybi et al., 2019).

    shard.py        who holds which heads (`head_split`); a layer's weights cut per rank (`shard`) and put back
                    together (`gather`); grouped-query layers, K/V heads divided or replicated
    collectives.py  the two communication steps as autograd functions (Megatron-LM's f and g): sum the partial
                    outputs over ranks, and sum the input's gradient over ranks
    ring.py         a ring all-reduce run in one process, message by message, through a `Wire` that records them
    layer.py        `HeadParallelAttention`: one rank's share of a layer, built from a `mha.MultiHeadAttention`
    torch_tp.py     the same split with PyTorch's own API: `parallelize_module`, `ColwiseParallel`,
                    `RowwiseParallel` on a `DeviceMesh`; the fused in_proj trap
    launch.py       start w processes on this machine (gloo on 127.0.0.1, a free port, bounded in time, always
                    cleaned up) and collect what each returns
    jobs.py         what each rank runs (forward, backward, bytes written, times) and the one-process reference
    experiments.py  the lesson's experiments: `check` (both layers against one process), `measure` (all-reduce
                    bytes and times, the layer's times)
    cost.py         bytes of a ring all-reduce, FLOPs per rank, published link speeds and the paper model
                    (`mha.parallel.cost`: not imported with the package, so that the processes start light)
    plots.py        what each rank holds; a ring all-reduce step by step; bytes and time of the all-reduce; when
                    splitting pays
    __main__.py     the command: `python -m mha.parallel check|measure|model`, also under
                    `torchrun --standalone --nproc-per-node N -m mha.parallel check`
"""

from .collectives import copy_to_ranks, sum_over_ranks, world_size
from .launch import LaunchError, LaunchTimeout, WorkerFailed, choose_backend, run
from .layer import HeadParallelAttention
from .shard import HeadSplit, gather, head_split, module_from_weights, shard, weights_of
from .torch_tp import SplitQKVAttention, parallelize

__all__ = [
    "HeadParallelAttention",
    "HeadSplit",
    "LaunchError",
    "LaunchTimeout",
    "SplitQKVAttention",
    "WorkerFailed",
    "choose_backend",
    "copy_to_ranks",
    "gather",
    "head_split",
    "module_from_weights",
    "parallelize",
    "run",
    "shard",
    "sum_over_ranks",
    "weights_of",
    "world_size",
]
