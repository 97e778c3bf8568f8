"""Grade a folder of submitted exercise notebooks: grades no notebook can forge, each submission sealed off.

    python -m mha.course grade SUBMISSIONS [--csv grades.csv] [--jobs N] [--shard K/N] [--seed S] ...
    python -m mha.course grade merge SHARD.csv ... --csv grades.csv

SUBMISSIONS holds one folder per student, each with any of the exercise notebooks (`01_*.ipynb`, ...). Every
notebook is checked once before anything runs (its size, that it is a notebook, a hash of its bytes) and read again
when its turn comes (a notebook changed in between is not graded). It runs in a process of its own (see
`mha.course.sandbox`), in a fresh private work area holding only its own copy, with limits on time, memory,
processes, disk, file size and output; its work area is removed as soon as it is graded.

The notebook's process reports nothing the grade depends on. Once its cells have run, the grader draws each
exercise's cases afresh (from the grading's seed), sends the inputs to that process as plain data, one case at a
time under the grader's own deadline, and receives what the learner's function returned, as plain data; it then
judges the answers in its own process with the exercise checks' own diagnoses (`mha.checks`). So nothing a notebook
writes, patches or prints can change a grade: only what its functions compute. The checks its cells call are skipped
while it runs here: they would count for nothing, and an endless answer would cost its time limit twice.

For the instructor, not for the marks, each row also carries flags, read by the grader from the notebook's text
(`mha.course.answers`) and, as the notebook's own process reports them, from its run: an answer that is the
course's own code (it fails, as in the notebook) or calls it, an answer identical to the course's solution,
identical answers between students. The course's solutions notebook handed in as it is gets no marks.

One notebook per student and lesson is graded: if a student hands in several for one lesson, the last saved (the
latest modification time; on a tie, the one named as the course names it, then the first by name), and its rows
say which others were not graded. Copies named `NN_name.fresh.ipynb` (left by `make exercises`) are not graded;
notebooks of a lesson the course does not have are skipped with a warning; a student folder with nothing to grade
gets one row saying so, and so does a name that is not valid text (UTF-8). Whatever a notebook does, the grading
ends with every row: a notebook the grader cannot handle is a row with a note.
"""

import hashlib
import json
import os
import random
import re
import resource
import stat
import tempfile
import time
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

from . import answers, judging, report, sandbox, wire
from .exercises import FRESH, ROOT
from .sandbox import Limits
from .trained import INSIDE, Trainings

NOTEBOOK = re.compile(r"^([0-9]{2})_.*\.ipynb$")
MAX_NOTEBOOK_BYTES = 16 << 20
SOLUTIONS_NOTEBOOK = "the course's own solutions notebook, handed in as it is: no marks"
NOT_TEXT = "name is not valid text (UTF-8): rename it to have it graded"


@dataclass
class Submission:
    """One notebook to grade, checked before anything runs (or a student folder with nothing to grade)."""

    student: str
    notebook: str  # file name; "" for a folder with nothing to grade
    lesson: str
    text: str | None = None  # its text, once read (`load`)
    problem: str = ""  # why it cannot be run, if it cannot
    path: Path | None = None
    sha256: str = ""  # of its bytes when it was checked
    others: list[str] = field(default_factory=list)  # the student's other notebooks for this lesson, not graded

    def load(self) -> str:
        """Its text, read again now; ValueError if it changed since it was checked."""
        if self.text is None:
            data = _read_bytes(self.path)
            if hashlib.sha256(data).hexdigest() != self.sha256:
                raise ValueError("the notebook changed while the class was being graded")
            self.text = data.decode("utf-8")
        return self.text


@dataclass
class Grading:
    """What a grading found: the rows of the CSV, warnings, and how it ran."""

    rows: list[dict]
    warnings: list[str]
    seed: int
    isolation: str
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # (student, notebook) -> wall seconds
    wall: float = 0.0
    cpu: dict[tuple[str, str], float] = field(default_factory=dict)  # (student, notebook) -> CPU seconds used
    memory_mb: dict[tuple[str, str], float] = field(default_factory=dict)  # (student, notebook) -> its peak, MiB
    jobs: int = 1
    peak_mb: float = 0.0  # the grader's own largest resident memory, MiB
    recorded_cpu: dict[str, float] = field(default_factory=dict)  # lesson -> CPU seconds of its trainings' recording


# --------------------------------------------------------------------------------------------------- collecting


def _is_text(name: str) -> bool:
    """A name Python could decode from the file system as UTF-8 (no undecodable byte, no lone surrogate)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def collect(folder: Path) -> tuple[list[Submission], list[str]]:
    """Every notebook to grade, checked now, and warnings (skipped files); ValueError if there is no student folder."""
    broken = judging.load()
    lessons = set(judging.lessons())
    warnings = [
        f"the course's checks for lesson {lesson} could not be loaded ({why}): not graded"
        for lesson, why in sorted(broken.items())
    ]
    students = sorted((p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()), key=_name_order)
    if not students:
        raise ValueError(f"{folder} has no sub-folders: expected one folder per student")
    subs = []
    for student in students:
        name = student.name
        if not _is_text(name):
            warnings.append(f"{report.safe(name)}: the folder's {NOT_TEXT}")
            subs.append(Submission(name, "", "", problem=f"the student folder's {NOT_TEXT}"))
            continue
        if student.is_symlink():
            warnings.append(f"{report.safe(name)}: a link to a folder, not a folder: not graded")
            subs.append(Submission(name, "", "", problem="the student folder is a link: not graded"))
            continue
        try:
            subs.extend(_student(name, student, broken, lessons, warnings))
        except OSError as error:  # a folder that cannot be read costs only its student
            subs.append(Submission(name, "", "", problem=f"the folder could not be read ({type(error).__name__})"))
    return subs, warnings


def _name_order(path: Path) -> str:
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _student(name: str, folder: Path, broken: dict, lessons: set, warnings: list[str]) -> list[Submission]:
    mine, others = [], []
    for path in sorted(folder.iterdir(), key=_name_order):
        match = NOTEBOOK.match(path.name)
        if not match or FRESH.search(path.name):
            others.append(report.safe(path.name))
            continue
        if not _is_text(path.name):
            warnings.append(f"{report.safe(name)}/{report.safe(path.name)}: the notebook's {NOT_TEXT}")
            mine.append(Submission(name, path.name, match.group(1), problem=f"the notebook's {NOT_TEXT}"))
            continue
        if match.group(1) in broken:
            problem = f"the course's checks for lesson {match.group(1)} could not be loaded: not graded"
            mine.append(Submission(name, path.name, match.group(1), problem=problem))
            continue
        if match.group(1) not in lessons:
            warnings.append(
                f"{report.safe(name)}/{report.safe(path.name)}: the course has no lesson {match.group(1)}: skipped"
            )
            others.append(report.safe(path.name))
            continue
        mine.append(_check(name, path, match.group(1)))
    chosen = []
    for lesson in sorted({s.lesson for s in mine}):
        handed = [s for s in mine if s.lesson == lesson and _is_text(s.notebook)]
        chosen += [s for s in mine if s.lesson == lesson and not _is_text(s.notebook)]
        if not handed:
            continue
        graded = max(handed, key=_last_saved)
        graded.others = [s.notebook for s in handed if s is not graded]
        if graded.others:
            warnings.append(
                f"{report.safe(name)} handed in {len(handed)} notebooks for lesson {lesson}: graded "
                f"{report.safe(graded.notebook)}, the last saved (not graded: {report.safe(', '.join(graded.others))})"
            )
        chosen.append(graded)
    if not chosen:
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        found = f" (the folder holds: {listed})" if others else ""
        return [Submission(name, "", "", problem="no exercise notebook handed in" + found)]
    return chosen


def _last_saved(sub: Submission) -> tuple:
    """The order that picks one notebook of a lesson: the latest saved, then the course's own name, then by name."""
    try:
        saved = sub.path.lstat().st_mtime if sub.path else 0.0
    except OSError:
        saved = 0.0
    course_name = (ROOT / "exercises" / sub.notebook).is_file() or sub.notebook in answers.shipped_notebooks()
    return (saved, course_name, [-ord(c) for c in sub.notebook])


def _read_bytes(path: Path) -> bytes:
    """A notebook's bytes, never following a link and never more than MAX_NOTEBOOK_BYTES."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a plain file")
        data = f.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"over {MAX_NOTEBOOK_BYTES >> 20} MB")
    return data


def _check(student: str, path: Path, lesson: str) -> Submission:
    sub = Submission(student, path.name, lesson, path=path)
    if path.is_symlink() or not path.is_file():
        sub.problem = "not a plain file (a link or a folder): not graded"
        return sub
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        sub.problem = f"the notebook is {size / 2**20:.0f} MB, over the limit of {MAX_NOTEBOOK_BYTES >> 20} MB"
        return sub
    try:
        data = _read_bytes(path)
        answers.code_cells(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as error:
        sub.problem = f"not a notebook that can be read ({type(error).__name__})"
        return sub
    sub.sha256 = hashlib.sha256(data).hexdigest()
    return sub


def course_references(course: Path, lesson: str) -> dict | None:
    """The course's side of a lesson's exercises: from `course`'s solutions, else as the package ships them.

    The same from a checkout and from an installed package (a JupyterHub image), whose `mha/course/fingerprints.json`
    `make exercises` writes from the solutions; None where neither has the lesson.
    """
    return answers.course_answers(Path(course), lesson) or answers.shipped_answers(lesson)


UNCHECKED = (
    "lesson {lesson}: the course's solutions are not here (no {where}, and the package ships no fingerprints for "
    "it), so no answer was compared with the solution, the solutions notebook handed in was not recognised, and "
    "notebooks left untouched may show as 'same answer as' each other: pass --course with the course's folder"
)


def shard(subs: list[Submission], index: int, count: int) -> list[Submission]:
    """The share of shard `index` (0-based) of `count`: every count-th student, in name order."""
    students = sorted({s.student for s in subs}, key=_sort_key)
    mine = set(students[index::count])
    return [s for s in subs if s.student in mine]


def _sort_key(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def notebook_seed(seed: int, sub: Submission) -> int:
    """The seed of one notebook's cases: the grading's seed and the notebook, whatever the order or the shard."""
    text = f"{seed}\0{sub.student}\0{sub.notebook}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big") % 1_000_000


# --------------------------------------------------------------------------------------------------- grading


def grade(
    folder: Path,
    limits: Limits | None = None,
    jobs: int | None = None,
    part: tuple[int, int] = (0, 1),
    seed: int | None = None,
    isolation: str = "auto",
    course: Path = ROOT,
    progress: bool = True,
    log=None,
) -> Grading:
    """Grade every notebook of a folder of student folders (or one shard's share of them).

    Args:
        folder: one sub-folder per student.
        limits: what each notebook's process may use (default: `Limits()`).
        jobs: notebooks run at once (default: the machine's cores).
        part: (index, count): grade only shard `index` of `count` (default all: (0, 1)).
        seed: the seed the cases are drawn from (default: a fresh one; the same seed repeats a grading).
        isolation: "auto" (the best available), "bwrap", "uid" or "none" (see `mha.course.sandbox`).
        course: the course folder whose `solutions/` the answers are compared with (where it has none, the
            fingerprints of the solutions shipped with the package are used; a lesson with neither is a warning).
        progress: show a progress bar.
        log: function of a line, told what happens before grading starts (default: nothing).

    Returns:
        a Grading: the rows (see `mha.course.report`, every text made safe), warnings, the seed, the isolation,
        seconds per notebook, the grader's own peak memory.
    """
    limits = limits or Limits()
    problems = limits.problems()
    if problems:
        raise ValueError("; ".join(problems))
    log = log or (lambda line: None)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if jobs > 1:
        answers.parse_one_at_a_time()  # CPython 3.11's ast.parse is not safe in threads (see `mha.course.answers`)
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    mode = sandbox.detect(isolation)
    log(sandbox.describe(mode))
    subs, warnings = collect(folder)
    subs = shard(subs, *part)
    for lesson in sorted({s.lesson for s in subs if s.lesson and not s.problem}):
        if course_references(course, lesson) is None:
            warnings.append(UNCHECKED.format(lesson=lesson, where=Path(course) / "solutions" / f"{lesson}_*.ipynb"))
    for line in warnings:
        log(f"warning: {line}")
    users = sandbox.Users(jobs) if os.geteuid() == 0 and mode != "none" else None
    uids = users.ids if users else [None] * jobs
    failure = sandbox.probe(mode, uids[0])
    if failure:
        if users:
            users.release()
        raise RuntimeError(f"the sandbox does not work here ({mode}): {failure}")
    free: Queue = Queue()
    for uid in uids:
        free.put(uid)
    grading = Grading([], warnings, seed, mode, jobs=jobs)
    scratch = Path(tempfile.mkdtemp(prefix="mha-grade-"))
    os.chmod(scratch, 0o711)  # users of the jobs may pass through to their own folder, not list the others
    # the lessons' trainings, once each from the course's solutions, read-only to every notebook (`mha._trained`);
    # without isolation a notebook could change them for the others, so there each notebook trains for itself
    graded = Counter(s.lesson for s in subs if s.lesson and not s.problem)
    worth = {lesson for lesson, n in graded.items() if n >= 2}  # one notebook would pay for its own training anyway
    trained = Trainings(scratch / "trained", course, limits.timeout, worth) if mode != "none" else None
    started = time.monotonic()

    def one(index: int, sub: Submission) -> list[dict]:
        uid = free.get()
        began, timing, workdir = time.monotonic(), {}, scratch / f"{index}"
        try:
            if trained is not None and sub.lesson and not sub.problem:
                trained.prepare(sub.lesson)
            return grade_notebook(sub, limits, mode, uid, notebook_seed(seed, sub), workdir, course, timing, trained)
        except Exception as error:  # noqa: BLE001 - one notebook the grader could not handle stops nothing else
            return _failed(sub, f"not graded: {type(error).__name__} in the grader ({str(error)[:200]})")
        finally:
            try:
                sandbox.remove_tree(workdir)  # now, not at the end: a full disk costs no one else
            except OSError as error:
                grading.warnings.append(f"{report.safe(sub.student)}: its work folder {workdir} stays ({error})")
            grading.seconds[(sub.student, sub.notebook)] = time.monotonic() - began
            grading.cpu[(sub.student, sub.notebook)] = timing.get("cpu", 0.0)
            grading.memory_mb[(sub.student, sub.notebook)] = timing.get("peak_mb", 0.0)
            free.put(uid)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, i, sub): sub for i, sub in enumerate(subs)}
            done = as_completed(futures)
            if progress:
                from tqdm.auto import tqdm

                done = tqdm(done, total=len(futures), desc="grading", unit="notebook")
            for future in done:
                try:
                    grading.rows.extend(future.result())
                except Exception as error:  # noqa: BLE001 - even a fault outside grade_notebook is one row
                    grading.rows.extend(_failed(futures[future], f"not graded: {type(error).__name__}"))
    finally:
        try:
            sandbox.remove_tree(scratch)
        except OSError as error:
            grading.warnings.append(f"the grader's scratch folder {scratch} stays ({error})")
        if users:
            users.release()
    grading.wall = time.monotonic() - started
    grading.recorded_cpu = dict(trained.seconds) if trained is not None else {}
    grading.warnings.extend(trained.warnings if trained is not None else [])
    rows = [report.safe_row(row) for row in grading.rows]
    grading.rows = report.mark_same_answers(sorted(rows, key=report.order))
    grading.peak_mb = _own_peak_mb()
    return grading


def _own_peak_mb() -> float:
    """The most memory this process has held, in MB: its own, not its parent's.

    Linux carries `ru_maxrss` over an exec (the high-water mark of the program that started this one: a test runner,
    a notebook), so where /proc says it, this reads the current program's own high-water mark, VmHWM.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _failed(sub: Submission, note: str) -> list[dict]:
    """The rows of a notebook the grader could not handle, made without anything that could fail again."""
    base = {"student": sub.student, "notebook": sub.notebook, "lesson": sub.lesson, "passed": False}
    base.update(note=note, run="", flags="", answer="")
    try:
        names = [e.name for e in judging.lesson_exercises(sub.lesson)] if sub.lesson else []
    except Exception:  # noqa: BLE001
        names = []
    return [{**base, "exercise": name} for name in names] or [{**base, "exercise": ""}]


def grade_notebook(
    sub: Submission,
    limits: Limits,
    mode: str,
    uid: int | None,
    seed: int,
    workdir: Path,
    course: Path = ROOT,
    timing: dict | None = None,
    trained: "Trainings | None" = None,
) -> list[dict]:
    """The rows of one notebook: read its answers, run it sealed off, ask for its answers, judge them here.

    `timing`, if given, receives "cpu": the CPU seconds its processes used, and "peak_mb": the most memory they
    held together (MiB, as the sandbox's watcher saw it). `trained`: the grading's saved trainings, which the
    notebook reads (read-only) instead of training again.
    """
    exercises = judging.lesson_exercises(sub.lesson) if sub.lesson else []
    base = {"student": sub.student, "notebook": sub.notebook, "lesson": sub.lesson}
    if not sub.problem and sub.text is None and sub.path is not None:
        try:
            sub.load()
        except (OSError, ValueError) as error:
            sub.problem = f"not graded: {error}"
    if sub.problem:
        if not exercises:
            return [{**base, "exercise": "", "passed": False, "note": sub.problem, "run": ""}]
        return [{**base, "exercise": e.name, "passed": False, "note": sub.problem, "run": ""} for e in exercises]
    cells = answers.code_cells(sub.text)
    code = answers.Code(cells)
    theirs = course_references(course, sub.lesson) or {}
    bodies = code.bodies()
    rows, read = {}, {}
    for e in exercises:
        found = read[e.name] = code.answer(e.function)
        reference = theirs.get(e.function)
        flags = []
        if reference and (found.digest == reference.solution or (reference.body and reference.body in bodies)):
            if reference.solution != reference.stub:
                flags.append("same as the course's solution")
        answer = "" if not found.digest or (reference and found.digest == reference.stub) else found.digest
        rows[e.name] = {**base, "exercise": e.name, "passed": False, "note": "", "run": "", "flags": flags}
        rows[e.name]["answer"] = answer
    if answers.is_solutions_notebook(code, cells, [e.function for e in exercises], theirs):
        for row in rows.values():
            row.update(note=SOLUTIONS_NOTEBOOK, flags=[SOLUTIONS_NOTEBOOK], answer="")
        return _finish(rows)
    unreadable = code.dynamic or code.unread
    del code, cells, bodies  # the grader keeps no notebook's code longer than it needs it
    run, results = run_and_ask(sub, exercises, limits, mode, uid, seed, workdir, timing, trained)
    if sub.others:
        run = f"{report.ONE_OF}{len(sub.others) + 1} notebooks for lesson {sub.lesson} (not graded: " + (
            f"{', '.join(sub.others)}); {run}"
        )
    for e in exercises:
        result = results[e.name]
        rows[e.name].update(run=run, **{k: v for k, v in result.items() if k not in ("flags", "origin", "calls")})
        reference = theirs.get(e.function)
        rows[e.name]["flags"] += _course_flags(read[e.name], result, reference, sub.lesson, unreadable)
        if read[e.name].origin and result.get("passed"):
            note = f"`{e.function}` is the course's own code ({read[e.name].origin[:80]}); the check is for the "
            rows[e.name].update(passed=False, note=note + "function you write yourself")
    return _finish(rows)


def _course_flags(found, result: dict, reference, lesson: str, unreadable: bool) -> list[str]:
    """The flags about the course's own code, from the notebook's text (read here) and from its process (its word).

    A course function that the solution itself calls (lesson 08's `local_forward` uses `mha.split_heads`) is no news.
    """
    flags = []
    origin = found.origin or result.get("origin")
    if isinstance(origin, str):
        flags.append(f"is the course's own code ({origin[:80]})")
    references = judging.reference_names(lesson)
    allowed = {name.rsplit(".", 1)[-1] for name in (reference.uses if reference else ())}
    called = set(found.uses) | {c for c in result.get("calls", []) if isinstance(c, str)}
    named = sorted({c for c in called if c.rsplit(".", 1)[-1] in references - allowed})
    if named:
        flags.append("calls the course's own " + ", ".join(c[:80] for c in named[:3]))
    if not found.digest and not result.get("missing") and unreadable:
        flags.append("defined by code the grader cannot read (exec of built text, computed names, or a huge cell)")
    return flags


def _finish(rows: dict) -> list[dict]:
    return [{**row, "flags": "; ".join(row["flags"])} for row in rows.values()]


def run_and_ask(sub, exercises, limits, mode, uid, seed, workdir, timing=None, trained=None) -> tuple[str, dict]:
    """Run the notebook in its sandbox, then judge each exercise; (how the run went, {exercise: result})."""
    workdir.mkdir(mode=0o700)
    with open(workdir / "submission.ipynb", "w", encoding="utf-8") as f:
        f.write(sub.text if sub.text is not None else sub.load())
    sub.text = None
    if uid is not None:
        for path in (workdir, workdir / "submission.ipynb"):
            os.chown(path, uid, uid)
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    rlimits = limits.rlimits()
    if uid is None:  # sharing our user: leave room for the processes we already have
        rlimits["RLIMIT_NPROC"] += sandbox.count_tasks(os.getuid())
    argv = sandbox.course_command(mode, "mha.course._runner", "submission.ipynb")
    argv += ["--requests", str(requests_r), "--replies", str(replies_w), "--rlimits", json.dumps(rlimits)]
    extra_env = {k: v for k, v in os.environ.items() if k == "MHA_CHECK_TIME_LIMIT"}
    read_only = []
    if trained is not None:
        extra_env.update(trained.environment(mode))
        read_only.append((str(trained.folder), INSIDE))
    process = sandbox.Process(mode, workdir, argv, limits, uid, (requests_r, replies_w), extra_env, read_only)
    results = {}
    try:
        process.start()
        os.close(requests_r)
        os.close(replies_w)
        requests_r = replies_w = -1
        os.set_blocking(requests_w, False)
        run, ended = _await_cells(process, replies_r, limits)
        budget = time.monotonic() + limits.call_timeout  # all the calls of this notebook, the grader's own deadline
        for e in exercises:
            if ended:
                results[e.name] = {"note": f"not graded: {ended}"}
                continue
            results[e.name], ended = _ask(process, e, seed, requests_w, replies_r, sub.lesson, budget, limits)
    finally:
        if timing is not None:
            timing["cpu"] = process.cpu_seconds()
            timing["peak_mb"] = process.peak_memory / 2**20
        for fd in (requests_r, replies_w, requests_w, replies_r):
            if fd >= 0:
                os.close(fd)
        status = process.stop()
    run += _limit_notes(process, status, limits)
    for e in exercises:
        results.setdefault(e.name, {"note": "not graded"})
        results[e.name].setdefault("passed", False)
    return run.strip("; "), results


def _await_cells(process: "sandbox.Process", replies: int, limits: Limits) -> tuple[str, str]:
    """Wait for the notebook's cells to run; (how it went, why no exercise can be asked: "" if they can)."""
    try:
        ready = wire.receive(replies, deadline=time.monotonic() + limits.timeout, max_bytes=0)
    except wire.TooLate:
        return f"was stopped after {limits.timeout:g} s (time limit) while running its cells", "the time limit"
    except wire.Closed:
        return f"ended while running its cells{_how_it_ended(process)}", "the notebook's process ended"
    except wire.WireError as error:
        return f"sent something that is not a report ({error})", "its process broke the protocol"
    if not isinstance(ready, dict) or ready.get("op") != "ready":
        return "sent something that is not a report", "its process broke the protocol"
    if ready.get("unreadable"):
        return f"could not be read ({ready['unreadable']})", "the notebook could not be read"
    cells, errors = ready.get("cells"), ready.get("errors")
    text = f"ran its {cells} code cells" if isinstance(cells, int) else "ran its cells"
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    process.cell_errors = errors
    own = [e for e in errors if e.get("type") != "CheckFailed"]  # a check failing in the notebook is no news here
    if own:
        first = own[0]
        cell = first.get("cell") + 1 if isinstance(first.get("cell"), int) else "?"
        text += (
            f"; {len(own)} cell(s) raised an error (first: {str(first.get('type'))[:60]} in code cell {cell}: "
            f"{str(first.get('message'))[:120]})"
        )
    return text, ""


def _ask(process, exercise, seed: int, requests: int, replies: int, lesson: str, budget: float, limits: Limits):
    """Judge one exercise: send its cases one at a time, each under the grader's own deadline (its check's limit and
    SLACK, within what is left of the notebook's `call_timeout`), judge the outcomes here.

    Returns (result, why no more can be asked: "" if more can).
    """
    drawn = judging.cases(exercise, seed)
    if not drawn:
        return {"note": "this exercise's check cannot yet be run by the grader (it has no cases to send)"}, ""
    outcomes, calls, name = [], set(), f"`{exercise.function}`"

    def so_far(note: str) -> dict:
        return {"note": note, "calls": sorted(calls)}

    for case in drawn:
        for attempt in range(exercise.retries + 1):
            left = budget - time.monotonic()
            if left <= 0:
                why = f"the notebook's calls used up their {limits.call_timeout:g} s (--call-timeout)"
                return so_far(f"not graded: {why}"), why
            allowed = min(judging.time_allowed(exercise), left)
            deadline = time.monotonic() + allowed
            request = {
                "op": "call",
                "lesson": lesson,
                "exercise": exercise.name,
                "cases": [judging.case_to_plain(case)],
            }
            try:
                wire.send(requests, request, deadline=deadline, spec_of=judging.spec_of)
                reply = wire.receive(replies, deadline=deadline, max_bytes=wire.MAX_REPLY)
            except wire.TooLate:
                if allowed < judging.time_allowed(exercise):  # the notebook's budget ran out, not this case's limit
                    why = f"the notebook's calls used up their {limits.call_timeout:g} s (--call-timeout)"
                    return so_far(f"not graded: {why}"), why + " and its process was stopped"
                ended = f"{name} ran past {allowed:.3g} s and the notebook's process was stopped"
                return so_far(f"{name} did not answer within {allowed:.3g} s"), ended
            except wire.Closed:
                ended = (
                    f"the notebook's process ended while answering exercise '{exercise.name}'{_how_it_ended(process)}"
                )
                return so_far(ended), ended
            except wire.WireError as error:
                return so_far(f"the answer could not be read ({error})"), "its process broke the protocol"
            if not isinstance(reply, dict) or reply.get("missing") is not False or isinstance(reply.get("origin"), str):
                return _judge(exercise, [case], reply, seed, lesson), ""  # no function, or the course's own (its word)
            if isinstance(reply.get("calls"), list):
                calls |= {c for c in reply["calls"] if isinstance(c, str)}
            got = reply.get("outcomes")
            if not isinstance(got, list) or len(got) != 1:
                return so_far("the answer could not be read (no outcome)"), ""
            if attempt < exercise.retries and _wrong_once(exercise, case, got[0], seed):
                continue  # judged on wall time: a busy machine may have stretched it; run it again
            break
        outcomes.append(got[0])
        if isinstance(got[0], dict) and got[0].get("timed_out") is True:
            break  # every other case would wait as long
    reply = {"missing": False, "origin": None, "calls": sorted(calls), "outcomes": outcomes}
    return _judge(exercise, drawn, reply, seed, lesson), ""


def _wrong_once(exercise, case, outcome, seed: int) -> bool:
    """Whether one case's outcome, judged alone, fails (not for a time-out or an outcome that cannot be read)."""
    clean = _outcome(outcome)
    if clean is None or clean["timed_out"]:
        return False
    try:
        return judging.verdict(exercise, [case], [clean], seed) is not None
    except Exception:  # noqa: BLE001 - judged once more, with every case, by _judge
        return False


def _judge(exercise, drawn: list, reply, seed: int, lesson: str) -> dict:
    """The result of one exercise from the notebook's replies: judged here, with the check's own verdict.

    What the notebook's process says of its function (that it is the course's own code, the course functions it
    called) is kept as "origin" and "calls", for the flags: its word, which it could leave out.
    """
    name = f"`{exercise.function}`"
    if not isinstance(reply, dict):
        return {"note": "the answer could not be read (not a reply)"}
    if reply.get("missing") is True:
        if reply.get("why") == "no such exercise":
            return {"note": "the notebook's process could not find this exercise's check", "missing": True}
        kind = reply.get("type")
        if isinstance(kind, str):
            return {"note": f"{name} is a {kind[:40]}, not a function", "missing": True}
        return {"note": f"{name} is not defined in the notebook", "missing": True}
    origin = reply.get("origin") if isinstance(reply.get("origin"), str) else None
    calls = [c for c in reply.get("calls", []) if isinstance(c, str)] if isinstance(reply.get("calls"), list) else []
    said = {"origin": origin, "calls": calls}
    if origin:
        note = f"{name} is the course's own code ({origin[:80]}); the check is for the function you write yourself"
        return {"note": note, **said}
    outcomes = reply.get("outcomes")
    if not isinstance(outcomes, list) or not outcomes or len(outcomes) > len(drawn):
        return {"note": "the answer could not be read (no outcomes)", **said}
    clean = [_outcome(o) for o in outcomes]
    if any(o is None for o in clean):
        return {"note": "the answer could not be read (a malformed outcome)", **said}
    try:
        message = judging.verdict(exercise, drawn[: len(clean)], clean, seed)
    except Exception as error:  # noqa: BLE001 - an answer the judge cannot take is a failed answer, not a stop
        message = f"the answer could not be judged ({type(error).__name__}: {str(error)[:200]})"
    if message is None and len(clean) < len(drawn):
        message = f"{name} answered {len(clean)} of {len(drawn)} cases"
    return {"passed": message is None, "note": message or "", **said}


def _outcome(o) -> dict | None:
    """An outcome as `mha.checks.run_case` returns it, with every field of the expected type; None if it is not."""
    if not isinstance(o, dict):
        return None
    error = o.get("error")
    if error is not None:
        if not isinstance(error, dict):
            return None
        where = error.get("where")
        error = {
            "type": str(error.get("type"))[:100],
            "message": str(error.get("message"))[:1000],
            "where": str(where)[:100] if isinstance(where, str) else None,
        }
    changed = o.get("changed")
    if not isinstance(changed, dict) or not all(_change_report(v) for v in changed.values()):
        return None
    seconds = o.get("seconds")
    return {
        "got": o.get("got"),
        "changed": {str(k): v for k, v in changed.items()},
        "error": error,
        "timed_out": o.get("timed_out") is True,
        "seconds": float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else 0.0,
    }


def _change_report(report) -> bool:
    if not isinstance(report, dict) or not isinstance(report.get("how", []), list):
        return False
    keys = ("part", "kind", "detail")
    return all(isinstance(c, dict) and all(isinstance(c.get(k), str) for k in keys) for c in report.get("how", []))


_SIGNALS = {9: "SIGKILL", 24: "SIGXCPU", 25: "SIGXFSZ", 11: "SIGSEGV", 6: "SIGABRT", 7: "SIGBUS", 15: "SIGTERM"}


def _how_it_ended(process) -> str:
    """ ", killed by SIGXCPU", ", exit status 1", ... and its last line of output."""
    status = process.wait_briefly()
    text = ""
    if status is not None:
        signal_number = -status if status < 0 else status - 128 if status > 128 else 0
        if signal_number:
            text = f" (killed by {_SIGNALS.get(signal_number, f'signal {signal_number}')})"
        elif status:
            text = f" (exit status {status})"
    last = process.last_line()
    return text + (f"; last output: {last}" if last else "")


def _limit_notes(process, status, limits: Limits) -> str:
    """Every limit the process hit, in words."""
    notes = []
    errors = " ".join(f"{e.get('type')}: {e.get('message')}" for e in getattr(process, "cell_errors", []))
    signal_number = 0
    if status is not None:
        signal_number = -status if status < 0 else status - 128 if status > 128 else 0
    if signal_number == 24:
        notes.append(f"CPU time limit ({limits.cpu_seconds:g} s) reached")
    if process.over == "memory":
        notes.append(f"memory limit ({limits.memory_mb} MB, all its processes together) reached: stopped")
    elif "MemoryError" in errors or "can't allocate memory" in errors or "not enough memory" in errors:
        notes.append(f"memory limit ({limits.memory_mb} MB) reached")
    if process.over == "files" or "No space left on device" in errors or "Disk quota" in errors:
        notes.append(f"disk limit ({limits.disk_mb} MB, {limits.files} files) reached")
    if "File too large" in errors or signal_number == 25:
        notes.append(f"file size limit ({limits.file_size_mb} MB) reached")
    if "Resource temporarily unavailable" in errors or "can't start new thread" in errors:
        notes.append(f"process limit ({limits.processes}) reached")
    if process.output_over_limit:
        notes.append(
            f"printed {process.output_bytes / 2**20:.1f} MB; only the first {limits.output_mb:g} MB were read "
            f"(output limit)"
        )
    return "".join(f"; {n}" for n in notes)


def summary(grading: Grading) -> str:
    """The instructor's summary of a grading: marks, commonest failures, flags, warnings, and how it ran."""
    text = report.summary(grading.rows, judging.lessons())
    timed = sorted(grading.seconds.values())
    lines = [text, ""]
    if grading.warnings:
        lines += ["warnings:", *[f"  {w}" for w in grading.warnings], ""]
    if timed:
        recorded = sum(grading.recorded_cpu.values())
        trainings = f", {recorded:.1f} in the lessons' trainings, run once from the solutions" if recorded else ""
        lines.append(
            f"{len(timed)} notebooks in {grading.wall:.1f} s with {grading.jobs} at once "
            f"({sum(timed) / len(timed):.1f} s per notebook on average, {timed[-1]:.1f} s at most; "
            f"{sum(grading.cpu.values()):.1f} CPU seconds in the notebooks' processes{trainings}); "
            f"seed {grading.seed} (`--seed {grading.seed}` draws the same cases again); the grader's own memory "
            f"peaked at {grading.peak_mb:.0f} MB"
        )
    lines.append(sandbox.describe(grading.isolation))
    return "\n".join(lines)


def feedback_files(rows: list[dict]) -> dict[str, str]:
    """One short text per student (file name -> text): each exercise's result and the check's message."""
    out, taken = {}, set()

    def key(name: str) -> str:  # what a file system that ignores letter case or Unicode forms (macOS, Windows) sees
        return unicodedata.normalize("NFC", name).casefold()

    for student in sorted({r["student"] for r in rows}):
        safe = re.sub(r"[/\\]", "_", report.safe(student)).lstrip(".")[:100] or "student"
        name, number = f"{safe}.txt", 1
        while key(name) in taken:  # names that one file system takes for one get two files ("Ada", "ada"; "a/b", "a_b")
            number += 1
            name = f"{safe}-{number}.txt"
        taken.add(key(name))
        out[name] = report.feedback(student, rows)
    return out
