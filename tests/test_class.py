"""A whole class made from the course's own material (`python -m mha.course class`), graded end to end.

The class is built from the solutions, the library of classic mistakes (tests/wrong_answers/), blank and partly done
notebooks, a notebook whose process ends and one whose answer never returns; each notebook's expected result is
known before grading. A class in CI's size (two students, every lesson, the same mix) is graded by the command an
instructor runs, and its CSV compared with what the class expects, row by row.
"""

import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from grading import LESSON01, notebook, sandbox_or_skip

from mha import checks
from mha.course import _runner, classroom, grade, judging, wire
from mha.course.exercises import ROOT

checks.load_all()
LESSONS = list(classroom.lessons(ROOT))


def _command(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mha.course", *args], capture_output=True, text=True, cwd=cwd, timeout=1200
    )


def test_a_class_is_the_same_for_one_seed_and_holds_every_way_of_answering(tmp_path):
    one = classroom.build(tmp_path / "one", students=2, seed=5)
    two = classroom.build(tmp_path / "two", students=2, seed=5)
    other = classroom.build(tmp_path / "other", students=2, seed=6)
    assert one == two and one != other
    for key in one["notebooks"]:
        assert (tmp_path / "one" / key).read_bytes() == (tmp_path / "two" / key).read_bytes(), key
    assert one["lessons"] == LESSONS and len(LESSONS) >= 11
    assert len(one["notebooks"]) == 2 * len(LESSONS)
    assert all(n >= 1 for n in one["ways"].values()), one["ways"]
    assert sum(one["ways"].values()) == len(one["notebooks"])
    for entry in one["notebooks"].values():  # every exercise of the lesson has an expected result
        assert entry["exercises"]
        if entry["way"] == "solved":
            assert all(e["passed"] for e in entry["exercises"].values())
        if entry["way"] in ("blank", "crash", "loop", "wrong", "partly"):
            assert not all(e["passed"] for e in entry["exercises"].values()), entry
    big = classroom.build(tmp_path / "big", students=30, seed=0)
    assert len(big["notebooks"]) == 30 * len(LESSONS)
    shares = {way: n / len(big["notebooks"]) for way, n in big["ways"].items()}
    assert 0.35 <= shares["solved"] <= 0.45 and shares["crash"] >= 0.04 and shares["loop"] >= 0.02, shares


def test_the_wrong_answers_come_from_the_library_and_stand_alone():
    for lesson in LESSONS:
        library = classroom.wrong_library(ROOT, lesson)
        assert library, f"lesson {lesson}: no classic mistake taken from tests/wrong_answers/"
        exercises = {e.name for e in judging.lesson_exercises(lesson)}
        assert {w.exercise for w in library} <= exercises
        for w in library:
            compile(w.code, w.name, "exec")


def test_every_wrong_answer_a_class_may_take_fails_through_the_grader_with_its_hint(monkeypatch):
    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "5")
    wrong = []
    for lesson in LESSONS:
        exercises = {e.name: e for e in judging.lesson_exercises(lesson)}
        for w in classroom.wrong_library(ROOT, lesson):
            namespace = {}
            exec(compile(w.code, f"<{w.name}>", "exec"), namespace)
            exercise = exercises[w.exercise]
            drawn = judging.cases(exercise, 11)
            request = {"op": "call", "lesson": lesson, "exercise": exercise.name}
            request["cases"] = [judging.case_to_plain(c) for c in drawn]
            received = wire.decode(*wire.encode(request, spec_of=judging.spec_of), build=judging.build_spec)
            reply = _runner.answer(SimpleNamespace(user_ns={exercise.function: namespace[w.name]}), received)
            result = grade._judge(exercise, drawn, wire.decode(*wire.encode(reply)), 11, lesson)
            if result["passed"] or w.words not in result["note"]:
                wrong.append(f"{lesson} {w.name}: {result['note'][:120]}")
    assert wrong == []


def test_the_comparison_names_every_row_that_differs(tmp_path):
    plan = classroom.build(tmp_path / "class", students=1, seed=0, only=["01"])
    key, entry = next(iter(plan["notebooks"].items()))
    student, notebook = key.split("/")
    rows = [
        {"student": student, "notebook": notebook, "exercise": name, "passed": str(e["passed"]), "note": e["note"]}
        for name, e in entry["exercises"].items()
    ]
    assert classroom.compare(plan, rows) == []
    flipped = [dict(rows[0], passed=str(not entry["exercises"][rows[0]["exercise"]]["passed"])), *rows[1:]]
    assert len(classroom.compare(plan, flipped)) == 1
    assert any("no row" in p for p in classroom.compare(plan, rows[1:]))
    wrong = [name for name, e in entry["exercises"].items() if e["note"]]
    if wrong:
        silent = [dict(r, note="") if r["exercise"] == wrong[0] else r for r in rows]
        assert any("the note lacks" in p for p in classroom.compare(plan, silent))


def test_a_class_of_two_is_graded_end_to_end_as_expected(tmp_path):
    sandbox_or_skip()
    folder, out = tmp_path / "class", tmp_path / "grades.csv"
    built = _command("class", "build", str(folder), "--students", "2", "--seed", "3")
    assert built.returncode == 0, built.stderr
    assert "2 students" in built.stdout
    graded = _command("grade", str(folder), "--csv", str(out), "--seed", "3", "--jobs", "2")
    assert graded.returncode == 0, graded.stderr[-2000:]
    plan = json.loads((folder / classroom.EXPECTED).read_text())
    with open(out, encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert classroom.compare(plan, rows) == []
    assert {r["student"] for r in rows} == set(plan["students"])
    ways = {plan["notebooks"][f"{r['student']}/{r['notebook']}"]["way"] for r in rows}
    assert ways == {way for way, _ in classroom.MIX}


def test_the_measurement_records_its_costs_and_the_load(tmp_path):
    sandbox_or_skip()
    out = tmp_path / "class.json"
    done = _command("class", "measure", "--students", "1", "--lessons", "01", "--jobs", "1", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    found = json.loads(out.read_text())
    assert "class measure --students 1" in found["provenance"]["command"]
    assert found["notebooks"] == 1 and found["lessons"] == ["01"]
    assert {"load_average_1min_at_start", "load_average_1min_at_end"} <= set(found)
    (g,) = found["gradings"]
    assert g["jobs"] == 1 and g["as_expected"] and g["problems"] == []
    assert g["wall_seconds"] > 0 and g["cpu_seconds"] > 0 and g["grader_peak_mb"] > 0
    assert set(g["per_lesson"]) == {"01"} and g["per_lesson"]["01"]["notebook_peak_mb"] > 0


@pytest.mark.parametrize(
    "args, says",
    [
        (["class", "build", "{tmp}/x", "--students", "0"], "--students"),
        (["class", "build", "{tmp}/x", "--lessons", "99"], "no lesson with exercises numbered 99"),
        (["class", "build", "{tmp}/full"], "not empty"),
        (["class", "measure", "--jobs", "0"], "--jobs"),
        (["class", "count"], "invalid choice"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_any_work(tmp_path, args, says):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("mine")
    done = _command(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert (tmp_path / "full" / "mine.txt").read_text() == "mine"
    assert not (tmp_path / "x").exists()


def test_the_checks_a_notebooks_cells_call_are_skipped_while_the_grader_runs_it(tmp_path):
    """The grader asks each function itself: a check run in the notebook counts for nothing, and an endless answer
    would cost its time limit twice (in the notebook's check, then in the grader's call)."""
    sandbox_or_skip()
    cells = [
        "import math\n\nfrom mha.checks import lesson01 as check\n\ncalled = []",
        "def scores(q, k):\n    called.append(1)\n    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])",
        "check.scores(scores)",
        "assert not called, 'the check ran in the notebook'",
    ]
    notebook(tmp_path / "class" / "ada" / LESSON01, *cells)
    done = grade.grade(tmp_path / "class", jobs=1, seed=0, progress=False)
    row = next(r for r in done.rows if r["exercise"] == "scores")
    assert row["passed"], row["note"]
    assert row["run"] == "ran its 4 code cells", row["run"]
