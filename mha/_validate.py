"""Argument checks shared by the package.

Every error names what was expected and what arrived, in the course's vocabulary
(batch, seq, q_pos, k_pos, heads, d_model, d_head), so that a learner can fix the call without reading our code.
"""

import contextlib
import contextvars
import functools
import math
import numbers
import os
import warnings

import numpy as np
import torch

# Names of the dimensions of a score tensor, by rank, for error messages.
_SCORE_DIMS = {2: ("q_pos", "k_pos"), 3: ("batch", "q_pos", "k_pos"), 4: ("batch", "heads", "q_pos", "k_pos")}


def fmt_shape(shape) -> str:
    """`(2, 5)` for a shape, `(7,)` for one dimension."""
    return str(tuple(int(s) for s in shape))


def check_int(name: str, value, minimum: int = 1) -> int:
    """A whole number of at least `minimum` (a Python or numpy integer, not a bool or a float): returned as an int."""
    if isinstance(value, torch.SymInt):  # a size while torch.compile traces: checked by the compiler's guards
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_positive(name: str, value, what: str = "a number") -> float:
    """A finite number above 0 (a time, a rate, a peak): NaN, infinities, bools and text refused; returned as a float.

    `what` says what it is, for the message, e.g. "a number of seconds" ("timeout must be a finite number of
    seconds above 0, got inf").
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        article, rest = what.split(" ", 1) if " " in what else ("a", what)
        raise ValueError(f"{name} must be {article} finite {rest} above 0, got {value!r}")
    return float(value)


def check_tensor(name: str, x, what: str = "a torch.Tensor") -> None:
    """The torch functions take tensors; a numpy array (or a list) gets an error that says how to convert it."""
    if isinstance(x, torch.Tensor):
        return
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be {what}, got a numpy array of shape {fmt_shape(x.shape)} and dtype {x.dtype}: convert it "
            f"with torch.from_numpy({name}) (or use the numpy version, e.g. mha.attention_numpy)"
        )
    raise TypeError(f"{name} must be {what}, got {type(x).__name__}")


def check_device(name: str, device) -> torch.device | None:
    """A device given as a string or a torch.device: a clear error for a misspelt name or a GPU that is not there.

    Returns the torch.device (None stays None: the caller's default).
    """
    if device is None:
        return None
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda', got {device!r}") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} asked for, but torch.cuda.is_available() is False on this machine")
    return found


def check_same_device(*named) -> None:
    """Tensors that meet in one computation must be on one device: (name, tensor) pairs, None skipped."""
    named = [(n, x) for n, x in named if x is not None]
    first_name, first = named[0]
    for name, x in named[1:]:
        if x.device != first.device:
            raise ValueError(
                f"{name} is on {x.device} but {first_name} on {first.device}: move them to one device, "
                f"e.g. {name}.to({str(first.device)!r})"
            )


@functools.cache
def _memory_of(device_type: str, index: int | None) -> int | None:
    if device_type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # a platform without these counters: no guard
            return None
    if device_type == "cuda":
        return torch.cuda.get_device_properties(index or 0).total_memory
    return None


def fmt_bytes(n: float) -> str:
    """Bytes in the largest unit that keeps the number at least 1: '1.5 GiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_fits(nbytes: int, device, what: str) -> None:
    """Refuse, before allocating, a tensor larger than all the memory of the device it would live on.

    Args:
        nbytes: bytes the allocation needs.
        device: where it would live (None: the CPU).
        what: what it is, for the message, e.g. "the (batch, heads, q_pos, k_pos) scores".
    """
    if torch.compiler.is_compiling():  # sizes are symbolic while tracing, and were checked on the eager path
        return
    device = torch.device("cpu" if device is None else device)
    total = _memory_of(device.type, device.index)
    if total is not None and nbytes > total:
        raise ValueError(
            f"{what} would need {fmt_bytes(nbytes)}, more than all the memory of this {device.type} "
            f"({fmt_bytes(total)}); use smaller sizes"
        )


def head_size(d_model: int, heads: int) -> int:
    """d_head = d_model // heads, after checking that the heads split d_model evenly."""
    if (
        isinstance(d_model, bool)
        or isinstance(heads, bool)
        or not isinstance(d_model, numbers.Integral)
        or not isinstance(heads, numbers.Integral)
        or d_model < 1
        or heads < 1
    ):
        raise ValueError(f"d_model and heads must be positive integers, got d_model={d_model!r}, heads={heads!r}")
    if d_model % heads:
        raise ValueError(
            f"d_model={d_model} is not divisible by heads={heads}: each head gets d_model / heads features, "
            f"so choose heads among {[h for h in range(1, d_model + 1) if d_model % h == 0]}"
        )
    return d_model // heads


def check_float(name: str, x) -> None:
    """Attention needs real numbers: integer or boolean inputs are a mistake, not something to cast silently."""
    if not isinstance(x, torch.Tensor | np.ndarray):
        raise TypeError(f"{name} must be a tensor of floating-point numbers, got {type(x).__name__}")
    dtype = x.dtype
    is_float = torch.is_floating_point(x) if isinstance(x, torch.Tensor) else np.issubdtype(dtype, np.floating)
    if not is_float:
        raise TypeError(f"{name} must hold floating-point numbers (e.g. float32), got dtype {dtype}")


def check_rank(name: str, x, ranks, layout: str) -> None:
    """`layout` spells the expected dimensions, e.g. "(batch, seq, d_model)"."""
    if x.ndim not in ranks:
        raise ValueError(f"{name} must have shape {layout}, got {x.ndim} dimensions with shape {fmt_shape(x.shape)}")


def check_qkv(q, k, v) -> None:
    """q (..., q_pos, d_head), k (..., k_pos, d_head), v (..., k_pos, d_v), same leading dimensions."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(name, x)
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., seq, d_head), got shape {fmt_shape(x.shape)}"
            )
        if x.shape[-1] == 0:
            raise ValueError(
                f"{name} has d_head = 0 (shape {fmt_shape(x.shape)}): each position needs at least one feature; "
                f"with none, every score is 0 and the weights are uniform whatever the input"
            )
    if not (q.ndim == k.ndim == v.ndim):
        raise ValueError(
            f"q, k and v must have the same number of dimensions, got shapes "
            f"{fmt_shape(q.shape)}, {fmt_shape(k.shape)} and {fmt_shape(v.shape)}"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if isinstance(q, torch.Tensor):
        check_same_device(("q", q), ("k", k), ("v", v))
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_head (queries are compared with keys by a dot product), "
            f"got q {fmt_shape(q.shape)} and k {fmt_shape(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions k_pos (one value per key), "
            f"got k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)}"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"q, k and v must share their leading dimensions (batch, heads, ...), got "
            f"{fmt_shape(q.shape)}, {fmt_shape(k.shape)} and {fmt_shape(v.shape)}"
        )


def check_mask(mask, scores_shape, name: str = "mask") -> None:
    """A boolean mask must broadcast against scores (..., q_pos, k_pos); True means "may attend"."""
    is_bool = mask.dtype == torch.bool if isinstance(mask, torch.Tensor) else mask.dtype == np.bool_
    if not is_bool:
        raise TypeError(
            f"{name} must be boolean (True = may attend), got dtype {mask.dtype}; "
            f"for a 0/1 tensor use mask.bool(), for nn.MultiheadAttention's convention use from_torch_mha_mask"
        )
    scores_shape = tuple(scores_shape)
    dims = _SCORE_DIMS.get(len(scores_shape), ("...", "q_pos", "k_pos"))
    allowed = " or ".join("(" + ", ".join(dims[i:]) + ")" for i in range(len(dims) - 2, -1, -1))
    ok = 2 <= mask.ndim <= len(scores_shape) and all(
        m in (1, s) for m, s in zip(reversed(mask.shape), reversed(scores_shape), strict=False)
    )
    ok = ok and mask.shape[-2:] in ((scores_shape[-2], scores_shape[-1]), (1, scores_shape[-1]))
    if not ok:
        raise ValueError(
            f"{name} has shape {fmt_shape(mask.shape)} but scores have shape {fmt_shape(scores_shape)}: "
            f"expected {allowed} (a size of 1 broadcasts)"
        )


def kv_group_size(heads: int, kv_heads: int) -> int:
    """Query heads per group of shared keys and values, heads // kv_heads, after checking that kv_heads divides."""
    if not isinstance(kv_heads, int) or isinstance(kv_heads, bool) or kv_heads < 1:
        raise ValueError(f"kv_heads must be a positive integer, got kv_heads={kv_heads!r}")
    if heads % kv_heads:
        raise ValueError(
            f"heads={heads} is not divisible by kv_heads={kv_heads}: the query heads are shared out in equal "
            f"groups, one group per key/value head, so choose kv_heads among "
            f"{[g for g in range(1, heads + 1) if heads % g == 0]}"
        )
    return heads // kv_heads


# --------------------------------------------------------------------------------------------------- NaN and overflow
# A non-finite output is named, not only seen: the input that holds NaN or infinities, or else the scores' overflow.

_OVERFLOW = (
    "{where}: the scores q·kᵀ/√d_head overflowed to ±inf ({dtype} holds numbers up to {largest:.3g}), so softmax "
    "computed inf - inf = NaN and the output is NaN; the largest |q| is {q:.3g} and the largest |k| {k:.3g}. Scale q "
    "and k down (normalise the layer's input), or compute in a wider dtype (float64)."
)
_NOT_FINITE = (
    "{where}: {name} holds {what} (of its {total} numbers), so the output is NaN where they are used; find where "
    "they came from (a division by zero, the log of 0, a learning rate too large) before attention"
)
# Set while a layer runs attention inside it: the layer names the culprit in its own terms (query, in_proj.weight).
_QUIET = contextvars.ContextVar("mha_attention_quiet", default=False)


@contextlib.contextmanager
def diagnosed_by_caller():
    """Inside this block, attention does not warn about a non-finite output: the caller checks and names it."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def _not_finite(x) -> str | None:
    """'3 NaN and 1 infinite' for an array or tensor holding such numbers, else None."""
    if isinstance(x, np.ndarray):
        nan, bad = int(np.isnan(x).sum()), int((~np.isfinite(x)).sum())
    else:
        nan, bad = int(torch.isnan(x).sum()), int((~torch.isfinite(x)).sum())
    if not bad:
        return None
    return " and ".join(
        part for part in (f"{nan} NaN" if nan else "", f"{bad - nan} infinite" if bad - nan else "") if part
    )


def not_finite_message(named, q=None, k=None, where: str = "attention") -> str:
    """Why an output is not finite: the first of `named` (name, array or tensor) that holds NaN or infinities, or
    else the scores' overflow (with the largest |q| and |k| when given)."""
    for name, x in named:
        if x is None or not (
            x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
        ):
            continue
        what = _not_finite(x)
        if what:
            return _NOT_FINITE.format(
                where=where, name=name, what=what, total=x.numel() if isinstance(x, torch.Tensor) else x.size
            )
    if q is None:
        return (
            f"{where}: the output is not finite while every input is finite: the scores q·kᵀ/√d_head overflowed to "
            f"±inf, so softmax computed inf - inf = NaN. Scale the input down (normalise it), or compute in a wider "
            f"dtype (float64)."
        )
    if isinstance(q, np.ndarray):
        dtype, largest, top_q, top_k = q.dtype, float(np.finfo(q.dtype).max), np.abs(q).max(), np.abs(k).max()
    else:
        dtype, largest = str(q.dtype).removeprefix("torch."), torch.finfo(q.dtype).max
        top_q, top_k = float(q.abs().max()), float(k.abs().max())
    return _OVERFLOW.format(where=where, dtype=dtype, largest=largest, q=top_q, k=top_k)


def warn_if_not_finite(out: torch.Tensor, named, q=None, k=None, where: str = "attention", stacklevel: int = 2) -> None:
    """Warn when `out` is not finite, naming why (`not_finite_message`); on a CPU only (see `mha.attention`)."""
    if out.device.type != "cpu" or torch.compiler.is_compiling() or _QUIET.get():
        return
    with torch.no_grad():
        # One number first (no tensor of the output's size is made): a NaN or inf anywhere makes the sum non-finite.
        if math.isfinite(float(out.sum(dtype=torch.float64))) or bool(torch.isfinite(out).all()):
            return
        message = not_finite_message(named, q, k, where)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
