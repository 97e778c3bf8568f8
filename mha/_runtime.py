"""Two things every timed or trained run needs: a thread count that is set and then put back, and a way to wait for
the device.

`threads(n)` sets the number of threads torch uses inside a `with` block and restores the previous number after it,
whatever happens inside. `synchronize(device)` waits until the device has finished the work queued on it: a GPU runs
asynchronously, so a clock read without it measures only the launch.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` threads for torch's operators, then restore the number there was before.

    Args:
        n: threads to use; None leaves the number as it is.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a whole number of at least 1, got {n!r}")
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device=None) -> None:
    """Wait until `device` has finished its queued work; nothing to wait for on a CPU.

    Args:
        device: a device or its name ("cuda", "cuda:1", "cpu"); None: the current accelerator, if there is one.
    """
    if device is None:
        if torch.accelerator.is_available():
            torch.accelerator.synchronize()
        return
    device = torch.device(device)
    if device.type != "cpu":
        torch.accelerator.synchronize(device)
