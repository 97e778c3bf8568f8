"""A pytest plugin for the notebook run: every figure a notebook draws must show data in every panel.

Loaded with the notebook run (`tests.notebook_budget` names it in `pytest_plugins`, so every nbval run of the
course's commands has it). It points PYTHONSTARTUP of the kernels that nbval starts to
`tests/panel_check_startup.py`, which makes every figure check itself (`tests/panel_check.py`) as it is rendered,
inline or by `savefig`: a figure with an empty panel raises in its cell and is written to a log, which this plugin
reads after each cell, so that the cell fails even where its outputs are not compared.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.panel_check import EmptyPanel

STARTUP = Path(__file__).resolve().with_name("panel_check_startup.py")
LOG_VARIABLE = "MHA_EMPTY_PANELS_LOG"


def pytest_configure(config):
    if os.environ.get(LOG_VARIABLE):
        return  # set by an outer run (e.g. tests/cpu_variants.py): keep its log
    handle, path = tempfile.mkstemp(prefix="empty-panels-", suffix=".jsonl")
    os.close(handle)
    os.environ[LOG_VARIABLE] = path
    os.environ["PYTHONSTARTUP"] = str(STARTUP)
    config._empty_panels_log = path


def pytest_unconfigure(config):
    path = getattr(config, "_empty_panels_log", None)
    if path:
        Path(path).unlink(missing_ok=True)


def _entries() -> list[dict]:
    path = os.environ.get(LOG_VARIABLE)
    if not path or not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    notebook = str(item.path).endswith(".ipynb")
    before = len(_entries()) if notebook else 0
    result = yield
    if notebook:
        new = _entries()[before:]
        if new:
            raise EmptyPanel("\n".join(entry["message"] for entry in new))
    return result
