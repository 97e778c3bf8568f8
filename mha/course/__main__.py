"""`python -m mha.course NAME [options]`: the course's tools.

exercises   regenerate exercises/ from solutions/ (a notebook you have worked in is never overwritten);
            with --check, fail if exercises/ is not what solutions/ generate
grade       grade a folder of submitted notebooks, one sub-folder per student
doctor      check in seconds that this environment can run the course
"""

import argparse
import csv
import sys
from pathlib import Path

from . import doctor, exercises, grade

PROG = "python -m mha.course"


def _exercises(argv) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} exercises", description=exercises.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if exercises/ is out of sync or fails ruff as generated (for CI)"
    )
    parser.add_argument("--root", type=Path, default=exercises.ROOT, help="course folder (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        problems = exercises.check(args.root) + exercises.lint(args.root)
        for problem in problems:
            print(f"✗ {problem}")
        if problems:
            print("Run `make exercises` and commit the result.")
            return 1
        print("✓ exercises/ matches solutions/, and passes ruff as generated")
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
    argparse.ArgumentParser(prog=f"{PROG} doctor", description=doctor.__doc__.split("\n\n")[0]).parse_args(argv)
    results = doctor.checks()
    for ok, what in results:
        print(("✓ " if ok else "✗ ") + what)
    failed = sum(not ok for ok, _ in results)
    print("ready for the course" if not failed else f"{failed} problem(s): fix them, or run `make setup` again")
    return 1 if failed else 0


COMMANDS = {"exercises": _exercises, "grade": _grade, "doctor": _doctor}


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
