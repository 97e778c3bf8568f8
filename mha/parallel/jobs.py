"""What each rank runs, and how the parent compares it with one process.

`on_rank(problem, device)` runs on every rank (under `launch.run` or `torchrun`): our head-parallel layer and the
same layer parallelised by `parallelize_module`, forward and backward, with the bytes each rank wrote to its
sockets. `single_process(problem)` computes the reference in one process, and `compare` checks every rank's output
and gradients against the matching slices of it.

Bytes are read from `/proc/self/io` (Linux): `wchar` counts the bytes this process passed to write calls. Gloo
sends over TCP with `writev`, so around a collective `wchar` grows by exactly what the rank sent: the payload and a
small header per message (`syscw` counts the write calls). Nothing else in the process writes in that window.
"""

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from .._validate import check_int, head_size
from ..multihead import MultiHeadAttention
from .layer import HeadParallelAttention
from .shard import head_split, module_from_weights


@dataclass(frozen=True)
class Problem:
    """One layer and one input, made the same on every rank from a seed.

    Args:
        batch, seq, d_model, heads: sizes of the input (batch, seq, d_model) and the layer.
        kv_heads: K/V heads (default: heads).
        causal: causal self-attention.
        seed: seeds the weights, the input and the target of the loss.
    """

    batch: int = 2
    seq: int = 6
    d_model: int = 32
    heads: int = 8
    kv_heads: int | None = None
    causal: bool = False
    seed: int = 0

    def __post_init__(self):  # checked where it enters: before any process starts
        for name in ("batch", "seq", "d_model", "heads"):
            check_int(name, getattr(self, name))
        if self.kv_heads is not None:
            check_int("kv_heads", self.kv_heads)
        check_int("seed", self.seed, minimum=0)
        head_size(self.d_model, self.heads)
        head_split(self.heads, 1, self.kv_heads)

    @property
    def kv(self) -> int:
        return self.heads if self.kv_heads is None else self.kv_heads


def make(problem: Problem) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The layer's weights (a dict of `KEYS`), the input x and the target of the loss, from the seed."""
    g = torch.Generator().manual_seed(problem.seed)
    d, d_head = problem.d_model, problem.d_model // problem.heads
    kv_features = problem.kv * d_head

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    weights = {
        "W_Q": randn(d, d, scale=d**-0.5), "b_Q": randn(d, scale=0.1),
        "W_K": randn(kv_features, d, scale=d**-0.5), "b_K": randn(kv_features, scale=0.1),
        "W_V": randn(kv_features, d, scale=d**-0.5), "b_V": randn(kv_features, scale=0.1),
        "W_O": randn(d, d, scale=d**-0.5), "b_O": randn(d, scale=0.1),
    }  # fmt: skip
    x = randn(problem.batch, problem.seq, d)
    target = randn(problem.batch, problem.seq, d)
    return weights, x, target


def single_process(problem: Problem) -> dict:
    """The reference: `mha.MultiHeadAttention` in one process, forward and backward (loss = Σ output · target).

    Grouped-query weights run through the core's own grouped-query attention (`kv_heads`, lesson 07), so the
    gradient of a K/V head is the sum over the query heads that read it, computed without any split.

    Returns:
        {"output", "input_grad", "grads": {key: gradient of the whole weight}}.
    """
    from torch.func import functional_call

    weights, x, target = make(problem)
    leaves = {k: v.clone().requires_grad_() for k, v in weights.items()}
    module = MultiHeadAttention(problem.d_model, problem.heads, kv_heads=problem.kv)
    params = {
        "in_proj.weight": torch.cat([leaves["W_Q"], leaves["W_K"], leaves["W_V"]]),
        "in_proj.bias": torch.cat([leaves["b_Q"], leaves["b_K"], leaves["b_V"]]),
        "out_proj.weight": leaves["W_O"],
        "out_proj.bias": leaves["b_O"],
    }
    x = x.clone().requires_grad_()
    out, _ = functional_call(module, params, (x,), {"causal": problem.causal})
    (out * target).sum().backward()
    return {"output": out.detach(), "input_grad": x.grad, "grads": {k: v.grad for k, v in leaves.items()}}


def socket_bytes() -> tuple[int, int] | None:
    """(bytes written, write calls) of this process so far, from /proc/self/io; None where that file is missing.

    Meaningful for gloo, which sends through sockets; NCCL moves data over NVLink or the network card without
    write calls, so under NCCL this returns None.
    """
    if dist.is_initialized() and dist.get_backend() != "gloo":
        return None
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(": ") for line in f.read().splitlines())
        return int(fields["wchar"]), int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return None


def _written(before, after) -> dict | None:
    if before is None or after is None:
        return None
    return {"bytes": after[0] - before[0], "writes": after[1] - before[1]}


def on_rank(problem: Problem, device: str = "cpu", tp_api: bool = True, mesh=None) -> dict:
    """Run the head-parallel layer on this rank, forward and backward, and report what a comparison needs.

    The layer is a `mha.MultiHeadAttention` (grouped-query when problem.kv_heads < heads) made from the seed's
    weights, and split as an existing layer is: `HeadParallelAttention.from_module`, and for `parallelize_module`
    `SplitQKVAttention.from_module`.

    Args:
        problem: the layer and input (the same on every rank).
        device: "cpu" or "cuda" (this rank's GPU).
        tp_api: also run the same layer parallelised with `parallelize_module`.
        mesh: a one-dimensional `DeviceMesh` of the ranks that share the layer (default: every rank). Without
            torch.distributed initialised, the one process is rank 0 of 1 (and `tp_api` is skipped).

    Returns:
        a dict of plain values and tensors (on the CPU): rank, world, backend, output, input gradient, this rank's
        weight slices' gradients (a dict of `KEYS`), the bytes it wrote for one all-reduce of the output's size
        alone, in the forward and in the backward pass; and the same for the `parallelize_module` layer under "tp"
        (input prepared once) and "tp_per_projection" (plan alone).
    """
    distributed = dist.is_initialized()
    group = mesh.get_group() if mesh is not None else None
    rank, world = (dist.get_rank(group), dist.get_world_size(group)) if distributed else (0, 1)

    def barrier():
        if distributed:
            dist.barrier(group=group)

    dev = torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    weights, x, target = make(problem)
    module = module_from_weights(weights, problem.heads)  # the whole layer, as a user would hold it
    layer = HeadParallelAttention.from_module(module, world, rank, group).to(dev)
    x, target = x.to(dev).requires_grad_(), target.to(dev)

    one = None
    if distributed:
        barrier()
        before = socket_bytes()
        dist.all_reduce(torch.zeros(problem.batch, problem.seq, problem.d_model, device=dev), group=group)
        one = _written(before, socket_bytes())  # one all-reduce of the output's size, for reference
    barrier()
    before = socket_bytes()
    out, _ = layer(x, causal=problem.causal)
    middle = socket_bytes()
    (out * target).sum().backward()
    after = socket_bytes()
    result = {
        "rank": rank,
        "world": world,
        "backend": dist.get_backend(group) if distributed else "one process",
        "heads": list(layer.split.heads_of(rank)),
        "kv_heads": list(layer.split.kv_heads_of(rank)),
        "output": out.detach().cpu(),
        "input_grad": x.grad.cpu(),
        "grads": {k: (v.cpu() if v is not None else None) for k, v in layer.shard_weights(grad=True).items()},
        "one_allreduce_written": one,
        "forward_written": _written(before, middle),
        "backward_written": _written(middle, after),
    }
    if tp_api and distributed:
        result["tp"] = _tp_on_rank(problem, module, dev, True, mesh, barrier)
        result["tp_per_projection"] = _tp_on_rank(problem, module, dev, False, mesh, barrier)
    return result


def lesson_on_rank(plain: Problem, grouped: Problem) -> dict:
    """Lesson 08's runs in one launch of 4 processes (each process starts PyTorch once, for all of them).

    "4": `plain` over all 4 ranks. "2": `plain` over 2 ranks, on a 2 × 2 mesh: ranks 0-1 and ranks 2-3 each split
    the layer in two (two copies side by side, as data parallelism would place them). "grouped": `grouped` over all 4.
    """
    from torch.distributed.device_mesh import init_device_mesh

    whole = init_device_mesh("cpu", (dist.get_world_size(),))
    pairs = init_device_mesh("cpu", (dist.get_world_size() // 2, 2), mesh_dim_names=("copy", "tp"))
    return {
        "4": on_rank(plain, mesh=whole),
        "2": on_rank(plain, mesh=pairs["tp"]),
        "grouped": on_rank(grouped, mesh=whole, tp_api=False),
    }


def _tp_on_rank(problem: Problem, module, dev: torch.device, input_once: bool, mesh, barrier) -> dict | None:
    """The same layer (`module`, whole) parallelised by PyTorch's `parallelize_module` on a one-dimensional
    `DeviceMesh`."""
    from torch.distributed.device_mesh import init_device_mesh

    from .torch_tp import SplitQKVAttention, parallelize

    mesh = mesh if mesh is not None else init_device_mesh(dev.type, (dist.get_world_size(),))
    if problem.kv % mesh.size():
        return None  # ColwiseParallel cannot shard fewer K/V heads than ranks (see torch_tp.parallelize)
    whole = SplitQKVAttention.from_module(module).to(dev)
    layer = parallelize(whole, mesh, input_once)
    _, x, target = make(problem)
    x, target = x.to(dev).requires_grad_(), target.to(dev)
    barrier()
    before = socket_bytes()
    out = layer(x, causal=problem.causal)
    out = out.clone()  # the all-reduce may still be on its way (an AsyncCollectiveTensor): any op waits for it
    middle = socket_bytes()
    (out * target).sum().backward()
    after = socket_bytes()

    def local(p):
        g = p.grad
        return None if g is None else (g.to_local() if hasattr(g, "to_local") else g).detach().cpu()

    projections = (layer.q_proj, layer.k_proj, layer.v_proj)
    grads = {}
    for proj, (w, b) in zip(projections, (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))):
        grads[w], grads[b] = local(proj.weight), local(proj.bias)
    grads["W_O"], grads["b_O"] = local(layer.out_proj.weight), local(layer.out_proj.bias)
    return {
        "output": out.detach().cpu(),
        "input_grad": x.grad.cpu(),
        "grads": grads,
        "placements": {name: str(p.placements) for name, p in layer.named_parameters() if hasattr(p, "placements")},
        "forward_written": _written(before, middle),
        "backward_written": _written(middle, after),
    }


def _rel_diff(a, b, scale: torch.Tensor) -> float:
    """Largest |a − b|, relative to the largest |value| of the reference tensor `scale` (0 for empty tensors)."""
    if not a.numel():
        return 0.0
    return float((a.double() - b.double()).abs().max() / scale.double().abs().max().clamp_min(1e-30))


def compare(problem: Problem, results: list[dict], reference: dict | None = None) -> dict:
    """How far every rank is from one process: the largest difference of each quantity, over all ranks.

    Differences are relative to the largest value of the quantity in one process (float32 keeps about 7 digits,
    so about 1e-7 is the noise of adding the same numbers in another order).

    Args:
        problem: the layer and input the ranks ran.
        results: what `on_rank` returned, rank by rank.
        reference: `single_process(problem)` (computed when None).

    Returns:
        {"output", "input_grad", "weight_grads"} for our layer and, when they ran, the same keys prefixed "tp_" and
        "tp_per_projection_" for the `parallelize_module` one (input prepared once, or by each projection): each
        the largest relative difference over all ranks. Gradients of a replicated K/V head are summed over the
        ranks holding it before they are compared.
    """
    reference = reference or single_process(problem)
    world = len(results)
    split = head_split(problem.heads, world, problem.kv_heads, problem.d_model // problem.heads)
    summary = {}
    for prefix, key in (("", None), ("tp_", "tp"), ("tp_per_projection_", "tp_per_projection")):
        runs = [r if key is None else r.get(key) for r in results]
        if any(run is None for run in runs):
            continue
        for name in ("output", "input_grad"):
            summary[prefix + name] = max(_rel_diff(run[name], reference[name], reference[name]) for run in runs)
        summary[prefix + "weight_grads"] = _grad_diff(split, [run["grads"] for run in runs], reference["grads"])
    return summary


def _grad_diff(split, grads: list[dict], full: dict) -> float:
    """Largest difference between each rank's gradient slices and the reference's (replicas summed).

    Relative to the largest gradient of any weight: some gradients are zero in exact arithmetic (that of b_K: a
    bias added to every key shifts all of a query's scores alike, and the softmax ignores it), so their own
    scale would be float32's noise.
    """
    worst = 0.0
    d = split.d_head
    scale = torch.stack([g.abs().max() for g in full.values() if g is not None]).max()
    for rank, mine in enumerate(grads):
        rows = split.rows(rank)
        for key, part in (("W_Q", rows), ("b_Q", rows), ("W_O", (slice(None), rows)), ("b_O", slice(None))):
            if mine[key] is not None:
                worst = max(worst, _rel_diff(mine[key], full[key][part], scale))
    for key in ("W_K", "b_K", "W_V", "b_V"):
        if grads[0][key] is None:
            continue
        for kv_head in range(split.kv_heads):
            total = 0
            for rank in split.holders(kv_head):
                local = kv_head - split.kv_heads_of(rank).start
                total = total + grads[rank][key][local * d : (local + 1) * d]
            worst = max(worst, _rel_diff(total, full[key][kv_head * d : (kv_head + 1) * d], scale))
    return worst


# --- measurements: the all-reduce's bytes and times, the layer's times -------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """What `measure_on_rank` measures.

    Args:
        numbers: sizes of the all-reduces, in float32 numbers.
        repeats: all-reduces per timed batch.
        rounds: timed batches per size (the median is kept).
        layer: the layer timed whole, as its compute alone, and as its all-reduce alone.
        layer_repeats: forward passes per timed batch.
        lo_rounds: rounds of reading the loopback interface's counters (rank 0; 0 to skip).
    """

    numbers: tuple = (256, 4096, 65536, 262144, 1048576)
    repeats: int = 10
    rounds: int = 7
    layer: Problem = Problem(batch=4, seq=256, d_model=512, heads=8)
    layer_repeats: int = 5
    lo_rounds: int = 5


def loopback_counters() -> tuple[int, int] | None:
    """(bytes, packets) received so far by the loopback interface, from /proc/net/dev; None where missing.

    Every process of the machine using 127.0.0.1 adds to them, and they count TCP/IP headers too.
    """
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, fields = line.partition(":")
                if name.strip().startswith("lo"):
                    values = fields.split()
                    return int(values[0]), int(values[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _timed_batches(fn, repeats: int, rounds: int) -> float:
    """Median over `rounds` of the time per call of `repeats` calls in a row; the ranks start each round together."""
    return _in_turns({"fn": fn}, repeats, rounds)["fn"]


def _in_turns(fns: dict, repeats: int, rounds: int) -> dict:
    """Time several functions in turns (A, B, C, then B, C, A, ...), so that a busy spell of the machine hits all
    alike; per function, the median over rounds of the time per call of `repeats` calls in a row. The ranks start
    every batch together (a barrier)."""
    names = list(fns)
    for name in names:
        fns[name]()  # warm up
    times = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            dist.barrier()
            start = time.perf_counter()
            for _ in range(repeats):
                fns[name]()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def measure_on_rank(sweep: Sweep) -> dict:
    """Time and count the bytes of all-reduces of several sizes, and time the layer, on this rank.

    Returns:
        {"rank", "world", "allreduce": [{"numbers", "seconds", "bytes", "writes"}, ...], "lo": [...] (rank 0),
        "layer": {"forward_s", "compute_s", "allreduce_s", "flops", "bytes"}}; bytes per all-reduce, from
        /proc/self/io.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    records = []
    for n in sweep.numbers if world > 1 else ():  # one rank has nothing to send
        x = torch.ones(n)
        for _ in range(3):  # warm up: connections, buffers
            dist.all_reduce(x)
        dist.barrier()
        before = socket_bytes()
        for _ in range(sweep.repeats):
            dist.all_reduce(x)
        after = socket_bytes()
        written = _written(before, after)
        seconds = _timed_batches(lambda x=x: dist.all_reduce(x), sweep.repeats, sweep.rounds)
        records.append({
            "numbers": n,
            "seconds": seconds,
            "bytes": written and written["bytes"] / sweep.repeats,
            "writes": written and written["writes"] / sweep.repeats,
        })  # fmt: skip
    lo = _loopback(sweep) if sweep.lo_rounds and world > 1 else []
    return {"rank": rank, "world": world, "allreduce": records, "lo": lo, "layer": _time_layer(sweep)}


def _loopback(sweep: Sweep) -> list[dict]:
    """Rank 0 reads the loopback counters around a batch of all-reduces and around the same barriers alone."""
    rank, out = dist.get_rank(), []
    for n in sweep.numbers:
        x = torch.ones(n)
        best = {}
        for what, count in (("barriers", 0), ("allreduces", sweep.repeats)):
            deltas = []
            for _ in range(sweep.lo_rounds):
                dist.barrier()
                start = loopback_counters() if rank == 0 else None
                dist.barrier()
                for _ in range(count):
                    dist.all_reduce(x)
                dist.barrier()
                end = loopback_counters() if rank == 0 else None
                if start and end:
                    deltas.append((end[0] - start[0], end[1] - start[1]))
            # other processes of the machine only ever add bytes: the smallest round is the cleanest
            best[what] = min(deltas) if deltas else None
        if rank == 0 and best["allreduces"] and best["barriers"]:
            out.append({
                "numbers": n,
                "bytes": (best["allreduces"][0] - best["barriers"][0]) / sweep.repeats,
                "packets": (best["allreduces"][1] - best["barriers"][1]) / sweep.repeats,
            })  # fmt: skip
    return out


def _time_layer(sweep: Sweep) -> dict:
    """This rank's forward time: whole (compute + all-reduce), its compute alone, the all-reduce alone, in turns."""
    from torch.utils.flop_counter import FlopCounterMode

    problem = sweep.layer
    rank, world = dist.get_rank(), dist.get_world_size()
    weights, x, _ = make(problem)
    layer = HeadParallelAttention.from_weights(weights, problem.heads, world, rank, problem.kv_heads)
    with torch.no_grad():
        partial, _ = layer.partial(x)
        with FlopCounterMode(display=False) as counter:
            layer.partial(x)
        before = socket_bytes()
        layer(x)
        written = _written(before, socket_bytes())
        fns = {"forward_s": lambda: layer(x), "compute_s": lambda: layer.partial(x),
               "allreduce_s": lambda: dist.all_reduce(partial.clone())}  # fmt: skip
        stats = _in_turns(fns, sweep.layer_repeats, sweep.rounds)
    return {**stats, "flops": counter.get_total_flops(), "bytes": written and written["bytes"],
            "problem": asdict(problem)}  # fmt: skip


def count_flops(problem: Problem, world: int, rank: int) -> int:
    """FLOPs of rank `rank`'s forward pass (its partial output), counted by PyTorch's `FlopCounterMode`.

    Run in the calling process: the same computation the rank runs, on the same shapes.
    """
    from torch.utils.flop_counter import FlopCounterMode

    weights, x, _ = make(problem)
    layer = HeadParallelAttention.from_weights(weights, problem.heads, world, rank, problem.kv_heads)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer.partial(x, causal=problem.causal)
    return counter.get_total_flops()


def header_bytes(measured: float, formula: float, writes: float) -> float:
    """Bytes per write call beyond the payload: (measured − formula) / writes (NaN without writes)."""
    return (measured - formula) / writes if writes else math.nan
