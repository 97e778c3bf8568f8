"""Plain data between the grader and a notebook's process: what goes through, and what is refused."""

import io
import json
import math
import os
import threading
import time

import numpy as np
import pytest
import torch

from mha.course import wire


def _round_trip(value, **kwargs):
    read, write = os.pipe()
    try:
        wire.send(write, value, spec_of=kwargs.pop("spec_of", None))
        return wire.receive(read, deadline=time.monotonic() + 5, **kwargs)
    finally:
        os.close(read)
        os.close(write)


def test_plain_data_comes_back_as_it_went():
    value = {
        "numbers": (1, -2.5, None, True, "text", 3 + 4j),
        7: [torch.ones(2, 3, dtype=torch.bool), torch.arange(6, dtype=torch.int64).view(2, 3), np.float32(1.5)],
        (1, 2): {"__unusual__": "a generator", "kind": "generator"},
        "half": torch.tensor([1.0, 2.0], dtype=torch.float16),
        "scalar": torch.tensor(2.0, dtype=torch.float64),
        "array": np.eye(2),
    }
    got = _round_trip(value)
    assert got["numbers"] == value["numbers"] and got[(1, 2)] == value[(1, 2)]
    assert torch.equal(got[7][0], value[7][0]) and got[7][0].dtype == torch.bool
    assert torch.equal(got[7][1], value[7][1]) and got[7][2] == 1.5
    assert got["half"].dtype == torch.float16 and got["scalar"].shape == () and got["scalar"].dtype == torch.float64
    assert isinstance(got["array"], np.ndarray) and np.array_equal(got["array"], np.eye(2))
    assert math.isnan(_round_trip(float("nan")))


def test_what_is_not_plain_data_is_described_never_rebuilt():
    got = _round_trip([object(), torch.tensor([1.0], dtype=torch.bfloat16), lambda x: x])
    assert isinstance(got[0], wire.Foreign) and got[0].type_name == "object"
    assert got[1].dtype == torch.float32, "bfloat16 has no NumPy form: it travels as float32"
    assert got[2].type_name == "function"


def test_a_build_spec_travels_only_where_it_is_accepted():
    class Spec:
        pass

    spec_of = lambda v: {"kind": "model", "seed": 3} if isinstance(v, Spec) else None  # noqa: E731
    assert _round_trip([Spec()], spec_of=spec_of, build=lambda spec: ("built", spec["seed"])) == [("built", 3)]
    with pytest.raises(wire.WireError, match="only plain data"):
        _round_trip([Spec()], spec_of=spec_of)


def _frames(*blobs: bytes) -> bytes:
    return b"".join(len(b).to_bytes(8, "big") + b for b in blobs)


def _npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"\x00\x00\x00\x00\x00\x00\x00", "closed"),  # a frame cut short
        (_frames(b'{"arrays": 0}', b"not json"), "not a JSON message"),
        (_frames(b'{"arrays": 0}', b"[1, 2]"), "unexpected list"),
        (_frames(b'{"arrays": 0}', b'{"eval": "os.system()"}'), "unknown tag"),
        (_frames(b'{"arrays": 0}', b"[" * 100_000 + b"]" * 100_000), "not a JSON message"),
        (_frames(b'{"arrays": 0}', b'{"list": [' * 60 + b"1" + b"]}" * 60), "nested"),
        (_frames(b'{"arrays": 99999999}'), "out of range"),
        (_frames(b'{"arrays": "x"}'), "out of range"),
        (_frames(b"garbage"), "must start with its array count"),
        ((2**62).to_bytes(8, "big"), "over the limit"),
        (_frames(b'{"arrays": 1}', b'{"array": 0}', _npy(np.array([{"a": 1}], dtype=object), True)), "not a valid"),
        (_frames(b'{"arrays": 1}', b'{"array": 0}', _npy(np.array(["text"]))), "only numbers and booleans"),
        (_frames(b'{"arrays": 1}', b'{"array": 3}', _npy(np.arange(3))), "refers to array 3"),
        (_frames(b'{"arrays": 0}', b'{"dict": [[{"list": []}, 1]]}'), "unhashable"),
        (_frames(b'{"arrays": 0}', b'{"complex": ["a", 1]}'), "two real parts"),
    ],
)
def test_a_malformed_message_is_refused_with_a_reason(raw, words):
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, raw), os.close(write)))
    writer.start()
    try:
        with pytest.raises(wire.WireError, match=words):
            wire.receive(read, deadline=time.monotonic() + 5)
    finally:
        writer.join()
        os.close(read)


def test_a_message_that_does_not_come_in_time_is_too_late():
    read, write = os.pipe()
    os.write(write, _frames(b'{"arrays": 0}')[:12])
    with pytest.raises(wire.TooLate):
        wire.receive(read, deadline=time.monotonic() + 0.2)
    os.close(read)
    os.close(write)


def test_a_reader_that_does_not_read_makes_the_writer_too_late_not_stuck():
    read, write = os.pipe()
    os.set_blocking(write, False)
    start = time.monotonic()
    with pytest.raises(wire.TooLate):
        wire.send(write, torch.zeros(1 << 20), deadline=time.monotonic() + 0.3)  # 4 MB, more than a pipe holds
    assert time.monotonic() - start < 3
    os.close(read)
    with pytest.raises(wire.Closed):
        wire.send(write, torch.zeros(1 << 20), deadline=time.monotonic() + 1)
    os.close(write)


def test_the_total_size_of_the_arrays_is_capped():
    read, write = os.pipe()

    def send():
        try:
            wire.send(write, [np.zeros(100_000)] * 3)
        except wire.Closed:
            pass  # the reader stopped reading: as it should

    writer = threading.Thread(target=send)
    writer.start()
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.receive(read, deadline=time.monotonic() + 5, max_bytes=1_000_000)
    os.close(read)
    writer.join()
    os.close(write)


def test_json_frames_are_json():
    text, arrays = wire.encode({"a": [1, (2,)]})
    assert json.loads(text) == {"dict": [["a", {"list": [1, {"tuple": [2]}]}]]} and arrays == []
