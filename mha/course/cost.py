"""What each lesson costs a machine, measured: `python -m mha.course cost`, for sizing a JupyterHub or a grader.

    python -m mha.course cost                              # every lesson, then its exercises solved
    python -m mha.course cost --lessons 05 08 --json cost.json
    python -m mha.course cost --grading                    # also grade the solved exercises, as one student
    python -m mha.course cost --memory-mb 1024 2048        # instead: grade them at each --memory-mb (memory_limits)

For each lesson it runs the lesson notebook top to bottom in the course's kernel, as a student's Run All does, and
measures the CPU seconds of the kernel and of every process it started (lesson 08's ranks included), the peak of
the memory they hold together (sampled every 0.2 s; proportional set sizes, so that pages they share, PyTorch's
libraries among them, count once, as a container's memory limit counts them; and the sum of their resident sizes,
which counts them in each), the kernel's own peak, and the wall time (which a busy machine
stretches: the load average is recorded beside it). In a checkout it does the same for the lesson's exercise
notebook with every blank filled in from `solutions/` (what a student's finished notebook runs), and with
`--grading` grades those notebooks as one student's with the course's grader, one at a time: the CPU seconds and
the time of each, and the grader's own peak memory. Linux only (it reads /proc).
"""

import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .exercises import ROOT

KERNEL = "mha-course"
SAMPLE_SECONDS = 0.2
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _resident_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _proportional_mb(pid: int) -> float:
    """The process's proportional set size: its own pages, and its share of pages it shares (libraries, other
    processes' memory), so that a sum over processes counts a shared page once, as the machine holds it."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _tree(root: int) -> list[int]:
    """`root` and every process below it."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields:
                parents[int(name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(tree)


class _Watch:
    """Samples the memory of a process tree until stopped; then its CPU seconds, children included."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self.peak_resident_mb, self.most_processes = pid, 0.0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            pids = _tree(self.pid)
            self.peak_mb = max(self.peak_mb, sum(_proportional_mb(p) for p in pids))
            self.peak_resident_mb = max(self.peak_resident_mb, sum(_resident_mb(p) for p in pids))
            self.most_processes = max(self.most_processes, len(pids))
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> dict:
        """Stop sampling; the tree's CPU seconds (the kernel's own, its waited-for children's, the live ones')."""
        self._stop.set()
        self._thread.join()
        ticks = 0
        for pid in _tree(self.pid):
            fields = _stat(pid)
            if fields:
                ticks += sum(int(x) for x in fields[11:13])  # utime, stime
                if pid == self.pid:
                    ticks += sum(int(x) for x in fields[13:15])  # cutime, cstime: children that ended
        kernel_peak = 0.0
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kernel_peak = int(line.split()[1]) / 1024
        except OSError:
            pass
        return {
            "cpu_seconds": round(ticks / _TICK, 1),
            "peak_mb": round(self.peak_mb),  # proportional: what the processes hold of the machine's memory
            "peak_resident_mb": round(self.peak_resident_mb),  # the sum of resident sizes: shared pages many times
            "kernel_peak_mb": round(kernel_peak),
            "processes_at_once": self.most_processes,
        }


@dataclass(frozen=True)
class Lesson:
    number: str
    notebook: Path  # notebooks/NN_*.ipynb
    solutions: Path | None  # solutions/NN_*.ipynb, in a checkout


def lessons(root: Path = ROOT, only: list[str] | None = None) -> list[Lesson]:
    """The lessons of the course at `root` (those named in `only`, if given), in order."""
    found = []
    for path in sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        number = path.name[:2]
        if only and number not in only:
            continue
        solved = Path(root) / "solutions" / path.name
        found.append(Lesson(number, path, solved if solved.is_file() else None))
    missing = sorted(set(only or ()) - {lesson.number for lesson in found})
    if missing:
        raise ValueError(f"{root}/notebooks has no lesson {', '.join(missing)}")
    if not found:
        raise ValueError(f"{root} has no notebooks/NN_*.ipynb: run the command in the course's folder (or --root)")
    return found


def solved_exercise(solutions: Path):
    """A student's finished exercise notebook: the solutions notebook without its solution markers or outputs."""
    nb = nbformat.read(solutions, as_version=4)
    marker = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
    for cell in nb.cells:
        cell.source = "\n".join(line for line in cell.source.split("\n") if not marker.match(line))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def run(nb, folder: Path, timeout: float = 900) -> dict:
    """Run a notebook's cells in order in the course's kernel, from `folder`: its cost, and the first error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(folder)}})
    started, error = time.monotonic(), None
    with client.setup_kernel():
        watch = _Watch(client.km.provisioner.pid)
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except CellExecutionError as failure:
            error = str(failure).strip().splitlines()[-1][:200]
        finally:
            measured = watch.stop()
    return {"wall_seconds": round(time.monotonic() - started, 1), **measured, "error": error}


def without_paths(text: str) -> str:
    """`text` with this machine's folders (the course's, Python's, the home folder) left out: they are no result."""
    for folder in (str(ROOT), sys.prefix, os.path.expanduser("~")):
        text = text.replace(folder.rstrip(os.sep) + os.sep, "")
    return text


def grading(found: list[Lesson], memory_mb: int | None = None) -> dict:
    """Grade each lesson's solved exercise notebook as one student's, one notebook at a time.

    Args:
        found: the lessons.
        memory_mb: the grader's `--memory-mb` (default: its default, `Limits().memory_mb`).
    """
    from . import grade
    from .sandbox import Limits

    limits = Limits() if memory_mb is None else Limits(memory_mb=memory_mb)
    with tempfile.TemporaryDirectory(prefix="mha-cost-") as scratch:
        student = Path(scratch) / "submissions" / "student"
        student.mkdir(parents=True)
        for lesson in found:
            if lesson.solutions:
                nbformat.write(solved_exercise(lesson.solutions), student / lesson.solutions.name)
        done = grade.grade(student.parent, limits=limits, jobs=1, seed=0, progress=False)
    per = {}
    for (_, notebook), seconds in done.seconds.items():
        rows = [r for r in done.rows if r["notebook"] == notebook]
        per[notebook[:2]] = {
            "wall_seconds": round(seconds, 1),
            "cpu_seconds": round(done.cpu[("student", notebook)], 1),
            "passed": sum(bool(r["passed"]) for r in rows),
            "exercises": len(rows),
        }
        failed = [r for r in rows if not r["passed"]]
        if failed:  # why, in the grader's words: how the notebook ran, else the first failing check's note
            per[notebook[:2]]["why"] = without_paths(failed[0]["run"] or failed[0]["note"])[:300]
    return {
        "memory_mb": limits.memory_mb,
        "per_lesson": dict(sorted(per.items())),
        "isolation": done.isolation,
        "grader_peak_mb": round(done.peak_mb),
    }


def memory_limits(root: Path = ROOT, limits_mb: list[int] = (), only: list[str] | None = None, report=print) -> dict:
    """Grade the solved exercises once at each `--memory-mb` in `limits_mb` (no lesson is run): the least each needs.

    `--memory-mb` caps the address space of each of a notebook's processes (PyTorch maps much more than it touches)
    and the memory its processes hold together; a Slurm or Kubernetes job must ask for `--jobs` times it and the
    grader. `report` is told one line per limit as it is graded.
    """
    found = lessons(root, only)
    out: dict = {"cpus": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 1), "gradings": []}
    for mb in sorted(set(limits_mb)):
        graded = grading(found, mb)
        out["gradings"].append(graded)
        short = [f"{n} ({m['passed']}/{m['exercises']})" for n, m in graded["per_lesson"].items() if "why" in m]
        report(f"--memory-mb {mb}: " + (("short of full marks: " + ", ".join(short)) if short else "every lesson full"))
    fits = [g["memory_mb"] for g in out["gradings"] if all("why" not in m for m in g["per_lesson"].values())]
    out["least_memory_mb_every_lesson_passes"] = min(fits) if fits else None
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    return out


def measure(root: Path = ROOT, only: list[str] | None = None, with_grading: bool = False, report=print) -> dict:
    """Every measurement `cost` makes, as one dict; `report` is told each lesson's line as it is measured."""
    found = lessons(root, only)
    out: dict = {"cpus": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 1), "lessons": {}}
    for lesson in found:
        entry = {"lesson": run(nbformat.read(lesson.notebook, as_version=4), lesson.notebook.parent)}
        if lesson.solutions:
            exercises = Path(root) / "exercises"
            entry["solved_exercises"] = run(solved_exercise(lesson.solutions), exercises)
        out["lessons"][lesson.number] = entry
        report(line(lesson.number, entry))
    if with_grading:
        out["grading"] = grading(found)
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    return out


def line(number: str, entry: dict) -> str:
    parts = []
    for name, what in (("lesson", "lesson"), ("solved_exercises", "exercises")):
        if name in entry:
            m = entry[name]
            parts.append(
                f"{what}: {m['cpu_seconds']:6.1f} CPU s {m['wall_seconds']:6.1f} s {m['peak_mb']:5d} MB "
                f"({m['processes_at_once']} process{'es' if m['processes_at_once'] > 1 else ''})"
                + (f" ERROR {m['error']}" if m["error"] else "")
            )
    return f"{number}  " + "   ".join(parts)
