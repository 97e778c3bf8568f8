"""`python -m mha.course NAME [options]`: the course's tools.

exercises   regenerate exercises/ from solutions/ (a notebook you have worked in is never overwritten);
            with --check, fail if exercises/ is not what solutions/ generate
grade       grade a folder of submitted notebooks, one sub-folder per student (`grade merge` joins shards)
doctor      check in seconds that this environment can run the course
release     commit the course without its solutions on a branch, for students (a JupyterHub's nbgitpuller link)
link        print the nbgitpuller link of every exercise notebook
collect     copy every student's exercise notebooks from a JupyterHub into submissions/<student>/
marks       marks from gradings: each exercise weighs its importance; later gradings replace earlier ones
cost        measure what each lesson costs a machine (CPU seconds, memory), for sizing a hub or a grader
class       build a whole class from the course's own material (`class build`), or build it, grade it and measure
            the grading (`class measure`)
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from .._commands import (
    check_output,
    check_output_folder,
    nonempty,
    positive_int,
    repository,
    seed_number,
    url,
)
from .._provenance import csv_with_header, writable
from . import answers, classroom, collect, cost, doctor, exercises, grade, judging, marks, release, report, sandbox

PROG = "python -m mha.course"


def _exercises(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} exercises", description=exercises.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if exercises/ is out of sync or fails ruff as generated (for CI)"
    )
    parser.add_argument("--root", type=_path, default=exercises.ROOT, help="course folder (default: this checkout)")
    args = parser.parse_args(argv)
    _folder(parser, "--root", args.root, "solutions/NN_*.ipynb", "the course's folder")
    if not any((args.root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        parser.error(
            f"--root {args.root}: no solutions/NN_*.ipynb in it; expected the course's folder, which holds solutions/"
        )
    if args.check:
        problems = exercises.check(args.root) + answers.fingerprint_problems(args.root) + exercises.lint(args.root)
        for problem in problems:
            print(f"✗ {problem}")
        if problems:
            print("Run `make exercises` and commit the result.")
            return 1
        print("✓ exercises/ and the fingerprints match solutions/, and exercises/ passes ruff as generated")
        return 0
    exercises.generate(args.root)
    path, changed = answers.write_fingerprints(args.root)
    print(f"{'written    ' if changed else 'up to date '} {path.relative_to(args.root)} (the solutions' fingerprints)")
    return 0


LIMITS = {
    "timeout": "seconds to run a notebook's cells",
    "call_timeout": "seconds for all of a notebook's exercise calls afterwards",
    "memory_mb": "memory per process, and of all a notebook's processes together, MiB",
    "processes": "processes and threads at once",
    "file_size_mb": "largest file a notebook may write, MiB",
    "disk_mb": "bytes a notebook's work area may hold, MiB",
    "files": "files a notebook's work area may hold",
    "cpu_seconds": "CPU seconds per process",
    "output_mb": "output read per notebook, MiB; the rest is discarded",
}
FRACTIONAL = ("timeout", "call_timeout", "output_mb")


def _grade(argv) -> int:
    if argv[:1] == ["merge"]:
        return _merge(argv[1:])
    parser = argparse.ArgumentParser(
        prog=f"{PROG} grade",
        description=grade.__doc__.split("\n\n")[0],
        epilog=f"To join the CSVs of shards: {PROG} grade merge SHARD.csv ... --csv grades.csv",
    )
    parser.add_argument("folder", type=_path, help="one sub-folder per student, holding exercise notebooks")
    parser.add_argument("--csv", type=_path, default=None, help="where to write the CSV (default: FOLDER/grades.csv)")
    parser.add_argument("--feedback", type=_path, default=None, help="write one feedback file per student here")
    parser.add_argument(
        "--jobs", type=positive_int, default=os.cpu_count() or 1, help="notebooks at once (default: cores)"
    )
    parser.add_argument("--shard", default="0/1", help="K/N: grade only share K (0 to N-1) of N (default 0/1)")
    parser.add_argument("--seed", type=seed_number, default=None, help="seed of the cases (default: a fresh one)")
    parser.add_argument("--isolation", choices=["auto", *sandbox.MODES], default="auto", help="default: auto")
    parser.add_argument(
        "--course",
        type=_path,
        default=None,
        help="the course's folder, whose solutions/ the answers are compared with (default: this checkout's; an "
        "installed package uses the fingerprints of the solutions it ships)",
    )
    defaults = sandbox.Limits()
    for name, text in LIMITS.items():
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=value, help=f"{text} ({value:g})")
    args = parser.parse_args(argv)
    raw = {name: getattr(args, name) for name in LIMITS}
    problems = sandbox.Limits(**raw).problems()
    if problems:
        parser.error("; ".join(p.replace("_", "-") for p in problems))
    limits = sandbox.Limits(**{name: value if name in FRACTIONAL else int(value) for name, value in raw.items()})
    _folder(parser, "folder", args.folder, "one sub-folder per student", "the folder of submissions")
    if _is_course(args.folder):
        parser.error(
            f"folder {args.folder} is the course's own folder (it holds mha/ and solutions/), not a folder of "
            f"submissions: give the folder that holds one sub-folder per student"
        )
    if args.course is not None:
        _folder(parser, "--course", args.course, "solutions/NN_*.ipynb", "the course's folder")
        if not any((args.course / "solutions").glob("[0-9][0-9]_*.ipynb")):
            parser.error(f"--course {args.course} has no solutions/NN_*.ipynb; expected the course's folder")
    part = _shard(parser, args.shard)
    default_name = "grades.csv" if part == (0, 1) else f"grades.shard-{part[0]}-of-{part[1]}.csv"
    out = _output(parser, args.csv or args.folder / default_name, args.folder)
    if args.feedback is not None:
        _feedback_folder(parser, args.feedback, args.folder)
    try:
        grading = grade.grade(
            args.folder,
            limits,
            jobs=args.jobs,
            part=part,
            seed=args.seed,
            isolation=args.isolation,
            course=args.course or grade.ROOT,
            log=lambda line: print(_loud(report.safe(line)), file=sys.stderr),
        )
    except (ValueError, RuntimeError) as error:
        print(f"error: {report.safe(error)}", file=sys.stderr)
        return 2
    csv_text = report.to_csv(grading.rows)
    _write(out, csv_text)
    if args.feedback is not None:  # from the rows as the CSV holds them: the same files as `grade merge` writes
        _write_feedback(args.feedback, report.from_csv(csv_text))
    print(grade.summary(grading))
    print(f"\nwrote {out}" + (f" and {args.feedback}/" if args.feedback else ""))
    return 0


def _loud(line: str) -> str:
    """Warnings about weak isolation stand out: they are the one thing an instructor must not miss."""
    if line.startswith(("NO ISOLATION", "ISOLATION IS PARTIAL")):
        bar = "!" * 100
        return f"{bar}\n{line}\n{bar}"
    return line


def _shard(parser, text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", text.strip())
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        parser.error(f"--shard takes K/N with 0 <= K < N (e.g. 0/4 ... 3/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


# What the grader writes, recognised by its content: only such files are ever replaced (`mha._provenance.writable`).
GRADES = (csv_with_header(report.COLUMNS), "a grades CSV the grader wrote")
FEEDBACK = (lambda text: text.startswith("Feedback for "), "a feedback file the grader wrote")


def _path(value: str) -> Path:
    """A path typed on the command line: not empty (an empty one would mean the current folder)."""
    return Path(nonempty(value))


def _folder(parser, option: str, path: Path, holds: str, what: str) -> None:
    """Refuse, naming the option, a path that is not an existing folder."""
    if not path.exists():
        parser.error(f"{option} {path}: no such folder; expected {what}, holding {holds}")
    if not path.is_dir():
        parser.error(f"{option} {path} is a file; expected {what}, a folder holding {holds}")


def _is_course(folder: Path) -> bool:
    return (folder / "mha" / "__init__.py").is_file() and (folder / "solutions").is_dir()


def _output(parser, path: Path, folder: Path | None) -> Path:
    """The CSV's path, refused before any work if it may not be written or would land in a student's folder."""
    if not path.is_dir() and not path.parent.is_dir():
        parser.error(f"--csv {path}: the folder {path.parent} does not exist")
    if folder is not None:
        inside = path.resolve().parent
        if inside != folder.resolve() and folder.resolve() in inside.parents:
            parser.error(f"--csv {path} is inside a student's folder; write it elsewhere")
    check_output(parser, str(path), "--csv", *GRADES)
    return path


def _feedback_folder(parser, path: Path, folder: Path | None) -> None:
    """The feedback folder, refused before any work if it holds a file the grader did not write."""
    check_output_folder(parser, path, "--feedback")
    if not path.exists() and not path.parent.is_dir():
        parser.error(f"--feedback {path}: the folder {path.parent} does not exist")
    if folder is not None:
        resolved = path.resolve()
        if resolved == folder.resolve() or folder.resolve() in resolved.parents:
            parser.error(
                f"--feedback {path} is inside {folder}, where it would be taken for a student; write it elsewhere"
            )
    theirs = [p.name for p in sorted(path.iterdir()) if not _feedback_file(p)] if path.is_dir() else []
    if theirs:
        parser.error(
            f"--feedback {path} holds {', '.join(theirs[:3])}{', ...' if len(theirs) > 3 else ''}, which the grader "
            f"did not write: give a new or empty folder, so that nothing of yours is replaced"
        )


def _feedback_file(path: Path) -> bool:
    try:
        return path.is_file() and FEEDBACK[0](path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> None:
    """Write a file whole or not at all (a temporary file in the same folder, then renamed)."""
    writable(path, *GRADES)  # checked before the work; again now, in case a file appeared meanwhile
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8-sig")
    os.replace(temporary, path)


def _write_feedback(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in grade.feedback_files(rows).items():
        try:
            writable(folder / name, *FEEDBACK)  # never a file the grader did not write
            (folder / name).write_text(text, encoding="utf-8")
        except (OSError, ValueError) as error:  # one file that cannot be written costs only that student's feedback
            why = error.strerror if isinstance(error, OSError) else error
            print(f"warning: {report.safe(folder / name)} could not be written ({why})", file=sys.stderr)


def _merge(argv) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} grade merge", description="Join the CSVs of the shards of one grading into one CSV."
    )
    parser.add_argument("parts", type=_path, nargs="+", help="the shards' CSV files")
    parser.add_argument("--csv", type=_path, required=True, help="where to write the joined CSV")
    parser.add_argument("--feedback", type=_path, default=None, help="write one feedback file per student here")
    parser.add_argument("--submissions", type=_path, default=None, help="check that every student folder is graded")
    args = parser.parse_args(argv)
    texts = []
    for part in args.parts:
        if not part.is_file():
            parser.error(f"{part} is not a file; expected a grades CSV written by `{PROG} grade`")
        try:
            texts.append((str(part), part.read_bytes().decode("utf-8-sig")))
        except UnicodeDecodeError:
            parser.error(f"{part} is not a grades CSV: it is not text (UTF-8)")
    out = _output(parser, args.csv, None)
    if args.feedback is not None:
        _feedback_folder(parser, args.feedback, None)
    if args.submissions is not None:
        _folder(parser, "--submissions", args.submissions, "one sub-folder per student", "the folder of submissions")
        if not any(p.is_dir() and not p.name.startswith(".") for p in args.submissions.iterdir()):
            parser.error(f"--submissions {args.submissions} holds no student folder; expected one per student")
    try:
        rows = report.merge(texts)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _write(out, report.to_csv(rows))
    if args.feedback is not None:
        _write_feedback(args.feedback, rows)
    print(report.summary(rows, judging.lessons()))
    print(f"\nwrote {out}: {len(rows)} rows from {len(args.parts)} shards")
    if args.submissions is not None:
        graded = {r["student"] for r in rows}
        folders = sorted(p.name for p in args.submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
        missing = [name for name in folders if report.cell(name) not in graded]
        if missing:
            names = report.safe(", ".join(missing))
            print(f"error: no rows for {len(missing)} student(s): {names}; is a shard missing?")
            return 1
    return 0


def _doctor(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} doctor", description=doctor.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hub",
        metavar="VERSION",
        type=_version,
        default=None,
        help="also check a JupyterHub single-user image: jupyterhub at the hub's VERSION, and nbgitpuller",
    )
    args = parser.parse_args(argv)
    results = doctor.checks(hub=args.hub)
    for ok, what in results:
        print(("✓ " if ok else "✗ ") + what)
    failed = sum(not ok for ok, _ in results)
    fix = "fix them (in a checkout of the course, `make setup` installs everything)"
    print("ready for the course" if not failed else f"{failed} problem(s): {fix}")
    return 1 if failed else 0


def _version(value: str) -> str:
    """A version number such as 5.2.1 (what `pip install jupyterhub==VERSION` takes)."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*([.+-]?[A-Za-z0-9]+)*", value.strip()):
        raise argparse.ArgumentTypeError(f"expected a version number such as 5.2.1, got {value!r}")
    return value.strip()


def _release(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} release", description=release.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--branch", type=nonempty, default=release.BRANCH, help=f"the release branch (default {release.BRANCH})"
    )
    parser.add_argument(
        "--ref", type=nonempty, default="HEAD", help="the commit to release (default HEAD: the last commit)"
    )
    parser.add_argument("--root", type=_path, default=Path.cwd(), help="the course's checkout (default: here)")
    args = parser.parse_args(argv)
    _folder(parser, "--root", args.root, "the course's git checkout", "the course's checkout")
    top = _git(args.root, "rev-parse", "--show-toplevel")
    if top is None:
        parser.error(f"--root {args.root} is not a git checkout; expected the course's checkout (git clone)")
    if Path(top).resolve() != args.root.resolve():
        parser.error(f"--root {args.root} is a folder inside the checkout {top}; expected the checkout itself: {top}")
    if _git(args.root, "check-ref-format", "--branch", args.branch) is None:
        parser.error(f"--branch {args.branch!r} is not a name git accepts for a branch; expected e.g. student")
    if _git(args.root, "rev-parse", "--verify", "--quiet", f"{args.ref}^{{commit}}") is None:
        parser.error(f"--ref {args.ref!r} is not a commit of {args.root}; expected e.g. HEAD, main or a commit hash")
    try:
        done = release.release(args.root, args.branch, args.ref)
    except ValueError as error:
        parser.error(str(error))
    if done.commit is None:
        print(f"{done.branch} already holds the student release of {done.source[:10]} ({done.files} files)")
    else:
        print(f"{done.branch} is now {done.commit[:10]}: the student release of {done.source[:10]}, {done.files} files")
        print(f"left out: {', '.join(release.LEFT_OUT)}, the maintainers' files; and the pointers to solutions/")
    print(f"publish it: git push STUDENT_REPOSITORY {done.branch}:main")
    return 0


def _git(root: Path, *args: str) -> str | None:
    """git's output in `root`, or None when git says no."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _home_folder(value: str) -> str:
    """A folder inside each student's home: a relative path, without '..'."""
    value = nonempty(value).strip()
    if Path(value).is_absolute() or ".." in Path(value).parts:
        raise argparse.ArgumentTypeError(f"expected a folder inside each home, like mha-course, got {value!r}")
    return value


def _link(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} link", description=release.nbgitpuller_link.__doc__.split("\n")[0])
    parser.add_argument("--hub", type=url, required=True, help="the hub's address, e.g. https://hub.example.edu")
    parser.add_argument(
        "--repo", type=repository, required=True, help="the repository students pull from (the student release)"
    )
    parser.add_argument("--branch", type=nonempty, default="main", help="its branch (default main)")
    parser.add_argument(
        "--folder",
        type=_home_folder,
        default=release.FOLDER,
        help=f"the folder in each home (default {release.FOLDER})",
    )
    parser.add_argument("--root", type=_path, default=Path.cwd(), help="the course's folder (default: here)")
    args = parser.parse_args(argv)
    _folder(parser, "--root", args.root, "exercises/NN_*.ipynb", "the course's folder")
    try:
        notebooks = release.exercise_notebooks(args.root)
    except ValueError as error:
        parser.error(f"--root: {error}")
    for notebook in notebooks:
        link = release.nbgitpuller_link(args.hub, args.repo, notebook, args.branch, args.folder)
        print(f"{Path(notebook).stem}: {link}")
    return 0


def _collect(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} collect", description=collect.__doc__.split("\n\n")[0])
    parser.add_argument("out", type=_path, help="the submissions folder (one sub-folder per student is made in it)")
    parser.add_argument("--hub", type=url, required=True, help="the hub's address, e.g. https://hub.example.edu")
    parser.add_argument(
        "--folder",
        type=_home_folder,
        default=release.FOLDER,
        help=f"the course's folder in each home (default {release.FOLDER})",
    )
    parser.add_argument("--start", action="store_true", help="start stopped servers to collect, then stop them again")
    parser.add_argument(
        "--student",
        type=nonempty,
        action="append",
        default=None,
        help="only this user (repeat for several; default: every user)",
    )
    parser.add_argument(
        "--lesson", action="append", default=None, help="only this lesson's notebook, e.g. 01 (repeat for several)"
    )
    args = parser.parse_args(argv)
    bad = [x for x in args.lesson or [] if not (len(x) == 2 and x.isdigit())]
    if bad:
        parser.error(f"--lesson takes a lesson number of two digits, like 01; got {bad[0]!r}")
    check_output_folder(parser, args.out, "out")
    try:
        hub = collect.Hub(args.hub, os.environ.get("MHA_COLLECT_TOKEN", ""))
        rows = collect.collect(hub, args.out, args.folder, args.start, args.student, args.lesson)
    except collect.HubError as error:
        print(f"✗ {report.safe(error)}", file=sys.stderr)
        return 1
    for row in rows:
        student, notebook = report.safe(row.student), report.safe(row.notebook) or "-"
        print(f"{student:<16} {notebook:<36} {row.status:<10} {report.safe(row.saved)}")
    kept = [row for row in rows if row.status == "kept"]
    refused = [row for row in rows if row.status == "refused"]
    got = sum(row.status == "collected" for row in rows)
    students = len({row.student for row in rows if row.status in ("collected", "unchanged")})
    print(f"\n{got} notebook(s) collected from {students} student(s) into {args.out}")
    if refused:
        print(
            f"✗ {len(refused)} name(s) refused (they would leave their folder, are not valid text, or collide): "
            f"nothing was written for them",
            file=sys.stderr,
        )
    if kept:
        print(
            f"✗ {len(kept)} notebook(s) differ from the copy already in {args.out} and were not overwritten: "
            f"collect into a new folder to compare",
            file=sys.stderr,
        )
        return 1
    return 1 if refused else 0


def _lesson(text: str) -> str:
    """A lesson's number as the notebooks write it: two digits."""
    if len(text) == 2 and text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"expected a lesson number of two digits, like 05; got {text!r}")


def _marks(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} marks", description=marks.__doc__.split("\n\n")[0])
    parser.add_argument("gradings", type=_path, nargs="+", help="grades CSVs, earliest first (later ones replace)")
    parser.add_argument("--csv", type=_path, required=True, help="where to write the marks")
    parser.add_argument(
        "--lessons", nargs="+", type=_lesson, default=None, help="the lessons the module grades (default: all)"
    )
    parser.add_argument(
        "--leave-out",
        nargs="+",
        default=[],
        metavar="NN.K",
        help="exercises the module does not grade, e.g. 10.5 (a lesson's mark is then over the others' weight)",
    )
    args = parser.parse_args(argv)
    for path in args.gradings:
        if not path.is_file():
            found = "a folder" if path.is_dir() else "not there"
            parser.error(f"gradings: {path} is {found}; expected a grades CSV written by `{PROG} grade`")
    out = _output(parser, args.csv, None)
    try:
        marks.left_out(args.leave_out)
    except ValueError as error:
        parser.error(f"--leave-out: {error}")
    try:
        gradings = marks.read(args.gradings)
    except ValueError as error:
        parser.error(f"gradings: {report.safe(error)}")
    try:
        rows = marks.marks(gradings, args.lessons, args.leave_out)
    except ValueError as error:
        print(f"error: {report.safe(error)}", file=sys.stderr)
        return 2
    _write(out, marks.to_csv(rows))
    lessons = [k for k in (rows[0] if rows else {}) if len(k) == 2 and k.isdigit()]
    print("student".ljust(20) + "".join(f"{lesson:>7}" for lesson in lessons) + "  exercises")
    for row in rows:
        replaced = sorted({row[f"{x} from"] for x in lessons} - {gradings[0][0], "nothing handed in"})
        cells = "".join(f"{row[lesson]:>7.1f}" for lesson in lessons)
        note = f"  (from {', '.join(replaced)})" if replaced else ""
        print(f"{report.safe(row['student'])[:19]:<20}{cells}  {row['exercises']:>9.1f}{note}")
    print(f"\nwrote {out}")
    return 0


def _memory_mb(value: str) -> int:
    """A `--memory-mb` the grader accepts: a whole number of MiB, at least what `Limits` asks for."""
    try:
        mb = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of MiB, got {value!r}") from None
    problems = sandbox.Limits(memory_mb=mb).problems()
    if problems:
        raise argparse.ArgumentTypeError(problems[0].replace("_", "-"))
    return mb


def _cost(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} cost", description=cost.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lessons", nargs="+", type=_lesson, default=None, help="only these lessons, e.g. 05 08 (default: all)"
    )
    parser.add_argument("--grading", action="store_true", help="also grade the solved exercises, as one student")
    parser.add_argument(
        "--memory-mb", nargs="+", type=_memory_mb, default=None, metavar="MB",
        help="instead: grade the solved exercises once at each of these --memory-mb (no lesson is run), to find the "
        "least every lesson needs",
    )  # fmt: skip
    parser.add_argument("--root", type=_path, default=cost.ROOT, help="the course's folder (default: this checkout)")
    parser.add_argument("--json", type=_path, default=None, help="write the measurements to this file")
    args = parser.parse_args(argv)
    check_output(parser, None if args.json is None else str(args.json), "--json")
    if args.memory_mb and args.grading:
        parser.error("--memory-mb grades at each limit instead of measuring the lessons: give it without --grading")
    from .._provenance import command_line, stamp, write_results

    try:
        if args.memory_mb:
            found = cost.memory_limits(args.root, args.memory_mb, args.lessons)
            least = found["least_memory_mb_every_lesson_passes"]
            print(f"least --memory-mb of those at which every lesson keeps its full marks: {least}")
        else:
            found = cost.measure(args.root, args.lessons, args.grading)
    except ValueError as error:
        parser.error(str(error))
    if "grading" in found:
        graded = found["grading"]
        for number, m in graded["per_lesson"].items():
            print(
                f"graded {number}: {m['cpu_seconds']:6.1f} CPU s {m['wall_seconds']:6.1f} s, "
                f"{m['passed']}/{m['exercises']} passed"
            )
        print(f"grader's own peak memory {graded['grader_peak_mb']} MB ({graded['isolation']})")
    if args.json:
        write_results(args.json, stamp(command_line(PROG, ["cost", *argv])), found)
        print(f"wrote {args.json}")
    return 0


def _class(argv) -> int:
    from .._provenance import command_line, stamp, write_results

    actions = ("build", "measure")
    if argv[:1] not in ([a] for a in actions):
        parser = argparse.ArgumentParser(
            prog=f"{PROG} class",
            description=classroom.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("action", choices=actions, help="build a class, or build, grade and measure one")
        parser.parse_args(argv[:1])
    action, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"{PROG} class {action}", description=classroom.__doc__.split("\n\n")[0])
    if action == "build":
        parser.add_argument("out", type=_path, help="a new (or empty) folder: one sub-folder per student is made in it")
    parser.add_argument("--students", type=positive_int, default=30, help="students in the class (default 30)")
    parser.add_argument("--seed", type=seed_number, default=0, help="seed of the class and of its grading (default 0)")
    parser.add_argument(
        "--lessons", nargs="+", type=_lesson, default=None, help="only these lessons, e.g. 01 03 (default: all)"
    )
    parser.add_argument(
        "--root", type=_path, default=exercises.ROOT, help="the course's folder (default: this checkout)"
    )
    if action == "measure":
        parser.add_argument(
            "--jobs", nargs="+", type=positive_int, default=[1, 2], help="grade once with each (default: 1 2)"
        )
        parser.add_argument("--json", type=_path, default=None, help="write the measurements to this file")
    args = parser.parse_args(rest)
    _folder(parser, "--root", args.root, "solutions/NN_*.ipynb and tests/wrong_answers/", "the course's folder")
    if not (args.root / "tests" / "wrong_answers").is_dir():
        parser.error(f"--root {args.root} has no tests/wrong_answers/: expected a checkout of the course")
    if action == "build":
        check_output_folder(parser, args.out, "out")
        if args.out.is_dir() and any(args.out.iterdir()):
            parser.error(f"out {args.out} is not empty: give a new or empty folder for the class")
        try:
            plan = classroom.build(args.out, args.students, args.seed, args.root, args.lessons)
        except ValueError as error:
            parser.error(str(error))
        ways = ", ".join(f"{n} {way}" for way, n in plan["ways"].items())
        print(f"{len(plan['notebooks'])} notebooks of {len(plan['students'])} students in {args.out}: {ways}")
        print(f"expected results: {args.out / classroom.EXPECTED}")
        print(f"grade it: {PROG} grade {args.out} --seed {args.seed}")
        return 0
    check_output(parser, None if args.json is None else str(args.json), "--json")
    try:
        found = classroom.measure(args.students, args.seed, args.jobs, args.root, args.lessons)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        write_results(args.json, stamp(command_line(PROG, ["class", *argv])), found)
        print(f"wrote {args.json}")
    return 0 if all(g["as_expected"] for g in found["gradings"]) else 1


COMMANDS = {
    "exercises": _exercises,
    "grade": _grade,
    "doctor": _doctor,
    "release": _release,
    "link": _link,
    "collect": _collect,
    "marks": _marks,
    "cost": _cost,
    "class": _class,
}


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a student's name gets an escape, not a stop
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument("name", choices=list(COMMANDS), help="the tool to run")
        parser.parse_args(argv[:1])
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
