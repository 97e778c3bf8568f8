"""One rank of a run started by `mha.parallel.launch.run`: `python -m mha.parallel._child SPEC RANK`.

Join the others through the store on 127.0.0.1, run the function, write its result (or the error) into the run's
folder, and destroy the process group whatever happens.
"""

import datetime
import importlib
import os
import pickle
import sys
import time
import traceback
from pathlib import Path


def main(spec_path: str, rank: int) -> int:
    spec = pickle.loads(Path(spec_path).read_bytes())
    sys.path[:] = spec["sys_path"]
    folder = Path(spec["folder"])

    import torch
    import torch.distributed as dist

    try:
        torch.set_num_threads(spec["threads"])
        timeout = datetime.timedelta(seconds=spec["timeout"])
        store = dist.TCPStore("127.0.0.1", spec["port"], None, False, timeout)
        options = {}
        if spec["backend"] == "nccl":
            torch.cuda.set_device(rank)
            options["device_id"] = torch.device("cuda", rank)
        dist.init_process_group(
            spec["backend"], store=store, rank=rank, world_size=spec["world"], timeout=timeout, **options
        )
        module, name = spec["target"].split(":")
        function = importlib.import_module(module)
        for part in name.split("."):
            function = getattr(function, part)
        result = function(*spec["args"])
        tmp = folder / f".rank{rank}.pt"
        torch.save(result, tmp)
        os.replace(tmp, folder / f"rank{rank}.pt")
        return 0
    except BaseException:
        # first line: when it failed, so that the launcher can tell the first failure from its consequences
        tmp = folder / f".rank{rank}.err"
        tmp.write_text(f"{time.time()!r}\n" + traceback.format_exc(limit=-8))
        os.replace(tmp, folder / f"rank{rank}.err")  # whole or not at all: the launcher may read it at once
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
