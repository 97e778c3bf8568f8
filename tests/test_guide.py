"""The instructor guide's plans, weights and figures, checked against the notebooks and the recordings.

Every lesson's minutes and exercise counts are read from the committed notebooks; in each plan, every meeting's
minutes add up to 90, the minutes given to lessons and exercises are the notebooks', every exercise of every lesson
is done exactly once, and each homework's total is the sum of its parts. A lesson named in the guide whose notebook is
not there yet has a row marked for its author to fill. The sizing and grading figures come from
`notebooks/results/cost.json` and `notebooks/results/hub.json`.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

from mha.course import answers, judging
from mha.course.sandbox import SCRATCH_MB, Limits

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "notebooks" / "INSTRUCTOR_GUIDE.md"
TO_FILL = "**To be filled by lesson"
HEADER = re.compile(r"^#+ Exercise (\d+) · .+\n.*\*\*About (\d+) minutes\*\*", re.MULTILINE)


def _lessons() -> dict[str, dict]:
    """lesson -> {"minutes": the lesson's, "exercises": [minutes of each exercise, in order]}, from the notebooks."""
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        opening = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
        minutes = int(re.search(r"About (\d+) minutes", opening).group(1))
        exercise = nbformat.read(ROOT / "exercises" / path.name, as_version=4)
        found = [h for c in exercise.cells if c.cell_type == "markdown" for h in HEADER.findall(c.source)]
        assert [int(n) for n, _ in found] == list(range(1, len(found) + 1)), f"{path.name}: exercise headers"
        out[path.name[:2]] = {"minutes": minutes, "exercises": [int(m) for _, m in found]}
    return out


LESSONS = _lessons()
COUNT = {10: "ten", 11: "eleven", 12: "twelve"}[len(LESSONS)]  # how the guide names the number of lessons


def _section(title: str, level: str = "##") -> str:
    text = GUIDE.read_text()
    start = text.index(f"\n{level} {title}\n")
    ends = [i for i in (text.find("\n## ", start + 1), text.find(f"\n{level} ", start + 1)) if i > 0]
    return text[start : min(ends) if ends else len(text)]


def _table(part: str) -> list[list[str]]:
    """The rows of the first table in `part` (its header and rule left out)."""
    lines = part.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_lessons_table_states_each_lessons_minutes_and_exercises_from_the_notebooks():
    rows = {row[0]: row for row in _table(_section("Lessons at a glance"))}
    for lesson, facts in LESSONS.items():
        row = rows.pop(lesson)
        count = len(facts["exercises"])
        assert row[3] == f"{facts['minutes']} min", f"lesson {lesson}'s minutes"
        assert row[4] == f"{sum(facts['exercises'])} min ({count} exercises)", f"lesson {lesson}'s exercises"
        assert count == len(judging.exercise_names(lesson)), f"lesson {lesson}: headers and checks disagree"
    assert all(TO_FILL in " ".join(row) for row in rows.values()), f"rows without a notebook: {sorted(rows)}"
    lessons = sum(f["minutes"] for f in LESSONS.values())
    exercises = sum(sum(f["exercises"]) for f in LESSONS.values())
    total = f"{lessons} minutes of lessons and {exercises} of exercises, {lessons + exercises:,} minutes"
    assert total in " ".join(_section("Lessons at a glance").split())


_ITEM = re.compile(r"(lesson|exercises?) (\d\d)(?:\.(\d+)(?:–\d\d\.(\d+))?)?[^;()]*?\((\d+) min\)")


def _items(cell: str) -> list[tuple[str, str, list[int], int]]:
    """(kind, lesson, exercise numbers, minutes) of each item of a plan's cell; kind "other" for the rest."""
    out = []
    for part in cell.split(";"):
        part = part.strip().removesuffix(":").strip()
        if not part or part == "none":
            continue
        part = re.sub(r": \d+ min$", "", part)
        found = _ITEM.match(part)
        minutes = int(re.search(r"\((\d+) min\)", part).group(1))
        if not found:
            out.append(("other", "", [], minutes))
        elif found.group(1) == "lesson":
            out.append(("lesson", found.group(2), [], minutes))
        else:
            first = int(found.group(3))
            last = int(found.group(4) or first)
            out.append(("exercises", found.group(2), list(range(first, last + 1)), minutes))
    return out


@pytest.mark.parametrize("plan", ["A two-week module", "A one-week intensive"])
def test_each_plans_minutes_add_up_and_every_exercise_is_done_once(plan):
    part = _section(plan, "###")
    done: dict[str, list[int]] = {lesson: [] for lesson in LESSONS}
    seen, in_class, homework = set(), 0, 0
    for row in _table(part):
        if TO_FILL in " ".join(row):
            continue
        meeting, work = _items(row[2]), _items(row[3])
        assert sum(m for *_, m in meeting) == 90, f"{plan}, {row[:2]}: the meeting's minutes"
        for kind, lesson, _, minutes in meeting:
            if kind == "lesson":
                assert minutes <= LESSONS[lesson]["minutes"], f"{plan}: lesson {lesson} presented in {minutes} min"
        for kind, lesson, numbers, minutes in meeting + work:
            if kind == "exercises":
                wanted = sum(LESSONS[lesson]["exercises"][n - 1] for n in numbers)
                assert minutes == wanted, f"{plan}: exercises {lesson}.{numbers} take {wanted} min"
                done[lesson] += numbers
            if kind == "lesson":
                seen.add(lesson)
        for kind, lesson, _, minutes in work:
            if kind == "lesson":
                assert minutes == LESSONS[lesson]["minutes"], f"{plan}: lesson {lesson} as homework"
        stated = re.search(r": (\d+) min$", row[3].strip())
        assert (stated is None and row[3] == "none") or int(stated.group(1)) == sum(m for *_, m in work), row[3]
        in_class += 90
        homework += sum(m for *_, m in work)
    for lesson, numbers in done.items():
        assert sorted(numbers) == list(range(1, len(LESSONS[lesson]["exercises"]) + 1)), f"{plan}: lesson {lesson}"
    assert seen == set(LESSONS), f"{plan}: lessons never presented nor read: {set(LESSONS) - seen}"
    summary = f"{in_class} minutes in class and {homework} of homework, {in_class + homework:,} minutes"
    assert summary in " ".join(part.split()), f"{plan}: say {summary}"
    for row in _table(part):
        if TO_FILL in " ".join(row):
            assert not any(f"lesson {n}" in " ".join(row) for n in LESSONS), f"{plan}: {row[1]} has landed: plan it"


def test_the_workshop_sessions_minutes_run_from_0_to_90():
    part = _section("A two-session workshop", "###")
    for session in part.split("**Session")[1:]:
        spans = [tuple(map(int, row[0].split("–"))) for row in _table(session)]
        assert spans[0][0] == 0 and spans[-1][1] == 90
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_the_weights_are_the_importance_of_each_exercise():
    rows = {row[0]: row for row in _table(_section("Assessing the work"))}
    for lesson in LESSONS:
        headers = answers.shipped_headers(lesson)
        stars = [
            headers[judging.exercise(lesson, name).function]["importance"] for name in judging.exercise_names(lesson)
        ]
        row = rows.pop(lesson)
        assert row[1] == ", ".join(map(str, stars)) and row[2] == str(sum(stars)), f"lesson {lesson}'s weights"
    assert all(TO_FILL in " ".join(row) for row in rows.values())


# ------------------------------------------------------------------------------------------- sizing and grading

COST = ROOT / "notebooks" / "results" / "cost.json"
HUB = ROOT / "notebooks" / "results" / "hub.json"
CLASSES = (40, 200)


def sizing_table() -> str:
    """The guide's sizing table, computed from the recordings: each lesson's Run All by a whole class at once."""
    cost, hub = json.loads(COST.read_text()), json.loads(HUB.read_text())
    server = hub["memory_mb"]["students"]["ada"]["server_mb"]
    lines = [
        "| lesson | one Run All: CPU s | its processes' peak | "
        + " | ".join(f"{n} students at once: memory, CPU" for n in CLASSES)
        + " |",
        "|---|---|---|" + "---|" * len(CLASSES),
    ]
    for lesson, entry in cost["lessons"].items():
        run = entry["lesson"]
        cells = [f"{run['cpu_seconds']:.1f}", f"{run['peak_mb']:,} MB ({run['processes_at_once']} processes)"]
        for n in CLASSES:
            gb = n * (server + run["peak_mb"]) / 1000
            cells.append(f"{gb:,.0f} GB, {n * run['cpu_seconds'] / 60:,.0f} CPU min")
        lines.append(f"| {lesson} | " + " | ".join(cells) + " |")
    return "\n".join(lines).replace("(1 processes)", "(1 process)")


def grading_figures() -> dict:
    cost = json.loads(COST.read_text())
    graded = cost["grading"]["per_lesson"]
    per_student = sum(m["cpu_seconds"] for m in graded.values())
    return {"per_student": per_student, "lessons": graded, "grader_mb": cost["grading"]["grader_peak_mb"]}


def test_the_sizing_table_is_the_recordings():
    cost = json.loads(COST.read_text())
    assert sorted(cost["lessons"]) == sorted(LESSONS), "cost.json measures every lesson: re-run its command"
    assert all(
        e["lesson"]["error"] is None and e["solved_exercises"]["error"] is None for e in cost["lessons"].values()
    )
    assert sizing_table() in GUIDE.read_text(), "the guide's sizing table, as this test computes it:\n" + sizing_table()


def sizing_summary() -> str:
    """The guide's plan for a class: memory with every student on the heaviest lesson, cores for its Run All."""
    cost, hub = json.loads(COST.read_text()), json.loads(HUB.read_text())
    server = hub["memory_mb"]["students"]["ada"]["server_mb"]
    lessons = cost["lessons"]
    heavy = max(lessons, key=lambda x: lessons[x]["lesson"]["peak_mb"])
    busy = max(lessons, key=lambda x: lessons[x]["lesson"]["cpu_seconds"])
    exercises = max(e["solved_exercises"]["peak_mb"] for e in lessons.values())
    student = server + lessons[heavy]["lesson"]["peak_mb"] + exercises
    lines = [
        "| class | memory, every student in lesson " + heavy + " and an exercise notebook | cores for lesson " + busy
        + "'s Run All by all in 2 minutes | grading all " + COUNT + " lessons, CPU |",
        "|---|---|---|---|",
    ]  # fmt: skip
    per_student = grading_figures()["per_student"]
    for n in CLASSES:
        gb = n * student / 1000
        cores = -(-n * lessons[busy]["lesson"]["cpu_seconds"] // 120)
        lines.append(f"| {n} students | {gb:,.0f} GB | {cores:.0f} | {n * per_student / 60:,.0f} CPU min |")
    table = "\n".join(lines)
    return (
        f"one student at lesson {heavy}'s peak with an exercise notebook open holds up to {student:,} MB "
        f"({server} + {lessons[heavy]['lesson']['peak_mb']:,} + {exercises}: the server, the lesson's processes, "
        f"the largest exercise notebook's)\n\n{table}"
    )


def test_the_sizing_for_a_class_is_computed_from_the_recordings():
    text = " ".join(GUIDE.read_text().split())
    first, table = sizing_summary().split("\n\n")
    assert first in text, "the guide must say: " + first
    assert table in GUIDE.read_text(), "the guide's class table, as this test computes it:\n" + table
    graded = grading_figures()
    for lesson, m in graded["lessons"].items():
        assert m["passed"] == m["exercises"], f"the solved exercises of lesson {lesson} must all pass"
    quoted = f"{graded['per_student']:.1f} CPU seconds per student for all {COUNT} lessons"
    assert quoted in text and f"peaked at {graded['grader_mb']} MB" in text
    cpus = [m["cpu_seconds"] for m in graded["lessons"].values()]
    assert f"a notebook took {min(cpus):.1f} to {max(cpus):.1f} CPU seconds" in text
    lessons = json.loads(COST.read_text())["lessons"]
    exercises = max(e["solved_exercises"]["peak_mb"] for e in lessons.values())
    assert f"a solved exercise notebook's processes hold at most {exercises} MB" in text


def _check_messages() -> list[list[str]]:
    """Every string the exercise checks can print, as its literal pieces (an f-string's fields lie between them)."""
    import ast

    found = []
    for path in sorted((ROOT / "mha" / "checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                pieces = [""]
                for value in node.values:
                    if isinstance(value, ast.Constant):
                        pieces[-1] += value.value
                    else:
                        pieces.append("")
                found.append(pieces)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append([node.value])
    return found


def _inside(text: str, pieces: list[str]) -> bool:
    """Whether `text` is part of some message made of these literal pieces, with anything between them."""

    def after_field(rest: str, pieces: list[str]) -> bool:  # `rest` starts where a field does
        for k in range(len(rest) + 1):
            tail = rest[k:]
            if pieces[0].startswith(tail):
                return True
            if len(pieces) > 1 and tail.startswith(pieces[0]) and after_field(tail[len(pieces[0]) :], pieces[1:]):
                return True
        return False

    for i, piece in enumerate(pieces):
        for start in range(len(piece)):
            tail = piece[start:]
            if tail.startswith(text):
                return True
            if i + 1 < len(pieces) and text.startswith(tail) and after_field(text[len(tail) :], pieces[i + 1 :]):
                return True
    return False


def test_every_message_the_misconceptions_table_quotes_is_a_checks_message():
    part = _section("Misconceptions, and how the checks catch them")
    messages = _check_messages()
    missing = []
    for row in _table(part):
        for quote in re.findall(r'"([^"]+)"', row[-1]):
            for fragment in (f.strip(" ,") for f in quote.split("...")):
                if fragment and not any(_inside(fragment, pieces) for pieces in messages):
                    missing.append(f"{row[1]}: {fragment}")
    assert missing == [], "quoted in the guide, but no check says it:\n" + "\n".join(missing)


def test_the_graders_memory_for_an_honest_class_is_under_half_the_bound_the_hostile_class_is_held_to():
    text = " ".join(GUIDE.read_text().split())
    bound = re.search(r"the grader's own memory stays under ([0-9]+) MB whatever a notebook sends", text)
    assert bound and "for a class of honest students it stays under half of that" in text
    peaks = [g["grader_peak_mb"] for g in json.loads(CLASS.read_text())["gradings"]]
    assert max(peaks) < int(bound.group(1)) / 2, peaks
    attacks = (ROOT / "tests" / "test_grade_attacks.py").read_text()
    assert f"assert peak < {bound.group(1)}," in attacks  # the bound the guide states is the one the test holds


def test_the_time_an_endless_answer_costs_is_its_checks_limit():
    from mha.checks import framework

    limits = {}
    for (lesson, _), exercise in framework.load_all().items():
        if exercise.time_limit != framework.DEFAULT_TIME_LIMIT:
            limits.setdefault(lesson, set()).add(exercise.time_limit)
    assert list(limits) == ["10"] and limits["10"] == {30.0}, limits  # as the guide says, or say it anew
    text = " ".join(GUIDE.read_text().split())
    said = f"time limit in the grader's call ({framework.DEFAULT_TIME_LIMIT:g} s; {30.0:g} s for lesson 10's kernel"
    assert said in text


def test_the_slow_run_the_guide_quotes_is_the_hub_tests():
    hub = json.loads(HUB.read_text())
    seconds = hub["step_seconds"]["ada: 05_heads_in_a_real_model, Run All"]
    text = " ".join(GUIDE.read_text().split())
    said = f"at a load average of {hub['load_average_1min_at_end']:.0f}, lesson 05's Run All took {seconds} s"
    assert said in text


# ------------------------------------------------------------------------------------------- a whole class, measured

CLASS = ROOT / "notebooks" / "results" / "class.json"
# A MOOC on paper: (students, nodes, cores per node), each node one shard of a Slurm array graded with --jobs cores.
MOOC = ((300, 1, 16), (1_000, 4, 16), (10_000, 10, 32), (10_000, 50, 32))


def _gib(jobs: int, per_notebook_mb: int, grader_mb: int) -> int:
    """What a job grading `jobs` notebooks at once asks for, in GiB rounded up: the notebooks and the grader."""
    return -(-(jobs * per_notebook_mb + grader_mb) // 1024)


def class_figures() -> dict:
    """What `python -m mha.course class measure` recorded, as the guide states it: a sentence and two tables."""
    found = json.loads(CLASS.read_text())
    by_jobs = {g["jobs"]: g for g in found["gradings"]}
    assert all(g["as_expected"] for g in by_jobs.values()), "class.json: a grading that was not as the class expects"
    ways = ", ".join(f"{n} {way}" for way, n in found["ways"].items())
    walls = " and ".join(f"{g['wall_seconds'] / 60:.1f} minutes with `--jobs {n}`" for n, g in sorted(by_jobs.items()))
    last = by_jobs[max(by_jobs)]
    recording = last.get("recording_cpu_seconds", 0.0)  # the lessons' trainings, run once from the solutions
    trainings = last.get("recording_cpu_seconds_per_lesson", {})
    sentence = (
        f"A class of {found['students']} students × {len(found['lessons'])} lessons, {found['notebooks']} notebooks "
        f"({ways}), was graded in {walls} on {found['cpus']} cores, at a load average of "
        f"{found['load_average_1min_at_start']:.1f} at the start and {found['load_average_1min_at_end']:.1f} at the "
        f"end; with `--jobs {last['jobs']}`, {last['cpu_seconds'] - recording:,.0f} CPU seconds in the notebooks' "
        f"processes and {recording:.0f} in "
        f"running the lessons' trainings once from the solutions (lessons "
        + ", ".join(f"{lesson}: {seconds:.1f}" for lesson, seconds in trainings.items())
        + f"), {last['cpu_seconds_per_notebook']:.2f} per notebook in all; the grader's own memory peaked at "
        f"{last['grader_peak_mb']} MB and a notebook's processes at {last['notebook_peak_mb']} MB"
    )
    lines = [
        "| lesson | notebooks | CPU s per notebook: mean | solved | most | a notebook's memory, peak |",
        "|---|---|---|---|---|---|",
    ]
    for lesson, m in last["per_lesson"].items():
        solved = "–" if m["cpu_seconds_solved_mean"] is None else f"{m['cpu_seconds_solved_mean']:.1f}"
        lines.append(
            f"| {lesson} | {m['notebooks']} | {m['cpu_seconds_mean']:.1f} | {solved} | {m['cpu_seconds_max']:.1f} | "
            f"{m['notebook_peak_mb']} MB |"
        )
    # the rates as the guide prints them, so that a reader who recomputes the table from them gets the table
    per_student = round(sum(m["cpu_seconds_mean"] for m in last["per_lesson"].values()), 1)
    stretch = round(last["wall_seconds"] * last["jobs"] / last["cpu_seconds"], 2)  # job-seconds per CPU second
    recording = round(recording)
    memory = max(m["notebook_peak_mb"] for m in last["per_lesson"].values())
    mooc = [
        "| students × lessons | CPU-hours | shards × `--jobs` (nodes × cores) | wall time | `--mem` per shard: "
        "measured (every notebook at its limit) |",
        "|---|---|---|---|---|",
    ]
    for students, nodes, cores in MOOC:
        cpu = students * per_student + nodes * recording  # each shard runs the lessons' trainings once
        wall = cpu * stretch / (nodes * cores)
        mem = _gib(cores, memory, last["grader_peak_mb"])
        most = _gib(cores, Limits().most_mb(), last["grader_peak_mb"])
        mooc.append(
            f"| {students:,} × {len(found['lessons'])} | {cpu / 3600:,.1f} | {nodes} × {cores} | "
            f"{wall / 60:,.0f} min | {mem:.0f}G ({most:.0f}G) |"
        )
    mooc_sentence = (
        f"{per_student:.1f} CPU seconds per student for all {len(found['lessons'])} lessons (the sum of the lessons' "
        f"means above), {recording:.0f} CPU seconds per shard for the lessons' trainings, and {stretch:.2f} seconds "
        f"of a job's time per CPU second (waiting on endless answers, starting processes)"
    )
    guide = GUIDE.read_text()
    array = re.search(r"#SBATCH --cpus-per-task=(\d+)\n#SBATCH --mem=(\d+)G", guide)
    cpus, asked = int(array.group(1)), int(array.group(2))
    assert asked == _gib(cpus, Limits().most_mb(), last["grader_peak_mb"]), "the job array's --mem"
    per_hour = int((3600 * cpus / stretch - recording) / per_student) // 10 * 10
    sizing = (
        f"`--jobs` times {Limits().most_mb():,} MB (its processes at `--memory-mb`, {Limits().memory_mb:,} MB unless "
        f"you lower it, and its memory file systems full: its home at `--disk-mb`, {Limits().disk_mb} MB, and "
        f"{SCRATCH_MB} MB each for `/tmp`, `/var/tmp` and `/dev/shm`, which a batch system counts too) and the grader, "
        f"rounded up to GiB. Slurm stops a job that passes its `--mem`, the grader and honest notebooks with it, so "
        f"give a shard the second figure, or lower `--memory-mb` until it fits (the job array below asks for "
        f"{asked}G: {cpus} notebooks at {Limits().most_mb():,} MB and the grader)"
    )
    shards = int(re.search(r"#SBATCH --array=0-(\d+)", guide).group(1)) + 1
    h, m, _ = map(int, re.search(r"#SBATCH --time=(\d+):(\d+):(\d+)", guide).groups())
    hours = h + m / 60
    plural = "s" if hours != 1 else ""
    timing = (
        f"`--time` must hold a shard too: at these rates a shard of {cpus} cores grades about {per_hour:,} students "
        f"(all {len(found['lessons'])} lessons) an hour, so the job array below ({shards} shards, {hours:g} "
        f"hour{plural}) holds a class of about {int(per_hour * hours * shards):,}; give a larger one more shards or "
        "more time"
    )
    return {
        "sentence": sentence,
        "table": "\n".join(lines),
        "sizing": sizing,
        "timing": timing,
        "mooc_sentence": mooc_sentence,
        "mooc": "\n".join(mooc),
        "command": found["provenance"]["command"],
    }


def test_the_class_figures_are_the_measured_class():
    figures = class_figures()
    text = " ".join(GUIDE.read_text().split())
    assert figures["command"].startswith("python -m mha.course class measure")
    assert f"`{figures['command']}`" in text, "the guide names the command that measured: " + figures["command"]
    assert figures["sentence"] in text, "the guide must say:\n" + figures["sentence"]
    assert figures["table"] in GUIDE.read_text(), "the guide's per-lesson table:\n" + figures["table"]


MEMORY = ROOT / "notebooks" / "results" / "memory_limits.json"


def memory_sentence() -> str:
    """What `python -m mha.course cost --memory-mb ...` recorded, as the guide states it."""
    found = json.loads(MEMORY.read_text())
    gradings = sorted(found["gradings"], key=lambda g: g["memory_mb"])
    least = found["least_memory_mb_every_lesson_passes"]
    assert least is not None and all(
        all("why" not in m for m in g["per_lesson"].values()) for g in gradings if g["memory_mb"] >= least
    ), "a larger limit lost a mark: the measurement is not what the guide says"
    below = [g for g in gradings if g["memory_mb"] < least]
    limits = ", ".join(f"{g['memory_mb']:,}" for g in gradings)
    said = (
        f"How low `--memory-mb` may go was measured: graded once at each of {limits} MB "
        f"(`{found['provenance']['command']}`), the course's solved notebooks kept "
        f"every mark from {least:,} MB up"
    )
    if below:
        short = {n: m for n, m in below[-1]["per_lesson"].items() if "why" in m}
        mapped = all("failed to map segment" in m["why"] for m in short.values())
        said += (
            f"; at {below[-1]['memory_mb']:,} MB, "
            + ", ".join(f"lesson {n} passed {m['passed']} of its {m['exercises']} exercises" for n, m in short.items())
            + (" (a library could not be mapped into its address space)" if mapped else "")
        )
    graded = {g["jobs"]: g for g in json.loads(CLASS.read_text())["gradings"]}
    grader = graded[max(graded)]["grader_peak_mb"]
    room = 2 * least
    most = Limits(memory_mb=room).most_mb()
    need = {cores: _gib(cores, most, grader) for cores in (16, 32)}
    return said + (
        ". It caps the address space of each process, which PyTorch maps far beyond what it uses, as well as the "
        "memory of a notebook's processes together, so leave students' own experiments room: at "
        f"`--memory-mb {room}`, a notebook holds at most {most:,} MB, and a shard of 16 cores asks for {need[16]}G and "
        f"one of 32 for {need[32]}G"
    )


def test_the_least_memory_limit_the_guide_gives_is_the_measured_one():
    text = " ".join(GUIDE.read_text().split())
    sentence = memory_sentence()
    assert sentence in text, "the guide must say:\n" + sentence


def test_the_mooc_table_is_computed_from_the_measured_costs():
    figures = class_figures()
    text = " ".join(GUIDE.read_text().split())
    assert figures["mooc_sentence"] in text, "the guide must say:\n" + figures["mooc_sentence"]
    assert figures["mooc"] in GUIDE.read_text(), "the guide's MOOC table:\n" + figures["mooc"]
    assert figures["sizing"] in text, "the guide must say:\n" + figures["sizing"]
    assert figures["timing"] in text, "the guide must say:\n" + figures["timing"]
    assert "about 13 minutes" not in text and "about 28 minutes" not in text, "an extrapolated figure is left"
