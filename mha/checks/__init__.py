"""Checks for the exercises: each takes the learner's own function, runs it on several cases, and says what is wrong.

In a notebook: `from mha.checks import lesson01 as check`, then `check.scores(scores)`. The check prints one line
(`✓ lesson 01 · scores: all 5 cases pass`) or raises `CheckFailed`, shown without a traceback, whose message says
what is wrong: the likely mistake in the learner's terms ("you divided by d_head; divide by its square root") when
that mistake reproduces the answer on every case, otherwise plainly what differs. It never raises anything else and
never hangs (each call has a time limit).

The contract: every exercise is data plus two pure functions, so that a grader can run the learner's function in
one process and judge it in another.

- `EXERCISES`: {(lesson, name): Exercise}, in notebook order; `load_all()` imports every lesson's module.
- `Exercise(lesson, name, function, signature, cases, judge, mutable=(), uses=(), explain=None, ...)`:
  `function` is the learner's function's name in the notebook; `cases(seed)` returns fixed cases plus cases drawn
  from the seed; `judge(case, got, changed)` raises `CheckFailed` if the answer is wrong.
- `Case(args, kwargs, what, drawn)`: arguments as plain data (tensors, arrays, numbers, strings, bools, None, and
  lists, tuples and dicts of those) or `Build(kind, params)` specs that `build(spec)` turns into an object made with
  course code (a model from a config and a seed, a timed stand-in function). Register a builder with `@builder`.
- `run_case(exercise, fn, case)` (the learner's process): builds the inputs, calls `fn` with a time limit, and
  returns an outcome of plain data: {"got": `to_plain(result)`, "changed": which inputs the call modified and how
  (`mha.checks.effects`), "error": what it raised, "timed_out": bool, "seconds": float}.
- `exercise.verdict(cases, outcomes, seed)` (the judge's process): the failure message, or None. It judges each
  outcome from its own copies of the inputs: a time-out, a crash, a changed input (unless listed in `mutable`) or a
  wrong result fails. `cases(seed)` gives the same cases for the same seed in any process, so a grader can draw the
  seed, and send the learner's process either the seed or the cases (a `Build` is two plain fields, kind and params).
  The check in a notebook is `run_case` then `verdict` in one process; it records each result in the file named by
  MHA_GRADE_LOG when that is set. `uses` names earlier exercises whose functions this one calls: when both fail, the
  message says the earlier one is at fault.

A judge computes the right answer and the classic wrong ones from `case.inputs()` (fresh copies) and compares with
`verify` (tensors), `verify_number` (numbers) or `items` (tuples and lists). Example, a complete exercise whose
learner writes `double(x)`:

    import torch
    from mha.checks import Case, Exercise, register, verify

    def _cases(seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(4, 3, generator=g, dtype=torch.float64)
        return [Case((torch.arange(3.0),), what="double on x (3,)"), Case((x,), what="double on x (4, 3)", drawn=True)]

    def _judge(case, got, changed):
        (x,) = case.inputs()
        verify(got, 2 * x, [(x, "you returned x unchanged"), (x * x, "that is x squared")], what=case.what,
               dtype=x.dtype)

    double = register(Exercise("00", "double", "double", "double(x)", _cases, _judge))

and in the exercise notebook, under the learner's function: `check.double(double)`.
"""

from .compare import PRINTED, CheckFailed, difference, items, read_tensor, same, tolerance, verify, verify_number
from .effects import changes, snapshot
from .framework import (
    EXERCISES,
    Build,
    Case,
    Exercise,
    OutOfTime,
    build,
    builder,
    call_with_limit,
    describe,
    exercise_names,
    judge_outcome,
    lessons,
    load_all,
    materialize,
    register,
    run_case,
    side_effects,
)
from .plain import as_number, describe_value, to_plain, unusual, unusual_kind

__all__ = [
    "EXERCISES",
    "PRINTED",
    "Build",
    "Case",
    "CheckFailed",
    "Exercise",
    "OutOfTime",
    "as_number",
    "build",
    "builder",
    "call_with_limit",
    "changes",
    "describe",
    "describe_value",
    "difference",
    "exercise_names",
    "items",
    "judge_outcome",
    "lessons",
    "load_all",
    "materialize",
    "read_tensor",
    "register",
    "run_case",
    "same",
    "side_effects",
    "snapshot",
    "to_plain",
    "tolerance",
    "unusual",
    "unusual_kind",
    "verify",
    "verify_number",
]
