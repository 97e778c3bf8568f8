"""`python -m mha.course cost --memory-mb`: the least limit at which the course's solved notebooks keep their marks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mha.course import cost

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_a_limit_too_small_for_pytorch_costs_the_marks_and_says_why():
    found = cost.memory_limits(ROOT, [4096, 512], ["01"], report=lambda line: None)
    small, default = found["gradings"]  # graded from the smallest limit up
    assert (small["memory_mb"], default["memory_mb"]) == (512, 4096)
    assert default["per_lesson"]["01"]["passed"] == default["per_lesson"]["01"]["exercises"] == 6
    assert "why" not in default["per_lesson"]["01"]
    assert small["per_lesson"]["01"]["passed"] == 0, "PyTorch cannot even be imported in 512 MB of address space"
    assert "MemoryError" in small["per_lesson"]["01"]["why"]
    assert found["least_memory_mb_every_lesson_passes"] == 4096


def test_what_is_recorded_names_no_folder_of_this_machine():
    said = f"ImportError: {sys.prefix}/lib/x.so: failed to map segment; in {ROOT}/exercises/01.ipynb"
    said = cost.without_paths(said)
    assert str(ROOT) not in said and sys.prefix not in said, said
    assert said.startswith("ImportError: ") and "lib/x.so: failed" in said and said.endswith("in exercises/01.ipynb")
    assert cost.without_paths("MemoryError") == "MemoryError"


def test_the_command_writes_what_it_graded_with_its_provenance(tmp_path):
    out = tmp_path / "limits.json"
    command = [sys.executable, "-m", "mha.course", "cost", "--memory-mb", "1024", "--lessons", "01", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "least --memory-mb of those at which every lesson keeps its full marks: 1024" in done.stdout
    found = json.loads(out.read_text())
    assert found["provenance"]["command"].startswith("python -m mha.course cost --memory-mb 1024")
    assert [g["memory_mb"] for g in found["gradings"]] == [1024]
    assert found["least_memory_mb_every_lesson_passes"] == 1024


@pytest.mark.parametrize(
    "options, says",
    [
        (["--memory-mb", "100"], "memory-mb must be at least 512"),
        (["--memory-mb", "1.5"], "a whole number of MiB, got '1.5'"),
        (["--memory-mb", "1024", "--grading"], "give it without --grading"),
    ],
)
def test_bad_limits_are_refused_before_anything_runs(options, says):
    done = subprocess.run(
        [sys.executable, "-m", "mha.course", "cost", *options], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 2 and says in done.stderr, done.stderr
