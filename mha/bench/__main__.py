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

from .._provenance import command_line, stamp, writable, write_results
from .flops import dtype_name
from .harness import Settings, experiments, memory_budget, prepare, run
from .mistakes import flash_refuses_mask, format_mistake, run_all
from .plan import ASSUMED_GPU, estimate, plan
from .results import Record, figures, format_figures, format_table
from .suites import Suite, suite


def _positive(kind):
    """An argparse type: a number of `kind` (int or float) above 0, or a one-line error naming what arrived."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not value > 0:  # NaN too
            raise argparse.ArgumentTypeError(f"must be {'at least 1' if kind is int else 'more than 0'}, got {text}")
        return value

    return parse


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m mha.bench",
        description="Time every implementation of multi-head attention; check each against a float64 reference "
        "first. Prints one table per shape, then the lesson's figures.",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--suite",
        choices=["lesson", "cpu", "gpu", "flash"],
        help="default: cpu on a CPU, gpu on CUDA (flash: lesson 10's kernel)",
    )
    parser.add_argument("--only", help="comma-separated experiments of the suite: table, seq, heads, memory, d64")
    parser.add_argument("--quick", action="store_true", help="the suite's experiments at tiny sizes (seconds)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run, what the memory guard skips and an estimate of the time, running nothing "
        "(works for cuda without a GPU)",
    )
    parser.add_argument("--threads", type=_positive(int), help="threads torch uses (default: 1 on a CPU, all on CUDA)")
    parser.add_argument(
        "--memory-budget",
        type=_positive(float),
        help="GiB an implementation may plan to use (default: 60%% of a GPU, 25%% of RAM)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--min-run-time", type=_positive(float), help="seconds of timing per implementation and shape")
    parser.add_argument("--rounds", type=_positive(int), help="rounds of interleaved timing")
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
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _main(args, argv)
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(str(error))


def _main(args, argv) -> int:
    chosen = suite(args.suite or ("gpu" if args.device == "cuda" else "cpu"), args.quick)
    chosen = dataclasses.replace(
        chosen, min_run_time=args.min_run_time or chosen.min_run_time, rounds=args.rounds or chosen.rounds
    )
    dtype = chosen.dtype
    threads = args.threads or (1 if args.device == "cpu" else torch.get_num_threads())
    only = args.only.split(",") if args.only else None
    experiments(chosen, only)  # an unknown name is refused before any work
    budget = int(args.memory_budget * 2**30) if args.memory_budget else None
    if args.dry_run:
        print(_dry_run(chosen, args, dtype, threads, budget, only))
        return 0
    settings = prepare(args.device, dtype, threads, not args.no_compile, not args.no_progress)
    settings.memory_budget = budget or settings.memory_budget
    device_slug = re.sub(r"[^a-z0-9]+", "-", settings.device_name.lower()).strip("-")
    paths = [p.format(device=device_slug) if p else None for p in (args.json, args.csv)]
    for path in paths:  # before any work: a long run must not end with nothing written
        if path:
            writable(path)
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
    path = writable(path)
    names = [f.name for f in dataclasses.fields(Record)] + ["torch", "date", "command"]
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
    parser.add_argument("--threads", type=_positive(int), default=1)
    parser.add_argument("--min-run-time", type=_positive(float), default=0.2)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    for m in run_all(args.device, args.threads, args.min_run_time):
        print(format_mistake(m))
    print("flash kernel given a mask:", flash_refuses_mask(args.device))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(mistakes_main(args[1:]) if args[:1] == ["mistakes"] else main(args))
