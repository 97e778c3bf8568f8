"""The instructor guide's Slurm recipe, read from its markdown: the blocks `make test-slurm` runs as printed.

Each block of the recipe, in the guide's *Grading* section, follows a line `<!-- slurm-test: NAME -->`: `sbatch`
(the job array's script, `grade.sbatch`) and `merge` (the shards' CSVs joined once the array has finished).
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from guide import GUIDE  # noqa: E402 - the hub recipe's reader: the same guide, read the same way
from guide import section as _section  # noqa: E402

SECTION = "## Grading"
NAMES = ("sbatch", "merge")
_BLOCK = re.compile(r"<!-- slurm-test: ([a-z-]+) -->\n```([a-z]*)\n(.*?)\n```", re.DOTALL)


def section(text: str | None = None) -> str:
    return _section(text, SECTION)


def blocks(text: str | None = None) -> dict[str, tuple[str, str]]:
    """name -> (language, code) of the recipe's blocks; an error if one is missing or a Slurm block is untagged."""
    part = section(text)
    found = {name: (lang, code) for name, lang, code in _BLOCK.findall(part)}
    if sorted(found) != sorted(NAMES):
        raise ValueError(f"{GUIDE.name}: '{SECTION}' tags {sorted(found)} with slurm-test, expected {list(NAMES)}")
    fences = re.findall(r"\n```[a-z]*\n(.*?)\n```", part, re.DOTALL)
    tagged = {code for _, code in found.values()}
    untagged = [code for code in fences if ("SLURM" in code or "grade merge" in code) and code not in tagged]
    if untagged:
        raise ValueError(f"{GUIDE.name}: a Slurm block of '{SECTION}' has no slurm-test tag: {untagged[0][:60]!r}")
    return found


def with_array(script: str, tasks: str) -> str:
    """The sbatch script with its array's range replaced (the one value the test changes: its class is small)."""
    lines = [line for line in script.split("\n") if line.startswith("#SBATCH --array=")]
    assert len(lines) == 1, f"the guide's script sets --array once: {lines}"
    return script.replace(lines[0], f"#SBATCH --array={tasks}")
