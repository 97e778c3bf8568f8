"""Checks for lesson 08, heads across devices. Use: `from mha.checks import lesson08 as check`.

Cases vary d_model, heads, the number of ranks and which rank (never only rank 0), the dtype (float32 and float64),
and keep every bias nonzero (a bias added twice, or dropped, must show); one case of each is drawn afresh per run.
In the fixed cases no two of the sizes a function sees coincide (d_head, heads held, batch, seq, ...), so that a
function mixing two of them up fails. The ring all-reduce is judged by its messages, not only its results: the
learner's function gets a `send` (`mha.parallel.ring.Wire`) that records who sent which piece to whom, and when.
"""

import math

import torch

from ..heads import merge_heads, split_heads
from ..parallel.cost import allreduce_bytes as reference_bytes
from ..parallel.layer import HeadParallelAttention
from ..parallel.ring import Wire
from ..parallel.shard import head_split
from ..parallel.shard import shard as reference_shard
from . import (
    PRINTED,
    Build,
    Case,
    CheckFailed,
    Exercise,
    builder,
    describe_value,
    items,
    read_tensor,
    register,
    same,
    verify,
    verify_number,
)
from .compare import _passed

LESSON = "08"
DTYPES = (torch.float32, torch.float64)
SHARD_KEYS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _randn(g, *shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _layer(g, d_model: int, dtype) -> dict:
    """A layer's weights as nn.Linear stores them: in_proj (3·d_model, d_model) rows [W_Q; W_K; W_V], biases, W_O."""
    return {
        "in_proj_weight": _randn(g, 3 * d_model, d_model, dtype=dtype, scale=d_model**-0.5),
        "in_proj_bias": _randn(g, 3 * d_model, dtype=dtype),
        "out_proj_weight": _randn(g, d_model, d_model, dtype=dtype, scale=d_model**-0.5),
        "out_proj_bias": _randn(g, d_model, dtype=dtype),
    }


def _weights(layer: dict) -> dict:
    """The same weights as a dict of `mha.parallel.shard.KEYS`."""
    w_q, w_k, w_v = layer["in_proj_weight"].chunk(3)
    b_q, b_k, b_v = layer["in_proj_bias"].chunk(3)
    return {"W_Q": w_q, "b_Q": b_q, "W_K": w_k, "b_K": b_k, "W_V": w_v, "b_V": b_v,
            "W_O": layer["out_proj_weight"], "b_O": layer["out_proj_bias"]}  # fmt: skip


def _split_sizes(g, fixed):
    """Fixed (d_head, heads, world, rank) plus one drawn: world > 1 divides heads, rank anywhere."""
    heads = _pick(g, [4, 6, 8, 12])
    world = _pick(g, [w for w in (2, 3, 4, 6) if heads % w == 0])
    return [*fixed, (_pick(g, [2, 3, 4]), heads, world, int(torch.randint(world, (), generator=g)))]


def _where(d_model, heads, world, rank, dtype) -> str:
    return f"d_model {d_model}, {heads} heads, rank {rank} of world {world}, {_name(dtype)}"


# --- exercise 1: shard_rank ---------------------------------------------------------------------------------------


def _shard_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [(2, 4, 2, 1), (2, 6, 3, 2), (2, 8, 4, 1), (4, 2, 1, 0)]
    cases = []
    for i, (d_head, heads, world, rank) in enumerate(_split_sizes(g, fixed)):
        dtype = DTYPES[i % 2]
        layer = _layer(g, d_head * heads, dtype)
        args = (layer["in_proj_weight"], layer["in_proj_bias"], layer["out_proj_weight"], heads, world, rank)
        what = f"shard_rank for {_where(d_head * heads, heads, world, rank, dtype)}"
        cases.append(Case(args, what=what, drawn=i >= len(fixed)))
    return cases


def _shard_mistakes(w: dict, heads: int, world: int, rank: int) -> dict:
    """For each key, the classic wrong slices with their hints."""
    d_model = w["W_Q"].shape[1]
    d_head, per_rank = d_model // heads, heads // world
    rows = slice(rank * per_rank * d_head, (rank + 1) * per_rank * d_head)
    one_head = slice(rank * d_head, (rank + 1) * d_head)
    every_wth = torch.cat([torch.arange(h * d_head, (h + 1) * d_head) for h in range(rank, heads, world)])
    fused_w = torch.cat([w["W_Q"], w["W_K"], w["W_V"]]).chunk(world)[rank]  # a block of [W_Q; W_K; W_V]
    fused_b = torch.cat([w["b_Q"], w["b_K"], w["b_V"]]).chunk(world)[rank]
    mistakes = {}
    for i, (wk, bk) in enumerate((("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))):
        for key, fused in ((wk, fused_w), (bk, fused_b)):
            mistakes[key] = [
                (
                    fused.chunk(3)[i] if fused.shape[0] % 3 == 0 else None,
                    "you cut the fused in_proj [W_Q; W_K; W_V] into world blocks before taking it apart: a block then "
                    "mixes queries, keys and values; take W_Q, W_K, W_V apart first (chunk(3)), then each one's rows",
                ),
                (
                    w[key][one_head],
                    "you took one head's rows; a rank holds heads/world heads, heads/world · d_head rows",
                ),
                (
                    w[key][every_wth],
                    "you gave rank r every world-th head (r, r + world, ...); it holds consecutive heads, "
                    "r·heads/world to (r+1)·heads/world − 1",
                ),
                (w[key], "you kept the whole matrix; a rank holds only its heads' rows"),
            ]
    w_o = w["W_O"]
    mistakes["W_O"] = [
        (w_o[rows, :], "you took rows of W_O; a rank's heads are read by a block of its columns, W_O[:, rows]"),
        (
            w_o[:, rows].T,
            "W_O's block is transposed; keep nn.Linear's layout, (d_model, features): W_O[:, rows] without .T",
        ),
        (w_o[:, one_head], "you took one head's columns of W_O; a rank holds heads/world · d_head of them"),
        (w_o[:, every_wth], "W_O: rank r holds the columns of its consecutive heads, not every world-th head"),
        (w_o, "you kept all of W_O; a rank holds the columns that read its heads"),
    ]
    return mistakes


def _returned_dict(got, keys, what: str) -> dict:
    if not isinstance(got, dict):
        hint = [PRINTED] if got is None else []
        raise CheckFailed(f"returned {describe_value(got)}; return a dict with the keys {list(keys)}", what, hint,
                          "returned")  # fmt: skip
    missing = [k for k in keys if k not in got]
    if missing:
        raise CheckFailed(f"the dict lacks {missing}; return the keys {list(keys)}", what, [], "returned")
    return got


def _shard_judge(case: Case, got, changed) -> None:
    w_in, b_in, w_out, heads, world, rank = case.inputs()
    layer = {"in_proj_weight": w_in, "in_proj_bias": b_in, "out_proj_weight": w_out, "out_proj_bias": w_out[:, 0]}
    weights = _weights(layer)
    got = _returned_dict(got, SHARD_KEYS, case.what)
    expected = reference_shard(weights, heads, world, rank)
    mistakes = _shard_mistakes(weights, heads, world, rank)
    for key in SHARD_KEYS:
        verify(got[key], expected[key], mistakes[key], what=f"{case.what}: {key}", site=key, dtype=w_in.dtype,
               shape_hint="rows" if key != "W_O" else "(d_model, heads/world · d_head)")  # fmt: skip


shard_rank = register(
    Exercise(
        LESSON,
        "shard_rank",
        function="shard_rank",
        signature="shard_rank(in_proj_weight, in_proj_bias, out_proj_weight, heads, world, rank)",
        cases=_shard_cases,
        judge=_shard_judge,
    )
)


# --- exercise 2: local_forward ------------------------------------------------------------------------------------


# (d_head, heads, world, rank, batch, seq): in each, the sizes the function sees (d_head, heads_here, their product,
# d_model, batch, seq) all differ, so that mixing two of them up cannot pass
LOCAL_FIXED = [(3, 8, 4, 1, 1, 5), (2, 12, 4, 3, 5, 4), (4, 6, 2, 0, 2, 5)]


def _local_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    sizes = _split_sizes(g, [])[0]
    drawn = (*sizes, int(torch.randint(1, 3, (), generator=g)), int(torch.randint(3, 6, (), generator=g)))
    cases = []
    for i, (d_head, heads, world, rank, batch, seq) in enumerate([*LOCAL_FIXED, drawn]):
        dtype = DTYPES[(i + 1) % 2]
        d_model = d_head * heads
        r = g if i >= len(LOCAL_FIXED) else torch.Generator().manual_seed(i)  # fixed cases: the same for every seed
        mine = reference_shard(_weights(_layer(r, d_model, dtype)), heads, world, rank)
        x = _randn(r, batch, seq, d_model, dtype=dtype)
        what = (
            f"local_forward on x {tuple(x.shape)} {_name(dtype)}, rank {rank} of {world}, {heads // world} heads "
            f"here of d_head {d_head}"
        )
        cases.append(Case((x, mine, heads // world), what=what, drawn=i >= len(LOCAL_FIXED)))
    return cases


def _local_mistakes(x, mine: dict, heads_here: int) -> list:
    """Classic wrong partial outputs of one rank, with their hints."""
    q, k, v = (x @ mine[w].T + mine[b] for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V")))
    d_head, d_model = q.shape[-1] // heads_here, x.shape[-1]

    def run(split, scale, project=True, bias=False):
        qh, kh, vh = split(q), split(k), split(v)
        weights = (qh @ kh.transpose(-2, -1) / scale).softmax(-1)
        merged = merge_heads(weights @ vh)
        out = merged @ mine["W_O"].T if project else merged
        return out + mine["b_O"] if bias else out

    def good(t):
        return split_heads(t, heads_here)

    def one_head(t):
        return t.unsqueeze(1)  # (batch, 1, seq, features): all the rank's features as one head

    def no_transpose(t):
        return t.reshape(t.shape[0], heads_here, t.shape[1], d_head)

    def swapped(t):
        return split_heads(t, d_head)  # d_head heads of heads_here features each

    return [
        (
            run(good, math.sqrt(d_head), bias=True),
            "you added b_O on this rank: every rank would add it, so after the all-reduce it would count world "
            "times; leave it out of the partial output (it is added once, after the sum)",
        ),
        (
            run(good, math.sqrt(d_head), project=False),
            "that is the rank's heads concatenated; multiply by the rank's block of W_O to get its share of the "
            "(batch, seq, d_model) output",
        ),
        (
            run(one_head, math.sqrt(heads_here * d_head)),  # with one head here, the right answer too
            "you treated all of the rank's features as one head: split them into heads_here heads of d_head "
            "features, each with its own attention",
        ),
        (run(good, math.sqrt(d_model)), "scores scaled by sqrt(d_model); each head's dot products have d_head terms"),
        (run(good, 1.0), "the scores were not scaled: divide by sqrt(d_head)"),
        (run(no_transpose, math.sqrt(d_head)), "heads split with view/reshape and no transpose: transpose(1, 2)"),
        (
            run(swapped, math.sqrt(heads_here)),
            "you split the features into d_head heads of heads_here features; the rank holds heads_here heads of "
            "d_head features each: split_heads(t, heads_here)",
        ),
    ]


def _local_judge(case: Case, got, changed) -> None:
    x, mine, heads_here = case.inputs()
    d_model, d_head = x.shape[-1], mine["W_Q"].shape[0] // heads_here
    world = d_model // (heads_here * d_head)
    weights = {k: v.double() for k, v in mine.items()}
    layer = HeadParallelAttention(d_model, heads_here * world, world, 0).double()  # any rank: same shapes
    layer.load_shard(weights)
    with torch.no_grad():
        expected, _ = layer.partial(x.double())
    verify(got, expected, _local_mistakes(x.double(), weights, heads_here), what=case.what, dtype=x.dtype,
           shape_hint="(batch, seq, d_model): the rank's share of the whole output")  # fmt: skip


local_forward = register(
    Exercise(
        LESSON,
        "local_forward",
        function="local_forward",
        signature="local_forward(x, mine, heads_here)",
        cases=_local_cases,
        judge=_local_judge,
    )
)


# --- exercise 3: all_reduce_by_hand -------------------------------------------------------------------------------


def _reduce_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(2, (2, 3, 8), torch.float32), (4, (1, 5, 16), torch.float64), (3, (2, 2, 6), torch.float32)]
    shapes.append((_pick(g, [2, 3, 4, 6]), (int(torch.randint(1, 3, (), generator=g)), 4, 12), torch.float64))
    cases = []
    for i, (world, shape, dtype) in enumerate(shapes):
        partials = [_randn(g, *shape, dtype=dtype) for _ in range(world)]
        bias = _randn(g, shape[-1], dtype=dtype)
        what = f"all_reduce_by_hand of {world} partial outputs {shape} {_name(dtype)}"
        cases.append(Case((partials, bias), what=what, drawn=i >= 3))
    return cases


def _reduce_judge(case: Case, got, changed) -> None:
    partials, bias = case.inputs()
    world, total = len(partials), sum(p.double() for p in partials)
    verify(
        got,
        total + bias.double(),
        [
            (total / world + bias.double(), "you averaged the partial outputs; an all-reduce here sums them"),
            (total + world * bias.double(), "b_O added once per rank: add it once, after the sum"),
            (total, "b_O is missing: add it once, after the sum"),
            (partials[0].double() + bias.double(), "you kept rank 0's partial output only; sum every rank's"),
            (
                torch.cat([p.double() for p in partials], dim=-1),
                "you concatenated the partial outputs; each already has all d_model features, and the layer's "
                "output is their sum (lesson 03: concatenate-then-project = sum of contributions)",
            ),
        ],
        what=case.what,
        dtype=bias.dtype,
        shape_hint="(batch, seq, d_model), like each partial output",
    )


all_reduce_by_hand = register(
    Exercise(
        LESSON,
        "all_reduce_by_hand",
        function="all_reduce_by_hand",
        signature="all_reduce_by_hand(partials, out_bias)",
        cases=_reduce_cases,
        judge=_reduce_judge,
    )
)


# --- exercise 4: backward_by_ranks -------------------------------------------------------------------------------

G_SUMMED = (
    "the gradient of each partial output is the output's gradient times world: you summed it over the ranks in g's "
    "backward; every rank already holds the whole output and its gradient, so g (all-reduce forward) passes the "
    "gradient back unchanged (identity backward)"
)
F_MISSING = (
    "that is one rank's part of the input's gradient: the input fed every rank's heads, so its gradient is the sum "
    "of every rank's part; f (identity forward) all-reduces it in the backward pass"
)
F_AVERAGED = "you averaged the ranks' parts of the input's gradient; f's backward all-reduce sums them"
SHARED_INPUT = (
    "the ranks' parts add up as they go: the ranks shared one input tensor, whose .grad accumulates over backward "
    "calls; give each rank its own copy, x.detach().clone().requires_grad_(), as separate processes have"
)

# (d_head, heads, world, batch, seq): the sizes the function sees all differ (see LOCAL_FIXED)
BACKWARD_FIXED = [(3, 8, 4, 1, 5), (2, 12, 3, 5, 6), (4, 6, 2, 5, 7)]


def _backward_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    heads = _pick(g, [4, 6, 8, 12])
    world = _pick(g, [w for w in (2, 3, 4, 6) if heads % w == 0])
    drawn = (_pick(g, [2, 3, 4]), heads, world, int(torch.randint(1, 3, (), generator=g)),
             int(torch.randint(3, 6, (), generator=g)))  # fmt: skip
    cases = []
    for i, (d_head, heads, world, batch, seq) in enumerate([*BACKWARD_FIXED, drawn]):
        dtype = DTYPES[i % 2]
        r = g if i >= len(BACKWARD_FIXED) else torch.Generator().manual_seed(10 + i)
        d_model = d_head * heads
        weights = _weights(_layer(r, d_model, dtype))
        shards = [reference_shard(weights, heads, world, rank) for rank in range(world)]
        x = _randn(r, batch, seq, d_model, dtype=dtype)
        grad_output = _randn(r, batch, seq, d_model, dtype=dtype)
        what = f"backward_by_ranks on x {tuple(x.shape)} {_name(dtype)}, {world} ranks of {heads // world} heads"
        cases.append(Case((x, shards, heads // world, grad_output), what=what, drawn=i >= len(BACKWARD_FIXED)))
    return cases


def _input_grad_parts(x, shards, heads_here, grad_output) -> list:
    """Each rank's part of the input's gradient: its own copy of x, its heads, the output's gradient."""
    d_model, world = x.shape[-1], len(shards)
    parts = []
    with torch.enable_grad():
        for mine in shards:
            layer = HeadParallelAttention(d_model, heads_here * world, world, 0).double()  # shapes only: any rank
            layer.load_shard({k: v.double() for k, v in mine.items()})
            x_r = x.double().clone().requires_grad_()
            layer.partial(x_r)[0].backward(grad_output.double())
            parts.append(x_r.grad)
    return parts


def _backward_judge(case: Case, got, changed) -> None:
    x, shards, heads_here, grad_output = case.inputs()
    world, dtype, g = len(shards), x.dtype, grad_output.double()
    grad_partials, parts, grad_x = items(got, 3, what=case.what, names="(grad_partials, grad_x_parts, grad_x)")
    for name, value in (("grad_partials", grad_partials), ("grad_x_parts", parts)):
        if not isinstance(value, list | tuple) or len(value) != world:
            raise CheckFailed(f"{name}: return a list of {world} tensors, one per rank; got {describe_value(value)}",
                              case.what, [], name)  # fmt: skip
    for r, got_r in enumerate(grad_partials):
        verify(got_r, g, [(world * g, G_SUMMED)], what=f"{case.what}: rank {r}'s grad_partials", dtype=dtype,
               site="grad_partials", shape_hint="(batch, seq, d_model), like the output")  # fmt: skip
    right = _input_grad_parts(x, shards, heads_here, grad_output)
    total = sum(right)
    running = [sum(right[: r + 1]) for r in range(world)]
    for r, got_r in enumerate(parts):
        verify(got_r, right[r], [(running[r], SHARED_INPUT), (total, SHARED_INPUT)],
               what=f"{case.what}: rank {r}'s grad_x_parts", dtype=dtype, site="grad_x_parts",
               shape_hint="(batch, seq, d_model), like the input")  # fmt: skip
    verify(grad_x, total, [(right[0], F_MISSING), (total / world, F_AVERAGED)], what=f"{case.what}: grad_x",
           dtype=dtype, site="grad_x", shape_hint="(batch, seq, d_model), like the input")  # fmt: skip


backward_by_ranks = register(
    Exercise(
        LESSON,
        "backward_by_ranks",
        function="backward_by_ranks",
        signature="backward_by_ranks(x, shards, heads_here, grad_output)",
        cases=_backward_cases,
        judge=_backward_judge,
        uses=("local_forward",),
        advice="give each rank its own copy of x, `x.detach().clone().requires_grad_()`",
    )
)


# --- exercise 5: allreduce_bytes ----------------------------------------------------------------------------------


def _bytes_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [(4, 200, 512, 4, 4), (2, 6, 32, 4, 2), (1, 1, 1024, 4, 8), (3, 5, 16, 4, 1), (1, 4096, 8192, 2, 8)]
    drawn = (int(torch.randint(1, 9, (), generator=g)), _pick(g, [128, 300, 2048]), _pick(g, [256, 768, 4096]),
             _pick(g, [2, 4]), _pick(g, [2, 3, 4, 8, 16]))  # fmt: skip
    names = ("batch", "seq", "d_model", "bytes_per_number", "world")
    return [
        Case(args, what="allreduce_bytes(" + ", ".join(f"{n}={a}" for n, a in zip(names, args)) + ")", drawn=i >= 5)
        for i, args in enumerate([*fixed, drawn])
    ]


def _bytes_judge(case: Case, got, changed) -> None:
    batch, seq, d_model, nbytes, world = case.inputs()
    size, numbers = batch * seq * d_model * nbytes, batch * seq * d_model
    verify_number(
        got,
        reference_bytes(batch, seq, d_model, nbytes, world),
        [
            (
                (world - 1) / world * size,
                "that is half of it, the reduce-scatter: after it each rank holds the sum of one piece; the "
                "all-gather then sends as much again (2(w−1)/w · size)",
            ),
            (2 * (world - 1) * size, "each of the 2(w−1) steps sends one piece of size/w, not the whole tensor"),
            (2 * size / world, "there are 2(w−1) steps of size/w each, not 2"),
            (2 * (world - 1) / world * numbers, "you counted numbers; multiply by bytes_per_number"),
            (2 * size, "the factor is 2(w−1)/w, which depends on world (and is 0 for one rank)"),
            (
                2 * (world - 1) / world * d_model * d_model * nbytes,
                "the all-reduce moves the layer's output (batch, seq, d_model), not a weight matrix",
            ),
        ],
        what=case.what,
        form_hint="one number, the bytes each rank sends",
    )


allreduce_bytes = register(
    Exercise(
        LESSON,
        "allreduce_bytes",
        function="allreduce_bytes",
        signature="allreduce_bytes(batch, seq, d_model, bytes_per_number, world)",
        cases=_bytes_cases,
        judge=_bytes_judge,
    )
)


# --- exercise 6: ring_all_reduce ----------------------------------------------------------------------------------

REDUCE_SCATTER_ONLY = (
    "you stopped after the reduce-scatter (w−1 steps): each rank holds the full sum of one piece only; hand the "
    "summed pieces around the ring, w−1 more steps (the all-gather)"
)
NOTHING_SENT = (
    "nothing went through `send`: the result may be the sum, but no ring ran; every piece a rank sends must go "
    "through send(sender, receiver, index, piece), which hands back the copy the receiver gets"
)
EVERYONE = (
    "every rank sent its whole vector to every other rank: (w−1)·n numbers each; in a ring each rank sends only "
    "to the next, pieces of n/w numbers, 2(w−1) times: 2(w−1)/w · n in all"
)
THROUGH_RANK_0 = (
    "everything went through rank 0, which sends (w−1)·n numbers while the others send n; a ring spreads the load "
    "evenly, each rank sending pieces to the next rank only"
)
REVERSED = (
    "the ring runs the other way round: rank r sends to rank (r − 1) % w; in this exercise it sends to rank "
    "(r + 1) % w and receives from rank (r − 1) % w, and the piece indices it sends follow from that direction"
)
WHOLE = "each message carries a whole vector: cut the vectors into w pieces (t.chunk(w)) and send one piece per message"
REPLACED = (
    "in the reduce-scatter you replaced your piece with the one you received: add it to yours, so that the piece "
    "you pass on carries the sum so far"
)
IGNORED = (
    "every rank sent its own numbers unchanged: what a rank receives must change its piece (added during the "
    "reduce-scatter, replacing it during the all-gather) before that piece is passed on"
)
ADDED_IN_GATHER = (
    "in the all-gather you added the piece you received to your own; the piece you receive is already the complete "
    "sum: replace yours with it"
)


@builder("ring_wire")
def build_ring_wire(world: int) -> Wire:
    """The `send` the check hands to the learner's `ring_all_reduce`: it delivers and records every message."""
    return Wire(world)


def _ring_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    sizes = [(2, 6, torch.float32), (4, 8, torch.float64), (3, 9, torch.float32)]
    world = int(torch.randint(2, 6, (), generator=g))
    sizes.append((world, world * int(torch.randint(1, 4, (), generator=g)), torch.float64))
    cases = []
    for i, (w, n, dtype) in enumerate(sizes):
        tensors = [_randn(g, n, dtype=dtype) for _ in range(w)]
        what = f"ring_all_reduce of {w} vectors of {n} numbers"
        cases.append(Case((tensors, Build("ring_wire", {"world": w})), what=what, drawn=i >= 3))
    return cases


def _sent_index(w: int, step: int, rank: int) -> int:
    """The piece rank `rank` sends at `step` (0 to 2(w − 1) − 1): (r − s) % w, then (r + 1 − s) % w."""
    return (rank - step) % w if step < w - 1 else (rank + 1 - (step - (w - 1))) % w


def _simulate_ring(tensors, scatter: str = "add", gather: str = "replace") -> tuple[torch.Tensor, list]:
    """The exercise's ring (in float64), receivers combining pieces as told ("add", "replace" or "keep").

    Returns:
        the pieces sent, (2(w − 1), w senders, n/w), and every rank's vector at the end.
    """
    w = len(tensors)
    pieces = [[p.double().clone() for p in t.chunk(w)] for t in tensors]
    sent = []
    for step in range(2 * (w - 1)):
        how = scatter if step < w - 1 else gather
        messages = [(r, _sent_index(w, step, r), pieces[r][_sent_index(w, step, r)].clone()) for r in range(w)]
        for r, i, piece in messages:
            receiver = (r + 1) % w
            if how == "add":
                pieces[receiver][i] = pieces[receiver][i] + piece
            elif how == "replace":
                pieces[receiver][i] = piece
        sent.append(torch.stack([piece for _, _, piece in messages]))
    messages = torch.stack(sent) if sent else torch.zeros(0, w, tensors[0].numel() // w, dtype=torch.float64)
    return messages, [torch.cat(p) for p in pieces]


def _ring_patterns(messages: list, w: int, n: int) -> dict:
    """Which classic shapes of traffic the messages have: {hint: True or False}, from senders, receivers and sizes."""
    pairs = [(s, r) for s, r, _, _ in messages]
    whole = all(read_tensor(p).numel() == n for *_, p in messages)
    everyone = sorted(pairs) == sorted((a, b) for a in range(w) for b in range(w) if a != b)
    hub = all(0 in pair for pair in pairs) and {b for a, b in pairs if a == 0} == set(range(1, w))
    return {
        EVERYONE: whole and everyone,
        THROUGH_RANK_0: whole and hub,
        REVERSED: all(r == (s - 1) % w for s, r in pairs),
        WHOLE: whole,
    }


def _ring_messages(case: Case, changed: dict, w: int, n: int) -> torch.Tensor:
    """Check the traffic's shape (who sends to whom, how much, in which steps, which piece); the pieces sent, in
    order (steps, senders, n/w)."""
    messages = changed.get("send", {}).get("after", {}).get("messages") or []
    if not messages:
        raise CheckFailed(NOTHING_SENT, case.what, [NOTHING_SENT], "messages")
    patterns = _ring_patterns(messages, w, n)

    def fail(detail, *hints):  # a hint that names a shape of traffic is kept only if the messages have that shape
        raise CheckFailed(detail, case.what, [h for h in hints if patterns.get(h, True)], "messages")

    for s, r, _, _ in messages:
        if r != (s + 1) % w:
            fail(f"rank {s} sent to rank {r}; in this ring rank r sends only to rank (r + 1) % w", EVERYONE,
                 THROUGH_RANK_0, REVERSED)  # fmt: skip
    for s, _, _, p in messages:
        size = read_tensor(p).numel()
        if size != n // w:
            fail(f"rank {s} sent a message of {size} numbers; each message is one piece of n/w = {n // w}", EVERYONE,
                 THROUGH_RANK_0, WHOLE)  # fmt: skip
    if len(messages) != 2 * (w - 1) * w:
        if len(messages) == (w - 1) * w:
            fail(f"{len(messages)} messages, the reduce-scatter's only", REDUCE_SCATTER_ONLY)
        fail(f"{len(messages)} messages were sent; a ring over {w} ranks sends {w} per step (one from each rank) "
             f"for 2(w − 1) = {2 * (w - 1)} steps")  # fmt: skip
    got = []
    for step in range(2 * (w - 1)):
        block = sorted(messages[step * w : (step + 1) * w], key=lambda m: m[0])
        if [m[0] for m in block] != list(range(w)):
            fail(f"messages {step * w + 1} to {(step + 1) * w} came from ranks {[m[0] for m in block]}: each step, "
                 f"every rank sends one piece; send a step's {w} messages before those of the next")  # fmt: skip
        for s, _, i, _ in block:
            if i != _sent_index(w, step, s):
                phase, k = ("reduce-scatter", step) if step < w - 1 else ("all-gather", step - (w - 1))
                rule = "(r − s) % w" if step < w - 1 else "(r + 1 − s) % w"
                fail(f"at step s = {k} of the {phase} rank {s} sent piece {i}; it sends piece {rule} = "
                     f"{_sent_index(w, step, s)}")  # fmt: skip
        got.append(torch.stack([read_tensor(m[3]) for m in block]))
    _passed("messages", {REVERSED} if w == 2 else set())  # with two ranks, either direction is the same ring
    return torch.stack(got)


def _ring_judge(case: Case, got, changed) -> None:
    tensors, _ = case.inputs()
    w, n = len(tensors), tensors[0].numel()
    total = sum(t.double() for t in tensors)
    if not isinstance(got, list | tuple) or len(got) != w:
        hint = [PRINTED] if got is None else []
        raise CheckFailed(f"returned {describe_value(got)}; return a list of {w} vectors, one per rank", case.what,
                          hint, "results")  # fmt: skip
    sent = _ring_messages(case, changed, w, n)
    variants = {
        REPLACED: _simulate_ring(tensors, "replace", "replace"),
        IGNORED: _simulate_ring(tensors, "keep", "keep"),
        ADDED_IN_GATHER: _simulate_ring(tensors, "add", "add"),
    }
    expected, _ = _simulate_ring(tensors)
    verify(sent, expected, [(v[0], hint) for hint, v in variants.items()], what=f"{case.what}: the pieces sent",
           site="pieces sent", dtype=tensors[0].dtype, shape_hint="one piece per rank and step")  # fmt: skip
    for r, result in enumerate(got):
        where = f"{case.what}: rank {r}'s result"
        t = read_tensor(result)
        mistakes = [(tensors[r].double(), "this rank's vector came back unchanged: nothing was added")]
        mistakes += [(v[1][r], hint) for hint, v in variants.items() if hint != IGNORED]  # that one: unchanged
        known = t is None or same(t, total) or any(same(t, m) for m, _ in mistakes)
        if not known and _one_piece_summed(t.double(), total, w):
            raise CheckFailed("holds the summed vector in one piece only", where, [REDUCE_SCATTER_ONLY], "results")
        verify(result, total, mistakes, what=where, site="results", dtype=tensors[0].dtype,
               shape_hint="(n,): every rank ends with the whole summed vector")  # fmt: skip


def _one_piece_summed(result, total, w) -> bool:
    """True when some piece of `result` is the summed piece but not all: the mark of a reduce-scatter alone."""
    if result.shape != total.shape:
        return False
    matches = [same(a, b) for a, b in zip(result.chunk(w), total.chunk(w))]
    return any(matches) and not all(matches)


ring_all_reduce = register(
    Exercise(
        LESSON,
        "ring_all_reduce",
        function="ring_all_reduce",
        signature="ring_all_reduce(tensors, send)",
        cases=_ring_cases,
        judge=_ring_judge,
        mutable=("send",),
        advice="`t.chunk(w)` returns views of the caller's tensor: clone the pieces before adding into them",
    )
)


# --- exercise 7: kv_heads_of_rank ---------------------------------------------------------------------------------


def _kv_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [(8, 4, 2, 1), (8, 2, 4, 3), (8, 8, 4, 2), (16, 4, 8, 5), (8, 1, 4, 2), (12, 6, 3, 0)]
    heads = _pick(g, [8, 16, 32, 64])
    kv = _pick(g, [k for k in (1, 2, 4, 8) if heads % k == 0])
    world = _pick(g, [w for w in (2, 4, 8, 16) if heads % w == 0 and (kv % w == 0 or w % kv == 0)])
    cases = [*fixed, (heads, kv, world, int(torch.randint(world, (), generator=g)))]
    return [
        Case(c, what=f"kv_heads_of_rank(heads={c[0]}, kv_heads={c[1]}, world={c[2]}, rank={c[3]})", drawn=i >= 6)
        for i, c in enumerate(cases)
    ]


def _kv_judge(case: Case, got, changed) -> None:
    heads, kv_heads, world, rank = case.inputs()
    split = head_split(heads, world, kv_heads)
    query = list(split.heads_of(rank))
    verify(
        got,
        torch.tensor(list(split.kv_heads_of(rank))),
        [
            (
                torch.tensor(query),
                "those are its query heads; query head h reads K/V head h // (heads/kv_heads)",
            ),
            (
                torch.tensor([rank % kv_heads]),
                "ranks do not take K/V heads in turn; a rank holds the K/V heads its own query heads read, "
                "h // (heads/kv_heads) for each of them",
            ),
            (
                torch.tensor([rank * kv_heads // world]),
                "with kv_heads ≥ world a rank holds kv_heads/world K/V heads, all those its query heads read",
            ),
            (
                torch.tensor(sorted({h % kv_heads for h in query})),
                "you sent query head h to K/V head h % kv_heads; consecutive query heads share a K/V head: query "
                "head h reads K/V head h // (heads // kv_heads)",
            ),
        ],
        what=case.what,
        shape_hint="one entry per K/V head the rank holds",
        form_hint="a list of K/V head numbers",
    )


kv_heads_of_rank = register(
    Exercise(
        LESSON,
        "kv_heads_of_rank",
        function="kv_heads_of_rank",
        signature="kv_heads_of_rank(heads, kv_heads, world, rank)",
        cases=_kv_cases,
        judge=_kv_judge,
    )
)
