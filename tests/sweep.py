"""The bad-input sweep: every command of the course, every option of it, fed bad values; each answer classified.

    python tests/sweep.py                  # counts per command and category, then every case that is not clear
    python tests/sweep.py --json FILE      # also every case and its answer, as JSON
    python tests/sweep.py --wing bench     # one wing only

Commands are found by walking `--help`: every `python -m mha.<wing>` (each sub-package with a `__main__`), the
subcommands its parser lists, and the subcommands its help or its module's docstring shows after the command itself
(`python -m mha.bench mistakes`); each is confirmed by asking it for `--help` in turn. Every option its parser
holds gets the bad values of its kind (a number, a size, a path to read, a path to write, a URL, a device, text);
a new command or option is swept without a line added here. `KINDS` says what each kind gets and `_kind` how an
option's kind is read from its parser.

Each case runs in this process, in a scratch folder made the working directory, as `python -m mha.<wing> ...` runs
(`runpy`), with other options left at their defaults and required ones given good values. The work a command does
once its options are accepted is not done: starting a process (other than `git`, in the scratch folder), opening a
connection, creating an optimizer (training) or loading weights stops the case there, and a case still running
after a time limit is stopped too. The answer is one of:

    clear      rc 2 and one line of error that names the option (or the value of a positional argument), says what
               was expected and shows what arrived; nothing written
    obscure    a traceback, another exit status, a message that does not name the option or the value, or a
               refusal that came after something was written
    silent     accepted without a word: exit status 0, or it went on to its work
    endless    still running after the time limit
    work lost  a file that existed before the command changed or vanished; or, given as a results path, a file
               holding someone's work was not refused before the work started (the command writes its results
               there when the work ends)
"""

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
import math
import multiprocessing.process
import os
import pkgutil
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

CATEGORIES = ("clear", "obscure", "silent", "endless", "work lost")
LIMIT = 5.0  # seconds a case may run before it counts as endless

# Bad values of each kind of option. Paths are relative to the scratch folder, which `_scratch` fills.
KINDS = {
    "int": ["-1", "0", "1.5", "nan", "inf", ""],
    "float": ["-1", "0", "nan", "inf", "-inf", ""],
    "choice": ["nonsense", ""],
    "text": ["", "   "],
    "device": ["banana", "meta", ""],
    "url": ["not a url", "host", "ftp://host/x", "http://", ""],
    "version": ["banana", "-1", ""],
    "output": ["notes.txt", "data.json", "theirs.csv", "lesson.ipynb", "new.ipynb", "{package}", "empty", ""],
    "output-folder": ["notes.txt", "{package-folder}", ""],
    "feedback-folder": ["notes.txt", "instructor", "{package-folder}", ""],
    "folder": ["missing", "notes.txt", "empty", ""],
    "input-file": ["missing.csv", "empty", "binary.csv", "lesson.ipynb", ""],
}
# Good values, for the options a command requires while another option gets a bad value.
GOOD = {
    "url": "http://127.0.0.1:9",
    "repo": "https://example.org/course.git",
    "parts": "shard.csv",
    "gradings": "shard.csv",
    "folder": "students",
    "out": "collected",
    "csv": "merged.csv",
    "output": "fresh.json",
    "input-file": "shard.csv",
    "output-folder": "collected",
    "feedback-folder": "feedback",
    "text": "x",
}
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
GRADES_HEADER = "student,notebook,lesson,exercise,passed,note,run,flags,answer\n"
GRADES_ROW = "alice,01_attention_from_scratch.ipynb,01,scaled_scores,True,,,,0123456789ab\n"
# Paths whose content is someone's work: given as a results path and not refused before the work, work is lost.
WORK = {"notes.txt", "data.json", "theirs.csv", "lesson.ipynb", "{package}", "instructor"}


class Stopped(BaseException):
    """The command went on to its work (a BaseException: a command's `except Exception` does not catch it)."""


class TimeUp(BaseException):
    """The case ran past the time limit."""


@dataclasses.dataclass
class Command:
    wing: str
    words: list  # subcommand words after `python -m mha.<wing>`
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join([f"mha.{self.wing}", *self.words])


@dataclasses.dataclass
class Case:
    command: str
    option: str
    value: str
    category: str = ""
    why: str = ""
    rc: int | None = None
    message: str = ""
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------- running


@contextlib.contextmanager
def _guards():
    """Stop a case when it starts its work: a process (git excepted), a connection, an optimizer, loading weights."""
    import safetensors.torch
    import torch

    def stop(what):
        def refuse(*args, **kwargs):
            raise Stopped(what)

        return refuse

    popen_init = subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        program = args if isinstance(args, str) else (args[0] if args else "")
        if Path((str(program).split() or [""])[0]).name == "git":
            return popen_init(self, args, *rest, **kwargs)
        raise Stopped(f"started a process ({Path(str(program)).name})")

    patches = [
        (subprocess.Popen, "__init__", popen),
        (os, "fork", stop("forked a process")),
        (os, "system", stop("started a shell")),
        (os, "posix_spawn", stop("started a process")),
        (os, "posix_spawnp", stop("started a process")),
        (multiprocessing.process.BaseProcess, "start", stop("started a process")),
        (socket.socket, "connect", stop("opened a connection")),
        (socket.socket, "connect_ex", stop("opened a connection")),
        (socket, "getaddrinfo", stop("looked up a host name")),
        (torch.optim.Optimizer, "__init__", stop("started training (created an optimizer)")),
        (safetensors.torch, "load_file", stop("loaded model weights")),
        (torch.nn.Module, "load_state_dict", stop("loaded model weights")),
    ]
    saved = [(owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name))
             for owner, name, _ in patches]  # fmt: skip
    for owner, name, new in patches:
        setattr(owner, name, new)
    try:
        yield
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)


@contextlib.contextmanager
def _time_limit(seconds: float):
    def up(signum, frame):
        raise TimeUp()

    previous = signal.signal(signal.SIGALRM, up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def invoke(wing: str, argv: list, limit: float = LIMIT, guard: bool = True):
    """Run `python -m mha.<wing> *argv` in this process: (rc or None, stdout, stderr, why it stopped or None)."""
    import torch

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_env, saved_cwd = sys.argv, dict(os.environ), os.getcwd()
    saved_threads, saved_dtype = torch.get_num_threads(), torch.get_default_dtype()
    sys.argv = [f"python -m mha.{wing}", *argv]
    rc, stopped = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            with _time_limit(limit), _guards() if guard else contextlib.nullcontext():
                try:
                    runpy.run_module(f"mha.{wing}", run_name="__main__", alter_sys=True)
                    rc = 0
                except SystemExit as exit_:
                    code = exit_.code
                    if isinstance(code, str):
                        print(code, file=sys.stderr)
                    rc = 0 if code is None else code if isinstance(code, int) else 1
    except Stopped as why:
        stopped = str(why)
    except TimeUp:
        stopped = "time"
    except BaseException:  # noqa: B036 - a traceback is an answer to classify
        err.write(traceback.format_exc())
        rc = 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        torch.set_num_threads(saved_threads)
        torch.set_default_dtype(saved_dtype)
    return rc, out.getvalue(), err.getvalue(), stopped


# --------------------------------------------------------------------------------------------------- commands


def wings() -> list[str]:
    """Every sub-package of mha that has a `__main__`: a command `python -m mha.<wing>`."""
    import mha

    return [
        m.name
        for m in pkgutil.iter_modules(mha.__path__)
        if m.ispkg and importlib.util.find_spec(f"mha.{m.name}.__main__") is not None
    ]


def _help(wing: str, words: list):
    """The parser that answers `python -m mha.<wing> *words --help`, and its help text."""
    captured = []
    original = argparse.ArgumentParser.print_help

    def spy(self, file=None):
        captured.append(self)
        return original(self, file)

    argparse.ArgumentParser.print_help = spy
    try:
        rc, out, err, stopped = invoke(wing, [*words, "--help"])
    finally:
        argparse.ArgumentParser.print_help = original
    return (captured[-1], out) if captured and rc == 0 else (None, out + err)


def commands(wing: str) -> list[Command]:
    """Every command of a wing, found by walking `--help` (and the wing's docstring) from the top."""
    doc = importlib.import_module(f"mha.{wing}.__main__").__doc__ or ""
    found, seen, todo = [], set(), [[]]
    while todo:
        words = todo.pop(0)
        parser, text = _help(wing, words)
        if parser is None or parser.prog in seen:
            continue
        seen.add(parser.prog)
        found.append(Command(wing, words, parser))
        names = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                names += list(action.choices)
            elif not action.option_strings and action.choices and action.nargs is None and not names:
                names += list(action.choices)  # a positional NAME that picks the tool (python -m mha.course)
        texts = text + ("\n" + doc if not words else "")
        prog = re.escape(parser.prog)
        names += re.findall(prog + r" +([a-z][a-z0-9-]*)\b(?![./])", texts)
        for name in dict.fromkeys(names):
            todo.append([*words, name])
    return found


_SKIP = (
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._AppendConstAction,
    argparse._SubParsersAction,
)


def _kind(action: argparse.Action) -> str:
    """What an option takes, read from its parser: choices, a path to read or write, a URL, a number, text."""
    dest = action.dest
    if action.choices is not None:
        return "choice"
    if dest in ("json", "csv"):
        return "output"
    convert = action.type or str
    two = None
    for sample in ("2", "0.5"):  # a share accepts 0.5, not 2
        try:
            two = convert(sample)
            break
        except Exception:
            continue
    if isinstance(two, Path):
        if dest in ("feedback", "out"):
            return "feedback-folder" if dest == "feedback" else "output-folder"
        return "input-file" if dest in ("parts", "gradings") else "folder"
    if dest in ("hub", "repo"):
        return "version" if action.metavar == "VERSION" else "url"
    if dest == "device":
        return "device"
    if isinstance(two, bool):
        return "text"
    if isinstance(two, int):
        return "int"
    if isinstance(two, float):
        return "float"
    return "text"


def _good(action: argparse.Action) -> str:
    kind = _kind(action)
    if kind == "choice":
        return str(next(iter(action.choices)))
    if kind == "url":
        return GOOD.get(action.dest, GOOD["url"])
    return GOOD.get(action.dest, GOOD.get(kind, "1"))


def _arg(action: argparse.Action, value: str) -> list:
    if not action.option_strings:
        return [value]
    return [f"{max(action.option_strings, key=len)}={value}"]  # =: "-1" and "" are values, not options


def _zero_is_good(action: argparse.Action) -> bool:
    default = action.default if isinstance(action.default, list | tuple) else [action.default]
    return "seed" in action.dest or 0 in default


def cases(command: Command) -> list[tuple[argparse.Action, str, list]]:
    """(action, bad value, argv) for every option of a command and every bad value of its kind."""
    actions = [a for a in command.parser._actions if not isinstance(a, _SKIP) and a.nargs != 0]
    required = [a for a in actions if a.required or not a.option_strings]
    out = []
    for action in actions:
        values = KINDS[_kind(action)]
        if _kind(action) == "int" and _zero_is_good(action):
            values = [v for v in values if v != "0"]
        for value in values:
            argv = list(command.words)
            for other in required:
                if other is not action:
                    argv += _arg(other, _good(other))
            argv += _arg(action, value)
            if not action.option_strings:  # positionals in their order
                argv = list(command.words)
                for other in required:
                    argv += _arg(other, value if other is action else _good(other))
            out.append((action, value, argv))
    return out


# --------------------------------------------------------------------------------------------------- the scratch folder


def _scratch(folder: Path) -> None:
    """The files a case may be given: someone's work, a notebook, a folder, a grades shard, a small git checkout."""
    (folder / "notes.txt").write_text("my notes, not a results file\n")
    (folder / "data.json").write_text('{"my": "data"}\n')
    (folder / "theirs.csv").write_text("a,b\n1,2\n")
    (folder / "lesson.ipynb").write_text(json.dumps(NOTEBOOK))
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "shard.csv").write_text(GRADES_HEADER + GRADES_ROW)
    (folder / "empty").mkdir()
    (folder / "instructor").mkdir()
    (folder / "instructor" / "alice.txt").write_text("the instructor's own notes on alice\n")
    (folder / "students" / "alice").mkdir(parents=True)
    (folder / "exercises").mkdir()
    (folder / "exercises" / "01_sweep.ipynb").write_text(json.dumps(NOTEBOOK))
    env = {**os.environ, "GIT_AUTHOR_NAME": "s", "GIT_AUTHOR_EMAIL": "s@x", "GIT_COMMITTER_NAME": "s",
           "GIT_COMMITTER_EMAIL": "s@x"}  # fmt: skip
    for args in (["init", "-q"], ["add", "exercises"], ["commit", "-q", "-m", "course"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)


def _snapshot(folder: Path, probe: Path | None) -> dict:
    files = {}
    for path in folder.rglob("*"):
        if ".git" in path.relative_to(folder).parts or "__pycache__" in path.parts:
            continue
        files[path] = path.read_bytes() if path.is_file() else None
    if probe is not None:
        files[probe] = probe.read_bytes() if probe.exists() else b"<missing>"
    return files


def _restore(before: dict, folder: Path, probe: Path | None) -> tuple[list, list]:
    """Put every file back as it was; (changed or vanished files, new files)."""
    after = _snapshot(folder, probe)
    changed = [p for p, data in before.items() if after.get(p, b"<missing>") != data]
    new = [p for p in after if p not in before]
    for path in new:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for path in sorted(changed, key=lambda p: len(p.parts)):
        data = before[path]
        if path.is_dir() and not path.is_symlink() and data is not None:
            shutil.rmtree(path)
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        elif data != b"<missing>":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return changed, new


# --------------------------------------------------------------------------------------------------- classifying


def _names_option(message: str, action: argparse.Action, value: str) -> bool:
    """The option by one of its names (a word of its own, not part of a file name), or a positional's value."""
    names = [*action.option_strings, action.dest, action.dest.replace("_", "-")]
    if not action.option_strings:
        names.append(str(action.metavar or ""))
        if value.strip() and value in message:
            return True
    return any(n and re.search(rf"(?<![\w./-]){re.escape(n)}(?![\w.-])", message) for n in names)


def _shows_value(message: str, value: str) -> bool:
    if repr(value) in message:
        return True
    if not value.strip():
        return any(w in message for w in ("empty", "''", '""', "blank", "no text"))
    low = message.lower()
    return value.lower() in low or Path(value).name.lower() in low


_EXPECTS = re.compile(
    r"must|expect|should|choose from|takes|give|need|is not|isn't|not a|only|at least|at most|invalid|cannot|"
    r"no such|does not|doesn't|has no|holds|refus|between|positive|finite|whole number|a number|a folder|a file",
    re.IGNORECASE,
)


def classify(case: Case, action, value: str, rc, out: str, err: str, stopped, changed, new, limit=LIMIT) -> None:
    """Set the case's category and why, from what the command did (`value` as given, paths resolved)."""
    label = case.value
    errors = [line for line in err.splitlines() if re.search(r"(^|: )error: ", line) or line.startswith("✗ ")]
    case.rc = rc
    case.message = (errors[-1] if errors else err.strip().splitlines()[-1] if err.strip() else "")[:300]
    if changed:
        case.category, case.why = "work lost", "changed " + ", ".join(p.name for p in changed[:3])
        return
    if stopped == "time":
        if _kind(action) == "output" and label in WORK:
            case.category, case.why = "work lost", "not refused; the work (still running) ends by writing there"
            return
        case.category, case.why = "endless", f"still running after {limit:g} s"
        return
    if stopped is not None:
        if _kind(action) in ("output", "feedback-folder") and label in WORK:
            case.category, case.why = "work lost", f"not refused: {stopped}, and writes its results there at the end"
            return
        complained = re.search(r"warn|error", err, re.IGNORECASE)
        case.category = "obscure" if complained else "silent"
        case.why = f"went on to its work: {stopped}" + (" after a warning" if complained else "")
        return
    if "Traceback (most recent call last)" in err:
        last = err.strip().splitlines()[-1]
        case.category, case.why, case.message = "obscure", "a traceback", last[:300]
        return
    if rc == 0:
        complained = re.search(r"warn|error|✗", err + out, re.IGNORECASE)
        case.category = "obscure" if complained else "silent"
        case.why = (
            "exit status 0"
            + (" after a warning" if complained else "")
            + (f", wrote {', '.join(p.name for p in new[:3])}" if new else "")
        )
        return
    if rc != 2:
        case.category, case.why = "obscure", f"exit status {rc}"
        return
    if new:
        case.category, case.why = "obscure", "refused after writing " + ", ".join(p.name for p in new[:3])
        return
    if len(errors) != 1:
        case.category, case.why = "obscure", f"{len(errors)} error lines"
        return
    message = errors[0]
    problems = []
    if not _names_option(message, action, value):
        problems.append("does not name the option")
    if not _shows_value(message, value):
        problems.append("does not show what arrived")
    if not _EXPECTS.search(message.split("error:", 1)[-1]):
        problems.append("does not say what was expected")
    case.category, case.why = ("obscure", "; ".join(problems)) if problems else ("clear", "")


# --------------------------------------------------------------------------------------------------- the sweep


def _option_name(action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else str(action.metavar or action.dest)


def sweep(only: list | None = None, limit: float = LIMIT, log=None) -> list[Case]:
    """Every case of every command (of the wings in `only`, default all), classified."""
    import mha

    results = []
    home = Path(tempfile.mkdtemp(prefix="mha-sweep-"))
    package = Path(mha.__file__).resolve().parent
    probe = package / f".sweep-{os.getpid()}.json"
    saved_cwd = os.getcwd()
    try:
        try:  # a results file of ours, inside the package: only "inside the package" refuses it
            probe.write_text(json.dumps({"provenance": {"command": "python -m mha.toy heads"}, "runs": []}))
        except OSError:
            probe = None
        _scratch(home)
        os.chdir(home)
        os.environ["MHA_COLLECT_TOKEN"] = "sweep-token"
        found = [c for wing in wings() if not only or wing in only for c in commands(wing)]
        for command in found:
            for action, label, argv in cases(command):
                places = {"{package}": str(probe or ""), "{package-folder}": str(package / "sweep-feedback")}
                value = places.get(label, label)
                argv = [a.replace(label, value) if label in places else a for a in argv]
                before = _snapshot(home, probe)
                start = time.perf_counter()
                rc, out, err, stopped = invoke(command.wing, argv, limit)
                seconds = time.perf_counter() - start
                changed, new = _restore(before, home, probe)
                shutil.rmtree(package / "sweep-feedback", ignore_errors=True)
                case = Case(command.name, _option_name(action), label, seconds=round(seconds, 3))
                classify(case, action, value, rc, out, err, stopped, changed, new, limit)
                results.append(case)
                if log:
                    print(f"{case.category:<9} {case.command} {case.option}={value!r} {case.why}", file=log, flush=True)
    finally:
        os.chdir(saved_cwd)
        shutil.rmtree(home, ignore_errors=True)
        if probe is not None:
            probe.unlink(missing_ok=True)
        shutil.rmtree(package / "sweep-feedback", ignore_errors=True)
    return results


def table(results: list[Case]) -> str:
    """Counts per command and category, and in all."""
    names = list(dict.fromkeys(c.command for c in results))
    width = max([len(n) for n in names] + [10])
    lines = [f"{'command':<{width}} " + " ".join(f"{c:>9}" for c in CATEGORIES) + f" {'cases':>6}"]
    for name in [*names, "in all"]:
        mine = [c for c in results if name in (c.command, "in all")]
        lines.append(
            f"{name:<{width}} " + " ".join(f"{sum(c.category == k for c in mine):>9}" for k in CATEGORIES)
            + f" {len(mine):>6}"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/sweep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wing", action="append", help="only this wing (repeat for several)")
    parser.add_argument("--json", help="write every case here")
    parser.add_argument("--limit", type=float, default=LIMIT, help=f"seconds per case (default {LIMIT:g})")
    parser.add_argument("--verbose", action="store_true", help="one line per case as it runs")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.limit) and args.limit > 0):
        parser.error(f"--limit must be a finite number of seconds above 0, got {args.limit}")
    start = time.perf_counter()
    results = sweep(args.wing, args.limit, log=sys.stderr if args.verbose else None)
    print(table(results))
    print(f"\n{len(results)} cases in {time.perf_counter() - start:.0f} s")
    for case in results:
        if case.category != "clear":
            print(f"{case.category:<9} {case.command} {case.option}={case.value!r}: {case.why} | {case.message}")
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(c) for c in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
