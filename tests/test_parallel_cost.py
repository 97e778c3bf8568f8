"""The cost model of lesson 08: bytes of a ring all-reduce, FLOPs per rank, the paper model, the fit; pictures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mha.parallel import HeadParallelAttention  # noqa: E402
from mha.parallel.cost import (  # noqa: E402
    LINKS,
    allreduce_bytes,
    breakeven_seq,
    fit_latency_bandwidth,
    flops_per_rank,
    layer_time,
    ring_steps,
)
from mha.parallel.experiments import machine_load  # noqa: E402
from mha.parallel.jobs import Problem, make  # noqa: E402
from mha.parallel.plots import bytes_vs_formula, show_shards, speedup_model, time_vs_bytes  # noqa: E402


def test_ring_allreduce_bytes():
    assert allreduce_bytes(2, 6, 32, 4, 1) == 0
    assert allreduce_bytes(2, 6, 32, 4, 2) == 2 * 6 * 32 * 4  # two ranks: each sends half, twice
    assert allreduce_bytes(1, 4096, 8192, 2, 8) == 2 * 7 / 8 * 4096 * 8192 * 2
    assert ring_steps(4) == 6


@pytest.mark.parametrize("world", [1, 2, 4])
def test_flops_per_rank_are_counted_by_pytorch(world):
    problem = Problem(batch=2, seq=8, d_model=32, heads=8)
    weights, x, _ = make(problem)
    layer = HeadParallelAttention.from_weights(weights, 8, world, world - 1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer.partial(x)
    assert counter.get_total_flops() == flops_per_rank(2, 8, 32, world)


def test_the_model_pays_inside_a_node_before_across_nodes():
    nvlink, ib = LINKS
    one = layer_time(1, 4096, 8192, 1, nvlink)
    assert one["comm_s"] == 0 and one["speedup"] == pytest.approx(1)
    fast, slow = layer_time(1, 4096, 8192, 8, nvlink), layer_time(1, 4096, 8192, 8, ib)
    assert 1 < slow["speedup"] < fast["speedup"] < 8
    assert breakeven_seq(1024, 8, nvlink) < breakeven_seq(1024, 8, ib)
    assert layer_time(1, 16, 1024, 8, nvlink)["speedup"] < 1  # tiny layers: latency wins


def test_the_fit_recovers_latency_and_bandwidth():
    sent = [1e3, 1e4, 1e5, 1e6]
    latency, bandwidth = fit_latency_bandwidth(sent, [2e-4 + b / 5e8 for b in sent])
    assert latency == pytest.approx(2e-4) and bandwidth == pytest.approx(5e8)
    with pytest.raises(ValueError, match="at least two different sizes"):
        fit_latency_bandwidth([1e3], [1e-3])


def test_pictures():
    fig = show_shards(16, 4, 2)
    assert len(fig.axes) == 4
    copies = show_shards(16, 8, 4, kv_heads=2)  # 2 K/V heads on 4 ranks: each drawn whole in 2 ranks' copies
    labels = [t.get_text() for t in copies.axes[1].texts]
    assert labels.count("K/V head 0") == labels.count("K/V head 1") == 2
    assert [t for t in labels if t.startswith("rank")] == ["rank 0", "rank 1", "rank 2", "rank 3"]
    speedup_model(d_models=(1024,), worlds=(2,))
    records = {2: [{"numbers": 256, "bytes": 1600.0, "seconds": 1e-4}, {"numbers": 4096, "bytes": 17000.0,
                                                                         "seconds": 3e-4}]}  # fmt: skip
    bytes_vs_formula(records)
    time_vs_bytes(records, {2: fit_latency_bandwidth([1600, 17000], [1e-4, 3e-4])})
    plt.close("all")


def test_lesson_08s_pictures_tell_ranks_and_worlds_apart_with_any_colour_vision():
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from mha.parallel.plots import show_ring
    from mha.plots import LINE_COLOURS

    shards = show_shards(32, 8, 4)
    ranks = {to_hex(p.get_facecolor()) for p in shards.axes[0].patches if isinstance(p, Rectangle)}
    assert ranks == {c.lower() for c in LINE_COLOURS[:4]}, ranks  # the Okabe-Ito colours, one per rank
    lines = [ln for ln in speedup_model(d_models=(1024,), worlds=(2, 4, 8)).axes[0].lines if len(ln.get_xdata()) > 2]
    worlds = {(to_hex(ln.get_color()), ln.get_marker()) for ln in lines}
    assert len(worlds) == 3 and {c for c, _ in worlds} <= {c.lower() for c in LINE_COLOURS}  # colour and marker
    ring = show_ring(4)
    for ax in ring.axes:
        for patch in ax.patches:
            if isinstance(patch, FancyArrowPatch):
                assert to_hex(patch.get_edgecolor()) == "#000000", "a message is drawn in black"
            elif patch.get_edgecolor() != patch.get_facecolor():
                assert to_hex(patch.get_edgecolor()) == "#000000", "a piece sent is edged in black, not red on green"
    plt.close("all")


def _recording(start, end, cpus=2, worlds=(1, 2, 4)):
    meta = {"cpus": cpus, "load_average_at_start": [start, 1.0, 1.0], "load_average_at_end": [end, 1.0, 1.0]}
    return {"provenance": meta, "worlds": [{"world": w} for w in worlds]}


def test_a_recording_says_whether_the_machine_was_busy():
    quiet = machine_load(_recording(0.3, 3.8))  # the end counts the recording's own 4 ranks: still quiet
    assert quiet["busy"] is False and "quiet when the recording started" in quiet["verdict"]
    assert "counting this recording's own 4 ranks" in quiet["verdict"]
    for start, end in ((2.5, 1.0), (0.2, 6.5)):  # more ready processes than cores, at the start or beyond our own
        busy = machine_load(_recording(start, end))
        assert busy["busy"] is True and "BUSY" in busy["verdict"], (start, end)
    machine = {"cpu_cores": 2, "load_average_before": 18.25, "load_average_after": 23.89}  # as recorded before
    old = machine_load({"provenance": {}, "machine": machine, "worlds": [{"world": 4}]})
    assert old["busy"] is True and old["start"] == 18.25 and "23.89 at the end" in old["verdict"]
    unknown = machine_load({"provenance": {}, "worlds": []})
    assert unknown["busy"] is None and "unknown" in unknown["verdict"]
