"""What a benchmark run measured: records, the printed tables, the figures to reach, and results files.

Tables print measured numbers in fixed formats (`fmt_time`, `fmt_rate`, `fmt_share`, `fmt_ratio`) that the
notebook checks mask (tests/nbval_sanitize.cfg), so the rest of a table must come out the same on every machine.
"""

import csv
import dataclasses
import os
from dataclasses import dataclass

from .._provenance import read_results, write_results
from .implementations import Shape

_LAYER_PACKAGE = ("loop", "batched", "einsum", "sdpa", "compiled")  # the package's own modules, and compiled


@dataclass(frozen=True)
class Record:
    """One implementation, one shape, one mode: what was run, on what, and what it measured.

    `flops` counts the useful work (see `mha.bench.flops`); `share_of_peak` = flops_per_s / peak_flops_per_s, where the
    peak is the datasheet's for a known GPU and a large matrix product measured on the spot elsewhere.
    """

    experiment: str
    implementation: str
    scope: str
    mode: str
    status: str  # "timed", "skipped" or "disagrees"
    reason: str
    device: str
    dtype: str
    tf32: bool
    threads: int
    batch: int
    seq: int
    d_model: int
    heads: int
    d_head: int
    causal: bool
    median_s: float | None
    iqr_s: float | None
    calls: int
    flops: int
    flops_per_s: float | None
    peak_flops_per_s: float
    peak_source: str
    share_of_peak: float | None
    peak_memory_bytes: int | None
    memory_method: str
    error: float | None
    grad_error: float | None
    tolerance: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Figure:
    """A figure the lesson sets out to reach, measured. `value` is None when the records hold nothing to measure."""

    name: str
    value: float | None
    target: str
    reached: bool | None
    where: str


def figures(records) -> list:
    """The lesson's figures to reach, from timed records.

    - CPU, one thread, forward, main table: batched / sdpa time at most 1.25, core/hand / core/sdpa at least 1.5.
    - GPU, bfloat16, forward, d_head 128, seq >= 4096: core/flash at least 40% of the dense peak (the best such run).
    """
    timed = [r for r in records if r.status == "timed" and r.mode == "forward"]
    found = []
    cpu = [r for r in timed if r.device.startswith("CPU") and r.threads == 1 and r.experiment in ("table", "custom")]
    for num, den, target, at_most in (("batched", "sdpa", 1.25, True), ("core/hand", "core/sdpa", 1.5, False)):
        for a, b in _pairs(cpu, num, den):
            ratio = a.median_s / b.median_s
            reached = ratio <= target if at_most else ratio >= target
            found.append(Figure(f"{num} / {den} time", ratio, f"{'≤' if at_most else '≥'} {target}", reached, where(a)))
    gpu = [
        r
        for r in timed
        if not r.device.startswith("CPU")
        and (r.dtype, r.d_head, r.implementation) == ("bfloat16", 128, "core/flash")
        and r.seq >= 4096
    ]
    if gpu:
        best = max(gpu, key=lambda r: r.share_of_peak)
        reached = best.share_of_peak >= 0.4
        found.append(Figure("core/flash share of peak", best.share_of_peak, "≥ 0.40", reached, where(best)))
    return found


def where(r) -> str:
    """The experiment, shape, mode and dtype of a record, in words."""
    return f"{r.experiment}: {Shape(r.batch, r.seq, r.d_model, r.heads, r.causal)}, {r.mode}, {r.dtype}"


def _pairs(records, num, den):
    groups = {}
    for r in records:
        groups.setdefault(where(r), {})[r.implementation] = r
    for group in groups.values():
        if num in group and den in group:
            yield group[num], group[den]


def notes(records) -> list:
    """Where the package's fastest layer module in the main table is not the SDPA-based one: which it is, and why."""
    found, groups = [], {}
    for r in records:
        if r.status == "timed" and r.experiment == "table" and r.implementation in _LAYER_PACKAGE:
            groups.setdefault(where(r), {})[r.implementation] = r
    for place, group in groups.items():
        best = min(group.values(), key=lambda r: r.median_s)
        fused = group.get("sdpa")
        if best.implementation == "sdpa" or fused is None:
            continue
        close = best.median_s + best.iqr_s >= fused.median_s - fused.iqr_s
        if best.implementation == "compiled":
            why = (
                "the compiler fused the causal mask and the softmax into one loop between two matrix products"
                if best.causal
                else "the compiler recognised softmax(Q Kᵀ / √d_head) V and called SDPA's own kernel (on a CPU, "
                "flash), then fused what surrounds it"
            )
            why += "; the two differ by less than their spread (IQR)" if close else ""
        elif close:
            core = best.seq / (best.seq + 2 * best.d_model)  # core FLOPs / all FLOPs, not causal
            why = (
                f"the two differ by less than their spread (IQR); at this size the attention core is only "
                f"{100 * core:.0f}% of the work, the rest being the same projections in both"
            )
        else:
            why = (
                "its hand-written core beat SDPA's kernel at this size: small matrices, where the fused kernel's "
                "blocking does not pay"
            )
        found.append(f"{place}: the fastest package module is {best.implementation}, not sdpa: {why}")
    return found


# ------------------------------------------------------------------------------------------------ printing


def fmt_time(seconds: float) -> str:
    """Seconds in ms or µs, fixed width, e.g. "   12.345 ms" (the notebook checks mask this pattern)."""
    if seconds >= 1e-3:
        return f"{seconds * 1e3:9.3f} ms"
    return f"{seconds * 1e6:9.3f} µs"


def fmt_rate(flops_per_s: float) -> str:
    """FLOP/s in GFLOP/s or TFLOP/s, e.g. "  45.67 GFLOP/s"."""
    if flops_per_s >= 1e12:
        return f"{flops_per_s / 1e12:7.2f} TFLOP/s"
    return f"{flops_per_s / 1e9:7.2f} GFLOP/s"


def fmt_share(share: float) -> str:
    """A share of the peak, e.g. " 45.6% of peak"."""
    return f"{100 * share:5.1f}% of peak"


def fmt_ratio(ratio: float) -> str:
    """A ratio of times, e.g. "1.23×"."""
    return f"{ratio:.2f}×"


def fmt_flops(flops: int) -> str:
    """A count of FLOPs with 3 significant figures, e.g. "2.68 GFLOP"."""
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops} FLOP"


def fmt_bytes(n: int | None) -> str:
    """Bytes in MiB, e.g. "    12.0 MiB"; a dash when not measured."""
    if n is None:
        return "         -"
    return f"{n / 2**20:8.1f} MiB"


def format_table(records, memory: bool = True) -> str:
    """One table per (experiment, shape, mode): every implementation, its time, rate, share of peak and memory.

    Args:
        records: `Record`s, in the order to print them.
        memory: add the peak memory column.

    Measured numbers are printed in fixed formats (`fmt_time`, `fmt_rate`, `fmt_share`), which the notebook checks
    mask: the rest of the table (names, FLOP counts, skips) must come out the same on every machine.
    """
    lines, groups = [], {}
    for r in records:
        groups.setdefault((where(r), r.threads), []).append(r)
    for (place, threads), group in groups.items():
        lines.append(f"{place}, {threads} thread{'s' if threads > 1 else ''}")
        head = f"  {'implementation':<18} {'scope':<5} {'work':>11}  {'median':>12}  {'IQR':>12}  "
        head += f"{'achieved':>14}  {'share':>14}"
        lines.append(head + (f"  {'peak memory':>12}" if memory else ""))
        for r in group:
            start = f"  {r.implementation:<18} {r.scope:<5} {fmt_flops(r.flops):>11}  "
            if r.status != "timed":
                lines.append(start + f"{r.status}: {r.reason}")
                continue
            row = start + f"{fmt_time(r.median_s)}  {fmt_time(r.iqr_s)}  {fmt_rate(r.flops_per_s)}  "
            row += fmt_share(r.share_of_peak)
            lines.append(row + (f"  {fmt_bytes(r.peak_memory_bytes):>12}" if memory else ""))
        lines.append(f"  peak {fmt_rate(group[0].peak_flops_per_s)}: {group[0].peak_source}")
    return "\n".join(lines)


def format_figures(found, verdict: bool = True) -> str:
    """The figures to reach, one per line; with `verdict`, whether each is reached."""
    lines = []
    for f in found:
        value = (
            "nothing measured" if f.value is None else (fmt_share(f.value) if "share" in f.name else fmt_ratio(f.value))
        )
        line = f"{f.name}: {value} (target {f.target}) at {f.where}"
        if verdict and f.reached is not None:
            line += ": reached" if f.reached else ": NOT reached"
        lines.append(line)
    return "\n".join(lines)


PROVENANCE = ("command", "torch", "python", "date", "device")  # the rest of a run's metadata is its "settings"


def write_json(path, meta: dict, records, found=()) -> None:
    """Write a results file (`mha._provenance`): provenance, settings, records and figures; NaN is written as null."""
    write_results(
        path,
        {key: meta.get(key) for key in PROVENANCE},
        {
            "settings": {key: value for key, value in meta.items() if key not in PROVENANCE},
            "records": [r.to_dict() for r in records],
            "figures": [dataclasses.asdict(x) for x in found],
        },
        one_line_lists=("records",),
    )


def write_csv(path, meta: dict, records) -> None:
    """One row per record, with the file's torch version, date and command repeated on each row."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = [f.name for f in dataclasses.fields(Record)] + ["torch", "date", "command"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in records:
            writer.writerow({**r.to_dict(), "torch": meta["torch"], "date": meta["date"], "command": meta["command"]})


def load(path) -> tuple[dict, list]:
    """A results file written by `--json`: its metadata (provenance and settings in one dict) and its records."""
    payload = read_results(path)
    return {**payload["provenance"], **payload.get("settings", {})}, [Record(**r) for r in payload["records"]]
