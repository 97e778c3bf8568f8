"""The pictures of lesson 09's length test: accuracy by position at the longest test, and a head's score by distance.

Each function draws what it is given (records from `mha.toy.lengths.run_all`, scores from
`mha.toy.lengths.scores_by_offset`) and returns its Axes; nothing here computes a result.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..plots import line_style
from .lengths import accuracy_by_position

SCHEMES = ("none", "learned", "sinusoidal", "rope")  # each scheme keeps its line style in every figure


def accuracy_by_position_at_longest(records: list[dict], task: str, chance: float, width: int = 1, ax=None):
    """Accuracy at each position of the longest test sequence, mean over seeds, one line per scheme.

    Args:
        records: runs of `mha.toy.lengths.run_all`; those of `task` are drawn.
        task: "offset" or "language".
        chance: the accuracy of a guess that ignores the sequence, drawn as a dashed line.
        width: positions pooled into each point (default: 1).
        ax: where to draw (default: a new figure).
    """
    runs = [r for r in records if r["task"] == task]
    if not runs:
        raise ValueError(f"no run of the task {task!r} among the records")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    for scheme in dict.fromkeys(r["positions"] for r in runs):
        of_scheme = [r for r in runs if r["positions"] == scheme]
        binned = [accuracy_by_position(r["scores"][-1], width) for r in of_scheme]
        starts = np.array(binned[0][0]) + (width - 1) / 2  # the middle of each bin
        by_seed = np.array([[np.nan if a is None else a for a in accuracies] for _, accuracies in binned])
        shown = ~np.isnan(by_seed).any(axis=0)
        mean = by_seed[:, shown].mean(axis=0)
        style = line_style(SCHEMES.index(scheme) if scheme in SCHEMES else len(SCHEMES))
        ax.plot(starts[shown], mean, markersize=4, label=scheme, **style)
    trained, longest = runs[0]["trained"], runs[0]["lengths"][-1]
    ax.axvline(trained - 0.5, color="gray", ls=":", label=f"trained length ({trained})")
    ax.axhline(chance, color="black", ls="--", lw=0.8, label=f"chance ({chance:.1%})")
    per = "" if width == 1 else f", {width} positions per point"
    ax.set(
        xlabel=f"position in a sequence of {longest} tokens{per}",
        ylabel=f"accuracy (mean over {len(of_scheme)} seeds)",
        ylim=(-0.03, 1.03),
        title=f"{task}: trained on {trained} tokens",
    )
    ax.legend(fontsize=8)
    return ax


def score_by_distance(by_offset, trained: int, ax=None):
    """Each head's mean score at each distance back, with the longest distance met in training marked.

    Args:
        by_offset: `scores_by_offset`'s result, (heads, seq).
        trained: the trained length: distances from `trained` on were never met in training.
        ax: where to draw (default: a new figure).
    """
    scores = np.asarray(by_offset)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.2))
    for h, row in enumerate(scores):
        ax.plot(row, markersize=4, label=f"head {h}", **line_style(h))
    ax.axvline(trained - 0.5, color="gray", ls=":", label="longest distance in training")
    ax.set(
        xlabel="distance back, q_pos - k_pos",
        ylabel="mean score",
        title=f"score by distance ({scores.shape[1]} tokens)",
    )
    ax.legend(fontsize=8)
    return ax
