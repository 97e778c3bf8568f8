"""`python -m mha.toy NAME [options]`: the toy experiments of lessons 02, 04 and 09, from a shell.

    tunnel-vision   lesson 02: one head against several of the same total width
    heads           lesson 04: what each head of a trained layer does
    positions       lesson 09: each position scheme trained at one length, tested at 2x and 4x

Each prints the tables its lesson prints and, with `--json PATH`, writes the runs with the exact command that made
them (`mha._provenance`). PATH is checked before any training starts: a file that exists and is not a results file
of the course, a notebook, or a path inside the course's own folders is refused.
"""

import argparse
import sys

from .._commands import positive_float, positive_int, run_subcommand, seed_number, subcommand_parser
from .._provenance import rounded, stamp, write_results
from ..positions import SCHEMES
from . import lengths, tunnel_vision, what_heads_learn

PROG = "python -m mha.toy"


def _tunnel_vision_arguments(parser: argparse.ArgumentParser) -> None:
    default = tunnel_vision.Setting()
    parser.add_argument(
        "--seeds", "--seed", type=seed_number, nargs="+", default=[0, 1, 2], help="seeds, one run each (default: 0 1 2)"
    )
    parser.add_argument("--heads", type=positive_int, nargs="+", default=[1, 4], help="heads compared in the main part")
    parser.add_argument("--vocab", type=positive_int, default=default.vocab, help="distinct tokens")
    parser.add_argument("--steps", type=positive_int, default=default.steps, help="training steps of the base setting")
    parser.add_argument("--d-model", type=positive_int, default=default.d_model, help="features per position")
    parser.add_argument("--seq", type=positive_int, default=default.seq, help="tokens per sequence")
    parser.add_argument("--offsets", type=positive_int, nargs="+", default=list(default.offsets), help="relationships")
    parser.add_argument("--batch", type=positive_int, default=default.batch, help="sequences per batch")
    parser.add_argument("--lr", type=positive_float, default=default.lr, help="Adam's learning rate")
    parser.add_argument(
        "--positions",
        choices=SCHEMES,
        default=default.positions,
        help=f"how the model tells positions apart (lesson 09; default: {default.positions})",
    )
    parser.add_argument(
        "--parts", nargs="+", choices=tunnel_vision.PARTS, default=["main"], help="what to run (default: main)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _tunnel_vision(args) -> None:
    base = tunnel_vision.Setting(
        d_model=args.d_model,
        vocab=args.vocab,
        seq=args.seq,
        offsets=tuple(args.offsets),
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        positions=args.positions,
    )
    settings = tunnel_vision.settings_for(args.parts, base, tuple(args.heads))
    records = tunnel_vision.run_all(
        settings, args.seeds, progress=not args.quiet, log=None if args.quiet else sys.stderr
    )
    print(tunnel_vision.format_table(records))
    print()
    print(tunnel_vision.format_summary(records))
    if any("probe" in r for r in records):
        print("\nlinear probe of each head's output: the token at each offset, read back")
        print(tunnel_vision.format_probe(records))
    if args.json:
        write_results(args.json, stamp(args.command), {"runs": rounded(records)}, one_line_lists=("runs",))
        print(f"\nwrote {len(records)} runs to {args.json}")


def _heads_arguments(parser: argparse.ArgumentParser) -> None:
    default = what_heads_learn.HeadsSetting
    parser.add_argument(
        "--seeds", "--seed", type=seed_number, nargs="+", default=[0], help="seeds to train (default: 0)"
    )
    parser.add_argument("--heads", type=positive_int, default=default.heads, help="attention heads (default: 4)")
    parser.add_argument("--d-model", type=positive_int, default=default.d_model, help="features per position")
    parser.add_argument("--steps", type=positive_int, default=default.steps, help="training steps (default: 600)")
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", "--no-progress", action="store_true", help="no progress bar")


def _heads(args) -> None:
    setting = what_heads_learn.HeadsSetting(heads=args.heads, d_model=args.d_model, steps=args.steps)
    records = []
    for seed in args.seeds:
        record = what_heads_learn.run(setting, seed, progress=not args.quiet)
        print(what_heads_learn.format_record(record), end="\n\n")
        records.append(record)
    if args.json:
        write_results(args.json, stamp(args.command), {"runs": rounded(records)})
        print(f"wrote {args.json}")


def _positions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", "--seed", type=seed_number, nargs="+", default=[0, 1, 2], help="seeds, one run each (default: 0 1 2)"
    )
    parser.add_argument("--tasks", nargs="+", choices=lengths.TASKS, default=list(lengths.TASKS), help="tasks")
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES), help="position schemes")
    parser.add_argument("--steps", type=positive_int, help="training steps (default: 1500 offset, 600 language)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="runs at a time, one process each (default: 1)")
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _positions(args) -> None:
    changes = {} if args.steps is None else {"steps": args.steps}
    settings = lengths.settings_for(args.tasks, args.schemes, **changes)
    records = lengths.run_all(
        settings, args.seeds, progress=not args.quiet, log=None if args.quiet else sys.stderr, jobs=args.jobs
    )
    print(lengths.format_summary(records))
    print()
    print(lengths.format_summary(records, new_positions=True))
    print()
    print(lengths.format_summary(records, new_positions=True, scores="window_scores"))
    if args.json:
        write_results(args.json, stamp(args.command), {"runs": rounded(records)}, one_line_lists=("runs",))
        print(f"\nwrote {len(records)} runs to {args.json}")


# name -> (module whose docstring is the command's help, add the options, run)
COMMANDS = {
    "tunnel-vision": (tunnel_vision, _tunnel_vision_arguments, _tunnel_vision),
    "heads": (what_heads_learn, _heads_arguments, _heads),
    "positions": (lengths, _positions_arguments, _positions),
}


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser(PROG, __doc__, COMMANDS)


def main(argv=None) -> None:
    run_subcommand(build_parser(), sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    main()
