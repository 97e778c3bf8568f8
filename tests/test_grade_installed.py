"""The grader works the same from a checkout and from an installed package (a JupyterHub image, no solutions/).

The package ships the solutions' fingerprints (`mha/course/fingerprints.json`, hashes only, written by `make
exercises` and checked by `make lint`), so that without `solutions/` the grader still recognises the solutions
notebook handed in, flags an answer identical to the solution, and does not take untouched stubs for identical
answers; `--course DIR` names a course folder; where neither is there, the summary says what was not checked.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading import LESSON01, sandbox_or_skip

from mha.course import answers, cost, grade
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_fingerprints_are_the_solutions_and_a_stale_file_fails_the_lint(tmp_path):
    assert answers.fingerprint_problems(ROOT) == [], "run `make exercises` and commit mha/course/fingerprints.json"
    shipped = json.loads(answers.FINGERPRINTS.read_text())
    assert sorted(shipped) == sorted(p.name[:2] for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    for lesson in shipped:
        assert answers.shipped_answers(lesson) == answers.course_answers(ROOT, lesson)
    text = json.dumps(shipped)
    for path in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"):  # hashes, and names; never a line of a solution
        for cell in nbformat.read(path, as_version=4).cells:
            for line in cell.source.split("\n"):
                if cell.cell_type == "code" and "return" in line and len(line.strip()) > 20:
                    assert line.strip() not in text
    copy = tmp_path / "course"
    shutil.copytree(ROOT / "solutions", copy / "solutions")
    answers.write_fingerprints(copy)
    assert answers.fingerprint_problems(copy) == []
    solution = copy / "solutions" / LESSON01
    solution.write_text(solution.read_text().replace("/ math.sqrt(q.shape[-1])", "/ q.shape[-1] ** 0.5"))
    assert answers.fingerprint_problems(copy) == ["mha/course/fingerprints.json differs from what solutions/ give"]


@pytest.fixture(scope="module")
def lesson01_class(tmp_path_factory):
    """The solutions notebook handed in, two notebooks left untouched, one solved without the markers."""
    folder = tmp_path_factory.mktemp("installed") / "submissions"
    for name in ("eve", "fay"):
        (folder / name).mkdir(parents=True)
        shutil.copy(ROOT / "exercises" / LESSON01, folder / name / LESSON01)
    (folder / "sol").mkdir()
    shutil.copy(ROOT / "solutions" / LESSON01, folder / "sol" / LESSON01)
    (folder / "cal").mkdir()
    nbformat.write(cost.solved_exercise(ROOT / "solutions" / LESSON01), folder / "cal" / LESSON01)
    return folder


def _grading(folder: Path, course_folder: Path):
    done = grade.grade(folder, jobs=2, seed=11, isolation=sandbox_or_skip(), course=course_folder, progress=False)
    return done, {(r["student"], r["exercise"]): r for r in done.rows}


@pytest.mark.slow
def test_without_solutions_the_package_grades_as_the_checkout_does(lesson01_class, tmp_path, monkeypatch):
    checkout, by = _grading(lesson01_class, ROOT)
    installed, same = _grading(lesson01_class, tmp_path)  # a course folder without solutions/: the package's prints
    assert installed.rows == checkout.rows and installed.warnings == checkout.warnings == []
    assert all(r["note"] == grade.SOLUTIONS_NOTEBOOK for (who, _), r in by.items() if who == "sol")
    assert by["cal", "scores"]["passed"] and "same as the course's solution" in by["cal", "scores"]["flags"]
    assert all("same answer as" not in r["flags"] for (who, _), r in by.items() if who in ("eve", "fay"))

    monkeypatch.setattr(answers, "_shipped", lambda: {})  # a package without the fingerprints: the summary says so
    bare, rows = _grading(lesson01_class, tmp_path)
    assert any(w.startswith("lesson 01: the course's solutions are not here") for w in bare.warnings)
    assert "pass --course with the course's folder" in grade.summary(bare)
    assert "same answer as fay" in rows["eve", "scores"]["flags"], "what the warning warns about"
    assert rows["sol", "scores"]["note"] != grade.SOLUTIONS_NOTEBOOK


def test_the_course_option_names_a_folder_with_solutions(tmp_path, capsys):
    (tmp_path / "submissions" / "ada").mkdir(parents=True)
    with pytest.raises(SystemExit):
        course(["grade", str(tmp_path / "submissions"), "--course", str(tmp_path)])
    assert "has no solutions/NN_*.ipynb" in capsys.readouterr().err


def test_the_course_names_of_the_notebooks_travel_with_the_package():
    assert answers.shipped_notebooks() == {p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")}


def test_the_fingerprints_do_not_depend_on_what_the_process_imported_before():
    # a course name an answer uses (mha.toy.tasks.IGNORE_INDEX) once depended on whether mha.toy.tasks was imported
    code = (
        "import sys; from pathlib import Path; from mha.course import answers\n"
        "if sys.argv[1] == 'all':\n"
        "    import mha.checks, mha.toy, mha.toy.tasks, mha.toy.language\n"
        "    mha.checks.load_all()\n"
        "print(answers.fingerprints_text(Path(sys.argv[2])))"
    )
    texts = [
        subprocess.run(
            [sys.executable, "-c", code, which, str(ROOT)], capture_output=True, text=True, check=True
        ).stdout
        for which in ("none", "all")
    ]
    assert texts[0] == texts[1]
