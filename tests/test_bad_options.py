"""Each command refuses a bad option where it enters, in one line that names it, says what was expected and shows
what arrived, before any work (tests/sweep.py feeds every option; these are the causes it found, one test each)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mha.toy.__main__ as toy
from mha.course import collect, doctor, release
from mha.course.__main__ import main as course
from mha.pretrained.__main__ import main as pretrained
from mha.toy import train, tunnel_vision, what_heads_learn

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _refused(run, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        run(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    return err.split("error: ", 1)[1]


def _no_work(monkeypatch, *owners_and_names):
    for owner, name in owners_and_names:
        monkeypatch.setattr(owner, name, lambda *a, **k: pytest.fail("the work started"))


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_exercises_wants_the_course_folder(make, tmp_path, capsys):
    root = tmp_path / "root"
    if make == "file":
        root.write_text("x")
    elif make == "empty":
        root.mkdir()
    for argv in (["exercises", "--root", str(root)], ["exercises", "--check", "--root", str(root)]):
        said = _refused(course, argv, capsys)  # said nothing (rc 0), or printed ✓ for --check, before
        assert said.startswith(f"--root {root}") and "the course's folder" in said
    assert _refused(course, ["exercises", "--root", ""], capsys).startswith("argument --root: expected some text")


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--hub", "not a url", "argument --hub: expected a web address with http:// or https://"),
        ("--hub", "hub.example.edu", "got 'hub.example.edu'"),
        ("--repo", "host", "argument --repo: expected the address of a git repository"),
        ("--folder", "../elsewhere", "argument --folder: expected a folder inside each home"),
        ("--branch", " ", "argument --branch: expected some text"),
    ],
)
def test_link_refuses_what_would_make_a_broken_link(option, value, words, capsys):
    good = {"--hub": "https://hub.example.edu", "--repo": "git@git.example.edu:you/course.git"}
    argv = ["link", *(x for k, v in {**good, option: value}.items() for x in (k, v)), "--root", str(ROOT)]
    assert words in _refused(course, argv, capsys)
    assert course(["link", *(x for kv in good.items() for x in kv), "--root", str(ROOT)]) == 0  # good ones pass


@pytest.mark.parametrize("version", ["banana", "", "-1"])
def test_doctor_refuses_a_hub_version_that_is_not_one(version, monkeypatch, capsys):
    _no_work(monkeypatch, (doctor, "checks"))  # it advised `pip install jupyterhub==banana` before
    assert "argument --hub: expected a version number such as 5.2.1" in _refused(
        course, ["doctor", "--hub", version], capsys
    )


def test_release_checks_its_root_branch_and_ref_before_touching_git(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, (release, "release"))
    assert "--root missing: no such folder" in _refused(course, ["release", "--root", "missing"], capsys)
    (tmp_path / "plain").mkdir()
    said = _refused(course, ["release", "--root", str(tmp_path / "plain")], capsys)
    assert "is not a git checkout" in said
    said = _refused(course, ["release", "--root", str(ROOT / "mha")], capsys)
    assert "is a folder inside the checkout" in said
    said = _refused(course, ["release", "--root", str(ROOT), "--branch", "a..b"], capsys)
    assert "--branch 'a..b' is not a name git accepts for a branch" in said
    said = _refused(course, ["release", "--root", str(ROOT), "--ref", "no-such-commit"], capsys)
    assert "--ref 'no-such-commit' is not a commit of" in said


def test_merge_checks_the_submissions_folder_before_writing_anything(tmp_path, capsys):
    shard = tmp_path / "shard.csv"
    shard.write_text("student,notebook,lesson,exercise,passed,note,run,flags,answer\nada,01_a.ipynb,01,x,True,,,,\n")
    out = tmp_path / "merged.csv"
    argv = ["grade", "merge", str(shard), "--csv", str(out), "--submissions", str(tmp_path / "missing")]
    said = _refused(course, argv, capsys)
    assert said.startswith(f"--submissions {tmp_path / 'missing'}: no such folder")
    assert not out.exists()  # the CSV was written before the folder was looked at, then a traceback
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    said = _refused(course, ["grade", "merge", str(binary), "--csv", str(out)], capsys)
    assert f"{binary} is not a grades CSV: it is not text" in said  # 'utf-8' codec can't decode, no file named


@pytest.mark.parametrize("hub", ["host", "not a url", "ftp://host/x", "http://"])
def test_collect_refuses_an_address_it_cannot_reach_before_any_connection(hub, tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, (collect, "collect"))
    monkeypatch.setenv("MHA_COLLECT_TOKEN", "token")
    said = _refused(course, ["collect", str(tmp_path / "out"), "--hub", hub], capsys)  # "unknown url type" before
    assert said.startswith("argument --hub: expected a web address") and repr(hub) in said


def test_collect_refuses_a_file_or_the_course_folder_as_where_to_put_the_notebooks(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    hub = ["--hub", "https://hub.example.edu"]
    assert "is a file, not a folder" in _refused(course, ["collect", str(tmp_path / "notes.txt"), *hub], capsys)
    assert "inside the course's own folder" in _refused(
        course, ["collect", str(ROOT / "exercises" / "x"), *hub], capsys
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        (["tunnel-vision", "--lr", "inf"], "argument --lr: expected a finite number above 0, got 'inf'"),  # 2% before
        (["tunnel-vision", "--lr", "nan"], "argument --lr: expected a finite number above 0, got 'nan'"),
        (["heads", "--seeds", "-1"], "argument --seeds/--seed: expected a seed, a whole number of 0 or more, got '-1'"),
        (["heads", "--steps", "1.5"], "argument --steps: expected a whole number, got '1.5'"),
        (["tunnel-vision", "--heads", "3"], "tunnel-vision: d_model=64 is not divisible by heads=3"),
        (["heads", "--heads", "5"], "heads: d_model=64 is not divisible by heads=5"),
        (["tunnel-vision", "--json", ""], "--json '': the file name is empty"),
    ],
)
def test_toy_options_are_refused_before_any_training(argv, words, monkeypatch, capsys):
    _no_work(monkeypatch, (tunnel_vision, "run_all"), (what_heads_learn, "run"), (train, "train"))
    assert words in _refused(toy.main, argv, capsys)


def test_the_training_settings_refuse_what_cannot_train():
    with pytest.raises(ValueError, match="lr must be a finite number above 0, got inf"):
        train.TrainConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="seed must be a whole number of 0 or more, got -1"):
        train.TrainConfig(seed=-1)
    with pytest.raises(ValueError, match="offsets must be distinct positive integers"):
        tunnel_vision.Setting(offsets=(0,))
    with pytest.raises(ValueError, match="lr must be a finite number above 0"):
        what_heads_learn.HeadsSetting(lr=float("nan"))


def test_a_sentence_longer_than_the_model_reads_is_refused_before_loading(monkeypatch, capsys):
    import mha.pretrained.__main__ as command

    _no_work(monkeypatch, (command, "load"))
    said = _refused(pretrained, ["--sentence", "word " * 600], capsys)  # cut to 256 tokens without a word before
    assert said.startswith("--sentence has 602 tokens, more than the 256 the model reads")
    assert "argument --sentence: expected some text" in _refused(pretrained, ["--sentence", "  "], capsys)


def test_the_grader_refuses_an_empty_folder_name_and_an_empty_feedback_name(tmp_path, capsys):
    (tmp_path / "ada").mkdir()
    assert "argument folder: expected some text" in _refused(course, ["grade", ""], capsys)
    said = _refused(course, ["grade", str(tmp_path), "--feedback", ""], capsys)
    assert said.startswith("argument --feedback: expected some text")


def test_every_wing_lists_its_subcommands_in_its_help(capsys):
    for run, words in ((pretrained, ("heads", "kv-pooling", "positions")), (course, ("merge",))):
        with pytest.raises(SystemExit):
            run(["--help"] if run is pretrained else ["grade", "--help"])
        said = capsys.readouterr().out
        assert all(w in said for w in words)
    done = subprocess.run([sys.executable, "-m", "mha.bench", "--help"], capture_output=True, text=True)
    assert "python -m mha.bench mistakes" in done.stdout
