"""Exercises as data plus two pure functions, a registry of them, and the two halves of running a check.

- `run_case(exercise, fn, case)` runs in the learner's process: it builds the case's inputs, calls the learner's
  function with a time limit, and returns an outcome made of plain data only (what came back, which inputs changed,
  what was raised).
- `Exercise.verdict(cases, outcomes)` runs wherever the judging happens (the same process in a notebook, the
  grader's own process when grading): it judges every outcome and returns the failure message, or None.
See the package docstring for the whole contract and an example.
"""

import importlib
import json
import os
import pkgutil
import random
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# `mha.attention` calls torch.broadcast_shapes, whose first call imports this module (and sympy): seconds on a busy
# machine, and cut short by a check's time limit it would leave sympy half imported. Importing it here keeps that
# out of every learner's time limit.
import torch.fx.experimental.symbolic_shapes  # noqa: F401

from .compare import _SITES, CheckFailed, Sites
from .effects import changes, snapshot
from .plain import to_plain

# True in a notebook's process while the grader runs it (`mha.course._runner`): the checks its cells call are skipped,
# since the grader asks each function itself, with its own cases, and judges the answers in its own process; a check
# run there counts for nothing, and an endless answer would cost its time limit twice.
GRADING = False
DEFAULT_TIME_LIMIT = 10.0  # seconds per case; MHA_CHECK_TIME_LIMIT overrides it (the tests use a short one)


@dataclass(frozen=True, eq=False)
class Build:
    """Plain data describing an object that each process constructs with course code (`build(spec)`).

    Args:
        kind: what to build, a name registered with `@builder` (e.g. "mha", "toy_model", "timed_function").
        params: plain data the builder needs (sizes, a seed, a dtype name, ...).
    """

    kind: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Case:
    """One call of the learner's function.

    Args:
        args: positional arguments, plain data or `Build` specs.
        kwargs: keyword arguments, the same.
        what: the case in words, for messages ("scores for q (3, 5) float32 and k (7, 5) float32").
        drawn: True for a case drawn from the run's seed (the message then says how to repeat the run).
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    what: str = ""
    drawn: bool = False

    def inputs(self) -> tuple:
        """Fresh copies of the positional arguments, built (the judge's own copies)."""
        return tuple(materialize(a) for a in self.args)


_BUILDERS: dict[str, Callable[..., Any]] = {}


def builder(kind: str):
    """Register a function of a Build's params that constructs the object (a decorator)."""

    def register_builder(make):
        _BUILDERS[kind] = make
        return make

    return register_builder


def build(spec: Build):
    """Construct the object a `Build` spec describes (both the learner's process and the judge call this)."""
    if spec.kind not in _BUILDERS:
        load_all()
    return _BUILDERS[spec.kind](**spec.params)


def materialize(value):
    """Plain data with every Build built and every tensor and array copied: inputs no one else holds."""
    if isinstance(value, Build):
        return build(value)
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(materialize(v) for v in value)
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, eq=False)
class Exercise:
    """One exercise: how to draw its cases and how to judge an answer. Calling it runs the check in a notebook.

    Args:
        lesson: "01", "02", ...
        name: the exercise's name, unique within the lesson ("scores").
        function: the name of the learner's function in the exercise notebook ("query_for_it").
        signature: how the check calls it, for messages ("scores(q, k)"); argument names are read from it.
        cases: function of a seed returning the cases: fixed ones, plus ones drawn from the seed.
        judge: function (case, got, changed) that raises CheckFailed if `got` is wrong. `got` is the plain
            result; `changed` is what `run_case` reported about the inputs (see `mha.checks.effects`), with an
            "after" entry for each input in `mutable`.
        mutable: inputs the function is meant to change (copied into in place, or a stand-in it calls).
        uses: names of earlier exercises of the lesson whose functions this one is expected to call; when this
            check fails and one of those fails too, the message says the earlier function is at fault.
        explain: optional function (error, case) -> hint for a crash, `error` being {"type", "message", "where"}.
        advice: said after a side-effect message, e.g. "use head_mask".
        time_limit: seconds allowed per case.
        retries: for a check judged on wall time (lesson 06's timer), how many more times a case whose answer is
            wrong is run before it counts: a busy machine stretches a sleep now and then, a wrong answer is wrong
            every time. The notebook's check and the grader both do it.
    """

    lesson: str
    name: str
    function: str
    signature: str
    cases: Callable[[int], list[Case]]
    judge: Callable[[Case, Any, dict], None]
    mutable: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    explain: Callable[[dict, Case], str | None] | None = None
    advice: str = ""
    time_limit: float = DEFAULT_TIME_LIMIT
    retries: int = 0

    @property
    def params(self) -> tuple[str, ...]:
        """Argument names, read from the signature: "attention(q, k, v, mask=None)" -> ("q", "k", "v", "mask")."""
        inside = self.signature.split("(", 1)[1].rsplit(")", 1)[0]
        return tuple(p.split("=")[0].strip() for p in inside.split(",") if p.strip())

    def call_inputs(self, case: Case) -> tuple[list, dict, dict]:
        """Built copies of a case's arguments: (args, kwargs, every input by name)."""
        args = [materialize(a) for a in case.args]
        kwargs = {k: materialize(v) for k, v in case.kwargs.items()}
        names = [self.params[i] if i < len(self.params) else f"argument {i + 1}" for i in range(len(args))]
        return args, kwargs, {**dict(zip(names, args)), **kwargs}

    def __call__(self, fn, seed: int | None = None) -> None:
        """Check the learner's function: print ✓, or raise CheckFailed with the diagnosis (never anything else).

        Args:
            fn: the learner's function.
            seed: the seed of the drawn cases (default: a fresh one each run).
        """
        if GRADING:
            return
        seed = random.SystemRandom().randrange(10**6) if seed is None else seed
        try:
            message, count = self.run(fn, seed)
        except KeyboardInterrupt:
            raise
        except BaseException as bug:  # noqa: BLE001 - a fault of ours must still end in a clean ✗
            where = traceback.extract_tb(bug.__traceback__)[-1]
            message = (
                f"the check itself failed ({type(bug).__name__}: {bug}, at {os.path.basename(where.filename)}:"
                f"{where.lineno}); this is a fault in the course's check, please report it"
            )
            count = 0
        _record(self.lesson, self.name, message is None, (message or "").splitlines()[0] if message else "")
        if message is not None:
            raise CheckFailed(message) from None
        cases = "1 case passes" if count == 1 else f"all {count} cases pass"
        print(f"✓ lesson {self.lesson} · {self.name}: {cases}")

    def run(self, fn, seed: int, blame: bool = True) -> tuple[str | None, int]:
        """Run every case in this process and judge it: (failure message or None, number of cases)."""
        problem = _not_the_learners(fn, self)
        if problem:
            return problem, 0
        with one_thread():
            cases = self.cases(seed)
            outcomes = []
            for case in cases:
                outcomes.append(run_case(self, fn, case))
                for _ in range(self.retries):  # judged on wall time: run again what a busy moment may have stretched
                    if outcomes[-1]["timed_out"] or self.verdict([case], outcomes[-1:], seed) is None:
                        break
                    outcomes[-1] = run_case(self, fn, case)
                if outcomes[-1]["timed_out"]:
                    break  # every other case would wait as long
            message = self.verdict(cases[: len(outcomes)], outcomes, seed)
        if message is not None and blame:
            message += _blame(self, fn, seed)
        return message, len(cases)

    def verdict(self, cases: list[Case], outcomes: list[dict], seed: int | None = None) -> str | None:
        """Judge the outcomes of the cases; the failure message, or None if every case passes.

        A classic mistake is named only if it reproduces the learner's answer on every case; otherwise the
        message says plainly what differs on the first case that fails.
        """
        records, failures = [], []
        for i, (case, outcome) in enumerate(zip(cases, outcomes)):
            sites = Sites()
            _SITES.append(sites)
            try:
                with torch.no_grad(), one_thread():
                    judge_outcome(self, case, outcome)
            except CheckFailed as failure:
                sites.failed = failure
                failures.append((i, failure))
            except Exception as bug:  # noqa: BLE001 - the judge met something it did not foresee
                failure = CheckFailed(
                    f"the check could not judge this answer ({type(bug).__name__}: {bug}); this is a fault in "
                    f"the course's check, please report it",
                    case.what,
                    site="internal",
                )
                sites.failed = failure
                failures.append((i, failure))
            finally:
                _SITES.pop()
            records.append(sites)
        if not failures:
            return None
        i, first = failures[0]
        named = next((h for h in first.matches if all(r.agrees(h, first.site) for r in records)), None)
        message = first.named(named) if named else str(first)
        crashed = [j for j, f in failures if f.site == "call" and outcomes[j]["error"] is not None]
        if crashed and crashed[0] != i:  # it raised on some cases: that error comes first, whatever the others show
            j = crashed[0]
            shown = str(dict(failures)[j])
            where = "on the one case" if len(cases) - len(crashed) == 1 else "on the cases"
            head, *rest = message.splitlines()
            message = "\n".join([shown, f"  it raised on {len(crashed)} of {len(cases)} cases; {where} where it "
                                  f"returned: {head}", *rest])  # fmt: skip
            i = j
        if cases[i].drawn and seed is not None:
            message += (
                f"\n  (a case drawn at random; `check.{self.name}({self.function}, seed={seed})` repeats this run)"
            )
        return message


EXERCISES: dict[tuple[str, str], Exercise] = {}


@contextmanager
def one_thread():
    """Run torch on one thread for a while: the checks' tensors are tiny, and waking a pool of threads for each
    small operation costs milliseconds on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to EXERCISES (in notebook order: register them in the order the notebook asks them)."""
    EXERCISES[(exercise.lesson, exercise.name)] = exercise
    return exercise


def load_all() -> dict[tuple[str, str], Exercise]:
    """Import every lesson's checks, so that EXERCISES lists all exercises; returns EXERCISES."""
    from .. import checks

    for module in pkgutil.iter_modules(checks.__path__):
        if module.name.startswith("lesson"):
            importlib.import_module(f"{checks.__name__}.{module.name}")
    return EXERCISES


def lessons() -> list[str]:
    """The lessons that have exercises, in order."""
    return sorted({lesson for lesson, _ in EXERCISES})


def exercise_names(lesson: str) -> list[str]:
    """The names of a lesson's exercises, in notebook order."""
    return [name for (les, name) in EXERCISES if les == lesson]


# --- the learner's side: one call --------------------------------------------------------------------------------


class OutOfTime(BaseException):
    """The learner's function ran past its time limit (a BaseException, so that `except Exception` lets it pass)."""


def _limit(exercise: Exercise) -> float:
    """Seconds allowed per case: the exercise's limit, unless MHA_CHECK_TIME_LIMIT overrides every limit."""
    override = os.environ.get("MHA_CHECK_TIME_LIMIT")
    return float(override) if override else exercise.time_limit


def call_with_limit(call: Callable[[], Any], seconds: float):
    """call() with a time limit: a SIGALRM timer on the main thread, a waiting thread elsewhere; OutOfTime if late."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def alarm(signum, frame):
            raise OutOfTime()

        previous = signal.signal(signal.SIGALRM, alarm)
        outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
        start = time.monotonic()
        try:
            return call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer:  # someone else's timer was running: give back what is left of it
                signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))
    result: dict = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            result["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise OutOfTime()
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_case(exercise: Exercise, fn, case: Case) -> dict:
    """Call the learner's function on one case, in the learner's process; the outcome as plain data.

    Returns:
        {"got": the result made plain (`to_plain`), "changed": what the call did to its inputs (see
        `mha.checks.effects.changes`), "error": None or {"type", "message", "where"} if it raised,
        "timed_out": bool, "seconds": how long the call took}.
    """
    args, kwargs, named = exercise.call_inputs(case)
    snap = snapshot(named)
    outcome = {"got": None, "changed": {}, "error": None, "timed_out": False, "seconds": 0.0}
    start = time.perf_counter()
    try:
        with one_thread():
            outcome["got"] = call_with_limit(lambda: to_plain(fn(*args, **kwargs)), _limit(exercise))
    except OutOfTime:
        outcome["timed_out"] = True
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - whatever the learner's code raises is reported, not raised
        outcome["error"] = _error(error)
    outcome["seconds"] = time.perf_counter() - start
    outcome["changed"] = changes(snap, exercise.mutable)
    return outcome


def _error(error: BaseException) -> dict:
    try:
        message = str(error)
    except Exception:  # noqa: BLE001
        message = "(its message could not be read)"
    return {"type": type(error).__name__, "message": message[:1000], "where": _innermost_learner_function(error)}


def _innermost_learner_function(error: BaseException) -> str | None:
    """Name of the deepest function in the traceback that is neither ours, nor a library's, nor Python's."""
    name, tb = None, error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not any(part in filename for part in ("site-packages", f"{os.sep}mha{os.sep}", f"{os.sep}lib{os.sep}py")):
            name = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return None if name in (None, "<lambda>", "<module>") else name


# --- the judge's side: one outcome -------------------------------------------------------------------------------


def describe(values) -> str:
    """Short description of a call's arguments: shapes and dtypes for tensors."""
    parts = []
    for a in values:
        if isinstance(a, torch.Tensor | np.ndarray):
            parts.append(f"{type(a).__name__} {tuple(a.shape)} {str(a.dtype).removeprefix('torch.')}")
        elif isinstance(a, Build):
            sizes = [f"{k}={v}" for k, v in a.params.items() if k != "seed" and isinstance(v, int | float | str)]
            parts.append(f"{a.kind}({', '.join(sizes)})")
        else:
            parts.append(repr(a) if len(repr(a)) < 40 else type(a).__name__)
    return ", ".join(parts)


def judge_outcome(exercise: Exercise, case: Case, outcome: dict) -> None:
    """Raise CheckFailed for a time-out, a crash, a side effect or a wrong result; return if the case passes."""
    name = f"`{exercise.function}`"
    if outcome["timed_out"]:
        raise CheckFailed(
            f"{name} did not return within {_limit(exercise):g} s: is there a loop that never ends?", case.what
        )
    error = outcome["error"]
    if error is not None:
        if error["type"] == "NotImplementedError":
            raise CheckFailed(f"{name} is not written yet: replace `raise NotImplementedError()` with your code")
        hint = exercise.explain(error, case) if exercise.explain else None
        if hint is None and error["type"] == "TypeError" and _called_wrongly(error):
            hint = f"the check calls `{exercise.signature}`"
        inner = error["where"]
        where = f" (in `{inner}`, which it calls)" if inner and inner != exercise.function else ""
        message = f"{name} raised {error['type']}{where}: {error['message']}\n  (inputs: {describe(case.args)})"
        raise CheckFailed(message + (f"\n  likely cause: {hint}" if hint else ""), case.what, site="call")
    problem = side_effects(exercise, outcome["changed"])
    if problem:
        try:
            exercise.judge(case, outcome["got"], outcome["changed"])
            problem += " (Apart from that, the result is right.)"
        except CheckFailed:
            pass
        raise CheckFailed(problem, case.what, site="inputs")
    exercise.judge(case, outcome["got"], outcome["changed"])


# What Python says when a function is called with arguments its definition does not take ("f() takes 2 positional
# arguments but 3 were given", "f() missing 1 required ...", "f() got an unexpected keyword argument ...").
_SIGNATURE = re.compile(r"^[\w.<>]+\(\) (takes|missing|got an unexpected|got multiple|got some)")


def _called_wrongly(error: dict) -> bool:
    """True if the learner's function could not be called as the check calls it, not if something inside it raised a
    TypeError (`torch.sum(list)`, `torch.cat(a, b)`): then no line of the learner's code ran."""
    return error["where"] is None and bool(_SIGNATURE.match(error["message"]))


_ALWAYS_WRONG = ("hook", "shared", "attribute")


def side_effects(exercise: Exercise, changed: dict) -> str | None:
    """The message for the first input the call changed and should not have; None if there is none."""
    for input_name, report in changed.items():
        for change in report.get("how", []):
            if input_name in exercise.mutable and change["kind"] not in _ALWAYS_WRONG:
                continue
            return _side_effect_message(exercise, input_name, change)
    return None


def _side_effect_message(exercise: Exercise, input_name: str, change: dict) -> str:
    kind, detail, part = change["kind"], change["detail"], change["part"]
    where = f"its input `{input_name}`" if part == input_name else f"`{part}`"
    text = f"`{exercise.function}` changed {where}: {detail}. "
    if kind == "hook":
        text += (
            "Remove every hook you register before returning: keep its handle (`handle = module."
            "register_forward_hook(...)`) and call `handle.remove()`, best in a `finally:` block"
        )
    elif kind == "shared":
        text += (
            "The two now share memory, so a later change to one changes the other: copy the values instead, "
            "`parameter.copy_(source)` under `torch.no_grad()`"
        )
    elif kind == "attribute":
        text += "Put back what you change before returning, or work on a copy (`copy.deepcopy(...)`)"
    elif kind == "order" and "sorted" in detail:
        text += (
            f"The caller's list must stay as it was: `{input_name}.sort()` sorts it in place, "
            f"`sorted({input_name})` returns a sorted copy"
        )
    elif kind == "order" and "reversed" in detail:
        text += (
            f"The caller's list must stay as it was: `{input_name}.reverse()` reverses it in place, "
            f"`{input_name}[::-1]` returns a reversed copy"
        )
    elif kind == "order":
        text += f"The caller's list must stay as it was: work on a copy, `list({input_name})`"
    elif kind == "items":
        text += f"The caller's {input_name} must stay as it was: work on a copy (`list(...)`, `dict(...)`)"
    elif "." in part and kind in ("values", "replaced", "shape", "dtype"):
        text += "The caller's module must come back as it was given: work on a copy (`copy.deepcopy(module)`)"
    elif kind in ("shape", "dtype"):
        text += (
            "Methods ending in `_` (`unsqueeze_`, `transpose_`, `t_`, ...) change the caller's tensor: use the "
            "forms without the underscore, which return a new tensor"
        )
    elif "set to" in detail:
        text += (
            "`masked_fill_` and indexed assignment (`x[...] = ...`) write into the tensor you were given; "
            "`masked_fill` (no underscore) or `torch.where` return a new one"
        )
    else:
        text += (
            f"In-place operations (`{input_name} /= ...`, `{input_name}.div_(...)`, `{input_name}[...] = ...`, "
            f"methods ending in `_`) write into the caller's tensor: write `{input_name} = {input_name} / ...`, "
            f"or work on `{input_name}.clone()`"
        )
    return text + (f"; {exercise.advice}" if exercise.advice else "") + "."


def _not_the_learners(fn, exercise: Exercise) -> str | None:
    """A message if `fn` is not a function of the learner's (not callable, or the course's own code)."""
    if not callable(fn):
        return (
            f"`check.{exercise.name}` takes your function itself, `check.{exercise.name}({exercise.function})`; "
            f"it got {type(fn).__name__}"
        )
    module = getattr(fn, "__module__", "") or ""
    if module == "mha" or module.startswith("mha."):
        name = getattr(fn, "__qualname__", repr(fn))
        return f"`{name}` is the course's own code ({module}); the check is for the function you write yourself"
    return None


def _names_used(fn) -> set[str]:
    """Global names the function's code refers to, nested functions and comprehensions included."""
    code = getattr(fn, "__code__", None)
    names, stack = set(), [code] if code is not None else []
    while stack:
        c = stack.pop()
        names |= set(c.co_names)
        stack.extend(const for const in c.co_consts if hasattr(const, "co_names"))
    return names


def _blame(exercise: Exercise, fn, seed: int) -> str:
    """When this check fails: a note naming an earlier exercise's function that it calls and that fails too."""
    namespace, used = getattr(fn, "__globals__", {}), _names_used(fn)
    for name in exercise.uses:
        earlier = EXERCISES.get((exercise.lesson, name))
        if earlier is None or earlier.function not in used:
            continue
        theirs = namespace.get(earlier.function)
        if not callable(theirs):
            continue
        try:
            message, _ = earlier.run(theirs, seed, blame=False)
        except Exception:  # noqa: BLE001 - a note, never a reason to fail differently
            continue
        if message is not None:
            first = message.splitlines()[0]
            return (
                f"\n  note: your `{earlier.function}` (exercise '{earlier.name}'), which `{exercise.function}` "
                f"calls, fails its own check; fix it first: {first}"
            )
    return ""


def _record(lesson: str, name: str, passed: bool, message: str = "") -> None:
    """Append the result to the file named by MHA_GRADE_LOG, if set (one JSON object per line)."""
    path = os.environ.get("MHA_GRADE_LOG")
    if path:
        with open(path, "a") as log:
            entry = {"lesson": lesson, "exercise": name, "passed": passed, "message": message}
            log.write(json.dumps(entry) + "\n")
