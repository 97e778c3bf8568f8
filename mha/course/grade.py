"""Grade a folder of submitted exercise notebooks: grades no notebook can forge, each submission sealed off.

    python -m mha.course grade SUBMISSIONS [--csv grades.csv] [--jobs N] [--shard K/N] [--seed S] ...
    python -m mha.course grade merge SHARD.csv ... --csv grades.csv

SUBMISSIONS holds one folder per student, each with any of the exercise notebooks (`01_*.ipynb`, ...). Every
notebook is read once, before anything runs, and runs in a process of its own (see `mha.course.sandbox`), in a
fresh private folder holding only its own copy, with limits on time, memory, processes, file size and output.

The notebook's process reports nothing the grade depends on. Once its cells have run, the grader draws each
exercise's cases afresh (from the grading's seed), sends the inputs to that process as plain data, and receives
what the learner's function returned, as plain data; it then judges the answers in its own process with the
exercise checks' own diagnoses (`mha.checks`). So nothing a notebook writes, patches or prints can change a grade:
only what its functions compute.

For the instructor, not for the marks, each row also carries flags: an answer that is the course's own code (it
fails, as in the notebook) or calls it, an answer cell identical to the course's solution, identical answers
between students. The course's solutions notebook handed in as it is gets no marks.

Copies named `NN_name.fresh.ipynb` (left by `make exercises`) are not graded; notebooks of a lesson the course
does not have are skipped with a warning; a student folder with nothing to grade gets one row saying so.
"""

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

from . import answers, judging, report, sandbox, wire
from .exercises import FRESH, ROOT
from .sandbox import Limits

NOTEBOOK = re.compile(r"^([0-9]{2})_.*\.ipynb$")
MAX_NOTEBOOK_BYTES = 32 << 20
SOLUTIONS_NOTEBOOK = "the course's own solutions notebook, handed in as it is: no marks"


@dataclass
class Submission:
    """One notebook to grade, read once before anything runs (or a student folder with nothing to grade)."""

    student: str
    notebook: str  # file name; "" for a folder with nothing to grade
    lesson: str
    text: str | None = None
    problem: str = ""  # why it cannot be run, if it cannot


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
    jobs: int = 1


# --------------------------------------------------------------------------------------------------- collecting


def collect(folder: Path) -> tuple[list[Submission], list[str]]:
    """Every notebook to grade, read now, and warnings (skipped files); ValueError if there is no student folder."""
    broken = judging.load()
    lessons = set(judging.lessons())
    warnings = [
        f"the course's checks for lesson {lesson} could not be loaded ({why}): not graded"
        for lesson, why in sorted(broken.items())
    ]
    students = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    if not students:
        raise ValueError(f"{folder} has no sub-folders: expected one folder per student")
    subs = []
    for student in students:
        mine, others = [], []
        if student.is_symlink():
            warnings.append(f"{student.name}: a link to a folder, not a folder: not graded")
            subs.append(Submission(student.name, "", "", problem="the student folder is a link: not graded"))
            continue
        for path in sorted(student.iterdir()):
            match = NOTEBOOK.match(path.name)
            if not match or FRESH.search(path.name):
                others.append(path.name)
                continue
            if match.group(1) in broken:
                problem = f"the course's checks for lesson {match.group(1)} could not be loaded: not graded"
                mine.append(Submission(student.name, path.name, match.group(1), problem=problem))
                continue
            if match.group(1) not in lessons:
                warnings.append(f"{student.name}/{path.name}: the course has no lesson {match.group(1)}: skipped")
                others.append(path.name)
                continue
            mine.append(_read(student.name, path, match.group(1)))
        for lesson in sorted({s.lesson for s in mine}):
            count = sum(s.lesson == lesson for s in mine)
            if count > 1:
                warnings.append(f"{student.name} handed in {count} notebooks for lesson {lesson}: each is graded")
        if not mine:
            listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            found = f" (the folder holds: {listed})" if others else ""
            subs.append(Submission(student.name, "", "", problem="no exercise notebook handed in" + found))
        subs.extend(mine)
    return subs, warnings


def _read(student: str, path: Path, lesson: str) -> Submission:
    sub = Submission(student, path.name, lesson)
    if path.is_symlink() or not path.is_file():
        sub.problem = "not a plain file (a link or a folder): not graded"
        return sub
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        sub.problem = f"the notebook is {size / 2**20:.0f} MB, over the limit of {MAX_NOTEBOOK_BYTES >> 20} MB"
        return sub
    try:
        sub.text = path.read_bytes().decode("utf-8")
        answers.code_cells(sub.text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        sub.text, sub.problem = None, f"not a notebook that can be read ({type(error).__name__})"
    return sub


def shard(subs: list[Submission], index: int, count: int) -> list[Submission]:
    """The share of shard `index` (0-based) of `count`: every count-th student, in name order."""
    students = sorted({s.student for s in subs})
    mine = set(students[index::count])
    return [s for s in subs if s.student in mine]


def notebook_seed(seed: int, sub: Submission) -> int:
    """The seed of one notebook's cases: the grading's seed and the notebook, whatever the order or the shard."""
    digest = hashlib.sha256(f"{seed}\0{sub.student}\0{sub.notebook}".encode()).digest()
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
        course: the course folder whose `solutions/` the answers are compared with.
        progress: show a progress bar.
        log: function of a line, told what happens before grading starts (default: nothing).

    Returns:
        a Grading: the rows (see `mha.course.report`), warnings, the seed, the isolation, seconds per notebook.
    """
    limits = limits or Limits()
    problems = limits.problems()
    if problems:
        raise ValueError("; ".join(problems))
    log = log or (lambda line: None)
    jobs = max(1, jobs or os.cpu_count() or 1)
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    mode = sandbox.detect(isolation)
    log(sandbox.describe(mode))
    subs, warnings = collect(folder)
    subs = shard(subs, *part)
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
    started = time.monotonic()

    def one(index: int, sub: Submission) -> list[dict]:
        uid = free.get()
        began, timing = time.monotonic(), {}
        try:
            workdir = scratch / f"{index}"
            return grade_notebook(sub, limits, mode, uid, notebook_seed(seed, sub), workdir, course, timing)
        except Exception as error:  # noqa: BLE001 - one notebook the grader could not handle stops nothing else
            failed = Submission(sub.student, sub.notebook, sub.lesson, problem=f"not graded: {type(error).__name__}")
            failed.problem += f" in the grader ({str(error)[:200]})"
            return grade_notebook(failed, limits, mode, uid, 0, scratch / f"{index}-failed", course)
        finally:
            grading.seconds[(sub.student, sub.notebook)] = time.monotonic() - began
            grading.cpu[(sub.student, sub.notebook)] = timing.get("cpu", 0.0)
            free.put(uid)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one, i, sub) for i, sub in enumerate(subs)]
            done = as_completed(futures)
            if progress:
                from tqdm.auto import tqdm

                done = tqdm(done, total=len(futures), desc="grading", unit="notebook")
            for future in done:
                grading.rows.extend(future.result())
    finally:
        _remove(scratch)
        if users:
            users.release()
    grading.wall = time.monotonic() - started
    grading.rows = report.mark_same_answers(sorted(grading.rows, key=report.order))
    return grading


def _remove(path: Path) -> None:
    def unlock(function, name, excinfo):
        try:
            os.chmod(Path(name).parent, 0o700)
            os.chmod(name, 0o700)
            function(name)
        except OSError:
            pass

    shutil.rmtree(path, onerror=unlock)


def grade_notebook(
    sub: Submission,
    limits: Limits,
    mode: str,
    uid: int | None,
    seed: int,
    workdir: Path,
    course: Path = ROOT,
    timing: dict | None = None,
) -> list[dict]:
    """The rows of one notebook: run it sealed off, ask for its answers, judge them here.

    `timing`, if given, receives "cpu": the CPU seconds its processes used.
    """
    exercises = judging.lesson_exercises(sub.lesson) if sub.lesson else []
    base = {"student": sub.student, "notebook": sub.notebook, "lesson": sub.lesson}
    if sub.problem:
        if not exercises:
            return [{**base, "exercise": "", "passed": False, "note": sub.problem, "run": ""}]
        return [{**base, "exercise": e.name, "passed": False, "note": sub.problem, "run": ""} for e in exercises]
    cells = answers.code_cells(sub.text)
    theirs = answers.course_answers(course, sub.lesson)
    rows = {}
    for e in exercises:
        digest = answers.digest(answers.answer_cell(cells, e.function))
        solution, stub = (theirs or {}).get(e.function, ("", ""))
        flags = ["same as the course's solution"] if digest and digest == solution else []
        answer = "" if not digest or digest == stub else digest
        rows[e.name] = {**base, "exercise": e.name, "passed": False, "note": "", "run": "", "flags": flags}
        rows[e.name]["answer"] = answer
    if answers.is_solutions_notebook(cells, [e.function for e in exercises], theirs):
        for row in rows.values():
            row.update(note=SOLUTIONS_NOTEBOOK, flags=[SOLUTIONS_NOTEBOOK], answer="")
        return _finish(rows)
    run, results = run_and_ask(sub, exercises, limits, mode, uid, seed, workdir, timing)
    for e in exercises:
        rows[e.name].update(run=run, **{k: v for k, v in results[e.name].items() if k != "flags"})
        rows[e.name]["flags"] += results[e.name].get("flags", [])
    return _finish(rows)


def _finish(rows: dict) -> list[dict]:
    return [{**row, "flags": "; ".join(row["flags"])} for row in rows.values()]


def run_and_ask(sub, exercises, limits, mode, uid, seed, workdir, timing=None) -> tuple[str, dict]:
    """Run the notebook in its sandbox, then judge each exercise; (how the run went, {exercise: result})."""
    workdir.mkdir(mode=0o700)
    (workdir / "submission.ipynb").write_text(sub.text, encoding="utf-8")
    if uid is not None:
        for path in (workdir, workdir / "submission.ipynb"):
            os.chown(path, uid, uid)
    if mode == "none":
        (workdir / ".tmp").mkdir()
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    rlimits = limits.rlimits()
    if uid is None:  # sharing our user: leave room for the processes we already have
        rlimits["RLIMIT_NPROC"] += sandbox.count_tasks(os.getuid())
    argv = sandbox.course_command(mode, "mha.course._runner", "submission.ipynb")
    argv += ["--requests", str(requests_r), "--replies", str(replies_w), "--rlimits", json.dumps(rlimits)]
    if mode == "bwrap" and uid is not None:
        argv += ["--uid", str(uid)]
    extra_env = {k: v for k, v in os.environ.items() if k == "MHA_CHECK_TIME_LIMIT"}
    process = sandbox.Process(mode, workdir, argv, limits, uid, (requests_r, replies_w), extra_env)
    results = {}
    try:
        process.start()
        os.close(requests_r)
        os.close(replies_w)
        requests_r = replies_w = -1
        os.set_blocking(requests_w, False)
        run, ended = _await_cells(process, replies_r, limits)
        for e in exercises:
            if ended:
                results[e.name] = {"note": f"not graded: {ended}"}
                continue
            results[e.name], ended = _ask(process, e, seed, requests_w, replies_r, sub.lesson)
    finally:
        if timing is not None:
            timing["cpu"] = process.cpu_seconds()
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


def _ask(process, exercise, seed: int, requests: int, replies: int, lesson: str) -> tuple[dict, str]:
    """Judge one exercise: send its cases, receive the outcomes, judge them here; (result, why no more can be asked)."""
    drawn = judging.cases(exercise, seed)
    if not drawn:
        return {"note": "this exercise's check cannot yet be run by the grader (it has no cases to send)"}, ""
    allowed = judging.time_allowed(exercise, len(drawn))
    deadline = time.monotonic() + allowed
    request = {"op": "call", "lesson": lesson, "exercise": exercise.name}
    request["cases"] = [judging.case_to_plain(c) for c in drawn]
    try:
        wire.send(requests, request, deadline=deadline, spec_of=judging.spec_of)
        reply = wire.receive(replies, deadline=deadline)
    except wire.TooLate:
        ended = f"`{exercise.function}` ran past {allowed:g} s and the notebook's process was stopped"
        return {"note": f"`{exercise.function}` did not answer within {allowed:g} s"}, ended
    except wire.Closed:
        ended = f"the notebook's process ended while answering exercise '{exercise.name}'{_how_it_ended(process)}"
        return {"note": ended}, ended
    except wire.WireError as error:
        return {"note": f"the answer could not be read ({error})"}, "its process broke the protocol"
    return _judge(exercise, drawn, reply, seed, lesson), ""


def _judge(exercise, drawn: list, reply, seed: int, lesson: str) -> dict:
    """The result of one exercise from the notebook's reply: judged here, with the check's own verdict."""
    name = f"`{exercise.function}`"
    if not isinstance(reply, dict):
        return {"note": "the answer could not be read (not a reply)"}
    if reply.get("missing") is True:
        if reply.get("why") == "no such exercise":
            return {"note": "the notebook's process could not find this exercise's check"}
        kind = reply.get("type")
        if isinstance(kind, str):
            return {"note": f"{name} is a {kind[:40]}, not a function"}
        return {"note": f"{name} is not defined in the notebook"}
    flags = []
    origin = reply.get("origin")
    if isinstance(origin, str):
        flags.append(f"is the course's own code ({origin[:80]})")
        note = f"{name} is the course's own code ({origin[:80]}); the check is for the function you write yourself"
        return {"note": note, "flags": flags}
    calls = reply.get("calls") if isinstance(reply.get("calls"), list) else []
    references = judging.reference_names(lesson)
    course_calls = sorted({c for c in calls if isinstance(c, str) and c.rsplit(".", 1)[-1] in references})
    if course_calls:
        flags.append("calls the course's own " + ", ".join(c[:80] for c in course_calls[:3]))
    outcomes = reply.get("outcomes")
    if not isinstance(outcomes, list) or not outcomes or len(outcomes) > len(drawn):
        return {"note": "the answer could not be read (no outcomes)", "flags": flags}
    clean = [_outcome(o) for o in outcomes]
    if any(o is None for o in clean):
        return {"note": "the answer could not be read (a malformed outcome)", "flags": flags}
    try:
        message = judging.verdict(exercise, drawn[: len(clean)], clean, seed)
    except Exception as error:  # noqa: BLE001 - an answer the judge cannot take is a failed answer, not a stop
        message = f"the answer could not be judged ({type(error).__name__}: {str(error)[:200]})"
    if message is None and len(clean) < len(drawn):
        message = f"{name} answered {len(clean)} of {len(drawn)} cases"
    return {"passed": message is None, "note": message or "", "flags": flags}


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
    if "MemoryError" in errors or "can't allocate memory" in errors or "not enough memory" in errors:
        notes.append(f"memory limit ({limits.memory_mb} MB) reached")
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
        lines.append(
            f"{len(timed)} notebooks in {grading.wall:.1f} s with {grading.jobs} at once "
            f"({sum(timed) / len(timed):.1f} s per notebook on average, {timed[-1]:.1f} s at most; "
            f"{sum(grading.cpu.values()):.1f} CPU seconds in the notebooks' processes); "
            f"seed {grading.seed} (`--seed {grading.seed}` draws the same cases again)"
        )
    lines.append(sandbox.describe(grading.isolation))
    return "\n".join(lines)


def feedback_files(rows: list[dict]) -> dict[str, str]:
    """One short text per student (file name -> text): each exercise's result and the check's message."""
    out = {}
    for student in sorted({r["student"] for r in rows}):
        safe = re.sub(r"[/\\\0]", "_", student).lstrip(".") or "student"
        out[f"{safe}.txt"] = report.feedback(student, rows)
    return out
