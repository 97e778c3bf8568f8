"""The grader takes every lesson registered in `mha.checks.EXERCISES`, with no change to the grader.

- Every exercise's cases travel to the notebook's side as the grader sends them (plain data and `Build` specs), the
  learner's function runs there, its outcomes travel back, and the grader's judge passes each right answer of
  `tests/right_answers/` and fails an answer that returns nothing, with the check's own message.
- Every lesson with exercises has a solutions notebook that defines each exercise's function in an answer cell, so
  the solutions notebook handed in is recognised and answers identical to the solution are flagged.
- A lesson whose checks cannot be imported costs only its own notebooks (a note, a warning); the others are graded.
"""

import importlib
import sys
from types import SimpleNamespace

import pytest
from grading import LESSON01, honest, notebook

from mha import checks
from mha.course import _runner, answers, grade, judging, report, wire
from mha.course.exercises import ROOT

checks.load_all()
ALL = sorted(checks.EXERCISES)


def _right_answers(lesson: str, name: str) -> list:
    try:
        module = importlib.import_module(f"right_answers.lesson{lesson}")
    except ImportError:
        return []
    return [fn for exercise, fn in getattr(module, "RIGHT", []) if exercise == name]


def through_the_grader(exercise, fn, seed: int) -> dict:
    """Judge `fn` as the grader does: cases sent as plain data, answered on the other side, judged on this one."""
    drawn = judging.cases(exercise, seed)
    request = {"op": "call", "lesson": exercise.lesson, "exercise": exercise.name}
    request["cases"] = [judging.case_to_plain(c) for c in drawn]
    received = wire.decode(*wire.encode(request, spec_of=judging.spec_of), build=judging.build_spec)
    reply = _runner.answer(SimpleNamespace(user_ns={exercise.function: fn}), received)
    return grade._judge(exercise, drawn, wire.decode(*wire.encode(reply)), seed, exercise.lesson)


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "5")


def test_the_grader_knows_every_registered_lesson():
    assert judging.load() == {}, "a lesson's checks do not import"
    assert judging.lessons() == sorted({lesson for lesson, _ in ALL})
    for lesson in judging.lessons():
        assert [e.name for e in judging.lesson_exercises(lesson)] == checks.exercise_names(lesson)


@pytest.mark.parametrize("lesson", sorted({lesson for lesson, _ in ALL}))
def test_every_lessons_solutions_define_each_exercises_function_in_an_answer_cell(lesson):
    theirs = answers.course_answers(ROOT, lesson)
    assert theirs is not None, f"no solutions notebook for lesson {lesson}"
    functions = [e.function for e in judging.lesson_exercises(lesson)]
    assert [f for f in functions if f not in theirs] == []
    assert all(theirs[f][0] != theirs[f][1] for f in functions), "a solution cell the same as its exercise stub"


@pytest.mark.parametrize("key", ALL, ids=[f"{lesson}-{name}" for lesson, name in ALL])
def test_every_exercise_is_judged_through_the_grader(key):
    exercise = checks.EXERCISES[key]
    for right in _right_answers(*key):
        result = through_the_grader(exercise, right, seed=7)
        assert result["passed"], f"{right.__name__}: {result['note']}"
        reference = (answers.course_answers(ROOT, exercise.lesson) or {}).get(exercise.function)
        flags = grade._course_flags(answers.Answer(), result, reference, exercise.lesson, False)
        assert flags == [], f"{right.__name__}: a right answer is flagged"

    def nothing(*args, **kwargs):
        return None

    result = through_the_grader(exercise, nothing, seed=7)
    assert not result["passed"] and result["note"]
    assert "could not be" not in result["note"], result["note"]  # the check's own message, not the grader's


def test_a_lesson_whose_checks_cannot_be_imported_costs_only_its_notebooks(tmp_path, monkeypatch):
    extra = tmp_path / "checks"
    extra.mkdir()
    (extra / "lesson98.py").write_text("import a_module_the_course_does_not_have\n")
    monkeypatch.setattr(checks, "__path__", [*checks.__path__, str(extra)])
    monkeypatch.setattr(judging, "_BROKEN", {})
    folder = tmp_path / "submissions"
    honest(folder / "ada" / LESSON01)
    notebook(folder / "ada" / "98_later.ipynb", "x = 1")
    notebook(folder / "ada" / "97_never.ipynb", "x = 1")  # a lesson the course does not have at all
    subs, warnings = grade.collect(folder)
    sys.modules.pop(f"{checks.__name__}.lesson98", None)
    assert "98" not in judging.lessons()
    assert any("lesson 98 could not be loaded (ModuleNotFoundError" in w for w in warnings)
    assert any("97_never.ipynb: the course has no lesson 97: skipped" in w for w in warnings)
    assert [s.notebook for s in subs] == [LESSON01, "98_later.ipynb"]
    later = subs[1]
    assert later.problem.startswith("the course's checks for lesson 98 could not be loaded")
    rows = grade.grade_notebook(later, grade.Limits(), "none", None, 0, tmp_path / "work")
    assert [(r["exercise"], r["passed"]) for r in rows] == [("", False)]
    assert "98_later.ipynb: the course's checks for lesson 98" in report.feedback("ada", rows)
    assert "ada · 98_later.ipynb: the course's checks" in report.summary(rows, judging.lessons())
