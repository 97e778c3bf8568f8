"""Plain data between the grader and a notebook's process: JSON and `.npy` arrays on a pipe, never pickle.

A message is a JSON frame followed by one frame per array it refers to, each array in NumPy's `.npy` format read
with `allow_pickle=False`. A frame is an 8-byte big-endian length and that many bytes. The reader caps every length,
the number of arrays, their total size, the depth of nesting and the number of items; it accepts only numeric and
boolean arrays. Anything else raises `WireError`, so a process that writes garbage on its pipe costs only itself.

Values travel as tagged JSON: numbers, strings, booleans and None as themselves; `{"list": [...]}`,
`{"tuple": [...]}`, `{"dict": [[key, value], ...]}` (keys need not be strings), `{"complex": [re, im]}`;
`{"tensor": i}` and `{"array": i}` for the i-th array, restored as a torch tensor or a NumPy array;
`{"build": spec}` for an object the receiving side constructs itself from a plain description, where it accepts
one; `{"foreign": type name, "text": short repr}` for anything else, which is described and never rebuilt.
"""

import io
import json
import os
import select
import time
from dataclasses import dataclass

import numpy as np

MAX_JSON = 4 << 20  # bytes of one JSON frame
MAX_ARRAYS = 4096
MAX_ARRAY_BYTES = 256 << 20  # all arrays of one message together
MAX_REPLY = 16 << 20  # all arrays of one answer to a case (the checks' largest right answer is under 0.3 MB)
MAX_DEPTH = 32
MAX_ITEMS = 200_000
_HEADER = 8
_KINDS = "biufc"  # bool, int, unsigned, float, complex: the only array dtypes accepted


class WireError(Exception):
    """A message that is malformed or too large."""


class TooLate(WireError):
    """A message that did not arrive (or could not be sent) in time."""


class Closed(WireError):
    """The other side closed its end: its process has ended."""


@dataclass(frozen=True)
class Foreign:
    """A value that is not plain data, described by its type's name and a short repr."""

    type_name: str
    text: str

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


# --------------------------------------------------------------------------------------------------- encoding


def encode(value, spec_of=None) -> tuple[bytes, list[bytes]]:
    """The JSON text and the `.npy` arrays of one value; objects that are not plain data become `Foreign`.

    Args:
        value: plain data.
        spec_of: function of an object returning its build spec (plain data) or None; objects with a spec travel
            as `{"build": spec}` (default: none do).
    """
    arrays: list[bytes] = []
    tree = _encode(value, arrays, 0, spec_of or (lambda _: None))
    return json.dumps(tree, allow_nan=True).encode(), arrays


def _encode(value, arrays: list[bytes], depth: int, spec_of):
    if depth > MAX_DEPTH:
        return {"foreign": "nesting", "text": f"nested more than {MAX_DEPTH} levels deep"}
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 1 << 63 else float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, Foreign):
        return {"foreign": value.type_name, "text": value.text}
    spec = spec_of(value)
    if spec is not None:
        return {"build": _encode(spec, arrays, depth + 1, spec_of)}
    if isinstance(value, np.generic) and value.dtype.kind in _KINDS:
        return _encode(value.item(), arrays, depth, spec_of)
    if isinstance(value, np.ndarray):
        return _array(value, "array", arrays)
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return _array(_tensor_to_numpy(torch, value), "tensor", arrays)
    if isinstance(value, list | tuple):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(item, arrays, depth + 1, spec_of) for item in value]}
    if isinstance(value, dict):
        again = lambda x: _encode(x, arrays, depth + 1, spec_of)  # noqa: E731
        return {"dict": [[again(k), again(v)] for k, v in value.items()]}
    return {"foreign": type(value).__name__, "text": _short_repr(value)}


def _array(a: np.ndarray, kind: str, arrays: list[bytes]) -> dict:
    if a.dtype.kind not in _KINDS or a.dtype.fields is not None:
        return {"foreign": f"{kind} of {a.dtype}", "text": f"shape {a.shape}"}
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array(a, order="C"), allow_pickle=False)  # 0-d stays 0-d
    arrays.append(buffer.getvalue())
    return {kind: len(arrays) - 1}


def _tensor_to_numpy(torch, t) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    if t.is_sparse:
        t = t.to_dense()
    return t.resolve_conj().resolve_neg().numpy()


def _torch():
    import sys

    return sys.modules.get("torch")  # only a process that already uses torch can hold tensors


def _short_repr(value) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a repr that raises is still described
        text = f"(repr raised {type(error).__name__})"
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------------------- decoding


def decode(text: bytes, arrays: list[bytes], build=None, as_tensor=True):
    """The value of a message.

    Args:
        text: the JSON frame.
        arrays: the `.npy` frames.
        build: called with each decoded `{"build": spec}` to make the object; None: such a message is refused.
        as_tensor: restore `{"tensor": i}` as a torch tensor (False: as a NumPy array).
    """
    try:
        tree = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise WireError(f"not a JSON message ({type(error).__name__})") from None
    loaded = [_load_array(blob, i) for i, blob in enumerate(arrays)]
    counter = [0, set()]  # items decoded, arrays handed out
    return _decode(tree, loaded, build, as_tensor, 0, counter)


def _load_array(blob: bytes | bytearray, index: int) -> np.ndarray:
    """The array of one `.npy` frame, read in place (no copy of its data: the receiver's memory stays bounded)."""
    try:
        head = io.BytesIO(bytes(blob[:12]))
        version = np.lib.format.read_magic(head)
        size_bytes = 2 if version == (1, 0) else 4
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version}")
        start = 8 + size_bytes + int.from_bytes(blob[8 : 8 + size_bytes], "little")
        if start > min(len(blob), 1 << 16):
            raise ValueError("a header longer than the frame")
        head = io.BytesIO(bytes(blob[:start]))
        np.lib.format.read_magic(head)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(head)
    except Exception as error:
        raise WireError(f"array {index} is not a valid .npy array ({type(error).__name__}: {error})") from None
    if dtype.hasobject:
        raise WireError(f"array {index} is not a valid .npy array here: it holds Python objects")
    if dtype.kind not in _KINDS or dtype.fields is not None:
        raise WireError(f"array {index} has dtype {dtype}; only numbers and booleans are accepted")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(blob) - start:
        raise WireError(f"array {index}: {len(blob) - start} bytes of data for shape {shape} of {dtype}")
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=start)
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def _decode(tree, arrays, build, as_tensor, depth, counter):
    counter[0] += 1
    if counter[0] > MAX_ITEMS:
        raise WireError(f"more than {MAX_ITEMS} items")
    if depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    if not isinstance(tree, dict) or len(tree) not in (1, 2):
        raise WireError(f"unexpected {type(tree).__name__} in a message")
    (tag, body), *rest = tree.items()
    again = lambda x: _decode(x, arrays, build, as_tensor, depth + 1, counter)  # noqa: E731
    if tag in ("list", "tuple") and isinstance(body, list) and not rest:
        items = [again(x) for x in body]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict" and isinstance(body, list) and not rest:
        out = {}
        for pair in body:
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("a dict entry is not a [key, value] pair")
            key = again(pair[0])
            try:
                out[key] = again(pair[1])
            except TypeError:
                raise WireError(f"unhashable dict key {type(key).__name__}") from None
        return out
    if tag in ("tensor", "array") and isinstance(body, int) and not isinstance(body, bool) and not rest:
        if not 0 <= body < len(arrays):
            raise WireError(f"refers to array {body}, but {len(arrays)} arrived")
        a = arrays[body]
        if body in counter[1] or not a.flags.writeable:
            a = a.copy()  # a second reference to the same array gets its own copy
        counter[1].add(body)
        if tag == "tensor" and as_tensor:
            import torch

            return torch.from_numpy(a)
        return a
    if tag == "complex" and isinstance(body, list) and len(body) == 2 and not rest:
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in body):
            raise WireError("a complex number needs two real parts")
        return complex(body[0], body[1])
    if tag == "build" and not rest:
        if build is None:
            raise WireError("an object to build, where only plain data is accepted")
        spec = again(body)
        try:
            return build(spec)
        except Exception as error:
            raise WireError(f"could not build {spec!r:.100}: {type(error).__name__}: {error}") from None
    if tag == "foreign" and rest and rest[0][0] == "text":
        return Foreign(str(body)[:200], str(rest[0][1])[:200])
    raise WireError(f"unknown tag {tag!r}")


# --------------------------------------------------------------------------------------------------- frames


def send(fd: int, value, deadline: float | None = None, spec_of=None) -> None:
    """Write one message (the value's JSON frame, then its arrays) to a file descriptor.

    Args:
        fd: a file descriptor to write to.
        value: plain data.
        deadline: `time.monotonic()` by which all must be written (None: wait for ever); TooLate after it.
        spec_of: see `encode`.
    """
    text, arrays = encode(value, spec_of)
    header = json.dumps({"arrays": len(arrays)}).encode()
    for blob in (header, text, *arrays):
        _write_all(fd, len(blob).to_bytes(_HEADER, "big") + blob, deadline)


def receive(fd: int, deadline: float | None = None, build=None, as_tensor=True, max_bytes: int = MAX_ARRAY_BYTES):
    """Read one message; raise WireError if it is malformed, too large, or not complete by `deadline`.

    A frame over its cap is refused from its length alone, before any of it is read.

    Args:
        fd: a file descriptor to read from.
        deadline: `time.monotonic()` by which the whole message must have arrived (None: wait for ever).
        build: see `decode`.
        as_tensor: see `decode`.
        max_bytes: cap on the total size of the message's arrays (default 256 MiB; the grader reads an answer to
            one case with MAX_REPLY).
    """
    header = _frame(fd, deadline, 256)
    try:
        count = json.loads(header)["arrays"]
    except (ValueError, KeyError, TypeError):
        raise WireError("a message must start with its array count") from None
    if not isinstance(count, int) or not 0 <= count <= MAX_ARRAYS:
        raise WireError(f"array count {count!r} out of range (at most {MAX_ARRAYS})")
    text = _frame(fd, deadline, MAX_JSON)
    arrays, left = [], max_bytes
    for _ in range(count):
        blob = _frame(fd, deadline, left)
        left -= len(blob)
        arrays.append(blob)
    return decode(text, arrays, build=build, as_tensor=as_tensor)


def _frame(fd: int, deadline: float | None, limit: int) -> bytes:
    size = int.from_bytes(_read_exactly(fd, _HEADER, deadline), "big")
    if size > limit:
        raise WireError(f"a frame of {size} bytes is over the limit of {limit}")
    return _read_exactly(fd, size, deadline)


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytearray:
    """`size` bytes, read into one buffer of that size (never twice the memory)."""
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TooLate("no answer in time")
        try:
            count = os.readv(fd, [view[got : got + (1 << 20)]])
        except OSError as error:
            raise Closed(f"the pipe failed ({error})") from None
        if not count:
            raise Closed("the other side closed the pipe")
        got += count
    view.release()
    return data


def _write_all(fd: int, data: bytes, deadline: float | None) -> None:
    view = memoryview(data)
    while view:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([], [fd], [], wait)[1]:
                raise TooLate("the other side did not read in time")
        try:
            view = view[os.write(fd, view[: 1 << 16]) :]
        except BlockingIOError:  # a non-blocking pipe that is full: wait until the reader makes room
            continue
        except OSError as error:  # BrokenPipeError: the reader has gone
            raise Closed(f"the pipe failed ({error})") from None
