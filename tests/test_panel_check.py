"""Every panel shows data: the check of a figure (tests/panel_check.py), on figures made to fail and to pass, on
lesson 09's plots of its recorded results, and in a notebook run under nbval with the course's plugin."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mha.toy import plots as toy_plots  # noqa: E402
from mha.toy.lengths import SentenceStream  # noqa: E402
from mha.toy.tasks import OffsetCopyTask  # noqa: E402
from tests.panel_check import EmptyPanel, check_figure, empty_panels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _one_point_per_run_panel():
    """Lesson 09's old language panel: per position, one answer that exists, drawn as a line without markers."""
    fig, ax = plt.subplots()
    for scheme in ("none", "learned", "sinusoidal", "rope"):
        by_position = np.full(112, np.nan)
        by_position[108] = 0.9  # the one position that had an answer: "it", always at the same place
        ax.plot(by_position, label=scheme)
    ax.axvline(27.5, color="gray", ls=":")
    ax.set(xlabel="position", ylabel="accuracy", title="language: trained on 28 tokens (dotted line)")
    ax.legend()
    return fig


def test_a_panel_of_lines_with_one_finite_point_each_is_empty():
    problems = empty_panels(_one_point_per_run_panel())
    assert problems == [
        "panel 0 has title 'language: trained on 28 tokens (dotted line)', x label 'position', y label "
        "'accuracy', a legend but shows no data"
    ]
    with pytest.raises(EmptyPanel, match="a figure has an empty panel: panel 0 has title 'language"):
        check_figure(_one_point_per_run_panel())


def test_the_same_point_with_a_marker_or_a_second_point_shows_data():
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([np.nan, 0.9, np.nan], marker=".", label="one point, marked")
    b.plot([np.nan, 0.9, 0.8], label="two points in a row")
    for ax in (a, b):
        ax.set_title("shown")
    assert empty_panels(fig) == []


@pytest.mark.parametrize(
    "draw",
    [
        lambda ax: ax.axvline(3, ls=":"),
        lambda ax: ax.axhline(0.5),
        lambda ax: ax.axvspan(1, 2, alpha=0.2),
        lambda ax: ax.text(0.5, 0.5, "no results recorded", transform=ax.transAxes),
        lambda ax: ax.bar([0, 1], [np.nan, np.nan]),
        lambda ax: ax.imshow(np.full((3, 3), np.nan)),
        lambda ax: ax.scatter([np.nan], [np.nan]),
        lambda ax: ax.plot([1, np.nan, 2, np.nan, 3]),  # no two finite points in a row, no marker
        lambda ax: ax.plot([], [], label="nothing"),
    ],
    ids=[
        "axvline",
        "axhline",
        "axvspan",
        "text in axes coordinates",
        "nan bars",
        "nan image",
        "nan scatter",
        "isolated points",
        "no points",
    ],  # fmt: skip
)
def test_panels_with_only_references_notes_or_non_finite_data_are_empty(draw):
    fig, ax = plt.subplots()
    draw(ax)
    ax.set_title("a panel")
    assert len(empty_panels(fig)) == 1


@pytest.mark.parametrize(
    "draw",
    [
        lambda ax: ax.plot([0, 1], [0, 1]),
        lambda ax: ax.bar(["a", "b"], [1.0, 0.0]),
        lambda ax: ax.barh([0, 1], [2, 3]),
        lambda ax: ax.imshow(np.eye(3)),
        lambda ax: ax.scatter([1, 2], [3, np.nan]),
        lambda ax: ax.fill_between([0, 1], [0, 1], [1, 2]),
        lambda ax: ax.errorbar([0, 1], [1, 2], yerr=[0.1, 0.2], fmt="o"),
        lambda ax: ax.arrow(0, 0, 1, 1),
        lambda ax: ax.annotate("m=3", (0.4, 0.2)),
        lambda ax: ax.pcolormesh(np.eye(3)),
        lambda ax: ax.hist([1, 2, 2, 3]),
    ],
    ids=[
        "line",
        "bars",
        "horizontal bars",
        "image",
        "scatter",
        "fill_between",
        "errorbar",
        "arrow",
        "annotation",
        "pcolormesh",
        "hist",
    ],  # fmt: skip
)
def test_panels_with_data_pass(draw):
    fig, ax = plt.subplots()
    draw(ax)
    ax.set_title("a panel")
    assert empty_panels(fig) == []


def test_a_spare_cell_turned_off_is_no_panel_and_a_colorbar_is_checked_like_any_panel():
    fig, axes = plt.subplots(1, 3)
    image = axes[0].imshow(np.eye(3))
    fig.colorbar(image, ax=axes[1])
    axes[1].plot([0, 1], [1, 0])
    axes[2].axis("off")
    assert empty_panels(fig) == []
    axes[2].set_title("switched off, but titled")
    assert empty_panels(fig) == ["panel 2 has title 'switched off, but titled' but shows no data"]


# --- lesson 09's plots, on the results the lesson shows ---------------------------------------------------------------


def test_lesson_09s_plots_show_data_in_every_panel_on_its_recorded_results():
    records = json.loads((ROOT / "notebooks" / "results" / "09_lengths.json").read_text())["runs"]
    fig, axes = plt.subplots(1, 2)
    for ax, task, chance, width in [
        (axes[0], "offset", OffsetCopyTask().chance, 1),
        (axes[1], "language", SentenceStream().chance, 8),
    ]:
        toy_plots.accuracy_by_position_at_longest(records, task, chance, width, ax=ax)
    assert empty_panels(fig) == []
    fig, ax = plt.subplots()
    toy_plots.score_by_distance(np.random.default_rng(0).normal(size=(4, 64)), 16, ax=ax)
    assert empty_panels(fig) == []


# --- the plugin, in a notebook run under nbval -----------------------------------------------------------------------


def _executed_notebook(path: Path, cells: list[str]) -> None:
    """A notebook run without the check, as it would be committed: outputs and all."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "mha-course", "display_name": "Python (mha course)", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="mha-course").execute()
    nbformat.write(nb, path)


@pytest.mark.slow
def test_under_nbval_a_cell_with_an_empty_panel_fails_and_one_with_data_passes(tmp_path, monkeypatch):
    for name in ("PYTHONSTARTUP", "MHA_EMPTY_PANELS_LOG"):  # set when this runs inside a notebook run
        monkeypatch.delenv(name, raising=False)
    notebook = tmp_path / "figures.ipynb"
    _executed_notebook(
        notebook,
        [
            "import matplotlib.pyplot as plt\nimport numpy as np",
            "fig, ax = plt.subplots()\nax.plot([0.2, 0.9, 0.5])\nax.set_title('data')\nplt.show()",
            "fig, ax = plt.subplots()\nax.plot([np.nan, 0.9, np.nan])\nax.set_title('one point')\nplt.show()",
            "fig, ax = plt.subplots()\nax.axvline(1)\nax.set_title('drawn as the cell ends')",  # no plt.show()
            "print('after the figures')",
        ],
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "tests.notebook_budget", "-q",
         "-p", "no:cacheprovider", "-rf", str(notebook)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    failed = sorted(line.split("::")[-1].split(" ")[0:2] for line in run.stdout.splitlines() if "FAILED" in line)
    assert failed == [["Cell", "2"], ["Cell", "3"]], run.stdout[-3000:]
    assert "panel 0 has title 'one point' but shows no data" in run.stdout
    assert "panel 0 has title 'drawn as the cell ends' but shows no data" in run.stdout
