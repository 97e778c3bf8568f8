"""The pictures of lesson 07: time per token, cache sizes, accuracy and embeddings against kv_heads, decoding speed.

Each function draws what it is given (records from `speed`, `configs`, `sharing`, `mha.pretrained.kv_pooling`) on a
new figure and returns its Axes; nothing here computes a result.
"""

import matplotlib.pyplot as plt
import numpy as np

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


def cache_sizes(rows: list[dict], context: int, ax=None):
    """Bytes of one sequence's cache at `context` tokens: as published, as MHA and as MQA, per model (log scale)."""
    rows = [r for r in rows if r["context"] == context]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(rows))
    for offset, key, label, colour in (
        (-0.27, "bytes_mha", "as MHA (kv_heads = heads)", "tab:red"),
        (0.0, "bytes", "as published", "tab:purple"),
        (0.27, "bytes_mqa", "as MQA (kv_heads = 1)", "tab:blue"),
    ):
        ax.bar(x + offset, [r[key] / 2**30 for r in rows], width=0.27, color=colour, label=label)
    ax.set_xticks(x, [f"{r['name']}\n{r['kind']}" for r in rows], fontsize=8)
    ax.set(yscale="log", ylabel="GiB per sequence", title=f"KV cache of one sequence of {context:,} tokens, bfloat16")
    ax.legend(fontsize=8)
    return ax


def accuracy_by_kv_heads(records: list[dict], tasks=("offsets", "template"), axes=None):
    """Held-out accuracy against kv_heads, one panel per task: mean over seeds and each seed; each relationship."""
    if axes is None:
        _, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.6), squeeze=False)
        axes = axes[0]
    for ax, task in zip(axes, tasks):
        runs = [r for r in records if r["task"] == task]
        kvs = sorted({r["kv_heads"] for r in runs}, reverse=True)
        names = runs[0]["relations"]
        for i, name in enumerate(names):
            means = [np.mean([r["relation_accuracy"][i] for r in runs if r["kv_heads"] == k]) for k in kvs]
            ax.plot(range(len(kvs)), means, "--", alpha=0.7, label=name)
        means = [np.mean([r["accuracy"] for r in runs if r["kv_heads"] == k]) for k in kvs]
        ax.plot(range(len(kvs)), means, "o-", color="black", label="mean of all")
        for j, k in enumerate(kvs):
            seeds = [r["accuracy"] for r in runs if r["kv_heads"] == k]
            ax.scatter([j] * len(seeds), seeds, color="black", s=12, alpha=0.5)
        ax.set_xticks(range(len(kvs)), [f"{k}" for k in kvs])
        ax.set(
            xlabel="key/value heads (of 8 query heads)",
            ylabel="held-out accuracy",
            ylim=(0, 1.05),
            title=f"{task}: mean of {len({r['seed'] for r in runs})} seeds (dots: each seed)",
        )
        ax.legend(fontsize=8)
    return axes


def pooling(rows: list[dict], ax=None):
    """Cosine of the pooled model's sentence embeddings to the original's, against kv_heads, per grouping."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = {"neighbours": "tab:orange", "similar keys": "tab:green", "similar keys, rotated": "tab:purple"}
    for grouping, colour in colours.items():
        chosen = sorted((r for r in rows if r["grouping"] == grouping), key=lambda r: -r["kv_heads"])
        kvs = [r["kv_heads"] for r in chosen]
        ax.plot(range(len(kvs)), [r["cosine"] for r in chosen], "o-", color=colour, label=f"{grouping}: mean")
        ax.plot(range(len(kvs)), [r["worst_cosine"] for r in chosen], ":", color=colour, label=f"{grouping}: worst")
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
