"""Grading a class: honest, wrong, untouched, crashing and looping students; the CSV, the summary and the feedback;
the same CSV serially, with --jobs 2 and from two shards merged; bad options refused before any work."""

import os
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from grading import FUNCTIONS, LESSON01, blank, honest, notebook, sandbox_or_skip

from mha.course import grade, report
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ["scores", "masked_softmax", "causal_mask", "padding_mask", "attention", "design_query"]


def _rows(path: Path) -> list[dict]:
    return report.from_csv(path.read_text(encoding="utf-8-sig"), str(path))


def _by(rows):
    return {(r["student"], r["exercise"]): r for r in rows}


@pytest.fixture(scope="module")
def small_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class") / "submissions"
    honest(folder / "ada" / LESSON01)
    honest(folder / "bob" / LESSON01, change=(" / q.shape[-1] ** 0.5", ""))  # forgets the scaling
    (folder / "eve").mkdir()
    shutil.copy(ROOT / "exercises" / LESSON01, folder / "eve" / LESSON01)  # handed in untouched
    honest(folder / "Zoë Ångström" / LESSON01)  # a name with a space and letters beyond ASCII
    blank(folder / "=HYPERLINK(1)" / LESSON01)  # a name a spreadsheet would run as a formula
    (folder / "fay").mkdir()  # nothing handed in
    notebook(folder / "ada" / "99_bonus.ipynb", "x = 1")  # a lesson the course does not have
    # a copy `make exercises` left beside ada's work is ours, not hers: not graded
    shutil.copy(ROOT / "exercises" / LESSON01, folder / "ada" / LESSON01.replace(".ipynb", ".fresh.ipynb"))
    return folder


@pytest.mark.slow
def test_the_same_grades_serially_with_two_jobs_and_from_two_shards(small_class, tmp_path, capsys):
    sandbox_or_skip()
    common = ["--seed", "7", "--timeout", "90"]
    serial, parallel = tmp_path / "serial.csv", tmp_path / "parallel.csv"
    assert course(["grade", str(small_class), "--csv", str(serial), "--jobs", "1", *common]) == 0
    assert course(["grade", str(small_class), "--csv", str(parallel), "--jobs", "2", *common]) == 0
    shards = [tmp_path / f"shard{k}.csv" for k in range(2)]
    for k, out in enumerate(shards):
        assert course(["grade", str(small_class), "--csv", str(out), "--shard", f"{k}/2", "--jobs", "2", *common]) == 0
    assert all(_rows(out) for out in shards), "each shard grades some students"
    merged = tmp_path / "merged.csv"
    assert course(["grade", "merge", *map(str, shards), "--csv", str(merged), "--submissions", str(small_class)]) == 0
    assert parallel.read_text() == serial.read_text()
    assert merged.read_text() == serial.read_text()

    rows = _rows(serial)
    by = _by(rows)
    assert all(by["ada", e]["passed"] and by["Zoë Ångström", e]["passed"] for e in EXERCISES)
    assert not by["bob", "scores"]["passed"] and "you did not scale" in by["bob", "scores"]["note"]
    assert not by["bob", "attention"]["passed"] and by["bob", "masked_softmax"]["passed"]
    assert all("not written yet" in by["eve", e]["note"] for e in EXERCISES)
    assert by["fay", ""]["note"].startswith("no exercise notebook handed in")
    assert ("'=HYPERLINK(1)", "scores") in by, "a name that is a formula is escaped"
    assert {r["notebook"] for r in rows} == {LESSON01, ""}, "neither the fresh copy nor lesson 99 is graded"
    assert len(rows) == 5 * len(EXERCISES) + 1
    assert by["ada", "scores"]["note"] == "" and by["ada", "scores"]["run"] == "ran its 7 code cells"
    assert "99_bonus.ipynb: the course has no lesson 99" in capsys.readouterr().err


def test_the_csv_never_starts_a_cell_with_a_formula():
    rows = [
        {"student": s, "notebook": "01_x.ipynb", "lesson": "01", "exercise": "scores", "passed": False}
        | {"note": s, "run": "", "flags": "", "answer": ""}
        for s in ("=1+1", "+A1", "-2", "@SUM(A1)", "\tx", "\r=1", "＝1", "fine")
    ]
    for row in report.from_csv(report.to_csv(rows)):
        assert row["student"] == row["note"]
        assert not row["student"].lstrip().startswith(("=", "+", "-", "@", "＝")), row["student"]
    assert [r["student"] for r in report.from_csv(report.to_csv(rows))][:3] == ["'=1+1", "'+A1", "'-2"]


@pytest.mark.slow
def test_a_crash_and_a_loop_cost_only_themselves(tmp_path):
    sandbox_or_skip()
    folder = tmp_path / "submissions"
    honest(folder / "cy" / LESSON01, "import os\nos._exit(3)")  # the process dies after defining everything
    honest(folder / "dee" / LESSON01, "while True:\n    pass")  # never ends
    honest(folder / "ada" / LESSON01, "1 / 0")  # a cell that raises: the notebook goes on
    out, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    args = ["grade", str(folder), "--csv", str(out), "--jobs", "2", "--timeout", "40", "--feedback", str(feedback)]
    assert course(args) == 0
    by = _by(_rows(out))
    assert all(by["ada", e]["passed"] for e in EXERCISES)
    assert "ZeroDivisionError in code cell 8" in by["ada", "scores"]["run"]
    assert not any(by["cy", e]["passed"] or by["dee", e]["passed"] for e in EXERCISES)
    assert "ended while running its cells (exit status 3)" in by["cy", "scores"]["run"]
    assert "not graded" in by["cy", "scores"]["note"]
    assert "stopped after 40 s (time limit)" in by["dee", "attention"]["run"]
    text = (feedback / "ada.txt").read_text()
    assert "6 of 6 exercises pass" in text and "✓ scores" in text
    assert "time limit" in (feedback / "dee.txt").read_text()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--timeout", "0"], "timeout must be a positive number"),
        (["--timeout", "nan"], "timeout must be a positive number"),
        (["--memory-mb", "100"], "memory-mb must be at least 512"),
        (["--jobs", "0"], "argument --jobs: expected a whole number of at least 1, got '0'"),
        (["--shard", "2/2"], "--shard takes K/N"),
        (["--shard", "one"], "--shard takes K/N"),
        (["--csv", "/no/such/folder/grades.csv"], "does not exist"),
        (["--seed", "-1"], "argument --seed: expected a seed, a whole number of 0 or more, got '-1'"),
    ],
)
def test_bad_options_are_refused_before_grading(tmp_path, capsys, args, words):
    (tmp_path / "ada").mkdir()
    with pytest.raises(SystemExit) as stop:
        course(["grade", str(tmp_path), *args])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_a_csv_or_feedback_inside_a_students_folder_is_refused(tmp_path, capsys):
    (tmp_path / "ada").mkdir()
    with pytest.raises(SystemExit):
        course(["grade", str(tmp_path), "--csv", str(tmp_path / "ada" / LESSON01)])
    assert "inside a student's folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        course(["grade", str(tmp_path), "--feedback", str(tmp_path / "feedback")])
    assert "taken for a student" in capsys.readouterr().err


def test_a_folder_without_students_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one folder per student"):
        grade.collect(tmp_path)


def test_merge_refuses_the_same_notebook_twice_and_what_is_not_a_grades_csv(tmp_path, capsys):
    row = {"student": "ada", "notebook": LESSON01, "lesson": "01", "exercise": "scores", "passed": True}
    text = report.to_csv([row | {"note": "", "run": "", "flags": "", "answer": ""}])
    (tmp_path / "a.csv").write_text(text)
    (tmp_path / "b.csv").write_text(text)
    (tmp_path / "c.csv").write_text("name,score\nada,3\n")
    a, b, c, out = (str(tmp_path / name) for name in ("a.csv", "b.csv", "c.csv", "m.csv"))
    assert course(["grade", "merge", a, b, "--csv", out]) == 2
    assert "graded in both" in capsys.readouterr().err
    assert course(["grade", "merge", c, "--csv", out]) == 2
    assert "not a grades CSV" in capsys.readouterr().err


def test_identical_answers_between_students_are_flagged_again_when_merged():
    rows = [
        {"student": s, "notebook": LESSON01, "lesson": "01", "exercise": "scores", "passed": True}
        | {"note": "", "run": "", "flags": "", "answer": a}
        for s, a in (("ada", "abc"), ("bob", "abc"), ("cy", "def"), ("dee", ""))
    ]
    halves = [("a", report.to_csv(rows[:1])), ("b", report.to_csv(rows[1:]))]
    flags = {r["student"]: r["flags"] for r in report.merge(halves)}
    assert flags == {"ada": "same answer as bob", "bob": "same answer as ada", "cy": "", "dee": ""}


def test_the_exercise_functions_of_the_test_class_are_lesson_01s():
    from mha.checks import lesson01

    assert [e.function for e in (getattr(lesson01, name) for name in EXERCISES)] == FUNCTIONS


@pytest.mark.slow
def test_without_bubblewrap_the_grades_are_the_same_and_the_grader_says_how_little_is_isolated(tmp_path, capsys):
    folder = tmp_path / "submissions"
    honest(folder / "ada" / LESSON01)
    honest(folder / "bob" / LESSON01, change=(" / q.shape[-1] ** 0.5", ""))
    out = tmp_path / "grades.csv"
    assert course(["grade", str(folder), "--csv", str(out), "--isolation", "none", "--jobs", "2"]) == 0
    by = _by(_rows(out))
    assert all(by["ada", e]["passed"] for e in EXERCISES)
    assert [e for e in EXERCISES if not by["bob", e]["passed"]] == ["scores", "attention"]
    said = capsys.readouterr()
    assert "NO ISOLATION" in said.err and "AS YOU" in said.err and "NO ISOLATION" in said.out


def test_merge_alone_puts_the_exercises_in_notebook_order(tmp_path):
    rows = [
        {"student": "ada", "notebook": LESSON01, "lesson": "01", "exercise": e, "passed": True}
        | {"note": "", "run": "", "flags": "", "answer": ""}
        for e in reversed(EXERCISES)
    ]
    (tmp_path / "shard.csv").write_text(report.to_csv(rows), encoding="utf-8-sig")
    out = tmp_path / "merged.csv"
    merge = ["grade", "merge", str(tmp_path / "shard.csv"), "--csv", str(out)]
    subprocess.run([sys.executable, "-m", "mha.course", *merge], check=True, capture_output=True)  # a fresh process
    assert [r["exercise"] for r in _rows(out)] == EXERCISES


def test_a_broken_notebook_a_link_or_a_huge_file_is_a_note_not_a_stopped_run(tmp_path):
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / LESSON01).write_text("{ this is not JSON")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / LESSON01).symlink_to("/etc/passwd")  # a link: never followed, never read
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / LESSON01).write_bytes(b"\xff\xfe not text")
    (tmp_path / "dee").symlink_to(tmp_path / "ada", target_is_directory=True)
    subs, warnings = grade.collect(tmp_path)
    problems = {s.student: s.problem for s in subs}
    assert problems["ada"].startswith("not a notebook that can be read")
    assert problems["bob"].startswith("not a plain file") and "root:" not in str(subs)
    assert problems["cy"].startswith("not a notebook that can be read")
    assert "a link" in problems["dee"]
    rows = grade.grade_notebook(next(s for s in subs if s.student == "ada"), grade.Limits(), "none", None, 0, tmp_path)
    assert [r["exercise"] for r in rows] == EXERCISES and not any(r["passed"] for r in rows)


def test_a_notebook_the_grader_cannot_handle_stops_nothing_else(tmp_path, monkeypatch):
    sandbox_or_skip()
    blank(tmp_path / "ada" / LESSON01)
    (tmp_path / "bob").mkdir()

    def broken(*args, **kwargs):
        raise RuntimeError("a fault of the grader's")

    monkeypatch.setattr(grade, "run_and_ask", broken)
    rows = grade.grade(tmp_path, jobs=1, progress=False).rows
    notes = {(r["student"], r["exercise"]): r["note"] for r in rows}
    assert notes["ada", "scores"] == "not graded: RuntimeError in the grader (a fault of the grader's)"
    assert notes["bob", ""].startswith("no exercise notebook handed in")


def test_any_text_a_notebook_sends_ends_in_the_csv_the_summary_and_feedback_made_safe(tmp_path):
    nasty = "a lone \udcff surrogate, \x1b[2Jan escape, a\rreturn, a \u202eflip and\nada      6/6"
    rows = [
        {"student": s, "notebook": LESSON01, "lesson": "01", "exercise": "scores", "passed": False}
        | {"note": nasty, "run": nasty, "flags": nasty, "answer": ""}
        for s in ("bob\nada", "\x1b[31mred", "caf\udce9")
    ]
    rows = [report.safe_row(r) for r in rows]
    out = tmp_path / "grades.csv"
    out.write_text(report.to_csv(rows), encoding="utf-8-sig")  # raised UnicodeEncodeError: no CSV at all
    texts = [out.read_text(encoding="utf-8-sig"), report.summary(rows, ["01"])]
    files = grade.feedback_files(rows)
    texts += list(files) + list(files.values())
    for text in texts:
        text.encode("utf-8")
        assert not any(c in text for c in "\x1b\r\u202e"), text
    summary = report.summary(rows, ["01"])
    assert [line for line in summary.splitlines() if line.startswith("ada")] == [], "no fake row"
    assert {r["student"] for r in report.from_csv(texts[0])} == {"bob\\x0aada", "\\x1b[31mred", "caf\\xe9"}


def test_names_that_are_not_text_are_a_row_and_one_notebook_per_lesson_is_graded(tmp_path):
    folder = os.fsencode(tmp_path)
    honest(Path(os.fsdecode(folder + b"/caf\xe9")) / LESSON01)
    notebook(Path(os.fsdecode(folder + b"/ada/01_caf\xe9.ipynb")), "x = 1")
    honest(tmp_path / "bob" / LESSON01)
    os.utime(honest(tmp_path / "bob" / "01_older.ipynb"), (1e9, 1e9))
    newer = honest(tmp_path / "cy" / "01_newer copy.ipynb")
    os.utime(honest(tmp_path / "cy" / LESSON01), (newer.stat().st_mtime - 60,) * 2)
    subs, warnings = grade.collect(tmp_path)
    by = {(report.safe(s.student), s.notebook): s for s in subs}
    assert by["caf\\xe9", ""].problem.startswith("the student folder's name is not valid text")
    assert "name is not valid text" in by["ada", os.fsdecode(b"01_caf\xe9.ipynb")].problem
    assert [s.notebook for s in subs if s.student == "bob"] == [LESSON01], "the last saved"
    assert [s.notebook for s in subs if s.student == "cy"] == ["01_newer copy.ipynb"]
    assert by["bob", LESSON01].others == ["01_older.ipynb"]
    assert any("bob handed in 2 notebooks for lesson 01: graded" in w for w in warnings)


def test_an_answer_larger_than_the_grader_reads_is_refused_before_it_is_read():
    from mha.course import wire

    read, write = os.pipe()
    try:
        os.write(write, b"".join(len(b).to_bytes(8, "big") + b for b in (b'{"arrays": 1}', b'{"array": 0}')))
        os.write(write, (240 << 20).to_bytes(8, "big"))  # 240 MB announced: refused from the length alone
        with pytest.raises(wire.WireError, match="over the limit"):
            wire.receive(read, deadline=time.monotonic() + 5, max_bytes=wire.MAX_REPLY)
    finally:
        os.close(read)
        os.close(write)


def test_the_graders_memory_is_its_own_not_that_of_the_program_that_started_it():
    # Linux carries the high-water mark of a program over exec: a grader started by a large process (a test runner,
    # a notebook) would report that process's peak as its own.
    probe = (
        "import resource; from mha.course.grade import _own_peak_mb; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, _own_peak_mb())"
    )
    ballast = bytearray(b"x") * (600 * 2**20)  # written, so resident
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    inherited, own = map(float, out.split())
    del ballast
    assert inherited > 500, "ru_maxrss did not carry over the exec here: the test would show nothing"
    assert own < 300, f"the grader reports {own:.0f} MB, its parent's memory"


def test_students_whose_names_one_file_system_takes_for_one_get_a_feedback_file_each():
    # letter case (Ada, ada), a slash made an underscore (a/b, a_b), and one letter in two Unicode forms (é): on
    # macOS or Windows, or from a CSV merged from several machines, one student's file would replace the other's
    students = ["Ada", "ada", "a/b", "a_b", "e\u0301", "\u00e9"]
    rows = [dict(student=s, notebook="01_x.ipynb", lesson="01", exercise="e", passed=True, note="", run="",
                 flags="", answer="") for s in students]  # fmt: skip
    files = grade.feedback_files(rows)
    assert len(files) == len(students)
    seen = {unicodedata.normalize("NFC", name).casefold() for name in files}
    assert len(seen) == len(students), sorted(files)
