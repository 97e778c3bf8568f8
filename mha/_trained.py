"""Trainings a lesson's notebook runs, done once per grading and read back by each of the class's notebooks.

Three exercise notebooks (lessons 02, 04 and 07) train a small model with the course's code before their last
exercises: 6 to 9 CPU seconds each, the same training in every student's notebook, and about half of what grading a
class costs. Each such course function is marked `@once()`. Outside grading it is the function itself. When the
grader grades a lesson, it first runs the course's own solutions notebook of that lesson, outside any sandbox, with
MHA_TRAINED naming a folder and MHA_TRAINED_RECORD=1: each marked call saves its result there (`mha.course.trained`).
Each student's notebook then runs with MHA_TRAINED naming the same folder, read-only in its sandbox: a call with the
same arguments reads the saved result back instead of training again. Nothing a student's process does can change
the folder, and what is judged never came from those models: the grader judges every answer on inputs it builds
itself.

A call is saved only when its arguments are plain data (numbers, text, tuples, lists, dicts and dataclasses of
them, each named with its type, a dataclass by its module and class), so that two calls with the same key are the
same call, and only when it leaves torch's global random state as
it found it, so that reading it back changes nothing the notebook's later cells draw. Arguments named in `ignore`
(a progress bar) are not part of the key.
"""

import dataclasses
import functools
import hashlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch

FOLDER = "MHA_TRAINED"  # where saved trainings are read from (and, when recording, written to)
RECORD = "MHA_TRAINED_RECORD"  # "1": this process is the grader's run of the course's own notebook: save each call
_PLAIN = (bool, int, float, str, type(None))


def once(ignore: tuple[str, ...] = ("progress",)) -> Callable:
    """Mark a course function whose result a grading may save once and read back in every notebook (see above)."""

    def mark(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def read_back_or_run(*args, **kwargs):
            folder = os.environ.get(FOLDER)
            key = _key(fn, signature, args, kwargs, ignore) if folder else None
            if key is None:
                return fn(*args, **kwargs)
            path = Path(folder) / f"{key}.pt"
            if os.environ.get(RECORD) == "1":
                return _run_and_save(fn, args, kwargs, path)
            try:
                return torch.load(path, weights_only=False)  # written by the grader's run of the course's notebook
            except Exception:  # noqa: BLE001 - not saved (or unreadable): train as without a grading
                return fn(*args, **kwargs)

        read_back_or_run.trained_once = True
        return read_back_or_run

    return mark


def _run_and_save(fn: Callable, args: tuple, kwargs: dict, path: Path):
    before = torch.get_rng_state()
    result = fn(*args, **kwargs)
    if torch.equal(torch.get_rng_state(), before):  # else reading it back would leave another random state
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            torch.save(result, partial)
            os.chmod(partial, 0o644)  # every notebook's user reads it; none writes it
            os.replace(partial, path)  # a reader finds the whole file or none
        except Exception:  # noqa: BLE001 - not saved (a full disk, say): each notebook trains for itself
            partial.unlink(missing_ok=True)
    return result


def _key(fn: Callable, signature: inspect.Signature, args: tuple, kwargs: dict, ignore) -> str | None:
    """The call's key: the function and its arguments (defaults filled in); None if they are not all plain data."""
    try:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = [(name, _encoded(value)) for name, value in bound.arguments.items() if name not in ignore]
        text = repr((fn.__module__, fn.__qualname__, arguments))
    except Exception:  # noqa: BLE001 - not plain data, or a value with no text (an int of 5,000 digits): not saved
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _NotPlain(Exception):
    pass


def _encoded(value, depth: int = 0):
    """Plain data as text that says all of it and its types: numbers, text, tuples, lists, dicts, and dataclasses
    (named by module and class, every field); anything else (a tensor, whose repr elides; an object) raises."""
    if depth > 8:
        raise _NotPlain("nested too deep")
    kind = type(value)
    if kind in _PLAIN:
        return (kind.__name__, repr(value))
    if kind in (tuple, list):
        return (kind.__name__, [_encoded(v, depth + 1) for v in value])
    if kind is dict:
        return ("dict", [(_encoded(k, depth + 1), _encoded(v, depth + 1)) for k, v in value.items()])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [(f.name, _encoded(getattr(value, f.name), depth + 1)) for f in dataclasses.fields(value)]
        return ("dataclass", kind.__module__, kind.__qualname__, fields)
    raise _NotPlain(kind.__name__)
