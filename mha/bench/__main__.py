"""`python -m mha.bench [mistakes] [options]`: lesson 06's timings, from a shell.

python -m mha.bench --quick                                  every experiment at tiny sizes, in seconds
python -m mha.bench --suite cpu --json results.json          the CPU results the lesson shows
python -m mha.bench --device cuda --suite gpu --json ...     the GPU results, in bfloat16 (about 5 minutes)
python -m mha.bench --device cuda --dry-run                  what the GPU suite runs, and how long it should take
python -m mha.bench mistakes [--device cuda]                 the classic timing mistakes, wrong then right

The results files are rewritten after every experiment (atomically: a reader never sees half a file), so that a run
stopped midway, by a time limit say, leaves a valid file with every experiment that finished.
"""

import argparse
import csv
import dataclasses
import os
import platform
import re
import sys
import tempfile

import torch

from .._commands import check_output, nonempty, positive_float, positive_int
from .._provenance import command_line, csv_with_provenance, device_name, stamp, writable, write_results
from .._validate import fmt_bytes
from .flops import dtype_name
from .harness import Settings, experiments, memory_budget, prepare, run
from .mistakes import flash_refuses_mask, format_mistake, run_all
from .plan import ASSUMED_GPU, estimate, plan
from .results import Record, figures, format_figures, format_table
from .suites import Suite, suite


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m mha.bench",
        description="Time every implementation of multi-head attention; check each against a float64 reference "
        "first. Prints one table per shape, then the lesson's figures.\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--suite",
        choices=["lesson", "cpu", "gpu", "flash"],
        help="default: cpu on a CPU, gpu on CUDA (flash: lesson 10's kernel)",
    )
    parser.add_argument(
        "--only", type=nonempty, help="comma-separated experiments of the suite: table, seq, heads, memory, d64"
    )
    parser.add_argument("--quick", action="store_true", help="the suite's experiments at tiny sizes (seconds)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run, what the memory guard skips and an estimate of the time, running nothing "
        "(works for cuda without a GPU)",
    )
    parser.add_argument("--threads", type=positive_int, help="threads torch uses (default: 1 on a CPU, all on CUDA)")
    parser.add_argument(
        "--memory-budget",
        type=positive_float,
        help="GiB an implementation may plan to use (default: 60%% of a GPU, 25%% of RAM)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--min-run-time", type=positive_float, help="seconds of timing per implementation and shape")
    parser.add_argument("--rounds", type=positive_int, help="rounds of interleaved timing")
    parser.add_argument(
        "--json",
        help="write the records, with device, torch version, date and command, here; {device} in the path "
        "becomes the device's name, e.g. nvidia-h100-80gb-hbm3",
    )
    parser.add_argument("--csv", help="write the records as CSV here ({device} as for --json)")
    return parser


def main(argv=None) -> int:
    """The command: run a suite, print its tables and figures, write JSON and CSV. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["mistakes"]:
        return mistakes_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _main(args, argv, parser)
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(str(error))


def _main(args, argv, parser) -> int:
    chosen = suite(args.suite or ("gpu" if args.device == "cuda" else "cpu"), args.quick)
    chosen = dataclasses.replace(
        chosen, min_run_time=args.min_run_time or chosen.min_run_time, rounds=args.rounds or chosen.rounds
    )
    dtype = chosen.dtype
    threads = args.threads or (1 if args.device == "cpu" else torch.get_num_threads())
    only = [name.strip() for name in args.only.split(",")] if args.only else None
    try:
        experiments(chosen, only)  # an unknown name is refused before any work
    except ValueError as error:
        parser.error(f"--only {args.only!r}: {error}")
    budget = _budget(parser, args.memory_budget, args.device)
    if args.dry_run:
        print(_dry_run(chosen, args, dtype, threads, budget, only))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    paths = _outputs(parser, args)  # before any work: a long run must not end with nothing written, nor overwrite
    settings = prepare(args.device, dtype, threads, not args.no_compile, not args.no_progress)
    settings.memory_budget = budget or settings.memory_budget
    meta = _metadata(settings, command_line("python -m mha.bench", argv), chosen.name, args.quick)
    for key in ("device", "torch", "date", "command", "dtype", "threads"):
        print(f"{key}: {meta[key]}")
    done = []

    def write(experiment, records):
        done.append(experiment.name)
        _write(paths, meta, records, done, complete=False)

    try:
        records = run(chosen, settings, only, after=write)
    except KeyboardInterrupt:
        wrote = [p for p in paths if p]
        print(f"\ninterrupted; experiments finished: {done or 'none'}" + (f", in {', '.join(wrote)}" if wrote else ""))
        return 130
    _write(paths, meta, records, done, complete=True)
    print(format_table(records))
    print(format_figures(figures(records)))
    for path in paths:
        if path:
            print(f"wrote {path}")
    return 0


CSV_COLUMNS = [f.name for f in dataclasses.fields(Record)] + ["torch", "date", "command"]


def _budget(parser, gib: float | None, device: str) -> int | None:
    """--memory-budget in bytes, refused when more than all the memory of the device (where that is known)."""
    if gib is None:
        return None
    budget = int(gib * 2**30)
    here = device == "cpu" or torch.cuda.is_available()
    total = memory_budget(device) / (0.6 if device == "cuda" else 0.25) if here else None
    if total is not None and budget > total:
        parser.error(
            f"--memory-budget {gib:g} GiB is more than all the memory of this {device} ({fmt_bytes(total)}): "
            f"give a budget it can hold"
        )
    return budget


def _outputs(parser, args) -> list:
    """The --json and --csv paths, {device} replaced by the device's name, each checked before any work."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(args.device).lower()).strip("-")
    paths = []
    for option, value, judge, what in (
        ("--json", args.json, None, None),
        ("--csv", args.csv, csv_with_provenance, "a CSV of timings the course wrote"),
    ):
        if value is None:
            paths.append(None)
            continue
        try:
            path = value.format(device=slug)
        except (KeyError, IndexError, ValueError):
            parser.error(
                f"{option} {value!r}: the one placeholder a path may hold is {{device}} (the device's name, e.g. "
                f"results_{{device}}.json); write other braces doubled, {{{{ and }}}}"
            )
        check_output(parser, path, option, *((judge, what) if judge else ()))
        paths.append(path)
    return paths


def _dry_run(chosen: Suite, args, dtype, threads, budget, only) -> str:
    """The plan and the estimate of its time: where there is no GPU, planned as for an 80 GB H100."""
    device = torch.device(args.device)
    here = device.type == "cpu" or torch.cuda.is_available()
    budget = budget or (memory_budget(device) if here else int(0.6 * 80e9))
    name = ASSUMED_GPU if device.type == "cuda" and not here else ""
    settings = Settings(device, dtype, threads, name, 0.0, "", budget, not args.no_compile)
    if device.type == "cuda" and here:
        settings = dataclasses.replace(settings, device_name=torch.cuda.get_device_name(device))
    lines = [f"plan for {device.type}, {dtype_name(dtype)}, memory budget {budget / 2**30:.1f} GiB (nothing is run)"]
    lines += plan(chosen, settings, only)
    times = estimate(chosen, settings, only)
    where = f"on {settings.device_name}" if here else "as on an H100 or H200"
    lines.append(f"estimated time, {where if device.type == 'cuda' else 'on this CPU'}:")
    for e, seconds in times:  # "table" twice in the gpu suite: without a mask, then causal
        name = e.name + (" causal" if all(shape.causal for shape in e.shapes) else "")
        lines.append(f"  {name:<13} {len(e.shapes)} shape(s)  {seconds / 60:5.1f} min")
    lines.append(f"  {'in all':<13} {'':<10}  {sum(s for _, s in times) / 60:5.1f} min")
    return "\n".join(lines)


def _metadata(settings: Settings, command: str, suite_name: str, quick: bool) -> dict:
    """Provenance (`mha._provenance.stamp`) and the settings of a run, in one dict."""
    cuda = settings.device.type == "cuda"
    return {
        **stamp(command, settings.device),
        "device_type": settings.device.type,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": _load_average(),  # how busy the machine was: timings on a busy one are slower
        "suite": suite_name,
        "quick": quick,
        "dtype": dtype_name(settings.dtype),
        "threads": settings.threads,
        "peak_flops_per_s": settings.peak_flops_per_s,
        "peak_source": settings.peak_source,
    }


_PROVENANCE = ("command", "torch", "python", "date", "device")


def _load_average():
    """The machine's load average over the last 1, 5 and 15 minutes (None where the system does not say)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _write(paths, meta: dict, records, done, complete: bool) -> None:
    """Rewrite the JSON and CSV files with every record so far; `complete` says whether the run finished."""
    json_path, csv_path = paths
    settings = {key: value for key, value in meta.items() if key not in _PROVENANCE}
    settings.update(experiments_done=list(done), complete=complete, load_average_at_end=_load_average())
    if json_path:
        write_results(
            json_path,
            {key: meta[key] for key in _PROVENANCE},
            {
                "settings": settings,
                "records": [r.to_dict() for r in records],
                "figures": [dataclasses.asdict(f) for f in figures(records)],
            },
            one_line_lists=("records",),
        )
    if csv_path:
        _write_csv(csv_path, meta, records)


def _write_csv(path, meta: dict, records) -> None:
    """One row per record, with the file's torch version, date and command repeated on each row; atomically."""
    path = writable(path, csv_with_provenance, "a CSV of timings the course wrote")
    names = CSV_COLUMNS
    with tempfile.NamedTemporaryFile("w", newline="", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in records:
            writer.writerow({**r.to_dict(), "torch": meta["torch"], "date": meta["date"], "command": meta["command"]})
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)


def mistakes_main(argv) -> int:
    """`python -m mha.bench mistakes`: run every timing mistake on one device and print them."""
    parser = argparse.ArgumentParser(
        prog="python -m mha.bench mistakes", description="The classic mistakes of timing attention, wrong then right."
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--min-run-time", type=positive_float, default=0.2)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    for m in run_all(args.device, args.threads, args.min_run_time):
        print(format_mistake(m))
    print("flash kernel given a mask:", flash_refuses_mask(args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
