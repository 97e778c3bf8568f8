"""The lessons' trainings, run once per grading from the course's solutions and read back by every notebook.

`mha._trained.once` marks a course function (lesson 02's, 04's and 07's trainings); the grader records them from the
solutions notebook of each lesson it grades (`mha.course.trained`) into a folder every notebook reads and none can
change. What is judged is unchanged (the class is graded as it expects); what it costs falls.
"""

import dataclasses
import json
import os

import pytest
import torch
from grading import LESSON01, honest, sandbox_or_skip

from mha import _trained
from mha.course import classroom, grade, report, trained
from mha.course.exercises import ROOT


@dataclasses.dataclass(frozen=True)
class Plan:
    size: int = 3
    name: str = "a"
    parts: tuple = (1, 2)


@dataclasses.dataclass(frozen=True)
class Twin:  # Plan's fields under another name: another call
    size: int = 3
    name: str = "a"
    parts: tuple = (1, 2)

    def __repr__(self):
        return "Plan(size=3, name='a', parts=(1, 2))"


class Counter:
    calls = 0


@_trained.once()
def train(plan: Plan, seed: int = 0, progress: bool = True) -> dict:
    Counter.calls += 1
    return {"weights": torch.full((int(plan.size) % 7 + 1,), float(seed)), "seed": seed}


@_trained.once()
def train_with_the_global_generator(size: int) -> torch.Tensor:
    Counter.calls += 1
    return torch.randn(size)


def _calls(fn, *args, **kwargs) -> int:
    before = Counter.calls
    fn(*args, **kwargs)
    return Counter.calls - before


def test_outside_a_grading_a_marked_function_is_the_function(monkeypatch):
    monkeypatch.delenv(_trained.FOLDER, raising=False)
    assert _calls(train, Plan(), 1) == 1 and _calls(train, Plan(), 1) == 1
    assert train.__name__ == "train" and train.__wrapped__ is not None


def test_a_recorded_call_is_read_back_and_any_other_call_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(_trained.FOLDER, str(tmp_path))
    monkeypatch.setenv(_trained.RECORD, "1")
    recorded = train(Plan(), 2, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    monkeypatch.delenv(_trained.RECORD)
    assert _calls(train, Plan(), 2) == 0, "the same call (the progress bar aside) is read back"
    assert _calls(train, plan=Plan(), seed=2) == 0, "keywords or positions: the same call"
    back = train(Plan(), 2)
    assert torch.equal(back["weights"], recorded["weights"]) and back is not recorded
    back["weights"] += 1  # each read is a fresh copy: changing one changes no later one
    assert torch.equal(train(Plan(), 2)["weights"], recorded["weights"])
    others = [(Plan(), 3), (Plan(size=4), 2), (Plan(name="b"), 2), (Plan(parts=(1, 3)), 2), (Plan(parts=[1, 2]), 2)]
    others += [(Twin(), 2), (Plan(size=3.0), 2), (Plan(size=True), 2)]
    for other in others:
        assert _calls(train, *other) == 1, f"{other} was not recorded: it must run"


@pytest.mark.parametrize(
    "args",
    [
        (Plan(parts=(torch.ones(2),)), 0),  # a tensor's repr elides its values
        (Plan(size=10**5000), 0),  # a number with no text (Python refuses its repr)
        (Plan(parts=(object(),)), 0),  # an object's repr says nothing of it
    ],
)
def test_calls_whose_arguments_are_not_plain_data_are_never_saved(tmp_path, monkeypatch, args):
    monkeypatch.setenv(_trained.FOLDER, str(tmp_path))
    monkeypatch.setenv(_trained.RECORD, "1")
    train(*args)
    assert list(tmp_path.iterdir()) == []


def test_a_call_that_moves_the_global_random_state_is_never_saved(tmp_path, monkeypatch):
    monkeypatch.setenv(_trained.FOLDER, str(tmp_path))
    monkeypatch.setenv(_trained.RECORD, "1")
    train_with_the_global_generator(3)
    assert list(tmp_path.iterdir()) == [], "reading it back would leave the notebook's random state elsewhere"


def test_the_courses_trainings_are_marked_and_keyed_by_plain_settings():
    from mha.decoding import writer
    from mha.toy import tunnel_vision, what_heads_learn

    for fn, setting in [
        (tunnel_vision.run, tunnel_vision.Setting(heads=4)),
        (what_heads_learn.train_model, what_heads_learn.HeadsSetting(heads=4)),
        (writer.train_writer, writer.WriterSetting(steps=200)),
    ]:
        assert getattr(fn, "trained_once", False), fn.__qualname__
        _trained._encoded(setting)  # plain data (else it raises), or every notebook would train again
        assert fn.__name__ in trained.marked_functions()


def test_a_lesson_is_recorded_only_where_it_pays(tmp_path):
    training = {n for n in ("02", "04", "07") if trained.calls_a_marked_function(trained.solutions_notebook(ROOT, n))}
    assert training == {"02", "04", "07"}
    assert not trained.calls_a_marked_function(trained.solutions_notebook(ROOT, "01")), "lesson 01 trains nothing"
    saved = trained.Trainings(tmp_path / "trained", ROOT, 60, lessons={"02"})
    saved.prepare("01")  # trains nothing: no recording
    saved.prepare("04")  # one notebook of it is graded: it pays for its own training
    assert saved.seconds == {} and list(saved.folder.iterdir()) == []


def _prober() -> str:
    """A cell that keeps lesson 01's answers only if the trainings' folder is there, readable, and cannot be changed."""
    return """
import os
folder = os.environ.get("MHA_TRAINED")
changed = []
if folder is None or not os.path.isdir(folder):
    changed.append("no folder")
else:
    os.listdir(folder)
    attempts = [lambda: open(os.path.join(folder, "evil.pt"), "wb").write(b"x"),
                lambda: os.mkdir(os.path.join(folder, "sub")),
                lambda: os.chmod(folder, 0o777)]
    for name in os.listdir(folder):
        attempts.append(lambda name=name: open(os.path.join(folder, name), "ab").write(b"x"))
        attempts.append(lambda name=name: os.rename(os.path.join(folder, name), os.path.join(folder, "x")))
        attempts.append(lambda name=name: os.unlink(os.path.join(folder, name)))
    for attempt in attempts:
        try:
            attempt()
            changed.append(attempt)
        except OSError:
            pass
if changed:
    scores = None  # the folder could be changed: this student loses the marks, and the test sees it
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["bwrap", "uid"])
def test_a_notebook_reads_the_trainings_and_cannot_change_them(tmp_path, isolation):
    mode = sandbox_or_skip(isolation)
    if mode != isolation:
        pytest.skip(f"{isolation} is not available here")
    folder = tmp_path / "class"
    classroom.build(folder, 2, 0, ROOT, ["02"])  # lesson 02 first: its training is saved when the prober runs
    for name in ("prober", "zprober"):
        honest(folder / name / LESSON01, _prober())
    done = grade.grade(folder, jobs=2, seed=0, isolation=isolation, progress=False)
    rows = {(r["student"], r["exercise"]): r for r in done.rows}
    for name in ("prober", "zprober"):
        assert rows[name, "scores"]["passed"], rows[name, "scores"]
    assert done.recorded_cpu.get("02", 0) > 0


@pytest.mark.slow
def test_the_lessons_that_train_cost_a_notebook_a_fraction_of_their_training_and_judge_the_same(tmp_path):
    sandbox_or_skip()
    folder = tmp_path / "class"
    plan = classroom.build(folder, 3, 0, ROOT, ["02", "04", "07"])
    done = grade.grade(folder, jobs=2, seed=0, progress=False)
    assert classroom.compare(plan, report.from_csv(report.to_csv(done.rows))) == []
    training = {"02", "04", "07"}
    assert set(done.recorded_cpu) == training and all(done.recorded_cpu[lesson] > 3 for lesson in training)
    runs_the_training = [
        (key, cpu)
        for key, cpu in done.cpu.items()
        if plan["notebooks"][f"{key[0]}/{key[1]}"]["way"] in ("solved", "wrong", "partly", "blank")
    ]
    assert runs_the_training, json.dumps(plan["notebooks"], indent=1)
    for (student, notebook), cpu in runs_the_training:
        assert cpu < done.recorded_cpu[notebook[:2]] / 2, f"{student}/{notebook} trained again: {cpu:.1f} CPU s"


def test_solutions_others_could_change_are_never_run(tmp_path):
    """The grader runs the course's solutions outside the sandbox: only a notebook that no other user could change or
    swap (nor the folders above it) is run; otherwise every notebook trains for itself, and the grading says why."""
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    copy = course / "solutions" / "04_what_heads_learn.ipynb"
    copy.write_bytes(trained.solutions_notebook(ROOT, "04").read_bytes())
    os.chmod(copy, 0o644)
    for folder in (tmp_path, course, course / "solutions"):
        os.chmod(folder, 0o755)
    assert trained.changeable_by_others(copy) == ""
    for what, change, says in [
        (course / "solutions", 0o775, "may be written by others (mode 775)"),
        (copy, 0o646, "may be written by others (mode 646)"),
    ]:
        os.chmod(what, change)
        saved = trained.Trainings(tmp_path / f"trained{change:o}", course, 60)
        saved.prepare("04")
        assert saved.seconds == {} and list(saved.folder.iterdir()) == []
        assert len(saved.warnings) == 1 and says in saved.warnings[0] and "lesson 04" in saved.warnings[0]
        os.chmod(what, 0o755 if what.is_dir() else 0o644)
    if os.geteuid() == 0:
        os.chown(copy, 12345, 12345)
        assert "belongs to user 12345" in trained.changeable_by_others(copy)
        os.chown(copy, 0, 0)
    os.chmod(course, 0o1777)  # a folder all may write to protects what it holds only with its sticky bit
    assert trained.changeable_by_others(copy) == ""
    os.chmod(course, 0o777)
    assert f"{course} may be written by others" in trained.changeable_by_others(copy)


def test_a_recording_that_fails_or_runs_too_long_costs_speed_and_says_so(tmp_path, monkeypatch):
    slow = trained.Trainings(tmp_path / "slow", ROOT, 0.5)
    slow.prepare("04")  # its training takes seconds: stopped at 0.5 s
    assert list(slow.folder.iterdir()) == []
    assert len(slow.warnings) == 1 and "ran past 0.5 s" in slow.warnings[0], slow.warnings

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trained, "record", broken)
    full = trained.Trainings(tmp_path / "full", ROOT, 60)
    full.prepare("04")  # raises nothing: the notebooks of lesson 04 train for themselves
    assert "failed (OSError: [Errno 28] No space left on device)" in full.warnings[0]


def test_a_save_that_fails_returns_the_result_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(_trained.FOLDER, str(tmp_path))
    monkeypatch.setenv(_trained.RECORD, "1")

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_room)
    assert train(Plan(), 5)["seed"] == 5
    assert list(tmp_path.iterdir()) == []


def test_jobs_that_reach_a_lesson_during_its_recording_wait_for_it(tmp_path, monkeypatch):
    import threading
    import time

    ended, calls = [], []

    def slow_record(notebook, folder, timeout):
        calls.append(notebook)
        time.sleep(0.5)
        ended.append(time.monotonic())
        return 1.0, ""

    monkeypatch.setattr(trained, "record", slow_record)
    saved = trained.Trainings(tmp_path / "trained", ROOT, 60)
    returned = []

    def job():
        saved.prepare("04")
        returned.append(time.monotonic())

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1, "one recording per lesson"
    assert len(returned) == 3 and min(returned) >= ended[0], "no notebook of the lesson starts before it is recorded"
