"""The pictures of lesson 07: time per token, cache sizes, accuracy and embeddings against kv_heads, decoding speed.

Each function draws what it is given (records from `speed`, `configs`, `sharing`, `mha.pretrained.kv_pooling`) on a
new figure and returns its Axes; nothing here computes a result.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..plots import line_style
from .speed import slopes


def per_token(rows: list[dict], title: str = "time of the next token", ax=None):
    """Time of the next token against context length, with and without the cache, log-log, with slopes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    contexts = [r["context"] for r in rows]
    for key, label, colour in (
        ("no_cache_s", "no cache: every position again", "tab:red"),
        ("cache_s", "KV cache: one position", "tab:blue"),
    ):
        seconds = [r[key] for r in rows]
        slope = slopes(contexts, seconds) if len(rows) >= 3 else float("nan")
        ax.plot(contexts, np.array(seconds) * 1e3, "o-", color=colour, label=f"{label} (slope {slope:.2f})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="context length (tokens before the new one)",
        ylabel="milliseconds per new token",
        title=title,
    )
    ax.set_xticks(contexts, [str(c) for c in contexts])
    ax.legend(fontsize=8)
    return ax


def _marks(row: dict) -> str:
    """The cache table's marks: + past the context the model was published for, * a sliding window caps it."""
    return ("+" if row["context"] > row["context_trained"] else "") + ("*" if row["context"] > row["held"] else "")


def cache_sizes(rows: list[dict], context: int, ax=None):
    """Bytes of one sequence's cache at `context` tokens: as published, as MHA and as MQA, per model (log scale).

    A model past the context it was published for gets a + after its name and hatched bars (a what-if); a model
    whose sliding window caps its cache gets a *; a note under the axes says so, as the table does.
    """
    rows = [r for r in rows if r["context"] == context]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(rows))
    for offset, key, label, colour in (
        (-0.27, "bytes_mha", "as MHA (kv_heads = heads)", "tab:red"),
        (0.0, "bytes", "as published", "tab:purple"),
        (0.27, "bytes_mqa", "as MQA (kv_heads = 1)", "tab:blue"),
    ):
        bars = ax.bar(x + offset, [r[key] / 2**30 for r in rows], width=0.27, color=colour, label=label)
        for bar, row in zip(bars, rows):
            if "+" in _marks(row):
                bar.set_hatch("//")
                bar.set_edgecolor("white")
    ax.set_xticks(x, [f"{r['name']}{_marks(r)}\n{r['kind']}" for r in rows], fontsize=8)
    ax.set(yscale="log", ylabel="GiB per sequence", title=f"KV cache of one sequence of {context:,} tokens, bfloat16")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the legend above the tallest bar
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    notes = []
    if any("+" in _marks(r) for r in rows):
        notes.append("+ (hatched): longer than the model was published for, what its cache would be")
    for window in sorted({r["window"] for r in rows if "*" in _marks(r)}):
        notes.append(f"* a sliding window: the cache holds only the last {window:,} positions")
    if notes:
        ax.annotate("\n".join(notes), (0, 0), xycoords="axes fraction", xytext=(0, -46), textcoords="offset points",
                    va="top", fontsize=8)  # fmt: skip
    return ax


CHANCE = {"offsets": 1 / 64, "bits": 0.5}  # guessing: one token of 64; one bit


def accuracy_by_kv_heads(records: list[dict], panels=None, axes=None):
    """Held-out accuracy against kv_heads, one panel per (task, d_head): the mean, each relationship, each seed.

    Several series sit on the same values when sharing costs nothing (every one at 100%), so each is drawn beside
    the mean rather than on it: the relationships (dashed, left of each kv_heads), the seeds (dots, right of it),
    the mean over seeds (black, on it).

    Args:
        records: runs from `mha.decoding.sharing.run`.
        panels: (task, d_head) pairs to draw (default: every one in the records, in order).
        axes: Axes to draw on, one per panel (default: a new figure, two panels per row).
    """
    if panels is None:
        panels = list(dict.fromkeys((r["task"], r["d_head"]) for r in records))
    if axes is None:
        rows = (len(panels) + 1) // 2
        _, grid = plt.subplots(rows, min(2, len(panels)), figsize=(11, 3.9 * rows), squeeze=False)
        axes = grid.flatten()
        for extra in axes[len(panels) :]:
            extra.set_visible(False)
    for ax, (task, d_head) in zip(axes, panels):
        runs = [r for r in records if r["task"] == task and r["d_head"] == d_head]
        kvs = sorted({r["kv_heads"] for r in runs}, reverse=True)
        names = runs[0]["relations"]
        offsets = np.linspace(-0.3, -0.08, len(names))
        for i, name in enumerate(names):
            means = [np.mean([r["relation_accuracy"][i] for r in runs if r["kv_heads"] == k]) for k in kvs]
            x = np.arange(len(kvs)) + offsets[i]
            ax.plot(x, means, lw=1, markersize=4, label=name, **line_style(i))
        means = [np.mean([r["accuracy"] for r in runs if r["kv_heads"] == k]) for k in kvs]
        ax.plot(range(len(kvs)), means, "o-", color="black", lw=2, zorder=3, label="mean of all")
        seeds = sorted({r["seed"] for r in runs})
        for j, k in enumerate(kvs):
            by_seed = {r["seed"]: r["accuracy"] for r in runs if r["kv_heads"] == k}
            xs = [j + 0.1 + 0.07 * s for s in range(len(seeds))]
            ax.scatter(xs, [by_seed[s] for s in seeds], color="grey", s=14, zorder=2,
                       label="each seed" if j == 0 else None)  # fmt: skip
        if task in CHANCE:
            ax.axhline(CHANCE[task], color="grey", ls=":", lw=1, label="guessing")
        ax.set_xticks(range(len(kvs)), [f"{k}\nreads {k * d_head}" for k in kvs])
        ax.set(
            xlabel="key/value heads (of 8 query heads), and the numbers the layer reads from one position",
            ylabel="held-out accuracy",
            ylim=(0, 1.05),
            title=f"{task}, d_head {d_head}: mean of {len(seeds)} seeds",
        )
        ax.xaxis.label.set_size(8)
        ax.legend(fontsize=7, ncol=2, loc="lower left")
    return axes


def pooling(rows: list[dict], ax=None):
    """Cosine of the pooled model's sentence embeddings to the original's, against kv_heads, per grouping."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, grouping in enumerate(("neighbours", "similar keys", "similar keys, rotated")):
        chosen = sorted((r for r in rows if r["grouping"] == grouping), key=lambda r: -r["kv_heads"])
        kvs = [r["kv_heads"] for r in chosen]
        style = line_style(i)  # each grouping its colour and marker; the mean solid, the worst dotted
        x, marks = range(len(kvs)), {"color": style["color"], "marker": style["marker"]}
        ax.plot(x, [r["cosine"] for r in chosen], "-", label=f"{grouping}: mean", **marks)
        ax.plot(x, [r["worst_cosine"] for r in chosen], ":", fillstyle="none", label=f"{grouping}: worst", **marks)
        ax.set_xticks(range(len(kvs)), [str(k) for k in kvs])
    ax.set(
        xlabel="key/value heads per layer (of 12)",
        ylabel="cosine to the original embedding",
        ylim=(0, 1.02),
        title="all-MiniLM-L6-v2, K/V heads mean-pooled (no uptraining)",
    )
    ax.legend(fontsize=8)
    return ax


def kv_speed(rows: list[dict], title: str = "one cached decoding step", ax=None):
    """Time of a cached step against kv_heads: the model, and one layer's attention grouped and repeated."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    kvs = [r["kv_heads"] for r in rows]
    x = range(len(kvs))
    for key, label, colour in (
        ("step_s", "whole model step", "black"),
        ("grouped_s", "one layer's attention, grouped (no copy)", "tab:green"),
        ("repeated_s", "one layer's attention, K/V repeated per head", "tab:red"),
    ):
        ax.plot(x, [r[key] * 1e3 for r in rows], "o-", color=colour, label=label)
    ax.set_xticks(x, [str(k) for k in kvs])
    ax.set(yscale="log", xlabel="key/value heads", ylabel="milliseconds", title=title)
    ax.legend(fontsize=8)
    return ax
