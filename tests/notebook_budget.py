"""A pytest plugin for the notebook run: how long each notebook took, against the course's time budget.

Loaded by `make notebooks` (`-p tests.notebook_budget`). Each notebook must run in at most 90 s and the whole course
(lessons and solutions) in at most 6 minutes on two CPU cores; a notebook over its budget fails the run. Set
NOTEBOOK_BUDGET_SCALE (e.g. 2) on a machine known to be slower.
"""

import os
from collections import defaultdict
from pathlib import Path

import pytest

PER_NOTEBOOK_S = 90.0
WHOLE_COURSE_S = 360.0

_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _durations[report.nodeid.split("::")[0]] += report.duration


def _scale() -> float:
    return float(os.environ.get("NOTEBOOK_BUDGET_SCALE", "1"))


def over_budget(durations: dict[str, float], scale: float = 1.0) -> list[str]:
    """What exceeds the budget, in words (empty: all within)."""
    problems = [
        f"{name} took {t:.0f} s, more than {PER_NOTEBOOK_S * scale:.0f} s"
        for name, t in sorted(durations.items())
        if t > PER_NOTEBOOK_S * scale
    ]
    total = sum(durations.values())
    if total > WHOLE_COURSE_S * scale:
        problems.append(f"the course took {total:.0f} s in all, more than {WHOLE_COURSE_S * scale:.0f} s")
    return problems


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    terminalreporter.section("notebook times (budget: 90 s each, 6 min in all)")
    for name, t in sorted(_durations.items()):
        terminalreporter.write_line(f"{t:6.1f} s  {Path(name)}")
    terminalreporter.write_line(f"{sum(_durations.values()):6.1f} s  in all")
    for problem in over_budget(_durations, _scale()):
        terminalreporter.write_line(f"OVER BUDGET: {problem}", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if over_budget(_durations, _scale()) and session.exitstatus == 0:
        session.exitstatus = 1
