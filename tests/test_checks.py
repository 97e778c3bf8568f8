"""The exercise checks: they pass the reference solutions, fail the stubs, and name each classic mistake."""

import importlib
import json
import time
from pathlib import Path

import nbformat
import pytest

from mha.checks import CheckFailed, exercise_names
from mha.course.exercises import make_exercise

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem.removeprefix("lesson") for p in (ROOT / "mha" / "checks").glob("lesson*.py"))


def checks_of(lesson):
    return importlib.import_module(f"mha.checks.lesson{lesson}")


def wrong_answers(lesson):
    return importlib.import_module(f"wrong_answers.lesson{lesson}").WRONG


ALL_WRONG = [(lesson, *w) for lesson in LESSONS for w in wrong_answers(lesson)]


@pytest.mark.parametrize(
    "lesson, exercise, wrong, hint", ALL_WRONG, ids=[f"{lesson}-{ex}-{fn.__name__}" for lesson, ex, fn, _ in ALL_WRONG]
)
def test_each_wrong_answer_fails_with_its_own_hint(lesson, exercise, wrong, hint):
    check = getattr(checks_of(lesson), exercise)
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert hint in str(info.value), f"expected the hint '{hint}', got: {info.value}"


def test_every_exercise_has_wrong_answers_in_the_library():
    for lesson in LESSONS:
        checks_of(lesson)
        covered = {exercise for exercise, _, _ in wrong_answers(lesson)}
        assert set(exercise_names(lesson)) <= covered, (
            f"lesson {lesson}: no wrong answer for {set(exercise_names(lesson)) - covered}"
        )


def test_the_whole_library_runs_in_seconds():
    start = time.perf_counter()
    for lesson, exercise, wrong, _ in ALL_WRONG:
        with pytest.raises(CheckFailed):
            getattr(checks_of(lesson), exercise)(wrong)
    assert time.perf_counter() - start < 10


def _run_cells(nb, path: Path):
    """Execute a notebook's code cells in one namespace; yield (cell source, exception or None)."""
    namespace = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            exec(compile(cell.source, str(path), "exec"), namespace)
            yield cell.source, None
        except Exception as error:  # noqa: BLE001 - the test inspects which exception it was
            yield cell.source, error


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_every_check(lesson, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MHA_GRADE_LOG", str(log))
    [path] = (ROOT / "solutions").glob(f"{lesson}_*.ipynb")
    for source, error in _run_cells(nbformat.read(path, as_version=4), path):
        assert error is None, f"{source[:80]!r} raised {error!r}"
    results = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["exercise"] for r in results] == exercise_names(lesson)
    assert all(r["passed"] for r in results)


@pytest.mark.parametrize("lesson", LESSONS)
def test_stubs_fail_their_checks_without_crashing_them(lesson, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MHA_GRADE_LOG", str(log))
    [path] = (ROOT / "solutions").glob(f"{lesson}_*.ipynb")
    # the stubs as generated from the solution (a learner may be working in exercises/ itself)
    stubs = make_exercise(nbformat.read(path, as_version=4), f"solutions/{path.name}")
    for source, error in _run_cells(stubs, path):
        if "NotImplementedError" in source:
            assert isinstance(error, CheckFailed), f"{source[:80]!r} raised {error!r}, not CheckFailed"
        else:  # a cell that only uses the learner's functions may meet a stub; nothing else may fail
            assert error is None or isinstance(error, NotImplementedError), f"{source[:80]!r} raised {error!r}"
    results = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["exercise"] for r in results] == exercise_names(lesson)
    assert not any(r["passed"] for r in results)


def test_a_stub_is_reported_as_not_written_yet():
    def scores(q, k):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="`scores` is not written yet"):
        checks_of("01").scores(scores)


def test_a_crash_in_the_learners_code_is_reported_with_the_inputs():
    def scores(q, k):
        return q @ k  # wrong shapes for matmul

    with pytest.raises(CheckFailed, match=r"(?s)`scores` raised RuntimeError.*inputs: Tensor \(3, 5\) float32"):
        checks_of("01").scores(scores)


def test_an_unrecognised_mistake_still_says_where_it_differs():
    def scores(q, k):
        return q @ k.transpose(-2, -1) / 3.0

    with pytest.raises(CheckFailed, match="largest difference .* at index"):
        checks_of("01").scores(scores)


def test_a_check_given_the_course_own_function_says_so():
    import mha

    with pytest.raises(CheckFailed, match="is the course's own code"):
        checks_of("01").attention(mha.attention)
    with pytest.raises(CheckFailed, match="is the course's own code"):
        checks_of("03").split_heads(mha.split_heads)


def test_a_crash_inside_a_function_the_learner_calls_is_named():
    def mean_pool(hidden, mask):
        return (hidden * mask).sum(dim=1)  # the classic broadcast mistake

    def sentence_embedding(hidden, mask):
        return mean_pool(hidden, mask)

    with pytest.raises(CheckFailed, match="in `mean_pool`, which it calls"):
        checks_of("05").sentence_embedding(sentence_embedding)
