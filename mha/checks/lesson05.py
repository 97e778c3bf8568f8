"""Checks for lesson 05, heads in a real model. Use: `from mha.checks import lesson05 as check`.

Cases vary heads, layers, seq (2 up), lengths of the padded sentences, float32 and float64, and sentences in which
words repeat (the first occurrence is the one asked for); two are drawn on every run.
"""

import torch
import torch.nn.functional as F

from ..pretrained import head_scores
from ..pretrained.encoder import mean_pool as reference_pool
from ..pretrained.encoder import sentence_embeddings as reference_embeddings
from . import Case, CheckFailed, Exercise, as_number, describe_value, register, verify
from .compare import _passed

LESSON = "05"
DTYPES = (torch.float32, torch.float64)


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250105)


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _weights(g, *shape, dtype=torch.float32) -> torch.Tensor:
    """Random attention weights: each row a distribution over keys."""
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).softmax(dim=-1).to(dtype)


# --- exercise 1: previous_token_score ----------------------------------------------------------------------------


def _previous_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(3, 5, torch.float32), (12, 9, torch.float64), (1, 2, torch.float32), (4, 7, torch.float64)]
    setups += [(_int(g, 1, 12), _int(g, 2, 14), _pick(g, DTYPES)) for _ in range(2)]
    cases = []
    for i, (heads, seq, dtype) in enumerate(setups):
        w = _weights(_fixed() if i < 4 else g, heads, seq, seq, dtype=dtype)
        cases.append(Case((w,), what=f"previous_token_score on weights {tuple(w.shape)} {_name(dtype)}", drawn=i >= 4))
    return cases


def _previous_judge(case: Case, got, changed) -> None:
    (w,) = case.inputs()
    w64 = w.double()
    seq = w.shape[-1]
    below = w64.diagonal(offset=-1, dim1=-2, dim2=-1)  # (heads, seq - 1): entries (i, i - 1)
    verify(
        got,
        head_scores.previous_token(w64),
        [
            (
                w64.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1),
                "that is the next token (entries (i, i+1)); the previous token of query i is key i-1: "
                "diagonal(offset=-1)",
            ),
            (
                below.sum(-1) / seq,
                "you divided by seq; the first query has no previous token, so average over the seq-1 queries that "
                "have one",
            ),
            (w64.diagonal(dim1=-2, dim2=-1).mean(-1), "that is each query's weight on itself (the main diagonal)"),
            (below.sum(-1), "that is a sum; take the mean over queries"),
            (
                w64.diagonal(offset=-1).mean(-1),
                "diagonal() takes the first two dimensions unless told otherwise: take the diagonal over the last "
                "two dimensions, diagonal(offset=-1, dim1=-2, dim2=-1)",
            ),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(heads,), one score per head: take the diagonal over the last two dimensions, "
        "diagonal(offset=-1, dim1=-2, dim2=-1), then average it",
    )


previous_token_score = register(
    Exercise(
        LESSON,
        "previous_token_score",
        function="previous_token_score",
        signature="previous_token_score(weights)",
        cases=_previous_cases,
        judge=_previous_judge,
    )
)


# --- exercises 2 and 3: mean_pool, sentence_embedding ------------------------------------------------------------


def _hidden_cases(seed: int, name: str) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [([6, 4, 1], 6, 8, torch.float32), ([2, 5], 5, 3, torch.float64), ([7, 7, 3, 1], 7, 5, torch.float32)]
    for _ in range(2):
        seq = _int(g, 2, 9)
        lengths = [_int(g, 1, seq) for _ in range(_int(g, 1, 5))]
        setups.append((lengths, seq, _int(g, 2, 10), _pick(g, DTYPES)))
    cases = []
    for i, (lengths, seq, d_model, dtype) in enumerate(setups):
        gen = fixed if i < 3 else g
        hidden = torch.randn(len(lengths), seq, d_model, generator=gen, dtype=torch.float64).to(dtype)
        mask = torch.arange(seq) < torch.tensor(lengths)[:, None]
        what = f"{name} on hidden {tuple(hidden.shape)} {_name(dtype)} with lengths {lengths}"
        cases.append(Case((hidden, mask), what=what, drawn=i >= 3))
    return cases


def _explain_broadcast(error: dict, case: Case):
    if error["type"] == "RuntimeError" and "must match the size" in error["message"]:
        return (
            "mask (batch, seq) does not line up with hidden (batch, seq, d_model): use mask[..., None], (batch, seq, 1)"
        )
    return None


def _pool_judge(case: Case, got, changed) -> None:
    hidden, mask = case.inputs()
    h = hidden.double()
    masked_sum = (h * mask[..., None]).sum(1)
    verify(
        got,
        reference_pool(h, mask),
        [
            (h.mean(1), "padding was included: average over the real tokens only (where the mask is True)"),
            (masked_sum / h.shape[1], "you divided by seq; divide by each sentence's number of real tokens"),
            (masked_sum, "that is a sum; divide by the number of real tokens"),
            (
                (h * ~mask[..., None]).sum(1) / (~mask).sum(1, keepdim=True).clamp(min=1),
                "you averaged the padding, not the tokens: the mask is True on real tokens",
            ),
        ],
        what=case.what,
        dtype=hidden.dtype,
        shape_hint="(batch, d_model): one vector per sentence",
    )


mean_pool = register(
    Exercise(
        LESSON,
        "mean_pool",
        function="mean_pool",
        signature="mean_pool(hidden, mask)",
        cases=lambda seed: _hidden_cases(seed, "mean_pool"),
        judge=_pool_judge,
        explain=_explain_broadcast,
    )
)


def _embedding_judge(case: Case, got, changed) -> None:
    hidden, mask = case.inputs()
    h = hidden.double()
    pooled = reference_pool(h, mask)
    verify(
        got,
        reference_embeddings(h, mask),
        [
            (pooled, "not scaled to length 1: divide each vector by its norm (F.normalize)"),
            (
                reference_pool(F.normalize(h, dim=-1), mask),
                "you scaled each token to length 1 and then averaged; average first, then scale the average",
            ),
            (F.normalize(h.mean(1), dim=-1), "padding was included in the average"),
            (
                pooled / pooled.norm(),
                "you divided by the norm of the whole batch; each sentence's vector must have length 1 on its own "
                "(dim=-1)",
            ),
            (
                F.normalize(pooled, dim=0),
                "normalised along the wrong dimension: each sentence's vector must have length 1 (dim=-1)",
            ),
        ],
        what=case.what,
        dtype=hidden.dtype,
        shape_hint="(batch, d_model)",
    )


sentence_embedding = register(
    Exercise(
        LESSON,
        "sentence_embedding",
        function="sentence_embedding",
        signature="sentence_embedding(hidden, mask)",
        cases=lambda seed: _hidden_cases(seed + 1, "sentence_embedding"),
        judge=_embedding_judge,
        explain=_explain_broadcast,
        uses=("mean_pool",),
    )
)


# --- exercise 4: stack_qkv ---------------------------------------------------------------------------------------


def _stack_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [(4, torch.float32), (6, torch.float64), (5, torch.float32), (3, torch.float64)]
    setups += [(_int(g, 2, 12), _pick(g, DTYPES)) for _ in range(2)]
    cases = []
    for i, (d_model, dtype) in enumerate(setups):
        gen = fixed if i < 4 else g
        q, k, v = (torch.randn(d_model, d_model, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3))
        what = f"stack_qkv on three ({d_model}, {d_model}) {_name(dtype)} matrices"
        cases.append(Case((q, k, v), what=what, drawn=i >= 4))
    return cases


def _stack_judge(case: Case, got, changed) -> None:
    q, k, v = case.inputs()
    order = "the order is [W_Q; W_K; W_V]: query rows first, then key, then value"
    verify(
        got,
        torch.cat([q, k, v]),
        [
            (
                torch.cat([q, k, v], dim=1),
                "that is (d_model, 3 * d_model): stack them as rows (torch.cat along dim 0), as "
                "nn.Linear(d_model, 3 * d_model) stores its weight",
            ),
            (
                torch.cat([q.T, k.T, v.T]),
                "each block is transposed: BERT's query, key and value are nn.Linear weights, (out_features, "
                "in_features), the layout of ours; no transpose",
            ),
            (torch.stack([q, k, v]), "that is (3, d_model, d_model): concatenate the rows (torch.cat), do not stack"),
            (torch.cat([q, v, k]), order),
            (torch.cat([k, q, v]), order),
            (torch.cat([k, v, q]), order),
            (torch.cat([v, q, k]), order),
            (torch.cat([v, k, q]), order),
        ],
        what=case.what,
        dtype=q.dtype,
        shape_hint="(3 * d_model, d_model)",
    )


stack_qkv = register(
    Exercise(
        LESSON,
        "stack_qkv",
        function="stack_qkv",
        signature="stack_qkv(query_w, key_w, value_w)",
        cases=_stack_cases,
        judge=_stack_judge,
    )
)


# --- exercise 5: top_heads ---------------------------------------------------------------------------------------


def _top_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [(6, 12, 3, torch.float32), (2, 5, 4, torch.float64), (3, 4, 12, torch.float32), (5, 2, 1, torch.float32)]
    for _ in range(2):
        layers = _int(g, 1, 8)
        heads = _pick(g, [h for h in range(1, 13) if h != layers])
        setups.append((layers, heads, _int(g, 1, layers * heads), _pick(g, DTYPES)))
    cases = []
    for i, (layers, heads, k, dtype) in enumerate(setups):
        scores = torch.rand(layers, heads, generator=fixed if i < 4 else g, dtype=torch.float64).to(dtype)
        what = f"top_heads on scores {tuple(scores.shape)} {_name(dtype)} with k={k}"
        cases.append(Case((scores, k), what=what, drawn=i >= 4))
    return cases


def _top_judge(case: Case, got, changed) -> None:
    scores, k = case.inputs()
    layers, heads = scores.shape
    if not isinstance(got, list | tuple) or not all(isinstance(t, list | tuple) and len(t) == 3 for t in got):
        hint = ["returned None: did you print the result instead of returning it?"] if got is None else []
        raise CheckFailed(
            f"returned {describe_value(got)}; return a list of k={k} (layer, head, score) triples",
            case.what,
            hint,
            "returned",
        )
    _passed("returned", set())
    numbers = [[as_number(x) for x in triple] for triple in got]
    if any(x is None for triple in numbers for x in triple):
        bad = next(x for triple, plain in zip(numbers, got) for x, y in zip(triple, plain) if x is None)
        raise CheckFailed(f"a triple holds {describe_value(bad)}; expected (layer, head, score) numbers", case.what)
    order = scores.flatten().argsort(descending=True).tolist()

    def pairs(indices, divisor):
        return torch.tensor([[i // divisor, i % divisor] for i in indices], dtype=torch.float64).reshape(-1, 2)

    got_pairs = torch.tensor([[triple[0], triple[1]] for triple in numbers], dtype=torch.float64).reshape(-1, 2)
    verify(
        got_pairs,
        pairs(order[:k], heads),
        [
            (
                pairs(order[:k], layers),
                "index i of the flattened (layers, heads) scores is layer i // heads, head i % heads; you divided "
                "by layers",
            ),
            (pairs(order[::-1][:k], heads), "those are the smallest scores; sort descending"),
            (pairs(list(range(k)), heads), "those are the first k heads in order; take the k with the highest scores"),
        ],
        what=f"{case.what}: the (layer, head) pairs, highest first",
        site="pairs",
        shape_hint=f"(k, 2): k={k} triples",
    )
    chosen = [scores[int(layer), int(head)].item() for layer, head, _ in numbers]
    verify(
        torch.tensor([float(triple[2]) for triple in numbers], dtype=torch.float64),
        torch.tensor(chosen, dtype=torch.float64),
        [],
        what=f"{case.what}: the scores of the chosen heads",
        site="scores",
        dtype=scores.dtype,
    )
    for triple in got:
        layer, head, score = triple
        if not (type(layer) is int and type(head) is int and type(score) in (int, float)):
            raise CheckFailed(
                f"return plain Python numbers, (int, int, float), e.g. int(i) // heads and float(v); got "
                f"({describe_value(layer)}, {describe_value(head)}, {describe_value(score)})",
                case.what,
                site="form",
            )


top_heads = register(
    Exercise(
        LESSON,
        "top_heads",
        function="top_heads",
        signature="top_heads(scores, k)",
        cases=_top_cases,
        judge=_top_judge,
    )
)


# --- exercise 6: word_link ---------------------------------------------------------------------------------------

TOKENS = ["[CLS]", "apple", "released", "a", "new", "iphone", ",", "but", "it", "is", "expensive", ".", "[SEP]"]
REPEATS = ["[CLS]", "it", "is", "new", ",", "but", "it", "is", "not", "new", "enough", ".", "[SEP]"]
_WORDS = ["it", "is", "new", "a", "phone", "but", "the", ",", "."]


def _link_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [
        (TOKENS, "it", "iphone", 6, 12),
        (TOKENS, "iphone", "apple", 2, 3),
        (TOKENS, "but", "[CLS]", 1, 4),
        (REPEATS, "it", "new", 3, 5),
        (REPEATS, "is", "it", 2, 2),
    ]
    for _ in range(2):
        tokens = ["[CLS]"] + [_pick(g, _WORDS) for _ in range(_int(g, 4, 12))] + ["[SEP]"]
        query, key = _pick(g, tokens), _pick(g, tokens)
        setups.append((tokens, query, key, _int(g, 1, 4), _int(g, 1, 6)))
    cases = []
    for i, (tokens, query, key, layers, heads) in enumerate(setups):
        dtype = DTYPES[i % 2]
        w = _weights(_fixed() if i < 5 else g, layers, heads, len(tokens), len(tokens), dtype=dtype)
        what = f"word_link(weights {tuple(w.shape)} {_name(dtype)}, tokens, {query!r}, {key!r}) on '{' '.join(tokens)}'"
        cases.append(Case((w, list(tokens), query, key), what=what, drawn=i >= 5))
    return cases


def _link_judge(case: Case, got, changed) -> None:
    w, tokens, query_word, key_word = case.inputs()
    w = w.double()
    q, k = tokens.index(query_word), tokens.index(key_word)
    q_last, k_last = len(tokens) - 1 - tokens[::-1].index(query_word), len(tokens) - 1 - tokens[::-1].index(key_word)
    later = "tokens.index(word) finds the first occurrence, which the exercise asks for; you used a later one"
    verify(
        got,
        w[..., q, k],
        [
            (
                w[..., k, q],
                "reversed: that is how much the key word looks at the query word; the row is the query, the column "
                "the key: weights[..., q, k]",
            ),
            (w[..., q, :].max(-1).values, "that is the largest weight in the query word's row, whatever the key"),
            (w[..., q_last, k], later),
            (w[..., q, k_last], later),
            (w[..., q_last, k_last], later),
        ],
        what=case.what,
        dtype=case.args[0].dtype,
        shape_hint="(layers, heads): one weight per layer and head",
    )


word_link = register(
    Exercise(
        LESSON,
        "word_link",
        function="word_link",
        signature="word_link(weights, tokens, query_word, key_word)",
        cases=_link_cases,
        judge=_link_judge,
    )
)
