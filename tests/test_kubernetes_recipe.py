"""The guide's Kubernetes recipe for grading (an Indexed Job), checked as printed: its fields, the arithmetic that
gives every pod one shard and every student one pod, the memory it requests against what grading measured, and its
command line, expanded by a shell for every index and run for one of them on a small class.

No Kubernetes cluster runs here: what a cluster would add (scheduling, volumes, the image) is not tested, and the
guide says so."""

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from grading import blank, honest

from mha.course import report
from mha.course.__main__ import main as course

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "notebooks" / "INSTRUCTOR_GUIDE.md"
COST = ROOT / "notebooks" / "results" / "cost.json"


def _recipe() -> tuple[dict, str]:
    """The Job manifest as the guide prints it, and the merge command the guide gives after the Slurm array."""
    text = GUIDE.read_text()
    start = text.index("On Kubernetes (where a JupyterHub runs)")
    manifest = re.search(r"```yaml\n(.*?)```", text[start:], re.S).group(1)
    merge = re.search(r"```bash\n(python -m mha\.course grade merge .*?)\n```", text).group(1)
    return yaml.safe_load(manifest), merge


def _expanded(args: str, index: int) -> list[str]:
    """The grader's command line of pod `index`, as the container's shell expands it."""
    out = subprocess.run(
        ["sh", "-c", 'python() { printf "%s\\n" "$@"; }; ' + args],
        env={"JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity).groups()
    scale = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2, "k": 1e3 / 2**20, "M": 1e6 / 2**20}
    scale.update({"G": 1e9 / 2**20, "T": 1e12 / 2**20, None: 1 / 2**20})
    return float(number) * scale[unit]


def test_the_job_is_indexed_and_every_pod_grades_its_own_shard_of_the_same_cases():
    job, merge = _recipe()
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed", "without it no pod gets JOB_COMPLETION_INDEX"
    pods = spec["completions"]
    assert spec["parallelism"] <= pods and spec["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c"] and len(container["args"]) == 1
    lines = [_expanded(container["args"][0], index) for index in range(pods)]
    for index, argv in enumerate(lines):
        assert argv[:4] == ["-m", "mha.course", "grade", "/submissions"], argv
        assert _option(argv, "--shard") == f"{index}/{pods}", (
            "each pod grades its own share, of as many as there are pods"
        )
        assert _option(argv, "--csv") == f"/grades/shard-{index}.csv"
    seeds = {_option(argv, "--seed") for argv in lines}
    assert len(seeds) == 1, "every shard draws its cases from one seed, so that the merged CSV is one grading"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/submissions"].get("readOnly") is True, "the students' notebooks are never written"
    assert "/grades" in mounts and not mounts["/grades"].get("readOnly")
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes
    # the merge step reads what the pods wrote (the guide: "the merge above on the grades volume")
    assert "grades/shard-*.csv" in merge and all(
        Path(argv[argv.index("--csv") + 1]).match("shard-*.csv") for argv in lines
    )


def test_a_shard_per_pod_grades_every_student_once():
    from mha.course.grade import shard

    job, _ = _recipe()
    pods = job["spec"]["completions"]
    students = [SimpleNamespace(student=f"s{n:03d}") for n in range(37)]
    shares = [shard(students, index, pods) for index in range(pods)]
    graded = sorted(s.student for share in shares for s in share)
    assert graded == [s.student for s in students], "every student in exactly one pod's share"


def test_the_memory_it_requests_holds_the_notebooks_it_runs_at_once_and_the_grader():
    job, _ = _recipe()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    jobs = int(_option(_expanded(container["args"][0], 0), "--jobs"))
    requests = container["resources"]["requests"]
    assert int(requests["cpu"]) == jobs, "one core per notebook graded at once"
    cost = json.loads(COST.read_text())
    notebook = max(e["solved_exercises"]["peak_mb"] for e in cost["lessons"].values())
    grader = cost["grading"]["grader_peak_mb"]
    need = jobs * notebook + grader
    assert _mib(requests["memory"]) >= need, f"{requests['memory']} for {jobs} notebooks and the grader: {need} MB"
    guide = " ".join(GUIDE.read_text().split())
    assert f"needs about {need / 1000:.1f} GB" in guide, f"the guide should say: needs about {need / 1000:.1f} GB"
    # a limit, unlike a request, stops the pod: it must hold every notebook at the most the grader lets it hold
    from mha.course.sandbox import Limits

    classed = max(g["grader_peak_mb"] for g in json.loads((COST.parent / "class.json").read_text())["gradings"])
    limit = -(-(jobs * Limits().most_mb() + classed) // 1024)
    assert f"and the grader, {limit}Gi for these {jobs} jobs" in guide, f"the guide should say {limit}Gi"


@pytest.mark.parametrize("index", [0])
def test_a_pods_command_line_grades_a_class_as_printed(index, tmp_path, monkeypatch):
    job, _ = _recipe()
    pods = job["spec"]["completions"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    argv = _expanded(container["args"][0], index)
    submissions, grades = tmp_path / "submissions", tmp_path / "grades"
    grades.mkdir()
    honest(submissions / "ada" / "01_attention_from_scratch.ipynb")
    blank(submissions / f"s{pods:03d}" / "01_attention_from_scratch.ipynb")
    argv = [a.replace("/submissions", str(submissions)).replace("/grades", str(grades)) for a in argv[2:]]
    assert course(argv) == 0
    rows = report.from_csv((grades / f"shard-{index}.csv").read_text(encoding="utf-8-sig"))
    assert {r["student"] for r in rows} == {"ada"}, "shard 0 of 10 holds the first student in name order only"
    assert all(r["passed"] for r in rows)
