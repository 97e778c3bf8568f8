"""Checks for lesson 10, attention without the n × n matrix. Use: `from mha.checks import lesson10 as check`.

Cases vary the rows and features, the blocks (sizes that do not divide the length), the dtype (float32 and float64),
scores large enough that exp overflows without the maximum, blocks whose keys are all masked, causal and not; two are
drawn afresh on every run. The Triton exercise runs the learner's kernel in Triton's interpreter (compiled, on a
machine with a GPU); its judge needs no Triton: it computes what each classic mistake gives in PyTorch.
"""

import math
import os

import torch

from . import Build, Case, CheckFailed, Exercise, builder, items, register, verify

LESSON = "10"
DTYPES = (torch.float32, torch.float64)
NEG_INF = -math.inf


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _randn(g, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _partial(scores, values):
    """(m, l, acc) of a block, in float64: the reference every exercise builds on."""
    m = scores.amax(dim=-1)
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(scores - safe[..., None])
    return m, p.sum(-1), p @ values


def _merge(a, b, *, rescale_acc=True, rescale_l=True, sign=1.0, assume_a=False):
    """The right merge, or a classic mistake (the keywords turn one part of it wrong)."""
    (m_a, l_a, acc_a), (m_b, l_b, acc_b) = a, b
    m = torch.maximum(m_a, m_b)
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    scale_a, scale_b = torch.exp(sign * (m_a - safe)), torch.exp(sign * (m_b - safe))
    if assume_a:  # b rescaled to a's maximum, a left as it is
        scale_a, scale_b = torch.ones_like(m_a), torch.exp(m_b - m_a)
    l = l_a * scale_a + l_b * scale_b if rescale_l else l_a + l_b
    acc = acc_a * scale_a[..., None] + acc_b * scale_b[..., None] if rescale_acc else acc_a + acc_b
    return m, l, acc


# --- exercise 1: merge ---------------------------------------------------------------------------------------------


def _merge_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (rows, keys in a, keys in b, d, dtype, spread of the scores, rows of a with every key masked)
    fixed = [
        (3, 4, 5, 2, torch.float64, 2.0, 0),
        (5, 1, 6, 3, torch.float32, 30.0, 0),  # scores of tens: exp of a score overflows float32 past 88
        (4, 7, 2, 5, torch.float64, 3.0, 2),  # two queries see none of a's keys: m_a = -inf there
        (2, 3, 3, 4, torch.float32, 1.0, 0),
    ]
    drawn = [
        (_int(g, 1, 6), _int(g, 1, 8), _int(g, 1, 8), _int(g, 1, 6), _pick(g, DTYPES), _pick(g, [1.0, 5.0, 40.0]), 0)
        for _ in range(2)
    ]
    cases = []
    for i, (rows, na, nb, d, dtype, spread, empty) in enumerate(fixed + drawn):
        s_a, s_b = _randn(g, rows, na) * spread, _randn(g, rows, nb) * spread
        s_b[: rows // 2] += spread  # b holds the larger maximum in some rows, a in others
        if empty:
            s_a[:empty] = NEG_INF
        v_a, v_b = _randn(g, na, d), _randn(g, nb, d)
        a = tuple(t.to(dtype) for t in _partial(s_a, v_a))
        b = tuple(t.to(dtype) for t in _partial(s_b, v_b))
        what = f"merge of two partial results over {rows} queries ({na} and {nb} keys, d {d}, {_name(dtype)}"
        what += f", {empty} queries with every key of a masked)" if empty else ")"
        cases.append(Case((a, b), what=what, drawn=i >= len(fixed)))
    return cases


def _merge_judge(case: Case, got, changed) -> None:
    a, b = case.inputs()
    dtype = a[0].dtype
    a64, b64 = tuple(t.double() for t in a), tuple(t.double() for t in b)
    m, l, acc = _merge(a64, b64)
    got_m, got_l, got_acc = items(got, 3, what=case.what, names="(m, l, acc)")
    mistakes = {  # in the inputs' dtype, as the learner computes them: a mistake that overflows float32 does here too
        "acc": _merge(a, b, rescale_acc=False)[2].double(),
        "l": _merge(a, b, rescale_l=False)[1].double(),
        "sign_l": _merge(a, b, sign=-1.0)[1].double(),
        "assume_l": _merge(a, b, assume_a=True)[1].double(),
    }
    verify(
        got_m,
        m,
        [
            (a64[0], "m is the larger of the two maxima, row by row: torch.maximum(m_a, m_b)"),
            (b64[0], "m is the larger of the two maxima, row by row: torch.maximum(m_a, m_b)"),
            (a64[0] + b64[0], "m is the larger of the two maxima, not their sum: torch.maximum(m_a, m_b)"),
        ],
        what=f"{case.what}: m",
        site="m",
        dtype=dtype,
        shape_hint="(rows,): one maximum per query",
    )
    verify(
        got_l,
        l,
        [
            (
                mistakes["l"],
                "each sum was taken against its own maximum: multiply l_a by exp(m_a - m) and l_b by "
                "exp(m_b - m) before adding",
            ),
            (mistakes["sign_l"], "the factors are exp(m_a - m) and exp(m_b - m), at most 1: the sign is reversed"),
            (
                mistakes["assume_l"],
                "you rescaled b to a's maximum, as if a always held the larger one: rescale both to "
                "m = max(m_a, m_b), row by row",
            ),
        ],  # fmt: skip
        what=f"{case.what}: l",
        site="l",
        dtype=dtype,
        shape_hint="(rows,): one sum per query",
    )
    verify(
        got_acc,
        acc,
        [
            (mistakes["acc"], "acc needs the same rescaling as l: acc_a · exp(m_a - m) + acc_b · exp(m_b - m)"),
            (acc / l[..., None], "return the partial result, acc unnormalised: dividing by l comes once, at the end"),
        ],
        what=f"{case.what}: acc",
        site="acc",
        dtype=dtype,
        shape_hint="(rows, d): one weighted sum of values per query",
    )


merge = register(
    Exercise(LESSON, "merge", function="merge", signature="merge(a, b)", cases=_merge_cases, judge=_merge_judge)
)


# --- exercise 2: tile_step -------------------------------------------------------------------------------------


def _step(m, l, acc, q, k, v, mistake: str = ""):
    """One step of the forward loop, right or with a classic mistake, in the inputs' dtype."""
    d = q.shape[-1]
    scale = {"unscaled": 1.0, "by d": 1 / d}.get(mistake, 1 / math.sqrt(d))
    s = q @ k.transpose(-2, -1) * scale
    m_new = torch.maximum(m, s.amax(dim=-1))
    safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    reference = m if mistake == "old max" else safe
    p = torch.exp(s - torch.where(torch.isinf(reference), torch.zeros_like(reference), reference)[..., None])
    alpha = torch.exp(m - safe)
    if mistake == "acc":
        acc_new = acc + p @ v
    else:
        acc_new = acc * alpha[..., None] + p @ v
    if mistake == "l":
        l_new = l + p.sum(-1)
    elif mistake == "twice":
        l_new = l * alpha * alpha + p.sum(-1)
    else:
        l_new = l * alpha + p.sum(-1)
    if mistake == "normalised":
        acc_new = acc_new / l_new[..., None]
    return m_new, l_new, acc_new


def _step_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (rows, keys before, keys in the block, d, d_v, dtype, spread): keys before = 0 is the first block
    fixed = [
        (3, 5, 4, 4, 3, torch.float64, 2.0),
        (4, 0, 6, 3, 2, torch.float32, 1.0),  # the first block: m = -inf, l = 0, acc = 0
        (2, 7, 3, 5, 4, torch.float64, 20.0),  # large scores: the maximum must move
        (5, 2, 8, 6, 5, torch.float32, 3.0),
    ]
    drawn = [
        (_int(g, 1, 5), _int(g, 0, 8), _int(g, 1, 8), _int(g, 2, 7), _int(g, 1, 5), _pick(g, DTYPES), 4.0)
        for _ in range(2)
    ]
    cases = []
    for i, (rows, before, n, d, d_v, dtype, spread) in enumerate(fixed + drawn):
        q = _randn(g, rows, d) * math.sqrt(spread)
        k_old, k = _randn(g, before, d) * math.sqrt(spread), _randn(g, n, d) * math.sqrt(spread)
        v_old, v = _randn(g, before, d_v), _randn(g, n, d_v)
        if before:
            m, l, acc = _partial(q @ k_old.T / math.sqrt(d), v_old)
        else:
            m, l, acc = torch.full((rows,), NEG_INF, dtype=torch.float64), torch.zeros(rows, dtype=torch.float64), \
                torch.zeros(rows, d_v, dtype=torch.float64)  # fmt: skip
        args = tuple(t.to(dtype) for t in (m, l, acc, q, k, v))
        what = (
            f"tile_step with {rows} queries (d {d}), a block of {n} keys, after {before} keys seen "
            f"({'the first block' if not before else 'a later block'}), {_name(dtype)}"
        )
        cases.append(Case(args, what=what, drawn=i >= len(fixed)))
    return cases


def _step_judge(case: Case, got, changed) -> None:
    inputs = case.inputs()
    dtype = inputs[0].dtype
    right = _step(*(t.double() for t in inputs))
    wrong = {  # in the inputs' dtype, as the learner computes them
        name: [t.double() for t in _step(*inputs, name)]
        for name in ("acc", "l", "twice", "old max", "normalised", "unscaled", "by d")
    }
    hints = {
        "acc": "the accumulator was not rescaled: acc · exp(m - m_new) + P V",
        "l": "the running sum was not rescaled: l · exp(m - m_new) + rowsum(P)",
        "twice": "the running sum was rescaled twice: multiply l by exp(m - m_new) once",
        "old max": "P used the old maximum: exponentiate S - m_new, the maximum after this block",
        "normalised": "you normalised inside the loop: return acc unnormalised, divide by l once after the last block",
        "unscaled": "the scores were not scaled: S = q kᵀ / sqrt(d_head)",
        "by d": "you divided the scores by d_head; divide by its square root",
    }
    got_m, got_l, got_acc = items(got, 3, what=case.what, names="(m, l, acc)")
    changes = {  # the mistakes that can change each part of the result
        "m": ("unscaled", "by d"),
        "l": ("l", "twice", "old max", "unscaled", "by d"),
        "acc": ("acc", "old max", "normalised", "unscaled", "by d"),
    }
    for site, index, shape_hint in (("m", 0, "(rows,)"), ("l", 1, "(rows,)"), ("acc", 2, "(rows, d_v)")):
        verify(
            (got_m, got_l, got_acc)[index],
            right[index],
            [(wrong[name][index], hints[name]) for name in changes[site]],
            what=f"{case.what}: {site}",
            site=site,
            dtype=dtype,
            shape_hint=shape_hint,
        )


tile_step = register(
    Exercise(
        LESSON,
        "tile_step",
        function="tile_step",
        signature="tile_step(m, l, acc, q, k, v)",
        cases=_step_cases,
        judge=_step_judge,
        uses=("merge",),
    )
)


# --- exercise 3: causal key blocks ---------------------------------------------------------------------------------


def _blocks(q_start, q_end, k_pos, block_k, mistake: str = ""):
    """(blocks to visit, blocks to mask) for queries q_start..q_end-1: right, or a classic mistake."""
    starts = list(range(0, k_pos, block_k))
    last = q_end - 1
    if mistake == "visit strict":
        visit = [s for s in starts if s < last]
    elif mistake == "visit all":
        visit = starts
    elif mistake == "visit by first":
        visit = [s for s in starts if s <= q_start]
    else:
        visit = [s for s in starts if s <= last]

    def end(s):
        return s + block_k if mistake == "no clip" else min(s + block_k, k_pos)

    if mistake == "mask by last":
        masked = [s for s in visit if end(s) - 1 > last]
    elif mistake == "mask inclusive":
        masked = [s for s in visit if end(s) - 1 >= q_start]
    elif mistake == "mask all":
        masked = list(visit)
    else:
        masked = [s for s in visit if end(s) - 1 > q_start]
    return visit, masked


def _blocks_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (q_start, q_end, k_pos, block_k)
    fixed = [
        (8, 16, 20, 4),  # a block starting exactly at the last query, one beyond it
        (0, 1, 10, 4),  # the first query: one block, masked
        (4, 8, 5, 4),  # the last block holds one key, seen whole
        (6, 11, 30, 3),  # blocks that end exactly at the first query
        (12, 18, 14, 5),  # more queries than keys: the last block is cut short
        (6, 10, 6, 4),  # the last block, cut short, ends before the first query: seen whole
        (3, 9, 40, 6),
    ]
    drawn = []
    for _ in range(2):
        block = _int(g, 1, 8)
        q_start = _int(g, 0, 30)
        drawn.append((q_start, q_start + _int(g, 1, 12), _int(g, 1, 50), block))
    cases = []
    for i, (q_start, q_end, k_pos, block_k) in enumerate(fixed + drawn):
        what = f"key_blocks for queries {q_start}..{q_end - 1}, {k_pos} keys in blocks of {block_k}"
        cases.append(Case((q_start, q_end, k_pos, block_k), what=what, drawn=i >= len(fixed)))
    return cases


def _as_list(got, what: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in got]
    except (TypeError, ValueError):
        raise CheckFailed(
            f"{name} must be a list of block starts (whole numbers), got {type(got).__name__}", what
        ) from None
    if any(float(x) != int(x) for x in got):
        raise CheckFailed(f"{name} must hold whole numbers (the first key of each block), got {list(got)}", what)
    return values


def _blocks_judge(case: Case, got, changed) -> None:
    q_start, q_end, k_pos, block_k = case.inputs()
    right = _blocks(q_start, q_end, k_pos, block_k)
    got_visit, got_masked = items(got, 2, what=case.what, names="(visit, masked)")
    visit = _as_list(got_visit, case.what, "visit")
    masked = _as_list(got_masked, case.what, "masked")
    wrong_visit = {
        "visit strict": "a block that starts at the last query holds a key it sees: visit blocks with start <= the "
        "last query (q_end - 1)",
        "visit all": "blocks that start after the last query hold no key any query sees: skip them",
        "visit by first": "the last query sees further than the first: visit blocks that start at or before the last "
        "query (q_end - 1)",
    }
    wrong_masked = {
        "mask by last": "a block needs the mask when its last key comes after the *first* query (some query cannot "
        "see it), not the last",
        "mask inclusive": "a block whose last key is the first query itself is seen whole by every query: mask only "
        "when the last key is after it (>, not >=)",
        "mask all": "only the blocks that hold a key after some query need the mask; the ones before are seen whole",
        "no clip": "the last block stops at k_pos: its last key is min(start + block_k, k_pos) - 1",
    }
    _compare_lists(
        visit, right[0], [(_blocks(q_start, q_end, k_pos, block_k, m)[0], h) for m, h in wrong_visit.items()],
        f"{case.what}: visit", "visit",
    )  # fmt: skip
    _compare_lists(
        masked, right[1], [(_blocks(q_start, q_end, k_pos, block_k, m)[1], h) for m, h in wrong_masked.items()],
        f"{case.what}: masked", "masked",
    )  # fmt: skip


def _compare_lists(got: list, expected: list, mistakes, what: str, site: str) -> None:
    from .compare import _passed

    if got == expected:
        _passed(site, {h for w, h in mistakes if w == expected})
        return
    if sorted(got) == expected:
        raise CheckFailed(f"the right blocks, {got}, but not in increasing order: return them sorted", what, [], site)
    matches = [h for w, h in mistakes if sorted(got) == w]
    raise CheckFailed(f"got the blocks starting at {got}, expected {expected}", what, matches, site)


key_blocks = register(
    Exercise(
        LESSON,
        "key_blocks",
        function="key_blocks",
        signature="key_blocks(q_start, q_end, k_pos, block_k)",
        cases=_blocks_cases,
        judge=_blocks_judge,
    )
)


# --- exercise 4: the backward from the log-sum-exp -----------------------------------------------------------------


def _backward(q, k, v, d_out, mistake: str = ""):
    """(dq, dk, dv) of softmax attention, one head, no mask, from the log-sum-exp; or a classic mistake."""
    scale = 1 / math.sqrt(q.shape[-1])
    s = q @ k.transpose(-2, -1) * (1.0 if mistake == "unscaled P" else scale)
    lse = torch.logsumexp(q @ k.transpose(-2, -1) * scale, dim=-1)
    p = torch.exp(s - lse[..., None])
    out = p @ v
    dv = p.transpose(-2, -1) @ d_out
    dp = d_out @ v.transpose(-2, -1)
    delta = d_out.sum(-1) if mistake == "D of dO" else (d_out * out).sum(-1)
    ds = p * dp if mistake == "no D" else p * (dp - delta[..., None])
    factor = 1.0 if mistake == "no scale" else scale
    return ds @ k * factor, ds.transpose(-2, -1) @ q * factor, dv


def _backward_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (q_pos, k_pos, d, d_v, dtype)
    fixed = [
        (4, 6, 5, 3, torch.float64),
        (3, 3, 4, 4, torch.float32),
        (6, 2, 3, 5, torch.float64),
        (1, 5, 8, 2, torch.float32),
    ]
    drawn = [(_int(g, 1, 7), _int(g, 1, 7), _int(g, 2, 8), _int(g, 1, 6), _pick(g, DTYPES)) for _ in range(2)]
    cases = []
    for i, (q_pos, k_pos, d, d_v, dtype) in enumerate(fixed + drawn):
        q, k = _randn(g, q_pos, d), _randn(g, k_pos, d)
        v, d_out = _randn(g, k_pos, d_v), _randn(g, q_pos, d_v)
        lse = torch.logsumexp(q @ k.T / math.sqrt(d), dim=-1)
        out = torch.softmax(q @ k.T / math.sqrt(d), dim=-1) @ v
        args = tuple(t.to(dtype) for t in (q, k, v, out, lse, d_out))
        what = f"attention_backward for {q_pos} queries and {k_pos} keys, d_head {d}, d_v {d_v}, {_name(dtype)}"
        cases.append(Case(args, what=what, drawn=i >= len(fixed)))
    return cases


def _backward_judge(case: Case, got, changed) -> None:
    inputs = case.inputs()
    dtype = inputs[0].dtype
    q, k, v, out, lse, d_out = inputs
    right = _backward(q.double(), k.double(), v.double(), d_out.double())
    hints = {
        "no D": "dS = P ∘ (dP - D), with D = rowsum(dO ∘ O): without D the gradient of the softmax is wrong",
        "D of dO": "D is rowsum(dO ∘ O), the output's gradient times the output, summed over features",
        "no scale": "S was scaled by 1/sqrt(d_head): dQ = dS K / sqrt(d_head) and dK = dSᵀ Q / sqrt(d_head)",
        "unscaled P": "recompute P from the scaled scores: P = exp(q kᵀ / sqrt(d_head) - lse)",
    }
    wrong = {name: [t.double() for t in _backward(q, k, v, d_out, name)] for name in hints}  # in the inputs' dtype
    got = items(got, 3, what=case.what, names="(dq, dk, dv)")
    changes = {"dv": ("unscaled P",), "dq": tuple(hints), "dk": tuple(hints)}
    for index, site, shape_hint in ((2, "dv", "(k_pos, d_v), like v"), (0, "dq", "(q_pos, d_head), like q"),
                                    (1, "dk", "(k_pos, d_head), like k")):  # fmt: skip
        verify(
            got[index],
            right[index],
            [(wrong[name][index], hints[name]) for name in changes[site]],
            what=f"{case.what}: {site}",
            site=site,
            dtype=dtype,
            shape_hint=shape_hint,
        )


attention_backward = register(
    Exercise(
        LESSON,
        "attention_backward",
        function="attention_backward",
        signature="attention_backward(q, k, v, out, lse, d_out)",
        cases=_backward_cases,
        judge=_backward_judge,
    )
)


# --- exercise 5: the inner loop of the Triton kernel ----------------------------------------------------------------

BLOCK = 16  # the launcher's block, fixed in the exercise's skeleton


def kernel_device() -> str:
    """Where the Triton exercise's tensors go: the GPU when Triton compiles for it, else the CPU (its interpreter)."""
    compiled = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
    return "cuda" if compiled else "cpu"


@builder("kernel_input")
def _kernel_input(seq: int, d: int, seed: int, which: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(seq, d, generator=g) * scale for _ in range(3)]
    return tensors[which].to(kernel_device())


def _blocked(q, k, v, mistake: str = ""):
    """What a one-head kernel with blocks of BLOCK keys computes, right or with a classic mistake, in float64."""
    seq, d = q.shape
    scale = 1.0 if mistake == "unscaled" else 1 / math.sqrt(d)
    if mistake in ("unmasked", "off by one"):  # missing keys load as zeros (scores 0, values 0) and are counted
        pad = -seq % BLOCK if mistake == "unmasked" else min(1, -seq % BLOCK)  # all of them, or key `seq` alone
        k = torch.cat([k, k.new_zeros(pad, d)])
        v = torch.cat([v, v.new_zeros(pad, d)])
    m = torch.full((seq,), NEG_INF, dtype=q.dtype)
    l, acc = torch.zeros(seq, dtype=q.dtype), torch.zeros(seq, d, dtype=q.dtype)
    for start in range(0, k.shape[0], BLOCK):
        s = q @ k[start : start + BLOCK].T * scale
        m_new = torch.maximum(m, s.amax(-1))
        p = torch.exp(s - m_new[:, None])
        alpha = torch.exp(m - m_new)
        l = (l if mistake == "l" else l * alpha) + p.sum(-1)
        acc = (acc if mistake == "acc" else acc * alpha[:, None]) + p @ v[start : start + BLOCK]
        if mistake == "normalised":  # divided inside the loop; the skeleton divides once more after it
            acc = acc / l[:, None]
        m = m if mistake == "m kept" else m_new
    return acc / l[:, None]


def _kernel_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (seq, d, scale of q and k): lengths below, at and past the block, none a multiple but one
    fixed = [(20, 16, 1.0), (7, 32, 2.0), (33, 16, 3.0), (16, 16, 1.0), (45, 32, 1.5)]
    drawn = [(_int(g, 1, 50), _pick(g, [16, 32]), _pick(g, [1.0, 2.0, 3.0])) for _ in range(2)]
    cases = []
    for i, (seq, d, scale) in enumerate(fixed + drawn):
        case_seed = seed * 100 + i
        args = tuple(Build("kernel_input", {"seq": seq, "d": d, "seed": case_seed, "which": w, "scale": scale})
                     for w in range(3))  # fmt: skip
        what = (
            f"triton_attention on q, k, v ({seq}, {d}) float32 ({'not ' if seq % BLOCK else ''}a multiple of the block)"
        )
        cases.append(Case(args, what=what, drawn=i >= len(fixed)))
    return cases


def _kernel_judge(case: Case, got, changed) -> None:
    q, k, v = (t.cpu().double() for t in case.inputs())
    hints = {
        "acc": "the accumulator was not rescaled: acc = acc * alpha[:, None] + tl.dot(p, v)",
        "l": "the running sum was not rescaled: l = l * alpha + tl.sum(p, 1)",
        "normalised": "you normalised inside the loop: the skeleton divides acc by l once, after it",
        "unmasked": "the last block's missing keys load as zeros and still get weight: set their scores to -inf with "
        "tl.where(keys[None, :] < seq, s, float('-inf'))",
        "unscaled": "the scores were not scaled: s = tl.dot(q, tl.trans(k)) * scale",
        "off by one": "off by one: the keys of the sequence are 0..seq-1, so mask keys[None, :] < seq (not <= seq)",
        "m kept": "m must become m_new at the end of each step: the next block's rescaling is against it",
    }
    verify(
        got,
        _blocked(q, k, v),
        [(_blocked(q, k, v, name), hint) for name, hint in hints.items()],
        what=case.what,
        dtype=torch.float32,
        shape_hint="(seq, d): one output per query",
    )


def _explain_kernel(error: dict, case: Case):
    message = error["message"]
    if "Cannot call @triton.jit" in message or "interpreter" in message.lower():
        return (
            "Triton must run in its interpreter on a CPU: run the notebook's first cell (it imports mha.flash.kernel "
            "before triton) after restarting the kernel"
        )
    if error["type"] in ("ModuleNotFoundError", "ImportError") and "triton" in message:
        return "Triton is not installed here (it has wheels for Linux on x86-64 only): use the course's JupyterHub"
    return None


triton_attention = register(
    Exercise(
        LESSON,
        "triton_attention",
        function="triton_attention",
        signature="triton_attention(q, k, v)",
        cases=_kernel_cases,
        judge=_kernel_judge,
        explain=_explain_kernel,
        time_limit=30.0,  # the interpreter runs one program after another: about a second per case
    )
)
