"""The trainings of a lesson's notebook, run once per grading from the course's own solutions (see `mha._trained`).

    python -m mha.course.trained NOTEBOOK FOLDER

runs every code cell of NOTEBOOK (the course's solutions notebook of a lesson, never a student's) with the checks
skipped, saving into FOLDER the result of each course function marked `@once()` that it calls. The grader runs it
outside the sandbox, as the course's own code, before the first notebook of the lesson; each student's notebook
then reads FOLDER read-only. `Trainings` is the grader's side: one recording per lesson, at most, per grading.
"""

import ast
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .._trained import FOLDER, RECORD
from . import answers, sandbox

INSIDE = sandbox.COURSE + "/trained"  # where a notebook under bubblewrap finds the folder


class Trainings:
    """The grader's folder of saved trainings, filled one lesson at a time from the course's solutions.

    A lesson is recorded only where it pays: when at least two of its notebooks are graded, and when its solutions
    call a marked function (a lesson whose notebooks train nothing costs no recording).

    Args:
        folder: a new folder (created here, readable by every user, writable by the grader alone).
        course: the course folder whose `solutions/NN_*.ipynb` are run.
        timeout: seconds one lesson's recording may take (then it stops: its notebooks train for themselves).
        lessons: the lessons worth recording (default: every lesson).
    """

    def __init__(self, folder: Path, course: Path, timeout: float, lessons=None):
        self.folder, self.course, self.timeout = Path(folder).resolve(), Path(course).resolve(), timeout
        self.lessons = None if lessons is None else set(lessons)
        self.folder.mkdir(mode=0o755)
        os.chmod(self.folder, 0o755)  # whatever the umask: the notebooks' users read it
        self.seconds: dict[str, float] = {}  # lesson -> CPU seconds its recording took
        self.warnings: list[str] = []  # lessons not recorded, and why
        self._lock = threading.Lock()
        self._done: dict[str, threading.Event] = {}  # lesson -> set when its recording has ended

    def prepare(self, lesson: str) -> None:
        """Record `lesson`'s trainings before its first notebook runs; a job that reaches another notebook of the
        lesson meanwhile waits for the recording to end (at most its time limit), so that every notebook reads it."""
        if not lesson or (self.lessons is not None and lesson not in self.lessons):
            return
        with self._lock:
            done = self._done.get(lesson)
            first = done is None
            if first:
                done = self._done[lesson] = threading.Event()
        if not first:
            done.wait(self.timeout + 30)
            return
        try:
            self._record(lesson)
        finally:
            done.set()

    def _record(self, lesson: str) -> None:
        notebook = None
        try:
            notebook = solutions_notebook(self.course, lesson)
            if notebook is None or not calls_a_marked_function(notebook):
                return
            who = changeable_by_others(notebook)
            if who:
                self.warnings.append(
                    f"lesson {lesson}: its trainings were not run once for the class (each notebook trained for "
                    f"itself): the grader runs the course's solutions outside the sandbox, and {who}"
                )
                return
            self.seconds[lesson], problem = record(notebook, self.folder, self.timeout)
        except Exception as error:  # noqa: BLE001 - a recording that fails costs speed, never a student's grade
            problem = f"failed ({type(error).__name__}: {str(error)[:200]})"
        if problem:
            self.warnings.append(
                f"lesson {lesson}: running its trainings once from {notebook.name if notebook else 'the solutions'} "
                f"{problem}; the notebooks whose trainings were not saved trained for themselves"
            )

    def environment(self, mode: str) -> dict[str, str]:
        """What a notebook's process is told: where the folder is, as it sees it."""
        return {FOLDER: INSIDE if mode == "bwrap" else str(self.folder)}


def changeable_by_others(path: Path) -> str:
    """Why someone other than the grader's user (and root) could change `path` or swap it for another file, or ""
    if no one could: the file and every folder above it are theirs and writable by no one else (a folder all may
    write to, as /tmp, protects what it holds only with its sticky bit). The grader runs only such a notebook."""
    me = os.geteuid()
    for item in [path, *path.parents]:
        try:
            info = os.lstat(item)
        except OSError as error:
            return f"{item} cannot be examined ({error.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return f"{item} is a link"
        if info.st_uid not in (me, 0):
            return f"{item} belongs to user {info.st_uid}"
        if info.st_mode & 0o022 and not (item != path and info.st_mode & stat.S_ISVTX):
            return f"{item} may be written by others (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def solutions_notebook(course: Path, lesson: str) -> Path | None:
    """The solutions notebook the grader compares the lesson's answers with (`answers.solutions_notebook`)."""
    found = answers.solutions_notebook(course, lesson)
    return found.resolve() if found is not None and found.is_file() else None


@functools.cache
def marked_functions() -> frozenset[str]:
    """The names of the course's functions marked `@once(...)`, read from the package's source."""
    import mha

    names = set()
    for path in Path(mha.__file__).resolve().parent.rglob("*.py"):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(_is_once(d) for d in node.decorator_list):
                names.add(node.name)
    return frozenset(names)


def _is_once(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "once") or (
        isinstance(target, ast.Attribute) and target.attr == "once"
    )


def calls_a_marked_function(notebook: Path) -> bool:
    """Whether the notebook's code names a marked function followed by "(" (an alias would be missed: its notebooks
    would then train for themselves, as without a recording)."""
    from ._runner import cells_of

    names = marked_functions()
    if not names:
        return False
    call = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\s*\(")
    return any(call.search(source) for source in cells_of(notebook))


def record(notebook: Path, folder: Path, timeout: float) -> tuple[float, str]:
    """Run `notebook` once, saving its marked trainings into `folder`; the CPU seconds it took and what went wrong
    ("" if nothing). A recording that fails or runs out of time saves what it finished: the rest is trained by each
    notebook."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",  # as in the notebooks' processes
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        FOLDER: str(folder),
        RECORD: "1",
    }
    argv = sandbox.course_command("uid", "mha.course.trained", str(notebook), str(folder))
    work = Path(tempfile.mkdtemp(prefix="record-", dir=folder.parent))  # what its cells write goes here, then away
    env["HOME"] = str(work)
    try:
        process = subprocess.Popen(
            argv,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        return 0.0, f"could not start ({error.strerror})"
    reaped, lock, stopped = [], threading.Lock(), []

    def stop() -> None:  # its process group, while its pid is still its own (not reaped, so not reused)
        with lock:
            if not reaped:
                stopped.append(True)
                _kill(process.pid)

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped: its pid is still its own
        with lock:
            reaped.append(True)  # from here the timer leaves it alone
        _, status, usage = os.wait4(process.pid, 0)  # its own CPU time, not that of the notebooks other threads ran
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        shutil.rmtree(work, ignore_errors=True)
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(f".{process.pid}"):
            (folder / name).unlink(missing_ok=True)  # its save cut short
    problem = f"ran past {timeout:g} s" if stopped else ""
    if not problem and process.returncode != 0:
        problem = f"ended with status {process.returncode}"
    return usage.ru_utime + usage.ru_stime, problem


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv=None) -> int:
    from ..checks import framework
    from ._runner import cells_of, run_cells

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or os.environ.get(RECORD) != "1":
        print("usage: python -m mha.course.trained NOTEBOOK FOLDER (run by the grader)", file=sys.stderr)
        return 2
    framework.GRADING = True  # the checks its cells call are skipped, as when a student's notebook is graded
    run_cells(cells_of(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
