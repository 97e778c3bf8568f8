"""No command replaces a file it did not write: one rule (`mha._provenance.writable`), followed by every command.

A results path that exists and is not a results file of ours (judged by its content), a notebook, or a path inside
the package or the course's own folders is refused before any work starts, naming it; the file is left as it was.
"""

import importlib
import json
from pathlib import Path

import pytest

import mha
from mha._provenance import csv_with_header, is_results, protected, stamp, writable, write_results
from mha.course import report
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
GRADES = "student,notebook,lesson,exercise,passed,note,run,flags,answer\nada,01_a.ipynb,01,scores,True,,,,abc\n"

# Every command that writes a results file, with what it needs besides the path. The work is replaced by a failure:
# a refused path must stop the command before it.
COMMANDS = {
    "toy tunnel-vision": ("mha.toy.__main__", ["tunnel-vision", "--steps", "1", "--seeds", "0"], "--json"),
    "toy heads": ("mha.toy.__main__", ["heads", "--steps", "1"], "--json"),
    "toy positions": ("mha.toy.__main__", ["positions", "--steps", "1", "--seeds", "0"], "--json"),
    "pretrained": ("mha.pretrained.__main__", [], "--json"),
    "pretrained heads": ("mha.pretrained.__main__", ["heads"], "--json"),
    "pretrained kv-pooling": ("mha.pretrained.__main__", ["kv-pooling"], "--json"),
    "pretrained positions": ("mha.pretrained.__main__", ["positions"], "--json"),
    "bench --json": ("mha.bench.__main__", ["--quick", "--no-progress"], "--json"),
    "bench --csv": ("mha.bench.__main__", ["--quick", "--no-progress"], "--csv"),
    "decoding cache-sizes": ("mha.decoding.__main__", ["cache-sizes"], "--json"),
    "decoding sharing": ("mha.decoding.__main__", ["sharing", "--seeds", "0"], "--json"),
    "parallel measure": ("mha.parallel.__main__", ["measure", "--quick", "--world", "1"], "--json"),
}
WORK = {
    "toy": ("run", "run_all"),
    "pretrained": ("load",),
    "bench": ("prepare",),
    "decoding": ("cache_table", "run_all"),
    "parallel": ("measure",),
}


def _stop_the_work(module, monkeypatch):
    wing = module.__name__.split(".")[1]
    owners = [module, *(getattr(module, n) for n in dir(module) if type(getattr(module, n)).__name__ == "module")]
    for owner in owners:
        for name in WORK[wing]:
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, lambda *a, **k: pytest.fail("the work started"))


def _refused(command, path, monkeypatch, capsys) -> str:
    module_name, argv, option = COMMANDS[command]
    module = importlib.import_module(module_name)
    _stop_the_work(module, monkeypatch)
    with pytest.raises(SystemExit) as stop:
        module.main([*argv, option, str(path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    return err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_to_replace_a_file_it_did_not_write(command, tmp_path, monkeypatch, capsys):
    for name, content in (("notes.txt", "my notes\n"), ("data.json", '{"my": "data"}\n'), ("mine.csv", "a,b\n")):
        path = tmp_path / name
        path.write_text(content)
        err = _refused(command, path, monkeypatch, capsys)
        assert name in err and "may hold someone's work" in err
        assert path.read_text() == content


@pytest.mark.parametrize("command", ["toy heads", "bench --json", "decoding cache-sizes", "parallel measure"])
def test_a_notebook_and_the_package_are_refused_whatever_they_hold(command, tmp_path, monkeypatch, capsys):
    lesson = tmp_path / "lesson.ipynb"
    lesson.write_text(NOTEBOOK)
    assert "is a notebook" in _refused(command, lesson, monkeypatch, capsys)
    assert lesson.read_text() == NOTEBOOK
    assert "is a notebook" in _refused(command, tmp_path / "new.ipynb", monkeypatch, capsys)
    assert not (tmp_path / "new.ipynb").exists()
    inside = Path(mha.__file__).parent / "attention.py"
    before = inside.read_bytes()
    assert "inside the course's package" in _refused(command, inside, monkeypatch, capsys)
    assert inside.read_bytes() == before


def test_the_rule_judges_a_file_by_its_content(tmp_path):
    ours = write_results(tmp_path / "runs.json", stamp("python -m mha.toy heads"), {"runs": []})
    assert is_results(ours.read_text())
    assert writable(ours) == ours  # a results file of ours may be replaced: re-running a command updates it
    fake = tmp_path / "fake.json"
    fake.write_text('{"provenance": "a string, not where the file came from"}')
    for path in (fake, tmp_path / "binary.json"):
        if path.name == "binary.json":
            path.write_bytes(bytes(range(256)))
        with pytest.raises(ValueError, match=f"{path.name} exists and is not a results file of the course"):
            writable(path)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="the file name is empty"):
            writable(empty)
    grades = tmp_path / "grades.csv"
    grades.write_text("\ufeff" + GRADES)  # the grader writes a byte-order mark
    assert writable(grades, csv_with_header(report.COLUMNS))
    with pytest.raises(ValueError, match="is not a grades CSV"):
        writable(tmp_path / "fake.json", csv_with_header(report.COLUMNS), "a grades CSV")


def test_the_course_folders_are_refused_but_its_recorded_results_are_not():
    for inside in ("exercises/x.json", "solutions/x.json", "notebooks/x.json", "tests/x.json", "mha/x.json"):
        assert protected(ROOT / inside), inside
    assert protected(ROOT / "notebooks" / "results" / "x.json") is None  # where the lessons' results are recorded
    assert protected(ROOT / "runs.json") is None  # the README's commands write beside it
    assert protected(ROOT.parent / "anywhere.json") is None


def test_a_copy_of_the_course_is_protected_like_the_checkout(tmp_path):
    (tmp_path / "course" / "mha").mkdir(parents=True)
    (tmp_path / "course" / "mha" / "__init__.py").write_text("")
    (tmp_path / "course" / "notebooks").mkdir()  # a student's copy pulled from the release
    assert protected(tmp_path / "course" / "exercises" / "01.json")
    assert protected(tmp_path / "course" / "notebooks" / "results" / "x.json") is None


def _grades_and_feedback(tmp_path):
    shard = tmp_path / "shard.csv"
    shard.write_text(GRADES)
    instructor = tmp_path / "feedback"
    instructor.mkdir()
    (instructor / "ada.txt").write_text("my own notes on ada\n")
    return shard, instructor


def test_feedback_never_replaces_a_file_the_grader_did_not_write(tmp_path, capsys):
    shard, instructor = _grades_and_feedback(tmp_path)
    out = tmp_path / "merged.csv"
    assert_refused = "which the grader did not write"
    with pytest.raises(SystemExit) as stop:
        course(["grade", "merge", str(shard), "--csv", str(out), "--feedback", str(instructor)])
    assert stop.value.code == 2 and assert_refused in capsys.readouterr().err
    assert (instructor / "ada.txt").read_text() == "my own notes on ada\n" and not out.exists()
    (tmp_path / "ada").mkdir()
    with pytest.raises(SystemExit) as stop:  # grading itself: refused before any notebook runs
        course(["grade", str(tmp_path / "ada"), "--feedback", str(instructor)])
    assert stop.value.code == 2 and assert_refused in capsys.readouterr().err
    (instructor / "ada.txt").unlink()
    assert course(["grade", "merge", str(shard), "--csv", str(out), "--feedback", str(instructor)]) == 0
    assert (instructor / "ada.txt").read_text().startswith("Feedback for ada")
    # the grader's own files are replaced by the next run, as are its CSVs
    assert course(["grade", "merge", str(shard), "--csv", str(out), "--feedback", str(instructor)]) == 0


@pytest.mark.parametrize("argv", [["grade", "merge", "{shard}"], ["grade", "{folder}"]])
def test_a_grades_csv_never_replaces_someone_elses_file(argv, tmp_path, capsys):
    shard, _ = _grades_and_feedback(tmp_path)
    (tmp_path / "class" / "ada").mkdir(parents=True)
    mine = tmp_path / "mine.csv"
    mine.write_text("name,mark\nada,18\n")
    argv = [a.format(shard=shard, folder=tmp_path / "class") for a in argv]
    with pytest.raises(SystemExit) as stop:
        course([*argv, "--csv", str(mine)])
    assert stop.value.code == 2 and "mine.csv exists and is not a grades CSV" in capsys.readouterr().err
    assert mine.read_text() == "name,mark\nada,18\n"


def test_grading_the_course_folder_itself_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        course(["grade", str(ROOT), "--csv", "/dev/null/never.csv"])
    assert stop.value.code == 2 and "is the course's own folder" in capsys.readouterr().err
