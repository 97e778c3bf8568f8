"""The lesson's experiments: start the processes, collect what every rank measured, and sum it up.

    check(Problem(), worlds=(1, 2, 4))      forward and backward of both parallel layers against one process
    measure(Sweep(), worlds=(1, 2, 4))      bytes and times of all-reduces, times of the layer

Both start their processes with `launch.run` (gloo on loopback, bounded in time, always cleaned up). Under
`torchrun`, `python -m mha.parallel` calls the `summarise_*` functions on results gathered from its own ranks.
"""

from .._validate import check_int
from .cost import allreduce_bytes, fit_latency_bandwidth
from .jobs import Problem, Sweep, compare, count_flops, header_bytes, measure_on_rank, on_rank, single_process
from .launch import check_timeout, choose_backend, run
from .shard import head_split

TOLERANCE = 1e-5  # relative, in float32: the split adds the same numbers in another order (differences ~1e-7)


def summarise_check(problem: Problem, results: list[dict], reference: dict | None = None) -> dict:
    """One world's check in a dict: differences from one process, who holds what, bytes against the formula."""
    world = len(results)
    diffs = compare(problem, results, reference)
    formula = allreduce_bytes(problem.batch, problem.seq, problem.d_model, 4, world)
    one = results[0]["one_allreduce_written"]
    bytes_rows = {}
    for name, key in (("ours", None), ("tp", "tp"), ("tp_per_projection", "tp_per_projection")):
        runs = [r if key is None else r.get(key) for r in results]
        if any(run is None for run in runs):
            continue
        for phase in ("forward", "backward"):
            w = runs[0][f"{phase}_written"]
            if w is None or one is None:  # no /proc/self/io on this system
                bytes_rows[f"{name} {phase}"] = None
                continue
            # how many all-reduces of the output's size: a reference all-reduce alone made one["writes"] writes
            count = w["writes"] / one["writes"] if one["writes"] else 0.0
            bytes_rows[f"{name} {phase}"] = {
                "bytes": w["bytes"],
                "writes": w["writes"],
                "allreduces": count,
                "as_many_bytes": w["bytes"] == round(count * one["bytes"]),
                "same_on_every_rank": all(run[f"{phase}_written"] == w for run in runs),
            }
    return {
        "world": world,
        "backend": results[0]["backend"],
        "heads": [r["heads"] for r in results],
        "kv_heads": [r["kv_heads"] for r in results],
        "flops_per_rank": [count_flops(problem, world, r["rank"]) for r in results],
        "differences": diffs,
        "equal": {k: v <= TOLERANCE for k, v in diffs.items()},
        "formula_bytes": formula,
        "one_allreduce": one,
        "header_bytes": header_bytes(one["bytes"], formula, one["writes"]) if one and world > 1 else None,
        "written": bytes_rows,
    }


def check(problem: Problem | None = None, worlds=(1, 2, 4), device: str = "cpu", timeout: float = 120.0) -> list[dict]:
    """Run both parallel layers on each number of processes in `worlds` and compare them with one process.

    Args:
        problem: the layer and input.
        worlds: numbers of processes to try, one run each.
        device: "cpu" (gloo), "cuda" (NCCL, one GPU per process) or "auto" (see `launch.choose_backend`).
        timeout: seconds allowed for each run.

    Returns:
        one `summarise_check` dict per world, with "reason" saying which backend ran and why.
    """
    problem = problem or Problem()
    check_timeout(timeout)
    plans = []
    for world in _worlds(worlds):  # every world checked before the first process starts
        head_split(problem.heads, world, problem.kv_heads)
        plans.append((world, *choose_backend(world, device)))
    reference = single_process(problem)
    out = []
    for world, backend, dev, reason in plans:
        results = run(on_rank, world, (problem, dev), timeout=timeout, backend=backend)
        out.append({**summarise_check(problem, results, reference), "reason": reason})
    return out


def _worlds(worlds) -> list[int]:
    """The numbers of processes, each a whole number of at least 1, at least one of them."""
    if isinstance(worlds, int | str) or not hasattr(worlds, "__iter__"):
        raise TypeError(f"worlds must be a list of numbers of processes, e.g. [1, 2, 4], got {worlds!r}")
    worlds = [check_int("world", w) for w in worlds]
    if not worlds:
        raise ValueError("worlds must hold at least one number of processes, got none")
    return worlds


def summarise_measure(sweep: Sweep, results: list[dict]) -> dict:
    """One world's measurements: per all-reduce size the median time (slowest rank), bytes against the formula."""
    world = len(results)
    rows = []
    for i, n in enumerate(sweep.numbers if world > 1 else ()):
        per_rank = [r["allreduce"][i] for r in results]
        measured = per_rank[0]["bytes"]
        formula = allreduce_bytes(1, 1, n, 4, world)
        rows.append({
            "numbers": n,
            "size_bytes": 4 * n,
            "seconds": max(r["seconds"] for r in per_rank),
            "bytes": measured,
            "formula_bytes": formula,
            "writes": per_rank[0]["writes"],
            "header_bytes": header_bytes(measured, formula, per_rank[0]["writes"]) if measured is not None else None,
            "same_on_every_rank": all(r["bytes"] == measured for r in per_rank),
        })  # fmt: skip
    lo = []
    for r in results[0].get("lo") or []:  # rank 0 read the loopback counters: every rank's traffic, with headers
        row = next(row for row in rows if row["numbers"] == r["numbers"])
        written = world * row["bytes"]  # what all ranks wrote to their sockets
        lo.append({**r, "written_by_all_ranks": written,
                   "ip_header_bytes": (r["bytes"] - written) / r["packets"] if r["packets"] else None})  # fmt: skip
    layers = [r["layer"] for r in results]
    layer = {
        key: max(lay[key] for lay in layers) for key in ("forward_s", "compute_s", "allreduce_s")
    }  # the slowest rank sets the pace
    layer.update(flops_per_rank=layers[0]["flops"], bytes=layers[0]["bytes"], problem=layers[0]["problem"])
    p = layers[0]["problem"]
    layer["formula_bytes"] = allreduce_bytes(p["batch"], p["seq"], p["d_model"], 4, world)
    fit = None
    if world > 1:
        latency, bandwidth = fit_latency_bandwidth([r["bytes"] for r in rows], [r["seconds"] for r in rows])
        fit = {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth}
    return {"world": world, "allreduce": rows, "lo": lo, "layer": layer, "fit": fit}


def measure(sweep: Sweep | None = None, worlds=(1, 2, 4), timeout: float = 300.0) -> list[dict]:
    """Measure all-reduces and the layer on each number of processes in `worlds` (gloo on CPU).

    World 1 is one process running the layer whole (nothing to all-reduce), in the same conditions as the others.
    """
    sweep = sweep or Sweep()
    check_timeout(timeout)
    out = []
    for world in _worlds(worlds):
        results = run(measure_on_rank, world, (sweep,), timeout=timeout)
        out.append(summarise_measure(sweep, results))
    return out


def machine_load(recorded: dict) -> dict:
    """How busy the machine was while `python -m mha.parallel measure` made a recording, and what that means.

    The load average counts the processes ready to run, averaged over the last minute. Above the number of cores,
    processes wait for a core: every time is slower, and a run of more processes gets a larger share of the cores
    than a run of fewer, so a comparison of times between worlds can turn around. The load at the end also counts
    the recording's own ranks (as many as its largest world).

    Args:
        recorded: a results file of `measure`, as a dict (its "provenance" holds "cpus", "load_average_at_start"
            and "load_average_at_end", each [1, 5, 15 minutes]; files recorded before kept the 1-minute values
            under "machine").

    Returns:
        {"cpus", "start", "end" (1-minute load averages, None where unknown), "ranks", "busy" (True, False, or None
        where unknown), "verdict": a sentence saying so}.
    """
    meta, old = recorded.get("provenance", {}), recorded.get("machine", {})

    def first(value):
        return value[0] if isinstance(value, list) else value

    cpus = meta.get("cpus", old.get("cpu_cores"))
    start = first(meta.get("load_average_at_start", old.get("load_average_before")))
    end = first(meta.get("load_average_at_end", old.get("load_average_after")))
    ranks = max((w["world"] for w in recorded.get("worlds", [])), default=1)
    if cpus is None or start is None:
        return {"cpus": cpus, "start": start, "end": end, "ranks": ranks, "busy": None,
                "verdict": "load average not recorded: whether the machine was busy is unknown"}  # fmt: skip
    at_end = "" if end is None else f", {end:g} at the end (counting this recording's own {ranks} ranks)"
    load = f"load average {start:g} at the start{at_end}, on {cpus} CPU cores"
    busy = start > cpus or (end is not None and end > cpus + ranks)
    if busy:
        verdict = (
            f"{load}: the machine was BUSY, more processes were ready to run than it has cores; every time is "
            f"slower than on a quiet machine, and comparisons of times between worlds can be turned around"
        )
    else:
        verdict = f"{load}: the machine was quiet when the recording started"
    return {"cpus": cpus, "start": start, "end": end, "ranks": ranks, "busy": busy, "verdict": verdict}
