"""Pictures for lesson 08: what each rank holds, what the all-reduce moves, and when splitting pays."""

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import LINE_COLOURS, line_style
from .cost import LINKS, layer_time
from .shard import head_split


def show_shards(d_model: int, heads: int, world: int, kv_heads: int | None = None):
    """W_Q, W_K, W_V and W_O coloured by the rank that holds each entry; thin lines between heads.

    A head's part of W_Q, W_K and W_V is a block of d_head rows; its part of W_O a block of d_head columns. When
    some K/V head is held by several ranks (grouped-query attention with fewer K/V heads than ranks), W_K and W_V
    are drawn once per rank, one copy under the other: each rank's copy shows, in its colour, the whole K/V heads it
    holds, so a replicated head appears whole in the copy of every rank holding it.

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

    def colours(rank: int) -> str:  # the course's colour-blind-safe colours, one per rank
        return LINE_COLOURS[rank % len(LINE_COLOURS)]

    kv_rows = split.kv_heads * d_head
    replicated = any(len(split.holders(k)) > 1 for k in range(split.kv_heads))
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4 if not replicated else 3.9), constrained_layout=True)

    def finish(ax, title, n_rows, n_cols):
        ax.set_xlim(0, n_cols)
        ax.set_ylim(n_rows, 0)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    def draw_rows(ax, title, n_rows, n_cols, owner):
        for i in range(n_rows):
            ax.add_patch(plt.Rectangle((0, i), n_cols, 1, color=colours(owner(i)), lw=0))
        for b in range(0, n_rows + 1, d_head):  # head boundaries
            ax.axhline(b, color="white", lw=0.8)
        finish(ax, title, n_rows, n_cols)

    def draw_columns(ax, title, n_rows, n_cols, owner):
        for i in range(n_cols):
            ax.add_patch(plt.Rectangle((i, 0), 1, n_rows, color=colours(owner(i)), lw=0))
        for b in range(0, n_cols + 1, d_head):
            ax.axvline(b, color="white", lw=0.8)
        finish(ax, title, n_rows, n_cols)

    def draw_copies(ax, title):
        """One copy of W_K (or W_V) per rank, stacked: the rank's whole K/V heads in its colour, the rest grey."""
        gap = max(1, kv_rows // 4)
        for r in range(world):
            top = r * (kv_rows + gap)
            mine = split.kv_heads_of(r)
            for k in range(split.kv_heads):
                held = k in mine
                colour = colours(r) if held else "0.92"
                ax.add_patch(plt.Rectangle((0, top + k * d_head), d_model, d_head, color=colour, lw=0))
                if held:
                    ax.text(d_model / 2, top + (k + 0.5) * d_head, f"K/V head {k}", ha="center", va="center",
                            fontsize=7, color="white")  # fmt: skip
            for k in range(split.kv_heads + 1):
                ax.axhline(top + k * d_head, xmin=0, xmax=1, color="white", lw=0.8)
            ax.text(-1, top + kv_rows / 2, f"rank {r}", ha="right", va="center", fontsize=7)
        finish(ax, title, world * (kv_rows + gap) - gap, d_model)

    def query_owner(i):
        return (i // d_head) // split.heads_per_rank

    def kv_owner(i):
        return split.holders(i // d_head)[0]

    draw_rows(axes[0], f"W_Q: {heads} heads × {d_head} rows", d_model, d_model, query_owner)
    for ax, name in zip(axes[1:3], ("W_K", "W_V")):
        if replicated:
            copies = len(split.holders(0))
            draw_copies(
                ax, f"{name}, each rank's copy: {split.kv_heads} K/V heads\n× {d_head} rows, each on {copies} ranks"
            )
        else:
            draw_rows(ax, f"{name}: {split.kv_heads} K/V heads × {d_head} rows", kv_rows, d_model, kv_owner)
    draw_columns(axes[3], f"W_O: {heads} heads × {d_head} columns", d_model, d_model, query_owner)
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
    for i, (world, rows) in enumerate(sorted(records.items())):
        sizes = np.array([4 * r["numbers"] for r in rows], dtype=float)
        measured = np.array([r["bytes"] for r in rows], dtype=float)
        formula = 2 * (world - 1) / world * sizes
        style = line_style(i)
        ax.loglog(sizes, measured, style["marker"], color=style["color"], label=f"world {world}: measured")
        ax.loglog(sizes, formula, linestyle=style["linestyle"], color=style["color"], alpha=0.6,
                  label=f"world {world}: 2(w−1)/w · size")  # fmt: skip
    ax.set_xlabel("size of the all-reduced tensor (bytes)")
    ax.set_ylabel("bytes sent per rank")
    ax.legend(fontsize=8)
    ax.set_title(title or "what one all-reduce sends, per rank", fontsize=10)
    return ax


def time_vs_bytes(records: dict, fits: dict, ax=None, title=None):
    """Measured time per all-reduce against bytes sent per rank, with the fitted latency + bytes / bandwidth."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, (world, rows) in enumerate(sorted(records.items())):
        sent = np.array([r["bytes"] for r in rows], dtype=float)
        seconds = np.array([r["seconds"] for r in rows], dtype=float)
        style = line_style(i)
        ax.loglog(sent, seconds * 1e3, style["marker"], color=style["color"], label=f"world {world}")
        latency, bandwidth = fits[world]
        xs = np.geomspace(sent.min(), sent.max(), 50)
        ax.loglog(xs, (latency + xs / bandwidth) * 1e3, linestyle=style["linestyle"], color=style["color"], alpha=0.6)
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
                colour, marker = line_style(i)["color"], line_style(i)["marker"]
                ax.semilogx(seqs, speedups, style, color=colour, marker=marker, markersize=3, label=label, base=2)
            ax.axhline(world, color=line_style(i)["color"], lw=0.6, alpha=0.4)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_xlabel("seq (batch 1)")
        ax.set_title(f"d_model {d_model}", fontsize=10)
    axes[0][0].set_ylabel("speedup over one GPU")
    axes[0][-1].legend(fontsize=7, ncols=2)
    fig.suptitle("forward pass of one attention layer split by heads, on paper (thin lines: the ideal, w)", fontsize=10)
    fig.tight_layout()
    return fig


def _ranks_in(value: float, world: int) -> set:
    """The ranks whose numbers a piece holds, read off its value when rank r started with 2**r everywhere."""
    bits = int(round(value))
    return {r for r in range(world) if bits >> r & 1}


def show_ring(world: int = 4, ring=None):
    """A ring all-reduce, step by step, drawn from the messages it sent: who sends which piece to whom.

    Rank r starts with the vector 2**r in each of its `world` pieces (one number each), so the value of any piece
    says whose numbers it holds (1 + 4 = 5: ranks 0 and 2). The ring runs through a `mha.parallel.ring.Wire`; each
    panel shows, after one step, every rank's pieces (columns: ranks; rows: piece index) and that step's messages
    as arrows, with the ranks each message carried. What a rank holds is its pieces as the wire's messages leave
    them: added to during the reduce-scatter, replaced during the all-gather.

    Args:
        world: the number of ranks (2 to 8).
        ring: the function to draw, ring(tensors, send) -> results (default: `mha.parallel.ring.ring_all_reduce`).

    Returns:
        the figure.
    """
    from matplotlib.patches import FancyArrowPatch

    from .ring import Wire, ring_all_reduce

    if not 2 <= world <= 8:
        raise ValueError(f"show_ring draws 2 to 8 ranks, got world={world}")
    ring = ring or ring_all_reduce
    wire = Wire(world)
    tensors = [torch.full((world,), float(2**r), dtype=torch.float64) for r in range(world)]
    results = ring(tensors, wire)
    steps = wire.steps()
    if len(steps) != 2 * (world - 1) or any(len(step) != world for step in steps):
        raise ValueError(
            f"the ring sent {len(wire.messages)} messages; a ring all-reduce over {world} ranks sends {world} per "
            f"step for {2 * (world - 1)} steps"
        )
    held = [[{r} for _ in range(world)] for r in range(world)]  # held[rank][piece]: whose numbers it holds
    panels = [("start: each rank holds its own vector", [], [row[:] for row in held])]
    for k, step in enumerate(steps):
        adding = k < world - 1
        for _, receiver, index, piece in step:
            ranks = _ranks_in(piece.item(), world)
            held[receiver][index] = held[receiver][index] | ranks if adding else ranks
        phase, s = ("reduce-scatter", k + 1) if adding else ("all-gather", k - world + 2)
        panels.append((f"{phase}, step {s}", step, [row[:] for row in held]))
    final = [_ranks_in(v, world) for t in results for v in t.tolist()]
    if any(f != set(range(world)) for f in final):
        raise ValueError("the ring's results are not the sum of every rank's vector")
    cols = world
    fig, axes = plt.subplots(2, cols, figsize=(2.8 * cols, 6.2), squeeze=False)
    cmap = plt.get_cmap("Greens")
    layout = [axes[0][c] for c in range(cols)] + [axes[1][c] for c in range(1, cols)]
    for ax, (title, messages, state) in zip(layout, panels):
        senders = {(sender, index) for sender, _, index, _ in messages}
        for r in range(world):
            for i in range(world):
                n = len(state[r][i])
                colour = cmap(0.15 + 0.75 * (n - 1) / max(world - 1, 1))
                sends = (r, i) in senders  # a black edge, not a red one on green: seen with any colour vision
                edge, lw = ("black", 2.2) if sends else (colour, 1.5)
                ax.add_patch(plt.Rectangle((r - 0.3, i - 0.3), 0.6, 0.6, facecolor=colour, edgecolor=edge, lw=lw))
                label = "all" if n == world else "+".join(map(str, sorted(state[r][i])))
                ax.text(r, i, label, ha="center", va="center", fontsize=7, color="white" if n == world else "black")
        for sender, receiver, index, _ in messages:
            wraps = receiver < sender
            start, end = (sender, index - 0.3), (receiver, index - 0.3)
            if not wraps:
                start, end = (sender + 0.3, index), (receiver - 0.3, index)
            arrow = FancyArrowPatch(
                start,
                end,
                connectionstyle=f"arc3,rad={0.12 if wraps else 0}",
                arrowstyle="-|>",
                mutation_scale=9,
                color="black",
                lw=1.1,
                shrinkA=0,
                shrinkB=0,
            )
            ax.add_patch(arrow)
        ax.set_xlim(-0.6, world - 0.4)
        ax.set_ylim(world - 0.5, -0.75)
        ax.set_xticks(range(world), [f"rank {r}" for r in range(world)], fontsize=7)
        ax.set_yticks(range(world), [f"piece {i}" for i in range(world)], fontsize=7)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(title, fontsize=9)
    key = axes[1][0]
    key.axis("off")
    sent = ", ".join(f"{n:g}" for n in wire.sent)
    key.text(
        0.0,
        0.5,
        "\n".join(
            [
                "a box: one piece of a rank's vector,",
                "labelled with the ranks whose numbers",
                "it holds (darker: more of them)",
                "",
                "arrows: the step's messages, one",
                "piece (black edge) from each rank to",
                f"the next (rank {world - 1} sends to rank 0)",
                "",
                f"numbers sent per rank: {sent}",
                f"= 2(w−1)/w · n with n = {world}",
            ]
        ),  # fmt: skip
        fontsize=8,
        va="center",
        transform=key.transAxes,
    )
    fig.suptitle(
        f"a ring all-reduce over {world} ranks: {world - 1} steps that add up (reduce-scatter), then {world - 1} that "
        f"hand out the sums (all-gather)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
