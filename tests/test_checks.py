"""The exercise checks: right answers pass, wrong ones fail with their own message, and nothing else ever happens.

- Every wrong answer in `tests/wrong_answers/` fails with a message naming what is wrong; every right answer in
  `tests/right_answers/` (einsum, loops, float64, lists, numpy numbers, ...) passes; on several seeds.
- Every check, given generic bad answers (raises, returns None, the wrong type or shape, mutates its inputs, never
  returns), fails with a clean CheckFailed and records the failure: never a traceback from mha/checks, never a hang.
- By construction: on the cases of every exercise, each classic mistake differs from the right answer somewhere, and
  no two mistakes are the same on every case (so a message cannot name the wrong one).
- The grader's contract: a case's outcome is plain data, and judging it in another process gives the same verdict.
"""

import importlib
import json
import linecache
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mha import checks
from mha.checks import EXERCISES, CheckFailed, exercise_names, load_all, run_case, to_plain
from mha.checks.framework import one_thread
from mha.checks.plain import unusual_kind
from mha.course.exercises import make_exercise

ROOT = Path(__file__).resolve().parents[1]
load_all()
LESSONS = sorted({lesson for lesson, _ in EXERCISES})
KINDS = ("side effect", "uniform cases", "coinciding sizes", "crash", "timer", "form")


def library(kind: str, lesson: str) -> list:
    return importlib.import_module(f"{kind}.lesson{lesson}").__dict__["WRONG" if kind == "wrong_answers" else "RIGHT"]


ALL_WRONG = [(lesson, *w) for lesson in LESSONS for w in library("wrong_answers", lesson)]
ALL_RIGHT = [(lesson, *r) for lesson in LESSONS for r in library("right_answers", lesson)]


def check_of(lesson: str, name: str):
    return EXERCISES[(lesson, name)]


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "5")


@pytest.mark.parametrize(
    "lesson, exercise, wrong, words, kind",
    ALL_WRONG,
    ids=[f"{lesson}-{ex}-{fn.__name__}" for lesson, ex, fn, _, _ in ALL_WRONG],
)
def test_each_wrong_answer_fails_with_its_own_message(lesson, exercise, wrong, words, kind):
    for seed in (0,) if exercise == "time_it" else (0, 1):  # the timer's cases sleep for about a second
        with pytest.raises(CheckFailed) as info:
            check_of(lesson, exercise)(wrong, seed=seed)
        assert words in str(info.value), f"seed {seed}: expected '{words}', got: {info.value}"
        assert "fault in the course's check" not in str(info.value)


@pytest.mark.parametrize(
    "lesson, exercise, right", ALL_RIGHT, ids=[f"{lesson}-{ex}-{fn.__name__}" for lesson, ex, fn in ALL_RIGHT]
)
def test_each_right_answer_passes(lesson, exercise, right, capsys):
    seeds = (0,) if exercise == "time_it" else (0, 1, 2)
    for seed in seeds:
        check_of(lesson, exercise)(right, seed=seed)
    assert capsys.readouterr().out.count("✓") == len(seeds)


def test_the_libraries_cover_every_exercise_and_every_kind():
    wrong = {(lesson, ex) for lesson, ex, *_ in ALL_WRONG}
    right = {(lesson, ex) for lesson, ex, _ in ALL_RIGHT}
    assert set(EXERCISES) <= wrong, f"no wrong answer for {set(EXERCISES) - wrong}"
    assert set(EXERCISES) <= right, f"no right answer for {set(EXERCISES) - right}"
    kinds = Counter(kind for *_, kind in ALL_WRONG)
    for kind in KINDS:
        assert kinds[kind] >= 6, f"only {kinds[kind]} wrong answers of the kind '{kind}'"
    assert len(ALL_RIGHT) >= 25


def _float_dtypes(value) -> set:
    if isinstance(value, torch.Tensor):
        return {value.dtype} if value.is_floating_point() else set()
    if isinstance(value, checks.Build):
        return {getattr(torch, value.params["dtype"])} if "dtype" in value.params else set()
    if isinstance(value, list | tuple):
        return set().union(*(_float_dtypes(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return _float_dtypes(list(value.values()))
    return set()


@pytest.mark.parametrize("lesson, name", list(EXERCISES), ids=[f"{lesson}-{name}" for lesson, name in EXERCISES])
def test_every_check_varies_its_cases_and_draws_new_ones(lesson, name):
    exercise = check_of(lesson, name)
    if name == "design_query":  # one query for one fixed sentence: there is nothing to vary
        assert len(exercise.cases(0)) == 1
        return
    first, second = exercise.cases(0), exercise.cases(1)
    assert len(first) >= 3 and len(first) == len(second)
    assert any(c.drawn for c in first) and not all(c.drawn for c in first)
    drawn = [(a.what, b.what) for a, b in zip(first, second) if a.drawn]
    assert any(x != y for x, y in drawn), "the drawn cases must change with the seed"
    assert [a.what for a in first if not a.drawn] == [b.what for b in second if not b.drawn], "fixed cases stay"
    dtypes = set().union(*(_float_dtypes(list(c.args) + list(c.kwargs.values())) for c in first))
    if dtypes:
        assert {torch.float32, torch.float64} <= dtypes, f"only {dtypes}"


def test_random_seeds_still_catch_every_wrong_answer_and_pass_every_right_one():
    """A few fresh seeds on top of the fixed ones: nothing is fitted to particular cases."""
    rng = np.random.default_rng()
    for lesson, exercise, fn, words, _ in ALL_WRONG:
        if exercise == "time_it":
            continue  # its drawn cases are checked by test_every_timer_case_separates_every_mistake
        seed = int(rng.integers(10**6))
        with pytest.raises(CheckFailed) as info:
            check_of(lesson, exercise)(fn, seed=seed)
        assert words in str(info.value), f"seed {seed}, {fn.__name__}: {info.value}"
    for lesson, exercise, fn in ALL_RIGHT:
        check_of(lesson, exercise)(fn, seed=int(rng.integers(10**6)))


# --- generic bad answers -----------------------------------------------------------------------------------------


def _raises(*args, **kwargs):
    raise ValueError("something went wrong")


def _returns_none(*args, **kwargs):
    print("the answer")


def _returns_text(*args, **kwargs):
    return "the answer"


def _returns_wrong_shape(*args, **kwargs):
    return torch.zeros(1)


def _returns_generator(*args, **kwargs):
    return (x for x in range(3))


def _returns_tuple(*args, **kwargs):
    return (1, 2, 3)


def _mutates(*args, **kwargs):
    for value in [*args, *kwargs.values()]:
        if isinstance(value, torch.Tensor):
            value.zero_() if value.dtype != torch.bool else value.logical_not_()
        elif isinstance(value, list):
            value.reverse()
        elif isinstance(value, torch.nn.Module):
            with torch.no_grad():
                for p in value.parameters():
                    p.mul_(2)
    return args[0] if args else None


def _never_returns(*args, **kwargs):
    while True:
        pass


def _sleeps(*args, **kwargs):
    time.sleep(3600)


def _exits(*args, **kwargs):
    sys.exit(3)


GENERIC = [
    _raises,
    _returns_none,
    _returns_text,
    _returns_wrong_shape,
    _returns_generator,
    _returns_tuple,
    _mutates,
    _never_returns,
    _sleeps,
    _exits,
]


@pytest.mark.parametrize("lesson, name", list(EXERCISES), ids=[f"{lesson}-{name}" for lesson, name in EXERCISES])
def test_generic_bad_answers_fail_cleanly_and_are_recorded(lesson, name, tmp_path, monkeypatch):
    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "0.3")
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MHA_GRADE_LOG", str(log))
    for bad in GENERIC:
        start = time.perf_counter()
        with pytest.raises(CheckFailed) as info:
            check_of(lesson, name)(bad, seed=0)
        assert time.perf_counter() - start < 5, f"{bad.__name__} took too long"
        message = str(info.value)
        assert "fault in the course's check" not in message, message
        assert info.value._render_traceback_()[0].startswith("\x1b[31m✗"), "shown as a clean ✗"
        if bad in (_never_returns, _sleeps):
            assert "did not return within 0.3 s" in message
    results = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(results) == len(GENERIC) and not any(r["passed"] for r in results)
    assert all(r["message"] for r in results)


def test_a_function_that_is_not_one_is_refused_cleanly():
    with pytest.raises(CheckFailed, match="takes your function itself"):
        check_of("01", "scores")(torch.zeros(3))


def test_the_time_limit_leaves_no_timer_behind(monkeypatch):
    import signal

    monkeypatch.setenv("MHA_CHECK_TIME_LIMIT", "0.2")
    with pytest.raises(CheckFailed, match="did not return"):
        check_of("01", "scores")(_sleeps, seed=0)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(0.3)  # a timer left running would raise here


# --- right by construction ---------------------------------------------------------------------------------------


def _collected(lesson: str, name: str, right, seeds=(0, 1, 2)):
    """For every comparison a passing answer went through: (site, case, right value, [(hint, wrong value)])."""
    exercise = check_of(lesson, name)
    seen = []
    verify_module = sys.modules["mha.checks.compare"]
    verify_module._COLLECT = seen
    try:
        for seed in seeds:
            for i, case in enumerate(exercise.cases(seed)):
                outcome = run_case(exercise, right, case)
                before = len(seen)
                assert exercise.verdict([case], [outcome]) is None
                for entry in seen[before:]:
                    entry["case"] = (seed, i)
    finally:
        verify_module._COLLECT = None
    return seen


def _equal(a, b, tol) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return checks.same(torch.as_tensor(a), torch.as_tensor(b), tol)
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=1e-12)


FIRST_RIGHT = {}
for _lesson, _exercise, _fn in ALL_RIGHT:
    FIRST_RIGHT.setdefault((_lesson, _exercise), _fn)


@pytest.mark.parametrize("lesson, name", list(EXERCISES), ids=[f"{lesson}-{name}" for lesson, name in EXERCISES])
def test_no_mistake_is_the_right_answer_or_another_mistake_on_every_case(lesson, name):
    with one_thread():
        _no_mistake_everywhere(lesson, name)


def _no_mistake_everywhere(lesson, name):
    seen = _collected(lesson, name, FIRST_RIGHT[(lesson, name)])
    by_site: dict[str, dict[str, list[bool]]] = {}
    pairs: dict[str, dict[tuple[str, str], list[bool]]] = {}
    for entry in seen:
        hints = {}
        for hint, wrong in entry["mistakes"]:
            hints.setdefault(hint, []).append(wrong)
        site = by_site.setdefault(entry["site"], {})
        for hint, wrongs in hints.items():
            site.setdefault(hint, []).append(all(_equal(w, entry["expected"], entry["tol"]) for w in wrongs))
        for a in hints:
            for b in hints:
                if a < b:
                    same = any(_equal(x, y, entry["tol"]) for x in hints[a] for y in hints[b])
                    pairs.setdefault(entry["site"], {}).setdefault((a, b), []).append(same)
    for site, hints in by_site.items():
        for hint, coincide in hints.items():
            assert not all(coincide), f"{lesson} {name} ({site}): '{hint[:60]}' is right on every case"
    for site, both in pairs.items():
        for (a, b), same in both.items():
            assert not all(same), f"{lesson} {name} ({site}): '{a[:50]}' and '{b[:50]}' agree on every case"


def test_every_timer_case_separates_every_mistake():
    from mha.checks import lesson06

    for seed in range(30):
        for case in lesson06.time_it.cases(seed):
            spec, warmup, _ = case.args
            assert lesson06._separated(lesson06._timer_values(warmup, spec.params["durations"])), (seed, case.what)


def test_a_mistake_that_matches_one_case_only_is_not_named():
    # divides by 2.449 = sqrt(6): right for d_head 6, "values differ" elsewhere; it must not be called a mistake
    def scores(q, k):
        return q @ k.transpose(-2, -1) / math.sqrt(6)

    with pytest.raises(CheckFailed) as info:
        check_of("01", "scores")(scores, seed=0)
    assert "values differ" in str(info.value)


def test_none_on_one_case_only_is_not_called_a_print():
    def causal_mask(seq):
        return None if seq == 7 else torch.ones(seq, seq, dtype=torch.bool).tril()

    with pytest.raises(CheckFailed) as info:
        check_of("01", "causal_mask")(causal_mask, seed=0)
    assert "returned None" in str(info.value) and "did you print" not in str(info.value)


def test_the_example_in_the_package_docstring_works():
    code = checks.__doc__.split("learner writes `double(x)`:")[1].split("and in the exercise notebook")[0]
    namespace = {}
    exec(textwrap.dedent(code), namespace)
    try:
        namespace["double"](lambda x: x + x, seed=0)
        with pytest.raises(CheckFailed, match="that is x squared"):
            namespace["double"](lambda x: x * x, seed=0)
    finally:
        del EXERCISES[("00", "double")]


# --- messages ----------------------------------------------------------------------------------------------------


def test_a_stub_is_reported_as_not_written_yet():
    def scores(q, k):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="`scores` is not written yet"):
        check_of("01", "scores")(scores)


def test_a_crash_in_the_learners_code_is_reported_with_the_inputs():
    def scores(q, k):
        return q @ k  # wrong shapes for matmul

    with pytest.raises(CheckFailed, match=r"(?s)`scores` raised RuntimeError.*inputs: Tensor \(3, 5\) float32"):
        check_of("01", "scores")(scores)


def test_the_signature_hint_is_given_only_when_the_function_cannot_be_called_as_the_check_calls_it():
    def scores(q):  # one argument where the check passes two
        return q

    with pytest.raises(CheckFailed, match=r"likely cause: the check calls `scores\(q, k\)`"):
        check_of("01", "scores")(scores)

    def scores_summing_a_list(q, k):  # a right signature; the TypeError comes from inside
        return torch.sum([q, k])

    def scores_concatenating_wrongly(q, k):
        return torch.cat(q, k, dim=2)

    for wrong in (scores_summing_a_list, scores_concatenating_wrongly):
        with pytest.raises(CheckFailed) as info:
            check_of("01", "scores")(wrong)
        assert "raised TypeError" in str(info.value) and "the check calls" not in str(info.value), str(info.value)


def test_numbers_that_differ_are_printed_with_the_digits_that_differ():
    from mha.checks.compare import difference, pair, verify_number

    assert pair(-0.33163, -0.33159, 4) == ("-0.33163", "-0.33159")
    assert pair(1.5, 2.5, 4) == ("1.5", "2.5")
    got, expected = torch.tensor([0.1, -0.331631]), torch.tensor([0.1, -0.331589])
    assert "got -0.33163, expected -0.33159" in difference(got, expected)
    with pytest.raises(CheckFailed, match="got 0.12345678, expected 0.12345679"):
        verify_number(0.12345678, 0.12345679, what="a case", rel_tol=1e-9)


def test_a_boolean_where_a_number_is_expected_is_called_a_boolean():
    from mha.checks.compare import verify

    with pytest.raises(CheckFailed, match=r"returned a boolean \(True\); expected a number \(float64\)"):
        verify(True, torch.tensor(0.25, dtype=torch.float64), what="a case")
    with pytest.raises(CheckFailed, match="returned booleans; expected numbers"):
        verify(torch.tensor([True, False]), torch.tensor([0.5, 0.0]), what="a case")


def test_an_unrecognised_mistake_still_says_where_it_differs():
    def scores(q, k):
        return q @ k.transpose(-2, -1) / 3.0

    with pytest.raises(CheckFailed, match="largest difference .* at index"):
        check_of("01", "scores")(scores)


def test_a_check_given_the_course_own_function_says_so():
    import mha

    with pytest.raises(CheckFailed, match="is the course's own code"):
        check_of("01", "attention")(mha.attention)
    with pytest.raises(CheckFailed, match="is the course's own code"):
        check_of("03", "split_heads")(mha.split_heads)


def test_a_crash_inside_a_function_the_learner_calls_is_named():
    def mean_pool(hidden, mask):
        return (hidden * mask).sum(dim=1)  # the classic broadcast mistake

    def sentence_embedding(hidden, mask):
        return mean_pool(hidden, mask)

    with pytest.raises(CheckFailed, match="in `mean_pool`, which it calls"):
        check_of("05", "sentence_embedding")(sentence_embedding)


def masked_softmax(scores, mask):  # the learner's earlier answer, wrong: the mask is applied after the softmax
    return scores.softmax(-1) * mask


def attention(q, k, v, mask=None):  # right in itself, but it calls the wrong masked_softmax
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    w = s.softmax(-1) if mask is None else masked_softmax(s, mask)
    return w @ v, w


def test_when_an_earlier_answer_is_at_fault_the_message_says_so():
    with pytest.raises(CheckFailed) as info:
        check_of("01", "attention")(attention, seed=0)
    assert "your `masked_softmax` (exercise 'masked_softmax'), which `attention` calls, fails its own check" in str(
        info.value
    )


def test_a_drawn_case_says_how_to_repeat_the_run():
    def scores(q, k):  # right on the fixed cases only: a lookup table would do the same
        if q.shape[-1] in (5, 6, 12):
            return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return q @ k.transpose(-2, -1)

    with pytest.raises(CheckFailed, match=r"check.scores\(scores, seed=7\)` repeats this run"):
        check_of("01", "scores")(scores, seed=7)


# --- plain data and side effects ---------------------------------------------------------------------------------


class _Weird:
    def __repr__(self):
        raise RuntimeError("no repr")


def test_to_plain_never_raises_and_names_what_has_no_plain_form():
    cyclic = []
    cyclic.append(cyclic)
    values = {
        "generator": (x for x in range(3)),
        "module": torch.nn.Linear(2, 2),
        "function": _raises,
        "dict keys": {torch.tensor(1): 0.5},
        "object": _Weird(),
        "set": {1, 2},
    }
    for kind, value in values.items():
        assert unusual_kind(to_plain(value)) == kind, kind
    assert unusual_kind(to_plain(cyclic)[0]) == "deep"  # a list that holds itself
    assert to_plain(np.int64(3)) == 3 and type(to_plain(np.int64(3))) is int
    assert to_plain(np.float32(0.5)) == 0.5 and type(to_plain(np.float32(0.5))) is float
    grad = torch.ones(2, requires_grad=True) * 2
    assert not to_plain(grad).requires_grad
    assert to_plain({"a": [np.int32(1), (2.0, None)]}) == {"a": [1, (2.0, None)]}


def test_side_effects_are_described_in_the_learners_terms():
    def scores(q, k):
        q /= math.sqrt(q.shape[-1])
        return q @ k.transpose(-2, -1)

    with pytest.raises(CheckFailed, match=r"changed its input `q`: every entry was divided by 2.236.*Apart from that"):
        check_of("01", "scores")(scores, seed=0)


# --- the grader's contract ---------------------------------------------------------------------------------------


def _plain_types_only(value) -> bool:
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor | np.ndarray):
        return True
    if isinstance(value, list | tuple):
        return all(_plain_types_only(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str | int | float | bool | tuple) and _plain_types_only(v) for k, v in value.items())
    return False


def _to_json(value):
    if isinstance(value, torch.Tensor):
        return {"tensor": value.tolist(), "dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape)}
    if isinstance(value, np.ndarray):
        return _to_json(torch.from_numpy(value))
    if isinstance(value, list | tuple):
        return {"list" if isinstance(value, list) else "tuple": [_to_json(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _from_json(value):
    if isinstance(value, dict):
        if "tensor" in value:
            return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"])).reshape(value["shape"])
        if "list" in value:
            return [_from_json(v) for v in value["list"]]
        if "tuple" in value:
            return tuple(_from_json(v) for v in value["tuple"])
        if "dict" in value:
            return {_from_json(k): _from_json(v) for k, v in value["dict"]}
        if "float" in value:
            return float(value["float"])
    return value


LEARNER_PROCESS = """
import json, sys
sys.path.insert(0, {tests!r})
from test_checks import _to_json
from mha.checks import EXERCISES, load_all, run_case
import {module} as answers
load_all()
exercise = EXERCISES[({lesson!r}, {name!r})]
fn = getattr(answers, {fn!r})
print(json.dumps([_to_json(run_case(exercise, fn, case)) for case in exercise.cases({seed})]))
"""


@pytest.mark.parametrize(
    "lesson, name, module, fn",
    [
        ("01", "attention", "wrong_answers.lesson01", "attention_mask_ignored"),
        ("03", "load_from_torch", "wrong_answers.lesson03", "load_shared_parameters"),
        ("04", "pronoun_accuracy", "right_answers.lesson04", "pronoun_one_sentence_at_a_time"),
        ("06", "time_it", "wrong_answers.lesson06", "timer_process_time"),
    ],
)
def test_outcomes_are_plain_data_judged_the_same_in_another_process(lesson, name, module, fn):
    exercise = check_of(lesson, name)
    code = LEARNER_PROCESS.format(tests=str(ROOT / "tests"), module=module, lesson=lesson, name=name, fn=fn, seed=3)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    outcomes = [_from_json(o) for o in json.loads(done.stdout)]
    assert all(_plain_types_only(o) for o in outcomes)
    there = exercise.verdict(exercise.cases(3), outcomes, seed=3)
    answer = getattr(importlib.import_module(module), fn)
    here, _ = exercise.run(answer, seed=3, blame=False)
    assert (there is None) == (here is None)
    if here is not None:
        assert there.splitlines()[0].split(": ")[-1] == here.splitlines()[0].split(": ")[-1]


# --- the notebooks -----------------------------------------------------------------------------------------------


def _run_cells(nb, path: Path):
    """Execute a notebook's code cells in one namespace; yield (cell source, exception or None).

    Each cell's source is registered with `linecache`, as IPython does: a Triton kernel (lesson 10) reads its own
    source to compile it."""
    namespace = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        name = f"<{path.name}, cell {i}>"
        linecache.cache[name] = (len(cell.source), None, cell.source.splitlines(True), name)
        try:
            exec(compile(cell.source, name, "exec"), namespace)
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


def test_a_check_judged_on_wall_time_runs_a_stretched_case_again_and_a_wrong_answer_still_fails():
    from mha.checks import lesson06

    def right(function, warmup, repeats):
        for _ in range(warmup):
            function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] if repeats % 2 else sum(sorted(times)[repeats // 2 - 1 :][:2]) / 2

    stretched = {"calls": 0}

    def once_stretched(function, warmup, repeats):  # a busy moment: the first run of the first case comes out slow
        stretched["calls"] += 1
        return right(function, warmup, repeats) + (0.05 if stretched["calls"] == 1 else 0.0)

    def mean(function, warmup, repeats):
        for _ in range(warmup):
            function()
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        return (time.perf_counter() - start) / repeats

    assert lesson06.time_it.retries == 1
    assert lesson06.time_it.run(once_stretched, seed=0, blame=False)[0] is None
    message, _ = lesson06.time_it.run(mean, seed=0, blame=False)
    assert message is not None and "mean" in message
    no_retry = lesson06.time_it.__class__(**{**vars(lesson06.time_it), "retries": 0})
    stretched["calls"] = 0
    assert no_retry.run(once_stretched, seed=0, blame=False)[0] is not None, "without the rerun it fails"


def test_judges_in_several_threads_judge_as_one_would():
    """The grader with --jobs N draws cases and judges in N threads at once; checks that build models from seeds
    (lesson 07's decoders, lesson 03's modules) must reach the verdict a single thread reaches: right answers pass."""
    from right_answers import lesson03 as right03
    from right_answers import lesson07 as right07

    from mha.course import judging

    answers = [
        ("07", "generate", right07.generate_with_a_position_counter),
        ("03", "load_from_torch", next(fn for ex, fn in right03.RIGHT if ex == "load_from_torch")),
    ]
    work = []  # (exercise, cases, outcomes, seed), the outcomes computed here, one at a time
    for seed in range(3):
        for lesson, name, answer in answers:
            exercise = check_of(lesson, name)
            drawn = judging.cases(exercise, seed)
            work.append((exercise, seed, [run_case(exercise, answer, case) for case in drawn]))
    failures = []

    def judge_all(order: list):
        for exercise, seed, outcomes in order:
            message = judging.verdict(exercise, judging.cases(exercise, seed), outcomes, seed)
            if message is not None:
                failures.append(f"{exercise.lesson} {exercise.name} seed {seed}: {message.splitlines()[0]}")

    threads = [threading.Thread(target=judge_all, args=(work[k:] + work[:k],)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
