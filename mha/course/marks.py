"""Marks from gradings: `python -m mha.course marks grades.csv [later.csv ...] --csv marks.csv`.

Each exercise weighs its importance (the stars of its header, ★★★★ = 4); a lesson's mark is the weight of the
exercises passed over the weight of all its exercises, out of 100; the exercises' mark is the mean over the lessons
(a lesson a student handed nothing in for counts 0). A later grading replaces an earlier one lesson by lesson, for the
students it graded: a regrade with a longer `--timeout`, a resubmission, late work; every mark says which grading it
came from, so that a late one can be marked down by your policy. The weights come with the package
(`mha/course/fingerprints.json`, written from the solutions' headers), so this runs wherever the grader runs.
"""

from pathlib import Path

from . import answers, judging, report


def weights(lesson: str) -> dict[str, int]:
    """exercise name (the CSV's `exercise`) -> its weight, its importance in stars."""
    headers = answers.shipped_headers(lesson)
    out = {}
    for exercise in judging.lesson_exercises(lesson):
        header = headers.get(exercise.function)
        if header is None:
            raise ValueError(f"lesson {lesson}: no weight for {exercise.name}: run `make exercises` in the course")
        out[exercise.name] = header["importance"]
    return out


def left_out(exercises: list[str]) -> dict[str, set[str]]:
    """lesson -> names of the exercises a module leaves out, from their numbers as the guide writes them ("10.5");
    ValueError naming what is not one."""
    out: dict[str, set[str]] = {}
    for number in exercises:
        lesson, _, index = number.partition(".")
        if not (len(lesson) == 2 and lesson.isdigit() and index.isdigit()):
            raise ValueError(f"expected an exercise's number like 10.5 (lesson, dot, exercise); got {number!r}")
        names = judging.exercise_names(lesson) if lesson in judging.lessons() else []
        if not 1 <= int(index) <= len(names):
            has = f"has exercises {lesson}.1 to {lesson}.{len(names)}" if names else "is not a lesson with exercises"
            raise ValueError(f"{number}: lesson {lesson} {has}")
        out.setdefault(lesson, set()).add(names[int(index) - 1])
    return out


def marks(
    gradings: list[tuple[str, list[dict]]], lessons: list[str] | None = None, leave_out: list[str] = ()
) -> list[dict]:
    """One row per student: each lesson's mark, the grading it came from, and the exercises' mark.

    Args:
        gradings: (name, rows) of each grading's CSV, earliest first; a later one replaces, for each student and
            lesson it graded, what the earlier ones said.
        lessons: the lessons the module grades (default: every lesson any grading holds).
        leave_out: exercises the module does not grade, by number ("10.5": one that needs a Linux machine, in a class
            of laptops); the lesson's mark is then over the weight of the others.
    """
    dropped = left_out(list(leave_out))
    latest: dict[tuple[str, str], tuple[str, list[dict]]] = {}
    for name, rows in gradings:
        by: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            if row["lesson"] and row["exercise"]:
                by.setdefault((row["student"], row["lesson"]), []).append(row)
            else:
                latest.setdefault((row["student"], ""), (name, []))  # a student folder with nothing to grade
        latest.update({key: (name, graded) for key, graded in by.items()})
    lessons = lessons or sorted({lesson for _, lesson in latest if lesson})
    table = {lesson: weights(lesson) for lesson in lessons}
    for lesson, names in dropped.items():
        if lesson in table:
            table[lesson] = {e: w for e, w in table[lesson].items() if e not in names}
    out = []
    for student in sorted({student for student, _ in latest}):
        row = {"student": student}
        for lesson in lessons:
            source, graded = latest.get((student, lesson), ("", []))
            passed = {r["exercise"] for r in graded if r["passed"] in (True, "True", "true", "1")}
            total = sum(table[lesson].values())
            row[lesson] = round(100 * sum(w for e, w in table[lesson].items() if e in passed) / total, 1)
            row[f"{lesson} from"] = source or "nothing handed in"
        row["exercises"] = round(sum(row[lesson] for lesson in lessons) / len(lessons), 1) if lessons else 0.0
        out.append(row)
    return out


def read(paths: list[Path]) -> list[tuple[str, list[dict]]]:
    """Each grades CSV's name and rows; ValueError naming the file that is not one."""
    names = [path.name for path in paths]
    if len(set(names)) < len(names):  # two late.csv from two folders: told apart by the path as given
        names = [str(path) for path in paths]
    found = []
    for name, path in zip(names, paths, strict=True):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not a grades CSV: it is not UTF-8 text (byte {error.start})") from None
        found.append((name, report.from_csv(text, str(path))))
    return found


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: report.cell(str(v)) for k, v in row.items()} for row in rows)
    return out.getvalue()
