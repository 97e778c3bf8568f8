"""`python -m mha.pretrained [heads] [options]`: the pretrained encoder of lesson 05, from a shell.

python -m mha.pretrained --sentence "..." --json it.json   every head's top key per query token, for one sentence
python -m mha.pretrained heads --json heads.json           the lesson's tables: head types, [CLS] as a sink,
                                                           pronoun links, ablation, pruning
python -m mha.pretrained kv-pooling --json pooling.json    lesson 07: key/value heads mean-pooled in groups
python -m mha.pretrained positions --json moved.json       lesson 09: the previous-token head with the position
                                                           table shifted or shuffled
"""

import argparse
import sys

from .._commands import check_output, nonempty, positive_int
from .._provenance import command_line, rounded, stamp, write_results
from . import analysis, kv_pooling, moved_positions
from .encoder import COURSE_SENTENCE, load, load_tokenizer, summarise

PROG = "python -m mha.pretrained"


def _sentence(argv) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Where every head of all-MiniLM-L6-v2 looks: each query token's most attended token.\n\n"
        + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sentence", type=nonempty, default=COURSE_SENTENCE, help="the sentence to look at")
    parser.add_argument("--json", metavar="PATH", help="write every head's weights and summary to PATH")
    args = parser.parse_args(argv)
    check_output(parser, args.json)
    tokenizer = load_tokenizer()
    encoding = tokenizer.encode(args.sentence)
    if encoding.overflowing:  # each piece cut off repeats [CLS] and [SEP]
        tokens = len(encoding.ids) + sum(len(piece.ids) - 2 for piece in encoding.overflowing)
        parser.error(
            f"--sentence has {tokens} tokens, more than the {len(encoding.ids)} the model reads: "
            "give a shorter sentence"
        )
    model, tokenizer = load()
    summary = summarise(model, tokenizer, args.sentence)
    tokens = summary["tokens"]
    width = max(6, *(min(len(t), 9) for t in tokens))
    print(f"tokens: {' '.join(tokens)}")
    print("each row: one head; each column: a query token, and under it the token it attends to most")
    print(f"{'layer head':<11}" + " ".join(f"{t[:width]:>{width}}" for t in tokens))
    for h in summary["heads"]:
        print(f"{h['layer']:>5} {h['head']:>4} " + " ".join(f"{t['key'][:width]:>{width}}" for t in h["top"]))
    if args.json:
        write_results(args.json, stamp(command_line(PROG, argv)), summary)
        print(f"wrote {args.json}")


def _heads(argv) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} heads",
        description="What the heads of all-MiniLM-L6-v2 do: head types, pronoun links, ablation, pruning.",
    )
    parser.add_argument("--json", metavar="PATH", help="write the tables to PATH")
    args = parser.parse_args(argv)
    check_output(parser, args.json)
    model, tokenizer = load()
    types = analysis.head_types(model, tokenizer, analysis.TYPE_SENTENCES)
    shares = analysis.sink_shares(model, tokenizer, analysis.TYPE_SENTENCES)
    links = analysis.pronoun_links(model, tokenizer, analysis.PRONOUN_SENTENCES)
    ablation = analysis.ablate_heads(model, tokenizer, analysis.PAIRS)
    rows = analysis.prune(model, tokenizer, ablation.shift, analysis.PRUNE_COUNTS, analysis.PAIRS)
    print(analysis.format_head_types(types))
    print()
    print(analysis.format_sink_shares(shares))
    print()
    print(analysis.format_pronoun_links(links))
    print()
    print(analysis.format_ablation(ablation))
    print()
    print(analysis.format_prune(rows))
    if args.json:
        content = {
            "head_types": {name: scores.tolist() for name, scores in types.items()},
            "sink_shares": {k: v.tolist() for k, v in shares._asdict().items()},
            "pronoun": {"items": analysis.PRONOUN_SENTENCES, **{k: v.tolist() for k, v in links._asdict().items()}},
            "ablation": {"pairs": analysis.PAIRS, **{k: v.tolist() for k, v in ablation._asdict().items()}},
            "prune": [row._asdict() for row in rows],
        }
        write_results(args.json, stamp(command_line(PROG, ["heads", *argv])), content)
        print(f"wrote {args.json}")


def _kv_pooling(argv) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} kv-pooling",
        description="all-MiniLM-L6-v2 with its key/value heads mean-pooled in groups (grouped-query attention "
        "without uptraining): how far the sentence embeddings move, for each kv_heads and grouping.",
    )
    parser.add_argument(
        "--kv-heads", type=positive_int, nargs="+", default=list(kv_pooling.KV_HEADS), help="key/value heads per layer"
    )
    parser.add_argument("--json", metavar="PATH", help="write the table to PATH")
    args = parser.parse_args(argv)
    bad = [k for k in args.kv_heads if k < 1 or 12 % k]
    if bad:
        parser.error(f"--kv-heads must divide the 12 heads of a layer (1, 2, 3, 4, 6, 12), got {bad}")
    check_output(parser, args.json)
    model, tokenizer = load()
    base, rows = kv_pooling.conversion(model, tokenizer, tuple(args.kv_heads))
    print(kv_pooling.format_conversion(rows))
    if args.json:
        content = {
            "pairs": analysis.PAIRS,
            "calibration": analysis.TYPE_SENTENCES,
            "similarities": base,
            "rows": [row._asdict() for row in rows],
        }
        write_results(args.json, stamp(command_line(PROG, ["kv-pooling", *argv])), content, one_line_lists=("rows",))
        print(f"wrote {args.json}")


def _positions(argv) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} positions",
        description="The previous-token head L0H2 of all-MiniLM-L6-v2 with its learned position table shifted or "
        "shuffled (the loaded model itself is left as it was).",
    )
    parser.add_argument("--json", metavar="PATH", help="write the report to PATH")
    args = parser.parse_args(argv)
    check_output(parser, args.json)
    model, tokenizer = load()
    report = moved_positions.moved_table_report(
        model, tokenizer, analysis.TYPE_SENTENCES, moved_positions.SHIFTS, moved_positions.SHUFFLE_SEEDS
    )
    print(moved_positions.format_report(report))
    if args.json:
        content = {**rounded(report), "sentences": analysis.TYPE_SENTENCES}
        write_results(args.json, stamp(command_line(PROG, ["positions", *argv])), content)
        print(f"wrote {args.json}")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["heads"]:
        _heads(argv[1:])
    elif argv[:1] == ["kv-pooling"]:
        _kv_pooling(argv[1:])
    elif argv[:1] == ["positions"]:
        _positions(argv[1:])
    else:
        _sentence(argv)


if __name__ == "__main__":
    main()
