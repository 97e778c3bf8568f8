"""Timing code without fooling yourself.

- Warm up first: the first call pays for one-off work (allocating memory, choosing kernels, compiling).
- Synchronise: a GPU runs asynchronously, so a clock read right after a call measures only the launch.
  `torch.utils.benchmark.Timer` synchronises the accelerator before every clock read.
- Say how many threads: `Timer` runs with `num_threads=1` unless told otherwise, whatever torch would use.
- Interleave: time A, B, C, then A, B, C again, so that a slow spell of a shared machine hits all of them alike.
- Report the median and the spread (the interquartile range), not the mean of a few calls.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.benchmark import Timer

from .._runtime import synchronize
from .._runtime import threads as using


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, interquartile range (75th minus 25th percentile) and how many calls were timed."""

    median: float
    iqr: float
    calls: int


def time_interleaved(
    fns: dict, threads: int | dict, min_run_time: float = 0.2, rounds: int = 3, warmup: int = 2, on_step=None
) -> dict:
    """Time several calls in turns with `Timer.blocked_autorange`, after warming each up.

    Args:
        fns: name -> call with no arguments.
        threads: threads torch may use while timing (`Timer`'s num_threads); a dict gives each name its own.
        min_run_time: seconds spent on each call in all, split over the rounds.
        rounds: how many turns; each turn starts with a different call, so none is always timed first.
        warmup: untimed calls of each before timing starts, on the threads it will be timed with.
        on_step: called with the name after each measurement (e.g. to move a progress bar).

    Returns:
        name -> `Timing`.
    """
    names = list(fns)
    if not names:
        return {}
    count = threads if isinstance(threads, dict) else dict.fromkeys(names, threads)
    if min(count.values(), default=1) < 1 or rounds < 1 or min_run_time <= 0:
        raise ValueError(f"need threads >= 1, rounds >= 1, min_run_time > 0; got {threads}, {rounds}, {min_run_time}")
    for name, fn in fns.items():
        with using(count[name]):
            for _ in range(warmup):
                fn()
    synchronize()
    per_call = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            timer = Timer(stmt="fn()", globals={"fn": fns[name]}, num_threads=count[name])
            per_call[name].extend(timer.blocked_autorange(min_run_time=min_run_time / rounds).times)
            if on_step is not None:
                on_step(name)
    return {name: _summarise(times) for name, times in per_call.items()}


def _summarise(times) -> Timing:
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return Timing(float(q50), float(q75 - q25), len(times))


def matmul_rate(device, dtype: torch.dtype, threads: int, n: int = 1024, min_run_time: float = 0.2) -> float:
    """FLOP/s of one large square matrix product, measured here and now: the practical peak of this device.

    Args:
        device: where to run.
        dtype: the dtype of the product.
        threads: threads torch may use.
        n: size of the (n, n) matrices.
        min_run_time: seconds to spend timing.

    Returns:
        FLOP/s = 2·n³ / median seconds.
    """
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    timing = time_interleaved({"matmul": lambda: a @ b}, threads, min_run_time=min_run_time, rounds=1)["matmul"]
    return 2 * n**3 / timing.median
