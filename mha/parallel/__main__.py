"""`python -m mha.parallel check|measure|model`: lesson 08's experiments, from a shell.

python -m mha.parallel check --world 1 2 4                    both parallel layers against one process
python -m mha.parallel check --world 4 --kv-heads 2           grouped-query attention, K/V heads replicated
torchrun --standalone --nproc-per-node 2 -m mha.parallel check   the same, in processes torchrun starts
python -m mha.parallel measure --world 1 2 4 --json notebooks/results/08_allreduce_cpu.json
python -m mha.parallel model --d-model 1024 8192              the paper model: when does splitting pay?

`check` and `measure` start their own processes (gloo on 127.0.0.1) unless torchrun started this one. With
`--device auto`, NCCL runs when there are at least as many GPUs as processes; otherwise the command says so and
runs gloo on the CPU.
"""

import argparse
import datetime
import os
import sys

from .._commands import check_output, positive_float, positive_int, share
from .._provenance import command_line, stamp, write_results
from .cost import model_table
from .experiments import TOLERANCE, check, machine_load, measure, summarise_check, summarise_measure
from .jobs import Problem, Sweep, measure_on_rank, on_rank, single_process
from .launch import choose_backend, loopback_interface

QUICK = Sweep(numbers=(1024, 65536), repeats=3, rounds=3, layer=Problem(batch=2, seq=64, d_model=128, heads=8),
              layer_repeats=2, lo_rounds=2)  # fmt: skip


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m mha.parallel",
        description="Multi-head attention split by heads across processes: check it, measure it, model it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="both parallel layers, forward and backward, against one process")
    c.add_argument(
        "--world", type=positive_int, nargs="+", default=[1, 2, 4], help="numbers of processes (default 1 2 4)"
    )
    c.add_argument("--batch", type=positive_int, default=2)
    c.add_argument("--seq", type=positive_int, default=6)
    c.add_argument("--d-model", type=positive_int, default=32)
    c.add_argument("--heads", type=positive_int, default=8)
    c.add_argument("--kv-heads", type=positive_int, help="K/V heads (default: heads); fewer is grouped-query attention")
    c.add_argument("--causal", action="store_true")
    c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    c.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per run (default 120)")
    m = sub.add_parser("measure", help="bytes and times of the all-reduce; times of the layer")
    m.add_argument("--world", type=positive_int, nargs="+", default=[1, 2, 4])
    m.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    m.add_argument("--timeout", type=positive_float, default=600.0)
    m.add_argument("--json", help="write the results here, with their provenance")
    p = sub.add_parser("model", help="the paper model: compute per GPU against the all-reduce over NVLink and IB")
    p.add_argument("--d-model", type=positive_int, nargs="+", default=[1024, 4096, 8192])
    p.add_argument("--seq", type=positive_int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--share-of-peak", type=share, default=0.5, help="share of the GPU's peak reached (default 0.5)")
    return parser


def under_torchrun() -> bool:
    """True when torchrun (or another launcher setting RANK, WORLD_SIZE, MASTER_ADDR) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _fmt_range(heads) -> str:
    return f"{heads[0]}" if len(heads) == 1 else f"{heads[0]}-{heads[-1]}"


def format_check(summary: dict) -> str:
    """The lines `check` prints for one world."""
    world = summary["world"]
    holds = ", ".join(f"rank {r}: heads {_fmt_range(h)}" for r, h in enumerate(summary["heads"]))
    lines = [f"world {world} ({summary.get('reason', summary['backend'])}): {holds}"]
    if summary["kv_heads"] != summary["heads"]:
        kv = summary["kv_heads"]
        lines.append("  K/V heads: " + ", ".join(f"rank {r}: {_fmt_range(k)}" for r, k in enumerate(kv)))
    d, eq = summary["differences"], summary["equal"]
    for name, prefix in (("ours", ""), ("parallelize_module", "tp_"), ("  its plan alone", "tp_per_projection_")):
        if prefix + "output" not in d:
            if prefix == "tp_":
                lines.append(f"  {name:<20} not run: ColwiseParallel cannot shard fewer K/V heads than ranks")
            continue
        parts = [f"{label} {d[prefix + key]:.1e}" for key, label in
                 (("output", "output"), ("input_grad", "input grad"), ("weight_grads", "weight grads"))]  # fmt: skip
        ok = all(eq[prefix + key] for key in ("output", "input_grad", "weight_grads"))
        lines.append(f"  {name:<20} largest relative difference: " + ", ".join(parts) + f"  -> equal: {ok}")
    formula, one = summary["formula_bytes"], summary["one_allreduce"]
    if world > 1 and one:
        lines.append(
            f"  one all-reduce of the output alone: {one['bytes']:,} bytes written per rank = {formula:,.0f} "
            f"(formula) + {one['writes']} writes × {summary['header_bytes']:.0f} bytes of header"
        )
    for key, w in summary["written"].items():
        if w is None:
            lines.append(f"  {key:<27} bytes not counted (only gloo's socket writes are, where /proc/self/io exists)")
        elif world > 1:
            lines.append(
                f"  {key:<27} {w['bytes']:>7,} bytes per rank = {w['allreduces']:g} such all-reduce(s)"
                + ("" if w["as_many_bytes"] and w["same_on_every_rank"] else "  (NOT a whole number of them)")
            )
    return "\n".join(lines)


def _check(args, argv) -> int:
    problem = Problem(args.batch, args.seq, args.d_model, args.heads, args.kv_heads, args.causal)
    print(
        f"layer: d_model {problem.d_model}, {problem.heads} heads, {problem.kv} K/V heads; input "
        f"(batch {problem.batch}, seq {problem.seq}, d_model {problem.d_model}); relative tolerance {TOLERANCE:g}"
    )
    if under_torchrun():
        gathered = _under_torchrun(on_rank, (problem,), args.device)
        if gathered is None:  # ranks other than 0 have nothing to print
            return 0
        results, reason = gathered
        summaries = [{**summarise_check(problem, results, single_process(problem)), "reason": reason}]
    else:
        summaries = check(problem, args.world, args.device, args.timeout)
    ok = True
    for s in summaries:
        print(format_check(s))
        ok = ok and all(s["equal"].values())
    print("every rank equal to one process:", ok)
    return 0 if ok else 1


def _under_torchrun(job, args, device):
    """Run `job` on this rank of a torchrun launch; rank 0 gets everyone's results, the others None."""
    import torch
    import torch.distributed as dist

    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    backend, dev, reason = choose_backend(world, device)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
    options = {}
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        options["device_id"] = torch.device("cuda", local)
    torch.set_num_threads(1)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=120), **options)
    try:
        mine = job(*args, dev) if job is on_rank else job(*args)
        everyone = [None] * world if rank == 0 else None
        dist.gather_object(mine, everyone, dst=0)
        dist.barrier()  # no rank tears its connections down while another still reads from them (gloo aborts)
    finally:
        dist.destroy_process_group()
    return (everyone, f"started by torchrun; {reason}") if rank == 0 else None


def format_measure(summary: dict) -> str:
    """The lines `measure` prints for one world."""
    world, lay = summary["world"], summary["layer"]
    lines = [
        f"world {world}: layer forward {lay['forward_s'] * 1e3:.3f} ms per call (compute {lay['compute_s'] * 1e3:.3f} "
        f"ms, all-reduce {lay['allreduce_s'] * 1e3:.3f} ms), {lay['flops_per_rank']:,} FLOPs per rank, "
        f"{lay['bytes'] or 0:,.0f} bytes sent per rank in the forward pass (formula {lay['formula_bytes']:,.0f})"
    ]
    for r in summary["allreduce"]:
        lines.append(
            f"  all-reduce of {r['size_bytes']:>9,} bytes: {r['seconds'] * 1e3:.3f} ms, sent per rank "
            f"{r['bytes']:>11,.0f} = formula {r['formula_bytes']:>11,.0f} + {r['writes']:.0f} writes × "
            f"{r['header_bytes']:.0f} bytes"
        )
    for r in summary["lo"]:
        lines.append(
            f"  loopback interface, all-reduce of {4 * r['numbers']:>9,} bytes: {r['bytes']:>11,.0f} bytes in "
            f"{r['packets']:.0f} packets = {r['written_by_all_ranks']:,.0f} written by the ranks + "
            f"{r['ip_header_bytes']:.0f} bytes of TCP/IP header per packet"
        )
    if summary["fit"]:
        f = summary["fit"]
        lines.append(
            f"  fit: latency {f['latency_s'] * 1e3:.3f} ms + bytes / {f['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s"
        )
    return "\n".join(lines)


def _load_average() -> list[float] | None:
    """The machine's load average over the last 1, 5 and 15 minutes: how many processes were ready to run, on
    average (None where the system does not say)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _measure(args, argv) -> int:
    sweep = QUICK if args.quick else Sweep()
    # how busy the machine was: on a busy one every time is slower, and a run of more processes gets a larger share
    # of the cores, which can turn the comparison between worlds around
    provenance = {**stamp(command_line("python -m mha.parallel", argv)), "cpus": os.cpu_count(),
                  "load_average_at_start": _load_average()}  # fmt: skip
    if under_torchrun():
        gathered = _under_torchrun(measure_on_rank, (sweep,), "cpu")
        if gathered is None:
            return 0
        summaries = [summarise_measure(sweep, gathered[0])]
    else:
        summaries = measure(sweep, args.world, args.timeout)
    provenance["load_average_at_end"] = _load_average()
    print(machine_load({"provenance": provenance, "worlds": summaries})["verdict"])
    for s in summaries:
        print(format_measure(s))
    if args.json is not None:
        content = {"sweep": {"numbers": list(sweep.numbers), "repeats": sweep.repeats, "rounds": sweep.rounds,
                             "layer": dict(vars(sweep.layer))}, "worlds": summaries}  # fmt: skip
        path = write_results(args.json, provenance, content)
        print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    """The command. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "measure":
        check_output(parser, args.json, "--json")  # before any process starts
    try:
        if args.command == "check":
            return _check(args, argv)
        if args.command == "measure":
            return _measure(args, argv)
        print(model_table(args.d_model, args.seq, args.batch, args.share_of_peak))
        return 0
    except ValueError as error:  # bad options explained in one line, not a traceback
        parser.error(str(error))


def leave(code: int) -> None:
    """End this process with `code`. A rank torchrun started leaves without finalizing Python, once its output is out.

    After the last collective returns, gloo's worker threads may still be releasing the tensors it held; if Python is
    already finalizing, that release cannot take the GIL and the rank aborts (SIGABRT, "terminate called without an
    active exception") though its work is done. Seen about once in ten runs on two busy cores; see
    pytorch/pytorch#179291. Skipping finalization leaves nothing undone: every rank has destroyed its process group
    and rank 0 has printed everything.
    """
    if under_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main())
