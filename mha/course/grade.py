"""Grade a folder of submitted exercise notebooks.

    python -m mha.course grade SUBMISSIONS [--csv grades.csv] [--timeout 120]

SUBMISSIONS holds one sub-folder per student, each with any of the exercise notebooks (`01_*.ipynb`, ...). Every
notebook is run from top to bottom in a fresh kernel, in its own process with a time limit, so that a notebook that
crashes or never ends costs only itself. The exercise checks record what passes (see `mha.checks`); an exercise
whose check never ran (a crash before it, a time-out) counts as not passed. The CSV has one row per student, lesson
and exercise: `student, notebook, lesson, exercise, passed, note`, the note saying why an exercise did not pass
(the check's message, or how the notebook ended before its check ran). Copies named `NN_name.fresh.ipynb`, which
`make exercises` may leave beside a student's work, are not graded.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from ..checks import exercise_names, lessons, load_all


def run_notebook(path: Path, timeout: float) -> tuple[list[dict], str]:
    """Run one notebook in a separate process; return the check results it recorded and a note on how it ended."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "checks.jsonl"
        env = dict(os.environ, MHA_GRADE_LOG=str(log), MPLBACKEND="Agg")
        cmd = [sys.executable, "-m", "mha.course", "grade", "--run-one", str(path.resolve())]
        # A session of its own, so that on a time-out the kernel it started is killed with it.
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
            note = "ran to the end" if proc.returncode == 0 else f"crashed ({_last_line(output)})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            note = f"was stopped after {timeout:g} s (time limit)"
        results = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return results, note


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _execute(path: Path) -> int:
    """Run every cell, going on after errors (a failed check must not hide the next exercise)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", allow_errors=True, timeout=None, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    print(f"ran to the end; {len(errors)} cell(s) raised an error" + (f", first {errors[0].ename}" if errors else ""))
    return 0


def grade(folder: Path, timeout: float = 120.0, progress: bool = True) -> list[dict]:
    """Rows (student, lesson, exercise, passed, note) for every student folder and every exercise of each lesson."""
    load_all()
    students = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"{folder} has no sub-folders: expected one folder per student")
    # `make exercises` may leave NN_name.fresh.ipynb beside a student's notebook: a copy of ours, not their work
    jobs = [(s, nb) for s in students for nb in sorted(s.glob("[0-9][0-9]_*.ipynb")) if ".fresh." not in nb.name]
    for student in students:
        lessons = [nb.name[:2] for s, nb in jobs if s == student]
        for lesson in sorted({x for x in lessons if lessons.count(x) > 1}):
            print(
                f"warning: {student.name} handed in {lessons.count(lesson)} notebooks for lesson {lesson}; "
                f"each is graded on its own rows",
                file=sys.stderr,
            )
    rows = []
    for student, notebook in tqdm(jobs, desc="grading", unit="notebook", disable=not progress):
        lesson = notebook.name[:2]
        results, note = run_notebook(notebook, timeout)
        passed, messages = defaultdict(bool), {}
        for r in results:
            if r["lesson"] != lesson:
                continue
            passed[r["exercise"]] = passed[r["exercise"]] or r["passed"]
            if not r["passed"]:
                messages[r["exercise"]] = r.get("message", "")
        for exercise in exercise_names(lesson) or sorted(passed):
            if passed[exercise]:
                why = ""
            elif exercise in messages:
                why = messages[exercise]
            else:
                why = f"check never ran; the notebook {note}"
            rows.append(
                {
                    "student": student.name,
                    "notebook": notebook.name,
                    "lesson": lesson,
                    "exercise": exercise,
                    "passed": passed[exercise],
                    "note": why,
                }
            )
    return rows


def summary(rows: list[dict]) -> str:
    """Exercises passed per student and lesson; per exercise, how many students passed and the commonest failure."""
    by_student, by_exercise = defaultdict(lambda: defaultdict(list)), defaultdict(dict)
    students = sorted({r["student"] for r in rows})
    for r in rows:
        by_student[r["student"]][r["lesson"]].append(r["passed"])
        best = by_exercise[(r["lesson"], r["exercise"])].get(r["student"])
        if best is None or r["passed"]:
            by_exercise[(r["lesson"], r["exercise"])][r["student"]] = r
    lines = ["student               " + "  ".join(f"lesson {lesson}" for lesson in lessons())]
    for student in students:
        cells = []
        for lesson in lessons():
            marks = by_student[student].get(lesson)
            cells.append(f"{sum(marks):>3}/{len(marks):<5}" if marks else f"{'-':>3}{'':6}")
        lines.append(f"{student:<22}" + " ".join(cells))
    lines.append("")
    lines.append(f"exercise                        passed (of {len(students)} students)   commonest reason it did not")
    for (lesson, exercise), per_student in sorted(by_exercise.items()):
        passed = sum(r["passed"] for r in per_student.values())
        reasons = Counter(r["note"] for r in per_student.values() if not r["passed"] and r["note"])
        commonest = f"{reasons.most_common(1)[0][0][:70]} ({reasons.most_common(1)[0][1]})" if reasons else ""
        lines.append(f"{lesson} {exercise:<28} {passed:>4}   {commonest}")
    return "\n".join(lines)
