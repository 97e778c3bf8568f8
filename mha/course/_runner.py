"""The student's side of grading: run one notebook's cells, then answer the grader's calls (inside the sandbox).

    python -I -m mha.course._runner NOTEBOOK --requests FD --replies FD [--rlimits JSON]

It starts sealed (`mha.course._seal`: its own user, its work area, no user namespaces); before any cell runs, it
sets its resource limits.
It then runs every code cell of NOTEBOOK in one IPython shell, going on after errors, as a kernel would, and sends
the grader a summary of the run. After that it serves calls: the grader names a function the notebook defined and
sends inputs as plain data; each answer goes back as plain data (see `mha.course.wire`).

Everything in this process is the student's: the grader trusts nothing it says. It compares the answers with
answers it computed itself. What this process reports about itself (errors in cells, calls it made to the course's
own code) only informs the notes and the flags for the instructor.
"""

import argparse
import functools
import inspect
import json
import os
import sys
import time
from pathlib import Path

import mha

from . import judging, wire
from .sandbox import apply_limits

_COURSE = str(Path(mha.__file__).resolve().parent) + os.sep
_TOOLS = (_COURSE + "checks" + os.sep, _COURSE + "course" + os.sep)  # ours, but not the course's implementation
_CELL = "<ipython-input-"  # IPython's file name for the code of a cell


def cells_of(path: Path) -> list[str]:
    """The source of each code cell of a notebook file (a notebook that cannot be read has none)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            out.append("".join(source) if isinstance(source, list) else str(source))
    return out


def run_cells(sources: list[str]):
    """Run the cells in one shell, going on after errors; the shell and a list of the errors raised."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = InteractiveShell.instance(config=config)
    errors = []
    for index, source in enumerate(sources):
        result = shell.run_cell(source, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            errors.append({"cell": index, "type": type(error).__name__, "message": str(error)[:300]})
        sys.stdout.flush()
        sys.stderr.flush()
    return shell, errors


def course_origin(fn) -> str | None:
    """The course's own function or class that `fn` is, through partial, wrappers, bound methods and `__call__`."""
    for _ in range(20):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif getattr(fn, "__wrapped__", None) is not None and not inspect.isclass(fn):
            fn = fn.__wrapped__
        elif not (inspect.isfunction(fn) or inspect.isclass(fn) or inspect.isbuiltin(fn)) and callable(fn):
            kind = type(fn)
            if _is_course(getattr(inspect.getmodule(kind), "__file__", None)):
                return f"{kind.__module__}.{kind.__qualname__}"
            fn = kind.__call__
        else:
            break
    code = getattr(fn, "__code__", None)
    where = code.co_filename if code is not None else getattr(inspect.getmodule(fn), "__file__", None)
    if _is_course(where):
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return None


def _is_course(filename) -> bool:
    return isinstance(filename, str) and filename.startswith(_COURSE) and not filename.startswith(_TOOLS)


class CourseCalls:
    """Record the course's functions that the notebook's own code calls directly, while active."""

    def __init__(self):
        self.called: set[str] = set()

    def __enter__(self):
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)

    def _profile(self, frame, event, arg):
        if event != "call":
            return
        code, caller = frame.f_code, frame.f_back
        if caller is not None and caller.f_code.co_filename.startswith(_CELL) and _is_course(code.co_filename):
            self.called.add(f"{frame.f_globals.get('__name__', '?')}.{code.co_qualname}")


def answer(shell, request: dict) -> dict:
    """Run the notebook's function for an exercise on every case of the request; the outcomes, as plain data."""
    exercise = judging.exercise(str(request["lesson"]), str(request["exercise"]))
    if exercise is None:
        return {"missing": True, "why": "no such exercise"}
    fn = shell.user_ns.get(exercise.function)
    if fn is None or not callable(fn):
        return {"missing": True, "type": None if fn is None else type(fn).__name__}
    outcomes, calls = [], CourseCalls()
    for case in request["cases"]:
        with calls:
            outcomes.append(_within_limit(judging.run_case(exercise, fn, judging.case_from_plain(case))))
        if outcomes[-1].get("timed_out"):
            break  # every other case would wait as long
    return {"missing": False, "origin": course_origin(fn), "calls": sorted(calls.called), "outcomes": outcomes}


def _within_limit(outcome: dict) -> dict:
    """The outcome, its answer described instead of sent if it is larger than the grader reads (`wire.MAX_REPLY`)."""
    text, arrays = wire.encode(outcome)
    size = len(text) + sum(len(a) for a in arrays)
    if size <= wire.MAX_REPLY * 0.9:
        return outcome
    from ..checks import unusual

    what = f"{size / 2**20:.0f} MB of data, more than the grader reads ({wire.MAX_REPLY >> 20} MB)"
    return {**outcome, "got": unusual(what, kind="too large")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mha.course._runner")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--replies", type=int, required=True)
    parser.add_argument("--rlimits", default="{}")
    args = parser.parse_args(argv)
    apply_limits(json.loads(args.rlimits))  # before any of the notebook's code
    for fd in (args.requests, args.replies):
        os.set_inheritable(fd, False)  # processes the notebook starts do not get the grader's pipes
    started = time.monotonic()
    try:
        sources = cells_of(args.notebook)
    except (OSError, ValueError) as error:
        wire.send(args.replies, {"op": "ready", "unreadable": f"{type(error).__name__}: {error}"[:300]})
        return 0
    from ..checks import framework

    framework.GRADING = True  # the checks the cells call are skipped: the grader judges each function itself
    shell, errors = run_cells(sources)
    summary = {"op": "ready", "cells": len(sources), "errors": errors[:50], "error_count": len(errors)}
    summary["seconds"] = round(time.monotonic() - started, 3)
    wire.send(args.replies, summary)
    while True:
        try:
            request = wire.receive(args.requests, build=judging.build_spec)
        except wire.WireError:
            return 0  # the grader has gone
        if not isinstance(request, dict) or request.get("op") != "call":
            return 0
        try:
            reply = answer(shell, request)
        except Exception as error:  # a request we could not serve is reported, not fatal
            reply = {"missing": False, "failed": f"{type(error).__name__}: {error}"[:300]}
        wire.send(args.replies, reply)


if __name__ == "__main__":
    sys.exit(main())
