"""Marks from gradings: each exercise weighs its importance, a later grading replaces an earlier one by lesson."""

import re
from pathlib import Path

import pytest

from mha.course import judging, marks, report
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]


def _rows(student: str, lesson: str, passed: set[str]) -> list[dict]:
    base = {"student": student, "notebook": f"{lesson}_x.ipynb", "lesson": lesson, "note": "", "run": "", "flags": ""}
    names = judging.exercise_names(lesson)
    return [{**base, "exercise": name, "passed": name in passed, "answer": ""} for name in names]


def test_the_weights_are_the_importance_in_each_exercises_header():
    assert marks.weights("01") == {  # ★★★★ = 4, read from solutions/01's headers
        "scores": 4, "masked_softmax": 4, "causal_mask": 3, "padding_mask": 3, "attention": 4, "design_query": 2,
    }  # fmt: skip
    for lesson in judging.lessons():
        assert set(marks.weights(lesson)) == set(judging.exercise_names(lesson))
        assert all(1 <= w <= 4 for w in marks.weights(lesson).values()), "importance is out of four stars"


def test_a_later_grading_replaces_a_students_lesson_and_says_so(tmp_path, capsys):
    first, later = tmp_path / "grades.csv", tmp_path / "regrade.csv"
    rows = _rows("ada", "01", set(judging.exercise_names("01"))) + _rows("bob", "01", {"scores", "causal_mask"})
    rows += _rows("bob", "03", set()) + [{**_rows("cy", "01", set())[0], "exercise": "", "lesson": ""}]
    first.write_text(report.to_csv(rows), encoding="utf-8-sig")
    later.write_text(report.to_csv(_rows("bob", "01", {"scores", "masked_softmax", "attention"})), encoding="utf-8-sig")
    out = tmp_path / "marks.csv"
    assert course(["marks", str(first), str(later), "--csv", str(out), "--lessons", "01", "03"]) == 0
    got = {r["student"]: r for r in marks.marks(marks.read([first, later]), ["01", "03"])}
    assert got["ada"]["01"] == 100.0 and got["ada"]["03"] == 0.0 and got["ada"]["03 from"] == "nothing handed in"
    assert got["bob"]["01"] == 60.0 and got["bob"]["01 from"] == "regrade.csv"  # 12 of 20, the later grading
    assert got["bob"]["exercises"] == 30.0 and got["cy"]["exercises"] == 0.0
    assert marks.marks(marks.read([first]), ["01"])[1]["01"] == 35.0  # 7 of 20 before the regrade
    printed = capsys.readouterr().out
    assert "(from regrade.csv)" in printed and "student" in printed
    assert out.read_text(encoding="utf-8-sig").splitlines()[0] == "student,01,01 from,03,03 from,exercises"


def test_a_file_that_is_not_a_grading_is_refused(tmp_path, capsys):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as stopped:
        course(["marks", str(bad), "--csv", str(tmp_path / "m.csv")])
    assert stopped.value.code == 2
    assert "is not a grades CSV" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        course(["marks", str(tmp_path / "missing.csv"), "--csv", str(tmp_path / "m.csv")])


def test_an_exercise_a_module_leaves_out_weighs_nothing_and_a_bad_number_is_named(tmp_path, capsys):
    names = judging.exercise_names("10")
    graded = tmp_path / "grades.csv"
    graded.write_text(report.to_csv(_rows("ada", "10", set(names[:4]))), encoding="utf-8-sig")  # all but 10.5
    assert marks.marks(marks.read([graded]), ["10"])[0]["10"] < 100.0
    assert marks.marks(marks.read([graded]), ["10"], ["10.5"])[0]["10"] == 100.0
    for bad, words in [("10.9", "has exercises 10.1 to 10.5"), ("105", "like 10.5"), ("12.1", "not a lesson")]:
        with pytest.raises(SystemExit):
            course(["marks", str(graded), "--csv", str(tmp_path / "m.csv"), "--leave-out", bad])
        assert words in capsys.readouterr().err


def test_two_gradings_of_one_name_are_told_apart_by_their_paths(tmp_path):
    (tmp_path / "week1").mkdir()
    (tmp_path / "week2").mkdir()
    first, later = tmp_path / "week1" / "late.csv", tmp_path / "week2" / "late.csv"
    first.write_text(report.to_csv(_rows("ada", "01", set())), encoding="utf-8-sig")
    later.write_text(report.to_csv(_rows("ada", "03", set())), encoding="utf-8-sig")
    row = marks.marks(marks.read([first, later]), ["01", "03"])[0]
    assert row["01 from"] == str(first) and row["03 from"] == str(later)


def test_every_exercise_header_rates_out_of_four_stars():
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text(encoding="utf-8")
        for rating in re.findall(r"\*\*(?:Difficulty|Importance)\*\* ([★☆]+)", text):
            assert len(rating) == 4, f"{path.name}: {rating} (the guide's scale is four stars, ★★★★ = 4)"
