"""The benchmark: FLOP counts, the agreement check, timing, memory, records and the command."""

import dataclasses
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nbval.plugin import get_sanitize_patterns
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from mha import MultiHeadAttention
from mha._runtime import synchronize, threads
from mha.attention import attention
from mha.bench import MODES, Experiment, Settings, estimate, plan, prepare, run, run_shape, suite
from mha.bench.__main__ import main, mistakes_main
from mha.bench.flops import attention_flops, core_flops, known_peak, projection_flops
from mha.bench.implementations import (
    IMPLEMENTATIONS,
    LESSON_10,
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
from mha.bench.plan import autorange_seconds
from mha.bench.results import TARGETS, Record, figures, format_figures, format_table, load
from mha.bench.timing import time_interleaved
from mha.heads import merge_heads, split_heads

ROOT = Path(__file__).resolve().parents[1]
ON_CPU = [n for n in IMPLEMENTATIONS if unavailable(IMPLEMENTATIONS[n], "cpu") is None]
# compiling takes seconds per shape: tested on its own, marked slow; lesson 10's Triton kernel is tested with its
# lesson (tests/test_flash.py), where a gradient that should be zero (one key) is judged on the scale of all three
EAGER = [n for n in ON_CPU if n != "compiled" and n not in LESSON_10]


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
    assert known_peak("NVIDIA A100-SXM4-80GB", torch.float32)[0] == pytest.approx(19.5e12)
    assert known_peak("NVIDIA L40S", torch.bfloat16)[0] == pytest.approx(362e12)  # not the L4's
    assert known_peak("NVIDIA L4", torch.bfloat16)[0] == pytest.approx(121e12)
    assert known_peak("NVIDIA GeForce RTX 3060", torch.bfloat16) is None  # unknown: the peak is measured instead


# --------------------------------------------------------------------------------------------- agreement check

SHAPES = [Shape(2, 7, 24, 3), Shape(1, 1, 16, 2), Shape(3, 33, 64, 4, causal=True), Shape(2, 16, 32, 1, causal=True)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_implementation_agrees_with_the_reference(shape):
    p = Problem(shape, "cpu", torch.float32)
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
        assert error <= tolerance(torch.bfloat16) and grad_error <= tolerance(torch.bfloat16), name


@pytest.mark.slow
def test_compiled_agrees_forward_and_backward():
    p = Problem(Shape(2, 24, 32, 4, causal=True), "cpu", torch.float32)
    impl = IMPLEMENTATIONS["compiled"]
    error, grad_error = check(impl, *impl.build(p), p)
    assert error <= 1e-5 and grad_error <= 1e-5


@pytest.mark.parametrize("causal", [False, True])
def test_reference_on_sampled_rows_equals_the_full_computation(causal):
    shape = Shape(2, 100, 32, 4, causal=causal)
    p = Problem(shape, "cpu", torch.float32)
    rows = sample_rows(shape.seq)
    assert 0 in rows and shape.seq - 1 in rows and len(rows) < shape.seq
    sampled, _ = reference(p, "layer", rows)
    full = p.module.double()(p.x.detach().double(), causal=causal)[0]
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
    return attention(q * math.sqrt(q.shape[-1]), k, v, causal=p.causal)[0]  # forgets 1 / sqrt(d_head)


def _no_causal(q, k, v, p):
    return attention(q, k, v, causal=False)[0]


def _heads_mixed(q, k, v, p):
    out = attention(q, k, v, causal=p.causal)[0]  # (batch, heads, seq, d_head)
    return out.transpose(1, 2).reshape(out.shape)  # a reshape where a transpose belongs: heads and positions mixed


def _detached_keys(q, k, v, p):
    return attention(q, k.detach(), v, causal=p.causal)[0]  # right output, wrong gradient


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
    assert max(error, grad_error) > 10 * tolerance(dtype), f"{impl.name} slipped through: {error:.1e}"


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
    assert {r["implementation"] for r in timed} >= {"loop", "batched", "einsum", "sdpa", "core/flash", "nn.MHA"}
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "mha.bench", "--quick", "--json", str(out), "--csv", str(table)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # processor time: what a busy machine does not stretch
    assert (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) < 60
    meta, records = _check_records_file(out, "--quick")
    assert {r["experiment"] for r in records} == {"table", "seq", "heads", "memory"}
    assert meta["complete"] and meta["experiments_done"] == ["table", "seq", "memory", "heads"]
    compiled = [r for r in records if r["implementation"] == "compiled"]
    assert [r["status"] for r in compiled] == ["timed", "skipped"]  # backward compile left out of --quick, saying so
    assert table.read_text().count("\n") == len(records) + 1
    assert "batched: reaches" in done.stdout and "memory the fused core saves" in done.stdout


@pytest.mark.slow
def test_the_gpu_suite_runs_its_logic_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--suite", "gpu", "--quick", "--no-compile", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    meta, records = _check_records_file(out, "--suite gpu")
    assert meta["dtype"] == "bfloat16" and {r["d_head"] for r in records if r["experiment"] == "seq"} == {128}
    efficient = [r for r in records if r["implementation"].endswith("/efficient")]
    assert efficient and all(r["status"] == "skipped" and "only on CUDA" in r["reason"] for r in efficient)


H100 = Settings(torch.device("cuda"), torch.bfloat16, 1, "NVIDIA H100 80GB HBM3", 989.5e12, "", int(48e9))


def test_gpu_plan_skips_what_would_not_fit_and_nothing_else():
    # The plan of the real GPU suite, as an H100 (80 GB, budget 60%) would see it: no GPU needed to check it.
    lines = plan(suite("gpu"), H100)
    assert len(lines) == sum(len(e.shapes) * len(e.modes) for e in suite("gpu").experiments)
    longest = [line for line in lines if line.startswith("seq: batch 2 · seq 16384 · d_model 2048 · heads 16")]
    assert longest and all("core/hand (its (batch, heads, q_pos, k_pos) weights would need" in x for x in longest)
    assert all("core/flash (" not in line and "only on CUDA" not in line for line in lines)
    assert any(line.startswith("memory: batch 1 · seq 32768") and "core/math (" in line for line in lines)


def test_the_gpu_recording_fits_in_ten_minutes():
    # Shared and rented GPU machines often allow one command 10 minutes: `make gpu-record` runs lesson 06's suite,
    # lesson 07's timing and lesson 10's suite, each under a cap written in scripts/record_gpu.sh; each suite's
    # estimate must fit its cap, and the caps together 10 minutes, main tables first.
    script = (ROOT / "scripts" / "record_gpu.sh").read_text()
    caps = {name: int(seconds) for name, seconds in re.findall(r'^record "lesson (\d+)" (\d+) ', script, re.MULTILINE)}
    assert set(caps) == {"06", "07", "10"} and sum(caps.values()) <= 570, caps
    gpu = suite("gpu")
    times = estimate(gpu, H100)
    assert [e.name for e, _ in times] == ["table", "table", "seq", "memory"]
    assert 3 * 60 < sum(s for _, s in times) < caps["06"], times
    assert gpu.experiments[0].shapes[0] == Shape(4, 4096, 2048, 16) and "compiled" in gpu.experiments[0].implementations
    flash = estimate(suite("flash"), H100)
    assert [e.name for e, _ in flash][0] == "table" and sum(s for _, s in flash) < caps["10"], flash
    assert "core/triton" in suite("flash").experiments[0].implementations
    # the estimate follows what it is given: more timing, more time; a suite of the old size would not fit
    slower = estimate(dataclasses.replace(gpu, min_run_time=4 * gpu.min_run_time), H100)
    assert sum(s for _, s in slower) > sum(s for _, s in times) + 60
    twice = dataclasses.replace(gpu, experiments=gpu.experiments * 2)
    assert sum(s for _, s in estimate(twice, H100)) > caps["06"] + 60


@pytest.mark.parametrize(
    "seconds, min_run_time, reading",  # reading: what one reading of the clock costs (on a GPU, a synchronisation)
    [(0.004, 0.05, 1e-7), (0.0005, 0.03, 1e-6), (0.03, 0.02, 1e-6), (2e-5, 0.05, 1e-5), (3e-4, 0.1, 1e-5)],
)
def test_the_estimate_of_timer_matches_timer(seconds, min_run_time, reading):
    # The plan's model of Timer.blocked_autorange against the real thing, on a virtual clock: each call of fn moves it
    # by `seconds`, each reading of the clock by `reading`, so that no load on the machine can blur the comparison.
    clock = [0.0]

    def read():
        clock[0] += reading
        return clock[0]

    def fn():
        clock[0] += seconds

    Timer("fn()", globals={"fn": fn}, timer=read).blocked_autorange(min_run_time=min_run_time)
    predicted = autorange_seconds(seconds, min_run_time, timer_s=reading)
    assert predicted == pytest.approx(clock[0], rel=0.05)
    assert autorange_seconds(seconds, 2 * min_run_time, reading) >= predicted  # more time asked, more time taken


def test_figures_are_shares_of_the_peak_against_targets_and_the_memory_saved():
    def record(name, share, memory=None, **kw):
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
            median_s=1.0,
            iqr_s=0.0,
            share_of_peak=share,
            peak_memory_bytes=memory,
        )
        fields.update(kw)
        return Record(**fields)

    cpu = {t.implementation: t.share for t in TARGETS if t.device_type == "cpu"}
    assert set(cpu) == {"batched", "sdpa"}
    table = [
        record("batched", cpu["batched"] - 0.01),  # just short of its target
        record("sdpa", cpu["sdpa"] + 0.01),
        record("core/hand", 0.5, memory=20 * 2**20),
        record("core/sdpa", 0.7, memory=2 * 2**20),
        record("loop", 0.9, experiment="seq"),  # not the main table: no figure
    ]
    found = figures(table)
    assert [(f.name, f.reached) for f in found] == [("batched", False), ("sdpa", True), (MEMORY, None)]
    assert found[2].value == pytest.approx(0.9) and "core/sdpa 2.0 MiB against core/hand 20.0 MiB" in found[2].detail
    text = format_figures(found)
    assert "batched: reaches 74.0% of peak (target 75% or more)" in text and ": NOT reached" in text
    assert "memory the fused core saves: 90% (core/sdpa 2.0 MiB against core/hand 20.0 MiB)" in text
    gpu = dict(device="NVIDIA H100 80GB HBM3", dtype="bfloat16", d_head=128, heads=16, d_model=2048, seq=4096)
    found = figures([record("core/flash", 0.45, **gpu), record("batched", 0.1, **gpu)])  # no CPU target on a GPU
    assert [(f.name, f.reached) for f in found] == [("core/flash", True)]


MEMORY = "memory the fused core saves"


def _sanitize(text: str) -> str:
    """What nbval does to printed output before comparing it, with the course's patterns."""
    for regex, replace in get_sanitize_patterns((ROOT / "tests/nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_printed_tables_are_the_same_on_every_machine_once_sanitized():
    settings = _settings()
    experiment = Experiment("table", (Shape(1, 8, 16, 2),), ("loop", "core/efficient", "core/sdpa"), ("forward",))
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


def test_dry_run_plans_the_gpu_suite_without_a_gpu_and_says_how_long(capsys):
    assert main(["--device", "cuda", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan for cuda, bfloat16" in out and "nothing is run" in out
    assert "table: batch 4 · seq 4096 · d_model 2048 · heads 16 · d_head 128 · not causal, forward: 13 to run" in out
    assert "memory: batch 1 · seq 32768" in out and "core/math (its (batch, heads, q_pos, k_pos) weights" in out
    minutes = dict(re.findall(r"^  (\w+(?: all| causal)?) .* (\d+\.\d) min$", out, flags=re.MULTILINE))
    assert set(minutes) == {"table", "table causal", "seq", "memory", "in all"}, out
    assert 3 < float(minutes["in all"]) < 5
    parts = sum(float(m) for name, m in minutes.items() if name != "in all")
    assert abs(parts - float(minutes["in all"])) <= 0.3  # the experiments add up to the total, give or take rounding


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
    assert found.wrong == "first call (compiling where torch.compile works)"  # the same words with or without it


# ------------------------------------------------------------------------------------- threads, bad options, time-outs


def test_threads_are_set_for_the_block_and_restored_even_after_an_error():
    torch.set_num_threads(2)
    with threads(1):
        assert torch.get_num_threads() == 1
    with pytest.raises(KeyError), threads(1):
        raise KeyError("inside")
    assert torch.get_num_threads() == 2
    with threads(None):  # None leaves the count alone
        assert torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a whole number of at least 1"), threads(bad):
            pass
    synchronize("cpu")  # nothing to wait for, and no error
    synchronize()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--threads", "0"], "argument --threads: expected a whole number of at least 1, got '0'"),
        (["--rounds", "0"], "argument --rounds: expected a whole number of at least 1, got '0'"),
        (["--memory-budget", "-2"], "argument --memory-budget: expected a finite number above 0, got '-2'"),
        (["--min-run-time", "0"], "argument --min-run-time: expected a finite number above 0, got '0'"),
        (["--min-run-time", "nan"], "argument --min-run-time: expected a finite number above 0, got 'nan'"),
        (["--threads", "two"], "argument --threads: expected a whole number, got 'two'"),
        # an infinite time timed forever, an infinite budget was an OverflowError
        (["--min-run-time", "inf"], "argument --min-run-time: expected a finite number above 0, got 'inf'"),
        (["--memory-budget", "inf"], "argument --memory-budget: expected a finite number above 0, got 'inf'"),
        (["--memory-budget", "1e9"], "--memory-budget 1e+09 GiB is more than all the memory of this cpu"),
        (["--only", ""], "argument --only: expected some text, got an empty value ''"),
        (["--only", "tabel"], "--only 'tabel': suite 'cpu' has experiments"),
    ],
)
def test_bad_numbers_on_the_command_line_get_one_clear_line(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--quick", "--dry-run", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize(
    "path, words",
    [
        ("{foo}.json", "{foo}.json': the one placeholder a path may hold is {device}"),
        ("{0}.json", "the one placeholder a path may hold is {device}"),
    ],
)
def test_a_placeholder_other_than_device_is_refused_before_any_work(path, words, tmp_path, capsys, monkeypatch):
    import mha.bench.__main__ as command

    monkeypatch.setattr(command, "prepare", lambda *a, **k: pytest.fail("the work started"))
    with pytest.raises(SystemExit) as info:
        main(["--quick", "--json", str(tmp_path / path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err  # was a KeyError


def test_the_mistakes_command_is_a_subcommand_of_main_and_refuses_bad_numbers(capsys):
    with pytest.raises(SystemExit) as info:
        main(["mistakes", "--min-run-time", "inf"])  # timed forever before
    assert info.value.code == 2 and "finite number above 0, got 'inf'" in capsys.readouterr().err


def test_the_mistakes_command_refuses_bad_numbers_too(capsys):
    for argv in (["--threads", "0"], ["--min-run-time", "-1"]):
        with pytest.raises(SystemExit) as info:
            mistakes_main(argv)
        assert info.value.code == 2
    assert "expected a" in capsys.readouterr().err


def test_a_run_stopped_after_its_first_experiment_leaves_a_valid_file_with_it(tmp_path, monkeypatch, capsys):
    import mha.bench.harness as harness

    real = harness.run_shape

    def stop_at_the_second_experiment(settings, suite_, experiment, shape, bar=None):
        if experiment.name != "table":
            raise KeyboardInterrupt  # what `timeout -s INT` does to a run that takes too long
        return real(settings, suite_, experiment, shape, bar)

    monkeypatch.setattr(harness, "run_shape", stop_at_the_second_experiment)
    out, table = tmp_path / "gpu.json", tmp_path / "gpu.csv"
    argv = ["--suite", "gpu", "--quick", "--no-compile", "--no-progress", "--json", str(out), "--csv", str(table)]
    assert main(argv) == 130
    assert "interrupted; experiments finished: ['table']" in capsys.readouterr().out
    meta, records = _check_records_file(out, "--suite gpu")  # valid JSON, every field, provenance
    assert meta["complete"] is False and meta["experiments_done"] == ["table"]
    assert records and {r["experiment"] for r in records} == {"table"}
    assert len(records) == len(suite("gpu", quick=True).experiments[0].implementations) * len(MODES)
    assert table.read_text().count("\n") == len(records) + 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def test_a_results_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as info:
        main(["--quick", "--only", "table", "--no-progress", "--json", str(tmp_path / "taken" / "x.json")])
    assert info.value.code == 2 and "cannot create the folder" in capsys.readouterr().err


def test_a_csv_of_timings_is_replaced_but_someone_elses_csv_is_not(tmp_path, capsys, monkeypatch):
    import mha.bench.__main__ as command

    monkeypatch.setattr(command, "prepare", lambda *a, **k: pytest.fail("the work started"))
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("name,score\nada,3\n")
    with pytest.raises(SystemExit) as info:
        main(["--quick", "--csv", str(theirs)])
    assert info.value.code == 2 and "theirs.csv exists and is not a CSV of timings" in capsys.readouterr().err
    assert theirs.read_text() == "name,score\nada,3\n"
    ours = tmp_path / "ours.csv"
    command._write_csv(ours, {"torch": "2", "date": "today", "command": "python -m mha.bench"}, [])
    command._write_csv(ours, {"torch": "2", "date": "today", "command": "python -m mha.bench"}, [])  # replaced


def test_the_gpu_recording_is_one_prepared_command_outside_make_test():
    from mha.bench import GPU_COMMAND

    script = (ROOT / "scripts" / "record_gpu.sh").read_text()
    arguments = GPU_COMMAND.removeprefix("python -m mha.bench ")
    assert arguments in script and "timeout" in script
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-record:" in makefile and "scripts/record_gpu.sh" in makefile
    test_targets = re.search(r"^test: (.*)$", makefile, flags=re.MULTILINE).group(1).split()
    assert "gpu-record" not in test_targets


@pytest.mark.slow
def test_lesson_06_reads_the_same_without_a_cpp_compiler_and_without_cpu_features(tmp_path):
    # A learner's machine may have no C++ compiler (torch.compile cannot run) or an old CPU: strict nbval must pass.
    bin_dir = tmp_path / "bin"  # the commands on PATH, less every C and C++ compiler
    bin_dir.mkdir()
    compilers = re.compile(r"^(cc|c\+\+|gcc(-\d+)?|g\+\+(-\d+)?|clang(\+\+)?(-\d+)?|.*-linux-gnu-.*)$")
    for folder in os.environ["PATH"].split(os.pathsep):
        for entry in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if not compilers.match(entry.name) and not (bin_dir / entry.name).exists():
                (bin_dir / entry.name).symlink_to(entry)
    nowhere = str(tmp_path / "no-compiler")
    env = dict(os.environ, PATH=str(bin_dir), CC=nowhere, CXX=nowhere, ATEN_CPU_CAPABILITY="default")
    probe = "import torch; torch.compile(lambda x: x.sin() + 1)(torch.ones(3))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0, "torch.compile still works: this test would not test anything"
    notebook = ROOT / "notebooks" / "06_timing.ipynb"
    args = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg")]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(notebook)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:]


@pytest.mark.slow
def test_lesson_06_shows_a_gpu_recording_once_one_is_committed(tmp_path, capsys):
    # The lesson's GPU section runs only when a 06_gpu_*.json exists: run it on a file of the GPU suite's logic
    # (recorded on this CPU, marked as stopped early), so that the first real recording is known to display.
    import matplotlib

    matplotlib.use("Agg")
    out = tmp_path / "06_gpu_test.json"
    argv = ["--suite", "gpu", "--quick", "--no-compile", "--no-progress", "--only", "table,seq", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    payload["settings"].update(complete=False, experiments_done=["table", "seq"])
    out.write_text(json.dumps(payload))
    cells = [
        "".join(c["source"])
        for c in json.loads((ROOT / "notebooks" / "06_timing.ipynb").read_text())["cells"]
        if c["cell_type"] == "code"
    ]
    setup = next(c for c in cells if c.startswith("from pathlib import Path"))
    shown = next(c for c in cells if '"06_gpu*.json"' in c)
    scope = {}
    exec(setup.replace("bench.prepare(DEVICE", "bench.prepare('cpu'"), scope)  # noqa: S102
    scope["RESULTS"] = tmp_path
    capsys.readouterr()
    exec(shown, scope)  # noqa: S102
    printed = capsys.readouterr().out
    assert "recorded on CPU" in printed and "table: batch 2 · seq 32 · d_model 256 · heads 2" in printed
    assert "stopped early: only ['table', 'seq'] finished" in printed
    assert "core/flash: reaches" in printed or "memory the fused core saves" in printed


def test_lesson_06s_pictures_tell_implementations_apart_with_any_colour_vision():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from mha.bench import plots
    from mha.bench.results import load
    from mha.plots import LINE_COLOURS

    okabe_ito = {c.lower() for c in LINE_COLOURS}
    _, records = load(Path(__file__).resolve().parents[1] / "notebooks" / "results" / "06_cpu.json")
    for draw, experiment in ((plots.time_vs_seq, "seq"), (plots.time_vs_heads, "heads")):
        ax = draw([r for r in records if r.experiment == experiment])
        lines = [ln for ln in ax.lines if ln.get_marker() not in ("None", None, "")]  # the guides have no marker
        assert len(lines) >= 2 and {to_hex(ln.get_color()) for ln in lines} <= okabe_ito
        styles = {(to_hex(ln.get_color()), ln.get_marker(), ln.get_linestyle()) for ln in lines}
        assert len(styles) == len(lines), "each implementation differs in colour, marker and dash"
    ax = plots.share_of_peak([r for r in records if r.experiment == "table" and not r.causal])
    bars = {(to_hex(p.get_facecolor()), p.get_hatch()) for p in ax.patches}
    assert {c for c, _ in bars} <= okabe_ito and len({h for _, h in bars}) == len(bars), "modes by colour and hatch"
    plt.close("all")
