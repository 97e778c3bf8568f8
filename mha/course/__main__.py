"""`python -m mha.course NAME [options]`: the course's tools.

exercises   regenerate exercises/ from solutions/ (a notebook you have worked in is never overwritten);
            with --check, fail if exercises/ is not what solutions/ generate
grade       grade a folder of submitted notebooks, one sub-folder per student
doctor      check in seconds that this environment can run the course
release     commit the course without its solutions on a branch, for students (a JupyterHub's nbgitpuller link)
link        print the nbgitpuller link of every exercise notebook
collect     copy every student's exercise notebooks from a JupyterHub into submissions/<student>/
"""

import argparse
import csv
import os
import sys
from pathlib import Path

from . import collect, doctor, exercises, grade, release

PROG = "python -m mha.course"


def _exercises(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} exercises", description=exercises.__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if exercises/ is out of sync (for CI)")
    parser.add_argument("--root", type=Path, default=exercises.ROOT, help="course folder (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        problems = exercises.check(args.root)
        for problem in problems:
            print(f"✗ {problem}")
        if problems:
            print("Run `make exercises` and commit the result.")
            return 1
        print("✓ exercises/ matches solutions/")
        return 0
    exercises.generate(args.root)
    return 0


def _grade(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} grade", description=grade.__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="one sub-folder per student, holding exercise notebooks")
    parser.add_argument("--csv", type=Path, default=None, help="where to write the CSV (default: FOLDER/grades.csv)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per notebook (default 120)")
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return grade._execute(args.folder)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    rows = grade.grade(args.folder, args.timeout)
    out = args.csv or args.folder / "grades.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "notebook", "lesson", "exercise", "passed", "note"])
        writer.writeheader()
        writer.writerows(rows)
    print(grade.summary(rows))
    print(f"\nwrote {out}")
    return 0


def _doctor(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} doctor", description=doctor.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hub",
        metavar="VERSION",
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


def _release(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} release", description=release.__doc__.split("\n\n")[0])
    parser.add_argument("--branch", default=release.BRANCH, help=f"the release branch (default {release.BRANCH})")
    parser.add_argument("--ref", default="HEAD", help="the commit to release (default HEAD: the last commit)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course's checkout (default: here)")
    args = parser.parse_args(argv)
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


def _link(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} link", description=release.nbgitpuller_link.__doc__.split("\n")[0])
    parser.add_argument("--hub", required=True, help="the hub's address, e.g. https://hub.example.edu")
    parser.add_argument("--repo", required=True, help="the repository students pull from (the student release)")
    parser.add_argument("--branch", default="main", help="its branch (default main)")
    parser.add_argument("--folder", default=release.FOLDER, help=f"the folder in each home (default {release.FOLDER})")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course's folder (default: here)")
    args = parser.parse_args(argv)
    try:
        notebooks = release.exercise_notebooks(args.root)
    except ValueError as error:
        parser.error(str(error))
    for notebook in notebooks:
        link = release.nbgitpuller_link(args.hub, args.repo, notebook, args.branch, args.folder)
        print(f"{Path(notebook).stem}: {link}")
    return 0


def _collect(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} collect", description=collect.__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the submissions folder (one sub-folder per student is made in it)")
    parser.add_argument("--hub", required=True, help="the hub's address, e.g. https://hub.example.edu")
    parser.add_argument(
        "--folder", default=release.FOLDER, help=f"the course's folder in each home (default {release.FOLDER})"
    )
    parser.add_argument("--start", action="store_true", help="start stopped servers to collect, then stop them again")
    parser.add_argument(
        "--student", action="append", default=None, help="only this user (repeat for several; default: every user)"
    )
    parser.add_argument(
        "--lesson", action="append", default=None, help="only this lesson's notebook, e.g. 01 (repeat for several)"
    )
    args = parser.parse_args(argv)
    if args.lesson and not all(len(x) == 2 and x.isdigit() for x in args.lesson):
        parser.error(f"--lesson takes a lesson number of two digits, like 01; got {' '.join(args.lesson)}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out} is a file; give a folder")
    try:
        hub = collect.Hub(args.hub, os.environ.get("MHA_COLLECT_TOKEN", ""))
        rows = collect.collect(hub, args.out, args.folder, args.start, args.student, args.lesson)
    except collect.HubError as error:
        print(f"✗ {error}", file=sys.stderr)
        return 1
    for row in rows:
        print(f"{row.student:<16} {row.notebook or '-':<36} {row.status:<10} {row.saved}")
    kept = [row for row in rows if row.status == "kept"]
    got = sum(row.status == "collected" for row in rows)
    students = len({row.student for row in rows if row.status in ("collected", "unchanged")})
    print(f"\n{got} notebook(s) collected from {students} student(s) into {args.out}")
    if kept:
        print(
            f"✗ {len(kept)} notebook(s) differ from the copy already in {args.out} and were not overwritten: "
            f"collect into a new folder to compare",
            file=sys.stderr,
        )
        return 1
    return 0


COMMANDS = {
    "exercises": _exercises,
    "grade": _grade,
    "doctor": _doctor,
    "release": _release,
    "link": _link,
    "collect": _collect,
}


def main(argv=None) -> int:
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
