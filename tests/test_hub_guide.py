"""The instructor guide's JupyterHub section, checked without a hub (`make test-hub` runs it on a real one)."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "hub"))
import guide  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "notebooks" / "results" / "hub.json"


def test_every_block_of_the_hub_section_is_one_the_hub_test_runs():
    names = set(guide.blocks())
    assert names == {"settings", "system", "hub", "image", "config", "start", "release", "link", "link-example",
                     "collect", "grade"}  # fmt: skip
    untagged = guide.section().replace("<!-- hub-test: grade -->\n", "")
    with pytest.raises(ValueError, match="no hub-test tag"):
        guide.blocks(untagged)


def test_the_guide_installs_the_versions_the_hub_test_pins():
    recipe = "".join(code for _, code in guide.blocks().values())
    pins = (ROOT / "tests" / "hub" / "requirements.txt").read_text()
    for name, version in re.findall(r"^([a-z-]+)==([\d.]+)", pins, re.MULTILINE):
        assert f"{name}=={version}" in recipe
    proxy = re.search(r"configurable-http-proxy@([\d.]+)", pins).group(1)
    assert f"configurable-http-proxy@{proxy}" in recipe
    recorded = json.loads(RECORD.read_text())["versions"]
    assert recorded["jupyterhub"] in recipe and recorded["configurable-http-proxy"] == proxy


def _sizing(text: str) -> str:
    """The sizing's first paragraph: what the hub test measured (the rest is `cost.json`'s, tests/test_guide.py)."""
    part = guide.section(text)
    start = part.index("**Sizing.**")
    return part[start : part.index("\n\n", start)]


def test_the_sizing_quotes_the_memory_the_hub_test_measured():
    memory = json.loads(RECORD.read_text())["memory_mb"]["students"]
    sizing = _sizing(guide.GUIDE.read_text())
    quoted = [int(x) for x in re.findall(r"(\d+) MB", sizing)]
    ada = memory["ada"]
    assert quoted == [ada["server_mb"], ada["exercise_kernel_mb"], ada["kernel_peak_mb_05"]]
    sizing = guide.section()[guide.section().index("**Sizing.**") :]
    assert f"holds {ada['server_mb']} MB" in _sizing(guide.GUIDE.read_text()) and f"({ada['server_mb']} + " in sizing
