"""The student release: the course without its solutions, on a branch of its own; and the links that pull it."""

import json
import subprocess
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from mha.course import release
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def clone(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    _git(tmp_path, "clone", "-q", str(ROOT), "course")
    return tmp_path / "course"


def test_the_release_holds_no_solutions_and_leaves_the_checkout_alone(clone):
    head, status = _git(clone, "rev-parse", "HEAD"), _git(clone, "status", "--porcelain")
    done = release.release(clone)
    assert done.commit and done.previous is None and done.source == head
    assert _git(clone, "rev-parse", "HEAD") == head and _git(clone, "status", "--porcelain") == status
    files = _git(clone, "ls-tree", "-r", "--name-only", "student").splitlines()
    assert "exercises/01_attention_from_scratch.ipynb" in files and "notebooks/results/06_cpu.json" in files
    assert not [f for f in files if f.startswith(("solutions/", "tests/", ".ci/")) or f.endswith("INSTRUCTOR_GUIDE.md")]
    for name in (f for f in files if f.endswith(".ipynb")):
        nb = nbformat.reads(_git(clone, "show", f"student:{name}"), as_version=4)
        for cell in nb.cells:
            assert "solutions/" not in cell.source, f"{name} still points at the solutions"
        if name.startswith("exercises/"):  # the blanks are still blanks, and the code is the committed code
            ours = nbformat.read(clone / name, as_version=4)
            assert [c.source for c in nb.cells if c.cell_type == "code"] == [
                c.source for c in ours.cells if c.cell_type == "code"
            ]
            assert "raise NotImplementedError()" in "".join(c.source for c in nb.cells)
    readme = _git(clone, "show", "student:README.md")
    assert "solutions/" not in readme and "## Lessons" in readme and "Run All" in readme
    # the branch carries none of the course's history, which holds the solutions
    assert _git(clone, "rev-list", "--count", "student") == "1"
    assert subprocess.run(["git", "merge-base", "--is-ancestor", head, "student"], cwd=clone).returncode == 1


def test_a_new_release_follows_the_last_one_and_an_unchanged_course_makes_none(clone):
    first = release.release(clone)
    assert release.release(clone).commit is None
    notebook = clone / "notebooks" / "COURSE_NOTE.md"
    notebook.write_text(notebook.read_text() + "\nOne more line.\n")
    _git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "edit the note")
    second = release.release(clone)
    assert second.previous == first.commit
    assert _git(clone, "rev-parse", "student^") == first.commit  # a student's next pull is a plain update
    assert "One more line." in _git(clone, "show", "student:notebooks/COURSE_NOTE.md")


def test_a_branch_that_is_not_a_release_is_never_overwritten(clone, capsys):
    _git(clone, "branch", "work")
    tip = _git(clone, "rev-parse", "work")
    with pytest.raises(ValueError, match="is not a student release"):
        release.release(clone, branch="work")
    assert _git(clone, "rev-parse", "work") == tip
    current = _git(clone, "symbolic-ref", "--short", "HEAD")
    with pytest.raises(SystemExit):
        course(["release", "--root", str(clone), "--branch", current])
    assert "is the branch checked out" in capsys.readouterr().err


def test_a_pointer_the_release_does_not_know_stops_it():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Stuck? Look in solutions/ for the answer")])
    with pytest.raises(ValueError, match="cell 0 still mentions solutions/"):
        release.student_notebook(nbformat.writes(nb), "exercises/99_x.ipynb")
    known = (
        "Hints first. The full solutions are in `solutions/` (same file name).\nOpen `x` (solutions in `solutions/`)."
    )
    assert release.remove_pointers(known) == "Hints first.\nOpen `x`."


def test_the_link_is_encoded_once_and_names_the_folder():
    link = release.nbgitpuller_link(
        "https://hub.example.edu/", "https://git.example.edu/c/students.git", "exercises/01_a.ipynb"
    )
    assert link.startswith("https://hub.example.edu/hub/user-redirect/git-pull?")
    assert "%25" not in link, "encoded twice"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert query["targetpath"] == ["mha-course"] and query["branch"] == ["main"]
    assert query["urlpath"] == ["lab/tree/mha-course/exercises/01_a.ipynb?autodecode"]
    assert query["repo"] == ["https://git.example.edu/c/students.git"]


def test_the_link_command_prints_one_link_per_exercise(capsys):
    assert course(["link", "--hub", "http://127.0.0.1:1", "--repo", "file:///x.git", "--root", str(ROOT)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))) and json.dumps(lines)
    assert lines[0].startswith("01_attention_from_scratch: http://127.0.0.1:1/hub/user-redirect/git-pull?")
