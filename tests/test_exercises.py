"""Exercise notebooks are generated from the solutions, and regenerating never destroys a learner's work."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mha.course import exercises

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
    """A copy of the course's solutions, with the exercises freshly generated from them."""
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    exercises.generate(tmp_path)
    return tmp_path


def _git(folder, *args):
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture
def course_in_git(course):
    _git(course, "init", "-q")
    _git(course, "add", "-A")
    _git(course, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "course")
    return course


def _edit_first_stub(exercise):
    nb = nbformat.read(exercise, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "NotImplementedError" in c.source)
    cell.source = cell.source.replace("raise NotImplementedError()", "return 'my own attempt'")
    cell.outputs = [nbformat.v4.new_output("stream", text="my output\n")]
    nbformat.write(nb, exercise)


def test_working_in_the_exercises_does_not_fail_the_check(course_in_git):
    exercise = sorted((course_in_git / "exercises").glob("01_*.ipynb"))[0]
    _edit_first_stub(exercise)
    assert exercises.check(course_in_git) == []


def test_a_committed_exercise_that_drifted_still_fails_the_check(course_in_git):
    exercise = sorted((course_in_git / "exercises").glob("01_*.ipynb"))[0]
    _edit_first_stub(exercise)
    _git(course_in_git, "commit", "-qam", "someone committed an edited exercise")
    problems = exercises.check(course_in_git)
    assert any("differs from what" in p for p in problems) and any("carries outputs" in p for p in problems)


def test_a_solution_changed_without_regenerating_fails_the_check(course_in_git):
    solution = sorted((course_in_git / "solutions").glob("01_*.ipynb"))[0]
    nb = nbformat.read(solution, as_version=4)
    nb.cells[0].source += "\n\nA new sentence."
    nbformat.write(nb, solution)
    assert any("differs from what" in p for p in exercises.check(course_in_git))


def test_check_catches_drift_outside_git(course):
    assert exercises.check(course) == []
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    solution = course / "solutions" / exercise.name
    sol = nbformat.read(solution, as_version=4)
    sol.cells[0].source += "\n\nA new sentence."
    nbformat.write(sol, solution)
    assert any("differs from what" in p for p in exercises.check(course)), "a stale generated exercise is drift"
    exercise.unlink()
    assert any("is missing" in p for p in exercises.check(course))


def test_outside_git_a_notebook_that_was_run_is_the_learners(course):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    _run_without_editing(exercise)
    assert exercises.check(course) == []


def test_regenerating_never_overwrites_a_learners_edit(course, capsys):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    _edit_first_stub(exercise)
    edited = exercise.read_text()
    assert exercises.generate(course) == 0, "nothing new to offer: no fresh copy"
    assert not exercise.with_suffix(".fresh.ipynb").exists()

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


def _change_solution(course, exercise, sentence="A new sentence."):
    solution = course / "solutions" / exercise.name
    sol = nbformat.read(solution, as_version=4)
    sol.cells[0].source += f"\n\n{sentence}"
    nbformat.write(sol, solution)


def _run_without_editing(exercise):
    """What running the notebook and saving it does: outputs and execution counts, the code unchanged."""
    nb = nbformat.read(exercise, as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = number + 1
        cell.outputs = [nbformat.v4.new_output("stream", text=f"output of cell {number}\n")]
    nbformat.write(nb, exercise)


def test_a_notebook_that_was_only_run_keeps_its_outputs(course):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    _run_without_editing(exercise)
    run = exercise.read_text()
    _change_solution(course, exercise)
    assert exercises.generate(course) == 1
    assert exercise.read_text() == run, "the outputs of a notebook that was only run were lost"
    assert "A new sentence." in exercise.with_suffix(".fresh.ipynb").read_text()


def test_work_in_the_fresh_copy_is_never_replaced(course):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    _edit_first_stub(exercise)
    _change_solution(course, exercise, "Version two.")
    assert exercises.generate(course) == 1
    fresh = exercise.with_suffix(".fresh.ipynb")
    assert "Version two." in fresh.read_text()

    _edit_first_stub(fresh)  # the learner moves on to the new version and works in it
    worked = fresh.read_text()
    assert exercises.generate(course) == 1
    assert fresh.read_text() == worked and not exercise.with_suffix(".fresh-2.ipynb").exists(), (
        "the learner's fresh copy started from the current version: nothing new to write"
    )

    _change_solution(course, exercise, "Version three.")
    assert exercises.generate(course) == 1
    assert fresh.read_text() == worked, "the learner's work in the fresh copy was replaced"
    assert "Version three." in exercise.with_suffix(".fresh-2.ipynb").read_text()


def test_a_fresh_copy_nobody_touched_is_updated_in_place(course):
    exercise = sorted((course / "exercises").glob("01_*.ipynb"))[0]
    _edit_first_stub(exercise)
    _change_solution(course, exercise, "Version two.")
    exercises.generate(course)
    _change_solution(course, exercise, "Version three.")
    exercises.generate(course)
    assert "Version three." in exercise.with_suffix(".fresh.ipynb").read_text()
    assert not exercise.with_suffix(".fresh-2.ipynb").exists()


def _lint_config(course):
    """Ruff's configuration, and the package it sorts as first-party imports."""
    shutil.copy(ROOT / "pyproject.toml", course)
    (course / "mha").symlink_to(ROOT / "mha")


def test_a_learners_code_never_fails_the_lint(course_in_git):
    exercise = sorted((course_in_git / "exercises").glob("01_*.ipynb"))[0]
    nb = nbformat.read(exercise, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "NotImplementedError" in c.source)
    cell.source = "import os\nimport math\n" + cell.source.replace("raise NotImplementedError()", "return os.sep")
    nbformat.write(nb, exercise)
    _lint_config(course_in_git)
    assert exercises.lint(course_in_git) == []
    assert exercises.check(course_in_git) == []
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([ruff, "check", "--no-cache", "--extend-exclude", "exercises", "."], cwd=course_in_git)
    assert result.returncode == 0, "`make lint` reads the learner's exercise"


def test_the_lint_fails_on_a_lint_error_in_what_solutions_generate(course):
    _lint_config(course)
    solution = sorted((course / "solutions").glob("01_*.ipynb"))[0]
    sol = nbformat.read(solution, as_version=4)
    first_code = next(c for c in sol.cells if c.cell_type == "code")
    first_code.source = "import torch\nimport math\n" + first_code.source  # unsorted imports (ruff I001)
    nbformat.write(sol, solution)
    [problem] = exercises.lint(course)
    assert "exercises/01_" in problem and "I001" in problem


def test_a_generated_exercise_carries_no_run_records():
    kernelspec = {"name": "mha-course", "display_name": "Python (mha course)", "language": "python"}
    solution = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec, "widgets": {"state": {}}})
    cell = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", execution_count=3)
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    solution.cells.append(cell)
    exercise = exercises.make_exercise(solution, "solutions/99_test.ipynb")
    assert set(exercise.metadata) == {"kernelspec", "mha_exercise"}
    [stub] = exercise.cells
    assert stub.metadata == {"tags": [exercises.GO_ON]} and stub.outputs == [] and stub.execution_count is None


def test_run_all_goes_on_past_every_exercise_and_only_there():
    solution = nbformat.v4.new_notebook()
    sources = [
        "import torch",  # nothing to write, no check: Run All must stop here if it fails
        "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\n\ncheck.f(f)",
        "check.g(g)",  # a check in a cell of its own
        "print(f(2))",  # uses the learner's function: an error here is a real one
    ]
    solution.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    exercise = exercises.make_exercise(solution, "solutions/99_test.ipynb")
    tagged = [exercises.GO_ON in c.metadata.get("tags", []) for c in exercise.cells]
    assert tagged == [False, True, True, False]
    for path in sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")):  # every committed exercise cell
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and "raise NotImplementedError()" in cell.source:
                assert exercises.GO_ON in cell.metadata.get("tags", []), f"{path.name}: {cell.source[:60]!r}"


def test_an_untouched_exercise_from_the_earlier_generator_is_updated_and_a_run_one_kept(course):
    """Notebooks written before the fingerprint covered everything: cells only, as nbformat reads them."""
    first, second = sorted((course / "exercises").glob("0[12]_*.ipynb"))
    for exercise in (first, second):
        nb = nbformat.read(exercise, as_version=4)
        cells = [[cell.cell_type, cell.source] for cell in nb.cells]
        nb.metadata["mha_exercise"]["fingerprint"] = hashlib.sha256(json.dumps(cells).encode()).hexdigest()
        nbformat.write(nb, exercise)
    _run_without_editing(second)
    run = second.read_text()
    assert exercises.is_pristine(first.read_text()) and not exercises.is_pristine(run)
    _change_solution(course, first)
    _change_solution(course, second)
    assert exercises.generate(course) == 1
    assert "A new sentence." in first.read_text() and not first.with_suffix(".fresh.ipynb").exists()
    assert second.read_text() == run and "A new sentence." in second.with_suffix(".fresh.ipynb").read_text()
