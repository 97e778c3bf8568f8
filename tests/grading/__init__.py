"""A class of students for the grader's tests: notebooks made of code cells, honest answers, and attacks."""

import functools
import inspect
import os
from pathlib import Path

import nbformat
import pytest

from . import honest01

HEADER = "import math\n\nimport torch"
FUNCTIONS = ["scores", "masked_softmax", "causal_mask", "padding_mask", "attention", "query_for_it"]
LESSON01 = "01_attention_from_scratch.ipynb"


def answer(name: str) -> str:
    """The source of one honest answer to lesson 01 (written differently from the course's solution)."""
    return inspect.getsource(getattr(honest01, name))


def stub(name: str) -> str:
    """An answer left as the exercise hands it out."""
    signature = answer(name).splitlines()[0]
    return f"{signature}\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def notebook(path: Path, *cells: str) -> Path:
    """Write a notebook of these code cells (its folder is made if needed)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "mha-course", "display_name": "Python (mha course)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def honest(path: Path, *extra: str, change: tuple[str, str] | None = None) -> Path:
    """Lesson 01 answered correctly, with extra cells after the answers; `change` replaces a text in the answers."""
    answers = [answer(name) for name in FUNCTIONS]
    if change:
        answers = [a.replace(*change) for a in answers]
    return notebook(path, HEADER, *answers, *extra)


def blank(path: Path, *extra: str) -> Path:
    """Lesson 01 not answered (every function still a stub), with extra cells before the stubs."""
    return notebook(path, HEADER, *extra, *[stub(name) for name in FUNCTIONS])


@functools.cache
def _probe(mode: str) -> str | None:
    from mha.course import sandbox

    users = sandbox.Users(1) if os.geteuid() == 0 and mode != "none" else None
    try:
        return sandbox.probe(mode, users.ids[0] if users else None)
    finally:
        if users:
            users.release()


def sandbox_or_skip(mode: str = "auto") -> str:
    """The isolation `mode` resolves to here, tried once; a test that needs it is skipped, saying why, where it does
    not work on this machine (root without bubblewrap, with Python in a folder other users cannot read), except in
    CI (CI=true), where the tests must run and that fails."""
    from mha.course import sandbox

    resolved = sandbox.detect(mode)
    failure = _probe(resolved)
    if failure:
        message = f"the sandbox ({resolved}) does not work on this machine: {failure}"
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the grader's sandboxed tests, but " + message)
        pytest.skip(message)
    return resolved
