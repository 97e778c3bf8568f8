"""Results files: every experiment's command writes one JSON object, with where it came from, in one format.

    {"provenance": {"command": ..., "torch": ..., "python": ..., "date": ..., "device": ...}, <what was measured>}

`command` is the exact command line that made the file, so that anyone can re-run it. Numbers that are not finite
(NaN, infinities) are written as `null`: JSON has no NaN.

Every command checks where it will write before its work starts (`writable`), so that a long run never ends with
nothing written, and no command replaces a file it did not write: a path that exists and is not a file of ours
(judged by its content: the provenance at its top), a notebook, or a path inside the package or the course's own
folders is refused, naming it.
"""

import csv
import datetime
import json
import math
import os
import platform
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def command_line(prog: str, argv) -> str:
    """The command as typed, e.g. `command_line("python -m mha.toy", ["heads", "--seed", "0"])`."""
    return f"{prog} {shlex.join(list(argv))}".strip()


def device_name(device="cpu") -> str:
    """ "NVIDIA H100 80GB HBM3" for a GPU; "CPU: <model name>" for a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU: " + (platform.processor() or platform.machine())


def stamp(command: str, device="cpu") -> dict:
    """Where a result came from: the command, torch and Python versions, the date (UTC) and the device."""
    return {
        "command": command,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
    }


# The course's own folders, in a checkout (or a copy of the course a student pulled): a results file is never
# written into them, whatever its name. notebooks/results/ is where the lessons' recorded results live.
COURSE_FOLDERS = ("mha", "exercises", "solutions", "notebooks", "tests", "scripts", "jupyter", ".git", ".ci")
RESULTS_FOLDER = ("notebooks", "results")
PACKAGE = Path(__file__).resolve().parent


def is_results(text: str) -> bool:
    """True for the text of a results file of ours: one JSON object whose "provenance" names the command."""
    try:
        payload = json.loads(text)
    except ValueError:
        return False
    provenance = payload.get("provenance") if isinstance(payload, dict) else None
    return isinstance(provenance, dict) and isinstance(provenance.get("command"), str)


def csv_with_header(columns) -> Callable[[str], bool]:
    """A judge of CSV files: True for a text whose first row is exactly `columns` (a byte-order mark allowed)."""
    columns = list(columns)

    def judge(text: str) -> bool:
        first = text.removeprefix("\ufeff").split("\n", 1)[0].rstrip("\r")
        try:
            return next(csv.reader([first])) == columns
        except (csv.Error, StopIteration):
            return False

    return judge


def csv_with_provenance(text: str) -> bool:
    """True for a CSV of ours that repeats its provenance on every row: its header ends with torch, date, command
    (whatever columns come before, so that a file recorded before a column was added is still recognised)."""
    first = text.removeprefix("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        return next(csv.reader([first]))[-3:] == ["torch", "date", "command"]
    except (csv.Error, StopIteration):
        return False


def _course_root(path: Path) -> Path | None:
    """The course folder `path` lies in (a folder holding mha/__init__.py and notebooks/), or None."""
    for folder in path.parents:
        if (folder / "mha" / "__init__.py").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def protected(path) -> str | None:
    """Why nothing may be written at `path` whatever it holds: inside the package or the course's own folders.

    Returns None where writing is allowed, else the reason in words.
    """
    resolved = Path(os.path.abspath(Path(path).expanduser()))
    resolved = resolved.parent.resolve() / resolved.name  # links in the folders resolved, the name kept
    if resolved == PACKAGE or PACKAGE in resolved.parents:
        return f"it lies inside the course's package ({PACKAGE}), among its code"
    root = _course_root(resolved)
    if root is None:
        return None
    inside = resolved.relative_to(root).parts
    if inside[:2] == RESULTS_FOLDER and len(inside) > 2:
        return None
    if len(inside) > 1 and inside[0] in COURSE_FOLDERS:
        return (
            f"it lies inside the course's own folder {inside[0]}/ (in {root}), which the course's commands never write"
        )
    return None


def writable(path, judge=is_results, what: str = "a results file of the course") -> Path:
    """Check, before any work, that a file of ours may be written at `path`: the rule every command follows.

    Refused, with a ValueError that names the path and says what to do:
    - an empty name, or a folder;
    - a notebook (`.ipynb`), whether it exists or not: results are never written into a notebook;
    - a path inside the package or the course's own folders (`protected`);
    - a file that exists and is not one of ours, judged by its content (`judge`; by default a JSON results file
      whose provenance names its command): someone's work is never replaced;
    - a folder that cannot be created or written to.
    Otherwise the folder is created if needed.

    Args:
        path: where the file would go.
        judge: text -> True when an existing file at `path` is one of ours and may be replaced (default
            `is_results`; `csv_with_header(columns)` for a CSV).
        what: what `judge` accepts, for the message (default "a results file of the course").
    """
    if path is None or not str(path).strip():
        raise ValueError(f"the file name is empty ({str(path)!r}): give the path of a file to write")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / 'results.json'}")
    if path.suffix.lower() == ".ipynb":
        raise ValueError(f"{path} is a notebook; results are never written into a notebook: give a .json or .csv name")
    reason = protected(path)
    if reason:
        raise ValueError(f"{path}: {reason}; write it elsewhere, e.g. in a folder of your own")
    if path.exists() or path.is_symlink():
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        if not path.is_file() or text is None or not judge(text):
            raise ValueError(
                f"{path} exists and is not {what}, so it may hold someone's work: it is left as it is; "
                f"give a new file name, or move it away first"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the folder {path.parent} for {path}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write into the folder {path.parent} (no permission)")
    return path


def writable_folder(path) -> Path:
    """Check, before any work, that a command may write its files into the folder `path` (created later if needed).

    Refused, with a ValueError naming it: an empty name, a path that exists and is not a folder, a folder inside
    the package or the course's own folders (`protected`), a folder that cannot be made or written to. Which files
    already inside it may be replaced is for the command to judge, file by file (`writable`).
    """
    if path is None or not str(path).strip():
        raise ValueError(f"the folder name is empty ({str(path)!r}): give the path of a folder")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    reason = protected(path / "x")
    if reason:
        raise ValueError(f"{path}: {reason}; give a folder of your own")
    existing = next(folder for folder in (path, *path.parents) if folder.exists() or folder == Path(folder.anchor))
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, so the folder {path} cannot be made")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"cannot write into {existing} (no permission), so not into {path}")
    return path


def finite(x):
    """The same data with every NaN or infinity replaced by None (JSON's null), tuples as lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def rounded(x, digits: int = 6):
    """The same data with floats rounded: finer digits are noise, and make files hard to read and compare."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v, digits) for v in x]
    return x


def write_results(path, provenance: dict, content: dict, one_line_lists: tuple = ()) -> Path:
    """Write `{"provenance": ..., **content}` to `path` as JSON, atomically (a reader never sees half a file).

    Args:
        path: the file; its folder is created.
        provenance: from `stamp`.
        content: what was measured; NaN and infinities become null.
        one_line_lists: keys of `content` holding lists written one item per line (long lists of runs stay
            readable and diff line by line).
    """
    path = writable(path)
    payload = finite({"provenance": provenance, **content})
    parts = []
    for key, value in payload.items():
        if key in one_line_lists and isinstance(value, list):
            items = ",\n".join("  " + json.dumps(item, allow_nan=False) for item in value)
            parts.append(f"{json.dumps(key)}: [\n{items}\n ]" if value else f"{json.dumps(key)}: []")
        else:
            parts.append(f"{json.dumps(key)}: " + json.dumps(value, indent=1, allow_nan=False).replace("\n", "\n "))
    text = "{\n " + ",\n ".join(parts) + "\n}\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
    return path


def read_results(path) -> dict:
    """A results file written by `write_results`: a dict with "provenance" and the measured content."""
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or "provenance" not in payload:
        raise ValueError(f"{path} is not a results file of the course (no 'provenance' at its top)")
    return payload
