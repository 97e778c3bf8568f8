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


def abort_after_returning():
    """Return a result, then abort at exit, as gloo's teardown sometimes does ("terminate called without ...")."""
    import atexit

    atexit.register(os.abort)
    return dist.get_rank()


def every_case_on_rank(cases):
    """Every case of test_parallel_distributed in one launch of 4 processes (each starts PyTorch once for all).

    `cases` is {name: (problem, worlds)}. A world of 4 uses every rank; a world of 2 runs on a 2 × 2 mesh, ranks 0-1
    and ranks 2-3 each splitting the layer in two; a world of 1 on a 4 × 1 mesh, every rank a group of its own.
    Returns {(name, world): what `jobs.on_rank` returned}.
    """
    from torch.distributed.device_mesh import init_device_mesh

    from mha.parallel.jobs import on_rank

    meshes = {
        4: init_device_mesh("cpu", (4,)),
        2: init_device_mesh("cpu", (2, 2), mesh_dim_names=("copy", "tp"))["tp"],
        1: init_device_mesh("cpu", (4, 1), mesh_dim_names=("copy", "tp"))["tp"],
    }
    return {
        (name, world): on_rank(problem, mesh=meshes[world])
        for name, (problem, worlds) in cases.items()
        for world in worlds
    }
