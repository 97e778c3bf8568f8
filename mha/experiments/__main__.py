"""`python -m mha.experiments NAME [options]`: run one of the course's experiments from a shell."""

import argparse
import sys

from . import heads, tunnel_vision

# name -> module with add_arguments(parser) and main(args); the module's docstring is the command's help.
COMMANDS = {
    "tunnel-vision": tunnel_vision,
    "heads": heads,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mha.experiments", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="NAME")
    for name, module in COMMANDS.items():
        summary = module.__doc__.strip().splitlines()[0]
        sub = subcommands.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # so that an experiment can record the exact command that made its results
    try:
        args.main(args)
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(f"{args.command}: {error}")


if __name__ == "__main__":
    main()
