"""Wrong answers to lesson 06's exercises."""

import math
import statistics
import time

import numpy as np


def flops_one_per_multiply_add(batch, seq, d_model, heads, causal):
    core = 2 * batch * seq * seq * d_model
    return 4 * batch * seq * d_model * d_model + (core // 2 if causal else core)


def flops_core_per_head(batch, seq, d_model, heads, causal):
    core = 4 * batch * seq * seq * (d_model // heads)
    return 8 * batch * seq * d_model * d_model + (core // 2 if causal else core)


def flops_ignore_causal(batch, seq, d_model, heads, causal):
    return 8 * batch * seq * d_model * d_model + 4 * batch * seq * seq * d_model


def flops_forgot_weights_times_v(batch, seq, d_model, heads, causal):
    core = 2 * batch * seq * seq * d_model
    return 8 * batch * seq * d_model * d_model + (core // 2 if causal else core)


def flops_no_core(batch, seq, d_model, heads, causal):
    return 8 * batch * seq * d_model * d_model


def flops_three_projections(batch, seq, d_model, heads, causal):
    core = 4 * batch * seq * seq * d_model
    return 6 * batch * seq * d_model * d_model + (core // 2 if causal else core)


def flops_causal_halves_everything(batch, seq, d_model, heads, causal):
    total = 8 * batch * seq * d_model * d_model + 4 * batch * seq * seq * d_model
    return total // 2 if causal else total


def flops_in_two_parts(batch, seq, d_model, heads, causal):
    core = 4 * batch * seq * seq * d_model
    return 8 * batch * seq * d_model * d_model, core // 2 if causal else core


def mean_and_iqr(times):
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return statistics.mean(times), q3 - q1


def median_and_exclusive_iqr(times):
    q1, q2, q3 = statistics.quantiles(times, n=4)
    return statistics.median(times), q3 - q1


def median_and_range(times):
    return statistics.median(times), max(times) - min(times)


def median_and_std(times):
    return statistics.median(times), statistics.pstdev(times)


def median_sorting_in_place(times):
    times.sort()
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q2, q3 - q1


def median_and_quartiles(times):
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q2, q1, q3


def median_unsorted_middle(times):
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return times[len(times) // 2], q3 - q1


def mean_numpy_list(times):
    q1, q3 = np.percentile(times, [25, 75])
    return [np.mean(times), q3 - q1]


def _timed(function, repeats, clock=time.perf_counter):
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return times


def timer_without_warmup(function, warmup, repeats):
    times = _timed(function, warmup + repeats)
    return statistics.median(times[:repeats])


def timer_skips_calls(function, warmup, repeats):
    return statistics.median(_timed(function, repeats))


def timer_times_the_warmup(function, warmup, repeats):
    return statistics.median(_timed(function, warmup + repeats))


def timer_total(function, warmup, repeats):
    for _ in range(warmup):
        function()
    return sum(_timed(function, repeats))


def timer_mean(function, warmup, repeats):
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def timer_milliseconds(function, warmup, repeats):
    for _ in range(warmup):
        function()
    return 1e3 * statistics.median(_timed(function, repeats))


def timer_process_time(function, warmup, repeats):
    for _ in range(warmup):
        function()
    return statistics.median(_timed(function, repeats, clock=time.process_time))


def timer_clock_started_once(function, warmup, repeats):
    for _ in range(warmup):
        function()
    times, start = [], time.perf_counter()
    for _ in range(repeats):
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timer_nanoseconds(function, warmup, repeats):
    for _ in range(warmup):
        function()
    return statistics.median(_timed(function, repeats, clock=time.perf_counter_ns))


def timer_returns_the_times(function, warmup, repeats):
    for _ in range(warmup):
        function()
    return _timed(function, repeats)


def memory_without_heads(batch, heads, seq, size):
    return batch * seq * seq * size


def memory_linear(batch, heads, seq, size):
    return batch * heads * seq * size


def memory_in_numbers(batch, heads, seq, size):
    return batch * heads * seq * seq


def memory_in_mib(batch, heads, seq, size):
    return batch * heads * seq * seq * size / 2**20


def memory_without_batch(batch, heads, seq, size):
    return heads * seq * seq * size


def memory_in_bits(batch, heads, seq, size):
    return 8 * batch * heads * seq * seq * size


def longest_no_square_root(batch, heads, size, budget):
    return budget // (batch * heads * size)


def longest_without_heads(batch, heads, size, budget):
    return int((budget / (batch * size)) ** 0.5)


def longest_rounded(batch, heads, size, budget):
    return round((budget / (batch * heads * size)) ** 0.5)


def longest_one_too_many(batch, heads, size, budget):
    seq = int((budget / (batch * heads * size)) ** 0.5)
    while batch * heads * seq * seq * size <= budget:
        seq += 1
    return seq


def longest_forgot_bytes(batch, heads, size, budget):
    return math.isqrt(budget // (batch * heads))


def longest_not_rounded(batch, heads, size, budget):
    return math.sqrt(budget / (batch * heads * size))


WRONG = [
    ("layer_flops", flops_one_per_multiply_add, "a multiply-add is 2 FLOPs", "classic"),
    ("layer_flops", flops_core_per_head, "the core's cost does not shrink with heads", "classic"),
    ("layer_flops", flops_ignore_causal, "count half the core", "classic"),
    ("layer_flops", flops_no_core, "you left out the attention core", "classic"),
    ("layer_flops", flops_forgot_weights_times_v, "the core has two products", "classic"),
    ("layer_flops", flops_three_projections, "there are four projections", "coinciding sizes"),
    ("layer_flops", flops_causal_halves_everything, "causal halves the core only", "coinciding sizes"),
    ("layer_flops", flops_in_two_parts, "returned a tuple of 2 numbers; expected one whole number", "crash"),
    ("median_iqr", mean_and_iqr, "that is the mean", "classic"),
    ("median_iqr", median_and_range, "that is the whole range", "classic"),
    ("median_iqr", median_and_exclusive_iqr, 'defaults to method="exclusive"', "classic"),
    ("median_iqr", median_and_std, "that is the standard deviation", "classic"),
    ("median_iqr", median_sorting_in_place, "`times.sort()` sorts it in place", "side effect"),
    ("median_iqr", median_and_quartiles, "returned a tuple of 3 numbers; return two things", "crash"),
    ("median_iqr", median_unsorted_middle, "that is the middle entry of the list as given", "uniform cases"),
    ("median_iqr", mean_numpy_list, "that is the mean", "form"),
    ("time_it", timer_without_warmup, "the slow first calls were timed", "timer"),
    ("time_it", timer_skips_calls, "the warm-up calls are missing", "timer"),
    ("time_it", timer_times_the_warmup, "the warm-up calls were timed too", "timer"),
    ("time_it", timer_total, "that is the total time of the timed calls", "timer"),
    ("time_it", timer_mean, "that is the mean of the timed calls", "timer"),
    ("time_it", timer_milliseconds, "that is in milliseconds; return seconds", "timer"),
    ("time_it", timer_process_time, "time.process_time (CPU time) does not count waiting", "timer"),
    ("time_it", timer_clock_started_once, "the clock was started once, before the loop", "timer"),
    ("time_it", timer_nanoseconds, "that is in nanoseconds", "timer"),
    ("time_it", timer_returns_the_times, "return one number, the median time of one call", "crash"),
    ("score_memory", memory_without_heads, "multiply by heads", "classic"),
    ("score_memory", memory_linear, "one number per (query, key) pair", "classic"),
    ("score_memory", memory_in_numbers, "multiply by the bytes per number", "classic"),
    ("score_memory", memory_in_mib, "that is in MiB", "classic"),
    ("score_memory", memory_without_batch, "multiply by batch", "coinciding sizes"),
    ("score_memory", memory_in_bits, "that is in bits", "coinciding sizes"),
    ("longest_seq", longest_no_square_root, "take a square root", "classic"),
    ("longest_seq", longest_without_heads, "divide the budget by heads too", "classic"),
    ("longest_seq", longest_one_too_many, "one too many", "classic"),
    ("longest_seq", longest_rounded, "round() goes up when the fraction is .5 or more", "coinciding sizes"),
    ("longest_seq", longest_forgot_bytes, "divide by it too", "coinciding sizes"),
    ("longest_seq", longest_not_rounded, "seq is a whole number", "crash"),
]
