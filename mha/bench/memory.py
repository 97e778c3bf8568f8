"""How much memory one call needs at its peak.

On a GPU, PyTorch's caching allocator counts every byte it hands out: `torch.cuda.max_memory_allocated` after
`torch.cuda.reset_peak_memory_stats` is exact. On a CPU there is no such counter, so `LiveTensorMeter` watches the
tensors that PyTorch's operators create (a `TorchDispatchMode`, which sees every operator call) and adds up the
bytes of those still alive. It counts what attention implementations differ by, e.g. a (batch, heads, q_pos, k_pos)
weight matrix; it misses the small scratch buffers a fused kernel allocates inside itself.
"""

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .._runtime import synchronize

CUDA_METHOD = "torch.cuda.max_memory_allocated"
METER_METHOD = "live tensors created by the call (kernel scratch not counted)"


class LiveTensorMeter(TorchDispatchMode):
    """Inside `with LiveTensorMeter() as meter:`, `meter.peak` is the most bytes held at once by tensors created there.

    Tensors that existed before the block (inputs, weights) are not counted; views share their base's bytes.
    """

    def __init__(self):
        super().__init__()
        self.live = {}  # storage address -> (weak reference, bytes)
        self.now = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for address, (ref, nbytes) in list(self.live.items()):
            if ref.expired():  # freed since the last operator: its address may be reused below
                del self.live[address]
                self.now -= nbytes
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage.nbytes() and storage.data_ptr() not in self.live:
                    self.live[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
                    self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        return out


def peak_memory(fn, device: torch.device | str) -> tuple[int, str]:
    """Peak bytes that one call `fn()` adds on top of what was allocated before it, and how that was measured.

    Args:
        fn: the call to measure, with no arguments.
        device: where it runs: CUDA uses the allocator's counter, anything else `LiveTensorMeter`.

    Returns:
        (bytes, how they were measured).
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, CUDA_METHOD
    with LiveTensorMeter() as meter:
        fn()
    return meter.peak, METER_METHOD
