"""`python -m mha.flash NAME [options]`: the experiments of lesson 10, from a shell.

    check     the tiled loop and the Triton kernel against float64 softmax attention, forward and backward, on shapes
              that vary batch, heads, kv_heads, lengths (1, odd, not a multiple of a block), d_head and causality
    memory    peak memory of the tiled loop and of attention that holds its weights, against seq, and the slopes
    traffic   bytes that standard and blocked attention move to and from a GPU's main memory, and their roofline

The GPU timing is lesson 06's harness: `python -m mha.bench --device cuda --suite flash`.

Each prints the tables its lesson prints and, with `--json PATH`, writes them with the exact command that made them
(`mha._provenance`). The folder of PATH is checked before any work starts.
"""

import argparse
import sys

from .._commands import run_subcommand, subcommand_parser
from .._provenance import rounded, stamp, writable, write_results
from . import experiments, io, tiled

PROG = "python -m mha.flash"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-triton", action="store_true", help="leave the Triton kernel out (no triton needed)")
    parser.add_argument("--json", metavar="PATH", help="write the errors to PATH")


def _check(args) -> None:
    if args.json:
        writable(args.json)
    rows = experiments.agreement(experiments.versions(triton=not args.no_triton))
    print(experiments.format_agreement(rows))
    worst = max(max(r["forward"], r["backward"]) for r in rows)
    print(f"largest error of any version: {worst:.1e} (float32: at most 1e-5 expected)")
    if args.json:
        write_results(args.json, stamp(args.command), {"rows": rounded(rows, 12)}, one_line_lists=("rows",))
        print(f"wrote {args.json}")


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seqs", type=_positive, nargs="+", default=[512, 1024, 2048, 4096], help="lengths")
    parser.add_argument("--block", type=_positive, default=128, help="queries and keys per block (default: 128)")
    parser.add_argument("--json", metavar="PATH", help="write the measurements to PATH")


def _memory(args) -> None:
    if args.json:
        writable(args.json)
    if len(args.seqs) < 2:
        raise ValueError("--seqs needs at least two lengths to fit a slope")
    rows = experiments.memory(seqs=tuple(sorted(args.seqs)), block=args.block)
    print(experiments.format_memory(rows))
    if args.json:
        write_results(args.json, stamp(args.command), {"rows": rows}, one_line_lists=("rows",))
        print(f"wrote {args.json}")


def _traffic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seqs", type=_positive, nargs="+", default=[1024, 4096, 16384], help="lengths")
    parser.add_argument("--d-head", type=_positive, default=128, help="features per head (default: 128)")
    parser.add_argument("--json", metavar="PATH", help="write the table to PATH")


def _traffic(args) -> None:
    if args.json:
        writable(args.json)
    rows = experiments.traffic(seqs=tuple(args.seqs), d_head=args.d_head)
    print(experiments.balance_note(experiments.DEVICES[0]))
    print(experiments.format_traffic(rows))
    if args.json:
        write_results(args.json, stamp(args.command), {"rows": rows}, one_line_lists=("rows",))
        print(f"wrote {args.json}")


COMMANDS = {
    "check": (experiments, _check_arguments, _check),
    "memory": (tiled, _memory_arguments, _memory),
    "traffic": (io, _traffic_arguments, _traffic),
}


def main(argv=None) -> None:
    parser = subcommand_parser(PROG, __doc__, COMMANDS)
    run_subcommand(parser, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    main()
