"""What `python -m mha.bench` runs: experiments (shapes x implementations x modes), grouped in suites.

    lesson   what lesson 06 runs live on a CPU, within a minute on 2 cores
    cpu      the recorded CPU results: one thread, a layer of d_model 512 and 8 heads
    gpu      the recorded GPU results: bfloat16, d_head 128, seq up to 16k
    flash    lesson 10's GPU results: its Triton kernel against SDPA's flash and math backends and the course's
             hand-written core, bfloat16, seq 1k to 16k, d_head 128 and 64, forward and backward

`make gpu-record` records the gpu and flash suites (and lesson 07's), each under a time limit, within 10 minutes
(`python -m mha.bench --device cuda --suite gpu --dry-run` and `--suite flash --dry-run` print the estimates).

A suite's experiments run in order of importance, the main table first: a run stopped midway keeps the most
important. Each suite has a quick version (`suite(name, quick=True)`, `--quick`): the same experiments at tiny
sizes, seconds on any CPU, so that the logic of the GPU suite can be run where there is no GPU.
"""

from dataclasses import dataclass

import torch

from .implementations import BACKENDS, IMPLEMENTATIONS, LESSON_10, Shape

MODES = ("forward", "forward+backward")


@dataclass(frozen=True)
class Experiment:
    """Shapes crossed with implementations and modes.

    Args:
        name: what it shows, e.g. "seq" for time against sequence length.
        shapes: the sizes to run.
        implementations: names in `IMPLEMENTATIONS`.
        modes: "forward" and/or "forward+backward".
    """

    name: str
    shapes: tuple
    implementations: tuple
    modes: tuple = ("forward",)

    def __post_init__(self):
        unknown = [n for n in self.implementations if n not in IMPLEMENTATIONS]
        if unknown:
            raise ValueError(f"unknown implementations {unknown}; known: {list(IMPLEMENTATIONS)}")
        if not set(self.modes) <= set(MODES):
            raise ValueError(f"modes must be among {MODES}, got {self.modes}")


@dataclass(frozen=True)
class Suite:
    """Experiments and how to time them.

    Args:
        name: what the command line calls it.
        experiments: run in this order.
        dtype: default dtype.
        min_run_time: seconds of timing per implementation and shape, over all rounds.
        rounds: turns of interleaved timing.
        warmup: untimed calls before timing.
        compile_backward: also compile the backward pass (slow to compile: tens of seconds on a small CPU).
    """

    name: str
    experiments: tuple
    dtype: torch.dtype = torch.float32
    min_run_time: float = 0.3
    rounds: int = 3
    warmup: int = 2
    compile_backward: bool = True


def _seq_sweep(seqs, d_model, heads, batch=1):
    return tuple(Shape(batch, s, d_model, heads) for s in seqs)


def _heads_sweep(heads_list, batch, seq, d_model):
    return tuple(Shape(batch, seq, d_model, h) for h in heads_list)


_TABLE = tuple(n for n in IMPLEMENTATIONS if n not in LESSON_10)  # every one of lesson 06; a device lacks some
_FLASH = ("core/triton", "core/flash", "core/math", "core/hand")  # lesson 10's kernel against PyTorch's and ours
_SEQ = ("batched", "sdpa", "core/hand", "core/sdpa")
_GPU_SEQ = ("batched", "sdpa", "core/hand", "core/flash", "core/efficient", "core/cudnn")  # a CPU has flash only
_HEADS = ("loop", "batched", "sdpa")
_MEMORY = ("core/math", "core/flash")  # a CPU's two backends: one materialises the weights, one does not
_GPU_MEMORY = tuple(f"core/{b}" for b in BACKENDS)


def _suites():
    not_compiled = tuple(n for n in _TABLE if n != "compiled")
    return {
        # What lesson 06 runs live on a CPU, within a minute on 2 cores: the cpu suite's layer on batch 2, small sweeps.
        "lesson": Suite(
            "lesson",
            (
                Experiment("table", (Shape(2, 256, 512, 8),), not_compiled, MODES),
                Experiment("seq", _seq_sweep((64, 128, 256, 512, 1024), 512, 8), _SEQ),
                Experiment("heads", _heads_sweep((1, 2, 4, 8, 16, 32), 2, 64, 128), _HEADS),
                Experiment("memory", _seq_sweep((128, 256, 512, 1024, 2048), 64, 1), _MEMORY),
            ),
            min_run_time=0.2,
            rounds=4,
            warmup=1,
        ),
        # The recorded CPU results: one thread, a layer of the size of a small BERT (d_model 512, 8 heads).
        "cpu": Suite(
            "cpu",
            (
                Experiment("table", (Shape(4, 256, 512, 8), Shape(4, 256, 512, 8, causal=True)), _TABLE, MODES),
                Experiment("seq", _seq_sweep((128, 256, 512, 1024, 2048), 256, 4), _SEQ),
                Experiment("heads", _heads_sweep((1, 2, 4, 8, 16, 32, 64), 2, 128, 256), _HEADS),
                Experiment("memory", _seq_sweep((256, 512, 1024, 2048, 4096), 64, 1), _MEMORY),
            ),
            min_run_time=0.8,  # seconds and turns enough for a median that a busy machine moves little
            rounds=6,
        ),
        # The GPU recording, about 5 minutes on an H100 or H200, so that `make gpu-record` (with lessons 07 and 10)
        # ends within the 10 minutes a shared or rented GPU machine often allows one command: bfloat16, d_head 128 as
        # in most large models, the hand-written cores skipping what would not fit in memory, saying so. Compiling
        # takes tens of seconds: the forward only. (The sweep over heads is the CPU suite's.)
        "gpu": Suite(
            "gpu",
            (
                Experiment("table", (Shape(4, 4096, 2048, 16),), _TABLE, MODES),
                Experiment("table", (Shape(4, 4096, 2048, 16, causal=True),), not_compiled, MODES),
                Experiment("seq", _seq_sweep((1024, 2048, 4096, 8192, 16384), 2048, 16, batch=2), _GPU_SEQ, MODES),
                Experiment("memory", _seq_sweep((1024, 2048, 4096, 8192, 16384, 32768), 1024, 16), _GPU_MEMORY),
            ),
            dtype=torch.bfloat16,
            min_run_time=0.15,
            compile_backward=False,  # a minute and a half of compiling for one number: the forward is compiled
        ),
        # Lesson 10's GPU recording: its Triton kernel against SDPA's flash and math backends and the course's
        # hand-written core, in bfloat16, 16k tokens per call at every length (batch 16384 // seq), as the
        # FlashAttention papers time them; the main table at seq 4096 and d_head 128 first.
        "flash": Suite(
            "flash",
            (
                Experiment("table", (Shape(4, 4096, 2048, 16),), _FLASH, MODES),
                Experiment("seq", _tokens_sweep((1024, 2048, 8192, 16384), 2048, 16), _FLASH, MODES),
                Experiment("d64", _tokens_sweep((1024, 4096, 16384), 1024, 16), _FLASH, MODES),
                Experiment("table", (Shape(4, 4096, 2048, 16, causal=True),), _FLASH, MODES),
            ),
            dtype=torch.bfloat16,
            min_run_time=0.15,
        ),
    }


def _tokens_sweep(seqs, d_model, heads, tokens=16384):
    return tuple(Shape(max(1, tokens // s), s, d_model, heads) for s in seqs)


def _quick_suites():
    """The same experiments, shrunk: each runs in seconds on a CPU (the gpu one too, to test its logic there)."""

    def quick(name, dtype, d_model, heads):
        gpu = name == "gpu"
        return Suite(
            name,
            (
                Experiment("table", (Shape(2, 32, d_model, heads),), _TABLE, MODES),
                Experiment("seq", _seq_sweep((16, 32, 64), d_model, heads, batch=2), _GPU_SEQ if gpu else _SEQ),
                Experiment("memory", _seq_sweep((32, 64, 128), d_model, heads), _GPU_MEMORY if gpu else _MEMORY),
                Experiment("heads", _heads_sweep((1, 4, 16), 1, 16, 64), _HEADS),
            ),
            dtype=dtype,
            min_run_time=0.01,
            rounds=2,
            warmup=1,
            compile_backward=False,
        )

    flash = Suite(
        "flash",
        (
            Experiment("table", (Shape(1, 32, 64, 2),), _FLASH, MODES),
            Experiment("seq", _tokens_sweep((16, 48), 64, 2, tokens=64), _FLASH, MODES),
            Experiment("d64", (Shape(1, 20, 32, 2),), _FLASH, MODES),
            Experiment("table", (Shape(1, 32, 64, 2, causal=True),), _FLASH, MODES),
        ),
        dtype=torch.float32,  # on a CPU the kernel runs in Triton's interpreter, in float32 (numpy has no bfloat16)
        min_run_time=0.01,
        rounds=1,
        warmup=0,
        compile_backward=False,
    )
    return {
        "flash": flash,
        "lesson": quick("lesson", torch.float32, 64, 2),
        "cpu": quick("cpu", torch.float32, 64, 2),
        "gpu": quick("gpu", torch.bfloat16, 256, 2),  # d_head 128, as in the real one
    }


def suite(name: str, quick: bool = False) -> Suite:
    """The suite called `name` ("lesson", "cpu", "gpu" or "flash"), or its quick version (default: the full one)."""
    suites = _quick_suites() if quick else _suites()
    if name not in suites:
        raise ValueError(f"suite must be one of {list(suites)}, got {name!r}")
    return suites[name]
