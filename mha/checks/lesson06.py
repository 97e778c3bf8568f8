"""Checks for lesson 06, timing. Use: `from mha.checks import lesson06 as check`."""

import statistics
import time

from ..bench.flops import attention_flops as reference_flops
from ._legacy import CheckFailed, call, diagnose, exercise

LESSON = "06"


@exercise(LESSON, "layer_flops")
def layer_flops(fn) -> int:
    """fn(batch, seq, d_model, heads, causal) -> FLOPs of one forward pass of a self-attention layer."""
    cases = [(2, 256, 512, 8, False), (1, 128, 64, 1, False), (4, 64, 96, 12, True), (3, 10, 16, 2, True)]
    for batch, seq, d_model, heads, causal in cases:
        what = f"layer_flops(batch={batch}, seq={seq}, d_model={d_model}, heads={heads}, causal={causal})"
        got = int(call(fn, batch, seq, d_model, heads, causal))
        projections = 8 * batch * seq * d_model**2
        core = 4 * batch * seq**2 * d_model // (2 if causal else 1)
        diagnose(
            got,
            reference_flops(batch, seq, d_model, causal),
            [
                (projections // 2 + core // 2, "a multiply-add is 2 FLOPs: an (m, k) @ (k, n) product costs 2·m·k·n"),
                (projections + core // 2, "the core has two products, Q Kᵀ and weights @ V, each 2·batch·seq²·d_model"),
                (
                    projections + core // heads,
                    "the core's cost does not shrink with heads: each head works on d_head = "
                    "d_model / heads features, and there are heads of them",
                ),
                (
                    projections + 4 * batch * seq**2 * d_model,
                    "with causal=True half of the scores are never needed: count half the core",
                ),
                ((projections + 4 * batch * seq**2 * d_model) // 2, "causal halves the core only, not the projections"),
                (projections, "you left out the attention core (q @ k^T and weights @ v): 4·batch·seq²·d_model"),
                (core, "you left out the four projections (W_Q, W_K, W_V, W_O): 8·batch·seq·d_model²"),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "median_iqr")
def median_iqr(fn) -> int:
    """fn(times: list of seconds) -> (median, interquartile range = 75th - 25th percentile)."""
    cases = [[0.010, 0.012, 0.011, 0.013, 0.050], [1.0, 2.0, 3.0, 4.0], [0.5, 0.1, 0.3, 0.2, 0.4, 0.9, 0.7]]
    for times in cases:
        what = f"median_iqr({times})"
        got = call(fn, list(times))
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise CheckFailed(f"{what}: return two numbers, (median, iqr); got {got!r}")
        median, iqr = float(got[0]), float(got[1])
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
        diagnose(
            median,
            statistics.median(times),
            [
                (
                    statistics.mean(times),
                    "that is the mean; a timing's typical value is its median, which one slow run "
                    "(another program, a page fault) does not drag",
                ),
            ],
            f"{what}, the median",
        )
        e1, _, e3 = statistics.quantiles(times, n=4)  # the default method, "exclusive"
        diagnose(
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
                    "that is the whole range, max - min; the IQR is the 75th percentile minus the "
                    "25th, which ignores the extremes",
                ),
                (
                    statistics.pstdev(times),
                    "that is the standard deviation; the IQR is the 75th minus the 25th percentile",
                ),
                (
                    statistics.stdev(times),
                    "that is the standard deviation; the IQR is the 75th minus the 25th percentile",
                ),
            ],
            f"{what}, the IQR (percentiles interpolated linearly, as numpy.percentile does)",
        )
    return len(cases)


class _SlowStart:
    """A function whose first calls are slow, as a first call on a new size is: 40 ms three times, then 2 ms."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(0.040 if self.calls <= 3 else 0.002)


@exercise(LESSON, "time_it")
def time_it(fn) -> int:
    """fn(function, warmup, repeats) -> median seconds of `repeats` calls made after `warmup` untimed calls."""
    slow = _SlowStart()
    what = "time_it(function, warmup=5, repeats=5) on a function whose first 3 calls take 40 ms, later ones 2 ms"
    got = float(call(fn, slow, 5, 5))
    if slow.calls != 10:
        raise CheckFailed(
            f"{what}: the function was called {slow.calls} times; expected 5 untimed warm-up calls "
            f"and then 5 timed ones"
        )
    if got > 0.02:
        raise CheckFailed(
            f"{what}: got {got * 1e3:.1f} ms: the slow first calls were timed; call the function "
            f"`warmup` times before starting the clock"
        )
    if got < 0.0015:
        raise CheckFailed(
            f"{what}: got {got * 1e3:.2f} ms, less than one call takes (2 ms): return seconds per "
            f"call (the median of the individual timings), not a total divided wrongly or milliseconds"
        )
    return 1


@exercise(LESSON, "score_memory")
def score_memory(fn) -> int:
    """fn(batch, heads, seq, bytes_per_number) -> bytes of the (batch, heads, seq, seq) score matrix."""
    cases = [(1, 1, 16384, 2), (4, 8, 256, 4), (2, 12, 1000, 2)]
    for batch, heads, seq, size in cases:
        what = f"score_memory(batch={batch}, heads={heads}, seq={seq}, bytes_per_number={size})"
        got = int(call(fn, batch, heads, seq, size))
        diagnose(
            got,
            batch * heads * seq * seq * size,
            [
                (batch * seq * seq * size, "every head has its own (seq, seq) matrix: multiply by heads"),
                (batch * heads * seq * size, "the scores are seq × seq per head: one number per (query, key) pair"),
                (batch * heads * seq * seq, "that counts numbers; multiply by the bytes per number"),
                (batch * heads * seq * seq * size / 2**20, "that is in MiB; return bytes"),
                (batch * heads * seq * seq * size / 1e6, "that is in MB; return bytes"),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "longest_seq")
def longest_seq(fn) -> int:
    """fn(batch, heads, bytes_per_number, budget_bytes) -> the largest seq whose score matrix fits the budget."""
    cases = [(1, 1, 2, 512 * 2**20), (4, 16, 2, 80 * 2**30), (2, 12, 4, 10**9), (1, 1, 1, 8)]
    for batch, heads, size, budget in cases:
        what = f"longest_seq(batch={batch}, heads={heads}, bytes_per_number={size}, budget_bytes={budget:,})"
        got = int(call(fn, batch, heads, size, budget))
        best = int((budget / (batch * heads * size)) ** 0.5)
        while batch * heads * (best + 1) ** 2 * size <= budget:
            best += 1
        while batch * heads * best**2 * size > budget:
            best -= 1
        diagnose(
            got,
            best,
            [
                (best + 1, "one too many: at that seq the scores no longer fit; take the largest seq that fits"),
                (budget // (batch * heads * size), "the memory grows as seq², not seq: take a square root"),
                (
                    int((budget / (batch * size)) ** 0.5),
                    "every head needs its own scores: divide the budget by heads too",
                ),
            ],
            what,
        )
    return len(cases)
