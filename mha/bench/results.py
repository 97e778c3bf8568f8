"""What a benchmark run measured: records, the figures to reach, the printed tables; reading a results file.

Tables print measured numbers in fixed formats (`fmt_time`, `fmt_rate`, `fmt_share`, `fmt_ratio`) that the
notebook checks mask (tests/nbval_sanitize.cfg), so the rest of a table must come out the same on every machine.
"""

import dataclasses
from dataclasses import dataclass

from .._provenance import read_results
from .implementations import Shape


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
class Target:
    """A figure the lesson sets out to reach: `implementation`, in the main table, forward, on a `device_type`
    ("cpu" or "cuda"), at `share` of the peak or more."""

    implementation: str
    device_type: str
    share: float


# The figures to reach, defined here once. A layer is mostly matrix products, so a good one comes close to the peak of
# a matrix product (on a CPU, measured in turn with it); on a GPU, the flash kernel against the datasheet's peak.
TARGETS = (Target("batched", "cpu", 0.75), Target("sdpa", "cpu", 0.75), Target("core/flash", "cuda", 0.40))


@dataclass(frozen=True)
class Figure:
    """A figure the lesson shows, measured: a share of the peak against its target, or (target None) the share of
    memory the fused core saves against the hand-written one, whose peaks `detail` gives."""

    name: str
    value: float
    target: float | None
    reached: bool | None
    where: str
    detail: str = ""


def figures(records) -> list:
    """The lesson's figures, from the main table's timed forward records, for each of its shapes.

    - each `TARGETS` entry whose device type matches: its share of the peak, and whether it reaches the target;
    - the memory the fused core (core/sdpa) saves against the hand-written one (core/hand), as a share of the latter.

    Returns:
        a list of `Figure`s, in the order of the table's shapes.
    """
    groups = {}
    for r in records:
        if r.experiment == "table" and r.mode == "forward" and r.status == "timed":
            groups.setdefault(where(r), {})[r.implementation] = r
    found = []
    for place, group in groups.items():
        device_type = "cpu" if next(iter(group.values())).device.startswith("CPU") else "cuda"
        for t in TARGETS:
            r = group.get(t.implementation)
            if t.device_type == device_type and r is not None:
                share = r.share_of_peak
                found.append(Figure(t.implementation, share, t.share, share >= t.share, place))
        hand, fused = group.get("core/hand"), group.get("core/sdpa")
        if hand and fused and hand.peak_memory_bytes and fused.peak_memory_bytes is not None:
            saved = 1 - fused.peak_memory_bytes / hand.peak_memory_bytes
            detail = f"core/sdpa {_mib(fused.peak_memory_bytes)} against core/hand {_mib(hand.peak_memory_bytes)}"
            found.append(Figure("memory the fused core saves", saved, None, None, place, detail))
    return found


def where(r) -> str:
    """The experiment, shape, mode and dtype of a record, in words."""
    return f"{r.experiment}: {Shape(r.batch, r.seq, r.d_model, r.heads, r.causal)}, {r.mode}, {r.dtype}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


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
    """The figures, one per line; with `verdict`, whether each share reaches its target."""
    lines = []
    for f in found:
        if f.target is None:
            lines.append(f"{f.name}: {100 * f.value:.0f}% ({f.detail}) at {f.where}")
            continue
        line = f"{f.name}: reaches {fmt_share(f.value).strip()} (target {100 * f.target:.0f}% or more) at {f.where}"
        lines.append(line + ((": reached" if f.reached else ": NOT reached") if verdict else ""))
    return "\n".join(lines)


def load(path) -> tuple[dict, list]:
    """A results file written by `--json`: its metadata (provenance and settings in one dict) and its records."""
    payload = read_results(path)
    return {**payload["provenance"], **payload.get("settings", {})}, [Record(**r) for r in payload["records"]]
