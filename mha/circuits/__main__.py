"""`python -m mha.circuits NAME [options]`: the experiments of lesson 11, heads that work together, from a shell.

    induction   one layer against two on repeated random tokens: accuracy, the phase change, head scores,
                ablation, composition, the in-context score
    text        learning in context on documents of lesson 04's template language
    minilm      all-MiniLM-L6-v2's heads on repeated random words: previous-token, induction, duplicate heads

Each prints the tables its lesson prints and, with `--json PATH`, writes them with the exact command that made
them (`mha._provenance`). The folder of PATH is checked before any work starts.
"""

import argparse
import dataclasses
import sys

from .._commands import run_subcommand, seed_number, subcommand_parser
from .._provenance import rounded, stamp, writable, write_results
from ..positions import SCHEMES
from . import induction, minilm, text
from .repeats import chance_levels

PROG = "python -m mha.circuits"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def _induction_arguments(parser: argparse.ArgumentParser) -> None:
    default = induction.InductionSetting()
    parser.add_argument(
        "--seeds", "--seed", type=seed_number, nargs="+", default=[0, 1, 2, 3, 4], help="default: 0 1 2 3 4"
    )
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        choices=(1, 2),
        default=[1, 2],
        help="which models: 1 (one layer, as many heads in all, matched parameters), 2 (default: both)",
    )
    parser.add_argument(
        "--positions", nargs="+", choices=SCHEMES, default=["learned"], help="position schemes (default: learned)"
    )
    parser.add_argument("--steps", type=_positive, default=default.steps, help=f"default: {default.steps}")
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _induction(args) -> None:
    settings = []
    for scheme in args.positions:
        two = induction.InductionSetting(steps=args.steps, positions=scheme)
        settings += [s for s in induction.main_settings(two) if s.layers in args.layers]
    if args.json:
        writable(args.json)
    records = induction.run_all(settings, args.seeds, progress=not args.quiet, log=None if args.quiet else sys.stderr)
    task = settings[0].task()
    print("accuracy on the predictable positions (the current token occurred before):")
    print(induction.format_accuracy(records, chance_levels(task)))
    two_layers = [r for r in records if r["layers"] == 2]
    if two_layers:
        print("\nthe two-layer models' heads, with the previous-token head removed and with another head of layer 0:")
        print(induction.format_summary(two_layers))
        for r in two_layers[:1]:
            print()
            print(induction.format_ablation(r))
    if args.json:
        content = {"chance": chance_levels(task), "runs": rounded(records)}
        write_results(args.json, stamp(args.command), content, one_line_lists=("runs",))
        print(f"\nwrote {len(records)} runs to {args.json}")


def _text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", "--seed", type=seed_number, nargs="+", default=[0, 1], help="default: 0 1")
    parser.add_argument("--steps", type=_positive, default=text.TextSetting.steps, help="training steps")
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _text(args) -> None:
    if args.json:
        writable(args.json)
    records = []
    for setting in text.text_settings():
        for seed in args.seeds:
            record, _ = text.run(dataclasses.replace(setting, steps=args.steps), seed, progress=not args.quiet)
            records.append(record)
    print(text.format_text(records))
    if args.json:
        write_results(args.json, stamp(args.command), {"runs": rounded(records)}, one_line_lists=("runs",))
        print(f"\nwrote {len(records)} runs to {args.json}")


def _minilm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=_positive, default=minilm.BATCH, help=f"sequences (default: {minilm.BATCH})")
    parser.add_argument("--length", type=_positive, default=minilm.LENGTH, help="words in the pattern")
    parser.add_argument("--json", metavar="PATH", help="write the report to PATH")


def _minilm(args) -> None:
    from ..pretrained import load  # here: the other commands do not need the model's files

    if args.length > 254:
        raise ValueError(f"--length must be at most 254 (the model reads 512 tokens), got {args.length}")
    if args.json:
        writable(args.json)
    model, tokenizer = load()
    report = minilm.analyse(model, tokenizer, batch=args.batch, length=args.length)
    print(minilm.format_report(report))
    if args.json:
        write_results(args.json, stamp(args.command), rounded(report, 4))
        print(f"\nwrote {args.json}")


# name -> (module whose docstring is the command's help, add the options, run)
COMMANDS = {
    "induction": (induction, _induction_arguments, _induction),
    "text": (text, _text_arguments, _text),
    "minilm": (minilm, _minilm_arguments, _minilm),
}


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser(PROG, __doc__, COMMANDS)


def main(argv=None) -> None:
    run_subcommand(build_parser(), sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    main()
