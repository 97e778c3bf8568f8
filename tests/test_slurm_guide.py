"""The instructor guide's Slurm recipe, checked without a cluster (`make test-slurm` runs it on a real one)."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
import recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "notebooks" / "results" / "slurm.json"
CLASS = ROOT / "notebooks" / "results" / "class.json"


def test_the_guides_slurm_blocks_are_the_ones_the_slurm_test_runs():
    blocks = recipe.blocks()
    assert [lang for lang, _ in blocks.values()] == ["bash", "bash"]
    script = blocks["sbatch"][1]
    assert script.startswith("#!/bin/bash\n") and '--shard "$SLURM_ARRAY_TASK_ID/' in script
    assert "grade merge grades/shard-*.csv" in blocks["merge"][1] and "--submissions submissions" in blocks["merge"][1]
    changed = recipe.with_array(script, "0-2")
    differ = [a for a, b in zip(script.split("\n"), changed.split("\n"), strict=True) if a != b]
    assert len(differ) == 1 and differ[0].startswith("#SBATCH --array=")
    text = recipe.GUIDE.read_text()
    with pytest.raises(ValueError, match="no slurm-test tag"):  # a Slurm block the test would not run
        extra = "```bash\nsbatch --dependency=afterok:$SLURM_JOB_ID merge.sbatch\n```\n\n"
        recipe.blocks(text.replace("<!-- slurm-test: merge -->\n", extra + "<!-- slurm-test: merge -->\n"))
    with pytest.raises(ValueError, match="expected"):
        recipe.blocks(text.replace("<!-- slurm-test: sbatch -->\n", ""))


def slurm_sentence() -> str:
    """What the guide says `make test-slurm` measured, from its recording."""
    record = json.loads(RECORD.read_text())
    seconds, group = record["seconds"], record["class"]
    return (
        f"only its array cut to `{group['array']}` for a class of {group['students']} students with lesson 01's "
        f"notebook: from `sbatch` to the array's end took {seconds['slurm_array']:.0f} s and the merge "
        f"{seconds['merge']:.0f} s, and the same class graded on one machine with the same seed took "
        f"{seconds['one_machine']:.0f} s (on {record['cpus']} cores, at a load average of "
        f"{record['load_average_1min_at_end']:.0f})"
    )


def test_the_guide_quotes_the_times_the_slurm_test_measured():
    record = json.loads(RECORD.read_text())
    assert record["identical_csv"] is True and record["missing_shard_detected"] is True
    assert record["identical_feedback"] is True
    assert record["rows_differing_with_another_seed"] > 0, "the comparison must be one that can fail"
    assert record["provenance"]["command"].endswith("make test-slurm")
    guide = " ".join(recipe.section().split())
    assert slurm_sentence() in guide, "the guide's Slurm figures, from slurm.json:\n" + slurm_sentence()
    assert f"Slurm {record['slurm']}" in guide


def test_the_memory_the_array_asks_for_holds_its_notebooks_at_their_limit_and_the_grader():
    """Slurm stops a job that passes its --mem, the grader and honest notebooks with it: a shard must hold every
    notebook it runs at once at the most the grader lets it hold (its processes at --memory-mb and its memory file
    systems full), and the grader (its peak in the class measured)."""
    from mha.course.sandbox import Limits

    script = recipe.blocks()["sbatch"][1]
    cpus = int(re.search(r"--cpus-per-task=(\d+)", script).group(1))
    number, unit = re.search(r"--mem=(\d+)([MG])\b", script).groups()
    mem = int(number) * (1024 if unit == "G" else 1)
    assert '--jobs "$SLURM_CPUS_PER_TASK"' in script
    found = re.search(r"--memory-mb (\d+)", script)
    per_notebook = (Limits(memory_mb=int(found.group(1))) if found else Limits()).most_mb()
    grader = max(g["grader_peak_mb"] for g in json.loads(CLASS.read_text())["gradings"])
    need = cpus * per_notebook + grader
    assert mem >= need, f"--mem={number}{unit} for {cpus} notebooks of {per_notebook} MB and the grader: {need} MB"
