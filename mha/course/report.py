"""What a grading produces, as text: the CSV, the summary for the instructor, one feedback file per student, merges.

The CSV has one row per student, notebook and exercise:

    student, notebook, lesson, exercise, passed, note, run, flags, answer

`note` says why an exercise did not pass (the check's own message); `run` how the notebook's run went (and every
limit it hit); `flags` what the instructor may want to look at (an answer that is the course's own code or calls
it, an answer identical to the course's solution or to another student's); `answer` a short hash of the answer
cell, so that identical answers can be found again when shards are merged. Text cells never start with a character
a spreadsheet reads as a formula (`= + - @`, tab, carriage return): such a cell gets a leading `'`.
"""

import csv
import io
import re
from collections import Counter, defaultdict

COLUMNS = ["student", "notebook", "lesson", "exercise", "passed", "note", "run", "flags", "answer"]
SAME_AS = "same answer as "
ONE_OF = "was graded as the last saved of "  # how `run` starts when a student handed in several for one lesson
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and their full-width forms
# control characters (C0 but the line break, DEL, C1), line and paragraph separators, the marks that reorder text
# (bidirectional controls), and lone surrogates (text that is not Unicode: a file name's undecodable byte)
_UNSAFE = "\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_LINES = re.compile(f"[{_UNSAFE}]")
_UNSAFE_ONE_LINE = re.compile(f"[\n{_UNSAFE}]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte Python could not decode (a file name): shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text, lines: bool = False) -> str:
    """Text fit for a file or a terminal, whoever wrote it: every control character, and whatever UTF-8 cannot
    encode, written as a visible escape (`\\x1b`, `\\xff` for an undecodable byte of a file name).

    Args:
        text: any text (None is "").
        lines: keep line breaks (default False: they are escaped too, `\\x0a`, so that the text stays on one line).
    """
    if text is None:
        return ""
    return (_UNSAFE_LINES if lines else _UNSAFE_ONE_LINE).sub(_escape, str(text))


def safe_row(row: dict) -> dict:
    """A row whose every text is safe (names on one line; notes may keep their line breaks)."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, str):
            out[key] = safe(value, lines=key in ("note", "run"))
    return out


def cell(text) -> str:
    """A CSV cell that no spreadsheet runs as a formula, on one line, safe (see `safe`)."""
    text = " ".join(line.strip() for line in safe(text, lines=True).splitlines() if line.strip())
    return "'" + text if text.startswith(_FORMULA) else text


def to_csv(rows: list[dict]) -> str:
    """The CSV text (UTF-8 with a byte-order mark when written, so that spreadsheets read names correctly)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: cell(row.get(key, "")) if key != "passed" else bool(row["passed"]) for key in COLUMNS})
    return out.getvalue()


def from_csv(text: str, where: str = "the CSV") -> list[dict]:
    """Rows of a CSV this grader wrote; ValueError naming `where` if it is not one."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    if reader.fieldnames != COLUMNS:
        raise ValueError(f"{where} is not a grades CSV: its columns are {reader.fieldnames}, expected {COLUMNS}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if None in row or row["passed"] not in ("True", "False"):
            raise ValueError(f"{where}, line {number}: not a row this grader wrote")
        rows.append({**row, "passed": row["passed"] == "True"})
    return rows


def mark_same_answers(rows: list[dict]) -> list[dict]:
    """Flag answers identical between students (same lesson and exercise), recomputed over all `rows`."""
    groups = defaultdict(set)
    for r in rows:
        if r.get("answer") and "course's solution" not in r.get("flags", ""):
            groups[(r["lesson"], r["exercise"], r["answer"])].add(r["student"])
    out = []
    for r in rows:
        flags = [f for f in r.get("flags", "").split("; ") if f and not f.startswith(SAME_AS)]
        others = sorted(groups.get((r["lesson"], r["exercise"], r.get("answer")), set()) - {r["student"]})
        if r.get("answer") and others and "course's solution" not in r.get("flags", ""):
            flags.append(SAME_AS + ", ".join(others))
        out.append({**r, "flags": "; ".join(flags)})
    return out


def merge(parts: list[tuple[str, str]]) -> list[dict]:
    """Join the CSVs of several shards (name, text): every row once, in order, identical answers flagged again."""
    rows, seen = [], {}
    for name, text in parts:
        for r in from_csv(text, name):
            key = (r["student"], r["notebook"], r["exercise"])
            if key in seen:
                raise ValueError(
                    f"{r['student']} {r['notebook']} {r['exercise']} is graded in both {seen[key]} and {name}: "
                    f"merge the shards of one grading, each once"
                )
            seen[key] = name
            rows.append(r)
    return mark_same_answers(sorted(rows, key=order))


def order(row: dict):
    """Rows sorted by student, notebook, then the exercise's place in its lesson."""
    from .judging import exercise_names

    names = exercise_names(row["lesson"])
    place = names.index(row["exercise"]) if row["exercise"] in names else len(names)
    return (row["student"], row["notebook"], place, row["exercise"])


def summary(rows: list[dict], lessons: list[str]) -> str:
    """Exercises passed per student and lesson; per exercise, how many passed and the commonest reason not; flags."""
    students = sorted({r["student"] for r in rows})
    by_student = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["exercise"]:
            best = by_student[r["student"]][r["lesson"]]
            best[r["exercise"]] = best.get(r["exercise"], False) or r["passed"]
    width = max([len(safe(s)) for s in students] + [7]) + 2
    lines = ["student".ljust(width) + "  ".join(f"lesson {lesson}" for lesson in lessons)]
    for student in students:
        marks = []
        for lesson in lessons:
            got = by_student[student].get(lesson)
            marks.append(f"{sum(got.values()):>3}/{len(got):<5}" if got else f"{'-':>3}{'':6}")
        lines.append(safe(student).ljust(width) + " ".join(marks))
    lines += ["", f"exercise                        passed (of {len(students)} students)   commonest reason it did not"]
    per_exercise = defaultdict(dict)
    for r in rows:
        if r["exercise"]:
            seen = per_exercise[(r["lesson"], r["exercise"])].get(r["student"])
            if seen is None or r["passed"]:
                per_exercise[(r["lesson"], r["exercise"])][r["student"]] = r
    ranked = sorted(per_exercise.items(), key=lambda item: (item[0][0], order(next(iter(item[1].values())))[2]))
    for (lesson, exercise), by in ranked:
        passed = sum(r["passed"] for r in by.values())
        reasons = Counter(_reason(r["note"]) for r in by.values() if not r["passed"])
        reasons.pop("", None)
        common = f"{safe(reasons.most_common(1)[0][0])[:70]} ({reasons.most_common(1)[0][1]})" if reasons else ""
        lines.append(f"{safe(lesson)} {safe(exercise):<28} {passed:>4}   {common}")
    flagged = [r for r in rows if r.get("flags")]
    if flagged:
        lines += ["", "for the instructor to look at:"]
        lines += [f"  {_where(r)} · {safe(r['exercise']) or '-'}: {safe(r['flags'])}" for r in flagged]
    noted = {f"  {_where(r)}: {safe(r['run'].split(';')[0])}" for r in rows if r.get("run", "").startswith(ONE_OF)}
    if noted:
        lines += ["", "several notebooks for one lesson (one is graded):", *sorted(noted)]
    missing = [r for r in rows if not r["exercise"]]
    if missing:
        lines += ["", "not graded:"]
        lines += [f"  {_where(r)}: {safe(r['note'])}" for r in missing]
    return "\n".join(lines)


def _where(row: dict) -> str:
    return safe(row["student"]) + (" · " + safe(row["notebook"]) if row.get("notebook") else "")


def _reason(note: str) -> str:
    """A failure's reason without the case it failed on, so that the same mistake on other inputs counts once."""
    first = note.split("  (")[0].strip()
    head, sep, rest = first.partition(": ")
    return rest if sep and any(mark in head for mark in ("(", "float", "int", "bool")) else first


def feedback(student: str, rows: list[dict]) -> str:
    """A short text for one student: each exercise's result and the check's message, notebook by notebook."""
    mine = [safe_row(r) for r in rows if r["student"] == student]
    lines = [f"Feedback for {safe(student)}", ""]
    for notebook in sorted({r["notebook"] for r in mine}):
        graded = [r for r in mine if r["notebook"] == notebook]
        if not notebook:
            lines += [graded[0]["note"], ""]
            continue
        passed = sum(r["passed"] for r in graded if r["exercise"])
        total = sum(1 for r in graded if r["exercise"])
        if not total:
            lines += [f"{notebook}: {graded[0]['note']}", ""]
            continue
        lines.append(f"{notebook}: {passed} of {total} exercises pass")
        if graded[0]["run"]:
            lines.append(f"  (your notebook {graded[0]['run']})")
        for r in graded:
            if r["exercise"]:
                verdict = "✓" if r["passed"] else "✗"
                lines.append(f"  {verdict} {r['exercise']}" + ("" if r["passed"] else f": {r['note']}"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
