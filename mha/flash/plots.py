"""Lesson 10's pictures: the running maximum and sum, which blocks a causal kernel visits, memory, the roofline."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from .experiments import slope
from .io import Device
from .tiled import causal_blocks


def running_max_and_sum(scores, steps, ax=None):
    """The scores as they arrive, the running maximum m, and the running sum l of exp(score - m), step by step.

    Args:
        scores: the vector read one element at a time.
        steps: the (m, l) pairs after each element (`mha.flash.online.online_softmax`).
    """
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(11, 3.2))
    left, right = ax
    i = np.arange(1, len(scores) + 1)
    m, l = zip(*steps)
    left.plot(i, scores, "o", color="tab:gray", label="score x_j")
    left.step(i, m, where="post", color="tab:red", label="running maximum m")
    left.set(xlabel="elements read", ylabel="score", title="the running maximum only goes up")
    left.legend(fontsize=8)
    right.step(i, l, where="post", color="tab:blue", marker=".", label="running sum l")
    jumps = [j for j in range(1, len(m)) if m[j] > m[j - 1]]
    right.plot(i[jumps], np.asarray(l)[jumps], "v", color="tab:red", label="a new maximum: l rescaled")
    right.set(xlabel="elements read", ylabel="l = Σ exp(x - m)", title="a new maximum rescales the sum so far")
    right.legend(fontsize=8)
    return ax


def block_map(q_pos: int, k_pos: int, block_q: int, block_k: int, ax=None):
    """Which (query block, key block) pairs a causal kernel skips, computes whole, or computes with the mask."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    rows, cols = -(-q_pos // block_q), -(-k_pos // block_k)
    grid = np.zeros((rows, cols))  # 0 skipped, 1 whole, 2 masked
    for r in range(rows):
        visit, masked = causal_blocks(r * block_q, min((r + 1) * block_q, q_pos), k_pos, block_k)
        for s in visit:
            grid[r, s // block_k] = 2 if s in masked else 1
    colours = ["whitesmoke", "tab:blue", "tab:orange"]
    ax.imshow(grid, cmap=ListedColormap(colours), vmin=0, vmax=2)

    def count(n, block, what):  # "64 keys", or "64 keys, the last 44" when the length is not a multiple
        last = n - (-(-n // block) - 1) * block
        return f"{block} {what}" + (f", the last {last}" if last != block else "")

    ax.set(xlabel=f"key block ({count(k_pos, block_k, 'keys')})",
           ylabel=f"query block ({count(q_pos, block_q, 'queries')})")  # fmt: skip
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    labels = ["skipped: every key after every query", "computed whole", "computed with the mask (diagonal)"]
    ax.legend(handles=[Patch(color=c, label=t) for c, t in zip(colours, labels)], fontsize=8, loc="lower left",
              bbox_to_anchor=(1.02, 0.0))  # fmt: skip
    ax.set_title(f"causal, q_pos = k_pos = {q_pos}" if q_pos == k_pos else f"causal, q_pos {q_pos}, k_pos {k_pos}")
    return ax


def memory_vs_seq(rows, ax=None):
    """Peak memory of the tiled loop and of attention holding its weights, against seq, on log-log axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    seqs = [r["seq"] for r in rows]
    lines = (("weights", "weights held", "tab:red", "o"), ("tiled", "tiled", "tab:blue", "s"))
    for key, label, colour, marker in lines:
        values = [r[key] / 2**20 for r in rows]
        ax.loglog(seqs, values, marker=marker, color=colour, label=f"{label} (slope {slope(seqs, values):.2f})")
    ax.set(xlabel="seq", ylabel="peak memory (MiB)", title="memory of one call against seq")
    ax.set_xticks(seqs, [str(s) for s in seqs])
    ax.xaxis.set_minor_formatter(NullFormatter())  # the log axis's own labels would print over the lengths
    ax.legend(fontsize=8)
    return ax


def roofline(device: Device, points: dict, ax=None):
    """The device's roofline (attainable FLOP/s against FLOPs per byte) and named kernels on it.

    Args:
        device: its peak and bandwidth.
        points: name -> FLOPs per byte of a kernel.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    intensity = np.logspace(0, 4.2, 200)
    ax.loglog(intensity, np.minimum(device.peak, intensity * device.bandwidth) / 1e12, color="black", lw=1)
    ax.axvline(device.balance, color="gray", ls=":", lw=1)
    ax.annotate(f"balance point {device.balance:.0f} FLOP/byte", (device.balance, device.peak / 1e12 / 30),
                xytext=(4, 0), textcoords="offset points", fontsize=8, color="gray")  # fmt: skip
    # the first point hollow and larger: two kernels at the same intensity stay visible, one inside the other
    styles = iter([("o", 15, "none"), ("s", 8, None), ("^", 9, None), ("D", 8, None)])
    for name, value in points.items():
        marker, size, face = next(styles)
        attainable = min(device.peak, value * device.bandwidth) / 1e12
        ax.loglog([value], [attainable], marker, markersize=size, markerfacecolor=face, markeredgewidth=2,
                  label=f"{name}: {value:.0f} FLOP/byte")  # fmt: skip
    ax.set(xlabel="FLOPs per byte moved to and from main memory", ylabel="attainable TFLOP/s",
           title=f"{device.name}: what the roofline allows")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    return ax
