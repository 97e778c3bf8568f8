"""Generate the exercise notebooks from the solution notebooks.

`solutions/NN_*.ipynb` is the source. Code a learner must write sits between `### BEGIN SOLUTION` and
`### END SOLUTION` (nbgrader's markers); the exercise keeps everything else and puts a stub in its place. In a
markdown cell the same markers hide a written answer.

    python -m mha.course exercises            # regenerate exercises/ (never overwrites a notebook you have edited)
    python -m mha.course exercises --check    # fail if exercises/ is not exactly what solutions/ generate

A generated notebook records a fingerprint of its cells in its metadata. If the cells no longer match it, a learner
has worked in the notebook: it is left alone, and the fresh copy is written beside it as `NN_*.fresh.ipynb`.
"""

import copy
import hashlib
import json
import re
import subprocess
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["_Your answer here._"]
_MARKER = re.compile(r"^(\s*)### (BEGIN|END) SOLUTION\s*$")


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


def fingerprint(nb) -> str:
    """A hash of the cells' types and sources: what a learner changes when they work in the notebook."""
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


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
            cell.source = stripped
        cell.metadata.pop("execution", None)  # when each cell last ran: output, not content
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if not count:
        raise ValueError(f"{source_name} has no {BEGIN} block: nothing for a learner to write")
    nb.metadata["mha_exercise"] = {"generated_from": source_name, "fingerprint": fingerprint(nb)}
    return nb


def to_text(nb) -> str:
    return nbformat.writes(nb) + "\n"


def plan(root: Path = ROOT):
    """(solution path, exercise path, generated text) for every solution notebook."""
    for solution in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(solution, as_version=4)
        text = to_text(make_exercise(nb, f"solutions/{solution.name}"))
        yield solution, root / "exercises" / solution.name, text


def is_edited(path: Path) -> bool:
    """True if the notebook's cells no longer match the fingerprint it was generated with."""
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("mha_exercise", {}).get("fingerprint")
    return recorded != fingerprint(nb)


def generate(root: Path = ROOT) -> int:
    """Write every exercise notebook that is missing or outdated; never overwrite a learner's edits."""
    kept = 0
    for _, exercise, text in plan(root):
        name = exercise.relative_to(root)
        if exercise.exists() and exercise.read_text() == text:
            print(f"up to date  {name}")
        elif exercise.exists() and is_edited(exercise):
            started_from = nbformat.read(exercise, as_version=4).metadata.get("mha_exercise", {}).get("fingerprint")
            if started_from == nbformat.reads(text, as_version=4).metadata["mha_exercise"]["fingerprint"]:
                print(f"up to date  {name} (it holds your work)")
                continue
            fresh = exercise.with_suffix(".fresh.ipynb")
            fresh.write_text(text)
            kept += 1
            print(
                f"KEPT        {name}: it holds your work, so it was not overwritten; the new version is "
                f"{fresh.relative_to(root)} (to start over, delete {name} and run `make exercises` again)"
            )
        else:
            exercise.parent.mkdir(exist_ok=True)
            exercise.write_text(text)
            print(f"written     {name}")
    return kept


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
        if committed is None and is_edited(exercise):
            continue  # outside git, a notebook whose cells were changed is the learner's work
        judged = committed if committed is not None and committed != current else current
        nb = nbformat.reads(judged, as_version=4)
        if any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"):
            problems.append(f"{name} carries outputs: exercise notebooks are committed without them")
        problems.append(f"{name} differs from what {solution.relative_to(root)} generates")
    for stray in sorted((root / "exercises").glob("[0-9][0-9]_*.ipynb")):
        if stray.name not in expected and not stray.name.endswith(".fresh.ipynb"):
            problems.append(f"exercises/{stray.name} has no solution notebook in solutions/")
    return problems
