"""The helpers of the checks not yet converted to exercises-as-data (see the package docstring); being retired."""

import functools

import numpy as np
import torch

from .framework import EXERCISES, Exercise, _record
from .verify import CheckFailed


class _LegacyExercise(Exercise):
    """An exercise whose check is still one function of the learner's function."""

    def __call__(self, fn, seed=None):
        self.judge(fn)


def exercise(lesson: str, name: str):
    """Register a check as exercise `name` of lesson `lesson`, report its result, and record it for grading."""

    def wrap(check):
        @functools.wraps(check)
        def run(*args, **kwargs):
            try:
                _refuse_course_code(args)
                cases = check(*args, **kwargs)
            except CheckFailed as failure:
                _record(lesson, name, False, str(failure).splitlines()[0])
                raise
            _record(lesson, name, True)
            print(f"✓ lesson {lesson} · {name}: " + ("1 case passes" if cases == 1 else f"all {cases} cases pass"))

        EXERCISES[(lesson, name)] = _LegacyExercise(lesson, name, name, f"{name}(...)", lambda seed: [], run)
        run.lesson, run.exercise = lesson, name
        return run

    return wrap


def _refuse_course_code(args) -> None:
    """A check given the course's own function would test the course, not the learner: say so."""
    for arg in args:
        module = getattr(arg, "__module__", "") or ""
        if callable(arg) and (module == "mha" or module.startswith("mha.")):
            name = getattr(arg, "__qualname__", repr(arg))
            raise CheckFailed(
                f"`{name}` is the course's own code ({module}); the check is for the function you write yourself"
            )


def call(fn, *args, name: str | None = None, explain=None, **kwargs):
    """Call the learner's function; turn a stub or a crash into a CheckFailed that says so.

    Args:
        fn: the learner's function; args and kwargs are passed to it.
        name: how to call it in messages (default: its own name).
        explain: optional function of the exception returning a hint (or None) for a crash the check recognises.
    """
    name = name or getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"`{name}` is not written yet: replace `raise NotImplementedError()` with your code"
        ) from None
    except CheckFailed:
        raise
    except Exception as error:
        hint = explain(error) if explain else None
        inner = _innermost_learner_function(error)
        where = f" (in `{inner}`, which it calls)" if inner and inner != name else ""
        message = f"`{name}` raised {type(error).__name__}{where}: {error}\n  (inputs: {describe(args)})"
        raise CheckFailed(message + (f"\n  likely cause: {hint}" if hint else "")) from error


def _innermost_learner_function(error: BaseException) -> str | None:
    """Name of the deepest function in the traceback that is neither ours, nor a library's, nor Python's."""
    name, tb = None, error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not any(part in filename for part in ("site-packages", "/mha/", "/lib/python")):
            name = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return name


def describe(args) -> str:
    """Short description of a call's arguments: shapes and dtypes for tensors."""
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor | np.ndarray):
            parts.append(f"{type(a).__name__} {tuple(a.shape)} {a.dtype}")
        else:
            parts.append(repr(a) if len(repr(a)) < 40 else type(a).__name__)
    return ", ".join(parts)


def as_tensor(got, what: str) -> torch.Tensor:
    """Accept a tensor, an array or a list of numbers; anything else is a mistake worth naming."""
    if isinstance(got, np.ndarray):
        return torch.from_numpy(got)
    if isinstance(got, list | tuple) and got and all(isinstance(x, int | float) for x in got):
        return torch.tensor(got, dtype=torch.float32)
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should be a tensor, got {type(got).__name__}")
    return got


def expect_shape(got: torch.Tensor, shape, what: str, hint: str = "") -> None:
    if tuple(got.shape) != tuple(shape):
        raise CheckFailed(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(shape)}" + (f": {hint}" if hint else "")
        )


def same(a, b, atol: float = 1e-5) -> bool:
    """Equal in shape and value, NaN equal to NaN (so that a NaN-producing mistake can be recognised)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and torch.equal(a, b)
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4, equal_nan=True)


def diagnose(got, expected, mistakes, what: str) -> None:
    """Pass if `got` equals `expected`; else name the first classic mistake it equals, else show the difference.

    Args:
        got: the learner's result (a tensor, an array or a number).
        expected: the right result.
        mistakes: list of (wrong result, hint), most specific first; a wrong result of None is skipped.
        what: what the result is, for the message ("scores for q (3, 4) and k (5, 4)").
    """
    if same(got, expected):
        return
    for wrong, hint in mistakes:
        if wrong is not None and same(got, wrong):
            raise CheckFailed(f"{what}: {hint}")
    raise CheckFailed(f"{what}: {difference(got, expected)}")


def difference(got, expected) -> str:
    """Where and by how much two tensors differ, in a sentence."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.dtype == torch.bool or expected.dtype == torch.bool:
        if got.dtype != expected.dtype:
            return f"dtype {got.dtype}, expected {expected.dtype}"
        where = tuple(int(i) for i in (got != expected).nonzero()[0])
        return f"wrong value at index {where}: got {bool(got[where])}, expected {bool(expected[where])}"
    if torch.isnan(got).any():
        where = tuple(int(i) for i in torch.isnan(got).nonzero()[0])
        return f"NaN at index {where}"
    if got.ndim == 0:
        return f"got {got.item():.4g}, expected {expected.item():.4g}"
    diff = (got.double() - expected.double()).abs()
    where = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    return (
        f"values differ; largest difference {diff.max().item():.3g} at index {where}: "
        f"got {got[where].item():.4g}, expected {expected[where].item():.4g}"
    )
