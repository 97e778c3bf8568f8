"""The instructor guide's JupyterHub recipe, read block by block: what `make test-hub` runs, and `.ci/run` too.

Each fenced block of the guide's JupyterHub section follows a line `<!-- hub-test: NAME -->`. The hub test runs every
block as written, in order, except `settings` (the values an instructor fills in: the test sets its own) and
`system` (packages for the whole machine: `.ci/run` runs it before the tests, with `python3 tests/hub/guide.py
system`, and the test checks its result).
"""

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "notebooks" / "INSTRUCTOR_GUIDE.md"
SECTION = "## Teaching on a JupyterHub"
_BLOCK = re.compile(r"<!-- hub-test: ([a-z-]+) -->\n```([a-z]*)\n(.*?)\n```", re.DOTALL)


def section(text: str | None = None, title: str = SECTION) -> str:
    """The guide's section of that title (by default the JupyterHub one), up to the next section."""
    text = GUIDE.read_text() if text is None else text
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end >= 0 else len(text)]


def blocks(text: str | None = None) -> dict[str, tuple[str, str]]:
    """name -> (language, code) for every tagged block of the section; an error for an untagged one."""
    part = section(text)
    found = {name: (lang, code) for name, lang, code in _BLOCK.findall(part)}
    fences = part.count("\n```") // 2
    if fences != len(found):
        raise ValueError(f"{GUIDE.name}: {fences - len(found)} block(s) of '{SECTION}' have no hub-test tag")
    return found


if __name__ == "__main__":  # python3 tests/hub/guide.py NAME: run one bash block (for .ci/run)
    language, code = blocks()[sys.argv[1]]
    assert language == "bash", f"{sys.argv[1]} is a {language} block"
    sys.exit(subprocess.run(["bash", "-euxo", "pipefail", "-c", code]).returncode)
