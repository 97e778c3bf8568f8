"""What grading uses of the exercise checks (`mha.checks`), in one place: exercises, cases, the two halves of a check.

The grader draws each exercise's cases (`cases`) and judges the outcomes (`verdict`) in its own process; the
notebook's process only runs the learner's function on each case (`run_case`). Cases travel as plain data
(`case_to_plain`, `case_from_plain`), `Build` specs included: each side builds its own object from the spec.

With `--jobs N` the grader judges in N threads, but the checks were written for one: they build models from seeds,
and torch's random state, its default dtype and its init functions belong to the whole process. So `cases` and
`verdict` run one at a time in a process (they are short: the notebooks' processes do the long work meanwhile).
"""

import importlib
import inspect
import pkgutil
import re
import sys
import threading

from .. import checks

SLACK = 2.0  # seconds the grader waits for one case beyond its time limit (building inputs, the pipe, a busy CPU)
_MODULE = re.compile(r"^lesson([0-9]{2})$")
_BROKEN: dict[str, str] = {}  # lesson -> why its checks could not be imported
_ONE_JUDGE = threading.RLock()  # held while a check draws cases or judges (see the module's docstring)


def load() -> dict[str, str]:
    """Import every lesson's checks, one at a time; {lesson: why} for those that could not be imported.

    Like `mha.checks.load_all`, but a lesson whose checks fail to import costs only that lesson: its notebooks are
    noted as not graded, and every other lesson is graded.
    """
    for module in pkgutil.iter_modules(checks.__path__):
        match = _MODULE.match(module.name)
        if not match or match.group(1) in _BROKEN:
            continue
        try:
            importlib.import_module(f"{checks.__name__}.{module.name}")
        except Exception as error:  # noqa: BLE001 - any fault of one lesson's checks is reported, not fatal
            _BROKEN[match.group(1)] = f"{type(error).__name__}: {str(error)[:200]}"
    return dict(_BROKEN)


def lesson_exercises(lesson: str) -> list:
    """The exercises of a lesson, in notebook order (empty for a lesson the course does not have or cannot load)."""
    if lesson in load():
        return []
    return [checks.EXERCISES[(lesson, name)] for name in checks.exercise_names(lesson)]


def exercise(lesson: str, name: str):
    """One exercise, importing only its lesson's checks (None if there is no such exercise)."""
    _import(f"{checks.__name__}.lesson{lesson}")
    return checks.EXERCISES.get((lesson, name))


def exercise_names(lesson: str) -> list[str]:
    """The names of a lesson's exercises, in notebook order."""
    load()
    return checks.exercise_names(lesson)


def lessons() -> list[str]:
    """The lessons that have exercises: every lesson registered in `mha.checks.EXERCISES` whose checks load."""
    broken = load()
    return [lesson for lesson in checks.lessons() if lesson not in broken]


def cases(exercise, seed: int) -> list:
    """The exercise's cases for this seed; empty if its check cannot be run outside a notebook yet."""
    with _ONE_JUDGE:
        return list(exercise.cases(seed))


def verdict(exercise, drawn: list, outcomes: list[dict], seed: int) -> str | None:
    """The check's failure message for these outcomes, or None if every case passes."""
    with _ONE_JUDGE:
        return exercise.verdict(drawn, outcomes, seed)


def time_allowed(exercise) -> float:
    """Seconds the grader waits for the answer to one case: the check's own limit (the notebook's alarm, which a
    notebook can switch off) and SLACK; MHA_CHECK_TIME_LIMIT, which shortens the checks' limits, shortens it too."""
    from ..checks.framework import _limit

    return float(_limit(exercise)) + SLACK


def case_to_plain(case) -> dict:
    return {"args": tuple(case.args), "kwargs": dict(case.kwargs), "what": case.what, "drawn": bool(case.drawn)}


def case_from_plain(data: dict):
    return checks.Case(tuple(data["args"]), dict(data["kwargs"]), str(data["what"]), bool(data["drawn"]))


def spec_of(value) -> dict | None:
    """A Build spec as plain data (None for anything else)."""
    if isinstance(value, checks.Build):
        return {"kind": value.kind, "params": value.params}
    return None


def build_spec(data: dict):
    """The Build spec again, on the notebook's side (built there by `run_case`)."""
    return checks.Build(str(data["kind"]), dict(data["params"]))


def run_case(exercise, fn, case) -> dict:
    """The learner's side of one case (in the notebook's process)."""
    return checks.run_case(exercise, fn, case)


def reference_names(lesson: str) -> set[str]:
    """Names of course functions a lesson's answers should not call: the lesson's own exercises and its references.

    That is the learner's function names and exercise names of the lesson, and the course functions its checks
    module imports (e.g. `reference_attention`, the course's `attention`).
    """
    names = set()
    for exercise in lesson_exercises(lesson):
        names.update((exercise.function, exercise.name))
    module = sys.modules.get(f"{checks.__name__}.lesson{lesson}") or _import(f"{checks.__name__}.lesson{lesson}")
    for value in vars(module).values() if module else ():
        if inspect.isfunction(value):
            origin = getattr(value, "__module__", "") or ""
            if origin.startswith("mha.") and not origin.startswith(checks.__name__):
                names.add(value.__name__)
    return names


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
