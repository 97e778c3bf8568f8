"""Pictures of attention, in one style for every lesson.

Every function draws on a matplotlib Axes (a new figure when none is given) and returns it, so a lesson can place
several pictures side by side. Nothing here computes what it shows: pass the weights in.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch


def _to_numpy(x):
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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
    n = w.shape[0]
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


def head_grid(weights, highlight=None, gap=1, suptitle=None, size=0.75):
    """Every head of every layer as one small attention map: a row per layer, a column per head.

    The maps are laid side by side in one image (fast to draw even for 72 heads), one pixel per weight, with
    `gap` empty pixels between maps. Too small for token labels: use `show_attention` on the heads that matter.

    Args:
        weights: the attention weights of one sentence in every head.
        highlight: {(layer, head): label} frames these heads and writes the label under the frame.
        gap: pixels between maps.
        suptitle: title of the figure.
        size: inches per map.

    Shape:
        weights (layers, heads, q_pos, k_pos). Returns the figure.
    """
    w = _to_numpy(weights)
    if w.ndim != 4:
        raise ValueError(f"weights must have shape (layers, heads, q_pos, k_pos), got shape {w.shape}")
    layers, heads, q_len, k_len = w.shape
    step_q, step_k = q_len + gap, k_len + gap
    canvas = np.full((layers * step_q - gap, heads * step_k - gap), np.nan)  # NaN: the gaps, drawn white
    for layer in range(layers):
        for head in range(heads):
            canvas[layer * step_q : layer * step_q + q_len, head * step_k : head * step_k + k_len] = w[layer, head]
    fig, ax = plt.subplots(figsize=(size * heads + 1.2, size * layers * q_len / k_len + 1.0))
    cmap = plt.get_cmap("Blues").with_extremes(bad="white")  # NaN (the gaps) drawn white
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([h * step_k + (k_len - 1) / 2 for h in range(heads)], [f"H{h}" for h in range(heads)])
    ax.set_yticks([layer * step_q + (q_len - 1) / 2 for layer in range(layers)], [f"L{i}" for i in range(layers)])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    for (layer, head), label in (highlight or {}).items():
        x0, y0 = head * step_k - 0.5 - gap / 2, layer * step_q - 0.5 - gap / 2
        ax.add_patch(plt.Rectangle((x0, y0), step_k, step_q, fill=False, edgecolor="crimson", linewidth=2))
        ax.text(x0 + step_k / 2, y0 + step_q + 0.3, label, ha="center", va="top", fontsize=8, color="crimson")
    if suptitle:
        ax.set_title(suptitle)
    fig.tight_layout()
    return fig


def head_score_maps(scores, ncols=3, vmax=1.0, size=(4.2, 2.3), suptitle=None, digits=2):
    """One small layer x head map per score, each cell annotated: which heads do what.

    Args:
        scores: {name: one score per head}, e.g. from `mha.head_scores`.
        ncols: maps per row.
        vmax: the score drawn darkest.
        size: inches per map (width, height).
        suptitle: title of the figure.
        digits: decimals written in each cell (a leading "0" is dropped to save room).

    Shape:
        each score (layers, heads). Returns the figure.
    """
    names = list(scores)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        s = _to_numpy(scores[name])
        if s.ndim != 2:
            raise ValueError(f"score {name!r} must have shape (layers, heads), got shape {s.shape}")
        ax.imshow(s, cmap="Oranges", vmin=0, vmax=vmax, aspect="auto")
        for (layer, head), value in np.ndenumerate(s):
            text = f"{value:.{digits}f}"
            text = text[1:] if text.startswith("0.") else text
            color = "white" if value > 0.6 * vmax else "black"
            ax.text(head, layer, text, ha="center", va="center", fontsize=6, color=color)
        ax.set_xticks(range(s.shape[1]))
        ax.set_yticks(range(s.shape[0]))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=10)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
