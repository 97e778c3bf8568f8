"""What every wing's command shares: subcommands whose help is their module's docstring, errors in one line, the
types of their options and the check of every path they write.

An option's value is checked where it enters, in one vocabulary: the option, what was expected, what arrived
(`argument --steps: expected a whole number of at least 1, got '1.5'`). A results path (`--json`, `--csv`) is
checked before any work by `mha._provenance.writable`, the one rule of every command: a file that exists and is not
one of ours, a notebook, a path inside the package or the course's own folders are refused.
"""

import argparse
import math
import re
import urllib.parse

from ._provenance import command_line, is_results, writable, writable_folder

# Options that name a file the command writes: checked before the work, whatever the subcommand.
OUTPUTS = ("json", "csv")


def subcommand_parser(prog: str, description: str, commands: dict) -> argparse.ArgumentParser:
    """A parser with one subcommand per entry of `commands`.

    Args:
        prog: the command as a learner types it, e.g. "python -m mha.toy".
        description: the command's help text.
        commands: name -> (module whose docstring is the subcommand's help, function adding its options, function
            running it with the parsed arguments).
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subcommands = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, (module, add_arguments, run) in commands.items():
        summary = module.__doc__.strip().splitlines()[0]
        sub = subcommands.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def run_subcommand(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Parse `argv`, check every results path (`OUTPUTS`) and run the chosen subcommand; a ValueError it raises
    becomes one line of usage error."""
    args = parser.parse_args(argv)
    args.command = command_line(parser.prog, argv)  # recorded in every results file
    for dest in OUTPUTS:
        if getattr(args, dest, None) is not None:
            check_output(parser, getattr(args, dest), f"--{dest}")
    try:
        args.run(args)
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(f"{args.name}: {error}")


def check_output(
    parser: argparse.ArgumentParser, path: str | None, option: str = "--json", judge=is_results, what=None
) -> None:
    """Before any work: stop with one line of usage error if `path` (when given, even empty) may not be written.

    Args:
        parser: the command's parser (its error ends the command with status 2).
        path: the option's value; None when the option was not given.
        option: the option, named in the message, e.g. "--json".
        judge, what: how an existing file is recognised as one of ours, and its name (see `writable`).
    """
    if path is None:
        return
    try:
        writable(path, judge, *([what] if what else []))
    except ValueError as error:
        parser.error(f"{option} {path!r}: {error}" if not str(path).strip() else f"{option}: {error}")


def check_output_folder(parser: argparse.ArgumentParser, path, option: str) -> None:
    """Before any work: stop with one line of usage error if the command may not write its files into `path`."""
    if path is None:
        return
    try:
        writable_folder(path)
    except ValueError as error:
        parser.error(f"{option}: {error}")


# --------------------------------------------------------------------------------------------------- option types
# argparse calls them with the text typed; an ArgumentTypeError becomes "argument --steps: <message>".


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (steps, sizes, counts)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def seed_number(text: str) -> int:
    """A seed: a whole number, 0 or more."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number of 0 or more, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a time, a size, a learning rate): NaN and infinities refused."""
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value


def share(text: str) -> float:
    """A share of a whole: a number above 0 and at most 1."""
    value = _number(text, float)
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a share above 0 and at most 1 (0.5 is half), got {text!r}")
    return value


def torch_device(text: str) -> str:
    """A device this machine has, as torch names it: cpu, cuda or cuda:1 (meta holds no numbers to time)."""
    import torch

    value = text.strip()
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected a device such as cpu, cuda or cuda:1, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"expected a device this machine has: {text!r} asked for, but no GPU is found")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"expected a GPU from cuda:0 to cuda:{torch.cuda.device_count() - 1}, got {text!r}"
        )
    return value


def nonempty(text: str) -> str:
    """Text that is not empty or only spaces."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected some text, got an empty value {text!r}")
    return text


def url(text: str) -> str:
    """A web address with its scheme and host, e.g. https://hub.example.edu."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in text.strip():
        raise argparse.ArgumentTypeError(
            f"expected a web address with http:// or https:// and a host, like https://hub.example.edu, got {text!r}"
        )
    return text.strip()


_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:[^\s]+$")  # git@host:owner/repo.git


def repository(text: str) -> str:
    """The address of a git repository: https://, ssh://, git://, file:// or git@host:path."""
    value = text.strip()
    parts = urllib.parse.urlsplit(value)
    remote = parts.scheme in ("http", "https", "ssh", "git") and parts.netloc and parts.path not in ("", "/")
    local = parts.scheme == "file" and parts.path not in ("", "/")
    if " " in value or not (remote or local or _SCP_LIKE.match(value)):
        raise argparse.ArgumentTypeError(
            f"expected the address of a git repository (https://host/owner/repo.git, git@host:owner/repo.git or "
            f"file:///path/repo.git), got {text!r}"
        )
    return value
