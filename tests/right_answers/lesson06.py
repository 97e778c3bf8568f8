"""Right answers to lesson 06's exercises, in other forms than the solutions'."""

import math
import statistics
import time
import timeit

import numpy as np


def flops_float(batch, seq, d_model, heads, causal):
    d_head = d_model / heads
    projections = 4 * 2 * batch * seq * d_model * d_model
    core = heads * 2 * (2 * batch * seq * seq * d_head)
    return float(projections + core * (0.5 if causal else 1.0))


def flops_numpy(batch, seq, d_model, heads, causal):
    return np.int64(8 * batch * seq * d_model**2) + np.int64(4 * batch * seq**2 * d_model // (2 if causal else 1))


def spread_numpy(times):
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return [median, q3 - q1]


def spread_array(times):
    q1, median, q3 = np.percentile(np.array(times), [25, 50, 75])
    return np.array([median, q3 - q1])


def spread_by_hand(times):
    ordered = sorted(times)
    n = len(ordered)

    def percentile(p):
        x = p * (n - 1)
        low = math.floor(x)
        high = min(low + 1, n - 1)
        return ordered[low] + (x - low) * (ordered[high] - ordered[low])

    return percentile(0.5), percentile(0.75) - percentile(0.25)


def timer_wall_clock(function, warmup, repeats):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.time()
        function()
        times.append(time.time() - start)
    return statistics.median(times)


def timer_timeit(function, warmup, repeats):
    timer = timeit.Timer(function)
    timer.timeit(number=warmup)
    return float(np.median(timer.repeat(repeat=repeats, number=1)))


def memory_numpy(batch, heads, seq, bytes_per_number):
    return np.prod([batch, heads, seq, seq, bytes_per_number])


def memory_float(batch, heads, seq, bytes_per_number):
    return float(batch * heads) * seq**2 * bytes_per_number


def longest_search(batch, heads, bytes_per_number, budget_bytes):
    seq = int(math.sqrt(budget_bytes / (batch * heads * bytes_per_number)))
    while batch * heads * (seq + 1) ** 2 * bytes_per_number <= budget_bytes:
        seq += 1
    while seq > 0 and batch * heads * seq**2 * bytes_per_number > budget_bytes:
        seq -= 1
    return seq


def longest_floor(batch, heads, bytes_per_number, budget_bytes):
    return np.int64(np.floor(np.sqrt(budget_bytes // (batch * heads * bytes_per_number))))


RIGHT = [
    ("layer_flops", flops_float),
    ("layer_flops", flops_numpy),
    ("median_iqr", spread_numpy),
    ("median_iqr", spread_array),
    ("median_iqr", spread_by_hand),
    ("time_it", timer_wall_clock),
    ("time_it", timer_timeit),
    ("score_memory", memory_numpy),
    ("score_memory", memory_float),
    ("longest_seq", longest_search),
    ("longest_seq", longest_floor),
]
