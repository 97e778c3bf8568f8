"""Pictures of lesson 11: score maps over layer x head, training curves, loss by position, composition.

Every function draws on matplotlib Axes (new ones when none are given) and returns them. Nothing here computes
what it shows: pass the scores and records in.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import line_style


def _array(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def table_map(table, ax=None, title: str = "", rows: str = "layer", columns: str = "head", vmax: float = 1.0):
    """A small table of scores as a heat map, each cell written out.

    Shape:
        table (rows, columns), e.g. (layers, heads).
    """
    t = _array(table)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * t.shape[1] + 1.6, 0.7 * t.shape[0] + 1.2))
    ax.imshow(t, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for (r, c), value in np.ndenumerate(t):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.6 * vmax else "black")
    ax.set_xticks(range(t.shape[1]), [f"H{c}" for c in range(t.shape[1])])
    ax.set_yticks(range(t.shape[0]), [f"{'L' if rows == 'layer' else 'H'}{r}" for r in range(t.shape[0])])
    ax.set(xlabel=columns, ylabel=rows, title=title)
    return ax


def score_maps(previous, induction, suptitle: str = ""):
    """The previous-token and the induction score of every head, side by side.

    Shape:
        previous, induction (layers, heads).
    """
    layers, heads = _array(previous).shape
    fig, axes = plt.subplots(1, 2, figsize=(2 * (0.9 * heads + 1.8), 0.7 * layers + 1.6))
    table_map(previous, axes[0], "previous-token score")
    table_map(induction, axes[1], "induction score")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return axes


def loss_curves(records: list[dict], ax=None, halfway: bool = True):
    """The held-out loss during training of each run: one colour per model, the phase change marked.

    Args:
        records: runs of `mha.circuits.induction.run` (each with "curve", "label", "seed", "halfway").
        halfway: mark the step at which each two-layer curve fell halfway.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    labels = list(dict.fromkeys(r["label"] for r in records))
    styles = {label: line_style(i) for i, label in enumerate(labels)}
    marked = False
    for label in labels:
        for i, r in enumerate(x for x in records if x["label"] == label):
            steps = [p["step"] for p in r["curve"]]
            losses = [p["loss"] for p in r["curve"]]
            style = {"color": styles[label]["color"], "linestyle": styles[label]["linestyle"]}  # no markers: dense
            ax.plot(steps, losses, alpha=0.8, label=label if i == 0 else None, **style)
            if halfway and r["layers"] > 1 and r["halfway"] is not None:
                name = None if marked else "where the loss fell halfway (the phase change)"
                ax.axvline(r["halfway"], color=style["color"], ls=":", alpha=0.5, label=name)
                marked = True
    ax.set(xlabel="training step", ylabel="held-out loss (all positions)")
    ax.legend(fontsize=8)
    return ax


def losses_by_position(records: list[dict], early: int, late: int, ax=None):
    """The mean loss at every position, one line per model (averaged over its runs), the two positions of the
    in-context score marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    for i, label in enumerate(dict.fromkeys(r["label"] for r in records)):
        runs = np.array([r["losses"] for r in records if r["label"] == label])  # (runs, positions)
        ax.plot(runs.mean(0), markersize=4, label=label, **line_style(i))
    for position in (early, late):
        ax.axvline(position, color="gray", ls=":")
    ax.set(xlabel="position in the sequence", ylabel="mean next-token loss")
    ax.legend(fontsize=8)
    return ax
