"""A notebook's answer cells, read without running anything: compared with the course's solution and between students.

The answer to an exercise is the last code cell that defines the learner's function (`def scores(...)`, or
`scores = ...`). It is compared by its syntax tree, so comments, blank lines and spacing do not matter; the check
call under it (`check.scores(scores)`) is left out. A cell that Python cannot parse is compared by its text, with
spacing collapsed.
"""

import ast
import hashlib
import json
import re
import threading
from functools import lru_cache
from pathlib import Path

from . import exercises as generation

MARKER = generation.BEGIN

# CPython 3.11 keeps ast.parse's recursion depth in state shared by threads: two notebooks parsed at once by the
# grader's --jobs threads can fail with "SystemError: AST constructor recursion depth mismatch". One parse at a time.
_PARSE = threading.Lock()


def _parse(source: str) -> ast.Module:
    with _PARSE:
        return ast.parse(source)


def code_cells(text: str) -> list[str]:
    """The sources of a notebook's code cells; ValueError if the text is not a notebook."""
    nb = json.loads(text)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("it has no list of cells")
    out = []
    for c in nb["cells"]:
        if isinstance(c, dict) and c.get("cell_type") == "code":
            source = c.get("source", "")
            out.append("".join(map(str, source)) if isinstance(source, list) else str(source))
    return out


def answer_cell(cells: list[str], function: str) -> str | None:
    """The last cell that defines `function` at its top level, or None."""
    found = None
    for source in cells:
        try:
            tree = _parse(source)
        except (SyntaxError, ValueError):
            if re.search(rf"^(def\s+{re.escape(function)}\s*\(|{re.escape(function)}\s*=)", source, re.M):
                found = source
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
                found = source
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == function for t in node.targets
            ):
                found = source
    return found


def digest(source: str | None) -> str:
    """A short hash of an answer cell's code, blind to comments and spacing ("" for no cell)."""
    if source is None:
        return ""
    try:
        tree = _parse(source)
        body = [node for node in tree.body if not _is_check_call(node)]
        text = "\n".join(ast.dump(node, annotate_fields=False) for node in body)
    except (SyntaxError, ValueError):
        text = "text:" + " ".join(source.split())
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_check_call(node) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == "check"
    )


@lru_cache(maxsize=32)
def course_answers(root: Path, lesson: str) -> dict[str, tuple[str, str]] | None:
    """For each learner function of a lesson: (digest of the solution's cell, digest of the exercise's stub).

    None if the course folder has no solution notebook for the lesson (an installed package without the notebooks).
    """
    found = sorted((root / "solutions").glob(f"{lesson}_*.ipynb"))
    if not found:
        return None
    import nbformat

    solution = nbformat.read(found[0], as_version=4)
    exercise = generation.make_exercise(solution, found[0].name)
    solved = [c.source for c in solution.cells if c.cell_type == "code"]
    stubbed = [c.source for c in exercise.cells if c.cell_type == "code"]
    out = {}
    for source in solved:
        try:
            tree = _parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and MARKER in source:
                out[node.name] = (digest(answer_cell(solved, node.name)), digest(answer_cell(stubbed, node.name)))
    return out


def is_solutions_notebook(cells: list[str], functions: list[str], course: dict[str, tuple[str, str]] | None) -> bool:
    """True for the course's own solutions notebook handed in: its markers, and every answer the solution's."""
    if not course or not functions or not any(MARKER in source for source in cells):
        return False
    return all(f in course and digest(answer_cell(cells, f)) == course[f][0] for f in functions)
