"""Time every implementation of multi-head attention on this machine; the command is `python -m mha.bench`.

A run goes through a suite of experiments (`mha.bench.suites`). For each shape it builds every implementation of
`mha.bench.implementations` on one shared problem, checks each against a float64 reference (one that disagrees is
reported and not timed), measures its peak memory, then times them all in turns (`mha.bench.timing`): forward, and
forward+backward. Each run gives one `mha.bench.results.Record`.
"""

import functools
import os
import warnings
from dataclasses import dataclass

import torch

from .._provenance import device_name
from .._runtime import threads as using
from .flops import attention_flops, dtype_name, known_peak
from .implementations import IMPLEMENTATIONS, Implementation, Problem, Shape, check, tolerance, unavailable
from .memory import peak_memory
from .results import Record
from .suites import Experiment, Suite
from .timing import matmul_rate, time_interleaved

# The commands that record the results lesson 06 shows, from the repository's root (the GPU one on any NVIDIA GPU).
GPU_COMMAND = (
    "python -m mha.bench --device cuda --suite gpu "
    "--json notebooks/results/06_gpu_{device}.json --csv notebooks/results/06_gpu_{device}.csv"
)
CPU_COMMAND = "python -m mha.bench --suite cpu --json notebooks/results/06_cpu.json --csv notebooks/results/06_cpu.csv"
MATMUL_SIZE = 1024  # the (n, n) matrix product whose rate is the peak of a CPU, or of a GPU not in the datasheet table


@dataclass
class Settings:
    """Where and how one run of a suite happens (filled in by `prepare`).

    `peak_matmul` holds the two matrices whose product is timed in turn with every group when the peak is measured
    rather than taken from a datasheet (empty otherwise).
    """

    device: torch.device
    dtype: torch.dtype
    threads: int
    device_name: str
    peak_flops_per_s: float
    peak_source: str
    memory_budget: int
    compile: bool = True
    progress: bool = True
    peak_matmul: tuple = ()


def _measured_source(dtype, threads) -> str:
    n = MATMUL_SIZE
    return f"measured: ({n}, {n}) @ ({n}, {n}) matrix product, {dtype_name(dtype)}, {threads} thread(s)"


def memory_budget(device) -> int:
    """Bytes an implementation may plan to use: 60% of a GPU's memory, a quarter of the machine's RAM on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(0.6 * torch.cuda.get_device_properties(device).total_memory)
    return int(0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimated_bytes(impl: Implementation, shape: Shape, dtype: torch.dtype, mode: str) -> int:
    """A rough upper bound of the memory the (batch, heads, q_pos, k_pos) weights take, for the memory guard."""
    if not impl.materialises:
        return 0
    scores = shape.batch * shape.heads * shape.seq * shape.seq * torch.finfo(dtype).bits // 8
    return scores * (3 if mode == "forward" else 5)  # scores, softmax, mask; backward keeps and differentiates them


def too_big(impl: Implementation, shape: Shape, dtype: torch.dtype, mode: str, budget: int) -> str:
    """Why the memory guard skips this run ("" if it fits the budget)."""
    need = estimated_bytes(impl, shape, dtype, mode)
    if need <= budget:
        return ""
    return (
        f"its (batch, heads, q_pos, k_pos) weights would need about {need / 2**30:.1f} GiB ({mode}), "
        f"over the budget of {budget / 2**30:.1f} GiB"
    )


def prepare(device="cpu", dtype=torch.float32, threads=1, compile=True, progress=True) -> Settings:
    """Settle the device, dtype and threads, and find the device's peak: what every record repeats.

    Args:
        device: "cpu" or "cuda" (default "cpu").
        dtype: torch.float32 or torch.bfloat16 (default float32).
        threads: threads torch uses while checking and timing (default 1).
        compile: include torch.compile (it takes seconds to compile each shape; default True).
        progress: show a progress bar (default True).

    Returns:
        the `Settings` of the run.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    name = device_name(device)
    found = known_peak(name, dtype) if device.type == "cuda" else None
    matmul = ()
    if found is None:  # measured now, and again in turn with every group, under the same noise
        found = matmul_rate(device, dtype, threads, MATMUL_SIZE), _measured_source(dtype, threads)
        matmul = tuple(torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device).to(dtype) for _ in range(2))
    return Settings(device, dtype, threads, name, *found, memory_budget(device), compile, progress, matmul)


def _record(settings, experiment, impl, shape, mode, peak, **measured) -> Record:
    flops = attention_flops(shape.batch, shape.seq, shape.d_model, shape.causal, impl.scope, mode != "forward")
    median = measured.get("median_s")
    rate = flops / median if median else None
    fields = dict(status="timed", reason="", median_s=None, iqr_s=None, calls=0)
    fields.update(peak_memory_bytes=None, memory_method="", error=None, grad_error=None)
    fields.update(measured)
    return Record(
        experiment=experiment,
        implementation=impl.name,
        scope=impl.scope,
        mode=mode,
        device=settings.device_name,
        dtype=dtype_name(settings.dtype),
        threads=settings.threads,
        batch=shape.batch,
        seq=shape.seq,
        d_model=shape.d_model,
        heads=shape.heads,
        d_head=shape.d_head,
        causal=shape.causal,
        flops=flops,
        flops_per_s=rate,
        peak_flops_per_s=peak[0],
        peak_source=peak[1],
        share_of_peak=rate / peak[0] if rate else None,
        tolerance=tolerance(settings.dtype),
        **fields,
    )


def _first_line(error: BaseException, caught) -> str:
    said = [str(w.message).strip().replace("\n", " ") for w in caught]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return "; ".join(dict.fromkeys([f"{type(error).__name__}: {text}", *said]))[:400]


_REFUSALS = (RuntimeError, NotImplementedError, torch.OutOfMemoryError)  # a kernel refusing these inputs, or memory
_PEAK = "(matrix product, for the peak)"


def run_shape(settings: Settings, suite: Suite, experiment: Experiment, shape: Shape, bar=None) -> list:
    """Check, measure the memory of, and time every implementation of `experiment` on one shape.

    Returns:
        one `Record` per implementation and mode, in the experiment's order.
    """
    outcome, ready = _check_all(settings, suite, experiment, Problem(shape, settings.device, settings.dtype))
    records = {}
    for mode in experiment.modes:
        fns, measured = _first_calls(settings, suite, ready, shape, mode)
        if bar is not None:
            bar.set_description(f"{experiment.name}: seq {shape.seq}, heads {shape.heads}, {mode}")
            bar.update(suite.rounds * (len(experiment.implementations) - len(fns)))
        step = (lambda name: bar.update(name != _PEAK)) if bar is not None else None
        peak = settings.peak_flops_per_s, settings.peak_source
        if settings.peak_matmul and fns:
            fns[_PEAK] = functools.partial(torch.matmul, *settings.peak_matmul)
        timings = _time_group(fns, settings, suite, step, measured)
        if _PEAK in timings:
            source = _measured_source(settings.dtype, settings.threads) + " in turn"
            peak = 2 * MATMUL_SIZE**3 / timings[_PEAK].median, source
        for name in experiment.implementations:
            fields = {**outcome[name], **measured.get(name, {})}
            if name in timings:
                t = timings[name]
                fields.update(median_s=t.median, iqr_s=t.iqr, calls=t.calls)
            records[name, mode] = _record(settings, experiment.name, IMPLEMENTATIONS[name], shape, mode, peak, **fields)
        _free(settings.device)
    return [records[name, mode] for mode in experiment.modes for name in experiment.implementations]


def _check_all(settings, suite, experiment, p: Problem):
    """Build and check each implementation. Returns (name -> fields of a record, name -> what timing needs)."""
    tol = tolerance(settings.dtype)
    outcome, ready = {}, {}
    for name in experiment.implementations:
        impl = IMPLEMENTATIONS[name]
        reason = unavailable(impl, settings.device)
        if name == "compiled" and not settings.compile:
            reason = "torch.compile not asked for (--no-compile)"
        reason = reason or too_big(impl, p.shape, settings.dtype, "forward", settings.memory_budget)
        if reason:
            outcome[name] = dict(status="skipped", reason=reason)
            continue
        # the gradient is checked where the backward is timed, and fits
        gradient = "forward+backward" in experiment.modes and (name != "compiled" or suite.compile_backward)
        gradient = gradient and not too_big(impl, p.shape, settings.dtype, "forward+backward", settings.memory_budget)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call, grad_inputs = impl.build(p)
                error, grad_error = check(impl, call, grad_inputs, p, gradient)
        except _REFUSALS as e:
            outcome[name] = dict(status="skipped", reason=_first_line(e, caught))
            continue
        finally:
            _free(settings.device)
        outcome[name] = dict(error=error, grad_error=grad_error)
        if not (error <= tol and (grad_error is None or grad_error <= tol)):  # a NaN fails too
            reason = f"error {error:.1e}, gradient {grad_error or 0:.1e} > {tol:g}"
            outcome[name].update(status="disagrees", reason=reason)
            continue
        ready[name] = (call, grad_inputs)
    return outcome, ready


def _first_calls(settings, suite, ready, shape, mode):
    """The call to time for each checked implementation, after a first call and a memory measurement.

    Returns:
        (name -> call, name -> fields of its record: memory, or why it is skipped in this mode).
    """
    fns, measured = {}, {}
    for name, (call, grad_inputs) in ready.items():
        if mode != "forward" and name == "compiled" and not suite.compile_backward:
            measured[name] = dict(status="skipped", reason="backward not compiled in this suite (slow to compile)")
            continue
        reason = too_big(IMPLEMENTATIONS[name], shape, settings.dtype, mode, settings.memory_budget)
        if reason:
            measured[name] = dict(status="skipped", reason=reason)
            continue
        if mode == "forward":
            fn = _no_grad(call)
        else:
            with torch.no_grad():
                out = call()
            grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out)
            fn = _backward(call, grad_inputs, grad_out)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn()  # the first call: compiles, allocates, may fail
                memory, method = None, _unmeasured(name, mode, settings.device)
                if not method:
                    memory, method = peak_memory(fn, settings.device)
        except _REFUSALS as e:
            measured[name] = dict(status="skipped", reason=_first_line(e, caught))
            _free(settings.device)
            continue
        fns[name] = fn
        measured[name] = dict(peak_memory_bytes=memory, memory_method=method)
    return fns, measured


def _no_grad(call):
    def run():
        with torch.no_grad():
            return call()

    return run


def _backward(call, grad_inputs, grad_out):
    def run():
        return torch.autograd.grad(call(), grad_inputs, grad_out, allow_unused=True)

    return run


def _time_group(fns, settings, suite, step, measured) -> dict:
    """Time the group in turns; if memory runs out midway, time each alone and mark those that fail as skipped."""
    args = settings.threads, suite.min_run_time, suite.rounds, suite.warmup, step
    try:
        return time_interleaved(fns, *args)
    except torch.OutOfMemoryError:
        _free(settings.device)
    timings = {}
    for name, fn in fns.items():
        try:
            timings.update(time_interleaved({name: fn}, *args))
        except torch.OutOfMemoryError as e:
            measured[name] = dict(measured.get(name, {}), status="skipped", reason=f"out of memory while timing: {e}")
        _free(settings.device)
    return timings


def _unmeasured(name, mode, device) -> str:
    """Why memory is not measured for this run, or "" (only a CPU has blind spots: see `mha.bench.memory`)."""
    if torch.device(device).type == "cuda":
        return ""
    if name == "compiled":
        return "not measured on a CPU for compiled code"
    if name.startswith("nn.MHA") and mode == "forward":
        return "not measured on a CPU: nn.MultiheadAttention's inference path is one native kernel, opaque to the meter"
    return ""


def _free(device):
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def experiments(suite: Suite, only=None) -> list:
    """The experiments of `suite` named in `only` (default: all), in the suite's order."""
    known = [e.name for e in suite.experiments]
    if only is not None and not set(only) <= set(known):
        raise ValueError(f"suite {suite.name!r} has experiments {sorted(set(known))}, asked for {list(only)}")
    return [e for e in suite.experiments if only is None or e.name in only]


def run(suite: Suite, settings: Settings, only=None, after=None) -> list:
    """Run the experiments of `suite`, with a progress bar over the runs. Returns all records.

    Args:
        suite: the experiments and how long to time.
        settings: from `prepare`.
        only: names of the experiments to run (default: all).
        after: called as after(experiment, records so far) each time an experiment finishes (default: nothing),
            e.g. to write the results so far, so that a run stopped midway keeps what it measured.
    """
    chosen = experiments(suite, only)
    total = sum(len(e.shapes) * len(e.modes) * len(e.implementations) * suite.rounds for e in chosen)
    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="run", leave=False)
    records = []
    try:
        with using(settings.threads):
            for experiment in chosen:
                for shape in experiment.shapes:
                    records += run_shape(settings, suite, experiment, shape, bar)
                if after is not None:
                    after(experiment, records)
    finally:
        if bar is not None:
            bar.close()
    return records
