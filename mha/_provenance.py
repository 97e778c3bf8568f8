"""Results files: every experiment's command writes one JSON object, with where it came from, in one format.

    {"provenance": {"command": ..., "torch": ..., "python": ..., "date": ..., "device": ...}, <what was measured>}

`command` is the exact command line that made the file, so that anyone can re-run it. Numbers that are not finite
(NaN, infinities) are written as `null`: JSON has no NaN. The folder is checked before the work starts
(`writable`), so that a long run never ends with nothing written.
"""

import datetime
import json
import math
import os
import platform
import shlex
import tempfile
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


def writable(path) -> Path:
    """Check, before any work, that a results file can be written at `path`; create its folder if needed.

    Raises ValueError naming the path when the folder cannot be created or written to, or the path is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / 'results.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the folder {path.parent} for {path}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write into the folder {path.parent} (no permission)")
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
