"""Pictures of benchmark results (`mha.bench.results.Record`s), live or recorded, in one style.

Every function draws on a matplotlib Axes (a new figure when none is given) and returns it. Nothing here measures:
pass the records in.
"""

import math

import matplotlib.pyplot as plt
import numpy as np

from ..plots import LINE_COLOURS, line_style
from .results import TARGETS

# bars told apart by hatch as well as by colour (the course's colour-blind-safe colours)
BAR_HATCHES = ("", "//", "..", "xx")


def _axes(ax, size=(5.2, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _series(records, x: str, y: str, mode: str):
    """implementation -> (xs, ys) over the timed records of this mode, sorted by x."""
    series = {}
    for r in records:
        if r.mode == mode and r.status == "timed" and getattr(r, y):
            series.setdefault(r.implementation, []).append((getattr(r, x), getattr(r, y)))
    return {name: tuple(zip(*sorted(points))) for name, points in series.items()}


def slope(xs, ys, last: int = 3) -> float:
    """The log-log slope over the last points: 2 when y grows as x², 1 when it grows as x."""
    xs, ys = np.log(xs[-last:]), np.log(ys[-last:])
    return float(np.polyfit(xs, ys, 1)[0])


def _powers_of_two(ax, xs):
    """A log-2 x axis whose ticks are the values measured, written plainly (64, 128, ...)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.minorticks_off()


def _guide(ax, xs, ys, power: int, label: str):
    """A dashed line of the given slope through the last point (x, y)."""
    x = np.array([xs[0], xs[-1]], dtype=float)
    ax.plot(x, ys[-1] * (x / xs[-1]) ** power, "k--" if power == 2 else "k:", lw=1, label=label)


def time_vs_seq(records, mode: str = "forward", ax=None, title=None):
    """Median time against seq, log-log; a dashed slope-2 guide. The legend gives each curve's slope at the end."""
    ax = _axes(ax)
    series = _series(records, "seq", "median_s", mode)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.loglog(xs, ys, **line_style(i), label=f"{name} (slope {slope(xs, ys):.1f})")
    if series:
        xs, ys = max(series.values(), key=lambda s: s[1][-1])
        _guide(ax, xs, ys, 2, "seq² (slope 2)")
        _powers_of_two(ax, xs)
    ax.set(xlabel="seq", ylabel="seconds per call", title=title or f"time against seq, {mode}")
    ax.legend(fontsize=7)
    return ax


def time_vs_heads(records, mode: str = "forward", ax=None, title=None):
    """Median time against the number of heads at fixed d_model."""
    ax = _axes(ax)
    for i, (name, (xs, ys)) in enumerate(_series(records, "heads", "median_s", mode).items()):
        ax.loglog(xs, ys, **line_style(i), label=name)
        _powers_of_two(ax, xs)
    ax.set(xlabel="heads (d_model fixed)", ylabel="seconds per call", title=title or "time against heads")
    ax.legend(fontsize=8)
    return ax


def memory_vs_seq(records, mode: str = "forward", ax=None, title=None):
    """Peak memory against seq, log-log, with slope-2 and slope-1 guides."""
    ax = _axes(ax)
    series = _series(records, "seq", "peak_memory_bytes", mode)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.loglog(xs, np.array(ys) / 2**20, **line_style(i), label=f"{name} (slope {slope(xs, ys):.1f})")
    if series:
        top = max(series.values(), key=lambda s: s[1][-1])
        low = min(series.values(), key=lambda s: s[1][-1])
        _guide(ax, top[0], np.array(top[1]) / 2**20, 2, "seq² (slope 2)")
        _guide(ax, low[0], np.array(low[1]) / 2**20, 1, "seq (slope 1)")
        _powers_of_two(ax, top[0])
    ax.set(xlabel="seq", ylabel="peak memory (MiB)", title=title or f"memory against seq, {mode}")
    ax.legend(fontsize=7)
    return ax


def share_of_peak(records, ax=None, title=None):
    """Share of the peak per implementation, one bar per mode, for the timed records given (one shape); a black tick
    marks the target of an implementation that has one on this kind of device (`mha.bench.results.TARGETS`)."""
    modes = sorted({r.mode for r in records}, key=len)
    names = list(dict.fromkeys(r.implementation for r in records if r.status == "timed"))
    ax = _axes(ax, (6.4, 0.32 * len(names) + 1.4))
    height = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        share = {r.implementation: r.share_of_peak for r in records if r.mode == mode and r.status == "timed"}
        ys = np.arange(len(names)) + i * height
        colour, hatch = LINE_COLOURS[i % len(LINE_COLOURS)], BAR_HATCHES[i % len(BAR_HATCHES)]
        shares = [100 * share.get(n, math.nan) for n in names]
        ax.barh(ys, shares, height, color=colour, hatch=hatch, edgecolor="white", label=mode)
    middle = np.arange(len(names)) + height * (len(modes) - 1) / 2
    device_type = "cpu" if records and records[0].device.startswith("CPU") else "cuda"
    for t in TARGETS:
        if t.device_type == device_type and t.implementation in names:
            i = middle[names.index(t.implementation)]
            ax.plot([100 * t.share] * 2, [i - 0.45, i + 0.45], "k-", lw=2)
    ax.set_yticks(middle, names)
    ax.invert_yaxis()
    ax.set(xlabel="% of peak (black tick: the target)", title=title or "achieved share of the peak")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(modes))
    return ax


def mistakes_chart(mistakes, ax=None):
    """How far off each mistake's wrong measurement is: wrong / right, one bar per mistake that ran (log scale)."""
    ran = [m for m in mistakes if not m.skipped]
    ax = _axes(ax, (7.5, 0.45 * len(ran) + 1.2))
    factors = [m.wrong_value / m.right_value for m in ran]
    slower, faster = LINE_COLOURS[1], LINE_COLOURS[0]  # vermillion and blue: apart in any colour vision
    ax.barh(range(len(ran)), factors, 0.6, color=[slower if f > 1 else faster for f in factors])
    for i, f in enumerate(factors):
        ax.text(f, i, f" {f:.2g}×", va="center", fontsize=8)
    ax.axvline(1, color="black", lw=1)
    ax.set_yticks(range(len(ran)), [m.name for m in ran])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set(
        xlabel="wrong measurement / right measurement (1 = no harm done)",
        title="how far each timing mistake is off, on this machine",
    )
    return ax
