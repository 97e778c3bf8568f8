"""Checks for lesson 04, what heads learn. Use: `from mha.checks import lesson04 as check`.

Cases vary the sentences (and where "it" sits), the number of sentences and heads, the padded length, float32 and
float64, and the model's sizes; one or two are drawn on every run. Sentences, small models and the scripted
stand-in model of exercise 5 are passed as `Build` specs ("sentence", "toy_model", "pronoun_model"). The stand-in
behaves like a trained model: any batch, in any order, one sentence at a time, `eval()`, `need_weights=True`.
"""

import copy

import torch
from torch import nn

from ..toy.language import INDEX, PAD, RELATIONS, VOCAB, Sentence, TemplateLanguage
from ..toy.models import AttentionOnlyConfig, build_model
from . import (
    Build,
    Case,
    CheckFailed,
    Exercise,
    as_number,
    builder,
    describe_value,
    register,
    unusual_kind,
    verify,
    verify_number,
)
from .compare import _passed

LESSON = "04"
LANGUAGE = TemplateLanguage()


def _int(g, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=g))


def _fixed() -> torch.Generator:
    """The source of the fixed cases' numbers: the same on every run (drawn cases use the run's seed)."""
    return torch.Generator().manual_seed(20250104)


def _case_seed(seed: int, i: int, fixed: int) -> int:
    """A seed for case i: its index for the first `fixed` cases (the same on every run), else one from the run's."""
    return i if i < fixed else 100_000 + 1000 * seed + i


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


@builder("sentence")
def build_sentence(words: list[str], it: int, product: int, company: int, connective: int) -> Sentence:
    """A sentence of the template language, from its words and the positions that matter."""
    return Sentence(tuple(words), it, product, company, connective)


def sentence_spec(s: Sentence) -> Build:
    """The plain description of a sentence (what `build_sentence` builds back)."""
    fields = {"it": s.it, "product": s.product, "company": s.company, "connective": s.connective}
    return Build("sentence", {"words": list(s.words), **fields})


def _sentences(seed: int, n: int) -> list[Sentence]:
    """n different sentences (a repeated sentence would make two entries that cannot differ)."""
    g = torch.Generator().manual_seed(seed)
    out, seen = [], set()
    while len(out) < n:
        s = LANGUAGE.random_sentence(g)
        if s.words not in seen:
            seen.add(s.words)
            out.append(s)
    return out


def _causal_weights(g, *lead, seq: int, dtype=torch.float32) -> torch.Tensor:
    scores = torch.randn(*lead, seq, seq, generator=g, dtype=torch.float64) * 2
    scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1).to(dtype)


# --- exercise 1: it_row ------------------------------------------------------------------------------------------


def _it_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [(4, 28, torch.float32), (1, 24, torch.float64), (3, 28, torch.float32)]
    setups += [(_int(g, 1, 6), _int(g, 20, 28), torch.float64 if _int(g, 0, 1) else torch.float32) for _ in range(2)]
    cases = []
    for i, (heads, seq, dtype) in enumerate(setups):
        [s] = _sentences(1000 + _case_seed(seed, i, 3), 1)
        seq = max(seq, len(s.words))
        w = _causal_weights(fixed if i < 3 else g, heads, seq=seq, dtype=dtype)
        what = f"it_row on weights {tuple(w.shape)} {_name(dtype)} for '{s}' ('it' at {s.it})"
        cases.append(Case((w, sentence_spec(s)), what=what, drawn=i >= 3))
    return cases


def _it_judge(case: Case, got, changed) -> None:
    w, s = case.inputs()
    it = s.it
    verify(
        got,
        w[:, it, : it + 1],
        [
            (
                w[:, : it + 1, it],
                "that is the column of 'it': how much each word looks at 'it'; we want where 'it' looks, its row: "
                "weights[:, it, :it + 1]",
            ),
            (
                w[:, it, :],
                "keep only the keys up to and including 'it' (positions 0..it): the causal mask leaves the rest at 0",
            ),
            (w[:, it, :it], "include 'it' itself: the keys are positions 0..it, that is :it + 1"),
            (w[:, it - 1, :it], "that is the row of the word before 'it'; the row of 'it' is weights[:, it]"),
            (w[:, it + 1, : it + 2], "that is the row of the word after 'it'; the row of 'it' is weights[:, it]"),
        ],
        what=case.what,
        dtype=w.dtype,
        shape_hint="(heads, sentence.it + 1): the weights of 'it' on positions 0..it",
    )


it_row = register(
    Exercise(
        LESSON,
        "it_row",
        function="it_row",
        signature="it_row(weights, sentence)",
        cases=_it_cases,
        judge=_it_judge,
    )
)


# --- exercise 2: relation_table ----------------------------------------------------------------------------------


def _table_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(5, 4, torch.float32), (12, 2, torch.float32), (1, 3, torch.float64), (7, 5, torch.float64)]
    setups += [(_int(g, 2, 9), _int(g, 1, 6), torch.float32) for _ in range(2)]
    cases, fixed = [], _fixed()
    for i, (n, heads, dtype) in enumerate(setups):
        sentences = _sentences(2000 + _case_seed(seed, i, 4), n)
        w = _causal_weights(fixed if i < 4 else g, n, heads, seq=LANGUAGE.seq, dtype=dtype)
        what = f"relation_table on weights {tuple(w.shape)} {_name(dtype)} for {n} sentence" + ("s" if n > 1 else "")
        cases.append(Case((w, [sentence_spec(s) for s in sentences]), what=what, drawn=i >= 4))
    return cases


def _table(w, sentences, order=RELATIONS, reduce="mean", rows=True):
    columns = []
    for relation in order:
        per = [
            w[b, :, s.it, s.needed[relation]] if rows else w[b, :, s.needed[relation], s.it]
            for b, s in enumerate(sentences)
        ]
        stacked = torch.stack(per)  # (sentences, heads)
        columns.append(stacked.sum(0) if reduce == "sum" else stacked.mean(0))
    return torch.stack(columns, dim=1)  # (heads, relations)


def _table_judge(case: Case, got, changed) -> None:
    w, sentences = case.inputs()
    w = w.double()
    expected = _table(w, sentences)
    order = "relationships out of order: the columns follow RELATIONS = " + str(RELATIONS)
    verify(
        got,
        expected,
        [
            (_table(w, sentences, reduce="sum"), "that is a sum over sentences; divide by their number"),
            (expected.mean(0), "you averaged over the heads too; keep one row per head, (heads, relations)"),
            (
                _table(w, sentences, rows=False),
                "you read the columns of 'it' (who looks at 'it'); read its row (where 'it' looks)",
            ),
            (expected.T, "that is (relations, heads); the table is (heads, relations): one row per head"),
            (expected[:, [1, 0, 2]], order),
            (expected[:, [0, 2, 1]], order),
            (expected[:, [2, 1, 0]], order),
        ],
        what=case.what,
        dtype=case.args[0].dtype,
        shape_hint="(heads, relations), relations in the order of RELATIONS",
    )


relation_table = register(
    Exercise(
        LESSON,
        "relation_table",
        function="relation_table",
        signature="relation_table(weights, sentences)",
        cases=_table_cases,
        judge=_table_judge,
    )
)


# --- exercise 3: remove_head -------------------------------------------------------------------------------------


@builder("toy_model")
def build_toy_model(d_model: int, heads: int, seed: int, dtype: str = "float32"):
    """A small untrained AttentionOnlyModel for the template language (the global RNG untouched)."""
    config = AttentionOnlyConfig(vocab=LANGUAGE.vocab, seq=LANGUAGE.seq, d_model=d_model, heads=heads, relations=3)
    return build_model(config, seed).to(getattr(torch, dtype))


def _remove_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(16, 4, 1, "float32"), (16, 4, 3, "float32"), (10, 2, 0, "float32"), (15, 3, 2, "float64")]
    heads = _int(g, 1, 5)
    setups.append((heads * _int(g, 2, 6), heads, _int(g, 0, heads - 1), "float32"))
    cases = []
    for i, (d_model, heads, head, dtype) in enumerate(setups):
        case_seed = _case_seed(seed, i, 4)
        model = Build("toy_model", {"d_model": d_model, "heads": heads, "seed": case_seed, "dtype": dtype})
        tokens, _ = LANGUAGE.encode(_sentences(3000 + case_seed, 3 + i))
        what = (
            f"remove_head(model, tokens, head={head}) on a {heads}-head model ({dtype}), tokens {tuple(tokens.shape)}"
        )
        cases.append(Case((model, tokens, head), what=what, drawn=i >= 4))
    return cases


def _remove_head_mistakes(model, tokens, head):
    """Logits of classic wrong ways to remove a head (each on a copy of the model)."""
    d, d_model = model.config.d_head, model.config.d_model
    rows = slice(head * d, (head + 1) * d)
    query_hint = (
        "zeroing the head's query projection does not remove the head: it still attends (evenly, or the same way "
        "from every query) and still writes its values; zero its output instead (head_mask)"
    )
    value_hint = (
        "zeroing the head's W_V leaves its value bias, so the head still writes something: zero its output "
        "instead (head_mask)"
    )
    out = []
    for block, with_bias, hint in [(0, False, query_hint), (0, True, query_hint), (2, False, value_hint)]:
        m = copy.deepcopy(model)
        m.attention.in_proj.weight[block * d_model :][rows] = 0.0
        if with_bias:
            m.attention.in_proj.bias[block * d_model :][rows] = 0.0
        out.append((m(tokens), hint))
    m = copy.deepcopy(model)
    m.attention.out_proj.weight[rows] = 0.0
    out.append(
        (
            m(tokens),
            "you zeroed rows of W_O, which are output features; the head's block of W_O is its columns, "
            "W_O[:, h*d_head:(h+1)*d_head] (or simply use head_mask)",
        )
    )
    keep_only = torch.zeros(model.config.heads)
    keep_only[head] = 1.0
    out.append((model(tokens, head_mask=keep_only), "that keeps only this head and removes all the others"))
    out.append((model(tokens), "nothing was removed: those are the logits of the whole model"))
    return out


def _remove_judge(case: Case, got, changed) -> None:
    model, tokens, head = case.inputs()
    keep = torch.ones(model.config.heads)
    keep[head] = 0.0
    verify(
        got,
        model(tokens, head_mask=keep),
        _remove_head_mistakes(model, tokens, head),
        what=case.what,
        dtype=model.token_embedding.weight.dtype,
        shape_hint="the logits, (batch, seq, relations, vocab)",
    )


remove_head = register(
    Exercise(
        LESSON,
        "remove_head",
        function="remove_head",
        signature="remove_head(model, tokens, head)",
        cases=_remove_cases,
        judge=_remove_judge,
        advice="to remove a head without touching the model, pass head_mask to model(...)",
    )
)


# --- exercise 4: accuracy_by_distance ----------------------------------------------------------------------------


def _distance_cases(seed: int) -> list[Case]:
    g, fixed = torch.Generator().manual_seed(seed), _fixed()
    setups = [
        (torch.rand(40, generator=fixed) > 0.3, torch.randint(3, 9, (40,), generator=fixed)),
        (torch.tensor([True, False, True, True]), torch.tensor([5, 5, 2, 9])),
        (torch.tensor([True, True, False]), torch.tensor([4, 4, 4], dtype=torch.int32)),
        (torch.rand(25, generator=fixed) > 0.6, torch.randint(1, 20, (25,), generator=fixed)),
    ]
    n = _int(g, 5, 30)
    setups.append((torch.rand(n, generator=g) > 0.5, torch.randint(1, 12, (n,), generator=g)))
    return [
        Case((c, d), what=f"accuracy_by_distance on {len(c)} answers at {len(d.unique())} distances", drawn=i >= 4)
        for i, (c, d) in enumerate(setups)
    ]


def _distance_judge(case: Case, got, changed) -> None:
    correct, distances = case.inputs()
    keys = sorted(int(d) for d in distances.unique())
    if unusual_kind(got) == "dict keys":
        kind = got.get("key_type", "")
        fix = "use int(d) as the key" if kind == "Tensor" else "use plain Python ints as the keys"
        raise CheckFailed(
            f"returned {describe_value(got)}: looking up a distance, result[5], finds nothing in a dict keyed by "
            f"{kind}s; {fix}",
            case.what,
        )
    if not isinstance(got, dict):
        matches = ["returned None: did you print the result instead of returning it?"] if got is None else []
        raise CheckFailed(
            f"returned {describe_value(got)}; return a dict {{distance: accuracy}}", case.what, matches, "returned"
        )
    _passed("returned", set())
    if sorted(got) != keys:
        shown = sorted(got, key=repr)
        raise CheckFailed(f"keys {shown}, expected one per distance present: {keys}", case.what, site="keys")
    values = _numbers([got[d] for d in keys], case.what)
    per = {d: correct[distances == d] for d in keys}
    expected = torch.tensor([per[d].double().mean().item() for d in keys], dtype=torch.float64)
    counts = torch.tensor([float(per[d].sum()) for d in keys], dtype=torch.float64)
    overall = torch.full_like(expected, correct.double().mean().item())
    share = counts / len(correct)
    verify(
        values,
        expected,
        [
            (counts, "those are counts of correct answers; divide by the number of answers at each distance"),
            (overall, "that is the overall accuracy at every distance; take the answers at each distance only"),
            (share, "you divided by the number of all answers; divide by the number of answers at each distance"),
            (1 - expected, "that is the fraction wrong; the accuracy is the fraction correct"),
        ],
        what=case.what + " (values in the order of the distances)",
    )


def _numbers(values, what) -> torch.Tensor:
    """The accuracies as a float64 tensor; a value that is not one number fails."""
    out = []
    for v in values:
        n = as_number(v)
        if n is None:
            raise CheckFailed(f"an accuracy is {describe_value(v)}; expected one number per distance", what)
        out.append(float(n))
    return torch.tensor(out, dtype=torch.float64)


accuracy_by_distance = register(
    Exercise(
        LESSON,
        "accuracy_by_distance",
        function="accuracy_by_distance",
        signature="accuracy_by_distance(correct, distances)",
        cases=_distance_cases,
        judge=_distance_judge,
    )
)


# --- exercise 5: pronoun_accuracy --------------------------------------------------------------------------------


class ScriptedModel(nn.Module):
    """Stands in for a trained model: its logits name the right product for chosen sentences only.

    It recognises each sentence by its tokens, so it answers the same whatever the batch: all sentences at once, one
    at a time, in another order. For the sentences in `right_at_it` the pronoun readout at "it" names the product;
    for those in `right_at_last`, the pronoun readout at the last word does; for those in `entity_right`, the entity
    readout at "it" does. Everywhere else the logits are random (and never name the product where it matters).
    """

    def __init__(self, sentences, right_at_it, right_at_last, entity_right, seed):
        super().__init__()
        self.config = AttentionOnlyConfig(vocab=LANGUAGE.vocab, seq=LANGUAGE.seq, d_model=8, heads=1, relations=3)
        self.scale = nn.Parameter(torch.ones(()))  # a real model has parameters; this one is never changed
        self.rows = {}
        pronoun, entity = RELATIONS.index("pronoun"), RELATIONS.index("entity")
        g = torch.Generator().manual_seed(seed)
        for b, s in enumerate(sentences):
            logits = torch.randn(len(s.words), 3, LANGUAGE.vocab, generator=g)
            answer = INDEX[s.answers["pronoun"]]
            for chosen, position, relation in [
                (right_at_it, s.it, pronoun),
                (right_at_last, len(s.words) - 1, pronoun),
                (entity_right, s.it, entity),
            ]:
                logits[position, relation, answer] = 10.0 if b in chosen else -10.0
            self.rows[tuple(INDEX[w] for w in s.words)] = logits

    def forward(self, tokens: torch.Tensor, need_weights: bool = False, head_mask=None):
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
            raise ValueError("tokens must be a tensor (batch, seq) of token ids, as language.encode returns")
        batch, seq = tokens.shape
        logits = torch.zeros(batch, seq, 3, LANGUAGE.vocab)
        for b in range(batch):
            ids = [int(t) for t in tokens[b]]
            while ids and ids[-1] == PAD:
                ids.pop()
            row = self.rows.get(tuple(ids))
            if row is None:
                words = " ".join(VOCAB[i] if 0 <= i < len(VOCAB) else "?" for i in ids)
                raise ValueError(f"this stand-in model only knows the check's sentences; got '{words}'")
            logits[b, : len(ids)] = row
        logits = logits * self.scale
        if need_weights:
            weights = torch.ones(seq, seq).tril()
            weights = (weights / weights.sum(-1, keepdim=True)).expand(batch, 1, seq, seq)
            return logits, weights
        return logits


@builder("pronoun_model")
def build_pronoun_model(sentences, right_at_it, right_at_last, entity_right, seed) -> ScriptedModel:
    """The stand-in model of exercise 5 (see ScriptedModel); `sentences` are sentence specs' params."""
    built = [build_sentence(**s) for s in sentences]
    return ScriptedModel(built, set(right_at_it), set(right_at_last), set(entity_right), seed)


def _choose(n: int, k: int, g) -> list[int]:
    """k of the indices 0..n-1, drawn from g."""
    return sorted(int(x) for x in torch.randperm(n, generator=g)[:k])


def _pronoun_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    setups = [(20, 12, 4, 6), (7, 3, 5, 1), (16, 11, 2, 14)]
    while len(setups) < 4:
        n = _int(g, 8, 24)
        right, last, entity = (int(x) for x in torch.randperm(n + 1, generator=g)[:3])
        if 0 not in (right, last, entity) and n - right not in (last, entity) and right != n:  # all distinct
            setups.append((n, right, last, entity))
    cases = []
    for i, (n, right, last, entity) in enumerate(setups):
        case_seed = _case_seed(seed, i, 3)
        sentences = _sentences(4000 + case_seed, n)
        pick = torch.Generator().manual_seed(5000 + case_seed)
        specs = [sentence_spec(s) for s in sentences]
        model = Build(
            "pronoun_model",
            {
                "sentences": [s.params for s in specs],
                "right_at_it": _choose(n, right, pick),
                "right_at_last": _choose(n, last, pick),
                "entity_right": _choose(n, entity, pick),
                "seed": 6000 + case_seed,
            },
        )
        what = f"pronoun_accuracy on {n} sentences, {right} of which the model gets right"
        cases.append(Case((model, specs), what=what, drawn=i >= 3))
    return cases


def _pronoun_judge(case: Case, got, changed) -> None:
    spec, _ = case.args
    n = len(spec.params["sentences"])
    right, last, entity = (len(spec.params[k]) for k in ("right_at_it", "right_at_last", "entity_right"))
    verify_number(
        got,
        right / n,
        [
            (right, "that is a count; divide by the number of sentences"),
            (
                0,
                "no prediction counted as right: compare the predicted token id with INDEX[s.answers['pronoun']], "
                "the id of the word, not with the word itself",
            ),
            (last / n, "you read the prediction at the last word; read it at 'it' (sentence.it)"),
            (
                entity / n,
                f"you read the entity readout; the pronoun is readout {RELATIONS.index('pronoun')} "
                f"(RELATIONS = {RELATIONS})",
            ),
            (1 - right / n, "that is the fraction wrong; the accuracy is the fraction right"),
        ],
        what=case.what,
        form_hint="one number, the fraction correct",
    )


pronoun_accuracy = register(
    Exercise(
        LESSON,
        "pronoun_accuracy",
        function="pronoun_accuracy",
        signature="pronoun_accuracy(model, sentences)",
        cases=_pronoun_cases,
        judge=_pronoun_judge,
    )
)
