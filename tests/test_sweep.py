"""The bad-input sweep (tests/sweep.py): every option of every command, fed bad values, gets a clear answer.

The commands and options are found by walking `--help`, so a new command or option is swept without a test written
for it. The answers that are not clear yet are listed in SECOND_PASS, each with what it is today; the list may only
shrink: a case listed that has become clear fails the test too, so that its line is removed.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# Cases not clear yet, each with what it is today: (command, option, value) -> category. Empty: every case is clear.
SECOND_PASS: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Every case of the sweep, run once in a process of its own, in a session of its own (stopped whole after)."""
    folder = tmp_path_factory.mktemp("sweep")
    out = folder / "cases.json"
    scratch = folder / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    sweep = subprocess.Popen(
        [sys.executable, str(HERE / "sweep.py"), "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        said, _ = sweep.communicate(timeout=600)
    finally:
        try:
            os.killpg(sweep.pid, signal.SIGKILL)  # anything the sweep started and left: its own session only
        except ProcessLookupError:
            pass
    assert sweep.returncode == 0, said[-3000:]
    print(said.split("\n\n")[0])  # the table of counts, for the log
    return json.loads(out.read_text()), scratch


def test_the_sweep_covers_every_command_and_hundreds_of_bad_values(swept):
    cases, _ = swept
    commands = {c["command"] for c in cases}
    for wing in ("toy", "pretrained", "bench", "decoding", "parallel", "course"):
        assert any(c.startswith(f"mha.{wing}") for c in commands), wing
    for found_by_help in ("mha.bench mistakes", "mha.pretrained heads", "mha.course grade merge", "mha.toy heads"):
        assert found_by_help in commands
    assert len(cases) >= 400


def test_every_bad_value_gets_a_clear_answer(swept):
    cases, _ = swept
    unclear = {
        (c["command"], c["option"], c["value"]): f"{c['category']}: {c['why']} | {c['message']}"
        for c in cases
        if c["category"] != "clear" and SECOND_PASS.get((c["command"], c["option"], c["value"])) != c["category"]
    }
    assert not unclear, "\n".join(f"{key}: {why}" for key, why in unclear.items())


def test_the_second_pass_list_only_holds_what_is_still_unclear(swept):
    cases, _ = swept
    now = {(c["command"], c["option"], c["value"]): c["category"] for c in cases}
    fixed = [key for key, category in SECOND_PASS.items() if now.get(key) != category]
    assert not fixed, f"these cases changed: remove them from SECOND_PASS (now {[now.get(k) for k in fixed]}): {fixed}"


def test_the_sweep_leaves_no_file_behind(swept):
    _, scratch = swept
    assert not list(scratch.glob("mha-sweep-*"))  # its scratch folder (torch may leave its own caches there)
    assert not list((HERE.parent / "mha").glob(".sweep-*"))
