"""The student release: the course without its solutions, committed on a branch that an nbgitpuller link pulls.

    python -m mha.course release                      # commit HEAD's student version on the branch `student`
    python -m mha.course link --hub URL --repo URL     # the nbgitpuller link of every exercise notebook

The release is made from a commit of the course (default HEAD), never from the working tree, and never touches the
working tree or the current branch. It keeps what a student works with: the lessons (`notebooks/`, with their
recorded results), the exercises (`exercises/`), the package's code to read beside the lessons (`mha/`), the
licence, a README for students, and what installs the course on a laptop without the solutions: `install.py`
(Linux, macOS, Windows; PyTorch's CPU build on Linux), `requirements-student.txt`, `pyproject.toml`, the JupyterLab
settings (`jupyter/`) and a Makefile of the students' own (`make lab`). It leaves out `solutions/`, the tests
(which compare against the solutions), the instructor guide and the maintainers' files; the sentences of the
notebooks that point at `solutions/` are removed, and any other mention of `solutions/` stops the release with an
error that names the notebook and cell.

Each release is a new commit on the branch, whose parent is the previous release: the branch's history holds
student releases only (none of the course's own history, which holds the solutions), and a student's next click
on the link is a plain update. Push the branch to a repository of its own: cloning a repository brings all of its
branches.
"""

import json
import os
import re
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .exercises import fingerprint, to_text

BRANCH = "student"
FOLDER = "mha-course"  # the folder the course lands in, in each student's home (nbgitpuller's targetpath)
LEFT_OUT = ("solutions/", "tests/", ".ci/", "notebooks/INSTRUCTOR_GUIDE.md")
KEPT = (
    "notebooks/",
    "exercises/",
    "mha/",
    "LICENSE",
    "README.md",
    ".gitignore",
    "install.py",
    "requirements-student.txt",
    "pyproject.toml",
    "jupyter/",
)
# The students' Makefile: the maintainers' one runs the tests, which the release does not hold.
STUDENT_MAKEFILE = """# The course on your own computer: `make lab` sets it up the first time (minutes), then opens
# JupyterLab. It runs install.py, which needs only Python 3.11 or newer (without make, as on Windows:
# `py -3.11 install.py --lab`).
# On Linux it installs PyTorch's CPU build; `make lab GPU=1` installs the default one, with CUDA (gigabytes).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
GPU_FLAG := $(if $(GPU),--gpu,)

.PHONY: lab setup doctor

lab:
\t$(PYTHON) install.py --lab $(GPU_FLAG)

setup:
\t$(PYTHON) install.py $(GPU_FLAG)

doctor:
\tcd .venv && bin/python -m mha.course doctor
"""
TRAILER = "Released-from:"

# "(solutions in `solutions/`)" and "The full solutions are in `solutions/` (same file name)."
_POINTER_PARENTHESIS = re.compile(r"[ \t]*\([^()\n]*`solutions/`[^()\n]*\)")
_POINTER_SENTENCE = re.compile(r"(?:(?<=^)|(?<=[.!?] ))[^.!?\n]*`solutions/`[^\n]*?[.!?](?= |$)", re.MULTILINE)

STUDENT_README_END = """## On your own computer

You need Python 3.11 or newer; nothing else. In this folder:

```bash
python3 install.py --lab     # Linux and macOS (or `make lab`)
py -3.11 install.py --lab    # Windows
```

The first run takes a few minutes: it makes a virtual environment in `.venv`, installs the course's packages
(PyTorch's CPU build on Linux; add `--gpu` for the CUDA one, gigabytes), registers the kernel *Python (mha
course)*, checks it all (`python -m mha.course doctor`), then opens JupyterLab and prints a link with a token.
Later runs skip the set-up. Lesson 10's Triton sections need Linux on x86-64; elsewhere the lesson shows what they
would run. On a JupyterHub, none of this: the course's link sets everything up.

## Working on the course here

Open a lesson in `notebooks/`, then its exercise notebook in `exercises/` (same file name), with the kernel
*Python (mha course)*. Replace each `raise NotImplementedError()` with your code and run the cell: the check under
it prints `✓`, or tells you what is wrong. *Run All* runs every exercise's check, done or not: each shows a `✓` or
a `✗` with its message.

Your work stays yours: on a JupyterHub, when you click the course's link again, the course's updates come in and
every change you made is kept. On your own computer, `git pull` in this folder takes the updates (if git refuses
because a notebook you changed was updated too, rename your copy, pull, and carry your work over), then
`python3 install.py` again. The package the lessons import is installed for you; its code is in `mha/`, to read
beside the lessons.
"""


@dataclass(frozen=True)
class Released:
    """What `release` did: the new commit (None when the branch already held this release), and the files."""

    branch: str
    commit: str | None
    source: str
    files: int
    previous: str | None


def _git(root: Path, *args: str, data: bytes | None = None, env: dict | None = None) -> bytes:
    result = subprocess.run(
        ["git", *args], cwd=root, input=data, capture_output=True, env={**os.environ, **(env or {})}
    )
    if result.returncode != 0:
        raise ValueError(f"git {' '.join(args[:3])} failed in {root}: {result.stderr.decode().strip()}")
    return result.stdout


def remove_pointers(text: str) -> str:
    """Markdown text without the sentences and parentheses that point at `solutions/`."""
    text = _POINTER_PARENTHESIS.sub("", text)
    text = _POINTER_SENTENCE.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _points_at_solutions(text: str) -> bool:
    return "solutions/" in text


def student_notebook(text: str, path: str) -> str:
    """A notebook of the release: its markdown without pointers to the solutions; refuses any other mention."""
    nb = nbformat.reads(text, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            cell.source = remove_pointers(cell.source)
        shown = cell.source + "".join(json.dumps(o) for o in cell.get("outputs", []))
        if _points_at_solutions(shown):
            raise ValueError(
                f"{path}, cell {index} still mentions solutions/, which students do not get: reword it, or teach "
                f"mha/course/release.py to remove it"
            )
    if "mha_exercise" in nb.metadata:  # the fingerprint of the cells as handed out
        nb.metadata["mha_exercise"]["fingerprint"] = fingerprint(nb)
    new = to_text(nb)
    return text if nbformat.reads(new, as_version=4) == nbformat.reads(text, as_version=4) else new


def student_readme(readme: str) -> str:
    """The students' README: the course README's title, first paragraph and lessons, then how to work here."""
    lines = readme.split("\n")
    title = lines[0]
    intro = readme.split("\n\n")[1]
    start = readme.index("\n## Lessons")
    end = readme.index("\n## ", start + 1)
    lessons = readme[start + 1 : end].rstrip()
    text = f"{title}\n\n{intro}\n\n{lessons}\n\n{STUDENT_README_END}"
    if _points_at_solutions(text):
        raise ValueError("the students' README would mention solutions/: reword the lessons section of README.md")
    return text


def _kept(path: str) -> bool:
    if any(path == p.rstrip("/") or path.startswith(p) for p in LEFT_OUT):
        return False
    return any(path == p or path.startswith(p) for p in KEPT)


def _identity(root: Path) -> dict:
    """A committer for the release commit when git has none configured (a fresh CI machine)."""
    configured = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True).returncode == 0
    if configured:
        return {}
    who = {"name": "mha course release", "email": "release@mha-course.invalid"}
    return {f"GIT_{role}_{key.upper()}": value for role in ("AUTHOR", "COMMITTER") for key, value in who.items()}


def release(root: Path, branch: str = BRANCH, ref: str = "HEAD") -> Released:
    """Commit the student version of `ref` on `branch` (created if missing); the working tree is not touched.

    Args:
        root: the course's git checkout.
        branch: the release branch (default "student"); it must hold releases only (or not exist yet).
        ref: the commit to release (default "HEAD": the last commit, not the uncommitted changes).
    """
    root = Path(root)
    source = _git(root, "rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
    current = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=root, capture_output=True)
    if current.stdout.decode().strip() == branch:
        raise ValueError(f"{branch} is the branch checked out in {root}: name another branch for the release")
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"], cwd=root, capture_output=True
    )
    previous = found.stdout.decode().strip() or None
    if previous and TRAILER not in _git(root, "log", "-1", "--format=%B", previous).decode():
        raise ValueError(
            f"the branch {branch} exists and is not a student release (its last commit has no '{TRAILER}' line): "
            f"name another branch, so that nothing of it is lost"
        )
    entries = []
    for record in _git(root, "ls-tree", "-r", "-z", "--full-tree", source).split(b"\0"):
        if not record:
            continue
        meta, path = record.decode().split("\t", 1)
        mode, kind, sha = meta.split()
        if kind != "blob" or not _kept(path):
            continue
        if path == "README.md" or (path.endswith(".ipynb") and path.startswith(("notebooks/", "exercises/"))):
            text = _git(root, "cat-file", "blob", sha).decode()
            new = student_readme(text) if path == "README.md" else student_notebook(text, path)
            if new != text:
                sha = _git(root, "hash-object", "-w", "--stdin", data=new.encode()).decode().strip()
        entries.append(f"{mode} {sha}\t{path}")
    makefile = _git(root, "hash-object", "-w", "--stdin", data=STUDENT_MAKEFILE.encode()).decode().strip()
    entries.append(f"100644 {makefile}\tMakefile")
    index = root / _git(root, "rev-parse", "--git-path", "mha-release.index").decode().strip()
    env = {"GIT_INDEX_FILE": str(index)}  # a scratch index: the checkout's own index is not touched
    try:
        _git(root, "read-tree", "--empty", env=env)
        _git(root, "update-index", "--add", "-z", "--index-info", data="\0".join(entries).encode() + b"\0", env=env)
        tree = _git(root, "write-tree", env=env).decode().strip()
    finally:
        Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
    if previous and _git(root, "rev-parse", f"{previous}^{{tree}}").decode().strip() == tree:
        return Released(branch, None, source, len(entries), previous)
    subject = _git(root, "log", "-1", "--format=%s", source).decode().strip()
    message = f"Student release of {source[:10]}: {subject}\n\n{TRAILER} {source}\n"
    parents = ["-p", previous] if previous else []
    commit = _git(root, "commit-tree", tree, *parents, data=message.encode(), env=_identity(root)).decode().strip()
    _git(root, "update-ref", f"refs/heads/{branch}", commit, previous or "0" * 40)
    return Released(branch, commit, source, len(entries), previous)


def nbgitpuller_link(hub: str, repo: str, notebook: str, branch: str = "main", folder: str = FOLDER) -> str:
    """The link that clones (then updates) the course in a student's home and opens `notebook` in JupyterLab.

    Args:
        hub: the hub's address, e.g. "https://hub.example.edu".
        repo: the repository students pull from (the student release).
        notebook: the path inside the course, e.g. "exercises/01_attention_from_scratch.ipynb".
        branch: the branch of `repo` (default "main").
        folder: the folder in the student's home (default "mha-course"); given explicitly, because nbgitpuller
            otherwise names it after the repository URL's last part, ".git" included.
    """
    query = urllib.parse.urlencode(
        {
            "repo": repo,
            "branch": branch,
            "targetpath": folder,
            # encoded once, with the rest: "?autodecode" arrives as such and tells JupyterLab to open the path
            "urlpath": f"lab/tree/{folder}/{notebook}?autodecode",
        }
    )
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def exercise_notebooks(root: Path) -> list[str]:
    """The exercise notebooks of the course at `root`, as paths inside it ("exercises/01_....ipynb")."""
    found = sorted(p for p in (Path(root) / "exercises").glob("[0-9][0-9]_*.ipynb") if ".fresh." not in p.name)
    if not found:
        raise ValueError(f"{root} has no exercises/NN_*.ipynb: run the command in the course's folder (or --root)")
    return [f"exercises/{p.name}" for p in found]
