"""Plain data: whatever a learner's function returned, in a form that any process can hold, send and judge.

Plain data is None, bools, numbers, strings, torch tensors (detached, on the CPU), numpy arrays, and lists, tuples
and dicts of those. `to_plain` turns any returned value into plain data and never raises: a value that has no plain
form (a generator, a module, a function, a dict keyed by tensors) becomes an *unusual* marker, a dict
`{"__unusual__": "a generator", "kind": "generator"}`, which the judge reports in words.
"""

import numbers
import types

import numpy as np
import torch

UNUSUAL = "__unusual__"
_MAX_ITEMS = 100_000
_MAX_DEPTH = 8


def unusual(description: str, kind: str = "other", **extra) -> dict:
    """The plain stand-in for a value that has none: a description the judge can show the learner.

    Args:
        description: the value in words, e.g. "a generator".
        kind: a short tag the judges test ("none" is never used: None is plain).
        extra: more plain data about the value (e.g. `items` for a dict with tensor keys).
    """
    return {UNUSUAL: description, "kind": kind, **extra}


def unusual_kind(value) -> str | None:
    """The kind of an unusual marker, or None for any other value."""
    if isinstance(value, dict) and UNUSUAL in value.keys() and isinstance(value.get(UNUSUAL), str):
        return value.get("kind", "other")
    return None


def to_plain(value):
    """Plain data for any value a learner's function returned; never raises.

    Args:
        value: anything.

    Returns:
        plain data: tensors are detached, moved to the CPU and copied (a later change to the learner's tensor does
        not reach the judge); numpy scalars become Python numbers; anything without a plain form becomes an
        unusual marker (see `unusual`).
    """
    try:
        return _plain(value, 0, set())
    except Exception as error:  # noqa: BLE001 - never raise on a learner's value
        return unusual(f"a {_type_name(value)} that could not be read ({type(error).__name__})")


def _type_name(value) -> str:
    try:
        return type(value).__name__
    except Exception:  # noqa: BLE001
        return "value"


def _plain(value, depth: int, seen: set):
    if value is None or type(value) in (bool, int, float, str, complex):
        return value
    if isinstance(value, np.generic):
        return value.item() if not isinstance(value, np.object_ | np.void) else unusual("a numpy object scalar")
    if isinstance(value, bool | int):
        return int(value) if not isinstance(value, bool) else bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _tensor(value)
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.fields is not None:
            return unusual("a numpy array of Python objects", kind="array")
        return np.array(value, copy=True)
    if isinstance(value, numbers.Real):  # Fraction, Decimal-like
        return float(value)
    if isinstance(value, types.GeneratorType) or (hasattr(type(value), "__next__") and hasattr(value, "__iter__")):
        return unusual(
            f"a {_type_name(value)} (an iterator, used up once read): build a list or a tensor instead",
            kind="generator",
        )
    if isinstance(value, torch.nn.Module):
        return unusual(f"a module ({_type_name(value)})", kind="module")
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return unusual(f"a function ({getattr(value, '__name__', '?')}), not its result", kind="function")
    if isinstance(value, list | tuple | dict | set | frozenset | range):
        if depth >= _MAX_DEPTH or id(value) in seen:
            return unusual(f"a {_type_name(value)} nested too deeply to read", kind="deep")
        if len(value) > _MAX_ITEMS:
            return unusual(f"a {_type_name(value)} of {len(value):,} items", kind="huge")
        seen = seen | {id(value)}
        if isinstance(value, range):
            return list(value)
        if isinstance(value, dict):
            return _dict(value, depth, seen)
        items = [_plain(item, depth + 1, seen) for item in list(value)]
        if isinstance(value, set | frozenset):
            return unusual(f"a set of {len(items)} items (sets have no order)", kind="set", items=items)
        return tuple(items) if isinstance(value, tuple) else items
    return unusual(f"a {_type_name(value)}", kind="object")


def _tensor(t: torch.Tensor):
    if t.is_meta or getattr(t, "is_nested", False):
        return unusual("a tensor with no values (meta or nested)", kind="tensor")
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.to("cpu").resolve_conj().resolve_neg()
    return torch.Tensor.clone(t).as_subclass(torch.Tensor)


def _dict(value: dict, depth: int, seen: set):
    items = [(k, v) for k, v in dict.items(value)]
    keys = [_key(k) for k, _ in items]
    values = [_plain(v, depth + 1, seen) for _, v in items]
    if any(k is _NO_KEY for k in keys):
        bad = next(k for (k, _), plain in zip(items, keys) if plain is _NO_KEY)
        kind = "tensor keys" if isinstance(bad, torch.Tensor) else f"{_type_name(bad)} keys"
        pairs = [[_plain(k, depth + 1, seen), v] for (k, _), v in zip(items, values)]
        return unusual(f"a dict with {kind}", kind="dict keys", key_type=_type_name(bad), items=pairs)
    plain = dict(zip(keys, values))
    if len(plain) < len(items):  # two keys became equal (1 and 1.0, or np.int64(1) and 1)
        return unusual("a dict with two keys that are equal numbers", kind="dict keys", key_type="duplicate")
    return plain


_NO_KEY = object()


def _key(k):
    """A dict key as plain data, or _NO_KEY when it has none (a tensor, an object)."""
    if k is None or type(k) in (bool, int, float, str):
        return k
    if isinstance(k, np.generic) and not isinstance(k, np.object_ | np.void):
        return k.item()
    for kind in (bool, int, float, str):  # subclasses (IntEnum, ...)
        if isinstance(k, kind):
            return kind(k)
    if isinstance(k, tuple):
        inner = tuple(_key(x) for x in k)
        return _NO_KEY if any(x is _NO_KEY for x in inner) else inner
    return _NO_KEY


def as_number(value) -> float | int | None:
    """A plain value read as one real number: a Python number, or a 0-d tensor or array; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        if value.dtype == torch.bool or value.is_complex():
            return None
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        if value.dtype == np.bool_ or np.iscomplexobj(value):
            return None
        return value.item()
    return None


def _noun(value) -> str:
    """One word for a plain value's type: "tensor", "number", "None", ..."""
    if unusual_kind(value) is not None:
        return "unusual value"
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, list | tuple | dict | str):
        return type(value).__name__
    return _type_name(value)


def describe_value(value) -> str:
    """A plain value in a few words, for messages: "None", "a tuple of 2 tensors", "a tensor (3, 4) float32"."""
    if unusual_kind(value) is not None:
        return value[UNUSUAL]
    if value is None:
        return "None"
    if isinstance(value, bool):
        return f"a bool ({value})"
    if isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, float):
        return f"a number ({value:.6g})"
    if isinstance(value, str):
        return f"a string ({value[:30]!r})"
    if isinstance(value, torch.Tensor):
        return f"a tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, np.ndarray):
        return f"a numpy array {tuple(value.shape)} {value.dtype}"
    if isinstance(value, list | tuple):
        nouns = {_noun(v) for v in value}
        what = nouns.pop() + "s" if len(nouns) == 1 else "items"
        return f"a {type(value).__name__} of {len(value)} {what}"
    if isinstance(value, dict):
        return f"a dict of {len(value)} items"
    return f"a {_type_name(value)}"
