"""Classic mistakes in lesson 06's exercises."""

import statistics
import time


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


def timer_without_warmup(function, warmup, repeats):
    times = []
    for _ in range(warmup + repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times[:repeats])


def timer_skips_calls(function, warmup, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timer_milliseconds_total(function, warmup, repeats):
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats / 10


def memory_without_heads(batch, heads, seq, size):
    return batch * seq * seq * size


def memory_linear(batch, heads, seq, size):
    return batch * heads * seq * size


def memory_in_numbers(batch, heads, seq, size):
    return batch * heads * seq * seq


def memory_in_mib(batch, heads, seq, size):
    return batch * heads * seq * seq * size / 2**20


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


WRONG = [
    ("layer_flops", flops_one_per_multiply_add, "a multiply-add is 2 FLOPs"),
    ("layer_flops", flops_core_per_head, "the core's cost does not shrink with heads"),
    ("layer_flops", flops_ignore_causal, "count half the core"),
    ("layer_flops", flops_no_core, "you left out the attention core"),
    ("layer_flops", flops_forgot_weights_times_v, "the core has two products"),
    ("median_iqr", mean_and_iqr, "that is the mean"),
    ("median_iqr", median_and_range, "that is the whole range"),
    ("median_iqr", median_and_exclusive_iqr, 'defaults to method="exclusive"'),
    ("median_iqr", median_and_std, "that is the standard deviation"),
    ("time_it", timer_without_warmup, "the slow first calls were timed"),
    ("time_it", timer_skips_calls, "expected 5 untimed warm-up calls"),
    ("time_it", timer_milliseconds_total, "less than one call takes"),
    ("score_memory", memory_without_heads, "multiply by heads"),
    ("score_memory", memory_linear, "one number per (query, key) pair"),
    ("score_memory", memory_in_numbers, "multiply by the bytes per number"),
    ("score_memory", memory_in_mib, "that is in MiB"),
    ("longest_seq", longest_no_square_root, "take a square root"),
    ("longest_seq", longest_without_heads, "divide the budget by heads too"),
    ("longest_seq", longest_one_too_many, "one too many"),
    ("longest_seq", longest_rounded, "one too many"),
]
