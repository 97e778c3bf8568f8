"""Grading a folder of submissions: a correct one, a wrong one, one that crashes, one that never ends."""

import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from mha.course import grade
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
LESSON01 = sorted((ROOT / "solutions").glob("01_*.ipynb"))[0]


def _with_cell(source: str, path: Path, replace: str | None = None, by: str = "") -> None:
    nb = nbformat.read(LESSON01, as_version=4)
    for cell in nb.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")
        if replace and replace in cell.source:
            cell.source = cell.source.replace(replace, by)
    if source:
        nb.cells.insert(3, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


@pytest.mark.slow
def test_grade_a_class(tmp_path):
    for student in ("ada", "bob", "cy", "dee", "eve"):
        (tmp_path / student).mkdir()
    shutil.copy(LESSON01, tmp_path / "ada" / LESSON01.name)  # all correct
    _with_cell(
        "",
        tmp_path / "bob" / LESSON01.name,  # forgets the scaling in exercise 1
        replace="return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])",
        by="return q @ k.transpose(-2, -1)",
    )
    _with_cell("import os\nos._exit(1)", tmp_path / "cy" / LESSON01.name)  # the kernel dies
    _with_cell("while True:\n    pass", tmp_path / "dee" / LESSON01.name)  # never ends
    shutil.copy(ROOT / "exercises" / LESSON01.name, tmp_path / "eve" / LESSON01.name)  # handed in untouched
    # a fresh copy left by `make exercises` is ours, not ada's work: it must not be graded
    shutil.copy(ROOT / "exercises" / LESSON01.name, tmp_path / "ada" / LESSON01.name.replace(".ipynb", ".fresh.ipynb"))

    assert course(["grade", str(tmp_path), "--timeout", "30"]) == 0
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"student", "notebook", "lesson", "exercise", "passed", "note"}
    passed = {(r["student"], r["exercise"]): r["passed"] == "True" for r in rows}
    exercises = grade.exercise_names("01")
    assert all(passed["ada", e] for e in exercises)
    assert not passed["bob", "scores"] and not passed["bob", "attention"]
    assert passed["bob", "masked_softmax"] and passed["bob", "design_query"]
    assert not any(passed["cy", e] for e in exercises)
    assert not any(passed["dee", e] for e in exercises)
    assert not any(passed["eve", e] for e in exercises)
    assert len(rows) == 5 * len(exercises), "one row per student and exercise (the fresh copy is not graded)"
    notes = {(r["student"], r["exercise"]): r["note"] for r in rows}
    assert "time limit" in notes["dee", "scores"] and "crashed" in notes["cy", "scores"]
    assert "you did not scale" in notes["bob", "scores"] and notes["ada", "scores"] == ""
    assert "not written yet" in notes["eve", "attention"]
    assert {r["student"] for r in rows} == {"ada", "bob", "cy", "dee", "eve"}


def test_grade_refuses_a_folder_without_students(tmp_path):
    with pytest.raises(ValueError, match="one folder per student"):
        grade.grade(tmp_path, progress=False)
