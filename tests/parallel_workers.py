"""Functions the launcher tests run in other processes (they must live in an importable module)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def rank_and_sum(offset):
    t = torch.tensor([float(dist.get_rank() + offset)])
    dist.all_reduce(t)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": t.item(), "pid": os.getpid()}


def record_pid_then(folder, behaviour):
    """Write this process's pid (and a sleeping grandchild's) into `folder`, then behave: fail on rank 1, or hang."""
    folder, rank = Path(folder), dist.get_rank()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (folder / f"rank{rank}.pids").write_text(f"{os.getpid()} {child.pid}")
    dist.barrier()  # every rank has written its pids before anything goes wrong
    if behaviour == "fail" and rank == 1:
        raise ValueError("rank one refuses on purpose")
    if behaviour == "hang":
        time.sleep(600)
    dist.barrier()  # the other ranks wait here for the failed one, forever
    return rank


def die_without_a_word():
    if dist.get_rank() == 0:
        os._exit(3)
    dist.barrier()
