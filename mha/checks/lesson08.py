"""Checks for lesson 08, heads across devices. Use: `from mha.checks import lesson08 as check`."""

import math

import torch

from ..heads import merge_heads, split_heads
from ..multihead import MultiHeadAttention
from ..parallel.cost import allreduce_bytes as reference_bytes
from ..parallel.layer import HeadParallelAttention
from ..parallel.shard import head_split, weights_of
from ..parallel.shard import shard as reference_shard
from . import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape, same

LESSON = "08"


def _x(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _module(seed: int, d_model: int, heads: int) -> MultiHeadAttention:
    """A layer with random weights and nonzero biases (a bias added twice or dropped must show)."""
    torch.manual_seed(seed)
    m = MultiHeadAttention(d_model, heads)
    with torch.no_grad():
        m.in_proj.bias.normal_()
        m.out_proj.bias.normal_()
    return m


def _as_dict(got, what: str, keys) -> dict:
    if not isinstance(got, dict):
        raise CheckFailed(f"{what}: return a dict with the keys {list(keys)}; got {type(got).__name__}")
    missing = [k for k in keys if k not in got]
    if missing:
        raise CheckFailed(f"{what}: the dict lacks {missing} (expected the keys {list(keys)})")
    return {k: as_tensor(got[k], f"{what}: {k}") for k in keys}


SHARD_KEYS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")


def _shard_mistakes(m: MultiHeadAttention, world: int, rank: int) -> dict:
    """For each key, the classic wrong slices with their hints."""
    w_in, b_in, w_out = m.in_proj.weight.detach(), m.in_proj.bias.detach(), m.out_proj.weight.detach()
    d_model, d_head, heads = m.d_model, m.d_head, m.heads
    per_rank = heads // world
    rows = slice(rank * per_rank * d_head, (rank + 1) * per_rank * d_head)
    one_head = slice(rank * d_head, (rank + 1) * d_head)
    every_wth = torch.cat([torch.arange(h * d_head, (h + 1) * d_head) for h in range(rank, heads, world)])
    fused = w_in.chunk(world)[rank]  # a contiguous block of [W_Q; W_K; W_V]
    fused_b = b_in.chunk(world)[rank]
    mistakes = {key: [] for key in SHARD_KEYS}
    for i, (w, b) in enumerate((("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))):
        block_w, block_b = w_in[i * d_model : (i + 1) * d_model], b_in[i * d_model : (i + 1) * d_model]
        for key, full, piece in ((w, block_w, fused), (b, block_b, fused_b)):
            mistakes[key] += [
                (
                    piece.chunk(3)[i] if piece.shape[0] % 3 == 0 else None,
                    f"{key}: you cut the fused in_proj [W_Q; W_K; W_V] into world blocks before splitting it: a "
                    f"block then mixes queries, keys and values; take W_Q, W_K, W_V apart first (chunk(3)), then "
                    f"each one's rows",
                ),
                (
                    full[one_head],
                    f"{key}: you took one head's rows; a rank holds heads/world heads, heads/world · d_head rows",
                ),
                (
                    full[every_wth],
                    f"{key}: you gave rank r every world-th head (r, r + world, ...); it holds consecutive heads, "
                    f"r·heads/world to (r+1)·heads/world − 1",
                ),
                (full, f"{key}: you kept the whole matrix; a rank holds only its heads' rows"),
            ]
    mistakes["W_O"] = [
        (w_out[rows, :], "W_O: you took rows of W_O; a rank's heads are read by a block of its columns, W_O[:, rows]"),
        (w_out[:, one_head], "W_O: you took one head's columns; a rank holds heads/world · d_head columns"),
        (w_out[:, every_wth], "W_O: rank r holds the columns of its consecutive heads, not every world-th head"),
        (w_out, "W_O: you kept all of W_O; a rank holds the columns that read its heads"),
    ]
    return mistakes


@exercise(LESSON, "shard_rank")
def shard_rank(fn) -> int:
    """fn(in_proj_weight, in_proj_bias, out_proj_weight, heads, world, rank) -> rank's slices, a dict of 7 tensors."""
    cases = [(_module(0, 8, 4), 2, 1), (_module(1, 12, 6), 3, 2), (_module(2, 16, 8), 4, 1), (_module(3, 8, 2), 1, 0)]
    for m, world, rank in cases:
        what = f"shard_rank for d_model {m.d_model}, {m.heads} heads, rank {rank} of world {world}"
        w_in, b_in, w_out = m.in_proj.weight.detach(), m.in_proj.bias.detach(), m.out_proj.weight.detach()
        got = _as_dict(call(fn, w_in.clone(), b_in.clone(), w_out.clone(), m.heads, world, rank), what, SHARD_KEYS)
        expected = reference_shard(weights_of(m), m.heads, world, rank)
        mistakes = _shard_mistakes(m, world, rank)
        features = m.heads // world * m.d_head
        if tuple(got["W_O"].shape) == (features, m.d_model) != (m.d_model, features):
            if same(got["W_O"], expected["W_O"].T):
                raise CheckFailed(
                    f"{what}: W_O is transposed; keep nn.Linear's layout, (d_model, features): W_O[:, rows]"
                )
        for key in SHARD_KEYS:
            shape = expected[key].shape
            wrong_shaped = [(w, h) for w, h in mistakes[key] if w is not None and w.shape == got[key].shape]
            if tuple(got[key].shape) != tuple(shape) and wrong_shaped:
                diagnose(got[key], expected[key], wrong_shaped, what)
            expect_shape(got[key], shape, f"{what}: {key}")
            diagnose(got[key], expected[key], mistakes[key], what)
    return len(cases)


def _local_mistakes(x, mine: dict, heads_here: int) -> list:
    """Classic wrong partial outputs of one rank, with their hints."""
    q, k, v = (x @ mine[w].T + mine[b] for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V")))
    d_head = q.shape[-1] // heads_here
    d_model = x.shape[-1]

    def run(split, scale, project=True, bias=False):
        qh, kh, vh = split(q), split(k), split(v)
        w = (qh @ kh.transpose(-2, -1) / scale).softmax(-1)
        merged = merge_heads(w @ vh)
        out = merged @ mine["W_O"].T if project else merged
        return out + mine["b_O"] if bias else out

    def good(t):
        return split_heads(t, heads_here)

    def one_head(t):
        return t.unsqueeze(1)  # (batch, 1, seq, features): all the rank's features as one head

    def no_transpose(t):
        return t.reshape(t.shape[0], heads_here, t.shape[1], d_head)

    return [
        (
            run(good, math.sqrt(d_head), bias=True),
            "you added b_O on this rank: every rank would add it, so after the all-reduce it would count world "
            "times; leave it out of the partial output (it is added once, after the sum)",
        ),
        (
            run(one_head, math.sqrt(heads_here * d_head)),
            "you treated all of the rank's features as one head: split them into heads_here heads of d_head "
            "features, each with its own attention",
        ),
        (run(good, math.sqrt(d_model)), "scores scaled by sqrt(d_model); each head's dot products have d_head terms"),
        (run(good, math.sqrt(heads_here * d_head)), "scores scaled by sqrt(heads_here · d_head); use sqrt(d_head)"),
        (run(no_transpose, math.sqrt(d_head)), "heads split with view/reshape and no transpose: transpose(1, 2)"),
    ]


@exercise(LESSON, "local_forward")
def local_forward(fn) -> int:
    """fn(x, mine, heads_here) -> this rank's partial output (batch, seq, d_model), without b_O."""
    cases = [(_module(10, 8, 4), 2, 1, _x(11, 2, 5, 8)), (_module(12, 12, 6), 3, 0, _x(13, 1, 4, 12)),
             (_module(14, 16, 8), 4, 3, _x(15, 2, 3, 16))]  # fmt: skip
    for m, world, rank, x in cases:
        heads_here = m.heads // world
        what = f"local_forward on x {tuple(x.shape)}, rank {rank} of {world}, {heads_here} heads here"
        mine = reference_shard(weights_of(m), m.heads, world, rank)
        with torch.no_grad():
            got = as_tensor(call(fn, x.clone(), {k: v.clone() for k, v in mine.items()}, heads_here), what)
            expected, _ = HeadParallelAttention.from_module(m, world, rank).partial(x)
            mistakes = _local_mistakes(x, mine, heads_here)
        if got.shape == (*x.shape[:2], heads_here * m.d_head) and heads_here * m.d_head != m.d_model:
            raise CheckFailed(
                f"{what}: the output has shape {tuple(got.shape)}, the rank's heads concatenated; multiply by the "
                f"rank's block of W_O to get its share of the (batch, seq, d_model) output"
            )
        expect_shape(got, x.shape, what, "(batch, seq, d_model)")
        diagnose(got, expected, mistakes, what)
    return len(cases)


@exercise(LESSON, "all_reduce_by_hand")
def all_reduce_by_hand(fn) -> int:
    """fn(partials: list of (batch, seq, d_model), out_bias (d_model,)) -> the layer's output."""
    cases = [(_module(20, 8, 4), 2, _x(21, 2, 3, 8)), (_module(22, 16, 8), 4, _x(23, 1, 5, 16))]
    for m, world, x in cases:
        what = f"all_reduce_by_hand of {world} partial outputs {tuple(x.shape)}"
        with torch.no_grad():
            partials = [HeadParallelAttention.from_module(m, world, r).partial(x)[0] for r in range(world)]
            bias = m.out_proj.bias.detach()
            got = as_tensor(call(fn, [p.clone() for p in partials], bias.clone()), what)
            expected, _ = m(x)
        total = sum(partials)
        if got.shape == (*x.shape[:2], world * m.d_model):
            raise CheckFailed(
                f"{what}: you concatenated the partial outputs; each already has all d_model features, and the "
                f"layer's output is their sum (lesson 03: concatenate-then-project = sum of contributions)"
            )
        expect_shape(got, x.shape, what, "(batch, seq, d_model)")
        diagnose(
            got,
            expected,
            [
                (total / world + bias, "you averaged the partial outputs; an all-reduce here sums them"),
                (total + world * bias, "b_O added once per rank: add it once, after the sum"),
                (total, "b_O is missing: add it once, after the sum"),
                (partials[0] + bias, "you kept rank 0's partial output only; sum every rank's"),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "allreduce_bytes")
def allreduce_bytes(fn) -> int:
    """fn(batch, seq, d_model, bytes_per_number, world) -> bytes each rank sends in a ring all-reduce of the output."""
    cases = [(4, 200, 512, 4, 4), (2, 6, 32, 4, 2), (1, 1, 1024, 4, 8), (3, 5, 16, 4, 1), (1, 4096, 8192, 2, 8)]
    for batch, seq, d_model, nbytes, world in cases:
        what = f"allreduce_bytes(batch={batch}, seq={seq}, d_model={d_model}, bytes_per_number={nbytes}, world={world})"
        got = call(fn, batch, seq, d_model, nbytes, world)
        if not isinstance(got, int | float) or isinstance(got, bool):
            got = as_tensor(got, what).double()
        size = batch * seq * d_model * nbytes
        numbers = batch * seq * d_model
        diagnose(
            float(got),
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
            what,
        )
    return len(cases)


def _ring_counts(tensors) -> dict:
    """Numbers sent per rank by classic wrong ways of all-reducing, with their hints."""
    w, n = len(tensors), tensors[0].numel()
    return {
        "everyone": ([(w - 1) * n] * w, "every rank sent its whole vector to every other rank: (w−1)·n numbers "
                     "each; a ring sends pieces of n/w, 2(w−1) times, 2(w−1)/w · n in all"),
        "through_rank_0": ([(w - 1) * n] + [n] * (w - 1), "everything went through rank 0, which sends (w−1)·n "
                           "numbers while the others send n; a ring spreads the load evenly"),
        "reduce_scatter_only": ([(w - 1) * n // w] * w, REDUCE_SCATTER_ONLY),
    }  # fmt: skip


REDUCE_SCATTER_ONLY = (
    "you stopped after the reduce-scatter (w−1 steps): each rank holds the full sum of one piece only; hand the "
    "summed pieces around the ring, w−1 more steps (the all-gather)"
)


def _one_piece_summed(result, total, w) -> bool:
    """True when some piece of `result` is the summed piece but not all: the mark of a reduce-scatter alone."""
    matches = [same(a, b) for a, b in zip(result.chunk(w), total.chunk(w))]
    return any(matches) and not all(matches)


@exercise(LESSON, "ring_all_reduce")
def ring_all_reduce(fn) -> int:
    """fn(tensors: list of w vectors of n numbers) -> (results: list of w vectors, numbers sent by each rank)."""
    cases = [[_x(30 + r, 6) for r in range(2)], [_x(40 + r, 8) for r in range(4)], [_x(50 + r, 9) for r in range(3)]]
    for tensors in cases:
        w, n = len(tensors), tensors[0].numel()
        what = f"ring_all_reduce of {w} vectors of {n} numbers"
        got = call(fn, [t.clone() for t in tensors])
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise CheckFailed(f"{what}: return (results, sent): a list of {w} vectors and a list of {w} counts")
        results, sent = got
        if len(results) != w or len(sent) != w:
            raise CheckFailed(f"{what}: expected {w} results and {w} counts, got {len(results)} and {len(sent)}")
        total, wrong_counts = sum(tensors), _ring_counts(tensors)
        for r, result in enumerate(results):
            result = as_tensor(result, f"{what}: rank {r}'s result")
            where = f"{what}: rank {r}'s result"
            expect_shape(result, total.shape, where, "each rank ends with the whole summed vector")
            if not same(result, total) and _one_piece_summed(result, total, w):
                raise CheckFailed(f"{where}: {REDUCE_SCATTER_ONLY}")
            diagnose(
                result,
                total,
                [(tensors[r], "this rank's vector came back unchanged: nothing was added to it")],
                where,
            )
        sent = [float(s) for s in sent]
        expected = [2 * (w - 1) / w * n] * w
        if sent != expected:
            for counts, hint in wrong_counts.values():
                if sent == [float(c) for c in counts]:
                    raise CheckFailed(f"{what}: numbers sent {sent}: {hint}")
            raise CheckFailed(f"{what}: numbers sent per rank {sent}, expected {expected} (2(w−1)/w · n each)")
    return len(cases)


@exercise(LESSON, "kv_heads_of_rank")
def kv_heads_of_rank(fn) -> int:
    """fn(heads, kv_heads, world, rank) -> the K/V heads rank `rank` holds, as a list."""
    cases = [(8, 4, 2, 1), (8, 2, 4, 3), (8, 8, 4, 2), (16, 4, 8, 5), (8, 1, 4, 2), (12, 6, 3, 0)]
    for heads, kv_heads, world, rank in cases:
        what = f"kv_heads_of_rank(heads={heads}, kv_heads={kv_heads}, world={world}, rank={rank})"
        got = call(fn, heads, kv_heads, world, rank)
        try:
            got = [int(h) for h in got]
        except (TypeError, ValueError):
            raise CheckFailed(f"{what}: return a list of K/V head numbers, got {got!r}") from None
        split = head_split(heads, world, kv_heads)
        expected = list(split.kv_heads_of(rank))
        if got == expected:
            continue
        if got == list(split.heads_of(rank)) and kv_heads != heads:
            raise CheckFailed(f"{what}: {got} are its query heads; query head h reads K/V head h // (heads/kv_heads)")
        if got == [rank % kv_heads]:
            raise CheckFailed(
                f"{what}: {got}: ranks do not take K/V heads in turn; a rank holds the K/V heads its own query heads "
                f"read, h // (heads/kv_heads) for each of them"
            )
        if len(got) == 1 and len(expected) > 1:
            raise CheckFailed(f"{what}: {got}: with kv_heads ≥ world a rank holds kv_heads/world K/V heads")
        raise CheckFailed(f"{what}: got {got}, expected {expected}")
    return len(cases)
