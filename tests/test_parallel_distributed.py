"""Real processes (gloo on 127.0.0.1): both parallel layers, forward and backward, equal to one process.

Every case runs in one launch of 4 processes (starting PyTorch is most of the time); every launch is bounded in
time and cleans up after itself (see test_parallel_launch.py).
"""

import json
import os
import subprocess
import sys

import parallel_workers as workers
import pytest

from mha.parallel.experiments import TOLERANCE, machine_load, summarise_check
from mha.parallel.jobs import Problem, on_rank, single_process
from mha.parallel.launch import WorkerFailed, run

pytestmark = pytest.mark.slow

# every rank builds a `mha.MultiHeadAttention` (grouped-query where kv_heads < heads) and splits it with `from_module`
CASES = {
    "plain": (Problem(batch=2, seq=5, d_model=32, heads=8, causal=True), (1, 2, 4)),
    "grouped, K/V heads divided": (Problem(batch=2, seq=5, d_model=32, heads=8, kv_heads=4, causal=True), (1, 2, 4)),
    "grouped, K/V heads replicated": (Problem(batch=2, seq=5, d_model=32, heads=8, kv_heads=2), (2, 4)),
    "multi-query, K/V head replicated": (Problem(batch=2, seq=5, d_model=32, heads=8, kv_heads=1), (2, 4)),
}


@pytest.fixture(scope="module")
def checked():
    results = run(workers.every_case_on_rank, 4, (CASES,), timeout=240)
    out = {}
    for name, (problem, worlds) in CASES.items():
        reference = single_process(problem)
        out[name] = []
        for world in worlds:
            out[name].append(summarise_check(problem, [r[name, world] for r in results[:world]], reference))
        if 2 in worlds:  # the other pair, ranks 2-3, split the same layer on its own
            other = summarise_check(problem, [r[name, 2] for r in results[2:]], reference)
            out[name].append({**other, "world": "2, ranks 2-3"})
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_gradients_equal_one_process(checked, case):
    for summary in checked[case]:
        diffs = summary["differences"]
        assert {"output", "input_grad", "weight_grads"} <= set(diffs)
        for key, value in diffs.items():
            assert value <= TOLERANCE, f"world {summary['world']}: {key} differs by {value:.2g}"


def test_parallelize_module_runs_where_column_sharding_can(checked):
    for name, (problem, _) in CASES.items():
        for summary in checked[name]:
            world = int(str(summary["world"])[0])
            assert ("tp_output" in summary["differences"]) == (problem.kv % world == 0), (name, world)
    by_world = {s["world"]: s for s in checked["grouped, K/V heads replicated"]}
    assert by_world[4]["kv_heads"] == [[0], [0], [1], [1]] and by_world[2]["kv_heads"] == [[0], [1]]
    assert {s["world"]: s for s in checked["multi-query, K/V head replicated"]}[4]["kv_heads"] == [[0]] * 4


def test_each_rank_computes_a_world_th_of_the_flops(checked):
    flops = {s["world"]: s["flops_per_rank"] for s in checked["plain"]}
    assert flops[2] == [flops[1][0] // 2] * 2
    assert flops[4] == [flops[1][0] // 4] * 4


def test_bytes_written_match_the_ring_formula_plus_a_fixed_header(checked):
    headers = set()
    for summary in checked["plain"]:
        if summary["world"] == 1:
            continue
        one, formula = summary["one_allreduce"], summary["formula_bytes"]
        assert one["bytes"] == formula + one["writes"] * summary["header_bytes"]
        headers.add(summary["header_bytes"])
        written = summary["written"]
        for key in ("ours forward", "ours backward", "tp forward", "tp backward", "tp_per_projection forward"):
            assert written[key]["allreduces"] == 1 and written[key]["as_many_bytes"], key
            assert written[key]["same_on_every_rank"], key
        # the plan alone turns the input into a DTensor in each of the three projections: three all-reduces back
        assert written["tp_per_projection backward"]["allreduces"] == 3
    assert len(headers) == 1 and headers.pop() > 0


def test_a_failing_rank_reports_its_error():
    with pytest.raises(WorkerFailed, match="heads=8 cannot be divided evenly among world=3 ranks"):
        run(on_rank, 3, (Problem(),), timeout=120)


def test_the_command_spawns_its_processes():
    out = subprocess.run(
        [sys.executable, "-m", "mha.parallel", "check", "--world", "2", "4", "--kv-heads", "1", "--device", "auto"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "gloo on CPU instead" in out.stdout  # no GPU here: the command says so
    assert (
        "8 heads, 1 K/V heads" in out.stdout and "K/V heads: rank 0: 0, rank 1: 0, rank 2: 0, rank 3: 0" in out.stdout
    )
    assert "every rank equal to one process: True" in out.stdout


def test_the_command_runs_under_torchrun():
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    out = subprocess.run(
        [*torchrun, "-m", "mha.parallel", "check", "--kv-heads", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, _why(out.stderr)
    assert "started by torchrun" in out.stdout
    assert "K/V heads: rank 0: 0, rank 1: 1" in out.stdout  # a grouped-query layer, its 2 K/V heads divided
    assert "every rank equal to one process: True" in out.stdout


def _why(stderr: str) -> str:
    """torchrun's report ends with its own traceback; what a rank said (an abort, an error) comes before it."""
    said = [line for line in stderr.splitlines() if any(w in line for w in ("terminate", "Error", "error:", "what()"))]
    return "\n".join(said[:20]) + "\n...\n" + stderr[-1500:]


def test_a_rank_torchrun_started_leaves_without_finalizing_python_once_its_output_is_out(tmp_path):
    # a rank that finalizes while gloo's threads still release tensors aborts (see `leave`): a torchrun rank skips
    # finalization (an atexit handler never runs) but not its output, even when stdout is a pipe (buffered)
    script = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('finalized'))\n"
        "sys.argv = ['mha.parallel', 'model', '--d-model', '1024', '--seq', '256']\n"
        "runpy.run_module('mha.parallel', run_name='__main__')\n"
    )
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env = {**buffered, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    ranked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert ranked.returncode == 0, ranked.stderr
    assert "1024" in ranked.stdout and "finalized" not in ranked.stdout
    alone = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=alone, timeout=120)
    assert plain.returncode == 0 and plain.stdout.rstrip().endswith("finalized")  # outside torchrun: as usual
    assert plain.stdout.replace("finalized", "").rstrip() == ranked.stdout.rstrip()


def test_measure_writes_bytes_and_times_with_provenance(tmp_path):
    path = tmp_path / "m.json"
    out = subprocess.run(
        [sys.executable, "-m", "mha.parallel", "measure", "--quick", "--world", "1", "2", "--json", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(path.read_text())
    meta = data["provenance"]
    assert meta["command"].startswith("python -m mha.parallel measure --quick")
    assert meta["cpus"] >= 1 and len(meta["load_average_at_start"]) == len(meta["load_average_at_end"]) == 3
    assert machine_load(data)["verdict"] in out.stdout  # printed beside the times, as the lesson prints it
    one, two = data["worlds"]
    assert one["world"] == 1 and one["layer"]["bytes"] == 0
    for row in two["allreduce"]:
        assert row["bytes"] == row["formula_bytes"] + row["writes"] * row["header_bytes"]
    assert two["layer"]["flops_per_rank"] * 2 == one["layer"]["flops_per_rank"]
