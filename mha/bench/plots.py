"""Pictures of benchmark results (`mha.bench.results.Record`s), live or recorded, in one style.

Every function draws on a matplotlib Axes (a new figure when none is given) and returns it. Nothing here measures:
pass the records in.
"""

import math

import matplotlib.pyplot as plt
import numpy as np


def _axes(ax, size=(5.2, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _series(records, x: str, y: str, mode: str):
    """label -> (xs, ys) over the timed records of this mode, sorted by x. The label is the implementation, with
    d_head and the mask added when the records hold several (e.g. the GPU sweep over d_head 64 and 128)."""
    timed = [r for r in records if r.mode == mode and r.status == "timed" and getattr(r, y)]
    split_d_head = len({r.d_head for r in timed}) > 1 and x != "heads"
    split_causal = len({r.causal for r in timed}) > 1
    series = {}
    for r in timed:
        label = r.implementation + (f", d_head {r.d_head}" if split_d_head else "")
        label += ", causal" if split_causal and r.causal else ""
        series.setdefault(label, []).append((getattr(r, x), getattr(r, y)))
    return {label: tuple(zip(*sorted(points))) for label, points in series.items()}


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
    for name, (xs, ys) in series.items():
        ax.loglog(xs, ys, "o-", label=f"{name} (slope {slope(xs, ys):.1f})")
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
    for name, (xs, ys) in _series(records, "heads", "median_s", mode).items():
        ax.loglog(xs, ys, "o-", label=name)
        _powers_of_two(ax, xs)
    ax.set(xlabel="heads (d_model fixed)", ylabel="seconds per call", title=title or "time against heads")
    ax.legend(fontsize=8)
    return ax


def memory_vs_seq(records, mode: str = "forward", ax=None, title=None):
    """Peak memory against seq, log-log, with slope-2 and slope-1 guides."""
    ax = _axes(ax)
    series = _series(records, "seq", "peak_memory_bytes", mode)
    for name, (xs, ys) in series.items():
        ax.loglog(xs, np.array(ys) / 2**20, "o-", label=f"{name} (slope {slope(xs, ys):.1f})")
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
    """Share of the peak per implementation, one bar per mode, for the timed records given (one shape)."""
    modes = sorted({r.mode for r in records}, key=len)
    names = list(dict.fromkeys(r.implementation for r in records if r.status == "timed"))
    ax = _axes(ax, (6.4, 0.32 * len(names) + 1.4))
    height = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        share = {r.implementation: r.share_of_peak for r in records if r.mode == mode and r.status == "timed"}
        ys = np.arange(len(names)) + i * height
        ax.barh(ys, [100 * share.get(n, math.nan) for n in names], height, label=mode)
    ax.set_yticks(np.arange(len(names)) + height * (len(modes) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set(xlabel="% of peak", title=title or "achieved share of the peak")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(modes))
    return ax


def figures_chart(found, ax=None, title="figures to reach"):
    """Each figure's measured value against its target: green when reached."""
    ax = _axes(ax, (6.4, 0.5 * len(found) + 1.2))
    for i, f in enumerate(found):
        target = float(f.target.split()[-1])
        ax.barh(i, f.value, color="tab:green" if f.reached else "tab:red")
        ax.plot([target, target], [i - 0.4, i + 0.4], "k-", lw=2)
        ax.text(f.value, i, f"  {f.value:.2f} (target {f.target})", va="center", fontsize=8)
    ax.set_yticks(range(len(found)), [f"{f.name}\n{f.where.split(':')[0]}, {_brief(f.where)}" for f in found])
    ax.invert_yaxis()
    ax.set(title=title)
    ax.set_xlim(0, max([f.value for f in found] + [float(f.target.split()[-1]) for f in found]) * 1.6)
    return ax


def _brief(where: str) -> str:
    return "causal" if "· causal" in where else "not causal"


def ratios_vs_seq(records, ax=None, title=None):
    """The two CPU figures to reach against seq: batched / sdpa (target at most 1.25), core/hand / core/sdpa (at
    least 1.5), forward, one curve per causal setting."""
    ax = _axes(ax)
    d_heads = sorted({r.d_head for r in records})
    for d_head in d_heads:
        for causal, style in ((False, "o-"), (True, "s--")):
            group = [r for r in records if r.causal == causal and r.d_head == d_head]
            series = _series(group, "seq", "median_s", "forward")
            for num, den, color in (("batched", "sdpa", "tab:blue"), ("core/hand", "core/sdpa", "tab:orange")):
                if num in series and den in series and series[num][0] == series[den][0]:
                    xs = series[num][0]
                    ratio = np.array(series[num][1]) / np.array(series[den][1])
                    label = f"{num} / {den}" + (f", d_head {d_head}" if len(d_heads) > 1 else "")
                    ax.semilogx(xs, ratio, style, color=color, label=label + (", causal" if causal else ""))
                    _powers_of_two(ax, xs)
    ax.axhline(1.25, color="tab:blue", lw=0.8, ls=":", label="batched / sdpa at most 1.25")
    ax.axhline(1.5, color="tab:orange", lw=0.8, ls=":", label="core/hand / core/sdpa at least 1.5")
    ax.set(xlabel="seq", ylabel="ratio of times", title=title or "the figures to reach, against seq")
    ax.legend(fontsize=7)
    return ax


def mistakes_chart(mistakes, ax=None):
    """How far off each mistake's wrong measurement is: wrong / right, one bar per mistake that ran (log scale)."""
    ran = [m for m in mistakes if not m.skipped]
    ax = _axes(ax, (7.5, 0.45 * len(ran) + 1.2))
    factors = [m.wrong_value / m.right_value for m in ran]
    ax.barh(range(len(ran)), factors, 0.6, color=["tab:red" if f > 1 else "tab:blue" for f in factors])
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
