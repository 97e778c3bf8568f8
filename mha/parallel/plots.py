"""Pictures for lesson 08: what each rank holds, what the all-reduce moves, and when splitting pays."""

import matplotlib.pyplot as plt
import numpy as np

from .cost import LINKS, layer_time
from .shard import head_split


def show_shards(d_model: int, heads: int, world: int, kv_heads: int | None = None):
    """W_Q, W_K, W_V and W_O coloured by the rank that holds each entry; thin lines between heads.

    A head's part of W_Q, W_K and W_V is a block of d_head rows; its part of W_O a block of d_head columns. A K/V
    head held by several ranks (grouped-query attention with fewer K/V heads than ranks) is striped in their colours.

    Args:
        d_model: features per position.
        heads: query heads.
        world: ranks.
        kv_heads: K/V heads (default: heads).

    Returns:
        the figure.
    """
    split = head_split(heads, world, kv_heads, d_model // heads)
    d_head = split.d_head
    colours = plt.get_cmap("tab10")
    kv_rows = split.kv_heads * d_head
    fig, axes = plt.subplots(
        1, 4, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1, 1, 1, 1]}, constrained_layout=True
    )

    def draw(ax, title, n_rows, n_cols, owners_of_row=None, owners_of_col=None, per_head_rows=True):
        for i in range(n_rows if owners_of_row else n_cols):
            owners = owners_of_row(i) if owners_of_row else owners_of_col(i)
            for j, owner in enumerate(owners):  # stripes when several ranks hold the same rows
                share = 1 / len(owners)
                if owners_of_row:
                    rect = plt.Rectangle((j * share * n_cols, i), share * n_cols, 1, color=colours(owner), lw=0)
                else:
                    rect = plt.Rectangle((i, j * share * n_rows), 1, share * n_rows, color=colours(owner), lw=0)
                ax.add_patch(rect)
        count = n_rows if owners_of_row else n_cols
        for b in range(0, count + 1, d_head):  # head boundaries
            if owners_of_row:
                ax.axhline(b, color="white", lw=0.8)
            else:
                ax.axvline(b, color="white", lw=0.8)
        ax.set_xlim(0, n_cols)
        ax.set_ylim(n_rows, 0)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    def query_owner(i):
        return [(i // d_head) // split.heads_per_rank]

    def kv_owner(i):
        return split.holders(i // d_head)

    draw(axes[0], f"W_Q: {heads} heads × {d_head} rows", d_model, d_model, owners_of_row=query_owner)
    draw(axes[1], f"W_K: {split.kv_heads} K/V heads × {d_head} rows", kv_rows, d_model, owners_of_row=kv_owner)
    draw(axes[2], f"W_V: {split.kv_heads} K/V heads × {d_head} rows", kv_rows, d_model, owners_of_row=kv_owner)
    draw(axes[3], f"W_O: {heads} heads × {d_head} columns", d_model, d_model, owners_of_col=query_owner)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(r)) for r in range(world)]
    fig.legend(handles, [f"rank {r}" for r in range(world)], loc="outside lower center", ncols=world, fontsize=9)
    grouped = "" if split.kv_heads == heads else f", {split.kv_heads} K/V heads"
    fig.suptitle(f"what each of {world} ranks holds: d_model {d_model}, {heads} heads{grouped}", fontsize=11)
    return fig


def bytes_vs_formula(records: dict, ax=None, title=None):
    """Measured bytes per rank per all-reduce against the ring formula, one line per world size.

    Args:
        records: {world: [{"numbers", "bytes", ...}, ...]} as recorded by `python -m mha.parallel measure`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.6))
    for world, rows in sorted(records.items()):
        sizes = np.array([4 * r["numbers"] for r in rows], dtype=float)
        measured = np.array([r["bytes"] for r in rows], dtype=float)
        formula = 2 * (world - 1) / world * sizes
        (line,) = ax.loglog(sizes, measured, "o", label=f"world {world}: measured")
        ax.loglog(sizes, formula, "-", color=line.get_color(), alpha=0.6, label=f"world {world}: 2(w−1)/w · size")
    ax.set_xlabel("size of the all-reduced tensor (bytes)")
    ax.set_ylabel("bytes sent per rank")
    ax.legend(fontsize=8)
    ax.set_title(title or "what one all-reduce sends, per rank", fontsize=10)
    return ax


def time_vs_bytes(records: dict, fits: dict, ax=None, title=None):
    """Measured time per all-reduce against bytes sent per rank, with the fitted latency + bytes / bandwidth."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.6))
    for world, rows in sorted(records.items()):
        sent = np.array([r["bytes"] for r in rows], dtype=float)
        seconds = np.array([r["seconds"] for r in rows], dtype=float)
        (line,) = ax.loglog(sent, seconds * 1e3, "o", label=f"world {world}")
        latency, bandwidth = fits[world]
        xs = np.geomspace(sent.min(), sent.max(), 50)
        ax.loglog(xs, (latency + xs / bandwidth) * 1e3, "-", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("bytes sent per rank")
    ax.set_ylabel("time per all-reduce (ms)")
    ax.legend(fontsize=8)
    ax.set_title(title or "time = latency + bytes / bandwidth (lines: fit)", fontsize=10)
    return ax


def speedup_model(d_models=(1024, 8192), worlds=(2, 4, 8), batch: int = 1, **model):
    """The paper model: speedup of the split layer over one GPU against seq, per d_model, world and link.

    Args:
        d_models: one panel per d_model.
        worlds: one colour per number of GPUs.
        batch: sequences per forward pass.
        model: passed to `mha.parallel.cost.layer_time` (peak, share_of_peak, bytes_per_number).

    Returns:
        the figure.
    """
    seqs = 2 ** np.arange(4, 16)
    fig, axes = plt.subplots(1, len(d_models), figsize=(6 * len(d_models), 3.8), sharey=True, squeeze=False)
    styles = ("-", "--")
    for ax, d_model in zip(axes[0], d_models):
        for i, world in enumerate(worlds):
            for link, style in zip(LINKS, styles):
                speedups = [layer_time(batch, int(s), d_model, world, link, **model)["speedup"] for s in seqs]
                label = f"{world} GPUs, {link.name.split(',')[0]}"
                ax.semilogx(seqs, speedups, style, color=plt.get_cmap("tab10")(i), label=label, base=2)
            ax.axhline(world, color=plt.get_cmap("tab10")(i), lw=0.6, alpha=0.4)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_xlabel("seq (batch 1)")
        ax.set_title(f"d_model {d_model}", fontsize=10)
    axes[0][0].set_ylabel("speedup over one GPU")
    axes[0][-1].legend(fontsize=7, ncols=2)
    fig.suptitle("forward pass of one attention layer split by heads, on paper (thin lines: the ideal, w)", fontsize=10)
    fig.tight_layout()
    return fig
