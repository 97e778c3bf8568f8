"""The README's two commands, and the rules every notebook follows."""

import ast
import functools
import importlib
import json
import os
import pkgutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import mha

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("\n## ", readme.index("make test"))]
    assert "make lab" in head and "make test" in head
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert "make test" in ci, "CI runs the README's command"
    after = ci[ci.index("make test") + 1 :]
    assert sorted(after) == ["make test-hub", "make test-site", "make test-slurm"], "then the site's, hub's and Slurm's"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet


def test_a_kernel_starts_without_the_tcp_warning_and_keeps_every_other(tmp_path):
    import sys

    import nbformat

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "mha-course", "display_name": "x", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell("import logging; logging.getLogger('IPKernelApp').warning('another warning')")
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    run = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "without encryption" not in run.stderr, run.stderr  # jupyter/ipython_kernel_config.py drops it
    assert "another warning" in run.stdout  # ... and nothing else


@pytest.mark.slow
def test_make_lab_serves_the_course_with_token_auth():
    port, token = _free_port(), "course-test-token"
    env = dict(os.environ, JUPYTER_TOKEN=token)
    proc = subprocess.Popen(
        ["make", "lab", f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while _get(f"{base}/api/status?token={token}") != 200:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.5)
        assert _get(f"{base}/lab?token={token}") == 200
        assert _get(f"{base}/api/contents/notebooks?token={token}") == 200
        assert _get(f"{base}/api/contents/notebooks") == 403, "the server must not run without authentication"
        assert _get(f"{base}/api/kernelspecs?token={token}") == 200
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=5) as response:
            specs = json.load(response)
        assert "mha-course" in specs["kernelspecs"]
        assert specs["default"] == "mha-course", "new notebooks must get the course's kernel (jupyter/)"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@functools.cache
def _package_classes() -> frozenset:
    """The names of every class defined in any module of mha, wings included."""
    names = set(mha.__all__)
    for info in pkgutil.walk_packages(mha.__path__, "mha."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        names |= {n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__}
    assert {"MultiHeadAttention", "OffsetCopyTask", "Encoder", "Record"} <= names
    return frozenset(names)


def _code_cells(path: Path):
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_do_not_redefine_the_package(path):
    package_names = _package_classes()
    for source in _code_cells(path):
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                assert node.name not in package_names, f"{path.name} redefines mha's class {node.name}: import it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_committed_executed_with_the_course_kernel(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "mha-course"
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(counts), f"{path.name} has cells that were never run"
    assert counts == sorted(counts), f"{path.name} was not run top to bottom"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_cells_hold_no_control_characters(path):
    # a stray tab usually means "\t" was typed where "\\t" (as in \text) was meant
    nb = json.loads(path.read_text())
    for index, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        bad = sorted({hex(ord(ch)) for ch in source if ord(ch) < 32 and ch != "\n"})
        assert not bad, f"{path.name}, cell {index}: control characters {bad}"
