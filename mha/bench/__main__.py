"""`python -m mha.bench [mistakes] [options]`: lesson 06's timings, from a shell.

python -m mha.bench --quick                                  every experiment at tiny sizes, in seconds
python -m mha.bench --suite cpu --json results.json          the CPU results the lesson shows
python -m mha.bench --device cuda --suite gpu --json ...     the GPU results, in bfloat16
python -m mha.bench --seq 256 1024 --heads 8 --d-model 512   your own sizes
python -m mha.bench mistakes [--device cuda]                 the classic timing mistakes, wrong then right
"""

import argparse
import dataclasses
import re
import shlex
import sys

import torch

from .flops import dtype_name
from .harness import DTYPES, Settings, memory_budget, metadata, plan, prepare, run
from .implementations import Shape
from .mistakes import flash_refuses_mask, format_mistake, run_all
from .results import figures, format_figures, format_table, notes, write_csv, write_json
from .suites import MODES, Experiment, Suite, suite


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m mha.bench",
        description="Time every implementation of multi-head attention; check each against a float64 reference "
        "first. Prints one table per shape, then the lesson's figures to reach.",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype", choices=list(DTYPES), help="default: the suite's (cpu, lesson: float32; gpu: bfloat16)"
    )
    parser.add_argument("--suite", choices=["lesson", "cpu", "gpu"], help="default: cpu on a CPU, gpu on CUDA")
    parser.add_argument(
        "--only", help="comma-separated experiments of the suite: table, seq, heads, memory (cpu: also ratios)"
    )
    parser.add_argument("--quick", action="store_true", help="the suite's experiments at tiny sizes (seconds)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run and what the memory guard skips, running nothing (works for cuda without a GPU)",
    )
    parser.add_argument("--threads", type=int, help="threads torch uses (default: 1 on a CPU, all on CUDA)")
    parser.add_argument(
        "--memory-budget",
        type=float,
        help="GiB an implementation may plan to use (default: 60%% of a GPU, 25%% of RAM)",
    )
    parser.add_argument("--tf32", action="store_true", help="let float32 matrix products use TF32 on CUDA")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--impl", help="comma-separated implementations, replacing the suite's (with --seq)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, nargs="+", help="sequence lengths: replace the suite by one experiment")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, nargs="+", default=[4])
    parser.add_argument("--causal", action="store_true")
    parser.add_argument(
        "--mode",
        choices=["forward", "backward", "both"],
        default="forward",
        help="with --seq: forward, forward+backward, or both",
    )
    parser.add_argument("--min-run-time", type=float, help="seconds of timing per implementation and shape")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved timing")
    parser.add_argument(
        "--json",
        help="write the records, with device, torch version, date and command, here; {device} in the path "
        "becomes the device's name, e.g. nvidia-h100-80gb-hbm3",
    )
    parser.add_argument("--csv", help="write the records as CSV here ({device} as for --json)")
    return parser


def _custom_suite(args, base: Suite) -> Suite:
    names = tuple(args.impl.split(",")) if args.impl else ("loop", "batched", "sdpa", "core/hand", "core/sdpa")
    modes = {"forward": ("forward",), "backward": ("forward+backward",), "both": MODES}[args.mode]
    shapes = tuple(Shape(args.batch, s, args.d_model, h, args.causal) for h in args.heads for s in args.seq)
    return dataclasses.replace(base, name="custom", experiments=(Experiment("custom", shapes, names, modes),))


def _planning(device, dtype, threads, budget) -> Settings:
    """Settings enough to plan a run: on a machine without the GPU, plan as for an 80 GB one."""
    device = torch.device(device)
    here = device.type == "cpu" or torch.cuda.is_available()
    budget = budget or (memory_budget(device) if here else int(0.6 * 80e9))
    print(f"plan for {device.type}, {dtype_name(dtype)}, memory budget {budget / 2**30:.1f} GiB (nothing is run)")
    return Settings(device, dtype, threads, False, "", 0.0, "", budget)


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
    command = "python -m mha.bench " + shlex.join(argv)
    name = args.suite or ("gpu" if args.device == "cuda" else "cpu")
    chosen = suite(name, args.quick)
    if args.seq:
        chosen = _custom_suite(args, chosen)
    if args.min_run_time or args.rounds:
        chosen = dataclasses.replace(
            chosen, min_run_time=args.min_run_time or chosen.min_run_time, rounds=args.rounds or chosen.rounds
        )
    dtype = DTYPES[args.dtype] if args.dtype else chosen.dtype
    threads = args.threads or (1 if args.device == "cpu" else torch.get_num_threads())
    only = args.only.split(",") if args.only else None
    budget = int(args.memory_budget * 2**30) if args.memory_budget else None
    if args.dry_run:
        print("\n".join(plan(chosen, _planning(args.device, dtype, threads, budget), only)))
        return 0
    settings = prepare(args.device, dtype, threads, args.tf32, not args.no_compile, not args.no_progress)
    settings.memory_budget = budget or settings.memory_budget
    meta = metadata(settings, command, chosen.name, args.quick)
    for key in ("device", "torch", "date", "command", "dtype", "threads", "tf32"):
        print(f"{key}: {meta[key]}")
    records = run(chosen, settings, only)
    found = figures(records)
    print(format_table(records))
    print(format_figures(found))
    for note in notes(records):
        print(note)
    slug = re.sub(r"[^a-z0-9]+", "-", settings.device_name.lower()).strip("-")
    if args.json:
        path = args.json.format(device=slug)
        write_json(path, meta, records, found)
        print(f"wrote {path}")
    if args.csv:
        path = args.csv.format(device=slug)
        write_csv(path, meta, records)
        print(f"wrote {path}")
    return 0


def mistakes_main(argv) -> int:
    """`python -m mha.bench mistakes`: run every timing mistake on one device and print them."""
    parser = argparse.ArgumentParser(
        prog="python -m mha.bench mistakes", description="The classic mistakes of timing attention, wrong then right."
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    args = parser.parse_args(argv)
    for m in run_all(args.device, args.threads, args.min_run_time):
        print(format_mistake(m))
    print("flash kernel given a mask:", flash_refuses_mask(args.device))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(mistakes_main(args[1:]) if args[:1] == ["mistakes"] else main(args))
