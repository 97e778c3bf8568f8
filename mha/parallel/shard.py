"""Which heads, and which slices of the weights, each rank holds; and how to put the slices back together.

Rank r of `world` holds query heads r·heads/world to (r+1)·heads/world − 1. Weights are `nn.Linear.weight`s, as in
lesson 03: a head's part of W_Q, W_K and W_V is a block of d_head **rows**, and its part of W_O is the block of
d_head **columns** that multiplies its features in the concatenation. So a rank holds

    W_Q[rows], W_K[kv rows], W_V[kv rows]     its heads' queries, keys and values      (features, d_model)
    W_O[:, rows]                              its heads' column block of W_O           (d_model, features)

and the output bias b_O whole: it is added once, after the ranks' partial outputs are summed.

With grouped-query attention (kv_heads < heads), query head h reads K/V head h // (heads // kv_heads). A rank holds
the K/V heads its query heads read. With at least as many K/V heads as ranks they divide evenly (kv_heads a
multiple of world); with fewer, each K/V head is copied whole to world / kv_heads ranks (replicated). These are the
two cases vLLM's tensor-parallel models accept (e.g. `vllm/model_executor/models/llama.py`).

Weights travel as a dict of tensors with the keys of `KEYS` (`None` for a missing bias), so that the same
functions serve a module of the core, a learner's tensors, and grouped-query weights.
"""

from dataclasses import dataclass

import torch

from .._validate import check_same_device, fmt_shape, head_size

KEYS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class HeadSplit:
    """How `heads` query heads (and `kv_heads` K/V heads) of width `d_head` are divided among `world` ranks.

    Args:
        heads: query heads of the layer.
        world: number of ranks (processes, devices).
        kv_heads: K/V heads (default: heads, plain multi-head attention).
        d_head: features per head.
    """

    heads: int
    world: int
    kv_heads: int
    d_head: int

    @property
    def heads_per_rank(self) -> int:
        return self.heads // self.world

    @property
    def group(self) -> int:
        """Query heads that share one K/V head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    def heads_of(self, rank: int) -> range:
        """The query heads rank `rank` holds."""
        self._check_rank(rank)
        return range(rank * self.heads_per_rank, (rank + 1) * self.heads_per_rank)

    def kv_heads_of(self, rank: int) -> range:
        """The K/V heads rank `rank` holds: those its query heads read."""
        mine = self.heads_of(rank)
        return range(mine[0] // self.group, mine[-1] // self.group + 1)

    def rows(self, rank: int) -> slice:
        """Rows of W_Q (and columns of W_O) that hold rank `rank`'s heads."""
        mine = self.heads_of(rank)
        return slice(mine.start * self.d_head, mine.stop * self.d_head)

    def kv_rows(self, rank: int) -> slice:
        """Rows of W_K and W_V that hold rank `rank`'s K/V heads."""
        mine = self.kv_heads_of(rank)
        return slice(mine.start * self.d_head, mine.stop * self.d_head)

    def holders(self, kv_head: int) -> list[int]:
        """The ranks holding a copy of K/V head `kv_head` (more than one when it is replicated)."""
        return [r for r in range(self.world) if kv_head in self.kv_heads_of(r)]

    def kv_index(self, rank: int) -> list[int]:
        """For each of rank `rank`'s query heads, the position among its own K/V heads of the one it reads."""
        first = self.kv_heads_of(rank).start
        return [h // self.group - first for h in self.heads_of(rank)]

    def _check_rank(self, rank: int) -> None:
        if not isinstance(rank, int) or not 0 <= rank < self.world:
            raise ValueError(f"rank must be an integer from 0 to world - 1 = {self.world - 1}, got {rank!r}")


def head_split(heads: int, world: int, kv_heads: int | None = None, d_head: int = 1) -> HeadSplit:
    """Check that the heads divide evenly among the ranks, and say who holds what.

    Args:
        heads: query heads of the layer.
        world: number of ranks.
        kv_heads: K/V heads (default: heads).
        d_head: features per head (default: 1, enough to count heads).

    Returns:
        a `HeadSplit`. Raises ValueError, naming the sizes that would work, when heads do not divide evenly.
    """
    kv_heads = heads if kv_heads is None else kv_heads
    for name, value in (("heads", heads), ("world", world), ("kv_heads", kv_heads), ("d_head", d_head)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if heads % world:
        raise ValueError(
            f"heads={heads} cannot be divided evenly among world={world} ranks: every rank must hold the same "
            f"number of whole heads (a head's attention cannot be cut in two without more communication); "
            f"choose world among {_divisors(heads)}"
        )
    if heads % kv_heads:
        raise ValueError(
            f"heads={heads} is not a multiple of kv_heads={kv_heads}: in grouped-query attention every K/V head "
            f"serves the same number of query heads; choose kv_heads among {_divisors(heads)}"
        )
    if kv_heads % world and world % kv_heads:
        raise ValueError(
            f"kv_heads={kv_heads} and world={world}: the K/V heads must either divide evenly among the ranks "
            f"(kv_heads a multiple of world) or be copied whole to equal groups of ranks (world a multiple of "
            f"kv_heads); choose world among {[w for w in _divisors(heads) if kv_heads % w == 0 or w % kv_heads == 0]}"
        )
    return HeadSplit(heads, world, kv_heads, d_head)


def check_weights_dict(weights, name: str = "weights") -> dict:
    """A layer's weights as `weights_of` returns them: a dict holding every key of `KEYS`, each a tensor of
    floating-point numbers (None allowed for a bias), all of one dtype and on one device."""
    if not isinstance(weights, dict):
        raise TypeError(
            f"{name} must be a dict of the layer's weights with the keys {list(KEYS)} (see weights_of), "
            f"got {type(weights).__name__}"
        )
    missing = [k for k in KEYS if k not in weights]
    if missing:
        raise ValueError(f"{name} lack {missing}: expected the keys {list(KEYS)} (None for a missing bias)")
    for key in KEYS:
        t = weights[key]
        if t is None and key.startswith("b"):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}[{key!r}] must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}[{key!r}] must hold floating-point numbers, got dtype {t.dtype}")
    tensors = [(f"{name}[{k!r}]", weights[k]) for k in KEYS if weights[k] is not None]
    for other, t in tensors[1:]:
        if t.dtype != tensors[0][1].dtype:
            raise TypeError(
                f"{other} has dtype {t.dtype} but {tensors[0][0]} {tensors[0][1].dtype}: expected one dtype"
            )
    check_same_device(*tensors)
    for key in ("W_Q", "W_K", "W_V", "W_O"):
        if weights[key].ndim != 2:
            raise ValueError(
                f"{name}[{key!r}] must be a matrix (2 dimensions), got shape {fmt_shape(weights[key].shape)}"
            )
    return weights


def weights_of(module) -> dict:
    """The weights of a `mha.MultiHeadAttention` (or a module with the same attributes), as a dict of `KEYS`.

    Args:
        module: has `in_proj` (rows [W_Q; W_K; W_V]) and `out_proj`, like `mha.MultiHeadAttention`; with
            grouped-query attention (kv_heads < heads) W_K and W_V have fewer rows than W_Q.

    Returns:
        {"W_Q": (heads·d_head, d_model), "b_Q": ..., "W_K": (kv_heads·d_head, d_model), ..., "W_O": (d_model,
        heads·d_head), "b_O": (d_model,)}, detached; biases are None when the module has none.
    """
    linear = [getattr(module, name, None) for name in ("in_proj", "out_proj")]
    if not all(isinstance(layer, torch.nn.Linear) for layer in linear):
        raise TypeError(
            f"module must be a mha.MultiHeadAttention (or a module with in_proj and out_proj nn.Linear layers), got "
            f"{type(module).__name__}"
        )
    q_rows = module.out_proj.weight.shape[1]  # W_O reads the concatenated heads: as many features as W_Q has rows
    kv_rows, odd = divmod(module.in_proj.weight.shape[0] - q_rows, 2)
    if odd or kv_rows < 1:
        raise ValueError(
            f"in_proj has {module.in_proj.weight.shape[0]} rows and out_proj reads {q_rows} features: expected "
            f"rows [W_Q; W_K; W_V] with {q_rows} rows of W_Q and as many rows of W_K as of W_V"
        )
    sizes = [q_rows, kv_rows, kv_rows]
    w_q, w_k, w_v = module.in_proj.weight.detach().split(sizes)  # (d_model | kv_heads·d_head, d_model) each
    has_bias = module.in_proj.bias is not None
    b_q, b_k, b_v = module.in_proj.bias.detach().split(sizes) if has_bias else (None, None, None)
    b_o = module.out_proj.bias.detach() if module.out_proj.bias is not None else None
    return {"W_Q": w_q, "b_Q": b_q, "W_K": w_k, "b_K": b_k, "W_V": w_v, "b_V": b_v,
            "W_O": module.out_proj.weight.detach(), "b_O": b_o}  # fmt: skip


def kv_heads_in(weights: dict, heads: int) -> int:
    """How many K/V heads the weights hold: W_K's rows over d_head (heads when it has as many rows as W_Q)."""
    check_weights_dict(weights)
    d_head = head_size(weights["W_Q"].shape[0], heads)
    kv_heads, rest = divmod(weights["W_K"].shape[0], d_head)
    if rest or kv_heads < 1:
        raise ValueError(
            f"W_K has {weights['W_K'].shape[0]} rows: expected a whole number of K/V heads of d_head = {d_head} rows"
        )
    return kv_heads


def _check_weights(weights: dict, split: HeadSplit) -> int:
    """d_model, after checking that every tensor has the shape the split expects."""
    check_weights_dict(weights)
    d_model = weights["W_Q"].shape[-1]
    q_features, kv_features = split.heads * split.d_head, split.kv_heads * split.d_head
    expected = {
        "W_Q": (q_features, d_model), "b_Q": (q_features,),
        "W_K": (kv_features, d_model), "b_K": (kv_features,),
        "W_V": (kv_features, d_model), "b_V": (kv_features,),
        "W_O": (d_model, q_features), "b_O": (d_model,),
    }  # fmt: skip
    for key, shape in expected.items():
        t = weights[key]
        if t is None and key.startswith("b"):
            continue
        if tuple(t.shape) != shape:
            dims = "(d_model,)" if key == "b_O" else "(d_model, heads·d_head)" if key == "W_O" else "(rows, d_model)"
            grouped = (
                f" (grouped-query weights of {t.shape[0] // split.d_head} K/V heads? say so: kv_heads="
                f"{t.shape[0] // split.d_head})"
                if key in ("W_K", "W_V") and t.shape[0] % split.d_head == 0 and t.shape[0] < shape[0]
                else ""
            )
            raise ValueError(
                f"{key} has shape {fmt_shape(t.shape)}, expected {fmt_shape(shape)} {dims} for heads={split.heads}, "
                f"kv_heads={split.kv_heads}, d_head={split.d_head}{grouped}"
            )
    return d_model


def shard(weights: dict, heads: int, world: int, rank: int, kv_heads: int | None = None) -> dict:
    """Rank `rank`'s slices of a layer's weights: its heads' rows of W_Q, W_K, W_V, its column block of W_O.

    Args:
        weights: the whole layer's weights, a dict of `KEYS` (see `weights_of`).
        heads: query heads of the layer.
        world: number of ranks.
        rank: which rank's slices, 0 to world - 1.
        kv_heads: K/V heads (default: heads).

    Returns:
        a dict of `KEYS`: "W_Q" (heads/world·d_head, d_model), ..., "W_O" (d_model, heads/world·d_head), and
        "b_O" (d_model,) whole, to be added once after the sum. The tensors are copies.
    """
    check_weights_dict(weights)
    split = head_split(heads, world, kv_heads, head_size(weights["W_Q"].shape[0], heads))
    _check_weights(weights, split)
    rows, kv_rows = split.rows(rank), split.kv_rows(rank)

    def cut(t, where):
        return None if t is None else t[where].clone()

    return {
        "W_Q": cut(weights["W_Q"], rows), "b_Q": cut(weights["b_Q"], rows),
        "W_K": cut(weights["W_K"], kv_rows), "b_K": cut(weights["b_K"], kv_rows),
        "W_V": cut(weights["W_V"], kv_rows), "b_V": cut(weights["b_V"], kv_rows),
        "W_O": weights["W_O"][:, rows].clone(),  # (d_model, features): the columns that read this rank's heads
        "b_O": cut(weights["b_O"], slice(None)),
    }  # fmt: skip


def gather(shards: list[dict], heads: int, kv_heads: int | None = None) -> dict:
    """Put every rank's slices back into the whole layer's weights (the inverse of `shard`).

    Args:
        shards: rank 0's slices, rank 1's, ... (as `shard` returns them).
        heads: query heads of the layer.
        kv_heads: K/V heads (default: heads). A replicated K/V head is taken from the first rank holding it.

    Returns:
        the whole layer's weights, a dict of `KEYS`.
    """
    if isinstance(shards, dict) or not isinstance(shards, list | tuple):
        raise TypeError(
            f"shards must be a list of every rank's slices (dicts, as shard returns), got {type(shards).__name__}"
        )
    if not shards:
        raise ValueError("gather needs the slices of at least one rank, got none")
    for rank, piece in enumerate(shards):
        check_weights_dict(piece, f"shards[{rank}]")
    world = len(shards)
    d_head = head_size(shards[0]["W_Q"].shape[0] * world, heads)
    split = head_split(heads, world, kv_heads, d_head)
    full = {}
    for key in ("W_Q", "b_Q"):
        full[key] = None if shards[0][key] is None else torch.cat([s[key] for s in shards])
    full["W_O"] = torch.cat([s["W_O"] for s in shards], dim=1)  # columns side by side
    full["b_O"] = None if shards[0]["b_O"] is None else shards[0]["b_O"].clone()
    for key in ("W_K", "b_K", "W_V", "b_V"):
        if shards[0][key] is None:
            full[key] = None
            continue
        pieces = []
        for kv_head in range(split.kv_heads):
            rank = split.holders(kv_head)[0]
            local = kv_head - split.kv_heads_of(rank).start
            pieces.append(shards[rank][key][local * d_head : (local + 1) * d_head])
        full[key] = torch.cat(pieces)
    return full


def module_from_weights(weights: dict, heads: int):
    """A `mha.MultiHeadAttention` holding `weights`, grouped-query when W_K has fewer rows than W_Q.

    Args:
        weights: a dict of `KEYS`, as `weights_of` or `gather` return.
        heads: query heads of the layer (its K/V heads are counted from W_K's rows).

    Returns:
        a new `mha.MultiHeadAttention`, in the weights' dtype.
    """
    from ..multihead import MultiHeadAttention

    check_weights_dict(weights)
    d_model = weights["W_Q"].shape[-1]
    kv_heads = kv_heads_in(weights, heads)
    _check_weights(weights, head_split(heads, 1, kv_heads, head_size(weights["W_Q"].shape[0], heads)))
    bias = weights["b_Q"] is not None
    module = MultiHeadAttention(d_model, heads, bias=bias, kv_heads=kv_heads).to(weights["W_Q"].dtype)
    with torch.no_grad():
        module.in_proj.weight.copy_(torch.cat([weights["W_Q"], weights["W_K"], weights["W_V"]]))
        module.out_proj.weight.copy_(weights["W_O"])
        if bias:
            module.in_proj.bias.copy_(torch.cat([weights["b_Q"], weights["b_K"], weights["b_V"]]))
            module.out_proj.bias.copy_(weights["b_O"])
    return module
