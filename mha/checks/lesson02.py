"""Checks for lesson 02, tunnel vision. Use: `from mha.checks import lesson02 as check`.

Cases vary batch, seq, heads and offsets (up to seq - 1), the dtype of the weights (float32, float64), causal and
full weights, and sizes at which each classic counting mistake gives its own number; two are drawn on every run.
"""

import torch

from ..toy.models import AttentionOnlyConfig, build_model, count_parameters
from ..toy.tasks import IGNORE_INDEX
from . import Case, Exercise, register, verify, verify_number

LESSON = "02"


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250102)


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _int(g, low: int, high: int) -> int:
    """A random integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=g))


# --- exercise 1: offset_targets ----------------------------------------------------------------------------------


def _targets_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(2, 8, 1, 50), (3, 6, 3, 50), (1, 5, 2, 4), (4, 7, 6, 9)]
    for _ in range(2):
        seq = _int(g, 3, 12)
        setups.append((_int(g, 1, 4), seq, _int(g, 1, seq - 1), _pick(g, [5, 50])))
    cases, fixed = [], _fixed()
    for i, (batch, seq, offset, vocab) in enumerate(setups):
        gen = fixed if i < 4 else g
        tokens = torch.randint(vocab, (batch, seq), generator=gen)  # a small vocabulary repeats tokens
        what = f"offset_targets on tokens {tuple(tokens.shape)} with offset={offset}"
        cases.append(Case((tokens, offset), what=what, drawn=i >= 4))
    return cases


def _shifted(tokens: torch.Tensor, by: int) -> torch.Tensor:
    """The token at i - by for every position i (IGNORE_INDEX where there is none); by < 0 looks ahead."""
    out = torch.full_like(tokens, IGNORE_INDEX)
    seq = tokens.shape[1]
    if by >= 0:
        out[:, by:] = tokens[:, : seq - by]
    else:
        out[:, : seq + by] = tokens[:, -by:]
    return out


def _targets_judge(case: Case, got, changed) -> None:
    tokens, offset = case.inputs()
    verify(
        got,
        _shifted(tokens, offset),
        [
            (
                _shifted(tokens, -offset),
                "those are the tokens offset positions ahead (i + offset); the relationship looks back, i - offset",
            ),
            (
                tokens.roll(offset, dims=1),
                "torch.roll wraps around: the first positions got tokens from the end of the sequence; they have no "
                "answer, use IGNORE_INDEX",
            ),
            (_shifted(tokens, offset - 1), "off by one: position i must name the token at i - offset"),
            (
                _shifted(tokens, offset + 1) if offset + 1 < tokens.shape[1] else None,
                "off by one: position i must name the token at i - offset",
            ),
        ],
        what=case.what,
        shape_hint="(batch, seq): one target per position",
    )


offset_targets = register(
    Exercise(
        LESSON,
        "offset_targets",
        function="offset_targets",
        signature="offset_targets(tokens, offset)",
        cases=_targets_cases,
        judge=_targets_judge,
    )
)


# --- exercise 2: parameter_count ---------------------------------------------------------------------------------


def _count_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(64, 16, 64, 1, 3), (64, 16, 64, 4, 3), (10, 7, 12, 3, 2), (100, 32, 32, 8, 1), (37, 11, 45, 5, 4)]
    for _ in range(2):
        heads = _int(g, 2, 6)
        setups.append((_int(g, 5, 120), _int(g, 3, 40), heads * _int(g, 2, 9), heads, _int(g, 1, 5)))
    return [
        Case(
            setup,
            what="parameter_count(vocab={}, seq={}, d_model={}, heads={}, relations={})".format(*setup),
            drawn=i >= 5,
        )
        for i, setup in enumerate(setups)
    ]


def _count_judge(case: Case, got, changed) -> None:
    vocab, seq, d_model, heads, relations = case.inputs()
    config = AttentionOnlyConfig(vocab=vocab, seq=seq, d_model=d_model, heads=heads, relations=relations)
    expected = count_parameters(build_model(config, seed=0))
    embeddings, readouts = vocab * d_model + seq * d_model, relations * (d_model * vocab + vocab)
    attention = 4 * d_model * d_model + 4 * d_model
    verify_number(
        got,
        expected,
        [
            (
                embeddings + readouts + heads * attention,
                "each head has width d_model / heads, not d_model: the heads cut the same four d_model x d_model "
                "matrices into slices",
            ),
            (
                embeddings + readouts + heads * 3 * (d_model * d_model + d_model) + d_model * d_model + d_model,
                "you gave every head its own full d_model x d_model W_Q, W_K and W_V; each head's are d_model x "
                "(d_model / heads), so together they make one d_model x d_model matrix each, whatever the heads",
            ),
            (embeddings + readouts + 4 * d_model * d_model, "you left out the biases (4 x d_model in the attention)"),
            (vocab * d_model + readouts + attention, "you forgot the position embedding (seq x d_model)"),
            (embeddings + relations * d_model * vocab + attention, "you forgot the readouts' biases (vocab each)"),
            (embeddings + d_model * vocab + vocab + attention, "there is one readout per relationship"),
            (
                embeddings + readouts + 3 * (d_model * d_model + d_model),
                "you left out the output projection W_O (d_model x d_model, with its bias)",
            ),
        ],
        what=case.what,
        integer=True,
        form_hint="one whole number, the count of parameters",
    )


parameter_count = register(
    Exercise(
        LESSON,
        "parameter_count",
        function="parameter_count",
        signature="parameter_count(vocab, seq, d_model, heads, relations)",
        cases=_count_cases,
        judge=_count_judge,
    )
)


# --- exercise 3: weight_by_offset --------------------------------------------------------------------------------


def _offset_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [
        (2, 3, 8, 3, torch.float32, True),
        (4, 1, 6, 2, torch.float64, True),
        (1, 2, 5, 4, torch.float32, False),
        (3, 5, 9, 1, torch.float64, False),
    ]
    for _ in range(2):
        seq = _int(g, 3, 10)
        setups.append(
            (_int(g, 1, 4), _int(g, 1, 5), seq, _int(g, 1, seq - 1), _pick(g, [torch.float32, torch.float64]), True)
        )
    cases, fixed = [], _fixed()
    for i, (batch, heads, seq, max_offset, dtype, causal) in enumerate(setups):
        gen = fixed if i < 4 else g
        scores = torch.randn(batch, heads, seq, seq, generator=gen, dtype=torch.float64) * 2
        if causal:
            scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        w = scores.softmax(-1).to(dtype)
        what = f"weight_by_offset on {'causal ' if causal else ''}weights {tuple(w.shape)} {str(dtype)[6:]} with "
        cases.append(Case((w, max_offset), what=what + f"max_offset={max_offset}", drawn=i >= 4))
    return cases


def _offset_judge(case: Case, got, changed) -> None:
    w, max_offset = case.inputs()
    w64, seq = w.double(), w.shape[-2]

    def by_offset(queries_for, reduce="mean"):
        """Column d: the weight on key q - d of the queries queries_for(d), reduced over batch and queries."""
        cols = [w64[:, :, queries_for(d), queries_for(d) - d] for d in range(max_offset + 1)]
        return torch.stack([c.sum(dim=(0, 2)) if reduce == "sum" else c.mean(dim=(0, 2)) for c in cols], dim=1)

    def same_queries(d):
        return torch.arange(max_offset, seq)

    ahead = [w64[:, :, torch.arange(0, seq - d), torch.arange(d, seq)].mean(dim=(0, 2)) for d in range(max_offset + 1)]
    verify(
        got,
        by_offset(same_queries),
        [
            (by_offset(same_queries, "sum"), "that is a sum; average over the batch and the queries"),
            (
                by_offset(lambda d: torch.arange(d, seq)),
                "each offset is averaged over different queries (all that have it); use the same queries for every "
                "offset, q_pos >= max_offset, so that the columns compare",
            ),
            (
                by_offset(lambda d: torch.arange(0, seq)),
                "for queries q_pos < d, the index q_pos - d is negative and wraps around to the last keys; average "
                "only over the queries q_pos >= max_offset",
            ),
            (
                torch.stack(ahead, dim=1),
                "that is the weight d positions ahead (k_pos = q_pos + d); the offset looks back, k_pos = q_pos - d",
            ),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(heads, max_offset + 1): offsets 0..max_offset",
    )


weight_by_offset = register(
    Exercise(
        LESSON,
        "weight_by_offset",
        function="weight_by_offset",
        signature="weight_by_offset(weights, max_offset)",
        cases=_offset_cases,
        judge=_offset_judge,
    )
)


# --- exercise 4: one_served --------------------------------------------------------------------------------------


def _served_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(1, 3, 64), (4, 3, 64), (2, 5, 10), (4, 6, 64), (1, 1, 2)]
    setups += [(_int(g, 1, 8), _int(g, 2, 7), _int(g, 3, 100)) for _ in range(2)]
    return [
        Case(s, what="one_served(heads={}, relations={}, vocab={})".format(*s), drawn=i >= 5)
        for i, s in enumerate(setups)
    ]


def _served_judge(case: Case, got, changed) -> None:
    heads, relations, vocab = case.inputs()
    served = min(heads, relations)
    verify_number(
        got,
        (served + (relations - served) / vocab) / relations,
        [
            (served / relations, "you left out the guessed relationships: each scores 1/vocab by chance"),
            (
                (heads + (relations - heads) / vocab) / relations,
                "more heads than relationships do not help beyond serving all of them: use min(heads, relations)",
            ),
            (
                served + (relations - served) / vocab,
                "that is a total over the relationships; average it (divide by relations)",
            ),
        ],
        what=case.what,
        form_hint="one number, the expected accuracy",
    )


one_served = register(
    Exercise(
        LESSON,
        "one_served",
        function="one_served",
        signature="one_served(heads, relations, vocab)",
        cases=_served_cases,
        judge=_served_judge,
    )
)


# --- exercise 5: same_answer_rate --------------------------------------------------------------------------------


def _same_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(4, 6, 3), (2, 9, 2), (3, 5, 4)]
    setups += [(_int(g, 1, 5), _int(g, 2, 10), _int(g, 2, 4)) for _ in range(2)]
    cases, fixed = [], _fixed()
    for i, (batch, seq, relations) in enumerate(setups):
        gen = fixed if i < 3 else g
        predictions = torch.randint(3, (batch, seq, relations), generator=gen)
        valid = torch.rand(batch, seq, generator=gen) > 0.3
        valid[0, 0] = True
        what = f"same_answer_rate on predictions {tuple(predictions.shape)} with {int(valid.sum())} valid positions"
        cases.append(Case((predictions, valid), what=what, drawn=i >= 3))
    return cases


def _same_judge(case: Case, got, changed) -> None:
    predictions, valid = case.inputs()
    agree = predictions == predictions[..., :1]
    same = agree.all(dim=-1)  # (batch, seq)
    verify_number(
        got,
        same[valid].double().mean().item(),
        [
            (same.double().mean().item(), "you counted the positions without an answer too; keep only the valid ones"),
            (
                agree.double().mean().item(),
                "that compares each readout with the first one separately; a position counts only if all readouts "
                "agree (.all over relations)",
            ),
            (
                agree[..., 1:].any(dim=-1)[valid].double().mean().item(),
                "a position counts only if all readouts agree (.all), not if any other readout agrees with the first",
            ),
            (int(same[valid].sum()), "that is a count; divide by the number of valid positions"),
        ],
        what=case.what,
        form_hint="one number, the share of valid positions",
    )


same_answer_rate = register(
    Exercise(
        LESSON,
        "same_answer_rate",
        function="same_answer_rate",
        signature="same_answer_rate(predictions, valid)",
        cases=_same_cases,
        judge=_same_judge,
    )
)
