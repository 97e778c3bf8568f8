"""Time every implementation of multi-head attention on this machine; the command is `python -m mha.bench`.

A run goes through a suite of experiments (`mha.bench.suites`: the main table, time against seq and against heads,
memory against seq). For each shape it builds every implementation of `mha.bench.implementations` on one shared
problem, checks each against a float64 reference (one that disagrees is reported and not timed), measures its peak
memory, then times them all in turns (`mha.bench.timing`): forward, and forward+backward. Each run gives one
`mha.bench.results.Record`.
"""

import contextlib
import datetime
import functools
import os
import platform
import warnings
from dataclasses import dataclass

import torch

from .flops import attention_flops, dtype_name, known_peak
from .implementations import IMPLEMENTATIONS, Implementation, Problem, Shape, check, tolerance, unavailable
from .memory import peak_memory
from .results import Record
from .suites import Experiment, Suite
from .timing import matmul_rate, time_interleaved

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The one command that records the GPU results lesson 06 shows, from the repository's root, on any NVIDIA GPU.
GPU_COMMAND = (
    "python -m mha.bench --device cuda --suite gpu "
    "--json notebooks/results/06_gpu_{device}.json --csv notebooks/results/06_gpu_{device}.csv"
)
CPU_COMMAND = "python -m mha.bench --suite cpu --json notebooks/results/06_cpu.json --csv notebooks/results/06_cpu.csv"


@dataclass
class Settings:
    """Where and how one run of a suite happens (filled in by `prepare`)."""

    device: torch.device
    dtype: torch.dtype
    threads: int
    tf32: bool
    device_name: str
    peak_flops_per_s: float
    peak_source: str
    memory_budget: int
    compile: bool = True
    progress: bool = True
    peak_matmul: tuple = ()  # (a, b) to time in turn with every group when the peak is not from a datasheet


def device_name(device) -> str:
    """ "NVIDIA H100 80GB HBM3" for a GPU; the processor's model name for a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    return "CPU: " + (platform.processor() or platform.machine())


def _matmul_size(device) -> int:
    return 1024 if torch.device(device).type == "cpu" else 8192


def _measured_source(n, dtype, threads) -> str:
    return f"measured: ({n}, {n}) @ ({n}, {n}) matrix product, {dtype_name(dtype)}, {threads} thread(s)"


def device_peak(device, dtype, tf32: bool, threads: int) -> tuple[float, str]:
    """The dense peak from the datasheet table for a known GPU; else a large matrix product measured now."""
    device = torch.device(device)
    if device.type == "cuda":
        found = known_peak(device_name(device), dtype, tf32)
        if found:
            return found
    n = _matmul_size(device)
    return matmul_rate(device, dtype, threads, n=n), _measured_source(n, dtype, threads)


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


def prepare(device="cpu", dtype=torch.float32, threads=1, tf32=False, compile=True, progress=True) -> Settings:
    """Settle the device, dtype, threads and TF32, and find the device's peak: what every record repeats.

    Args:
        device: "cpu" or "cuda".
        dtype: torch.float32 or torch.bfloat16.
        threads: threads torch uses while checking and timing.
        tf32: let float32 matrix products use TF32 tensor cores (CUDA only; recorded in every record).
        compile: include torch.compile (it takes seconds to compile each shape).
        progress: show a progress bar.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    tf32 = bool(device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    peak, source = device_peak(device, dtype, tf32, threads)
    matmul = ()
    if source.startswith("measured"):  # measure it again in turn with every group, under the same noise
        n = _matmul_size(device)
        matmul = tuple(torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    return Settings(
        device,
        dtype,
        threads,
        tf32,
        device_name(device),
        peak,
        source,
        memory_budget(device),
        compile,
        progress,
        matmul,
    )


def _record(settings, experiment, impl, shape, mode, peak, **measured) -> Record:
    flops = attention_flops(shape.batch, shape.seq, shape.d_model, shape.causal, impl.scope, mode != "forward")
    median = measured.get("median_s")
    rate = flops / median if median else None
    peak_flops_per_s, peak_source = peak
    fields = dict(
        status="timed",
        reason="",
        median_s=None,
        iqr_s=None,
        calls=0,
        peak_memory_bytes=None,
        memory_method="",
        error=None,
        grad_error=None,
    )
    fields.update(measured)
    return Record(
        experiment=experiment,
        implementation=impl.name,
        scope=impl.scope,
        mode=mode,
        device=settings.device_name,
        dtype=dtype_name(settings.dtype),
        tf32=settings.tf32,
        threads=settings.threads,
        batch=shape.batch,
        seq=shape.seq,
        d_model=shape.d_model,
        heads=shape.heads,
        d_head=shape.d_head,
        causal=shape.causal,
        flops=flops,
        flops_per_s=rate,
        peak_flops_per_s=peak_flops_per_s,
        peak_source=peak_source,
        share_of_peak=rate / peak_flops_per_s if rate else None,
        tolerance=tolerance(settings.dtype, settings.tf32),
        **fields,
    )


def _first_line(error: BaseException, caught) -> str:
    said = [str(w.message).strip().replace("\n", " ") for w in caught]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return "; ".join(dict.fromkeys([f"{type(error).__name__}: {text}", *said]))[:400]


def _forward(call):
    def run():
        with torch.no_grad():
            return call()

    return run


def _forward_backward(call, grad_inputs, grad_out):
    def run():
        out = call()
        return torch.autograd.grad(out, grad_inputs, grad_out, allow_unused=True)

    return run


def run_shape(settings: Settings, suite: Suite, experiment: Experiment, shape: Shape, bar=None) -> list:
    """Check, measure the memory of, and time every implementation of `experiment` on one shape.

    Returns:
        one `Record` per implementation and mode, in the experiment's order.
    """
    p = Problem(shape, settings.device, settings.dtype)
    outcome, ready = _check_all(settings, suite, experiment, p)
    records = {}
    for mode in experiment.modes:
        fns, measured = _first_calls(settings, suite, ready, shape, mode)
        step = (lambda name: bar.update(name != _PEAK)) if bar is not None else None
        if bar is not None:
            bar.set_description(f"{experiment.name}: seq {shape.seq}, heads {shape.heads}, {mode}")
            bar.update(suite.rounds * (len(experiment.implementations) - len(fns)))
        peak = settings.peak_flops_per_s, settings.peak_source
        if settings.peak_matmul and fns:
            fns[_PEAK] = functools.partial(torch.matmul, *settings.peak_matmul)
        timings = _time_group(fns, settings, suite, step, measured)
        if _PEAK in timings:
            n = settings.peak_matmul[0].shape[0]
            peak = 2 * n**3 / timings[_PEAK].median, _measured_source(n, settings.dtype, settings.threads) + " in turn"
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
    tol = tolerance(settings.dtype, settings.tf32)
    outcome, ready = {}, {}
    for name in experiment.implementations:
        impl = IMPLEMENTATIONS[name]
        reason = unavailable(impl, settings.device)
        if name == "compiled" and not settings.compile:
            reason = "torch.compile not asked for (--no-compile)"
        if reason is None and estimated_bytes(impl, p.shape, settings.dtype, "forward") > settings.memory_budget:
            reason = _too_big(impl, p.shape, settings, "forward")
        if reason:
            outcome[name] = dict(status="skipped", reason=reason)
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call, grad_inputs = impl.build(p)
                gradient = name != "compiled" or (suite.compile_backward and "forward+backward" in experiment.modes)
                error, grad_error = check(impl, call, grad_inputs, p, gradient)
        except (RuntimeError, NotImplementedError, torch.OutOfMemoryError) as e:  # a kernel refusing these inputs
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
        if estimated_bytes(IMPLEMENTATIONS[name], shape, settings.dtype, mode) > settings.memory_budget:
            measured[name] = dict(status="skipped", reason=_too_big(IMPLEMENTATIONS[name], shape, settings, mode))
            continue
        if mode == "forward":
            fn = _forward(call)
        else:
            with torch.no_grad():
                out = call()
            grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out)
            fn = _forward_backward(call, grad_inputs, grad_out)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn()  # the first call: compiles, allocates, may fail
                memory, method = None, _unmeasured(name, mode, settings.device)
                if not method:
                    memory, method = peak_memory(fn, settings.device)
        except (RuntimeError, NotImplementedError, torch.OutOfMemoryError) as e:
            measured[name] = dict(status="skipped", reason=_first_line(e, caught))
            _free(settings.device)
            continue
        fns[name] = fn
        measured[name] = dict(peak_memory_bytes=memory, memory_method=method)
    return fns, measured


_PEAK = "(matrix product, for the peak)"


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
            measured[name] = dict(
                measured.get(name, {}), status="skipped", reason=f"out of memory while timing: {e}"[:300]
            )
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


def _too_big(impl, shape, settings, mode) -> str:
    need = estimated_bytes(impl, shape, settings.dtype, mode)
    return (
        f"its (batch, heads, q_pos, k_pos) weights would need about {need / 2**30:.1f} GiB ({mode}), "
        f"over the budget of {settings.memory_budget / 2**30:.1f} GiB"
    )


def _free(device):
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def run(suite: Suite, settings: Settings, only=None) -> list:
    """Run the experiments of `suite`, with a progress bar over the runs. Returns all records.

    Args:
        suite: the experiments and how long to time.
        settings: from `prepare`.
        only: names of the experiments to run (default: all).
    """
    known = [e.name for e in suite.experiments]
    if only is not None and not set(only) <= set(known):
        raise ValueError(f"suite {suite.name!r} has experiments {known}, asked for {list(only)}")
    experiments = [e for e in suite.experiments if only is None or e.name in only]
    total = sum(len(e.shapes) * len(e.modes) * len(e.implementations) * suite.rounds for e in experiments)
    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="run", leave=False)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        records = [r for e in experiments for shape in e.shapes for r in run_shape(settings, suite, e, shape, bar)]
    finally:
        torch.set_num_threads(previous_threads)
        if bar is not None:
            bar.close()
    return records


# ---------------------------------------------------------------------------------------------------- files


def metadata(settings: Settings, command: str, suite_name: str, quick: bool) -> dict:
    """What a results file says about where and how it was made."""
    device = settings.device
    return {
        "device": settings.device_name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "suite": suite_name,
        "quick": quick,
        "dtype": dtype_name(settings.dtype),
        "tf32": settings.tf32,
        "threads": settings.threads,
        "peak_flops_per_s": settings.peak_flops_per_s,
        "peak_source": settings.peak_source,
    }


def plan(suite_: Suite, settings: Settings, only=None) -> list:
    """What `run` would do, without running it: one line per shape and mode, with skips decided before running."""
    lines = []
    for e in suite_.experiments:
        if only is not None and e.name not in only:
            continue
        for shape in e.shapes:
            for mode in e.modes:
                skips = []
                for name in e.implementations:
                    impl = IMPLEMENTATIONS[name]
                    reason = unavailable(impl, settings.device)
                    if reason is None and estimated_bytes(impl, shape, settings.dtype, mode) > settings.memory_budget:
                        reason = _too_big(impl, shape, settings, mode)
                    if reason:
                        skips.append(f"{name} ({reason})")
                runs = len(e.implementations) - len(skips)
                lines.append(
                    f"{e.name}: {shape}, {mode}: {runs} to run" + (f"; skip {'; '.join(skips)}" if skips else "")
                )
    return lines
