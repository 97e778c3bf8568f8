"""Judging a returned value: right, a known mistake, or different in a way we can say plainly.

A judge compares the learner's (plain) result with the right one, computed from its own copy of the inputs, and
with the results of classic mistakes: `verify` for tensors, `verify_number` for numbers, `items` for tuples and
lists. On a difference they raise `CheckFailed` carrying both a plain statement of what differs and the hints of
every classic mistake whose result equals the learner's on this case.

A hint is shown only if its mistake reproduces the learner's answer on *every* case: the runner (see
`mha.checks.framework`) collects, case by case, which mistakes matched each comparison site ("weights", "output",
...) and which coincided with the right answer where the learner was right. A mistake that matched once by
coincidence is not named; the message then says plainly what differs.
"""

import math

import numpy as np
import torch

from .plain import as_number, describe_value, unusual_kind

# Relative tolerance by the dtype of the inputs: the learner's arithmetic in that dtype against ours in float64.
TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}
PRINTED = "returned None: did you print the result instead of returning it?"


class CheckFailed(AssertionError):
    """An exercise check that did not pass; the message says why.

    Args:
        detail: what differs, stated plainly (no guess about the cause).
        what: the case, in words ("scores for q (3, 5) float32 and k (7, 5) float32").
        matches: hints of the classic mistakes whose result equals the learner's here, most specific first.
        site: which comparison of the case failed ("result", "weights", ...): a hint is named only if it
            matches at this site on every case.
    """

    def __init__(self, detail: str, what: str = "", matches=(), site: str = "result"):
        self.detail, self.what, self.site = detail, what, site
        self.matches = list(dict.fromkeys(matches))
        super().__init__(self.named(detail))

    def named(self, text: str) -> str:
        """The message with `text` after the case's description."""
        return f"{self.what}: {text}" if self.what else text

    def _render_traceback_(self):
        # IPython shows this instead of a traceback: the learner needs the hint, not our call stack.
        return [f"\x1b[31m✗ {self}\x1b[0m"]


class Sites:
    """What one case's judge saw at each comparison site: the hints that coincided with a right answer there, or
    the failure."""

    def __init__(self):
        self.passed: dict[str, set[str]] = {}
        self.failed: CheckFailed | None = None

    def agrees(self, hint: str, site: str) -> bool:
        """False if this case shows the learner did not make the mistake named by `hint` (at `site`)."""
        if self.failed is not None and self.failed.site == site:
            return hint in self.failed.matches
        if site in self.passed:
            return hint in self.passed[site]
        return True  # the case never reached this site: it says nothing either way


_SITES: list[Sites] = []
_COLLECT: list | None = None  # the tests set a list here to see every comparison a passing answer goes through


def _collect(site: str, expected, wrong, tol: float) -> None:
    if _COLLECT is not None:
        _COLLECT.append({"site": site, "expected": expected, "mistakes": list(wrong), "tol": tol})


def _passed(site: str, coinciding: set[str]) -> None:
    """Note that the case passed at `site`, and which hints coincided there with the right answer."""
    if _SITES:
        seen = _SITES[-1].passed
        seen[site] = seen[site] & coinciding if site in seen else set(coinciding)


def read_tensor(got) -> torch.Tensor | None:
    """A plain value as a tensor: tensors, numpy arrays, numbers and (nested) lists of numbers; else None."""
    if unusual_kind(got) is not None or got is None or isinstance(got, str | dict):
        return None
    if isinstance(got, torch.Tensor):
        return got
    if isinstance(got, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(got))
        except TypeError:
            return None
    if isinstance(got, bool | int | float):
        return torch.tensor(got, dtype=torch.float64 if isinstance(got, float) else None)
    if isinstance(got, list | tuple) and got:
        if all(isinstance(x, torch.Tensor) for x in got):
            try:
                return torch.stack(list(got))
            except (RuntimeError, TypeError):
                return None
        try:
            array = np.asarray(got)
        except (ValueError, TypeError):
            return None
        if array.dtype == object or array.dtype.kind not in "biuf":
            return None
        return torch.from_numpy(array.astype(np.float64) if array.dtype.kind == "f" else array)
    return None


def tolerance(dtype) -> float:
    """The relative tolerance for results computed from inputs of this dtype."""
    return TOLERANCE.get(dtype, 1e-4)


def same(a, b, tol: float = 1e-4) -> bool:
    """Equal in shape and value (NaN equal to NaN, so that a NaN-producing mistake can be recognised)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and torch.equal(a, b)
    if not (a.is_floating_point() or b.is_floating_point()):
        return torch.equal(a.long(), b.long())
    a, b = a.double(), b.double()
    finite = b[torch.isfinite(b)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    return torch.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _precision(dtype) -> int:
    return {torch.float16: 1, torch.bfloat16: 1, torch.float32: 2, torch.float64: 3}.get(dtype, 0)


def verify(
    got,
    expected: torch.Tensor,
    mistakes=(),
    *,
    what: str,
    site: str = "result",
    dtype: torch.dtype | None = None,
    shape_hint: str = "",
    form_hint: str = "",
) -> torch.Tensor:
    """Pass if the tensor `got` equals `expected`; else raise CheckFailed with what differs and the mistakes it equals.

    Args:
        got: the learner's result, plain data (a tensor, an array, a list of numbers, or anything else).
        expected: the right result.
        mistakes: (wrong result, hint) pairs, most specific first; a wrong result of None is skipped.
        what: the case in words, for the message.
        site: the name of this comparison within a case (see `CheckFailed`).
        dtype: the dtype of the inputs: a floating result must be at least as precise (float64 in, float64 out),
            and it sets the tolerance.
        shape_hint: said after a wrong shape, e.g. "(..., q_pos, k_pos): one score per (query, key) pair".
        form_hint: said when `got` is not a tensor at all, e.g. "return the scores as a tensor".

    Returns:
        `got` as a tensor.
    """
    tol = tolerance(dtype)
    t = read_tensor(got)
    wrong = [(w, h) for w, h in mistakes if w is not None]
    if t is None:
        hint = [PRINTED] if got is None else []
        expected_form = form_hint or f"a tensor {tuple(expected.shape)}"
        raise CheckFailed(f"returned {describe_value(got)}; expected {expected_form}", what, hint, site)
    matches = [h for w, h in wrong if same(t, w, tol)]
    if t.dtype == torch.bool and expected.dtype != torch.bool:
        kind = "a boolean" if t.ndim == 0 else "booleans"
        shown = f" ({bool(t)})" if t.ndim == 0 else ""
        raise CheckFailed(
            f"returned {kind}{shown}; expected {'a number' if expected.ndim == 0 else 'numbers'} "
            f"({_name(expected.dtype)}): return the value itself, not a comparison of it",
            what,
            matches,
            site,
        )
    if expected.dtype == torch.bool and t.dtype != torch.bool:
        right = t.shape == expected.shape and not t.is_floating_point() and same(t != 0, expected)
        raise CheckFailed(
            f"has dtype {_name(t.dtype)}{'; the values are right, but' if right else ';'} a mask must be boolean "
            f"(torch.bool): use .bool(), or a comparison, which gives booleans",
            what,
            matches,
            site,
        )
    if not expected.is_floating_point() and expected.dtype != torch.bool and t.is_floating_point():
        raise CheckFailed(
            f"has dtype {_name(t.dtype)}; expected integers ({_name(expected.dtype)})",
            what,
            matches,
            site,
        )
    if dtype is not None and t.is_floating_point() and _precision(t.dtype) < _precision(dtype):
        plain = (
            f"returned {_name(t.dtype)} for {_name(dtype)} inputs: keep "
            f"the inputs' dtype (create new tensors with dtype=x.dtype or *_like, and do not call .float())"
        )
        raise CheckFailed(plain, what, matches + [plain], site)
    if same(t, expected, tol):
        _passed(site, {h for w, h in wrong if same(w, expected, tol)})
        _collect(site, expected, [(h, w) for w, h in wrong], tol)
        return t
    raise CheckFailed(difference(t, expected, shape_hint), what, matches, site)


def difference(got: torch.Tensor, expected: torch.Tensor, shape_hint: str = "") -> str:
    """Where and by how much two tensors differ, in a sentence."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    if got.shape != expected.shape:
        return f"has shape {tuple(got.shape)}, expected {tuple(expected.shape)}" + (
            f" = {shape_hint}" if shape_hint else ""
        )
    if got.dtype == torch.bool or expected.dtype == torch.bool:
        where = tuple(int(i) for i in (got != expected).nonzero()[0])
        return f"wrong value at index {where}: got {bool(got[where])}, expected {bool(expected[where])}"
    nan = torch.isnan(got.double()) & ~torch.isnan(expected.double())
    if nan.any():
        where = tuple(int(i) for i in nan.nonzero()[0])
        return f"NaN at index {where}, expected {expected[where].item():.4g}"
    if got.ndim == 0:
        a, b = pair(got.item(), expected.item(), 6)
        return f"got {a}, expected {b}"
    diff = (got.double() - expected.double()).abs().nan_to_num(nan=math.inf)
    where = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    a, b = pair(got[where].item(), expected[where].item(), 4)
    return f"values differ; largest difference {diff.max().item():.3g} at index {where}: got {a}, expected {b}"


def pair(got: float, expected: float, digits: int) -> tuple[str, str]:
    """Two numbers printed with `digits` significant digits, or as many more as it takes for them to look different
    ("got -0.33163, expected -0.33159", not "got -0.3316, expected -0.3316")."""
    for n in range(digits, 18):
        a, b = f"{got:.{n}g}", f"{expected:.{n}g}"
        if a != b:
            return a, b
    return repr(got), repr(expected)


def verify_number(
    got,
    expected,
    mistakes=(),
    *,
    what: str,
    site: str = "result",
    integer: bool = False,
    form_hint: str = "",
    rel_tol: float = 1e-5,
    abs_tol: float = 1e-9,
):
    """Pass if `got` is one number equal to `expected`; else raise CheckFailed (see `verify`).

    Args:
        got: the learner's result, plain data. A Python number, a numpy number (already made plain) or a 0-d
            tensor is accepted; a bool is not.
        expected: the right number.
        mistakes: (wrong number, hint) pairs, most specific first.
        what, site: as in `verify`.
        integer: the answer is a whole number (a float such as 12.0 is accepted).
        form_hint: said when `got` is not a number, e.g. "one number, the fraction correct".
        rel_tol, abs_tol: how close counts as equal (the default forgives float32 arithmetic).

    Returns:
        `got` as a Python number.
    """
    n = as_number(got)
    wrong = [(w, h) for w, h in mistakes if w is not None]
    if n is None:
        hint = [PRINTED] if got is None else []
        raise CheckFailed(f"returned {describe_value(got)}; expected {form_hint or 'one number'}", what, hint, site)
    if not isinstance(n, int | float) or (isinstance(n, float) and math.isnan(n)):
        raise CheckFailed(f"returned {n!r}; expected {form_hint or 'one number'}", what, [], site)
    if integer:  # whole numbers compare exactly (a float such as 12.0 equals 12)
        rel_tol, abs_tol = 1e-12, 0.0

    def close(a, b):
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)

    matches = [h for w, h in wrong if close(n, w)]
    if close(n, expected):
        if integer and isinstance(n, float) and not n.is_integer():
            raise CheckFailed(f"got {n}, which is not a whole number", what, matches, site)
        _passed(site, {h for w, h in wrong if close(w, expected)})
        _collect(site, expected, [(h, w) for w, h in wrong], rel_tol)
        return n
    if integer:
        plain = f"got {_fmt(n)}, expected {_fmt(expected)}"
    else:
        a, b = pair(float(n), float(expected), 6)
        plain = f"got {a}, expected {b}"
    raise CheckFailed(plain, what, matches, site)


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) or float(n).is_integer() else f"{n:,.6g}"


def items(got, n: int, *, what: str, names: str, site: str = "returned") -> list:
    """The n items of a returned tuple or list (either is accepted); else raise CheckFailed saying what came back.

    Args:
        got: the learner's result, plain data.
        n: how many items the result must have.
        what: the case in words.
        names: the items in words, e.g. "(output, weights)".
        site: as in `verify`.
    """
    if isinstance(got, list | tuple) and len(got) == n:
        _passed(site, set())
        return list(got)
    hint = [PRINTED] if got is None else []
    count = {2: "two", 3: "three"}.get(n, str(n))
    raise CheckFailed(f"returned {describe_value(got)}; return {count} things, {names}", what, hint, site)
