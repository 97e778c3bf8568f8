"""`python -m mha.course doctor`: every check passes in the course's environment, and a missing piece is reported."""

from mha.course import doctor
from mha.course.__main__ import main as course


def test_the_course_environment_is_ready(capsys):
    assert course(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ready for the course" in out and "✗" not in out


def test_a_missing_kernel_and_a_wrong_pin_are_reported(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "KERNEL", "no-such-kernel")
    monkeypatch.setattr(doctor, "_requirements", lambda: {"torch": "0.0.1"})
    assert course(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "✗ Jupyter kernel 'no-such-kernel' is missing" in out
    assert "requirements.txt pins 0.0.1" in out
    assert "2 problem(s)" in out
