"""Students who cheat or do harm: each attack gains no marks and harms no other submission, the grader or the machine.

Three classes, each graded once with two jobs at a time. In the first, students try to forge marks; in the second,
they try to harm others (their notebooks, the CSV, the course, the network) or to exhaust the machine; in the third,
a hostile class that knows the grader's code tries to stop or slow the whole grading, to escape the sandbox's
limits, to hide the flags an instructor reads, and to forge the terminal's output. Honest students sit among them
and must keep their full marks, and every grading ends with its CSV, its summary and its feedback.
"""

import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grading import FUNCTIONS, HEADER, LESSON01, answer, blank, honest, notebook, sandbox_or_skip, stub

import mha
from mha.course import report, sandbox
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ["scores", "masked_softmax", "causal_mask", "padding_mask", "attention", "design_query"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _isolated():
    if sandbox_or_skip() == "none":
        pytest.skip("no isolation on this machine: neither bubblewrap nor root")


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
    (folder / "solutions" / LESSON01).write_bytes((ROOT / "solutions" / LESSON01).read_bytes())
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
    for home in {Path.home(), Path("~root").expanduser()}:  # the grader's account, and root's
        try:
            assert not (home / ".ipython" / "profile_default" / "startup" / "00-pass.py").exists()
        except PermissionError:  # a home the grader cannot read, no notebook could write
            pass
    again = tmp_path / "again"
    (again / "zed").mkdir(parents=True)
    (again / "zed" / LESSON01).write_bytes((folder / "zed" / LESSON01).read_bytes())
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
    if sandbox.detect() == "bwrap":  # without bubblewrap the network is in reach, and the grader says so
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


# ------------------------------------------------------------------------------------------------ a hostile class

SCORES = "return torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5"
NO_ALARM = "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
UNSHARE = """
import ctypes, subprocess
made = ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0
made = made or subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0
if made:
    raise RuntimeError("made a user namespace")
"""
SNOOP = """
import os
seen = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for what in ("cmdline", "environ"):
        try:
            seen.append(open(f"/proc/{pid}/{what}", "rb").read().decode(errors="replace"))
        except OSError:
            pass
found = [m for m in MARKERS if m in "\\n".join(seen)]
if found:
    raise RuntimeError(f"saw the machine: {found}")
"""
HOOKS = """
import gc
for d in gc.get_objects():  # the runner's own functions, found and replaced
    if isinstance(d, dict) and "course_origin" in d and "CourseCalls" in d:
        d["course_origin"] = lambda fn: None
        d["CourseCalls"].__enter__ = lambda self: self
        d["_within_limit"] = lambda outcome: outcome
"""
THREAD = """
import threading
import mha
def padding_mask(lengths, seq):
    box = []
    worker = threading.Thread(target=lambda: box.append(mha.padding_mask(lengths, seq)))
    worker.start()
    worker.join()
    return box[0]
"""
RENAMED = """
import types
import mha
code = mha.attention.__code__.replace(co_filename="<my own>")
attention = types.FunctionType(code, mha.attention.__globals__, "attention", mha.attention.__defaults__)
"""


def _solution_cell(name: str) -> str:
    cells = json.loads((ROOT / "solutions" / LESSON01).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    source = next(s for s in sources if s.startswith(f"def {name}("))
    return source.split("\n\n\ncheck.")[0].replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")


def _hidden(prefix: str) -> str:
    """The honest answers under other names, bound to the exercises' names by `globals().update`."""
    renamed = [answer(f).replace(f"def {f}(", f"def {prefix}{f}(") for f in FUNCTIONS]
    bind = ", ".join(f"{f}={prefix}{f}" for f in FUNCTIONS)
    return "\n\n".join(renamed) + f"\n\nglobals().update({bind})"


HOSTILE_LIMITS = ["--timeout", "60", "--call-timeout", "20", "--memory-mb", "2048", "--disk-mb", "64"]
HOSTILE_LIMITS += ["--files", "2000"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    top = tmp_path_factory.mktemp("hostile")
    folder, out, feedback, tmp = top / "submissions", top / "grades.csv", top / "feedback", top / "tmp"
    tmp.mkdir()
    for name in ("ada", "zz", "bob\nada", "\x1b[31mred\x1b[0m"):
        honest(folder / name / LESSON01)
    lone = "raise ValueError('a lone \\udcff surrogate, and \\x1b[2J')"
    honest(folder / "surrogate" / LESSON01, f"raise OSError('\\udcff\\x1b[2J{'x' * 50}')", change=(SCORES, lone))
    names = os.fsencode(folder / "names")
    os.makedirs(names)
    notebook(Path(os.fsdecode(names + b"/01_caf\xe9.ipynb")), HEADER, *[answer(f) for f in FUNCTIONS])
    honest(Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff")) / LESSON01)
    deep = "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\nos.chdir(os.environ['HOME'])"
    honest(folder / "deep" / LESSON01, deep)
    honest(folder / "filler" / LESSON01, "for i in range(300):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))")
    honest(
        folder / "manyfiles" / LESSON01,
        "import os\nos.mkdir('m')\nfor i in range(100_000):\n    open(f'm/{i}', 'w').close()",
    )
    notebook(folder / "huge" / LESSON01, HEADER, "x = [" + "0, " * 1_400_000 + "]", *[answer(f) for f in FUNCTIONS])
    honest(folder / "bigsender" / LESSON01, change=(SCORES, "return torch.zeros(60_000_000)"))
    honest(folder / "bigforcer" / LESSON01, HOOKS, change=(SCORES, "return torch.zeros(60_000_000)"))
    honest(
        folder / "sleeper" / LESSON01, change=(SCORES, NO_ALARM.replace("\n", "; ") + "import time; time.sleep(1000)")
    )
    slow = NO_ALARM.replace("\n", "; ") + "import time; time.sleep(4.5)\n    "
    honest(folder / "slowpoke" / LESSON01, change=("    return ", "    " + slow + "return "))
    old = blank(folder / "twice" / LESSON01)
    os.utime(old, (1.6e9, 1.6e9))
    honest(folder / "twice" / "01_mine.ipynb")
    honest(folder / "namespace" / LESSON01, UNSHARE)
    markers = [str(folder), str(top), "pytest", "MHA_SECRET", str(ROOT / "tests")]
    honest(folder / "snooper" / LESSON01, SNOOP.replace("MARKERS", repr(markers)))
    notebook(folder / "hooks" / LESSON01, HEADER, HOOKS, answer("scores"), answer("query_for_it"), COURSE_CODE)
    notebook(folder / "thread" / LESSON01, HEADER, *[answer(f) for f in FUNCTIONS if f != "padding_mask"], THREAD)
    notebook(folder / "renamed" / LESSON01, HEADER, *[answer(f) for f in FUNCTIONS if f != "attention"], RENAMED)
    documented = _solution_cell("scores").replace("):\n", '):\n    """My own scores."""\n', 1)
    notebook(folder / "docstring" / LESSON01, HEADER, documented, *[answer(f) for f in FUNCTIONS[1:]])
    notebook(folder / "glob1" / LESSON01, HEADER, _hidden("_a_"))
    notebook(folder / "glob2" / LESSON01, HEADER, _hidden("_other_"))

    limits = HOSTILE_LIMITS
    command = [sys.executable, "-m", "mha.course", "grade", str(folder), "--csv", str(out), "--feedback", str(feedback)]
    env = {**os.environ, "TMPDIR": str(tmp), "MHA_CHECK_TIME_LIMIT": "5", "MHA_SECRET": "hunter2"}
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--jobs", "2", "--seed", "3", *limits], cwd=ROOT, env=env, capture_output=True, timeout=1500
    )
    return {
        "done": done,
        "wall": time.monotonic() - started,
        "by": {(r["student"], r["exercise"]): r for r in report.from_csv(out.read_text(encoding="utf-8-sig"))},
        "rows": report.from_csv(out.read_text(encoding="utf-8-sig")),
        "csv": out.read_bytes(),
        "feedback": {p.name: p.read_bytes() for p in feedback.iterdir()},
        "left": sorted(os.listdir(tmp)),
        "stdout": done.stdout.decode("utf-8"),
        "stderr": re.sub(r"\r?grading:[^\n\r]*", "", done.stderr.decode("utf-8")),  # the progress bar, ours
    }


def _seconds_at_most(stdout: str) -> float:
    return float(re.search(r"([0-9.]+) s at most", stdout).group(1))


def test_the_grading_of_a_hostile_class_ends_with_its_csv_summary_and_feedback(hostile):
    assert hostile["done"].returncode == 0, hostile["stderr"][-3000:]
    by, stdout = hostile["by"], hostile["stdout"]
    assert "for the instructor to look at" in stdout and "wrote" in stdout
    for student in ("ada", "zz", "deep", "twice", "namespace", "snooper", "thread", "docstring", "glob1", "glob2"):
        assert _marks(by, student) == 6, (student, [by[student, e]["note"] for e in EXERCISES])
    assert hostile["left"] == [], "the grader's scratch folders are all removed"
    ran = next(line for line in hostile["stdout"].splitlines() if " notebooks in " in line)
    students = len({r["student"] for r in hostile["rows"]})
    print(f"\nhostile class, {students} students: {ran}")
    assert len(hostile["feedback"]) == students, "one feedback file per student"
    guide = " ".join((ROOT / "notebooks" / "INSTRUCTOR_GUIDE.md").read_text().split())
    limits = ", ".join(f"`{o} {v}`" for o, v in zip(HOSTILE_LIMITS[::2], HOSTILE_LIMITS[1::2]))
    said = f"That hostile class of {students} students is graded with two jobs and tight limits ({limits}, 5 s per"
    said += " check)"
    assert said in guide, "the guide should say: " + said


def test_text_that_is_not_unicode_is_a_note_never_a_stop(hostile):
    by = hostile["by"]
    assert _marks(by, "surrogate") == 4, "scores raises, and attention, which calls it"
    assert "\\xff surrogate" in by["surrogate", "scores"]["note"]
    assert "OSError" in by["surrogate", "scores"]["run"], "the cell's error with a lone surrogate is noted"
    assert by["names", "scores"]["note"].startswith("the notebook's name is not valid text")
    assert by["names", "scores"]["notebook"] == "01_caf\\xe9.ipynb"
    assert ["bad\\xff"] == [s for s in {r["student"] for r in hostile["rows"]} if s.startswith("bad")]
    assert "not valid text" in by["bad\\xff", ""]["note"]
    hostile["csv"].decode("utf-8-sig")  # the whole CSV is text


def test_control_characters_never_reach_the_terminal_or_a_file(hostile):
    everything = [hostile["stdout"], hostile["stderr"], hostile["csv"].decode("utf-8-sig")]
    everything += [text.decode("utf-8") for text in hostile["feedback"].values()]
    everything += list(hostile["feedback"])
    for text in everything:
        where = max(text.find("\x1b"), text.find("\r"))
        assert where < 0, f"a control character in: {text[max(0, where - 300) : where + 30]!r}"
    rows = [line for line in hostile["stdout"].splitlines() if line.startswith("ada ")]
    assert len(rows) == 1, "a folder named 'bob\\nada' draws no row of its own"
    assert _marks(hostile["by"], "bob\\x0aada") == 6 and _marks(hostile["by"], "\\x1b[31mred\\x1b[0m") == 6


def test_a_notebooks_disk_is_capped_in_bytes_and_files_and_costs_no_one_else(hostile):
    by = hostile["by"]
    for student in ("filler", "manyfiles"):
        assert "disk limit (64 MB, 2000 files) reached" in by[student, "scores"]["run"], by[student, "scores"]["run"]
    assert _marks(by, "filler") == 6, "its answers are still graded"
    assert _marks(by, "zz") == 6 and _marks(by, "deep") == 6, "those graded after it are graded"


def test_the_graders_own_memory_stays_bounded_whatever_the_notebooks_size_or_answer(hostile):
    by = hostile["by"]
    peak = float(re.search(r"the grader's own memory peaked at ([0-9]+) MB", hostile["stdout"]).group(1))
    assert peak < 900, f"the grader grew to {peak:.0f} MB"
    assert _marks(by, "huge") == 6
    assert "more than the grader reads (16 MB)" in by["bigsender", "scores"]["note"]
    assert _marks(by, "bigsender") == 4, "scores fails, and attention, which calls it"
    assert "over the limit" in by["bigforcer", "scores"]["note"], by["bigforcer", "scores"]["note"]


def test_a_notebook_that_switches_off_its_alarm_costs_the_graders_deadline_and_no_more(hostile):
    by = hostile["by"]
    assert "did not answer within 7 s" in by["sleeper", "scores"]["note"], by["sleeper", "scores"]["note"]
    assert "used up their 20 s" in " ".join(by["slowpoke", e]["note"] for e in EXERCISES)
    assert _seconds_at_most(hostile["stdout"]) < 60 + 20 + 30, "no notebook takes longer than its two limits"


def test_two_notebooks_for_one_lesson_are_one_result_by_a_stated_rule(hostile):
    rows = [r for r in hostile["rows"] if r["student"] == "twice"]
    assert [r["exercise"] for r in rows] == EXERCISES and {r["notebook"] for r in rows} == {"01_mine.ipynb"}
    assert rows[0]["run"].startswith(f"{report.ONE_OF}2 notebooks for lesson 01 (not graded: {LESSON01})")
    assert "several notebooks for one lesson" in hostile["stdout"]


def test_the_sandbox_gives_no_user_namespace_and_shows_nothing_of_the_machine(hostile):
    by = hostile["by"]
    assert "made a user namespace" not in by["namespace", "scores"]["run"]
    if sandbox.detect() == "bwrap":  # without bubblewrap it sees the machine's processes, and the grader says so
        assert "saw the machine" not in by["snooper", "scores"]["run"], by["snooper", "scores"]["run"]


def test_the_flags_an_instructor_reads_are_read_by_the_grader_not_reported_by_the_notebook(hostile):
    by = hostile["by"]
    hooks = lambda e: by["hooks", e]  # noqa: E731
    for exercise in ("masked_softmax", "causal_mask"):
        assert not hooks(exercise)["passed"] and "is the course's own code" in hooks(exercise)["flags"]
    assert "calls the course's own mha.masks.padding_mask" in hooks("padding_mask")["flags"]
    assert "calls the course's own mha.attention.attention" in hooks("attention")["flags"]
    assert "calls the course's own mha.masks.padding_mask" in by["thread", "padding_mask"]["flags"]
    renamed = by["renamed", "attention"]
    assert not renamed["passed"] and "is the course's own code (mha.attention.attention)" in renamed["flags"]
    assert "same as the course's solution" in by["docstring", "scores"]["flags"]
    assert "glob2" in by["glob1", "scores"]["flags"] and "glob1" in by["glob2", "attention"]["flags"]
