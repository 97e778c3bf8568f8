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


def marks(gradings: list[tuple[str, list[dict]]], lessons: list[str] | None = None) -> list[dict]:
    """One row per student: each lesson's mark, the grading it came from, and the exercises' mark.

    Args:
        gradings: (name, rows) of each grading's CSV, earliest first; a later one replaces, for each student and
            lesson it graded, what the earlier ones said.
        lessons: the lessons the module grades (default: every lesson any grading holds).
    """
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
    return [(path.name, report.from_csv(path.read_text(encoding="utf-8-sig"), str(path))) for path in paths]


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
