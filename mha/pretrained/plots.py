"""Pictures of a pretrained encoder's heads: every head at once, and head-type scores per layer and head.

Like `mha.plots`, each function returns a figure and computes nothing: pass the weights or scores in.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..plots import _to_numpy


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


def head_score_maps(scores, ncols=2, vmax=1.0, size=(6.0, 2.9), suptitle=None, digits=2, fontsize=9):
    """One small layer x head map per score, each cell annotated: which heads do what.

    The defaults keep the numbers readable in a notebook: a figure of two maps per row is about 12 inches wide, so
    a notebook about 900 pixels wide shows it at three quarters of its size, and 9-point numbers at about 9 pixels.

    Args:
        scores: {name: one score per head}, e.g. from `mha.pretrained.head_scores`.
        ncols: maps per row (default: 2).
        vmax: the score drawn darkest (default: 1.0).
        size: inches per map, (width, height) (default: (6.0, 2.9)).
        suptitle: title of the figure (default: None).
        digits: decimals written in each cell, a leading "0" dropped to save room (default: 2).
        fontsize: points of the numbers in the cells (default: 9).

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
            ax.text(head, layer, text, ha="center", va="center", fontsize=fontsize, color=color)
        ax.set_xticks(range(s.shape[1]))
        ax.set_yticks(range(s.shape[0]))
        ax.set_xlabel("head", fontsize=fontsize)
        ax.set_ylabel("layer", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize)
        ax.set_title(name, fontsize=fontsize + 2)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
