"""Start a few processes on this machine, run one function in each with torch.distributed ready, collect the results.

    results = run(my_function, world=2, args=(x,), timeout=60)     # [rank 0's return value, rank 1's]

What it promises, because a notebook must never be left with stray processes or a port in use:
- **loopback only**: the processes meet through a store on 127.0.0.1, and gloo is told to use the loopback
  interface; nothing listens on another address.
- **no fixed port**: the store binds port 0 and the system picks a free one, so runs side by side never collide.
- **bounded in time**: each process group gets the timeout, and the whole run is killed when it passes.
- **always cleaned up**: when a rank fails, the others are killed at once (they would wait for it forever); on
  success, failure, timeout or Ctrl-C, every process (and anything it started) is killed and reaped, the store
  closes its port, and the temporary folder is removed. Each rank destroys its process group before it exits.

The function runs in fresh processes: it must be importable (defined in a module, not in a notebook), and its
arguments and return value are pickled. What the processes print goes to log files, not to your screen; a failing
rank's error comes back in the exception.
"""

import datetime
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .._validate import check_positive

LOOPBACK = "127.0.0.1"
NEWLINE = "\n"


class LaunchError(RuntimeError):
    """A launched run that did not complete."""


class WorkerFailed(LaunchError):
    """A rank raised an exception or died; `rank` says which, the message carries its error."""

    def __init__(self, rank: int, message: str):
        super().__init__(message)
        self.rank = rank


class LaunchTimeout(LaunchError):
    """The run took longer than its timeout; every process was killed."""


def loopback_interface() -> str:
    """The name of the loopback network interface ("lo" on Linux, "lo0" on macOS)."""
    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    return next((n for n in names if n.startswith("lo")), "lo")


def choose_backend(world: int, device: str = "auto") -> tuple[str, str, str]:
    """The backend and device for `world` processes, and why.

    Args:
        world: number of processes.
        device: "auto" (NCCL on GPUs when there are at least `world` of them, else gloo on CPU), "cpu" or "cuda".

    Returns:
        (backend, device, reason): ("nccl", "cuda", ...) or ("gloo", "cpu", ...); the reason is a sentence.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cpu":
        return "gloo", "cpu", "gloo on CPU, as asked"
    if gpus >= world and dist.is_nccl_available():
        return "nccl", "cuda", f"NCCL on {world} of the {gpus} GPUs"
    why = f"{gpus} GPU{'s' if gpus != 1 else ''} found, {world} needed (one per process)"
    if gpus >= world:
        why = "this PyTorch has no NCCL"
    if device == "cuda":
        raise ValueError(f"cannot run {world} processes on CUDA: {why}")
    return "gloo", "cpu", f"{why}: gloo on CPU instead"


def check_timeout(timeout) -> float:
    """Seconds a run may take: a finite number above 0 (a timer cannot wait forever)."""
    return check_positive("timeout", timeout, "a number of seconds")


def target_name(function) -> str:
    """ "package.module:function" for an importable function; a clear error for one defined in a notebook."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if module in (None, "__main__") or "<locals>" in name or "<lambda>" in name:
        raise ValueError(
            f"{name or function!r} cannot be run in other processes: it must be a top-level function of an "
            f"importable module (not defined in a notebook, a script's __main__, or inside another function)"
        )
    return f"{module}:{name}"


def run(
    function,
    world: int,
    args: tuple = (),
    *,
    timeout: float = 60.0,
    backend: str = "gloo",
    threads: int = 1,
    progress: bool = False,
) -> list:
    """Run `function(*args)` in `world` new processes, each with torch.distributed initialised; return the results.

    Args:
        function: a top-level function of an importable module; it may use torch.distributed collectives.
        world: number of processes (ranks 0 to world - 1).
        args: arguments passed to `function` on every rank (pickled).
        timeout: seconds for the whole run, from start to the last result (default 60).
        backend: "gloo" (CPU) or "nccl" (one GPU per rank), see `choose_backend`.
        threads: torch threads per process (default 1: the processes share this machine's cores).
        progress: show a progress bar of the ranks that have finished (default False).

    Returns:
        the return values of ranks 0, 1, ..., world - 1, in rank order. Raises `WorkerFailed` when a rank
        raises or dies, `LaunchTimeout` when the time runs out; no process is left running either way.
    """
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise ValueError(f"world must be a positive integer (the number of processes), got {world!r}")
    check_timeout(timeout)
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    target = target_name(function)
    deadline = time.monotonic() + timeout
    procs: list[subprocess.Popen] = []
    store = dist.TCPStore(LOOPBACK, 0, None, True, datetime.timedelta(seconds=timeout), wait_for_workers=False)
    with tempfile.TemporaryDirectory(prefix="mha-parallel-") as folder:
        folder = Path(folder)
        spec = {
            "target": target,
            "args": args,
            "world": world,
            "port": store.port,
            "backend": backend,
            "timeout": timeout,
            "threads": threads,
            "folder": str(folder),
            "sys_path": list(sys.path),
        }
        (folder / "spec.pkl").write_bytes(pickle.dumps(spec))
        env = {
            **os.environ,
            "GLOO_SOCKET_IFNAME": loopback_interface(),
            "OMP_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            for rank in range(world):
                with open(folder / f"rank{rank}.log", "wb") as log:  # the child keeps its own copy of the file
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "mha.parallel._child", str(folder / "spec.pkl"), str(rank)],
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=env,
                            start_new_session=True,  # its own process group: killing it kills what it started
                        )
                    )
            _wait(procs, folder, deadline, timeout, progress)
            return [_result(folder, rank) for rank in range(world)]
        finally:
            _kill(procs)
            del store  # closes the port


def _wait(procs, folder: Path, deadline: float, timeout: float, progress: bool = False) -> None:
    """Return when every process has exited with 0; raise as soon as one fails or the deadline passes."""
    from tqdm.auto import tqdm

    with tqdm(total=len(procs), desc="ranks finished", unit="rank", disable=not progress) as bar:
        while True:
            # A rank whose result is saved has done its work: if it dies afterwards, in the process group's teardown
            # (gloo can abort there with "terminate called without an active exception"), the run is still whole.
            codes = [0 if (folder / f"rank{r}.pt").exists() else p.poll() for r, p in enumerate(procs)]
            bar.update(sum(code == 0 for code in codes) - bar.n)
            if _check(codes, folder, deadline, timeout):
                return
            time.sleep(0.02)


def _check(codes: list, folder: Path, deadline: float, timeout: float) -> bool:
    """True when every process has exited with 0; raises when one failed or the time is up."""
    failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
    if failed:
        first = _first_failure(folder, codes)
        raise WorkerFailed(first, _failure(folder, first, codes[first]))
    if all(code == 0 for code in codes):
        return True
    if time.monotonic() > deadline:
        waiting = [rank for rank, code in enumerate(codes) if code is None]
        raise LaunchTimeout(
            f"the run took more than {timeout:g} s; ranks {waiting} had not finished and were killed"
            + _tail(folder / f"rank{waiting[0]}.log", "\n  its last output: ")
        )
    return False


# What a rank says when another rank died under it: a consequence, not the cause.
_PEER_FAILURE = ("closed by peer", "reset by peer", "remote worker", "Broken pipe", "Connection refused")


def _first_failure(folder: Path, codes: list) -> int:
    """The rank that failed first. Once one rank fails, the others fail too, waiting for it, and may exit first.

    In order: a rank that raised an error of its own (the earliest, each writes the time first); a rank that died
    without a word (killed, or exited); the rank whose error, about a lost peer, came first.
    """
    errors = {}
    for rank in range(len(codes)):
        try:
            when, _, text = (folder / f"rank{rank}.err").read_text().partition("\n")
            errors[rank] = (float(when), text)
        except (OSError, ValueError):
            pass
    own = [r for r, (_, text) in errors.items() if not any(p in text for p in _PEER_FAILURE)]
    if own:
        return min(own, key=lambda r: errors[r][0])
    silent = [r for r, code in enumerate(codes) if code not in (None, 0) and r not in errors]
    if silent:
        return silent[0]
    return min(errors, key=lambda r: errors[r][0])


def _failure(folder: Path, rank: int, code: int | None) -> str:
    error = folder / f"rank{rank}.err"
    if error.exists():
        return f"rank {rank} failed:\n{error.read_text().partition(NEWLINE)[2].rstrip()}"
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    return f"rank {rank} {how} before returning" + _tail(folder / f"rank{rank}.log", "\n  its last output: ")


def _tail(path: Path, prefix: str, chars: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return prefix + text[-chars:] if text else ""


def _result(folder: Path, rank: int):
    path = folder / f"rank{rank}.pt"
    if not path.exists():
        raise WorkerFailed(rank, f"rank {rank} exited without writing its result")
    return torch.load(path, weights_only=False)


def _kill(procs) -> None:
    """Kill every process group still alive, then reap every process (no zombie is left)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the process and anything it started
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            p.kill()
            p.wait()
