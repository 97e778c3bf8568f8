"""What splitting a layer by heads costs: bytes moved by the all-reduce, compute per rank, and a model on paper.

**Bytes.** The layer's output is batch·seq·d_model numbers on every rank. A ring all-reduce of N numbers over w
ranks cuts them in w pieces and passes pieces around the ring twice: w − 1 steps that add (reduce-scatter), then
w − 1 steps that hand out the sums (all-gather). Each step a rank sends one piece of N/w numbers, so each rank
sends 2(w − 1)/w · N numbers (nccl-tests, `doc/PERFORMANCE.md`, explains the same factor as "bus bandwidth").

**Time on paper.** A rank computes 1/w of the layer's FLOPs; then the all-reduce costs a latency per step plus the
bytes over the link's bandwidth:

    t(w) = FLOPs / (w · peak · share of peak)  +  [base + 2(w − 1) · per-step latency + bytes / bandwidth]

with the peak from the GPU's datasheet, and the link's bandwidth per direction from its datasheet. The latencies
are those of NCCL's own tuning model (`src/graph/tuning.cc`, ring algorithm, simple protocol). The model ignores
overlap of communication with computation and the loss of efficiency of smaller matrices: it is a first estimate.
"""

from dataclasses import dataclass

import numpy as np

from .._validate import check_int, check_positive
from ..bench.flops import KNOWN_PEAKS, attention_flops

NCCL_TUNING = "NCCL src/graph/tuning.cc: latencies of the ring algorithm, simple protocol"


def allreduce_bytes(batch: int, seq: int, d_model: int, bytes_per_number: int, world: int) -> float:
    """Bytes each rank sends to all-reduce a layer's output with a ring: 2(world − 1)/world · batch·seq·d_model·bytes.

    Args:
        batch, seq, d_model: the output's shape (batch, seq, d_model).
        bytes_per_number: 4 for float32, 2 for bfloat16.
        world: ranks taking part (1: nothing to send).

    Returns:
        bytes sent per rank (also received per rank) for one all-reduce.
    """
    return 2 * (world - 1) / world * batch * seq * d_model * bytes_per_number


def ring_steps(world: int) -> int:
    """Steps of a ring all-reduce: world − 1 to add up, world − 1 to hand out."""
    return 2 * (world - 1)


def flops_per_rank(batch: int, seq: int, d_model: int, world: int, causal: bool = False) -> float:
    """FLOPs of one forward pass of the layer on one rank of `world`: the projections and the core, divided by world."""
    return attention_flops(batch, seq, d_model, causal) / world


@dataclass(frozen=True)
class Link:
    """An interconnect: bandwidth per direction for one GPU, and latencies of a ring all-reduce over it."""

    name: str
    bandwidth: float  # bytes/s, one direction, per GPU
    step_latency: float  # seconds per ring step
    base_latency: float  # seconds per all-reduce, whatever the size
    source: str


LINKS = (
    Link(
        "NVLink 4, inside an H100 node",
        450e9,
        3.4e-6,
        8.4e-6,
        "NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): NVLink 900 GB/s per H100 SXM, both directions "
        "together; " + NCCL_TUNING,
    ),
    Link(
        "InfiniBand NDR, between nodes",
        50e9,
        14.0e-6,
        8.4e-6,
        "NVIDIA DGX H100 datasheet: one 400 Gb/s ConnectX-7 (InfiniBand NDR) port per GPU = 50 GB/s per direction; "
        + NCCL_TUNING,
    ),
)
GPU = next(p for p in KNOWN_PEAKS if p.device == "H100 SXM")


def layer_time(
    batch: int,
    seq: int,
    d_model: int,
    world: int,
    link: Link,
    peak: float = GPU.bfloat16,
    share_of_peak: float = 0.5,
    bytes_per_number: int = 2,
) -> dict:
    """The paper model of one forward pass of the layer split over `world` GPUs joined by `link`.

    Args:
        batch, seq, d_model: the layer's input (batch, seq, d_model).
        world: GPUs sharing the layer's heads.
        link: the interconnect (see `LINKS`).
        peak: the GPU's dense peak in FLOP/s (default: H100 SXM, bfloat16, from `mha.bench.flops.KNOWN_PEAKS`).
        share_of_peak: the share of the peak the matrix products reach (an assumption; default 0.5).
        bytes_per_number: 2 for bfloat16 (default).

    Returns:
        {"compute_s", "comm_s", "total_s", "one_gpu_s", "speedup"}: seconds per forward pass, and one GPU's time
        divided by the split layer's.
    """
    for name, value in (("batch", batch), ("seq", seq), ("d_model", d_model), ("world", world)):
        check_int(name, value)
    check_share(share_of_peak)
    check_positive("peak", peak, "a number of FLOP/s")
    check_int("bytes_per_number", bytes_per_number)
    flops = attention_flops(batch, seq, d_model)
    one_gpu = flops / (peak * share_of_peak)
    compute = one_gpu / world
    comm = 0.0
    if world > 1:
        moved = allreduce_bytes(batch, seq, d_model, bytes_per_number, world)
        comm = link.base_latency + ring_steps(world) * link.step_latency + moved / link.bandwidth
    return {"compute_s": compute, "comm_s": comm, "total_s": compute + comm, "one_gpu_s": one_gpu,
            "speedup": one_gpu / (compute + comm)}  # fmt: skip


def breakeven_seq(d_model: int, world: int, link: Link, batch: int = 1, speedup: float = 1.0, **model) -> int | None:
    """The shortest sequence (a power of 2 up to 2^20) at which splitting over `world` GPUs gives at least `speedup`."""
    for power in range(0, 21):
        if layer_time(batch, 2**power, d_model, world, link, **model)["speedup"] >= speedup:
            return 2**power
    return None


def fit_latency_bandwidth(bytes_sent, seconds) -> tuple[float, float]:
    """Fit seconds = latency + bytes / bandwidth by least squares. Returns (latency in s, bandwidth in bytes/s).

    Args:
        bytes_sent: bytes per rank of each measured all-reduce.
        seconds: the measured time of each.
    """
    x, y = np.asarray(bytes_sent, dtype=float), np.asarray(seconds, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError(f"the fit needs at least two different sizes, got {len(x)} measurement(s)")
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), (float(1.0 / slope) if slope > 0 else float("inf"))


def check_share(share) -> float:
    """A share of the GPU's peak: a number above 0 and at most 1 (0.5 is half)."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:  # NaN fails too
        raise ValueError(f"share_of_peak must be a number above 0 and at most 1 (0.5 is half), got {share!r}")
    return float(share)


def model_table(d_models, seqs, batch: int = 1, share: float = 0.5) -> str:
    """The paper model as text: one GPU's time and the speedup per d_model, seq, world and link; where it pays.

    Args:
        d_models, seqs: the sizes of the table's rows.
        batch: sequences per forward pass.
        share: share of the GPU's peak the matrix products reach (an assumption).
    """
    for name, sizes in (("d_models", d_models), ("seqs", seqs)):
        if isinstance(sizes, int | str) or not hasattr(sizes, "__iter__") or not list(sizes):
            raise ValueError(f"{name} must be a non-empty list of sizes, got {sizes!r}")
        for size in sizes:
            check_int(name[:-1], size)
    check_int("batch", batch)
    check_share(share)
    worlds = (2, 4, 8)
    short = {link: link.name.split(" ")[0] for link in LINKS}
    lines = [f"forward pass of one attention layer, batch {batch}, bfloat16, {share:.0%} of the H100's peak"]
    lines.append(f"{'d_model':>7} {'seq':>6} {'one GPU':>10}  " + "".join(
        f"{f'{short[link]} ×{w}':>15}" for link in LINKS for w in worlds
    ))  # fmt: skip
    for d in d_models:
        for s in seqs:
            one = layer_time(batch, s, d, 1, LINKS[0], share_of_peak=share)["one_gpu_s"]
            cells = "".join(f"{layer_time(batch, s, d, w, link, share_of_peak=share)['speedup']:>15.2f}"
                            for link in LINKS for w in worlds)  # fmt: skip
            lines.append(f"{d:>7} {s:>6} {one * 1e6:>7.0f} µs  " + cells)
    lines.append("speedup = one GPU's time / the split layer's time (compute / w + all-reduce); above 1, it pays")
    lines.append(f"\nthe shortest seq (a power of 2) from which splitting pays, batch {batch}:")
    lines.append(f"{'':<22}" + "".join(f"{f'd_model {d}':>14}" for d in d_models))
    for link in LINKS:
        for w in worlds:
            seqs_paying = [breakeven_seq(d, w, link, batch, share_of_peak=share) for d in d_models]
            cells = "".join(f"{'never' if s is None else s:>14}" for s in seqs_paying)
            lines.append(f"{short[link]:<12} {w} GPUs  " + cells)
    return "\n".join(lines)
