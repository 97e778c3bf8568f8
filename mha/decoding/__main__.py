"""`python -m mha.decoding NAME [options]`: the experiments of lesson 07, from a shell.

    cache-sizes   the KV cache of published models at 8k and 128k tokens: as published, as MHA, as MQA
    intensity     FLOPs against bytes read in one cached decoding step, against a GPU's balance point
    speed         time per new token with and without the cache; a cached step against kv_heads
    sharing       accuracy against kv_heads on lesson 02's task, lesson 04's sentences and a task of six bits
    write         train the small decoder on the template language and complete prompts, with and without the cache

Each prints the tables its lesson prints and, with `--json PATH`, writes them with the exact command that made them
(`mha._provenance`). The folder of PATH is checked before any work starts.
"""

import argparse
import sys

import torch
from tqdm.auto import tqdm

from .._commands import nonempty, positive_int, run_subcommand, seed_number, subcommand_parser, torch_device
from .._provenance import rounded, stamp, writable, write_results
from . import configs, intensity, sharing, speed, writer

PROG = "python -m mha.decoding"


def _cache_sizes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contexts", type=positive_int, nargs="+", default=list(configs.CONTEXTS), help="tokens (default: 8192 131072)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the table to PATH")


def _cache_sizes(args) -> None:
    if args.json:
        writable(args.json)
    rows = configs.cache_table(contexts=tuple(args.contexts))
    print(configs.format_cache_table(rows))
    print("\nsources:")
    for c in configs.PUBLISHED:
        print(f"  {c.name}: {c.source}")
    if args.json:
        content = {"bytes_per_number": configs.BYTES_PER_NUMBER, "rows": rows}
        write_results(args.json, stamp(args.command), content, one_line_lists=("rows",))
        print(f"\nwrote {args.json}")


def _intensity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=sorted(intensity.BANDWIDTH), default="H100 SXM", help="the GPU (default: H100 SXM)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the table to PATH")


def _intensity(args) -> None:
    if args.json:
        writable(args.json)
    rows = intensity.intensity_table(device=args.device)
    print(intensity.format_intensity(rows))
    print("\nsources:")
    print(f"  {intensity.LLAMA_3_1_8B.name}: {intensity.LLAMA_3_1_8B.source}")
    bandwidth, source = intensity.BANDWIDTH[args.device] / 1e12, intensity.machine(args.device).source
    print(f"  {args.device}: peak FLOP/s and memory bandwidth ({bandwidth:.2f} TB/s), {source}")
    if args.json:
        write_results(args.json, stamp(args.command), {"rows": rows}, one_line_lists=("rows",))
        print(f"\nwrote {args.json}")


def _speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--only", nargs="+", choices=("per-token", "kv-heads"), default=["per-token", "kv-heads"], help="what to time"
    )
    parser.add_argument("--json", metavar="PATH", help="write the timings to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _speed(args) -> None:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    if args.json:
        writable(args.json)
    setting = speed.QUICK if args.quick else speed.SpeedSetting()
    steps = len(setting.contexts) * ("per-token" in args.only) + len(setting.kv_heads) * ("kv-heads" in args.only)
    bar = tqdm(total=steps, disable=args.quiet, leave=False)

    def progress(label):
        bar.set_postfix_str(label, refresh=False)
        bar.update()

    content = {"setting": speed.describe(setting), "threads": args.threads}
    if "per-token" in args.only:
        content["per_token"] = speed.per_token(setting, device, args.threads, progress)
    if "kv-heads" in args.only:
        content["kv_heads"] = speed.by_kv_heads(setting, device, args.threads, progress)
    bar.close()
    where = f"{device.type}, {args.threads} thread{'s' if args.threads > 1 else ''}"
    if "per_token" in content:
        print(
            f"time of the next token (d_model {setting.d_model}, {setting.heads} heads, {setting.layers} layers, "
            f"batch 1, {where})"
        )
        print(speed.format_per_token(content["per_token"]))
    if "kv_heads" in content:
        print(
            f"\none cached step at {setting.kv_context:,} tokens, batch {setting.kv_batch}, against kv_heads "
            f"({setting.heads} query heads, {where})"
        )
        print(speed.format_kv_heads(content["kv_heads"]))
    if args.json:
        write_results(args.json, stamp(args.command, device), rounded(content, 9))
        print(f"\nwrote {args.json}")


def _sharing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", "--seed", type=seed_number, nargs="+", default=[0, 1, 2], help="seeds, one run each (default: 0 1 2)"
    )
    parser.add_argument("--tasks", nargs="+", choices=sharing.TASKS, default=list(sharing.TASKS), help="tasks")
    parser.add_argument(
        "--kv-heads",
        type=positive_int,
        nargs="+",
        default=list(sharing.KV_HEADS),
        help="key/value heads (default: 8 4 2 1)",
    )
    parser.add_argument(
        "--d-models",
        type=positive_int,
        nargs="+",
        default=None,
        help="widths d_model, 8 query heads each, for every task (default: each task's own, 64, and 16 for bits)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the runs to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _sharing(args) -> None:
    d_models = None if args.d_models is None else tuple(args.d_models)
    settings = sharing.settings_for(args.tasks, tuple(args.kv_heads), d_models)
    if args.json:
        writable(args.json)
    records = sharing.run_all(settings, args.seeds, progress=not args.quiet, log=None if args.quiet else sys.stderr)
    print(sharing.format_table(records))
    print()
    print(sharing.format_summary(records))
    print()
    print(sharing.format_looks(records))
    if args.json:
        write_results(args.json, stamp(args.command), {"runs": rounded(records)}, one_line_lists=("runs",))
        print(f"\nwrote {len(records)} runs to {args.json}")


def _write_arguments(parser: argparse.ArgumentParser) -> None:
    default = writer.WriterSetting()
    parser.add_argument("--seed", type=seed_number, default=0, help="seed of the weights and batches (default: 0)")
    parser.add_argument("--steps", type=positive_int, default=default.steps, help=f"training steps ({default.steps})")
    parser.add_argument("--kv-heads", type=positive_int, default=None, help="key/value heads (default: heads)")
    parser.add_argument("--prompts", type=nonempty, nargs="+", default=writer.PROMPTS, help="texts to complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _write(args) -> None:
    setting = writer.WriterSetting(steps=args.steps, kv_heads=args.kv_heads)
    for prompt in args.prompts:
        try:
            writer.encode_words(prompt)  # a clear error for an unknown word, before training
        except ValueError as error:
            raise ValueError(f"--prompts {prompt!r}: {error}") from None
    result = writer.train_writer(setting, args.seed, progress=not args.quiet)
    print(f"next-word accuracy on held-out sentences: {result.accuracy:.1%} [took {result.seconds:.1f} s]")
    with_cache = writer.continue_text(result.model, args.prompts)
    without = writer.continue_text(result.model, args.prompts, use_cache=False)
    for text in with_cache:
        print(f"  {text}")
    print(f"the same text without the cache: {with_cache == without}")


# name -> (module whose docstring is the command's help, add the options, run)
COMMANDS = {
    "cache-sizes": (configs, _cache_sizes_arguments, _cache_sizes),
    "intensity": (intensity, _intensity_arguments, _intensity),
    "speed": (speed, _speed_arguments, _speed),
    "sharing": (sharing, _sharing_arguments, _sharing),
    "write": (writer, _write_arguments, _write),
}


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser(PROG, __doc__, COMMANDS)


def main(argv=None) -> None:
    run_subcommand(build_parser(), sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    main()
