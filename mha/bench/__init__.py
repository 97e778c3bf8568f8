"""The bench wing: timing every implementation of multi-head attention (lesson 06), on a CPU and on a GPU.

implementations.py   every way the course computes attention (loop, batched, einsum, SDPA backends,
                     nn.MultiheadAttention, compiled), and the float64 check each passes before it is timed
suites.py            what a run times: experiments (shapes x implementations x modes) grouped in suites
harness.py           check, measure memory, time in turns, one record per run
plan.py              what a run will do and about how long it will take, without running it (`--dry-run`)
timing.py            timing without fooling yourself: warm-up, synchronise, threads, turns, median and IQR
flops.py             FLOPs of a layer and of its core; datasheet peaks of known GPUs
memory.py            peak memory of one call, on a GPU and on a CPU
results.py           records, the figures to reach (defined once, in TARGETS), the printed tables
mistakes.py          six classic timing mistakes, each measured wrong then right
plots.py             pictures of the records
__main__.py          the command, `python -m mha.bench ...`, `python -m mha.bench mistakes`: prints, writes files
"""

from .harness import CPU_COMMAND, GPU_COMMAND, Settings, memory_budget, prepare, run, run_shape
from .plan import estimate, plan
from .suites import MODES, Experiment, Suite, suite

__all__ = [
    "CPU_COMMAND",
    "GPU_COMMAND",
    "MODES",
    "Experiment",
    "Settings",
    "Suite",
    "estimate",
    "memory_budget",
    "plan",
    "prepare",
    "run",
    "run_shape",
    "suite",
]
