"""A whole class made from the course's own material, to grade and to measure: `python -m mha.course class`.

    python -m mha.course class build OUT --students 30 --seed 0        # OUT/<student>/NN_*.ipynb, OUT/expected.json
    python -m mha.course class measure --students 30 --seed 0 --jobs 1 2 --json notebooks/results/class.json

For every student and every lesson with exercises, one exercise notebook, answered in one of six ways, drawn from
the seed in fixed shares of the class (each way at least once in a class of six notebooks or more):

    solved    every blank filled from solutions/: every exercise passes
    wrong     one or two answers taken from the library of classic mistakes (tests/wrong_answers/), the rest solved:
              those fail with the check's own hint, the others pass
    partly    the first answers solved, the rest left blank: the blanks fail
    blank     the exercise notebook as handed out: every exercise fails
    crash     solved, but a cell ends the notebook's process: nothing is graded
    loop      solved, but the last answer loops forever: it fails (the check's time limit), the others pass

Each notebook's expected result (passed or not, and words its note must contain) is written beside the class in
`expected.json`, so that a grading's CSV can be compared with it (`compare`). `measure` builds a class in a
temporary folder, grades it once per `--jobs` value with the course's grader, and records the wall time, the CPU
seconds of each notebook's processes per lesson, the memory of the grader and of the notebooks, and the load
average before and after; every grading is compared with the expected results.
"""

import ast
import builtins
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import exercises as generation
from .exercises import ROOT

# the ways of answering a lesson, and their shares of a class (out of 40 notebooks): a few crash or loop
MIX = (("solved", 17), ("wrong", 10), ("partly", 6), ("blank", 4), ("crash", 2), ("loop", 1))
WRONG_KINDS = ("classic",)  # entries of the wrong-answer library taken: classic mistakes, each named by its hint
CRASH = "import os\n\nos._exit(3)  # the notebook's process ends here"
LOOP = "def {name}(*args, **kwargs):\n    while True:  # never returns\n        pass"
EXPECTED = "expected.json"
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


@dataclass(frozen=True)
class Wrong:
    """One entry of the wrong-answer library: the exercise, the code that defines the wrong function, its hint."""

    exercise: str
    name: str  # the wrong function's name in the library
    code: str  # imports, the helpers it uses and its definition, ready to paste in a cell
    words: str  # what the check's message must contain


def student_name(index: int) -> str:
    return f"student{index + 1:02d}"


def lessons(root: Path = ROOT) -> dict[str, Path]:
    """lesson number -> its solutions notebook, for every lesson whose exercises the grader judges."""
    from . import judging

    judged = set(judging.lessons())
    found = {p.name[:2]: p for p in sorted((Path(root) / "solutions").glob("[0-9][0-9]_*.ipynb"))}
    return {lesson: path for lesson, path in found.items() if lesson in judged}


def wrong_library(root: Path, lesson: str) -> list[Wrong]:
    """The classic mistakes of a lesson from `tests/wrong_answers/lessonNN.py`, read as text, never imported.

    Only entries whose code stands alone (its imports, the library's own plain functions and builtins) are kept.
    """
    path = Path(root) / "tests" / "wrong_answers" / f"lesson{lesson}.py"
    if not path.is_file():
        return []
    text = path.read_text()
    tree = ast.parse(text)
    imports, imported, defined = [], set(), {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(ast.get_source_segment(text, node))
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef) and not node.decorator_list:
            defined[node.name] = node  # functions made by a factory or compiled by a decorator (Triton) are left
    out = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "WRONG" for t in node.targets)):
            continue
        for entry in node.value.elts if isinstance(node.value, ast.List) else []:
            if not (isinstance(entry, ast.Tuple) and len(entry.elts) == 4):
                continue
            exercise, function, words, kind = entry.elts
            if not (isinstance(function, ast.Name) and all(isinstance(x, ast.Constant) for x in (exercise, words))):
                continue
            if getattr(kind, "value", None) not in WRONG_KINDS or function.id not in defined:
                continue
            needed = _needed(function.id, defined, imported)
            if needed is None:
                continue
            code = (
                "\n".join(imports) + "\n\n\n" + "\n\n\n".join(ast.get_source_segment(text, defined[n]) for n in needed)
            )
            out.append(Wrong(exercise.value, function.id, code, words.value))
    return out


def _needed(name: str, defined: dict, imported: set) -> list[str] | None:
    """The library's definitions `name` needs, itself last; None if it uses a name it cannot take along."""
    from .answers import _bound_names

    order, todo = [], [name]
    while todo:
        current = todo.pop()
        if current in order:
            continue
        order.insert(0, current)
        node = defined[current]
        local = _bound_names(node)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load) and inner.id not in local:
                if inner.id in defined:
                    todo.append(inner.id)
                elif inner.id not in imported and not hasattr(builtins, inner.id):
                    return None
    return order


def _mix(count: int, rng: random.Random) -> list[str]:
    """`count` ways of answering, in the shares of MIX (each at least once when count >= len(MIX)), shuffled."""
    total = sum(share for _, share in MIX)
    ways = {way: count * share // total for way, share in MIX}
    if count >= len(MIX):
        ways = {way: max(n, 1) for way, n in ways.items()}
    while sum(ways.values()) > count:  # the floor of one each may overshoot: take from the largest
        ways[max(ways, key=ways.get)] -= 1
    remainders = sorted(MIX, key=lambda m: -(count * m[1] % total))
    for way, _ in remainders:
        if sum(ways.values()) >= count:
            break
        ways[way] += 1
    out = [way for way, n in ways.items() for _ in range(n)]
    rng.shuffle(out)
    return out


def _splice(source: str, function: str, code: str) -> str:
    """`source` with the top-level definition of `function` replaced by `code`."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            lines = source.split("\n")
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            return "\n".join(lines[:first] + code.split("\n") + lines[node.end_lineno :])
    raise ValueError(f"no `def {function}` in the answer cell")


def _answer_cells(solution, exercise, functions: list[str]) -> dict[str, int]:
    """function -> the index of the cell that defines it (the same in the solution and the exercise notebook)."""
    out = {}
    for index, cell in enumerate(solution.cells):
        if cell.cell_type == "code" and generation.BEGIN in cell.source:
            for name in re.findall(r"^def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", cell.source, re.M):
                if name in functions:
                    out.setdefault(name, index)
    missing = [f for f in functions if f not in out]
    if missing:
        raise ValueError(f"{solution.metadata.get('name', 'a solutions notebook')} defines no {', '.join(missing)}")
    return out


def _solved(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if not _MARKER.match(line))


def _relations(solution, functions: list[str]) -> tuple[dict[str, set[str]], set[str]]:
    """Which answers others build on, and which are called nowhere but in their check.

    Returns ({function: the exercises' functions whose solution calls it, through the notebook's own functions},
    {functions the notebook's cells use only in their definition and in a `check.NAME(function)` call}).
    """
    from .answers import Code

    sources = [c.source for c in solution.cells if c.cell_type == "code"]
    code = Code(sources)
    users = {f: set() for f in functions}
    for f in functions:
        found = code.resolve(f)
        if found and found[0] == "def":
            helpers, _ = code._reach(found[1])
            for helper in helpers:
                if getattr(helper, "name", None) in users and helper.name != f:
                    users[helper.name].add(f)
    used = set()
    for source in sources:
        try:
            tree = ast.parse(_solved(source))
        except SyntaxError:
            continue
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef) and node.name in users:
                continue  # its own definition
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "check":
                    continue  # its check
            if isinstance(node, ast.Name) and node.id in users:
                used.add(node.id)
            stack.extend(ast.iter_child_nodes(node))
    return users, set(functions) - used


def possible(solution, exercises_: list, library: list[Wrong]) -> set[str]:
    """The ways a lesson's notebook can be answered with a result known in advance (see `make_notebook`)."""
    functions = [e.function for e in exercises_]
    users, quiet = _relations(solution, functions)
    out = {way for way, _ in MIX} - {"wrong", "loop"}
    taken = {w.exercise for w in library}
    if any(not users[e.function] and e.name in taken for e in exercises_):
        out.add("wrong")
    if not users[functions[-1]] and functions[-1] in quiet:
        out.add("loop")
    return out


def make_notebook(solution, exercise, way: str, rng: random.Random, library: list[Wrong], exercises_: list):
    """One student's notebook for a lesson answered `way`, and the expected result of each exercise.

    Only answers no other exercise builds on are made wrong, and only the last answer, if the notebook's cells call
    it nowhere but in its check, is made endless, so that each exercise's result is known in advance (an answer
    after an endless one would pass or not as the machine's load had the grader stop the process or not).

    Returns (notebook, the way it was answered (`blank` where `wrong` or `loop` finds no such answer),
    {exercise name: {"passed": bool, "note": words the note must contain}}).
    """
    nb = nbformat.from_dict(json.loads(nbformat.writes(exercise)))
    functions = [e.function for e in exercises_]
    where = _answer_cells(solution, exercise, functions)
    users, quiet = _relations(solution, functions)
    alone = [e for e in exercises_ if not users[e.function]]
    by_exercise = {}
    for w in library:
        by_exercise.setdefault(w.exercise, []).append(w)
    if way == "wrong" and not any(e.name in by_exercise for e in alone):
        way = "blank"
    last = exercises_[-1]
    if way == "loop" and not (last in alone and last.function in quiet):
        way = "blank"
    names = [e.name for e in exercises_]
    expected = {name: {"passed": True, "note": ""} for name in names}
    solved = set(functions)
    if way == "blank":
        solved = set()
    elif way == "partly":
        solved = set(functions[: rng.randint(1, len(functions) - 1)]) if len(functions) > 1 else set()
    for index in sorted(set(where.values())):
        if any(where[f] == index for f in solved):
            nb.cells[index].source = _solved(solution.cells[index].source)
    for e in exercises_:
        if e.function not in solved:
            expected[e.name] = {"passed": False, "note": ""}
    if way == "wrong":
        chosen = [e for e in alone if e.name in by_exercise]
        chosen = rng.sample(chosen, min(len(chosen), rng.choice((1, 2))))
        for e in sorted(chosen, key=exercises_.index):
            w = rng.choice(by_exercise[e.name])
            code = f"{w.code}\n\n\n{e.function} = {w.name}" if w.name != e.function else w.code
            cell = nb.cells[where[e.function]]
            cell.source = _splice(cell.source, e.function, code)
            expected[e.name] = {"passed": False, "note": w.words, "wrong": w.name}
    elif way == "loop":
        cell = nb.cells[where[last.function]]
        cell.source = _splice(cell.source, last.function, LOOP.format(name=last.function))
        expected[last.name] = {"passed": False, "note": "within"}  # the check's time limit, or the grader's
    elif way == "crash":
        first = min(where.values())
        nb.cells.insert(first + 1, nbformat.v4.new_code_cell(CRASH, id="crash"))  # a fixed id: the same class
        expected = {name: {"passed": False, "note": "the notebook's process ended"} for name in names}
    return nb, way, expected


def build(out: Path, students: int, seed: int, root: Path = ROOT, only: list[str] | None = None) -> dict:
    """Write a class into `out`: `out/<student>/NN_*.ipynb` and `out/expected.json`; return what it expects.

    Args:
        out: a folder that does not exist yet or is empty.
        students: how many students.
        seed: draws each notebook's way of answering and its wrong answers; the same seed, the same class.
        root: the course's folder (solutions/ and tests/wrong_answers/).
        only: these lessons (default: every lesson with exercises).

    Returns:
        {"students": [...], "lessons": [...], "ways": {way: count}, "notebooks": {"student/notebook":
        {"way": ..., "exercises": {name: {"passed": ..., "note": ...}}}}}.
    """
    from . import judging

    found = lessons(root)
    missing = sorted(set(only or ()) - set(found))
    if missing:
        raise ValueError(f"no lesson with exercises numbered {', '.join(missing)} (there are {', '.join(found)})")
    if only:
        found = {k: v for k, v in found.items() if k in only}
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new or empty folder for the class")
    rng = random.Random(seed)
    slots = [(s, lesson) for s in range(students) for lesson in found]
    ways = _mix(len(slots), rng)
    plan = {"seed": seed, "students": [student_name(s) for s in range(students)], "lessons": list(found)}
    plan["notebooks"] = {}
    sources = {}
    for lesson, path in found.items():
        solution = nbformat.read(path, as_version=4)
        exercise = generation.make_exercise(solution, f"solutions/{path.name}")
        library, exercises_ = wrong_library(root, lesson), judging.lesson_exercises(lesson)
        sources[lesson] = (path.name, solution, exercise, library, exercises_, possible(solution, exercises_, library))
    for i, ((_, lesson), way) in enumerate(zip(slots, ways)):  # a way a lesson cannot take swaps with one it can
        if way not in sources[lesson][5]:
            swaps = [
                j for j, (_, other) in enumerate(slots) if way in sources[other][5] and ways[j] in sources[lesson][5]
            ]
            if swaps:
                j = rng.choice(swaps)
                ways[i], ways[j] = ways[j], ways[i]
    for (s, lesson), way in zip(slots, ways):
        name, solution, exercise, library, exercises_, _ = sources[lesson]
        nb, way, expected = make_notebook(solution, exercise, way, rng, library, exercises_)
        folder = out / student_name(s)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / name)
        plan["notebooks"][f"{student_name(s)}/{name}"] = {"way": way, "exercises": expected}
    taken = [entry["way"] for entry in plan["notebooks"].values()]
    plan["ways"] = {way: taken.count(way) for way, _ in MIX}
    (out / EXPECTED).write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def compare(plan: dict, rows: list[dict]) -> list[str]:
    """How a grading's rows differ from the class's expected results (empty: every row as expected)."""
    problems, seen = [], set()
    for row in rows:
        key = f"{row['student']}/{row['notebook']}"
        entry = plan["notebooks"].get(key)
        if entry is None:
            problems.append(f"{key}: graded, but not in the class")
            continue
        want = entry["exercises"].get(row["exercise"])
        if want is None:
            problems.append(f"{key} {row['exercise']}: an exercise the class does not expect")
            continue
        seen.add((key, row["exercise"]))
        passed = row["passed"] in (True, "True", "true", "1", 1)
        if passed != want["passed"]:
            problems.append(
                f"{key} {row['exercise']} ({entry['way']}): passed {passed}, expected {want['passed']}; "
                f"note: {str(row.get('note', ''))[:160]}"
            )
        elif want["note"] and want["note"] not in str(row.get("note", "")):
            problems.append(
                f"{key} {row['exercise']} ({entry['way']}): the note lacks {want['note']!r}: "
                f"{str(row.get('note', ''))[:160]}"
            )
    for key, entry in plan["notebooks"].items():
        for name in entry["exercises"]:
            if (key, name) not in seen:
                problems.append(f"{key} {name}: no row")
    return problems


def measure(students: int, seed: int, jobs: list[int], root: Path = ROOT, only=None, report=print) -> dict:
    """Build a class in a temporary folder and grade it once per value of `jobs`; what each grading cost."""
    import tempfile

    from . import grade

    out: dict = {"cpus": os.cpu_count(), "students": students, "seed": seed}
    out["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="mha-class-") as scratch:
        folder = Path(scratch) / "class"
        plan = build(folder, students, seed, root, only)
        out["lessons"], out["ways"], out["notebooks"] = plan["lessons"], plan["ways"], len(plan["notebooks"])
        out["gradings"] = []
        for n in jobs:
            report(f"grading {len(plan['notebooks'])} notebooks with --jobs {n} ...")
            load = os.getloadavg()[0]
            done = grade.grade(folder, jobs=n, seed=seed, progress=False)
            problems = compare(plan, done.rows)
            out["gradings"].append(_costs(done, plan, n, load, problems))
            report(line(out["gradings"][-1]))
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    return out


def _costs(done, plan: dict, jobs: int, load: float, problems: list[str]) -> dict:
    per = {}
    for (student, notebook), cpu in done.cpu.items():
        lesson = notebook[:2]
        way = plan["notebooks"].get(f"{student}/{notebook}", {}).get("way", "?")
        entry = per.setdefault(lesson, {"cpu": [], "wall": [], "memory": [], "solved_cpu": []})
        entry["cpu"].append(cpu)
        entry["wall"].append(done.seconds[(student, notebook)])
        entry["memory"].append(done.memory_mb.get((student, notebook), 0.0))
        if way == "solved":
            entry["solved_cpu"].append(cpu)
    lessons = {}
    for lesson, m in sorted(per.items()):
        lessons[lesson] = {
            "notebooks": len(m["cpu"]),
            "cpu_seconds_mean": round(sum(m["cpu"]) / len(m["cpu"]), 2),
            "cpu_seconds_max": round(max(m["cpu"]), 2),
            "cpu_seconds_solved_mean": round(sum(m["solved_cpu"]) / len(m["solved_cpu"]), 2)
            if m["solved_cpu"]
            else None,
            "wall_seconds_mean": round(sum(m["wall"]) / len(m["wall"]), 2),
            "notebook_peak_mb": round(max(m["memory"])),
        }
    recorded = sum(done.recorded_cpu.values())  # the lessons' trainings, run once from the solutions
    cpu = sum(done.cpu.values()) + recorded
    return {
        "jobs": jobs,
        "load_average_1min_at_start": round(load, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "wall_seconds": round(done.wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_per_notebook": round(cpu / max(len(done.cpu), 1), 2),
        "recording_cpu_seconds": round(recorded, 1),
        "recording_cpu_seconds_per_lesson": {k: round(v, 2) for k, v in sorted(done.recorded_cpu.items())},
        "grader_peak_mb": round(done.peak_mb),
        "notebook_peak_mb": round(max(done.memory_mb.values(), default=0.0)),
        "isolation": done.isolation,
        "rows": len(done.rows),
        "as_expected": not problems,
        "problems": problems[:20],
        "per_lesson": lessons,
    }


def line(g: dict) -> str:
    ok = "every row as expected" if g["as_expected"] else f"{len(g['problems'])} row(s) NOT as expected"
    return (
        f"--jobs {g['jobs']}: {g['wall_seconds']:.1f} s, {g['cpu_seconds']:.1f} CPU s "
        f"({g['cpu_seconds_per_notebook']:.2f} per notebook), grader {g['grader_peak_mb']} MB, notebooks up to "
        f"{g['notebook_peak_mb']} MB; load {g['load_average_1min_at_start']} -> {g['load_average_1min_at_end']}; {ok}"
    )
