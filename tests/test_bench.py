"""The benchmark: FLOP counts, the agreement check, timing, memory, records and the command."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nbval.plugin import get_sanitize_patterns
from torch.utils.flop_counter import FlopCounterMode

from mha import MultiHeadAttention, padding_mask
from mha.attention import attention
from mha.bench import MODES, Experiment, Settings, plan, prepare, run, run_shape, suite
from mha.bench.__main__ import main
from mha.bench.flops import attention_flops, core_flops, known_peak, projection_flops
from mha.bench.implementations import (
    IMPLEMENTATIONS,
    Implementation,
    Problem,
    Shape,
    check,
    reference,
    sample_rows,
    tolerance,
    unavailable,
)
from mha.bench.memory import LiveTensorMeter, peak_memory
from mha.bench.mistakes import flash_refuses_mask, format_mistake, run_all
from mha.bench.results import Record, figures, format_table, load
from mha.bench.timing import time_interleaved
from mha.heads import merge_heads, split_heads

ROOT = Path(__file__).resolve().parents[1]
ON_CPU = [n for n in IMPLEMENTATIONS if unavailable(IMPLEMENTATIONS[n], "cpu") is None]
EAGER = [n for n in ON_CPU if n != "compiled"]  # compiling takes seconds per shape: tested on its own, marked slow


@pytest.fixture(autouse=True)
def _one_thread():
    """Small problems run fastest on one thread, and a busy machine makes several threads wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------------- FLOPs


def test_flops_formula_on_a_case_counted_by_hand():
    # batch 2, seq 3, d_model 4, heads 2 (d_head 2). A product (m, k) @ (k, n) is m·n·k multiply-adds = 2·m·n·k FLOPs.
    # Projections: 4 of (batch·seq = 6, 4) @ (4, 4) -> 4 · 2·6·4·4 = 768.
    # Core, per (batch, head): scores (3, 2) @ (2, 3) = 2·3·3·2 = 36, weights (3, 3) @ values (3, 2) = 2·3·2·3 = 36,
    # for 2 batches x 2 heads: 4 · 72 = 288.
    assert projection_flops(2, 3, 4) == 768
    assert core_flops(2, 3, 4) == 288
    assert attention_flops(2, 3, 4) == 768 + 288
    assert attention_flops(2, 3, 4, scope="core") == 288
    assert attention_flops(2, 3, 4, causal=True, scope="core") == 144  # half of the pairs, the usual convention
    assert attention_flops(2, 3, 4, backward=True) == 3 * (768 + 288)  # backward = 2 x forward


@pytest.mark.parametrize("backward", [False, True])
def test_flops_formula_matches_pytorchs_own_count(backward):
    # FlopCounterMode counts every matrix product PyTorch runs: an independent check of the formula.
    batch, seq, d_model, heads = 2, 10, 24, 3
    layer = MultiHeadAttention(d_model, heads)
    x = torch.randn(batch, seq, d_model, requires_grad=backward)
    with FlopCounterMode(display=False) as counter:
        out = layer(x)[0]
        if backward:
            out.sum().backward()
    assert counter.get_total_flops() == attention_flops(batch, seq, d_model, backward=backward)


def test_known_peaks_pick_the_right_card():
    h100 = known_peak("NVIDIA H100 80GB HBM3", torch.bfloat16)
    assert h100[0] == pytest.approx(989.5e12) and "H100 SXM" in h100[1]
    assert known_peak("NVIDIA H100 PCIe", torch.bfloat16)[0] == pytest.approx(756.5e12)
    assert known_peak("NVIDIA H200", torch.bfloat16)[0] == pytest.approx(989.5e12)
    assert known_peak("NVIDIA A100-SXM4-80GB", torch.float32, tf32=True)[0] == pytest.approx(156e12)
    assert known_peak("NVIDIA A100-SXM4-80GB", torch.float32)[0] == pytest.approx(19.5e12)
    assert known_peak("NVIDIA L40S", torch.bfloat16)[0] == pytest.approx(362e12)  # not the L4's
    assert known_peak("NVIDIA L4", torch.bfloat16)[0] == pytest.approx(121e12)
    assert known_peak("NVIDIA GeForce RTX 3060", torch.bfloat16) is None  # unknown: the peak is measured instead


# --------------------------------------------------------------------------------------------- agreement check

SHAPES = [Shape(2, 7, 24, 3), Shape(1, 1, 16, 2), Shape(3, 33, 64, 4, causal=True), Shape(2, 16, 32, 1, causal=True)]


def _masks(shape: Shape, kind: str):
    """(attn_mask, key_padding_mask) in the course convention, no query left with nothing to attend to."""
    gen = torch.Generator().manual_seed(3)
    b, s, h = shape.batch, shape.seq, shape.heads
    if kind == "none":
        return None, None
    if kind == "padding":
        return None, padding_mask([s - i % s for i in range(b)], s)
    size = {"2d": (s, s), "3d": (b, s, s), "4d": (b, h, s, s)}[kind]
    mask = torch.rand(size, generator=gen) > 0.4
    mask[..., 0] = True  # every query may see key 0
    return mask, None


@pytest.mark.parametrize("kind", ["none", "padding", "2d", "3d", "4d"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_implementation_agrees_with_the_reference(shape, kind):
    attn_mask, kpm = _masks(shape, kind)
    p = Problem(shape, "cpu", torch.float32, attn_mask, kpm)
    for name in EAGER:
        impl = IMPLEMENTATIONS[name]
        call, grad_inputs = impl.build(p)
        error, grad_error = check(impl, call, grad_inputs, p)
        assert error <= 1e-5 and grad_error <= 1e-5, f"{name}: error {error:.1e}, gradient {grad_error:.1e}"


def test_every_implementation_agrees_in_bfloat16():
    p = Problem(Shape(2, 40, 64, 2, causal=True), "cpu", torch.bfloat16)
    for name in EAGER:
        impl = IMPLEMENTATIONS[name]
        error, grad_error = check(impl, *impl.build(p), p)
        assert error <= tolerance(torch.bfloat16, False) and grad_error <= tolerance(torch.bfloat16, False), name


@pytest.mark.slow
def test_compiled_agrees_forward_and_backward():
    p = Problem(Shape(2, 24, 32, 4, causal=True), "cpu", torch.float32, None, padding_mask([24, 20]))
    impl = IMPLEMENTATIONS["compiled"]
    error, grad_error = check(impl, *impl.build(p), p)
    assert error <= 1e-5 and grad_error <= 1e-5


@pytest.mark.parametrize("kind", ["padding", "3d"])
def test_reference_on_sampled_rows_equals_the_full_computation(kind):
    shape = Shape(2, 100, 32, 4, causal=True)
    attn_mask, kpm = _masks(shape, kind)
    p = Problem(shape, "cpu", torch.float32, attn_mask, kpm)
    rows = sample_rows(shape.seq)
    assert 0 in rows and shape.seq - 1 in rows and len(rows) < shape.seq
    sampled, _ = reference(p, "layer", rows)
    x = p.x.detach().double()
    full = p.module.double()(x, key_padding_mask=kpm, attn_mask=attn_mask, causal=True)[0]
    torch.testing.assert_close(sampled, full[:, rows].detach(), atol=1e-12, rtol=0)


def _wrong(name: str, scope: str, fn) -> Implementation:
    """An implementation with a classic mistake in it, built from the package's pieces."""

    def build(p):
        module = p.module
        if scope == "core":
            return (lambda: fn(p.q, p.k, p.v, p)), [p.q, p.k, p.v]

        def call():
            q, k, v = (split_heads(t, p.shape.heads) for t in module.project(p.x, p.x, p.x))
            return module.out_proj(merge_heads(fn(q, k, v, p)))

        return call, [p.x, *module.parameters()]

    return Implementation(name, scope, build)


def _unscaled(q, k, v, p):
    return attention(q * math.sqrt(q.shape[-1]), k, v, p.mask, p.causal)[0]  # forgets 1 / sqrt(d_head)


def _no_causal(q, k, v, p):
    return attention(q, k, v, p.mask, causal=False)[0]


def _heads_mixed(q, k, v, p):
    out = attention(q, k, v, p.mask, p.causal)[0]  # (batch, heads, seq, d_head)
    return out.transpose(1, 2).reshape(out.shape)  # a reshape where a transpose belongs: heads and positions mixed


def _detached_keys(q, k, v, p):
    return attention(q, k.detach(), v, p.mask, p.causal)[0]  # right output, wrong gradient


WRONG = [
    _wrong("unscaled", "core", _unscaled),
    _wrong("no causal", "layer", _no_causal),
    _wrong("heads mixed", "layer", _heads_mixed),
    _wrong("detached keys", "core", _detached_keys),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("impl", WRONG, ids=lambda i: i.name)
def test_the_check_catches_classic_mistakes(impl, dtype):
    p = Problem(Shape(2, 16, 32, 4, causal=True), "cpu", dtype)
    error, grad_error = check(impl, *impl.build(p), p)
    assert max(error, grad_error) > 10 * tolerance(dtype, False), f"{impl.name} slipped through: {error:.1e}"


def test_a_disagreeing_implementation_is_reported_not_timed(monkeypatch):
    monkeypatch.setitem(IMPLEMENTATIONS, "unscaled", WRONG[0])
    settings = _settings()
    experiment = Experiment("table", (Shape(1, 8, 16, 2),), ("core/hand", "unscaled"), MODES)
    records = run_shape(settings, _tiny_suite(), experiment, experiment.shapes[0])
    bad = [r for r in records if r.implementation == "unscaled"]
    assert [r.status for r in bad] == ["disagrees", "disagrees"]
    assert all(r.median_s is None and r.error > r.tolerance for r in bad)
    assert all(r.status == "timed" and r.median_s > 0 for r in records if r.implementation == "core/hand")


def test_bad_shapes_are_refused_with_the_sizes():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by heads=4"):
        Shape(1, 8, 10, 4)
    with pytest.raises(ValueError, match="batch=0"):
        Shape(0, 8, 16, 4)
    with pytest.raises(ValueError, match="unknown implementations"):
        Experiment("x", (Shape(1, 8, 16, 4),), ("batched", "fastest"))


# ------------------------------------------------------------------------------------------- timing and memory


def test_timing_measures_a_known_duration_and_interleaves():
    order = []
    fns = {name: (lambda: time.sleep(0.002)) for name in "abc"}
    timings = time_interleaved(fns, threads=1, min_run_time=0.06, rounds=3, warmup=1, on_step=order.append)
    assert order == list("abcbcacab")  # each round starts with the next one
    for t in timings.values():
        assert 0.002 <= t.median < 0.02 and t.iqr >= 0 and t.calls >= 3


def test_memory_meter_counts_what_a_call_creates():
    with LiveTensorMeter() as meter:
        a = torch.ones(1000, 250)  # 1 MB
        b = a * 2  # 1 MB more
        del a, b
        c = torch.ones(500, 250)  # the 2 MB are gone: peak stays 2 MB
    assert meter.peak == 2_000_000
    assert c.numel() == 125_000


def test_memory_of_math_grows_as_seq_squared_and_of_flash_as_seq():
    def core_memory(name, seq):
        p = Problem(Shape(1, seq, 64, 1), "cpu", torch.float32)
        call, _ = IMPLEMENTATIONS[name].build(p)
        with torch.no_grad():
            return peak_memory(call, "cpu")[0]

    math_growth = core_memory("core/math", 512) / core_memory("core/math", 256)
    flash_growth = core_memory("core/flash", 512) / core_memory("core/flash", 256)
    assert 3.5 < math_growth < 4.5, math_growth
    assert 1.5 < flash_growth < 2.5, flash_growth


# ----------------------------------------------------------------------------------------- records and command

FIELDS = {
    "implementation",
    "device",
    "dtype",
    "tf32",
    "threads",
    "batch",
    "seq",
    "d_model",
    "heads",
    "d_head",
    "causal",
    "median_s",
    "iqr_s",
    "flops",
    "flops_per_s",
    "peak_flops_per_s",
    "peak_source",
    "share_of_peak",
    "peak_memory_bytes",
}


def _settings(**kw):
    return prepare("cpu", torch.float32, threads=1, progress=False, **kw)


def _tiny_suite():
    return suite("cpu", quick=True)


def _check_records_file(path: Path, command_has: str):
    payload = json.loads(path.read_text())
    meta, records = {**payload["provenance"], **payload["settings"]}, payload["records"]
    assert meta["device"].startswith("CPU") and meta["torch"] == torch.__version__
    assert command_has in meta["command"] and meta["command"].startswith("python -m mha.bench")
    assert re.match(r"\d{4}-\d\d-\d\dT", meta["date"])
    assert records and all(FIELDS <= set(r) for r in records)
    timed = [r for r in records if r["status"] == "timed"]
    assert {r["implementation"] for r in timed} >= {"loop", "batched", "einsum", "sdpa", "sdpa/flash", "nn.MHA"}
    for r in timed:
        expected = attention_flops(r["batch"], r["seq"], r["d_model"], r["causal"], r["scope"], r["mode"] != "forward")
        assert r["flops"] == expected
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["d_head"] * r["heads"] == r["d_model"]
        assert r["flops_per_s"] == pytest.approx(r["flops"] / r["median_s"])
        assert r["share_of_peak"] == pytest.approx(r["flops_per_s"] / r["peak_flops_per_s"])
    skipped = [r for r in records if r["status"] == "skipped"]
    assert all(r["reason"] for r in skipped)  # a skip always says why
    return meta, records


def test_quick_table_writes_every_field(tmp_path):
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "table", "--no-compile", "--no-progress", "--json", str(out)]) == 0
    meta, records = _check_records_file(out, "--quick")
    assert {r["mode"] for r in records} == set(MODES)
    assert load(out)[1][0] == Record(**records[0])


@pytest.mark.slow
def test_the_quick_command_runs_everything_in_under_a_minute(tmp_path):
    out, table = tmp_path / "quick.json", tmp_path / "quick.csv"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mha.bench", "--quick", "--json", str(out), "--csv", str(table)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - start < 60
    meta, records = _check_records_file(out, "--quick")
    assert {r["experiment"] for r in records} == {"table", "seq", "heads", "memory", "ratios"}
    compiled = [r for r in records if r["implementation"] == "compiled"]
    assert [r["status"] for r in compiled] == ["timed", "skipped"]  # backward compile left out of --quick, saying so
    assert table.read_text().count("\n") == len(records) + 1
    assert "batched / sdpa time" in done.stdout and "core/hand / core/sdpa time" in done.stdout


@pytest.mark.slow
def test_the_gpu_suite_runs_its_logic_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--suite", "gpu", "--quick", "--no-compile", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    meta, records = _check_records_file(out, "--suite gpu")
    assert meta["dtype"] == "bfloat16" and {r["d_head"] for r in records if r["experiment"] == "seq"} == {128}
    efficient = [r for r in records if r["implementation"].endswith("/efficient")]
    assert efficient and all(r["status"] == "skipped" and "only on CUDA" in r["reason"] for r in efficient)


def test_gpu_plan_skips_what_would_not_fit_and_nothing_else():
    # The plan of the real GPU suite, as an H100 (80 GB, budget 60%) would see it: no GPU needed to check it.
    h100 = Settings(torch.device("cuda"), torch.bfloat16, 1, False, "NVIDIA H100 80GB HBM3", 989.5e12, "", int(48e9))
    lines = plan(suite("gpu"), h100)
    assert len(lines) == sum(len(e.shapes) * len(e.modes) for e in suite("gpu").experiments)
    longest = [line for line in lines if line.startswith("seq: batch 2 · seq 16384 · d_model 2048 · heads 32")]
    assert longest and all("core/hand (its (batch, heads, q_pos, k_pos) weights would need" in x for x in longest)
    assert all("core/flash (" not in line and "only on CUDA" not in line for line in lines)
    assert any(line.startswith("memory: batch 1 · seq 32768") and "core/math (" in line for line in lines)


def test_figures_to_reach_are_judged_on_the_table():
    def record(name, seconds, **kw):
        fields = dict.fromkeys(f.name for f in Record.__dataclass_fields__.values())
        fields.update(
            experiment="table",
            implementation=name,
            scope="core" if name.startswith("core/") else "layer",
            mode="forward",
            status="timed",
            device="CPU: test",
            dtype="float32",
            threads=1,
            batch=1,
            seq=8,
            d_model=16,
            heads=2,
            d_head=8,
            causal=False,
            median_s=seconds,
            iqr_s=0.0,
        )
        fields.update(kw)
        return Record(**fields)

    found = figures([record("batched", 1.3), record("sdpa", 1.0), record("core/hand", 3.0), record("core/sdpa", 1.0)])
    expected = [("batched / sdpa time", False), ("core/hand / core/sdpa time", True)]
    assert [(f.name, f.reached) for f in found] == expected
    gpu = dict(device="NVIDIA H100 80GB HBM3", dtype="bfloat16", d_head=128, heads=16, d_model=2048, seq=4096)
    found = figures([record("core/flash", 1.0, share_of_peak=0.45, **gpu)])
    assert [(f.name, f.reached) for f in found] == [("core/flash share of peak", True)]


def _sanitize(text: str) -> str:
    """What nbval does to printed output before comparing it, with the course's patterns."""
    for regex, replace in get_sanitize_patterns((ROOT / "tests/nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_printed_tables_are_the_same_on_every_machine_once_sanitized():
    settings = _settings()
    experiment = Experiment("table", (Shape(1, 8, 16, 2),), ("loop", "sdpa/efficient", "core/sdpa"), ("forward",))
    first = format_table(run_shape(settings, _tiny_suite(), experiment, experiment.shapes[0]))
    second = format_table(run_shape(settings, _tiny_suite(), experiment, experiment.shapes[0]))
    assert first != second  # timings differ from run to run...
    assert _sanitize(first) == _sanitize(second)  # ...and the sanitizer hides exactly them
    kept = _sanitize(first)
    assert "loop" in kept and "20.5 kFLOP" in kept and "skipped: the efficient backend" in kept
    assert _sanitize("accuracy 97.5%, 12 heads, 1.5 s, 3.25 GFLOP") == "accuracy 97.5%, 12 heads, 1.5 s, 3.25 GFLOP"


def test_the_lesson_suite_is_what_the_lesson_runs():
    lesson = suite("lesson")
    assert [e.name for e in lesson.experiments] == ["table", "seq", "heads", "memory"]
    assert "compiled" not in lesson.experiments[0].implementations  # compiling is too slow for a lesson on a CPU


def test_mistakes_run_on_a_cpu_and_say_what_they_skip():
    found = run_all("cpu", threads=1, min_run_time=0.01)
    assert len(found) == 6
    ran = [m for m in found if not m.skipped]
    assert all(m.wrong_value > 0 and m.right_value > 0 for m in ran)
    assert [m.skipped for m in found if m.skipped] == ["needs a CUDA GPU"]
    assert "not run here (needs a CUDA GPU)" in format_mistake(found[-1])
    assert flash_refuses_mask("cpu").startswith("accepted")


def test_run_restores_torch_threads():
    torch.set_num_threads(2)
    experiment = Experiment("x", (Shape(1, 4, 8, 2),), ("batched",))
    tiny = suite("cpu", quick=True)
    records = run(type(tiny)("t", (experiment,), min_run_time=0.005, rounds=1, warmup=0), _settings())
    assert records[0].threads == 1 and torch.get_num_threads() == 2


def test_the_recording_commands_parse():
    from mha.bench import CPU_COMMAND, GPU_COMMAND
    from mha.bench.__main__ import _parser

    for command in (CPU_COMMAND, GPU_COMMAND):
        words = command.split()
        assert words[:3] == ["python", "-m", "mha.bench"]
        args = _parser().parse_args(words[3:])
        assert args.json.startswith("notebooks/results/06_") and args.csv.endswith(".csv")
    assert _parser().parse_args(GPU_COMMAND.split()[3:]).device == "cuda"


def test_dry_run_plans_the_gpu_suite_without_a_gpu(capsys):
    assert main(["--device", "cuda", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan for cuda, bfloat16" in out and "nothing is run" in out
    assert "table: batch 4 · seq 4096 · d_model 2048 · heads 16 · d_head 128 · not causal, forward: 17 to run" in out
    assert "memory: batch 1 · seq 32768" in out and "core/math (its (batch, heads, q_pos, k_pos) weights" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--device", "cuda", "--quick"])
    assert info.value.code == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_the_first_call_demo_times_both_sides_on_the_same_threads_and_shows_the_gap():
    from mha.bench.mistakes import first_call

    torch.set_num_threads(2)
    found = first_call("cpu", threads=1, min_run_time=0.05)
    assert torch.get_num_threads() == 2, "the thread count must be restored"
    # compiling (or, without a compiler, setting up) makes the first call far slower than a warm one
    assert found.wrong_value > 3 * found.right_value, (found.wrong_value, found.right_value)
