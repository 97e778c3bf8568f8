"""Checks for lesson 11, heads that work together. Use: `from mha.checks import lesson11 as check`.

Cases vary the patterns and their periods (one sequence to four, periods 2 to 7, several earlier occurrences of a
token or none), the sizes (batch, layers, heads, seq, d_model: in the fixed cases no two coincide), float32 and
float64; two are drawn on every run. Models and layers are built from plain specs (`Build`: "lesson11_model",
"lesson11_layer"), the same in the learner's process and the judge's.
"""

import torch

from .._portable import seeded
from ..circuits.scores import composition_score, head_terms, ov_matrix, qk_matrix
from ..multihead import MultiHeadAttention
from ..toy.models import AttentionOnlyConfig, build_model
from . import Build, Case, CheckFailed, Exercise, builder, items, register, verify, verify_number

LESSON = "11"
DTYPES = (torch.float32, torch.float64)


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250111)


def _causal_weights(g, *lead, seq: int, dtype=torch.float32) -> torch.Tensor:
    """Random weights of a causal head: each row a distribution over the keys up to the query."""
    scores = torch.randn(*lead, seq, seq, generator=g, dtype=torch.float64) * 2
    scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1).to(dtype)


def _pattern(g, period: int, vocab: int = 30) -> list[int]:
    """`period` distinct tokens."""
    return torch.randperm(vocab, generator=g)[:period].tolist()


# --- exercise 1: repeat_batch ------------------------------------------------------------------------------------


def _repeat_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    fixed = [
        ([[3, 1, 4], [2, 7, 1, 8, 5]], 11),  # batch 2, periods 3 and 5, seq 11
        ([[5, 0, 2, 6]], 9),  # batch 1, period 4, seq 9
        ([[1, 2], [9, 4, 6, 3, 7, 0], [8, 5, 2, 6]], 14),  # batch 3, periods 2, 6, 4, seq 14
    ]
    drawn = []
    for _ in range(2):
        periods = [_int(g, 2, 7) for _ in range(_int(g, 1, 4))]
        drawn.append(([_pattern(g, p) for p in periods], _int(g, max(periods) + 2, 20)))
    return [
        Case(
            (patterns, seq),
            what=f"repeat_batch(patterns with periods {[len(p) for p in patterns]}, seq={seq})",
            drawn=i >= len(fixed),
        )
        for i, (patterns, seq) in enumerate(fixed + drawn)
    ]


def _tiled(patterns, seq, index=lambda i, p, seq: i % p) -> torch.Tensor:
    return torch.tensor([[pattern[index(i, len(pattern), seq)] for i in range(seq)] for pattern in patterns])


def _from(patterns, seq, start=lambda p: p, stop=None) -> torch.Tensor:
    """(batch, seq) bool: True at start(p) <= i < stop (default seq - 1)."""
    stop = seq - 1 if stop is None else stop
    return torch.tensor([[start(len(p)) <= i < stop for i in range(seq)] for p in patterns])


def _repeat_judge(case: Case, got, changed) -> None:
    patterns, seq = case.inputs()
    tokens, where = items(got, 2, what=case.what, names="(tokens, predictable)")
    verify(
        tokens,
        _tiled(patterns, seq),
        [
            (
                _tiled(patterns, seq, lambda i, p, seq: min(i // -(-seq // p), p - 1)),
                "each token was repeated in place (a, a, b, b, ...: repeat_interleave); the whole pattern repeats, "
                "a, b, c, a, b, c, ...",
            ),
        ],
        what=case.what,
        site="tokens",
        shape_hint="(batch, seq): one row per pattern, seq tokens each",
    )
    first = len(patterns[0])
    verify(
        where,
        _from(patterns, seq),
        [
            (
                _from(patterns, seq, lambda p: p - 1),
                "off by one: at position period - 1 the token is the last of the first period, seen for the first "
                "time; the first predictable position is i = period, where the pattern starts again",
            ),
            (
                _from(patterns, seq, lambda p: p + 1),
                "off by one: position i = period already repeats the token at 0, so its next token is known; start "
                "there",
            ),
            (
                _from(patterns, seq, stop=seq),
                "the last position has no next token to predict: it is never predictable",
            ),
            (
                ~_from(patterns, seq, stop=seq),
                "inverted: True marks the positions whose token occurred before (i >= period), not the first period",
            ),
            (
                _from(patterns, seq, lambda p: first),
                "every sequence has its own period: use the length of its own pattern",
            ),
        ],
        what=case.what,
        site="predictable",
        shape_hint="(batch, seq), one boolean per position",
    )


repeat_batch = register(
    Exercise(
        LESSON,
        "repeat_batch",
        function="repeat_batch",
        signature="repeat_batch(patterns, seq)",
        cases=_repeat_cases,
        judge=_repeat_judge,
    )
)


# --- exercise 2: previous_token_scores ---------------------------------------------------------------------------


def _weight_cases(seed: int, name: str) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [((2, 3, 4), 5, torch.float32), ((3, 2, 5), 7, torch.float64), ((1, 2, 3), 6, torch.float32)]
    for _ in range(2):
        setups.append(((_int(g, 1, 4), _int(g, 1, 3), _int(g, 1, 5)), _int(g, 3, 10), _pick(g, DTYPES)))
    cases = []
    for i, (lead, seq, dtype) in enumerate(setups):
        w = _causal_weights(fixed if i < 3 else g, *lead, seq=seq, dtype=dtype)
        what = f"{name} on weights {tuple(w.shape)} {_name(dtype)} (batch, layers, heads, seq, seq)"
        cases.append(Case((w,), what=what, drawn=i >= 3))
    return cases


def _previous_judge(case: Case, got, changed) -> None:
    (w,) = case.inputs()
    w64 = w.double()
    seq = w.shape[-1]
    below = w64.diagonal(offset=-1, dim1=-2, dim2=-1)  # (batch, layers, heads, seq - 1): entries (i, i - 1)
    verify(
        got,
        below.mean(-1).mean(0),
        [
            (
                w64.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1).mean(0),
                "that is the next token (entries (i, i+1)), which a causal head never sees; the previous token of "
                "query i is key i-1: diagonal(offset=-1)",
            ),
            (w64.diagonal(dim1=-2, dim2=-1).mean(-1).mean(0), "that is each query's weight on itself (the diagonal)"),
            (
                (below.sum(-1) / seq).mean(0),
                "you divided by seq; the first query has no previous token: average over the seq-1 queries that "
                "have one",
            ),
            (below.sum(-1).mean(0), "that is a sum over the queries; take their mean"),
            (below.mean(-1).sum(0), "that is a sum over the batch; take the mean over the sequences"),
            (below.mean(-1), "one score per head: average over the batch too (dimension 0)"),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(layers, heads): the mean over the batch and over the queries of the weight on key i-1",
    )


previous_token_scores = register(
    Exercise(
        LESSON,
        "previous_token_scores",
        function="previous_token_scores",
        signature="previous_token_scores(weights)",
        cases=lambda seed: _weight_cases(seed, "previous_token_scores"),
        judge=_previous_judge,
    )
)


# --- exercise 3: induction_scores --------------------------------------------------------------------------------


def _induction_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    # repeated patterns (periods 3 and 5), a few tokens drawn from 4 (many earlier occurrences), and sequences without
    # any repeat next to repeated ones
    tokens = [
        torch.tensor([[3, 1, 4, 3, 1, 4, 3, 1], [2, 7, 1, 8, 5, 2, 7, 1]]),
        torch.randint(4, (3, 9), generator=fixed),
        torch.tensor([[0, 1, 2, 3, 4, 5], [6, 2, 9, 6, 2, 9], [8, 3, 8, 3, 8, 3], [5, 4, 7, 1, 0, 2]]),
    ]
    lead = [(1, 3), (2, 4), (2, 1)]  # (layers, heads)
    dtypes = [torch.float32, torch.float64, torch.float32]
    for _ in range(2):
        batch, seq = _int(g, 1, 4), _int(g, 4, 10)
        if bool(torch.rand((), generator=g) < 0.5):
            tokens.append(torch.randint(_int(g, 2, 6), (batch, seq), generator=g))
        else:
            tokens.append(
                torch.stack([torch.tensor(_pattern(g, _int(g, 2, 4))).repeat(seq)[:seq] for _ in range(batch)])
            )
        lead.append((_int(g, 1, 3), _int(g, 1, 4)))
        dtypes.append(_pick(g, DTYPES))
    cases = []
    for i, (t, (layers, heads), dtype) in enumerate(zip(tokens, lead, dtypes)):
        if not _after_earlier(t).any():  # a drawn case with no repeat at all: make the first token come back
            t[:, -1] = t[:, 0]
        w = _causal_weights(fixed if i < 3 else g, t.shape[0], layers, heads, seq=t.shape[1], dtype=dtype)
        what = f"induction_scores on weights {tuple(w.shape)} {_name(dtype)} and tokens {t.tolist()}"
        cases.append(Case((w, t), what=what, drawn=i >= 3))
    return cases


def _earlier(t: torch.Tensor) -> torch.Tensor:
    """(batch, q, k): tokens[k] == tokens[q] and k < q."""
    seq = t.shape[1]
    return (t[:, :, None] == t[:, None, :]) & torch.ones(seq, seq, dtype=torch.bool).tril(-1)


def _shift(mask: torch.Tensor, by: int) -> torch.Tensor:
    """Move each mark `by` keys to the right (negative: to the left), dropping what falls off."""
    out = torch.zeros_like(mask)
    if by >= 0:
        out[..., by:] = mask[..., : mask.shape[-1] - by]
    else:
        out[..., :by] = mask[..., -by:]
    return out


def _after_earlier(t: torch.Tensor) -> torch.Tensor:
    return _shift(_earlier(t), 1)


def _only(mask: torch.Tensor, which: str) -> torch.Tensor:
    """Keep, in each row, only the first or the last True."""
    keys = torch.arange(mask.shape[-1])
    big = mask.shape[-1]
    if which == "last":
        pick = torch.where(mask, keys, -1).max(dim=-1).values
    else:
        pick = torch.where(mask, keys, big).min(dim=-1).values
    return mask & (keys == pick[..., None])


def _score(w: torch.Tensor, targets: torch.Tensor, over: torch.Tensor | None = None, per_sequence: str = ""):
    """Mean over the queries in `over` (default: those with a target) of the weight on the targets; (layers, heads).

    per_sequence: "" (pooled, the right way), or the mean within each sequence first, then over the sequences, a
    sequence with no such query being "skipped", "nan" (0 / 0) or "zero".
    """
    over = targets.any(-1) if over is None else over  # (batch, q)
    on = (w * targets[:, None, None].to(w.dtype)).sum(-1)  # (batch, layers, heads, q)
    if per_sequence:
        count = over.sum(-1)[:, None, None]  # (batch, 1, 1)
        total = (on * over[:, None, None]).sum(-1)  # (batch, layers, heads)
        if per_sequence == "nan":
            return (total / count).mean(0)
        per = total / count.clamp(min=1)
        return per.mean(0) if per_sequence == "zero" else per[over.any(-1)].mean(0)
    return (on * over[:, None, None]).sum(dim=(0, -1)) / over.sum()


def _induction_judge(case: Case, got, changed) -> None:
    w, t = case.inputs()
    w64 = w.double()
    earlier = _earlier(t)
    targets = _shift(earlier, 1)
    has = targets.any(-1)
    verify(
        got,
        _score(w64, targets),
        [
            (
                _score(w64, earlier),
                "off by one: that is the weight on the earlier occurrence itself (a duplicate-token head); the "
                "induction head looks one position after it, at k + 1",
            ),
            (
                _score(w64, _shift(earlier, -1), over=has),
                "off by one: you looked one position before the earlier occurrence (k - 1); look one after it (k + 1)",
            ),
            (
                _score(w64, targets, over=torch.ones_like(has)),
                "you averaged over every query; only the queries whose token occurred before have such a position: "
                "average over those",
            ),
            (
                _score(w64, targets, per_sequence="skipped"),
                "you averaged within each sequence first, then over the sequences; average over every query that "
                "has an earlier occurrence, of every sequence, together",
            ),
            (
                _score(w64, targets, per_sequence="nan"),
                "you averaged within each sequence first, then over the sequences: a sequence whose tokens never "
                "repeat has no such query, so its mean is 0 / 0 = nan, and the mean over the batch with it; average "
                "over every query that has an earlier occurrence, of every sequence, together",
            ),
            (
                _score(w64, targets, per_sequence="zero"),
                "you averaged within each sequence first, then over the sequences, counting a sequence whose tokens "
                "never repeat as 0; average over every query that has an earlier occurrence, of every sequence, "
                "together",
            ),
            (
                _score(w64, _shift(_only(earlier, "last"), 1)),
                "you counted only the most recent earlier occurrence; with several, add the weight on the position "
                "after each of them",
            ),
            (
                _score(w64, _shift(_only(earlier, "first"), 1)),
                "you counted only the first earlier occurrence; with several, add the weight on the position after "
                "each of them",
            ),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(layers, heads): one score per head, averaged over the batch and the queries",
    )


induction_scores = register(
    Exercise(
        LESSON,
        "induction_scores",
        function="induction_scores",
        signature="induction_scores(weights, tokens)",
        cases=_induction_cases,
        judge=_induction_judge,
    )
)


# --- exercise 4: ablated_logits ----------------------------------------------------------------------------------


@builder("lesson11_model")
def build_lesson11_model(layers: int, heads: int, d_model: int, vocab: int, seq: int, seed: int, dtype: str):
    """An untrained attention-only model of several layers (the learner's random state untouched)."""
    config = AttentionOnlyConfig(vocab, seq, d_model, heads, relations=1, layers=layers)
    return build_model(config, seed, getattr(torch, dtype))


def _ablation_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # (layers, heads, d_model, vocab, batch, seq, layer, head, dtype)
    setups = [
        (2, 3, 12, 11, 4, 7, 1, 0, "float32"),
        (3, 2, 8, 9, 5, 6, 0, 1, "float64"),
        (2, 4, 16, 13, 3, 9, 0, 3, "float32"),
    ]
    for _ in range(2):
        layers, heads = _int(g, 2, 3), _int(g, 1, 4)
        setups.append(
            (
                layers,
                heads,
                heads * _int(g, 2, 4),
                _int(g, 5, 12),
                _int(g, 1, 4),
                _int(g, 3, 8),
                _int(g, 0, layers - 1),
                _int(g, 0, heads - 1),
                _pick(g, ["float32", "float64"]),
            )
        )
    cases = []
    for i, (layers, heads, d_model, vocab, batch, seq, layer, head, dtype) in enumerate(setups):
        model_seed = i if i < 3 else 1000 + 1000 * seed + i
        spec = {
            "layers": layers,
            "heads": heads,
            "d_model": d_model,
            "vocab": vocab,
            "seq": seq,
            "seed": model_seed,
            "dtype": dtype,
        }
        tokens = torch.randint(vocab, (batch, seq), generator=torch.Generator().manual_seed(model_seed))
        what = (
            f"ablated_logits(model, tokens {tuple(tokens.shape)}, layer={layer}, head={head}) on a model of {layers} "
            f"layers x {heads} heads, d_model {d_model}, {dtype}"
        )
        cases.append(Case((Build("lesson11_model", spec), tokens, layer, head), what=what, drawn=i >= 3))
    return cases


def _forward(model, tokens, drop=lambda i, terms: terms, bias=True, residual=True) -> torch.Tensor:
    """The model's logits (batch, seq, vocab), each layer's head terms passed through `drop(layer, terms)`."""
    x = model.embed(tokens)
    for i, attention in enumerate(model.layers):
        terms = drop(i, head_terms(attention, x))  # (batch, heads, seq, d_model), removed heads zeroed
        added = terms.sum(dim=1) + (attention.out_proj.bias if bias else 0.0)
        x = x + added if residual else added
    return model.readouts[0](x)


def _zero(terms: torch.Tensor, heads) -> torch.Tensor:
    keep = torch.ones(terms.shape[1], dtype=terms.dtype)
    keep[list(heads)] = 0.0
    return terms * keep[None, :, None, None]


def _ablation_judge(case: Case, got, changed) -> None:
    model, tokens, layer, head = case.inputs()
    model = model.double()
    heads, layers = model.config.heads, model.config.layers
    right = _forward(model, tokens, lambda i, t: _zero(t, [head]) if i == layer else t)
    swapped_layer, swapped_head = divmod(head * layers + layer, heads)
    others = [h for h in range(heads) if h != head]
    verify(
        got,
        right,
        [
            (
                right[:, :, None],
                "that has shape (batch, seq, 1, vocab), what model(...) returns (one readout per relationship); "
                "return (batch, seq, vocab): model.readouts[0](x), or take [:, :, 0]",
            ),
            (
                _forward(model, tokens, lambda i, t: _zero(t, [head]) if i == layer else t, bias=False),
                "W_O's bias is missing: it belongs to no head, so it stays when a head is removed "
                "(attention.out_proj.bias, added once after the sum)",
            ),
            (
                _forward(model, tokens, lambda i, t: _zero(t, [head]) if i == layer else t, residual=False),
                "the residual is missing: each layer adds the sum of its heads' terms to x (x = x + ...), "
                "it does not replace x",
            ),
            (
                _forward(model, tokens, lambda i, t: _zero(t, [head])),
                "you removed the head from every layer; remove it from the given layer only",
            ),
            (
                _forward(model, tokens, lambda i, t: _zero(t, [swapped_head]) if i == swapped_layer else t),
                "wrong head: head_mask's entries go layer by layer, head h of layer l is entry l * heads + h",
            ),
            (
                _forward(model, tokens, lambda i, t: _zero(t, others) if i == layer else t),
                "that keeps only this head of the layer and removes all the others",
            ),
            (_forward(model, tokens), "nothing was removed: those are the logits of the whole model"),
        ],
        what=case.what,
        dtype=getattr(torch, case.args[0].params["dtype"]),
        shape_hint="(batch, seq, vocab): the logits of the one readout",
    )


ablated_logits = register(
    Exercise(
        LESSON,
        "ablated_logits",
        function="ablated_logits",
        signature="ablated_logits(model, tokens, layer, head)",
        cases=_ablation_cases,
        judge=_ablation_judge,
        advice="to remove a head without touching the model, leave its term out of the sum",
    )
)


# --- exercise 5: k_composition -----------------------------------------------------------------------------------


@builder("lesson11_layer")
def build_lesson11_layer(d_model: int, heads: int, seed: int, dtype: str) -> MultiHeadAttention:
    """A `MultiHeadAttention` with weights drawn from `seed` (the learner's random state untouched)."""
    with seeded(seed):
        layer = MultiHeadAttention(d_model, heads)
    return layer.to(getattr(torch, dtype))


def _composition_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(12, 3, 0, 2, "float32"), (10, 2, 1, 0, "float64"), (16, 4, 3, 1, "float32")]
    for _ in range(2):
        heads = _int(g, 1, 4)
        setups.append(
            (
                heads * _int(g, 2, 5),
                heads,
                _int(g, 0, heads - 1),
                _int(g, 0, heads - 1),
                _pick(g, ["float32", "float64"]),
            )
        )
    cases = []
    for i, (d_model, heads, h1, h2, dtype) in enumerate(setups):
        base = 2 * i if i < 3 else 1000 + 1000 * seed + 2 * i
        first, second = (
            Build("lesson11_layer", {"d_model": d_model, "heads": heads, "seed": base + j, "dtype": dtype})
            for j in range(2)
        )
        what = f"k_composition(first, second, h1={h1}, h2={h2}), layers of d_model {d_model} x {heads} heads, {dtype}"
        cases.append(Case((first, second, h1, h2), what=what, drawn=i >= 3))
    return cases


def _k_judge(case: Case, got, changed) -> None:
    first, second, h1, h2 = case.inputs()
    first, second = first.double(), second.double()
    qk, ov = qk_matrix(second, h2), ov_matrix(first, h1)
    d = first.d_head
    rows = slice(h1 * d, (h1 + 1) * d)
    w_v = first.in_proj.weight.split(first.projection_sizes())[2][rows]
    wrong_ov = first.out_proj.weight[rows].T @ w_v  # rows of W_O instead of columns
    norm = torch.linalg.matrix_norm
    tol = 1e-4 if case.args[0].params["dtype"] == "float32" else 1e-9
    verify_number(
        got,
        composition_score(qk, ov),
        [
            (
                composition_score(qk.T, ov),
                "that is Q-composition (W_QK^T W_OV: the writer's output entering the queries); K-composition is "
                "W_QK @ W_OV, with W_QK = W_Q^T W_K",
            ),
            (
                composition_score(ov_matrix(second, h2), ov),
                "that is V-composition (W_OV of the reader times W_OV of the writer); K-composition uses the "
                "reader's W_QK",
            ),
            (
                composition_score(ov, qk),
                "the product is the wrong way round: W_QK^h2 @ W_OV^h1 (what h1 writes, then how h2's keys read it)",
            ),
            ((norm(qk @ ov)).item(), "not normalised: divide by |W_QK| |W_OV| (Frobenius norms)"),
            (
                (norm(qk @ ov, ord=2) / (norm(qk, ord=2) * norm(ov, ord=2))).item(),
                "those are spectral norms (ord=2); the score uses Frobenius norms, torch.linalg.matrix_norm's default",
            ),
            (
                composition_score(qk, wrong_ov),
                "W_O^h is a block of columns of out_proj.weight, [:, h*d_head:(h+1)*d_head]; you took rows",
            ),
            (
                composition_score(qk_matrix(first, h1), ov_matrix(second, h2)),
                "the layers are swapped: the head that writes (W_OV) is h1 of the first layer, the head that reads "
                "through its keys (W_QK) is h2 of the second",
            ),
        ],
        what=case.what,
        rel_tol=tol,
        form_hint="one number, the K-composition score",
    )


k_composition = register(
    Exercise(
        LESSON,
        "k_composition",
        function="k_composition",
        signature="k_composition(first, second, h1, h2)",
        cases=_composition_cases,
        judge=_k_judge,
    )
)

_ = CheckFailed
