"""Exercise notebooks are generated from the solutions, and regenerating never destroys a learner's work."""

import shutil
from pathlib import Path

import nbformat
import pytest

from mha import exercises

ROOT = Path(__file__).resolve().parents[1]


def test_committed_exercises_match_the_solutions():
    assert exercises.check(ROOT) == []


def test_stub_keeps_indentation_and_everything_else():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nf(2)"
    assert exercises.strip_solutions(source) == (
        "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nf(2)"
    )
    assert exercises.strip_solutions("### BEGIN SOLUTION\nIt is 4.\n### END SOLUTION", "markdown") == (
        "_Your answer here._"
    )


@pytest.mark.parametrize(
    "source, words",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without a ### BEGIN SOLUTION"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unbalanced_markers_are_an_error(source, words):
    with pytest.raises(ValueError, match=words):
        exercises.strip_solutions(source)


@pytest.fixture
def course(tmp_path):
    """A copy of the course's solutions and exercises to play with."""
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_check_catches_drift_and_outputs(course):
    assert exercises.check(course) == []
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    nb = nbformat.read(exercise, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nbformat.write(nb, exercise)
    problems = exercises.check(course)
    assert any("carries outputs" in p for p in problems)
    assert any("differs from what" in p for p in problems)
    exercise.unlink()
    assert any("is missing" in p for p in exercises.check(course))


def test_regenerating_never_overwrites_a_learners_edit(course, capsys):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    nb = nbformat.read(exercise, as_version=4)
    cell = next(c for c in nb.cells if "NotImplementedError" in c.source)
    cell.source = cell.source.replace("raise NotImplementedError()", "return 'my own attempt'")
    nbformat.write(nb, exercise)
    edited = exercise.read_text()

    # the solution changes too, so a blind regeneration would overwrite the learner's file
    solution = course / "solutions" / exercise.name
    sol = nbformat.read(solution, as_version=4)
    sol.cells[0].source += "\n\nA new sentence."
    nbformat.write(sol, solution)

    assert exercises.generate(course) == 1
    assert exercise.read_text() == edited, "the learner's notebook was overwritten"
    fresh = exercise.with_suffix(".fresh.ipynb")
    assert "A new sentence." in fresh.read_text()
    assert "it holds your work" in capsys.readouterr().out


def test_an_unedited_exercise_is_updated(course):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    solution = course / "solutions" / exercise.name
    sol = nbformat.read(solution, as_version=4)
    sol.cells[0].source += "\n\nA new sentence."
    nbformat.write(sol, solution)
    assert exercises.generate(course) == 0
    assert "A new sentence." in exercise.read_text()
    assert not exercise.with_suffix(".fresh.ipynb").exists()
