"""`python -m mha.course doctor`: every check passes in the course's environment, and a missing piece is reported."""

from pathlib import Path

import pytest

from mha.course import doctor
from mha.course.__main__ import main as course
from mha.pretrained import encoder

ROOT = Path(__file__).resolve().parents[1]


def test_the_course_environment_is_ready(capsys):
    assert course(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ready for the course" in out and "✗" not in out
    assert "lesson 05's reference outputs" in out and "the kernel imports this mha" in out


def test_the_pins_come_from_the_installed_package_and_match_the_student_requirements():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements-student.txt").read_text().splitlines()]
    pinned = {}
    for line in filter(None, lines):
        requirement, _, marker = line.partition(";")
        if doctor._applies(marker.strip()):
            name, version = requirement.strip().lower().split("==")
            pinned[name] = version
    assert doctor._requirements() == pinned
    assert "pytest" not in pinned and "ruff" not in pinned and "nbval" not in pinned, "students need no test tools"


def test_a_pin_for_another_platform_is_not_asked_for():
    assert doctor._applies('sys_platform == "no-such-platform"') is False
    assert doctor._applies("") is True
    here = doctor._applies('sys_platform == "linux" and platform_machine == "x86_64"')
    assert ("triton" in doctor._requirements()) == here  # lesson 10's Triton: Linux on x86-64 only


def test_a_missing_kernel_and_a_wrong_pin_are_reported(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "KERNEL", "no-such-kernel")
    monkeypatch.setattr(doctor, "_requirements", lambda: {"torch": "0.0.1"})
    assert course(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "✗ Jupyter kernel 'no-such-kernel' is missing" in out
    assert "(the course pins 0.0.1)" in out
    assert "2 problem(s)" in out


def test_an_installation_without_the_package_data_is_not_ready(monkeypatch, capsys):
    # what a `pip install .` that left lesson 05's reference file behind looks like
    def missing():
        raise FileNotFoundError("the reference outputs .../data/minilm_reference.safetensors are missing")

    monkeypatch.setattr(encoder, "reference_file", missing)
    monkeypatch.setattr(doctor, "_requirements", lambda: {})
    assert course(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "✗ lesson 05's reference outputs: the reference outputs" in out
    assert "✗ the package mha declares no pinned versions" in out


@pytest.mark.parametrize("version", ["0.0.1"])
def test_a_hub_image_needs_jupyterhub_at_the_hubs_version(version, capsys):
    assert course(["doctor", "--hub", version]) == 1
    out = capsys.readouterr().out
    assert f"jupyterhub=={version}" in out


def test_run_inside_the_course_folder_it_says_it_checked_the_folder_not_the_installed_copy(
    tmp_path, monkeypatch, capsys
):
    # an image build that runs the doctor in the clone: Python imports the clone's mha, while the notebooks get
    # the copy installed elsewhere (here a stand-in copy on sys.path)
    (tmp_path / "mha").mkdir()
    (tmp_path / "mha" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(ROOT)
    ok, what = doctor._package()
    assert not ok and "run the doctor from another folder" in what and str(tmp_path) in what
    monkeypatch.chdir(tmp_path.parent)
    assert doctor._package()[0]


def test_a_hub_image_carries_the_solutions_fingerprints_for_grading(monkeypatch):
    from mha.course import answers

    ok, what = doctor._fingerprints()
    assert ok and what.startswith("the solutions' fingerprints for grading, lessons 01 to")
    monkeypatch.setattr(answers, "_shipped", lambda: {})  # an image built without them
    ok, what = doctor._fingerprints()
    assert not ok and "ships no fingerprints of the solutions of lesson 01" in what
