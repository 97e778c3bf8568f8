"""Checks for lesson 03, many heads. Use: `from mha.checks import lesson03 as check`.

Cases vary batch, seq, heads (1 to 6) and d_head (2 to 7, odd ones included, never all equal to seq), float32 and
float64, with random biases everywhere (a zero bias would hide one that is dropped); one or two are drawn on every
run. Modules are passed as `Build` specs, built by `build_mha` and `build_torch_mha`.
"""

import math

import torch
from torch import nn

from .._portable import seeded
from ..attention import attention as reference_attention
from ..heads import merge_heads as reference_merge
from ..heads import split_heads as reference_split
from ..multihead import MultiHeadAttention
from . import Build, Case, CheckFailed, Exercise, builder, items, register, same, verify

LESSON = "03"


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250103)


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _randn(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


@builder("mha")
def build_mha(d_model: int, heads: int, seed: int, dtype: str = "float32") -> MultiHeadAttention:
    """An mha.MultiHeadAttention with random weights and random (non-zero) biases, the global RNG untouched."""
    with seeded(seed):
        m = MultiHeadAttention(d_model, heads)
        with torch.no_grad():
            m.in_proj.bias.normal_()
            m.out_proj.bias.normal_()
    return m.to(getattr(torch, dtype))


@builder("torch_mha")
def build_torch_mha(d_model: int, heads: int, seed: int, dtype: str = "float32") -> nn.MultiheadAttention:
    """A batch-first nn.MultiheadAttention with random weights and biases, the global RNG untouched."""
    with seeded(seed):
        m = nn.MultiheadAttention(d_model, heads, batch_first=True)
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    return m.to(getattr(torch, dtype))


def _sizes(g, drawn: int) -> list[tuple[int, int]]:
    """(heads, d_head) pairs: fixed ones, then `drawn` random ones."""
    fixed = [(2, 4), (3, 4), (1, 6), (5, 3), (4, 2)]
    return fixed + [(_int(g, 1, 6), _int(g, 2, 7)) for _ in range(drawn)]


# --- exercise 1: split_heads -------------------------------------------------------------------------------------


def _split_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    cases = []
    for i, (heads, d_head) in enumerate(_sizes(g, 2)):
        gen = fixed if i < 5 else g
        seq = _pick(gen, [s for s in range(2, 8) if s not in (heads, d_head)])
        dtype = torch.float64 if i % 2 else torch.float32
        x = _randn(gen, _int(gen, 1, 3), seq, heads * d_head, dtype=dtype)
        what = f"split_heads on x {tuple(x.shape)} {_name(dtype)} with heads={heads}"
        cases.append(Case((x, heads), what=what, drawn=i >= 5))
    return cases


def _split_judge(case: Case, got, changed) -> None:
    x, heads = case.inputs()
    batch, seq, d_model = x.shape
    d_head = d_model // heads
    verify(
        got,
        reference_split(x, heads),
        [
            (
                x.reshape(batch, heads, seq, d_head),
                "heads split with view and no transpose: that cuts the memory in order and hands whole positions "
                "to heads; view to (batch, seq, heads, d_head), then transpose(1, 2)",
            ),
            (
                x.reshape(batch, seq, d_head, heads).permute(0, 3, 1, 2),
                "each head must take a block of consecutive features, h*d_head to (h+1)*d_head-1; you gave it "
                "every heads-th feature",
            ),
            (
                x.reshape(batch, seq, heads, d_head),
                "that is (batch, seq, heads, d_head): the features are cut into heads, but heads must come before "
                "seq: transpose(1, 2)",
            ),
        ],
        what=case.what,
        dtype=x.dtype,
        shape_hint="(batch, heads, seq, d_head)",
    )


split_heads = register(
    Exercise(
        LESSON,
        "split_heads",
        function="split_heads",
        signature="split_heads(x, heads)",
        cases=_split_cases,
        judge=_split_judge,
    )
)


# --- exercise 2: merge_heads -------------------------------------------------------------------------------------


def _merge_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    cases = []
    for i, (heads, d_head) in enumerate(_sizes(g, 2)):
        gen = fixed if i < 5 else g
        seq = _pick(gen, [s for s in range(2, 8) if s not in (heads, d_head)])
        dtype = torch.float64 if i % 2 else torch.float32
        x = _randn(gen, _int(gen, 1, 3), heads, seq, d_head, dtype=dtype)
        cases.append(Case((x,), what=f"merge_heads on x {tuple(x.shape)} {_name(dtype)}", drawn=i >= 5))
    return cases


def _merge_judge(case: Case, got, changed) -> None:
    (x,) = case.inputs()
    batch, heads, seq, d_head = x.shape
    verify(
        got,
        reference_merge(x),
        [
            (
                x.reshape(batch, seq, heads * d_head),
                "heads merged in the wrong order: reshaping (batch, heads, seq, d_head) directly mixes positions; "
                "transpose(1, 2) first, then reshape",
            ),
            (
                x.permute(0, 2, 3, 1).reshape(batch, seq, heads * d_head),
                "the features of one head must stay together (head 0's d_head features, then head 1's, ...); you "
                "interleaved them",
            ),
            (x.sum(dim=1), "you added the heads' outputs; concatenate them (heads * d_head features per position)"),
            (x.mean(dim=1), "you averaged the heads' outputs; concatenate them (heads * d_head features per position)"),
        ],
        what=case.what,
        dtype=x.dtype,
        shape_hint="(batch, seq, heads * d_head)",
    )


merge_heads = register(
    Exercise(
        LESSON,
        "merge_heads",
        function="merge_heads",
        signature="merge_heads(x)",
        cases=_merge_cases,
        judge=_merge_judge,
    )
)


# --- exercise 3: multihead_forward -------------------------------------------------------------------------------


def _layer_cases(seed: int, drawn: int) -> list[tuple[Build, torch.Tensor, str]]:
    """(module spec, x, description) for the exercises that take a whole layer."""
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    out = []
    for i, (heads, d_head) in enumerate(_sizes(g, drawn)):
        gen = fixed if i < 5 else g
        seq = _pick(gen, [s for s in range(2, 8) if s not in (heads, d_head)])
        dtype = torch.float64 if i in (1, 3) or (i >= 5 and bool(torch.rand((), generator=g) < 0.5)) else torch.float32
        module_seed = i if i < 5 else 1000 + 100 * seed + i
        spec = Build("mha", {"d_model": heads * d_head, "heads": heads, "seed": module_seed, "dtype": _name(dtype)})
        x = _randn(gen, _int(gen, 1, 3), seq, heads * d_head, dtype=dtype)
        out.append((spec, x, f"x {tuple(x.shape)} {_name(dtype)} with heads={heads}"))
    return out


def _forward_cases(seed: int) -> list[Case]:
    cases = []
    for i, (spec, x, words) in enumerate(_layer_cases(seed, 2)):
        m = build_mha(**spec.params)
        weights = [t.detach().clone() for t in (m.in_proj.weight, m.in_proj.bias, m.out_proj.weight, m.out_proj.bias)]
        cases.append(Case((x, *weights, m.heads), what=f"multihead_forward on {words}", drawn=i >= 5))
    return cases


def _forward(x, w_in, b_in, w_out, b_out, heads, scale=None, split=None, project=True, axis=-1, in_bias=True):
    """A batched forward pass in float64, right or with one classic mistake: (output, per-head weights)."""
    x, w_in, b_in, w_out, b_out = (t.double() for t in (x, w_in, b_in, w_out, b_out))
    q, k, v = (x @ w_in.T + (b_in if in_bias else 0)).chunk(3, dim=-1)
    q, k, v = ((split or reference_split)(t, heads) for t in (q, k, v))
    w = (q @ k.transpose(-2, -1) / math.sqrt(scale or q.shape[-1])).softmax(axis)
    merged = reference_merge(w @ v)
    if project == "no bias":
        return merged @ w_out.T, w
    return (merged @ w_out.T + b_out if project else merged), w


def _forward_judge(case: Case, got, changed) -> None:
    x, w_in, b_in, w_out, b_out, heads = case.inputs()
    batch, seq, d_model = x.shape
    out, w = _forward(x, w_in, b_in, w_out, b_out, heads)

    def unsplit(t, h):
        return t.reshape(batch, h, seq, d_model // h)

    mistakes = [
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, scale=d_model),
            "scores scaled by sqrt(d_model); each head's dot products have d_head terms, so divide by sqrt(d_head)",
        ),
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, project=False),
            "the output projection W_O is missing: apply out_proj weight and bias to the merged heads",
        ),
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, project="no bias"),
            "the output projection's bias is missing",
        ),
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, in_bias=False),
            "the bias of the input projection (in_proj_bias) is missing",
        ),
        (_forward(x, w_in, b_in, w_out, b_out, heads, scale=1.0), "the scores were not scaled: divide by sqrt(d_head)"),
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, split=unsplit),
            "heads split with view and no transpose: view to (batch, seq, heads, d_head), then transpose(1, 2)",
        ),
        (
            _forward(x, w_in, b_in, w_out, b_out, heads, axis=-2),
            "softmax over the wrong axis: over the keys, dim=-1",
        ),
    ]
    output, weights = items(got, 2, what=case.what, names="(output, weights)")
    verify(
        weights,
        w,
        [(mw, hint) for (_, mw), hint in mistakes if "projection" not in hint or "input" in hint]
        + [
            (
                w.mean(dim=1),
                "those are the weights averaged over the heads; return them per head, (batch, heads, q_pos, k_pos)",
            )
        ],
        what=f"{case.what}: the weights",
        site="weights",
        dtype=x.dtype,
        shape_hint="(batch, heads, q_pos, k_pos)",
    )
    verify(
        output,
        out,
        [(mo, hint) for (mo, _), hint in mistakes],
        what=f"{case.what}: the output",
        site="output",
        dtype=x.dtype,
        shape_hint="(batch, seq, d_model)",
    )


multihead_forward = register(
    Exercise(
        LESSON,
        "multihead_forward",
        function="multihead_forward",
        signature="multihead_forward(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads)",
        cases=_forward_cases,
        judge=_forward_judge,
        uses=("split_heads", "merge_heads"),
    )
)


# --- exercise 4: loop_forward ------------------------------------------------------------------------------------


def _head_weights(m: MultiHeadAttention) -> list[dict]:
    """Per-head projection weights cut from a batched module, as the exercise hands them to the learner."""
    w_q, w_k, w_v = m.in_proj.weight.detach().chunk(3)
    b_q, b_k, b_v = m.in_proj.bias.detach().chunk(3)
    rows = [slice(h * m.d_head, (h + 1) * m.d_head) for h in range(m.heads)]
    names = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")
    return [{n: t[r].clone() for n, t in zip(names, (w_q, b_q, w_k, b_k, w_v, b_v))} for r in rows]


def _loop_cases(seed: int) -> list[Case]:
    cases = []
    for i, (spec, x, words) in enumerate(_layer_cases(seed + 1, 2)):
        m = build_mha(**spec.params)
        w_out, b_out = m.out_proj.weight.detach().clone(), m.out_proj.bias.detach().clone()
        cases.append(Case((x, _head_weights(m), w_out, b_out), what=f"loop_forward on {words}", drawn=i >= 5))
    return cases


def _loop_output(x, heads, w_out, b_out, order=None, shared_q=False, project=True):
    outs = []
    for h in order or range(len(heads)):
        p = {k: t.double() for k, t in heads[h].items()}
        first = {k: t.double() for k, t in heads[0].items()}
        wq, bq = (first["W_Q"], first["b_Q"]) if shared_q else (p["W_Q"], p["b_Q"])
        out, _ = reference_attention(x @ wq.T + bq, x @ p["W_K"].T + p["b_K"], x @ p["W_V"].T + p["b_V"])
        outs.append(out)
    concat = torch.cat(outs, dim=-1)
    return concat @ w_out.T + b_out if project else concat


def _loop_judge(case: Case, got, changed) -> None:
    x, heads, w_out, b_out = case.inputs()
    dtype = x.dtype
    x, w_out, b_out = x.double(), w_out.double(), b_out.double()
    n = len(heads)
    verify(
        got,
        _loop_output(x, heads, w_out, b_out),
        [
            (
                _loop_output(x, heads, w_out, b_out, shared_q=True),
                "one W_Q shared by all heads: each head must use its own W_Q (and W_K, W_V)",
            ),
            (
                _loop_output(x, [heads[0]] * n, w_out, b_out),
                "every head used head 0's weights: inside the loop, take head h's own dictionary",
            ),
            (
                _loop_output(x, heads, w_out, b_out, project=False),
                "the output projection W_O is missing: concatenate, then apply it",
            ),
            (
                _loop_output(x, heads, w_out, b_out, order=list(range(n))[::-1]),
                "heads concatenated in the wrong order: head 0 first",
            ),
        ],
        what=case.what,
        dtype=dtype,
        shape_hint="(batch, seq, d_model)",
    )


loop_forward = register(
    Exercise(
        LESSON,
        "loop_forward",
        function="loop_forward",
        signature="loop_forward(x, head_weights, out_proj_weight, out_proj_bias)",
        cases=_loop_cases,
        judge=_loop_judge,
    )
)


# --- exercise 5: load_from_torch ---------------------------------------------------------------------------------


def _load_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    sizes = [(8, 2, "float32"), (12, 3, "float32"), (15, 5, "float64")]
    heads = _int(g, 1, 6)
    sizes.append((heads * _int(g, 2, 7), heads, _pick(g, ["float32", "float64"])))
    cases = []
    for i, (d_model, heads, dtype) in enumerate(sizes):
        module_seed = 2 * i if i < 3 else 1000 + 2 * (seed * 10 + i)
        size = {"d_model": d_model, "heads": heads, "dtype": dtype}
        ours = Build("mha", {**size, "seed": module_seed})
        theirs = Build("torch_mha", {**size, "seed": module_seed + 1})
        what = f"load_from_torch on modules of d_model={d_model}, heads={heads} ({dtype})"
        cases.append(Case((ours, theirs), what=what, drawn=i >= 3))
    return cases


_SOURCES = {
    "in_proj.weight": "in_proj_weight",
    "in_proj.bias": "in_proj_bias",
    "out_proj.weight": "out_proj.weight",
    "out_proj.bias": "out_proj.bias",
}


def _qkv_swapped(mine, source):
    blocks, theirs = mine.chunk(3), source.chunk(3)
    names = ["W_Q", "W_K", "W_V"]
    for i in range(3):
        for j in range(3):
            if i != j and same(blocks[i], theirs[j]):
                return f"{names[j]} block where {names[i]} belongs"
    return None


def _load_judge(case: Case, got, changed) -> None:
    ours, theirs = case.inputs()  # the judge's own copies, as they were before the call
    after = changed.get("ours", {}).get("after", {})
    sources = dict(theirs.named_parameters())
    initial = dict(ours.named_parameters())
    for name, source_name in _SOURCES.items():
        source = sources[source_name].detach()
        mine = after.get(name)
        if not isinstance(mine, torch.Tensor):
            raise CheckFailed(f"ours.{name} is missing after the call", case.what, site=name)
        if mine.shape != source.shape:
            if source.ndim == 2 and mine.shape == source.T.shape:
                raise CheckFailed(
                    f"ours.{name} is transposed: nn.MultiheadAttention stores its weights like nn.Linear, "
                    f"(out_features, in_features), the same layout as ours; copy as is",
                    case.what,
                    site=name,
                )
            raise CheckFailed(f"ours.{name} has shape {tuple(mine.shape)}, expected {tuple(source.shape)}", case.what)
        if same(mine, source, 1e-6):
            continue
        if same(mine, initial[name].detach(), 1e-6):
            raise CheckFailed(f"ours.{name} was not copied: it still holds its initial values", case.what, site=name)
        if source.ndim == 2 and mine.shape[0] == mine.shape[1] and same(mine, source.T, 1e-6):
            raise CheckFailed(
                f"ours.{name} is transposed: nn.MultiheadAttention stores its weights like nn.Linear, "
                f"(out_features, in_features), the same layout as ours; copy as is",
                case.what,
                site=name,
            )
        if name == "in_proj.weight" and (swap := _qkv_swapped(mine, source)):
            raise CheckFailed(
                f"ours.in_proj.weight has the {swap}: its rows are [W_Q; W_K; W_V] in that order, as in "
                f"nn.MultiheadAttention's in_proj_weight",
                case.what,
                site=name,
            )
        verify(mine, source, [], what=f"{case.what}: ours.{name}", site=name, dtype=source.dtype)
    ours.load_state_dict({name: after[name] for name in _SOURCES})  # each checked above to be a tensor of its shape
    x = torch.randn(2, 4, ours.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x.to(ours.in_proj.weight.dtype)
    if not same(ours(x)[0], theirs(x, x, x)[0], 1e-4):
        raise CheckFailed("the weights look copied but the outputs differ from nn.MultiheadAttention's", case.what)


def _explain_load_crash(error: dict, case: Case):
    if error["type"] == "RuntimeError" and "size" in error["message"]:
        return (
            "the shapes do not match: nn.MultiheadAttention stores its weights like nn.Linear, (out_features, "
            "in_features), the same layout as ours; copy them as they are, without .T"
        )
    return None


load_from_torch = register(
    Exercise(
        LESSON,
        "load_from_torch",
        function="load_from_torch",
        signature="load_from_torch(ours, theirs)",
        cases=_load_cases,
        judge=_load_judge,
        mutable=("ours",),
        explain=_explain_load_crash,
    )
)


# --- exercise 6: head_contributions ------------------------------------------------------------------------------


def _contribution_cases(seed: int) -> list[Case]:
    return [
        Case((spec, x), what=f"head_contributions on {words}", drawn=i >= 5)
        for i, (spec, x, words) in enumerate(_layer_cases(seed + 2, 1))
    ]


def _contribution_judge(case: Case, got, changed) -> None:
    m, x = case.inputs()
    m = m.double()
    x = x.double()
    q, k, v = (reference_split(t, m.heads) for t in m.in_proj(x).chunk(3, dim=-1))
    o, _ = reference_attention(q, k, v)  # (batch, heads, seq, d_head)
    W, bias = m.out_proj.weight, m.out_proj.bias
    blocks = [slice(h * m.d_head, (h + 1) * m.d_head) for h in range(m.heads)]
    expected = torch.stack([o[:, h] @ W[:, b].T for h, b in enumerate(blocks)], dim=1)
    rows = torch.stack([o[:, h] @ W[b, :] for h, b in enumerate(blocks)], dim=1)
    verify(
        got,
        expected,
        [
            (expected + bias, "the bias belongs to no head: leave it out (it is added once, after the sum)"),
            (
                expected + bias / m.heads,
                "you shared the bias out among the heads; leave it out (it belongs to no head, added once after the "
                "sum)",
            ),
            (
                rows,
                "you used rows of W_O; head h's block is its columns h*d_head..(h+1)*d_head-1, because out_proj "
                "computes concat @ W_O.T",
            ),
            (
                o,
                "those are the heads' outputs, (batch, heads, seq, d_head); multiply each head's output by its own "
                "block of W_O to get (batch, heads, seq, d_model)",
            ),
        ],
        what=case.what,
        dtype=case.args[1].dtype,
        shape_hint="(batch, heads, seq, d_model): each head's output times its own block of W_O",
    )


head_contributions = register(
    Exercise(
        LESSON,
        "head_contributions",
        function="head_contributions",
        signature="head_contributions(module, x)",
        cases=_contribution_cases,
        judge=_contribution_judge,
        uses=("split_heads",),
    )
)
