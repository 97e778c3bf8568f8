"""Every panel of every figure shows data: a check of a matplotlib figure while it is drawn.

A committed figure is a PNG, which says nothing about what was plotted; so the check looks at the figure itself.
`empty_panels(fig)` names each axes that carries a title, labels, a legend or visible axes but draws no data: no
line with two finite points in a row (or one finite point with a marker), no bar, patch, image, mesh, scatter or
annotation in data coordinates with a finite value. Reference lines and spans drawn in axes coordinates
(`axvline`, `axhline`, `axvspan`) and text placed in axes coordinates do not count: a panel with only those is
empty. `tests/panel_check_plugin.py` runs it on every figure the notebooks draw under nbval.
"""

import numpy as np
from matplotlib.text import Annotation


class EmptyPanel(AssertionError):
    """A figure has an axes that is labelled or framed but shows no data."""


def _in_data_coordinates(artist, ax) -> bool:
    """True if the artist is placed by data coordinates (not axes coordinates: axvline, axvspan, a corner note)."""
    transform = artist.get_transform()
    return transform is ax.transData or transform.contains_branch(ax.transData)


def _finite(values) -> np.ndarray:
    try:
        array = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    except (TypeError, ValueError):
        return np.zeros(0, dtype=bool)
    return np.isfinite(array)


def _line_shows_data(line, ax) -> bool:
    if not _in_data_coordinates(line, ax):
        return False
    xy = line.get_xydata()
    if xy is None or len(xy) == 0:
        return False
    finite = _finite(xy).all(axis=-1)
    marker = line.get_marker() not in (None, "None", "none", "", " ")
    styled = line.get_linestyle() not in ("None", "none", "", " ")
    return bool((marker and finite.any()) or (styled and (finite[:-1] & finite[1:]).any()))


def _collection_shows_data(collection, ax) -> bool:
    array = collection.get_array()
    if array is not None and np.size(array):
        return bool(_finite(array).any())
    offsets = collection.get_offsets()
    if offsets is not None and len(offsets) and collection.get_offset_transform().contains_branch(ax.transData):
        if _finite(offsets).all(axis=-1).any():
            return True
    if not _in_data_coordinates(collection, ax):
        return False
    return any(len(p.vertices) and _finite(p.vertices).all() for p in collection.get_paths())


def _patch_shows_data(patch, ax) -> bool:
    if not _in_data_coordinates(patch, ax):
        return False
    placed = patch.get_patch_transform().get_matrix()  # a bar's place and size; nan for a bar of height nan
    return bool(len(patch.get_path().vertices)) and bool(
        _finite(patch.get_path().vertices).all() and _finite(placed).all()
    )


def _text_shows_data(text, ax) -> bool:
    """An annotation at a data point (`ax.annotate`), or text placed in data coordinates."""
    if not text.get_text().strip():
        return False
    if isinstance(text, Annotation):
        return text.xycoords == "data" and bool(_finite(text.xy).all())
    return _in_data_coordinates(text, ax)


def _image_shows_data(image) -> bool:
    array = image.get_array()
    return array is not None and bool(_finite(array).any())


def shows_data(ax) -> bool:
    """Whether an axes draws at least one visible piece of data (see the module docstring)."""
    visible = [a for a in ax.get_children() if a.get_visible()]
    return (
        any(_line_shows_data(a, ax) for a in ax.lines if a in visible)
        or any(_collection_shows_data(a, ax) for a in ax.collections if a in visible)
        or any(_patch_shows_data(a, ax) for a in ax.patches if a in visible)
        or any(_image_shows_data(a) for a in ax.images if a in visible)
        or any(_text_shows_data(t, ax) for t in ax.texts if t in visible)
        or any(t in visible for t in ax.tables)
    )


def _describe(ax, index: int) -> str:
    parts = [f"title {ax.get_title()!r}" if ax.get_title() else ""]
    parts += [f"x label {ax.get_xlabel()!r}" if ax.get_xlabel() else ""]
    parts += [f"y label {ax.get_ylabel()!r}" if ax.get_ylabel() else ""]
    parts += ["a legend" if ax.get_legend() is not None else ""]
    shown = ", ".join(p for p in parts if p) or "visible axes"
    return f"panel {index} has {shown} but shows no data"


def empty_panels(fig) -> list[str]:
    """One sentence per axes of `fig` that is labelled or framed but shows no data (empty: every panel is fine).

    An axes turned off with nothing on it (`ax.axis("off")`, a spare cell of a grid) is not a panel; a colorbar
    is checked by its mesh like any other axes.
    """
    problems = []
    for i, ax in enumerate(fig.get_axes()):
        if not ax.get_visible():
            continue
        framed = ax.axison or ax.get_title() or ax.get_xlabel() or ax.get_ylabel() or ax.get_legend() is not None
        if framed and not shows_data(ax):
            problems.append(_describe(ax, i))
    return problems


def check_figure(fig) -> None:
    """Raise EmptyPanel naming every empty panel of `fig` (see `empty_panels`)."""
    problems = empty_panels(fig)
    if problems:
        title = fig.get_suptitle()
        name = f"the figure {title!r}" if title else "a figure"
        raise EmptyPanel(f"{name} has an empty panel: " + "; ".join(problems))
