"""Generate the exercise notebooks from the solution notebooks.

`solutions/NN_*.ipynb` is the source. Code a learner must write sits between `### BEGIN SOLUTION` and
`### END SOLUTION` (nbgrader's markers); the exercise keeps everything else and puts a stub in its place. In a
markdown cell the same markers hide a written answer.

    python -m mha.course exercises            # regenerate exercises/ (never overwrites a notebook you have edited)
    python -m mha.course exercises --check    # fail if exercises/ is not exactly what solutions/ generate

A generated notebook records in its metadata a fingerprint of everything in it (cells, outputs, metadata). A file is
replaced only if it still holds exactly what a regeneration wrote; anything else, a notebook with your code or one
you only ran (its outputs saved), is yours and is never replaced: the new version is written beside it as
`NN_*.fresh.ipynb` (or `NN_*.fresh-2.ipynb`, ... if you have worked in that one too).

`--check` also lints what `solutions/` generate with ruff, so a learner's own code in `exercises/` never fails it.
"""

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["_Your answer here._"]
_MARKER = re.compile(r"^(\s*)### (BEGIN|END) SOLUTION\s*$")
# JupyterLab's Run All goes on past a cell with this tag when it raises: a failing check shows its ✗ in red and the
# next exercise still runs, so one Run All shows the state of every exercise.
GO_ON = "raises-exception"
_CHECK_CALL = re.compile(r"^\s*check\.\w+\(", re.MULTILINE)


def strip_solutions(source: str, cell_type: str = "code", where: str = "a cell") -> str:
    """Replace each BEGIN/END SOLUTION block by a stub indented like its BEGIN marker.

    Args:
        source: the cell's text.
        cell_type: "code" (stub raises NotImplementedError) or "markdown" (stub asks for an answer).
        where: names the cell in error messages.
    """
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), start=1):
        match = _MARKER.match(line)
        if not match:
            if not inside:
                out.append(line)
            continue
        indent, kind = match.groups()
        if kind == "BEGIN":
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN} inside another solution block")
            inside = True
            out.extend(indent + stub for stub in (CODE_STUB if cell_type == "code" else MARKDOWN_STUB))
        else:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            inside = False
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def fingerprint(data: dict) -> str:
    """A hash of a notebook's whole content (JSON data): cells, outputs, metadata, all but the fingerprint itself."""
    data = copy.deepcopy(data)
    recorded = data.get("metadata", {}).get("mha_exercise")
    if isinstance(recorded, dict):
        recorded.pop("fingerprint", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def make_exercise(solution, source_name: str):
    """The exercise notebook for one solution notebook: solutions stubbed, outputs cleared, fingerprint recorded."""
    nb = copy.deepcopy(solution)
    # widget state (progress bars) is output too, with random ids: keep only what says how to run the notebook
    nb.metadata = {key: value for key, value in nb.metadata.items() if key in ("kernelspec", "language_info")}
    count = 0
    for index, cell in enumerate(nb.cells):
        where = f"{source_name}, cell {index}"
        if cell.cell_type in ("code", "markdown"):
            stripped = strip_solutions(cell.source, cell.cell_type, where)
            count += stripped != cell.source
            if cell.cell_type == "code" and (stripped != cell.source or _CHECK_CALL.search(stripped)):
                tags = cell.metadata.setdefault("tags", [])
                if GO_ON not in tags:
                    tags.append(GO_ON)
            cell.source = stripped
        cell.metadata.pop("execution", None)  # when each cell last ran: output, not content
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if not count:
        raise ValueError(f"{source_name} has no {BEGIN} block: nothing for a learner to write")
    nb.metadata["mha_exercise"] = {"generated_from": source_name}
    nb.metadata["mha_exercise"]["fingerprint"] = fingerprint(json.loads(nbformat.writes(nb)))
    return nb


def to_text(nb) -> str:
    return nbformat.writes(nb) + "\n"


def plan(root: Path = ROOT):
    """(solution path, exercise path, generated text) for every solution notebook."""
    for solution in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(solution, as_version=4)
        text = to_text(make_exercise(nb, f"solutions/{solution.name}"))
        yield solution, root / "exercises" / solution.name, text


def _recorded(text: str) -> str | None:
    """The fingerprint a notebook's text records (None if it records none or is not a notebook)."""
    try:
        recorded = json.loads(text).get("metadata", {}).get("mha_exercise", {}).get("fingerprint")
    except (ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


def is_pristine(text: str) -> bool:
    """True if a notebook's text holds exactly what a regeneration wrote: its content matches its fingerprint.

    A notebook written by the course's earlier generator (its fingerprint covers the cells only) counts as pristine
    if its cells match it and none was ever run (no outputs, no execution counts): nothing in it is the learner's.
    """
    recorded = _recorded(text)
    try:
        data = json.loads(text)
        return recorded is not None and (recorded == fingerprint(data) or _pristine_earlier(data, recorded))
    except (ValueError, TypeError, AttributeError):
        return False


def _pristine_earlier(data: dict, recorded: str) -> bool:
    """True for a never-run notebook whose cells match a fingerprint of the earlier kind (cell types and sources)."""
    cells = data.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        return False
    if any(c.get("outputs") or c.get("execution_count") is not None for c in cells if c.get("cell_type") == "code"):
        return False
    sources = [["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")]
               for c in cells]  # fmt: skip
    earlier = [[c.get("cell_type"), source[0]] for c, source in zip(cells, sources, strict=True)]
    return recorded == hashlib.sha256(json.dumps(earlier).encode()).hexdigest()


FRESH = re.compile(r"\.fresh(-[0-9]+)?\.ipynb$")


def fresh_paths(exercise: Path):
    """Where the new version of an exercise goes when the learner's file is kept: .fresh, then .fresh-2, ..."""
    yield exercise.with_suffix(".fresh.ipynb")
    for n in range(2, 1000):
        yield exercise.with_suffix(f".fresh-{n}.ipynb")


def generate(root: Path = ROOT) -> int:
    """Write every exercise notebook that is missing or outdated; never replace a file that holds a learner's work.

    Returns:
        how many notebooks were kept because they hold the learner's work, with the new version written beside.
    """
    kept = 0
    for _, exercise, text in plan(root):
        name = exercise.relative_to(root)
        current = exercise.read_text() if exercise.exists() else None
        if current == text:
            print(f"up to date  {name}")
        elif current is None or is_pristine(current):
            exercise.parent.mkdir(exist_ok=True)
            exercise.write_text(text)
            print(f"written     {name}")
        elif _recorded(current) == _recorded(text):
            print(f"up to date  {name} (it holds your work)")
        else:
            kept += 1
            where = _write_fresh(exercise, text)
            print(
                f"KEPT        {name}: it holds your work, so it was not replaced; the new version is "
                f"{where.relative_to(root)} (to start over, delete {name} and run `make exercises` again)"
            )
    return kept


def _write_fresh(exercise: Path, text: str) -> Path:
    """Write the new version beside the learner's file, in the first place that holds no work of theirs."""
    for fresh in fresh_paths(exercise):
        current = fresh.read_text() if fresh.exists() else None
        if current == text or (current is not None and _recorded(current) == _recorded(text)):
            return fresh  # already there, or the learner's work started from this very version
        if current is None or is_pristine(current):
            fresh.write_text(text)
            return fresh
    raise RuntimeError(f"no free name for a new version of {exercise.name}: remove old {exercise.stem}.fresh-*.ipynb")


def committed_text(path: Path) -> str | None:
    """The version of `path` in the last commit, or None outside a git checkout or for a file never committed."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=path.parent, capture_output=True, text=True, check=True
        ).stdout.strip()
        relative = path.resolve().relative_to(Path(top).resolve())
        shown = subprocess.run(
            ["git", "show", f"HEAD:{relative.as_posix()}"], cwd=top, capture_output=True, text=True, check=True
        )
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    return shown.stdout


def check(root: Path = ROOT) -> list[str]:
    """Problems that make exercises/ differ from what solutions/ generate (empty list: all in sync).

    A notebook you have worked in is yours: when it differs from the committed version, the committed version is
    checked instead, so that doing the exercises in place never makes the course's checks fail.
    """
    problems = []
    expected = set()
    for solution, exercise, text in plan(root):
        expected.add(exercise.name)
        name = exercise.relative_to(root)
        if not exercise.exists():
            problems.append(f"{name} is missing")
            continue
        current = exercise.read_text()
        if current == text:
            continue
        committed = committed_text(exercise)
        if committed is not None and committed != current and committed == text:
            continue  # the learner's own work; what is committed is in sync
        if committed is None and not is_pristine(current):
            continue  # outside git, a notebook that is not as generated is the learner's work
        judged = committed if committed is not None and committed != current else current
        nb = nbformat.reads(judged, as_version=4)
        if any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"):
            problems.append(f"{name} carries outputs: exercise notebooks are committed without them")
        problems.append(f"{name} differs from what {solution.relative_to(root)} generates")
    for stray in sorted((root / "exercises").glob("[0-9][0-9]_*.ipynb")):
        if stray.name not in expected and not FRESH.search(stray.name):
            problems.append(f"exercises/{stray.name} has no solution notebook in solutions/")
    return problems


def lint(root: Path = ROOT, ruff: str | None = None) -> list[str]:
    """Ruff's findings on the exercise notebooks as `solutions/` generate them (empty list: clean).

    The committed exercises are what solutions generate (`check`), so this lints them without reading a learner's
    copy: code a learner writes in `exercises/` never fails it.

    Args:
        root: the course folder (its pyproject.toml configures ruff).
        ruff: the ruff program (default: the one beside this Python, else the one on PATH).
    """
    ruff = ruff or shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        return ["ruff is not installed, so the exercises could not be linted"]
    problems = []
    for _, exercise, text in plan(root):
        name = exercise.relative_to(root).as_posix()
        result = subprocess.run(
            [ruff, "check", "--no-cache", "--stdin-filename", name, "-"],
            input=text,
            cwd=root,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            problems.append(
                f"{name}, as {name.replace('exercises/', 'solutions/')} generates it, fails ruff:\n"
                + (result.stdout + result.stderr).strip()
            )
    return problems
