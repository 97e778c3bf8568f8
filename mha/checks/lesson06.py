"""Checks for lesson 06, timing. Use: `from mha.checks import lesson06 as check`.

Sizes are chosen so that no two classic mistakes give the same number (a drawn case is redrawn until they differ);
the timer is run on a stand-in function whose calls sleep for known, different lengths, so that the total, the
mean, milliseconds, CPU time, a clock started once, and timed warm-up calls each give their own number.
"""

import itertools
import math
import random
import statistics
import time

import torch

from ..bench.flops import attention_flops as reference_flops
from . import Build, Case, CheckFailed, Exercise, as_number, builder, describe_value, items, register, verify_number
from .compare import PRINTED, _passed

LESSON = "06"


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _distinct(values) -> bool:
    return len(set(values)) == len(values)


# --- exercise 1: layer_flops -------------------------------------------------------------------------------------


def _flops_mistakes(batch, seq, d_model, heads, causal):
    projections = 8 * batch * seq * d_model**2
    full_core = 4 * batch * seq**2 * d_model
    core = full_core // 2 if causal else full_core
    return [
        ((projections + core) // 2, "a multiply-add is 2 FLOPs: an (m, k) @ (k, n) product costs 2·m·k·n"),
        (projections + core // 2, "the core has two products, Q Kᵀ and weights @ V, each 2·batch·seq²·d_model"),
        (
            projections + core // heads,
            "the core's cost does not shrink with heads: each head works on d_head = d_model / heads features, and "
            "there are heads of them",
        ),
        (projections + full_core, "with causal=True half of the scores are never needed: count half the core"),
        (
            (projections + full_core) // 2 if causal else projections + full_core,
            "causal halves the core only, not the projections",
        ),
        (projections, "you left out the attention core (q @ k^T and weights @ v): 4·batch·seq²·d_model"),
        (core, "you left out the four projections (W_Q, W_K, W_V, W_O): 8·batch·seq·d_model²"),
        (6 * batch * seq * d_model**2 + core, "there are four projections: W_Q, W_K, W_V and the output's W_O"),
    ]


def _flops_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(2, 256, 512, 8, False), (1, 128, 64, 1, False), (4, 64, 96, 12, True), (3, 10, 16, 2, True)]
    setups.append((2, 48, 40, 5, False))
    while len(setups) < 7:
        heads = _int(g, 2, 16)
        setup = (_int(g, 1, 8), _int(g, 8, 2048), heads * _int(g, 8, 128), heads, True)
        values = [w for w, _ in _flops_mistakes(*setup)] + [reference_flops(*setup[:3], causal=True)]
        if _distinct(values):
            setups.append(setup)
    return [
        Case(s, what="layer_flops(batch={}, seq={}, d_model={}, heads={}, causal={})".format(*s), drawn=i >= 5)
        for i, s in enumerate(setups)
    ]


def _flops_judge(case: Case, got, changed) -> None:
    batch, seq, d_model, heads, causal = case.inputs()
    verify_number(
        got,
        reference_flops(batch, seq, d_model, causal),
        _flops_mistakes(batch, seq, d_model, heads, causal),
        what=case.what,
        integer=True,
        form_hint="one whole number, the FLOPs",
    )


layer_flops = register(
    Exercise(
        LESSON,
        "layer_flops",
        function="layer_flops",
        signature="layer_flops(batch, seq, d_model, heads, causal)",
        cases=_flops_cases,
        judge=_flops_judge,
    )
)


# --- exercise 2: median_iqr --------------------------------------------------------------------------------------


def _spread_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [
        [0.010, 0.012, 0.011, 0.013, 0.050],
        [1.0, 2.0, 3.0, 4.0],
        [0.5, 0.1, 0.3, 0.2, 0.4, 0.9, 0.7],
        [0.003, 0.001, 0.002, 0.001, 0.009, 0.004],
    ]
    for _ in range(2):
        n = _int(g, 4, 12)
        setups.append([round(float(x), 6) for x in torch.empty(n).log_normal_(-4, 0.6, generator=g)])
    return [Case((times,), what=f"median_iqr({times})", drawn=i >= 4) for i, times in enumerate(setups)]


def _spread_judge(case: Case, got, changed) -> None:
    (times,) = case.inputs()
    if hasattr(got, "shape") and tuple(got.shape) == (2,):
        got = list(got)  # an array or a tensor of the two numbers is fine too
    median, iqr = items(got, 2, what=case.what, names="(median, iqr)")
    ordered = sorted(times)
    n = len(times)
    middle = "for an even number of times the median is the mean of the two middle ones"
    verify_number(
        median,
        statistics.median(times),
        [
            (
                statistics.mean(times),
                "that is the mean; a timing's typical value is its median, which one slow run (another program, a "
                "page fault) does not drag",
            ),
            (times[n // 2], "that is the middle entry of the list as given; sort the times first"),
            (ordered[n // 2], middle),
            (ordered[(n - 1) // 2], middle),
        ],
        what=f"{case.what}, the median",
        site="median",
        form_hint="a number",
    )
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    e1, _, e3 = statistics.quantiles(times, n=4)  # the default method, "exclusive"
    verify_number(
        iqr,
        q3 - q1,
        [
            (
                e3 - e1,
                'statistics.quantiles defaults to method="exclusive"; numpy.percentile interpolates as '
                'method="inclusive" does',
            ),
            (
                max(times) - min(times),
                "that is the whole range, max - min; the IQR is the 75th percentile minus the 25th, which ignores "
                "the extremes",
            ),
            (statistics.pstdev(times), "that is the standard deviation; the IQR is the 75th minus the 25th percentile"),
            (statistics.stdev(times), "that is the standard deviation; the IQR is the 75th minus the 25th percentile"),
            (
                times[(3 * n) // 4] - times[n // 4],
                "those are entries of the list as given, not its percentiles; sort the times first (and "
                "interpolate between them)",
            ),
        ],
        what=f"{case.what}, the IQR (percentiles interpolated linearly, as numpy.percentile does)",
        site="iqr",
        form_hint="a number",
    )


median_iqr = register(
    Exercise(
        LESSON,
        "median_iqr",
        function="median_iqr",
        signature="median_iqr(times)",
        cases=_spread_cases,
        judge=_spread_judge,
    )
)


# --- exercise 3: time_it -----------------------------------------------------------------------------------------

SLOW = 0.150  # seconds per warm-up call: the slow first calls


class TimedFunction:
    """A stand-in function whose calls take known times: `warmup` slow calls, then the given durations, in order.

    Args:
        warmup: how many first calls are slow (SLOW seconds each).
        durations: seconds each following call takes (calls after these take the last duration).
    """

    def __init__(self, warmup: int, durations: list[float]):
        self.warmup, self.durations, self.calls = warmup, list(durations), 0

    def __call__(self):
        i = self.calls
        self.calls += 1
        if i < self.warmup:
            time.sleep(SLOW)
        else:
            time.sleep(self.durations[min(i - self.warmup, len(self.durations) - 1)])

    def state(self) -> dict:
        """What the check needs to know afterwards: how many times it was called."""
        return {"calls": self.calls}


@builder("timed_function")
def build_timed_function(warmup: int, durations: list[float]) -> TimedFunction:
    return TimedFunction(warmup, durations)


def _timer_values(warmup: int, durations: list[float]) -> dict[str, float]:
    """The right answer and what each classic timer mistake returns, in seconds."""
    calls = [SLOW] * warmup + list(durations)
    return {
        "median": statistics.median(durations),
        "mean": statistics.mean(durations),
        "total": sum(durations),
        "clock once": statistics.median(itertools.accumulate(durations)),
        "first calls": statistics.median(calls[: len(durations)]),
        "all calls": statistics.median(calls),
        "cpu": 0.0,
    }


def _low(v: float) -> float:
    return 0.8 * v - 0.001


def _high(v: float) -> float:
    return 1.4 * v + 0.004  # a sleep may overrun (on a busy machine, by a few ms), never underrun


def _close(measured: float, value: float) -> bool:
    return _low(value) <= measured <= _high(value)


def _separated(values: dict[str, float]) -> bool:
    """No value within another's tolerance band: each mistake gives its own number."""
    return not any(_close(a, b) for (ka, a), (kb, b) in itertools.permutations(values.items(), 2))


# (warm-up calls, durations in ms) at which every mistake gives its own number; a drawn case shuffles and stretches one
_TIMER_TEMPLATES = [
    (3, [10, 10, 40, 10, 25]),
    (2, [10, 30, 12, 160, 10, 12]),
    (2, [25, 30, 120, 80, 10]),
    (2, [15, 12, 15, 160, 40, 15]),
    (4, [10, 10, 12, 50, 10]),
]


def _timer_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    setups = [(w, [d / 1e3 for d in ms]) for w, ms in _TIMER_TEMPLATES[:2]]
    warmup, template = rng.choice(_TIMER_TEMPLATES)
    drawn = (warmup, [d / 1e3 for d in template])
    for _ in range(100):
        stretch = rng.uniform(1.0, 1.25)
        durations = [round(d * stretch * 2) / 2e3 for d in rng.sample(template, len(template))]
        if _separated(_timer_values(warmup, durations)):
            drawn = (warmup, durations)
            break
    setups.append(drawn)
    cases = []
    for i, (warmup, durations) in enumerate(setups):
        ms = ", ".join(f"{d * 1e3:g}" for d in durations)
        what = (
            f"time_it(function, warmup={warmup}, repeats={len(durations)}) on a function whose first "
            + (f"{warmup} calls take" if warmup > 1 else "call takes")
            + f" {SLOW * 1e3:g} ms and the next ones {ms} ms"
        )
        function = Build("timed_function", {"warmup": warmup, "durations": durations})
        cases.append(Case((function, warmup, len(durations)), what=what, drawn=i >= 2))
    return cases


_TIMER_HINTS = {
    "mean": "that is the mean of the timed calls; return their median, which one slow call does not drag",
    "total": "that is the total time of the timed calls; return the median time of one call",
    "clock once": (
        "the clock was started once, before the loop, so each time includes every call before it; read the clock "
        "just before and just after each call"
    ),
    "first calls": "the slow first calls were timed; call the function `warmup` times before starting the clock",
    "all calls": "the warm-up calls were timed too; time only the `repeats` calls made after them",
    "cpu": (
        "a time near 0 while each call waits several ms: time.process_time (CPU time) does not count waiting; "
        "measure wall time with time.perf_counter()"
    ),
    "ms": "that is in milliseconds; return seconds",
    "ns": "that is in nanoseconds (time.perf_counter_ns); return seconds",
}


def _timer_judge(case: Case, got, changed) -> None:
    spec, warmup, repeats = case.args
    durations = spec.params["durations"]
    calls = changed.get("function", {}).get("after", {}).get("calls")
    if calls != warmup + repeats:
        missing = " (the warm-up calls are missing)" if calls == repeats else ""
        raise CheckFailed(
            f"the function was called {calls} times{missing}; expected {warmup} untimed warm-up call"
            f"{'s' if warmup > 1 else ''} and then {repeats} timed ones",
            case.what,
            site="calls",
        )
    n = as_number(got)
    if n is None:
        raise CheckFailed(
            f"returned {describe_value(got)}; return one number, the median time of one call in seconds",
            case.what,
            [PRINTED] if got is None else [],
            site="time",
        )
    values = _timer_values(warmup, durations)
    expected = values.pop("median")
    values["ms"], values["ns"] = expected * 1e3, expected * 1e9
    if _close(n, expected):
        _passed("time", set())
        return
    scale = {"ms": 1e3, "ns": 1e9}
    matches = [_TIMER_HINTS[k] for k, v in values.items() if _close(n / scale.get(k, 1), v / scale.get(k, 1))]
    raise CheckFailed(
        f"got {n * 1e3:.3g} ms, expected about {expected * 1e3:.3g} ms (the median of the {repeats} timed calls)",
        case.what,
        matches,
        site="time",
    )


time_it = register(
    Exercise(
        LESSON,
        "time_it",
        function="time_it",
        signature="time_it(function, warmup, repeats)",
        cases=_timer_cases,
        judge=_timer_judge,
        mutable=("function",),
        retries=1,
    )
)


# --- exercise 4: score_memory ------------------------------------------------------------------------------------


def _memory_mistakes(batch, heads, seq, size):
    total = batch * heads * seq * seq * size
    return [
        (batch * seq * seq * size, "every head has its own (seq, seq) matrix: multiply by heads"),
        (heads * seq * seq * size, "every sequence of the batch has its own scores: multiply by batch"),
        (batch * heads * seq * size, "the scores are seq × seq per head: one number per (query, key) pair"),
        (batch * heads * seq * seq, "that counts numbers; multiply by the bytes per number"),
        (total * 8, "that is in bits; return bytes"),
        (total / 2**20, "that is in MiB; return bytes"),
        (total / 1e6, "that is in MB; return bytes"),
        (total / 2**30, "that is in GiB; return bytes"),
    ]


def _memory_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(1, 1, 16384, 2), (3, 8, 256, 4), (5, 12, 1000, 2), (2, 16, 300, 4)]
    while len(setups) < 6:
        setup = (_int(g, 2, 8), _int(g, 2, 16), _int(g, 17, 5000), _pick(g, [1, 2, 4, 8]))
        values = [w for w, _ in _memory_mistakes(*setup)] + [math.prod(setup) * setup[2]]
        if _distinct(values) and _distinct(setup):
            setups.append(setup)
    return [
        Case(s, what="score_memory(batch={}, heads={}, seq={}, bytes_per_number={})".format(*s), drawn=i >= 4)
        for i, s in enumerate(setups)
    ]


def _memory_judge(case: Case, got, changed) -> None:
    batch, heads, seq, size = case.inputs()
    verify_number(
        got,
        batch * heads * seq * seq * size,
        _memory_mistakes(batch, heads, seq, size),
        what=case.what,
        integer=True,
        form_hint="one whole number, the bytes",
    )


score_memory = register(
    Exercise(
        LESSON,
        "score_memory",
        function="score_memory",
        signature="score_memory(batch, heads, seq, bytes_per_number)",
        cases=_memory_cases,
        judge=_memory_judge,
    )
)


# --- exercise 5: longest_seq -------------------------------------------------------------------------------------


def _longest(batch, heads, size, budget) -> int:
    return math.isqrt(budget // (batch * heads * size))


def _longest_mistakes(batch, heads, size, budget):
    best = _longest(batch, heads, size, budget)
    return [
        (
            round(math.sqrt(budget / (batch * heads * size))),
            "round() goes up when the fraction is .5 or more, and then the scores no longer fit: round down "
            "(math.isqrt, or int() of the square root)",
        ),
        (best + 1, "one too many: at that seq the scores no longer fit; take the largest seq that fits"),
        (budget // (batch * heads * size), "the memory grows as seq², not seq: take a square root"),
        (math.isqrt(budget // (batch * size)), "every head needs its own scores: divide the budget by heads too"),
        (math.isqrt(budget // (heads * size)), "every sequence of the batch needs its own scores: divide by batch too"),
        (math.isqrt(budget // (batch * heads)), "each number takes bytes_per_number bytes: divide by it too"),
        (
            math.sqrt(budget / (batch * heads * size)),
            "that is the exact square root; seq is a whole number: the largest one that fits (math.isqrt)",
        ),
    ]


def _longest_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(1, 1, 2, 512 * 2**20), (4, 16, 2, 80 * 2**30), (2, 12, 4, 10**9), (1, 1, 1, 8), (3, 5, 2, 10**6)]
    while len(setups) < 7:
        setup = (_int(g, 2, 8), _int(g, 2, 32), _pick(g, [1, 2, 4, 8]), _int(g, 10**4, 10**11))
        values = [w for w, _ in _longest_mistakes(*setup)[1:]] + [_longest(*setup)]  # round() may be either
        if _distinct(values) and _distinct(setup[:3]):
            setups.append(setup)
    what = "longest_seq(batch={}, heads={}, bytes_per_number={}, budget_bytes={:,})"
    return [Case(s, what=what.format(*s), drawn=i >= 5) for i, s in enumerate(setups)]


def _longest_judge(case: Case, got, changed) -> None:
    batch, heads, size, budget = case.inputs()
    verify_number(
        got,
        _longest(batch, heads, size, budget),
        _longest_mistakes(batch, heads, size, budget),
        what=case.what,
        integer=True,
        form_hint="one whole number, the longest seq",
    )


longest_seq = register(
    Exercise(
        LESSON,
        "longest_seq",
        function="longest_seq",
        signature="longest_seq(batch, heads, bytes_per_number, budget_bytes)",
        cases=_longest_cases,
        judge=_longest_judge,
    )
)
