"""What every wing's command shares: subcommands whose help is their module's docstring, errors in one line."""

import argparse

from ._provenance import command_line, writable


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
    """Parse `argv` and run the chosen subcommand; a ValueError it raises becomes one line of usage error."""
    args = parser.parse_args(argv)
    args.command = command_line(parser.prog, argv)  # recorded in every results file
    try:
        args.run(args)
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(f"{args.name}: {error}")


def check_output(parser: argparse.ArgumentParser, path: str | None) -> None:
    """Before any work: stop with one line of usage error if `path` (when given) cannot be written."""
    if path:
        try:
            writable(path)
        except ValueError as error:
            parser.error(str(error))
