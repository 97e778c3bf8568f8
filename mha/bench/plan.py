"""What a run of a suite will do and about how long it will take, worked out without running it (`--dry-run`).

The estimate adds up, for every run, the calls the harness makes and what each costs:

    call        FLOPs / (a plausible share of the peak) + a fixed launch cost; the projections are large matrix
                products (60% of a GPU's datasheet peak, 80% of a CPU's), the core reaches 40% (a fused kernel),
                12% (a GPU kernel that writes the seq² weights to memory, and so waits on it) or 50% (on a CPU)
    check       the float64 reference (once per shape and scope), two calls, and a backward when the gradient is
                checked
    first call  one call, and one more to measure the memory
    timing      `warmup` calls, then per round `Timer.blocked_autorange`: blocks of 1, 10, 100... calls until one
                lasts 10,000 times the timer's own cost (and a thousandth of the round's time), or more than the
                round's time, then blocks of that size until the round's time is spent
    compiling   torch.compile: tens of seconds for each graph: the forward without gradients (as timed), the
                forward with them, the backward
    plans       cuDNN's attention builds a plan for every new shape, forward and backward
    start       importing torch, starting CUDA

On a GPU it assumes an H100 or H200 class device; where the GPU is present, its datasheet peak is used. On a CPU it
assumes `CPU_PEAK_PER_THREAD` (the harness measures the real one when it runs). Real runs differ, above all in
compilation: treat the estimate as a size, not a promise, and keep a margin under any time limit.
"""

import math
from dataclasses import dataclass

from .flops import core_flops, known_peak, projection_flops
from .harness import MATMUL_SIZE, Settings, experiments, too_big
from .implementations import IMPLEMENTATIONS, unavailable
from .suites import Experiment, Suite

ASSUMED_GPU = "NVIDIA H100 80GB HBM3"  # what a plan for CUDA assumes where there is no GPU to ask
CPU_PEAK_PER_THREAD = 50e9  # FLOP/s of float32 matrix products on one core of a recent server CPU


@dataclass(frozen=True)
class Costs:
    """What the estimate assumes a device does, in seconds or in shares of the peak (see the module's docstring)."""

    projection_share: float
    fused_share: float
    materialising_share: float
    launch_s: float  # fixed cost of one call of a layer: Python, kernel launches
    timer_s: float  # what one clock reading costs `Timer` (on a GPU, with a synchronisation)
    plan_s: float  # cuDNN's plan for a new shape
    float64_flops_per_s: float  # the reference check
    compile_forward_s: float
    compile_backward_s: float
    start_s: float
    per_run_s: float  # bookkeeping per run: building, checking, freeing


GPU_COSTS = Costs(
    projection_share=0.6,
    fused_share=0.4,
    materialising_share=0.12,
    launch_s=60e-6,
    timer_s=10e-6,
    plan_s=2.0,
    float64_flops_per_s=25e12,
    compile_forward_s=40.0,
    compile_backward_s=60.0,
    start_s=25.0,
    per_run_s=0.15,
)
CPU_COSTS = Costs(
    projection_share=0.8,
    fused_share=0.5,
    materialising_share=0.5,
    launch_s=50e-6,
    timer_s=0.2e-6,
    plan_s=0.0,
    float64_flops_per_s=10e9,
    compile_forward_s=30.0,
    compile_backward_s=60.0,
    start_s=3.0,
    per_run_s=0.05,
)


def call_seconds(name: str, shape, mode: str, peak: float, costs: Costs) -> float:
    """Estimated seconds of one call of implementation `name` on `shape` (forward, or forward+backward)."""
    impl = IMPLEMENTATIONS[name]
    core = core_flops(shape.batch, shape.seq, shape.d_model, shape.causal)
    if impl.materialises and shape.causal:
        core *= 2  # computes the masked half anyway
    seconds = core / ((costs.materialising_share if impl.materialises else costs.fused_share) * peak)
    launches = 1
    if impl.scope == "layer":
        seconds += projection_flops(shape.batch, shape.seq, shape.d_model) / (costs.projection_share * peak)
        launches = shape.heads if name == "loop" else 1  # one Python call per head
    return (seconds + launches * costs.launch_s) * (3 if mode != "forward" else 1)


def autorange_seconds(call_s: float, min_run_time: float, timer_s: float) -> float:
    """Seconds one `Timer.blocked_autorange(min_run_time)` takes for a call of `call_s` seconds."""
    number, spent = 1, 0.0
    while True:  # the block size: 1, 10, 100... calls, until a block is long enough to make the clock negligible
        block = number * call_s
        spent += block
        if (block >= 1e4 * timer_s and block >= min_run_time / 1000) or block > min_run_time:
            break
        number *= 10
    return spent + max(1, math.ceil(min_run_time / block)) * block


def _reference_seconds(shape, scope: str, gradient: bool, costs: Costs) -> float:
    """The float64 reference: the projections of every position (a layer), attention for 48 sampled rows."""
    rows = min(shape.seq, 48)
    flops = 4 * shape.batch * rows * shape.seq * shape.d_model
    if scope == "layer":
        flops += 6 * shape.batch * shape.seq * shape.d_model**2
    return flops * (3 if gradient else 1) / costs.float64_flops_per_s


def estimate(suite: Suite, settings: Settings, only=None) -> list:
    """Estimated seconds of each experiment of `suite` (start-up counted in the first).

    Args:
        suite: what would run.
        settings: where: device, dtype, memory budget, peak (a peak of 0 is replaced by the assumption above).
        only: names of the experiments (default: all).

    Returns:
        one (experiment, seconds) pair per experiment, in the order they run.
    """
    cuda = settings.device.type == "cuda"
    costs = GPU_COSTS if cuda else CPU_COSTS
    if settings.peak_flops_per_s:
        peak = settings.peak_flops_per_s
    elif cuda:
        peak = (known_peak(settings.device_name, settings.dtype) or known_peak(ASSUMED_GPU, settings.dtype))[0]
    else:
        peak = CPU_PEAK_PER_THREAD * settings.threads
    total = [(e, _experiment_seconds(suite, e, settings, peak, costs)) for e in experiments(suite, only)]
    return [(e, s + (costs.start_s if i == 0 else 0.0)) for i, (e, s) in enumerate(total)]


def _experiment_seconds(suite: Suite, experiment: Experiment, settings: Settings, peak: float, costs: Costs) -> float:
    backward = "forward+backward" in experiment.modes
    seconds = 0.0
    for shape in experiment.shapes:
        seconds += shape.batch * shape.seq * shape.d_model * 10e-9  # drawing the input on the CPU
        scopes = set()
        for name in experiment.implementations:
            impl = IMPLEMENTATIONS[name]
            if unavailable(impl, settings.device) or (name == "compiled" and not settings.compile):
                continue
            gradient = backward and (name != "compiled" or suite.compile_backward)
            gradient = gradient and not too_big(impl, shape, settings.dtype, "forward+backward", settings.memory_budget)
            if too_big(impl, shape, settings.dtype, "forward", settings.memory_budget):
                continue
            forward = call_seconds(name, shape, "forward", peak, costs)
            both = call_seconds(name, shape, "forward+backward", peak, costs)
            if impl.scope not in scopes:
                seconds += _reference_seconds(shape, impl.scope, gradient, costs)
                scopes.add(impl.scope)
            seconds += costs.per_run_s + forward + (both if gradient else 0.0)
            if name == "compiled":  # without gradients, then with them (a new graph), then the backward
                seconds += costs.compile_forward_s * (2 if gradient else 1) + (
                    costs.compile_backward_s if gradient else 0
                )
            if impl.backend == "cudnn":
                seconds += costs.plan_s * len(experiment.modes)
            for mode in experiment.modes:
                if too_big(impl, shape, settings.dtype, mode, settings.memory_budget):
                    continue
                if name == "compiled" and mode != "forward" and not suite.compile_backward:
                    continue
                call = both if mode != "forward" else forward
                seconds += costs.per_run_s + (2 + suite.warmup) * call
                seconds += suite.rounds * autorange_seconds(call, suite.min_run_time / suite.rounds, costs.timer_s)
        if settings.peak_matmul or settings.device.type == "cpu":  # the peak's product, timed in turn with each group
            matmul = autorange_seconds(2 * MATMUL_SIZE**3 / peak, suite.min_run_time / suite.rounds, costs.timer_s)
            seconds += len(experiment.modes) * suite.rounds * matmul
    return seconds


def plan(suite: Suite, settings: Settings, only=None) -> list:
    """What `run` would do, without running it: one line per shape and mode, with skips decided before running.

    Returns:
        lines of text, e.g. "table: batch 4 · seq 4096 · ... · not causal, forward: 13 to run; skip ...".
    """
    lines = []
    for e in experiments(suite, only):
        for shape in e.shapes:
            for mode in e.modes:
                skips = []
                for name in e.implementations:
                    impl = IMPLEMENTATIONS[name]
                    reason = unavailable(impl, settings.device)
                    reason = reason or too_big(impl, shape, settings.dtype, mode, settings.memory_budget)
                    if reason:
                        skips.append(f"{name} ({reason})")
                runs = len(e.implementations) - len(skips)
                skipped = f"; skip {'; '.join(skips)}" if skips else ""
                lines.append(f"{e.name}: {shape}, {mode}: {runs} to run{skipped}")
    return lines
