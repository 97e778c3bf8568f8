"""A pytest plugin for the notebook run: how long each notebook took, against the course's time budget.

Loaded by `make notebooks` (`-p tests.notebook_budget`). Each notebook must run in at most 90 s on two CPU cores, and
the whole course (lessons and solutions) in at most 40 s per notebook it holds, so that the budget grows with the
lessons but the course stays quick; a run over either budget fails. Set
NOTEBOOK_BUDGET_SCALE (e.g. 2) on a machine known to be slower.
"""

import os
from collections import defaultdict
from pathlib import Path

import pytest

# every figure a notebook draws must show data in every panel (tests/panel_check_plugin.py)
pytest_plugins = ("tests.panel_check_plugin",)

PER_NOTEBOOK_S = 90.0
MEAN_NOTEBOOK_S = 40.0

_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _durations[report.nodeid.split("::")[0]] += report.duration


def _scale() -> float:
    return float(os.environ.get("NOTEBOOK_BUDGET_SCALE", "1"))


def course_notebooks() -> int:
    """How many notebooks the course runs: the lessons and their solutions."""
    root = Path(__file__).resolve().parent.parent
    return len(list((root / "notebooks").glob("[0-9]*.ipynb"))) + len(list((root / "solutions").glob("*.ipynb")))


def over_budget(durations: dict[str, float], scale: float = 1.0, course_size: int | None = None) -> list[str]:
    """What exceeds the budget, in words (empty: all within).

    Args:
        durations: seconds per notebook run.
        scale: multiplies every budget (a slower machine). Default: 1.0.
        course_size: notebooks in the whole course; the run may take MEAN_NOTEBOOK_S for each.
            Default: None, counted from the repository's folders.
    """
    course_size = course_notebooks() if course_size is None else course_size
    problems = [
        f"{name} took {t:.0f} s, more than {PER_NOTEBOOK_S * scale:.0f} s"
        for name, t in sorted(durations.items())
        if t > PER_NOTEBOOK_S * scale
    ]
    total, allowed = sum(durations.values()), MEAN_NOTEBOOK_S * course_size * scale
    if total > allowed:
        problems.append(
            f"the notebooks took {total:.0f} s in all, more than {allowed:.0f} s "
            f"({MEAN_NOTEBOOK_S * scale:.0f} s for each of the course's {course_size} notebooks)"
        )
    return problems


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    budget = f"{PER_NOTEBOOK_S:.0f} s each, {MEAN_NOTEBOOK_S * course_notebooks() / 60:.0f} min in all"
    terminalreporter.section(f"notebook times (budget: {budget})")
    for name, t in sorted(_durations.items()):
        terminalreporter.write_line(f"{t:6.1f} s  {Path(name)}")
    terminalreporter.write_line(f"{sum(_durations.values()):6.1f} s  in all")
    for problem in over_budget(_durations, _scale()):
        terminalreporter.write_line(f"OVER BUDGET: {problem}", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if over_budget(_durations, _scale()) and session.exitstatus == 0:
        session.exitstatus = 1
