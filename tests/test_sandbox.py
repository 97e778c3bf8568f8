"""The sandbox a submitted notebook runs in: what it can see, what outlives it (nothing), what it may print.

Each isolation level is tested where this machine has it: bubblewrap if installed, an unprivileged user if we are
root, and the reaper that is all there is without either.
"""

import os
import random
import shutil
import socket
import sys
from pathlib import Path

import pytest
from grading import sandbox_or_skip

import mha
from mha.course import _seal, sandbox
from mha.course.sandbox import Limits, Process

ROOT = Path(__file__).resolve().parents[1]
ROOT_USER = os.geteuid() == 0
needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed")
needs_root = pytest.mark.skipif(not ROOT_USER, reason="needs root (to run as an unprivileged user)")
MODES = [pytest.param("bwrap", marks=needs_bwrap), pytest.param("uid", marks=needs_root), "none"]


@pytest.fixture
def works():
    """Skips a test of the `uid` level where it cannot work here (Python unreadable by other users), saying why."""

    def check(mode: str) -> None:
        if mode == "uid":
            sandbox_or_skip("uid")

    return check


@pytest.fixture
def slot_uid():
    if not ROOT_USER:
        yield None
        return
    users = sandbox.Users(1)  # claimed, so that no grading running meanwhile on this machine uses it
    yield users.ids[0]
    users.release()


def _start(mode: str, tmp_path: Path, argv: list[str], uid=None, limits=None) -> Process:
    workdir = tmp_path / "work"
    workdir.mkdir()
    os.chmod(tmp_path, 0o711)
    if uid is not None:
        os.chown(workdir, uid, uid)
    process = Process(mode, workdir, argv, limits or Limits(), uid)
    process.start()
    return process


def _python(script: str, mode: str = "", uid=None) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", script]  # sealed first (its user, its work area) by the sandbox


def _alive(marker: str) -> list[int]:
    """Processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(os.getpid()):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


DETACH = """
import os, subprocess, time
# a process in a session of its own, and one behind a double fork: neither is our child any more
subprocess.Popen(["setsid", "sleep", "{marker}"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{marker}"])
    os._exit(0)
print("detached", flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("bwrap", marks=needs_bwrap),
        "none",
    ],
)
def test_no_process_outlives_the_run_not_even_a_detached_one(mode, tmp_path, slot_uid):
    marker = str(random.randrange(10**8, 10**9))
    uid = slot_uid if mode == "bwrap" else None
    process = _start(mode, tmp_path, _python(DETACH.format(marker=marker), mode, uid), uid)
    for _ in range(400):
        if len(_alive(marker)) >= 2 and "detached" in process.last_line():
            break
        process.wait_briefly(0.05)
    assert len(_alive(marker)) >= 2, "the detached processes did not start"
    assert process.stop() is None, "it was still running: we stopped it (a time limit)"
    assert _alive(marker) == [], "a detached process outlived the run"


@needs_root
def test_as_an_unprivileged_user_every_process_of_that_user_dies(tmp_path, slot_uid):
    marker = str(random.randrange(10**8, 10**9))
    script = f"id -u; setsid sleep {marker} & (sleep {marker} &) ; echo started; sleep 1000"
    process = _start("uid", tmp_path, ["/bin/sh", "-c", script], slot_uid)
    for _ in range(400):
        if len(_alive(marker)) >= 2:
            break
        process.wait_briefly(0.05)
    assert sandbox.processes_of(slot_uid), "it runs as the unprivileged user"
    process.stop()
    assert _alive(marker) == [] and sandbox.processes_of(slot_uid) == []


SNOOP = """
import os, socket, sys
def attempt(what, action):
    try:
        action()
        print(what, "yes")
    except Exception as error:
        print(what, "no", type(error).__name__)
attempt("read-other", lambda: open({other!r}).read())
attempt("write-other", lambda: open({other!r}, "a").write("x"))
attempt("write-course", lambda: open({course!r}, "a").write("x"))
attempt("write-python", lambda: open({python!r}, "w").write("x"))
attempt("write-home", lambda: open(os.path.join(os.environ["HOME"], "x"), "w").write("x"))
attempt("write-tmp", lambda: open("/tmp/x", "w").write("x"))
attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
print("pids", len([p for p in os.listdir("/proc") if p.isdigit()]))
print("cwd", os.getcwd(), sorted(os.listdir(".")))
"""


@needs_bwrap
def test_under_bubblewrap_a_notebook_sees_its_own_folder_and_nothing_of_anyone_else(tmp_path, slot_uid):
    other = tmp_path / "submissions" / "bob" / "01_attention_from_scratch.ipynb"
    other.parent.mkdir(parents=True)
    other.write_text("bob's work")
    os.chmod(other, 0o666)  # even a file anyone may write stays out of reach
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    course = Path(mha.__file__).parent / "checks" / "__init__.py"
    before = course.read_bytes()
    python = Path(sys.prefix) / "lib" / "sitecustomize.py"
    script = SNOOP.format(other=str(other), course=str(course), python=str(python), port=port)
    process = _start("bwrap", tmp_path, _python(script, "bwrap", slot_uid), slot_uid)
    assert process.wait_briefly(60) == 0
    process.stop()
    server.close()
    said = dict(line.split(" ", 1) for line in process._tail.decode().splitlines() if " " in line)
    assert said["read-other"].startswith("no") and said["write-other"].startswith("no")
    assert said["write-course"].startswith("no") and said["write-python"].startswith("no")
    assert said["network"].startswith("no")
    assert said["write-home"] == "yes" and said["write-tmp"] == "yes", "its own folder and /tmp are its to use"
    assert int(said["pids"]) < 10, "it sees only its own processes"
    assert said["cwd"].startswith(sandbox.HOME)
    assert other.read_text() == "bob's work" and course.read_bytes() == before
    assert not python.exists()


def test_output_beyond_the_limit_is_read_and_discarded(tmp_path):
    script = "import sys\nchunk = 'x' * (1 << 20) + '\\n'\nfor _ in range(300): sys.stdout.write(chunk)\nprint('end')"
    process = _start("none", tmp_path, [sys.executable, "-I", "-S", "-c", script], limits=Limits(output_mb=8))
    assert process.wait_briefly(120) == 0
    process.stop()
    assert process.output_bytes > 300 << 20 and process.output_over_limit
    assert len(process._tail) <= 64 << 10, "no more than the tail is kept"


@needs_root
def test_two_gradings_on_one_machine_never_share_a_user():
    first, second = sandbox.Users(2), sandbox.Users(2)
    taken = first.ids + second.ids
    try:
        assert len(set(taken)) == 4
    finally:
        first.release()
        second.release()
    again = sandbox.Users(2)
    assert set(again.ids) <= set(taken), "released ids are used again"
    again.release()


def test_the_isolation_is_described_honestly():
    assert "NO ISOLATION" in sandbox.describe("none") and "AS YOU" in sandbox.describe("none")
    assert "PARTIAL" in sandbox.describe("uid") and "network" in sandbox.describe("uid")
    assert "bubblewrap" in sandbox.describe("bwrap")
    with pytest.raises(ValueError, match="one of auto"):
        sandbox.detect("docker")


@pytest.mark.parametrize(
    "limits, words",
    [
        (Limits(timeout=0), "timeout"),
        (Limits(memory_mb=float("inf")), "memory_mb"),
        (Limits(processes=2), "processes must be at least 8"),
        (Limits(output_mb=-1), "output_mb"),
    ],
)
def test_limits_that_make_no_sense_are_named(limits, words):
    assert any(words in p for p in limits.problems())


@needs_bwrap
def test_a_grader_run_from_a_copy_of_the_course_gives_the_sandbox_that_copy(tmp_path):
    # the instructor runs the grader inside the course's folder: Python imports that folder's mha, and the notebook's
    # process must run the same code (its own Python, isolated, would look for an installed copy)
    import subprocess

    shutil.copytree(Path(mha.__file__).parent, tmp_path / "mha", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import mha; from mha.course import sandbox; print(mha.__file__); print(sandbox.probe('bwrap', None))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.stdout.splitlines() == [str(tmp_path / "mha" / "__init__.py"), "None"], out.stdout + out.stderr


ESCAPE = """
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
print("unshare-user", libc.unshare(0x10000000) == 0, flush=True)
try:
    made = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs none /mnt && echo mounted"],
                          capture_output=True, text=True, timeout=20)
    print("unshare-command", made.returncode == 0 or "mounted" in made.stdout, flush=True)
except FileNotFoundError:
    print("unshare-command", False, flush=True)
pid = os.fork()
if pid == 0:
    os._exit(0)
print("fork", os.waitpid(pid, 0)[1] == 0, flush=True)
import threading
threading.Thread(target=lambda: None).start()
print("thread", True, flush=True)
"""


@pytest.mark.parametrize("mode", MODES)
def test_no_user_namespace_can_be_made_inside_as_root_or_not(mode, tmp_path, slot_uid, works):
    works(mode)
    uid = slot_uid if mode != "none" else None
    process = _start(mode, tmp_path, _python(ESCAPE), uid)
    assert process.wait_briefly(60) == 0, process.last_line()
    process.stop()
    said = dict(line.split(" ", 1) for line in process._tail.decode().splitlines() if " " in line)
    assert said["unshare-user"] == "False", "a user namespace (full capabilities inside it) was made"
    assert said["unshare-command"] == "False", "`unshare -Urm` made a namespace and mounted a file system"
    assert said["fork"] == "True" and said["thread"] == "True", "processes and threads still start"


REACH = """
import os, sys
secret, visible = sys.argv[1], sys.argv[2]
print("read", open(os.path.join(visible, "data.txt")).read(), flush=True)
for name, attempt in [("hidden", lambda: open(os.path.join(secret, "hidden.txt")).read()),
                      ("write", lambda: open(os.path.join(visible, "new.txt"), "w"))]:
    try:
        attempt()
        print(name, "allowed", flush=True)
    except OSError as error:
        print(name, type(error).__name__, flush=True)
"""


@needs_root
def test_as_a_user_of_its_own_a_notebook_reaches_python_in_a_private_folder_and_nothing_beside_it(
    tmp_path, slot_uid, monkeypatch, works
):
    # Python installed in root's home (pyenv under /root, mode 700) is what many servers have: the folders the notebook
    # needs are put back, read-only, and what else the private folder holds stays out of sight.
    works("uid")
    secret = tmp_path / "secret"
    (secret / "visible").mkdir(parents=True)
    (secret / "visible" / "data.txt").write_text("course")
    (secret / "hidden.txt").write_text("answers")
    os.chmod(secret / "visible", 0o755)
    os.chmod(secret / "visible" / "data.txt", 0o644)
    os.chmod(secret, 0o700)
    paths = sandbox._python_paths()
    monkeypatch.setattr(sandbox, "_python_paths", lambda: [*paths, str(secret / "visible")])
    (tmp_path / "grader").mkdir()
    process = _start("uid", tmp_path / "grader", _python(REACH) + [str(secret), str(secret / "visible")], slot_uid)
    assert process.wait_briefly(60) == 0, process.last_line()
    process.stop()
    said = dict(line.split(" ", 1) for line in process._tail.decode().splitlines() if " " in line)
    assert said["read"] == "course", "the folder it needs is reachable"
    assert said["hidden"] == "FileNotFoundError", "what lies beside it in the private folder is not there at all"
    assert said["write"] == "OSError", "what it needs is read-only"
    assert (secret / "hidden.txt").read_text() == "answers" and not (secret / "visible" / "new.txt").exists()


def test_the_seccomp_filter_is_a_valid_program_for_every_machine_it_knows():
    for machine in _seal.ARCHES:
        program = _seal.seccomp_program(machine)
        assert len(program) % 8 == 0 and 0 < len(program) // 8 < 64
        for index in range(len(program) // 8):  # every jump lands inside the program
            code, true, false, _ = __import__("struct").unpack_from("=HBBI", program, index * 8)
            if code & 0x07 == 0x05:
                assert index + 1 + max(true, false) < len(program) // 8


PROC = """
import os
seen = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for what in ("cmdline", "environ"):
        try:
            seen.append(open(f"/proc/{pid}/{what}", "rb").read().decode(errors="replace"))
        except OSError:
            pass
print("pids", len([p for p in os.listdir("/proc") if p.isdigit()]))
print("seen", repr("\\n".join(seen)))
"""


@needs_bwrap
def test_under_bubblewrap_proc_shows_nothing_of_the_machine(tmp_path, slot_uid, monkeypatch):
    monkeypatch.setenv("MHA_A_SECRET_OF_THE_GRADER", "hunter2")
    process = _start("bwrap", tmp_path, _python(PROC), slot_uid)
    assert process.wait_briefly(60) == 0, process.last_line()
    process.stop()
    said = dict(line.split(" ", 1) for line in process._tail.decode().splitlines() if " " in line)
    seen = said["seen"]
    # its own Python (bound where it is) it may see: nothing else of the machine, the grader or its folders
    for marker in (str(tmp_path), "hunter2", "pytest", str(ROOT / "tests"), str(ROOT / "mha")):
        assert marker not in seen, f"the sandbox saw {marker} in /proc"
    assert int(said["pids"]) < 10


FILL = """
import os
written = files = 0
try:
    with open("big", "wb") as f:
        for _ in range(4096):
            f.write(b"x" * (1 << 16))
            written += 1 << 16
except OSError as error:
    print("bytes-stopped", error.errno, written >> 20, flush=True)
for where in ("/dev/shm", "/tmp"):
    try:
        with open(os.path.join(where, "big"), "wb") as f:
            for _ in range(4096):
                f.write(b"x" * (1 << 16))
        print(where, "unbounded", flush=True)
    except OSError as error:
        print(where, "stopped", error.errno, flush=True)
try:
    open("/dev/planted", "w")
    print("dev writable", flush=True)
except OSError:
    print("dev read-only", flush=True)
os.mkdir("many")
try:
    while files < 100_000:
        open(f"many/{files}", "w").close()
        files += 1
    print("files unbounded", files, flush=True)
except OSError as error:
    print("files-stopped", error.errno, files, flush=True)
"""


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap), pytest.param("uid", marks=needs_root)])
def test_a_notebooks_work_area_holds_so_many_bytes_and_files_and_vanishes_with_it(mode, tmp_path, slot_uid, works):
    works(mode)
    limits = Limits(disk_mb=32, files=500, file_size_mb=512)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "submission.ipynb").write_text("the notebook's copy")
    process = Process(mode, tmp_path / "work", _python(FILL), limits, slot_uid)
    os.chmod(tmp_path, 0o711)
    os.chown(tmp_path / "work", slot_uid or os.getuid(), slot_uid or os.getuid())
    process.start()
    process.wait_briefly(120)
    process.stop()
    lines = process._tail.decode().splitlines()
    said = {line.split(" ", 1)[0]: line for line in lines}
    assert said["bytes-stopped"].split()[1] == "28" and int(said["bytes-stopped"].split()[2]) <= 32, lines
    assert "stopped" in said["/dev/shm"] and "stopped" in said["/tmp"], lines
    assert said.get("dev") == "dev read-only", lines
    if "files-stopped" in said:  # the kernel's cap (root)
        assert int(said["files-stopped"].split()[2]) <= 500, lines
    else:  # the grader's watcher (bubblewrap without root): it stopped the process
        assert process.over == "files" and "files" not in said, lines
    assert sorted(os.listdir(tmp_path / "work")) == ["submission.ipynb"], "nothing landed in the grader's folder"


HOARD = """
import os, time
for _ in range(5):
    if os.fork() == 0:
        hoard = bytearray(300 << 20)
        for i in range(0, len(hoard), 4096):
            hoard[i] = 1
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", MODES)
def test_processes_that_together_hold_more_than_the_memory_limit_are_stopped(mode, tmp_path, slot_uid, works):
    works(mode)
    uid = slot_uid if mode != "none" else None
    process = _start(mode, tmp_path, _python(HOARD), uid, Limits(memory_mb=1024))
    process.wait_briefly(45)
    assert process.stop() is None
    assert process.over == "memory" and process.peak_memory > 1 << 30, (process.over, process.peak_memory)


def test_a_folder_tree_thousands_deep_and_locked_is_removed_without_recursion(tmp_path):
    top = tmp_path / "area"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for depth in range(3000):  # deeper than Python's recursion limit, and longer than a path may be
        os.mkdir("d" * 40, dir_fd=fd)
        if depth % 500 == 0:
            os.open("file", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        inner = os.open("d" * 40, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.symlink(str(ROOT / "README.md"), "link", dir_fd=fd)
    os.close(fd)
    (top / "locked").mkdir()
    (top / "locked" / "inside").write_text("x")
    os.chmod(top / "locked", 0)
    sandbox.remove_tree(top)
    assert not top.exists() and (ROOT / "README.md").exists(), "removed, and the link was not followed"
