"""The launcher: results in rank order, and no process, grandchild or port left behind, whatever happens."""

import socket
import time
from pathlib import Path

import parallel_workers as workers
import pytest

from mha.parallel import launch
from mha.parallel.launch import LaunchTimeout, WorkerFailed, choose_backend, run, target_name

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Running or sleeping: a zombie waiting to be reaped by init counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def pids_in(folder: Path) -> list[int]:
    return [int(p) for f in sorted(folder.glob("rank*.pids")) for p in f.read_text().split()]


def gone_soon(pids, seconds=10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_results_come_back_in_rank_order_and_the_port_is_freed(monkeypatch):
    ports = []
    real_store = launch.dist.TCPStore

    def spy(*args, **kwargs):
        store = real_store(*args, **kwargs)
        ports.append(store.port)
        return store

    monkeypatch.setattr(launch.dist, "TCPStore", spy)
    results = run(workers.rank_and_sum, 2, (10,), timeout=120)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 21.0 for r in results)
    assert gone_soon([r["pid"] for r in results])
    with socket.socket() as s:  # nothing listens on the store's port any more
        assert s.connect_ex(("127.0.0.1", ports[0])) != 0


def test_a_failing_rank_is_named_and_every_process_and_grandchild_is_killed(tmp_path):
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match="rank one refuses on purpose") as info:
        run(workers.record_pid_then, 3, (str(tmp_path), "fail"), timeout=120)
    assert info.value.rank == 1
    assert time.monotonic() - start < 110  # it did not wait for the timeout
    pids = pids_in(tmp_path)
    assert len(pids) == 6  # 3 ranks and their 3 sleeping children
    assert gone_soon(pids)


def test_a_hanging_run_times_out_and_is_killed(tmp_path):
    start = time.monotonic()
    with pytest.raises(LaunchTimeout, match="took more than"):
        run(workers.record_pid_then, 2, (str(tmp_path), "hang"), timeout=40)
    assert time.monotonic() - start < 60
    assert gone_soon(pids_in(tmp_path))


def test_a_rank_that_dies_without_an_exception_is_reported():
    with pytest.raises(WorkerFailed, match="rank 0 exited with status 3"):
        run(workers.die_without_a_word, 2, timeout=120)


def test_a_rank_that_dies_after_saving_its_result_does_not_fail_the_run():
    assert run(workers.abort_after_returning, 2, timeout=120) == [0, 1]


def test_only_importable_functions_can_be_launched():
    assert target_name(workers.rank_and_sum) == "parallel_workers:rank_and_sum"
    with pytest.raises(ValueError, match="top-level function of an importable module"):
        target_name(lambda: 0)

    def local():
        return 0

    with pytest.raises(ValueError, match="top-level function"):
        target_name(local)


@pytest.mark.parametrize(
    "kwargs, words",
    [({"world": 0}, "world must be a positive integer"), ({"world": 2, "timeout": 0}, "timeout must be"),
     ({"world": 2, "backend": "mpi"}, "backend must be")],
)  # fmt: skip
def test_bad_arguments_are_explained(kwargs, words):
    with pytest.raises(ValueError, match=words):
        run(workers.rank_and_sum, args=(0,), **kwargs)


def test_without_enough_gpus_gloo_runs_on_the_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: False)
    backend, device, reason = choose_backend(2)
    assert (backend, device) == ("gloo", "cpu")
    assert "0 GPUs found, 2 needed" in reason
    with pytest.raises(ValueError, match="cannot run 2 processes on CUDA"):
        choose_backend(2, "cuda")
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(launch.torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(launch.dist, "is_nccl_available", lambda: True)
    assert choose_backend(2)[:2] == ("nccl", "cuda")
    assert choose_backend(8)[:2] == ("gloo", "cpu")
    assert choose_backend(2, "cpu")[:2] == ("gloo", "cpu")


def test_loopback_interface_is_a_loopback():
    assert launch.loopback_interface().startswith("lo")
