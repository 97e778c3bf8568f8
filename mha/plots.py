"""Pictures of attention, in one style for every lesson.

Every function draws on a matplotlib Axes (a new figure when none is given) and returns it, so a lesson can place
several pictures side by side. Nothing here computes what it shows: pass the weights in.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

# Lines that several plots tell apart: the Okabe-Ito colours (Okabe and Ito, 2008), which readers with any common
# colour-vision deficiency can separate, each with a marker and a dash pattern of its own, so that lines that cross
# or overlap differ by shape too (and in print).
LINE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINE_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINE_DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)), (0, (1, 1)))


def line_style(i: int) -> dict:
    """The colour, marker and dash pattern of the i-th line of a plot (they repeat after seven lines).

    Returns:
        keyword arguments for `Axes.plot`: color, marker, linestyle.
    """
    return {
        "color": LINE_COLOURS[i % len(LINE_COLOURS)],
        "marker": LINE_MARKERS[i % len(LINE_MARKERS)],
        "linestyle": LINE_DASHES[i % len(LINE_DASHES)],
    }


def _to_numpy(x):
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_labels(q_labels, k_labels, shape) -> None:
    """One label per row (query) and per column (key): matplotlib's own message names neither."""
    for name, labels, size, what in (
        ("q_labels", q_labels, shape[-2], "q_pos"),
        ("k_labels", k_labels, shape[-1], "k_pos"),
    ):
        if labels is not None and len(labels) != size:
            raise ValueError(
                f"{name} has {len(labels)} labels but the weights have {what} = {size} (shape {tuple(shape)}): "
                f"give one label per {'row' if name == 'q_labels' else 'column'}"
            )


def show_attention(
    weights,
    q_labels=None,
    k_labels=None,
    ax=None,
    title=None,
    annotate=None,
    cmap="Blues",
    vmax=None,
    colorbar=True,
    axis_labels=("key position (attended to)", "query position (attending)"),
):
    """Heatmap of attention weights: one row per query, one column per key.

    Args:
        weights: the weights to draw (each row a distribution over keys).
        q_labels, k_labels: tick labels for queries (rows) and keys (columns), e.g. tokens.
        ax: where to draw; a new figure when None.
        title: text above the map.
        annotate: write each weight in its cell (default: when the map has at most 12 x 12 cells).
        cmap, vmax: colour map and the weight shown darkest (default: 1, the most a weight can be).
        colorbar: draw a colour bar beside the map.
        axis_labels: (columns, rows) axis titles, for tables that are not query x key.

    Shape:
        weights (q_pos, k_pos).
    """
    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must have shape (q_pos, k_pos), got shape {w.shape}")
    _check_labels(q_labels, k_labels, w.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * w.shape[1] + 2.2, 0.4 * w.shape[0] + 1.4))
    image = ax.imshow(w, cmap=cmap, vmin=0, vmax=1 if vmax is None else vmax, aspect="auto")
    ax.set_xticks(
        range(w.shape[1]),
        k_labels if k_labels is not None else range(w.shape[1]),
        rotation=90 if k_labels is not None else 0,
    )
    ax.set_yticks(range(w.shape[0]), q_labels if q_labels is not None else range(w.shape[0]))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = max(w.shape) <= 12
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{w[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if w[i, j] > 0.6 * (vmax or 1) else "black",
                )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def show_mask(mask, ax=None, title=None, q_labels=None, k_labels=None):
    """A boolean mask in the course convention: filled cells may attend, empty cells are blocked.

    Args:
        mask: True = may attend.
        ax, title, q_labels, k_labels: as in `show_attention`.

    Shape:
        mask (q_pos, k_pos).
    """
    m = _to_numpy(mask).astype(float)
    ax = show_attention(
        m, q_labels, k_labels, ax=ax, title=title, annotate=False, cmap="Greens", vmax=1.4, colorbar=False
    )
    ax.set_xticks(np.arange(m.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(m.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    return ax


def attention_grid(weights, q_labels=None, k_labels=None, titles=None, ncols=4, size=2.6, suptitle=None):
    """Several attention maps side by side, e.g. one per head.

    Args:
        weights: a stack of maps.
        q_labels, k_labels: tick labels shared by all maps.
        titles: one title per map (default: "head 0", "head 1", ...).
        ncols: maps per row.
        size: inches per map.
        suptitle: title of the whole figure.

    Shape:
        weights (maps, q_pos, k_pos). Returns the figure.
    """
    w = _to_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"weights must have shape (maps, q_pos, k_pos), got shape {w.shape}")
    _check_labels(q_labels, k_labels, w.shape)
    n = w.shape[0]
    if titles is not None and len(titles) < n:
        raise ValueError(f"titles has {len(titles)} titles but weights hold {n} maps (shape {w.shape}): one per map")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a whole number of at least 1, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.6, size * nrows + 0.4), squeeze=False)
    titles = titles or [f"head {i}" for i in range(n)]
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        show_attention(w[i], q_labels, k_labels, ax=ax, title=titles[i], annotate=False, colorbar=False)
        if i % ncols:
            ax.set_ylabel("")
            ax.set_yticks([])
        if i < n - ncols:
            ax.set_xlabel("")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_split_heads(seq: int = 3, d_model: int = 6, heads: int = 2):
    """Where each number of a (seq, d_model) matrix lands when it is split into heads, right and wrong.

    Each cell is labelled `p,f` (position p, feature f) and coloured by the head its feature belongs to. Left: the
    matrix. Middle: `view(seq, heads, d_head).transpose(0, 1)`, each head gets its own features at every position.
    Right: `view(heads, seq, d_head)` alone, which cuts the memory in order and hands positions to heads.

    Args:
        seq, d_model, heads: sizes of the example (batch of one, left out).

    Shape:
        draws (seq, d_model) and two (heads, seq, d_head) layouts. Returns the figure.
    """
    d_head = d_model // heads
    pos = np.repeat(np.arange(seq)[:, None], d_model, axis=1)
    feat = np.repeat(np.arange(d_model)[None, :], seq, axis=0)
    layouts = {
        "x: (seq, d_model)": (pos[None], feat[None]),
        "right: view(seq, heads, d_head)\n.transpose → (heads, seq, d_head)": (
            pos.reshape(seq, heads, d_head).transpose(1, 0, 2),
            feat.reshape(seq, heads, d_head).transpose(1, 0, 2),
        ),
        "wrong: view(heads, seq, d_head)\n(no transpose)": (
            pos.reshape(heads, seq, d_head),
            feat.reshape(heads, seq, d_head),
        ),
    }
    colours = plt.get_cmap("Pastel1")
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(12, 0.55 * heads * (seq + 1) + 1.2),
        gridspec_kw={"width_ratios": [d_model, d_head + 1, d_head + 1]},
    )
    for ax, (title, (p, f)) in zip(axes, layouts.items()):
        blocks, rows, cols = p.shape
        y = 0
        for b in range(blocks):
            for r in range(rows):
                for c in range(cols):
                    head_of_feature = f[b, r, c] // d_head
                    ax.add_patch(plt.Rectangle((c, y), 1, 1, facecolor=colours(head_of_feature), edgecolor="gray"))
                    ax.text(c + 0.5, y + 0.5, f"{p[b, r, c]},{f[b, r, c]}", ha="center", va="center", fontsize=8)
                y += 1
            if blocks > 1:
                ax.text(-0.15, y - rows / 2, f"head {b}", ha="right", va="center", fontsize=9)
            y += 0.5
        ax.set_xlim(-1.3 if blocks > 1 else 0, cols)
        ax.set_ylim(y, 0)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("cell = position,feature   colour = the head that feature belongs to", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
