"""Students who cheat or do harm: each attack gains no marks and harms no other submission, the grader or the machine.

Two classes, each graded once with two jobs at a time. In the first, students try to forge marks; in the second,
they try to harm others (their notebooks, the CSV, the course, the network) or to exhaust the machine. Honest
students sit among them and must keep their full marks.
"""

import hashlib
import os
import random
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from grading import FUNCTIONS, HEADER, LESSON01, answer, blank, honest, notebook, stub

import mha
from mha.course import report
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ["scores", "masked_softmax", "causal_mask", "padding_mask", "attention", "design_query"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("bwrap") and os.geteuid() != 0, reason="no isolation on this machine"),
]


def _grade(folder: Path, out: Path, *options: str) -> dict:
    assert course(["grade", str(folder), "--csv", str(out), "--jobs", "2", "--seed", "3", *options]) == 0
    return {(r["student"], r["exercise"]): r for r in report.from_csv(out.read_text(encoding="utf-8-sig"))}


def _marks(by: dict, student: str) -> int:
    return sum(by[student, e]["passed"] for e in EXERCISES)


def _alive(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path).encode() + path.read_bytes())
    return h.hexdigest()


HONEST_SOURCE = "\n\n".join(answer(name) for name in FUNCTIONS)

RECORDS = f"""
import json, os
names = {EXERCISES!r}
for path in [os.environ.get("MHA_GRADE_LOG"), "checks.jsonl", "/tmp/checks.jsonl"]:
    if path:
        with open(path, "a") as log:
            for name in names:
                log.write(json.dumps({{"lesson": "01", "exercise": name, "passed": True, "message": ""}}) + "\\n")
for fd in range(3, 64):  # every pipe it can find gets a pass record, the grader's too
    try:
        os.write(fd, b'{{"lesson": "01", "exercise": "scores", "passed": true}}\\n')
    except OSError:
        pass
"""

RECORDER = f"""
from mha.checks.framework import _record
for name in {EXERCISES!r}:
    _record("01", name, True)
"""

PATCHER = """
import sys
import mha.checks as checks
import mha.checks.framework as framework
import mha.course.judging as judging
checks.Exercise.verdict = lambda self, *args, **kwargs: None
framework.judge_outcome = lambda *args, **kwargs: None
def passes(exercise, fn, case):
    return {"got": None, "changed": {}, "error": None, "timed_out": False, "seconds": 0.0}
checks.run_case = framework.run_case = judging.run_case = passes
sys.modules["__main__"].answer = lambda shell, request: {"missing": False, "origin": None, "calls": [], "outcomes": []}
"""

STARTUP = f"""
import os
code = '''
honest = {HONEST_SOURCE!r}
def _inject(result):
    exec("import math, torch\\\\n" + honest, get_ipython().user_ns)
get_ipython().events.register("post_run_cell", _inject)
'''
homes = [os.path.expanduser("~"), os.path.expanduser("~root"), os.environ.get("IPYTHONDIR", "")]
for home in homes:
    for folder in (os.path.join(home, ".ipython", "profile_default"), os.path.join(home, "profile_default")):
        folder = os.path.join(folder, "startup")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "00-pass.py"), "w") as f:
                f.write(code)
        except OSError:
            pass
"""

COURSE_CODE = """
import functools
import mha
masked_softmax = mha.masked_softmax
causal_mask = functools.partial(mha.causal_mask)
def padding_mask(lengths, seq):
    return mha.padding_mask(lengths, seq)
class Attention:
    def __call__(self, q, k, v, mask=None):
        return mha.attention(q, k, v, mask)
attention = Attention()
"""

FAKE_PACKAGE = """
open({canary!r}, "w").write("the student's own {name} was imported")
import os
os._exit(0)
"""


@pytest.fixture(scope="module")
def forgers(tmp_path_factory):
    top = tmp_path_factory.mktemp("forgery")
    folder, canary = top / "submissions", top / "canary"
    honest(folder / "ada" / LESSON01)
    blank(folder / "records" / LESSON01, RECORDS)
    blank(folder / "recorder" / LESSON01, RECORDER)
    blank(folder / "patcher" / LESSON01, PATCHER)
    (folder / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / LESSON01, folder / "solutions" / LESSON01)
    honest(folder / "beside" / LESSON01)
    for name in (
        "mha/__init__.py",
        "mha/grade.py",
        "mha/course/__init__.py",
        "mha/course/_runner.py",
        "sitecustomize.py",
        "usercustomize.py",
        "IPython/__init__.py",
        "torch/__init__.py",
    ):
        path = folder / "beside" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE_PACKAGE.format(canary=str(canary), name=name))
    blank(folder / "startup" / LESSON01, STARTUP)
    blank(folder / "zed" / LESSON01)  # graded after `startup`: must not profit from its startup file
    notebook(folder / "course_code" / LESSON01, HEADER, answer("scores"), answer("query_for_it"), COURSE_CODE)
    out = top / "grades.csv"
    by = _grade(folder, out, "--timeout", "90")
    return folder, canary, out, by


def test_forging_records_patching_checks_or_handing_in_the_solutions_gains_nothing(forgers):
    folder, canary, out, by = forgers
    assert _marks(by, "ada") == 6
    for student in ("records", "recorder", "patcher", "startup", "zed", "solutions"):
        assert _marks(by, student) == 0, student
    assert "not written yet" in by["recorder", "scores"]["note"]
    assert "the course's own solutions notebook" in by["solutions", "scores"]["note"]
    assert "the course's own solutions notebook" in by["solutions", "scores"]["flags"]
    assert "not a report" in by["records", "scores"]["run"] or "not graded" in by["records", "scores"]["note"]


def test_a_package_beside_the_notebook_is_never_imported(forgers):
    folder, canary, out, by = forgers
    assert _marks(by, "beside") == 6, "its honest answers were graded with the course's own code"
    assert not canary.exists(), canary.read_text() if canary.exists() else ""
    assert "same answer as beside" in by["ada", "scores"]["flags"], "identical answers are flagged"


def test_an_ipython_startup_file_reaches_no_later_notebook(forgers, tmp_path):
    folder, canary, out, by = forgers
    assert not (Path("~root").expanduser() / ".ipython" / "profile_default" / "startup" / "00-pass.py").exists()
    again = tmp_path / "again"
    (again / "zed").mkdir(parents=True)
    shutil.copy(folder / "zed" / LESSON01, again / "zed" / LESSON01)
    assert _marks(_grade(again, tmp_path / "again.csv"), "zed") == 0, "nor a notebook of the next grading"


def test_the_courses_own_code_fails_where_it_is_the_answer_and_is_flagged_where_it_is_called(forgers):
    folder, canary, out, by = forgers
    row = lambda e: by["course_code", e]  # noqa: E731
    assert row("scores")["passed"] and row("design_query")["passed"]
    for exercise in ("masked_softmax", "causal_mask"):
        assert not row(exercise)["passed"] and "is the course's own code" in row(exercise)["note"]
        assert "is the course's own code" in row(exercise)["flags"]
    assert row("padding_mask")["passed"] and row("attention")["passed"]
    assert "calls the course's own mha.masks.padding_mask" in row("padding_mask")["flags"]
    assert "calls the course's own mha.attention.attention" in row("attention")["flags"]


# ------------------------------------------------------------------------------------------------ harm


def _try_writing(paths: list[str], text: str, how: str = "w") -> str:
    """A cell that tries to write `text` into each of `paths`."""
    attempt = f"        open(path, {how!r}).write({text!r})\n"
    return f"for path in {paths!r}:\n    try:\n{attempt}    except OSError as e:\n        print(e)"


@pytest.fixture(scope="module")
def harm(tmp_path_factory):
    top = tmp_path_factory.mktemp("harm")
    folder, out = top / "submissions", top / "grades.csv"
    victims = [honest(folder / name / LESSON01) for name in ("ada", "bob")]
    before = {str(v): v.read_bytes() for v in victims}
    marker, detached = str(random.randrange(10**8, 10**9)), str(random.randrange(10**8, 10**9))
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    port = server.getsockname()[1]
    course_before = _digest(Path(mha.__file__).parent)
    site_before = sorted(os.listdir(next(Path(sys.prefix).glob("lib/python3*/site-packages"))))

    blank(folder / "editor" / LESSON01, _try_writing(list(before), ""))
    read = (
        f"import json\ntry:\n    nb = json.load(open({str(victims[0])!r}))\n"
        "    for c in nb['cells']:\n        exec(''.join(c['source']), globals())\nexcept OSError as e:\n    print(e)"
    )
    notebook(folder / "reader" / LESSON01, HEADER, *[stub(f) for f in FUNCTIONS], read)
    wreck = f"sleep 4; echo hacked > {out}; : > {victims[0]}; kill -9 -1; sleep {detached}"
    blank(folder / "detacher" / LESSON01, f"import subprocess\nsubprocess.Popen(['setsid', 'sh', '-c', {wreck!r}])")
    blank(folder / "killer" / LESSON01, "import subprocess\nsubprocess.run(['kill', '-9', '-1'])")  # all it may
    outlive = f"import subprocess\nsubprocess.Popen(['setsid', 'sleep', '{marker}'], start_new_session=True)"
    blank(folder / "outliver" / LESSON01, outlive, "import time\nwhile True:\n    time.sleep(1)")
    flood = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(300):\n    sys.stdout.write(chunk)"
    honest(folder / "printer" / LESSON01, flood)
    bomb = "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)"
    honest(folder / "forker" / LESSON01, bomb)
    honest(folder / "hog" / LESSON01, "hoard = bytearray(8 << 30)")
    fill = "with open('big', 'wb') as f:\n    for _ in range(200):\n        f.write(b'x' * (1 << 20))"
    honest(folder / "filler" / LESSON01, fill)
    net = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)"
    honest(folder / "networker" / LESSON01, net)
    course_file = Path(mha.__file__).parent / "checks" / "__init__.py"
    sitecustomize = next(Path(sys.prefix).glob("lib/python3*/site-packages")) / "sitecustomize.py"
    honest(folder / "tamperer" / LESSON01, _try_writing([str(course_file), str(sitecustomize)], "PWNED = 1", "a"))

    limits = ["--timeout", "60", "--memory-mb", "2048", "--processes", "64", "--file-size-mb", "64"]
    by = _grade(folder, out, *limits)
    written = out.read_bytes()
    connections = 0
    try:
        while True:
            server.accept()[0].close()
            connections += 1
    except OSError:
        pass
    server.close()
    time.sleep(6)  # long enough for the detached process to have struck, had it survived
    return {
        "by": by,
        "victims": victims,
        "before": before,
        "csv": (out, written),
        "alive": _alive(marker) + _alive(detached),
        "connections": connections,
        "course": (course_before, _digest(Path(mha.__file__).parent)),
        "site": (site_before, sorted(os.listdir(sitecustomize.parent))),
    }


def test_no_student_can_touch_another_students_notebook(harm):
    by = harm["by"]
    assert _marks(by, "ada") == 6 and _marks(by, "bob") == 6
    assert {str(v): v.read_bytes() for v in harm["victims"]} == harm["before"]
    assert _marks(by, "reader") == 0, "another student's notebook cannot be read to copy its answers"


def test_nothing_started_by_a_notebook_outlives_the_run_or_rewrites_the_csv(harm):
    out, written = harm["csv"]
    assert out.read_bytes() == written, "grades.csv was changed after the grader wrote it"
    assert harm["alive"] == [], "a process started by a notebook outlived the run"
    by = harm["by"]
    assert "stopped after 60 s (time limit)" in by["outliver", "scores"]["run"]
    assert "killed by SIGKILL" in by["killer", "scores"]["run"]


def test_the_course_the_environment_and_the_network_are_out_of_reach(harm):
    assert harm["course"][0] == harm["course"][1], "the course package was changed"
    assert harm["site"][0] == harm["site"][1], "a file was added to the environment"
    assert harm["connections"] == 0, "a notebook reached the network"
    assert _marks(harm["by"], "networker") == 6 and _marks(harm["by"], "tamperer") == 6


def test_every_limit_hit_is_noted_and_costs_only_the_student_who_hit_it(harm):
    by = harm["by"]
    notes = {student: by[student, "scores"]["run"] for student in ("printer", "forker", "hog", "filler")}
    assert "printed 300.0 MB; only the first 8 MB were read (output limit)" in notes["printer"]
    assert "process limit (64) reached" in notes["forker"]
    assert "memory limit (2048 MB) reached" in notes["hog"]
    assert "file size limit (64 MB) reached" in notes["filler"]
    for student in ("printer", "forker", "hog", "filler"):
        assert _marks(by, student) == 6, f"{student}'s answers are still graded: {notes[student]}"


def test_a_cpu_hog_is_stopped_at_its_cpu_time_limit(tmp_path):
    folder = tmp_path / "submissions"
    blank(folder / "burner" / LESSON01, "while True:\n    pass")
    by = _grade(folder, tmp_path / "grades.csv", "--cpu-seconds", "6", "--timeout", "600")
    run = by["burner", "scores"]["run"]
    assert "killed by SIGXCPU" in run and "CPU time limit (6 s) reached" in run, run
