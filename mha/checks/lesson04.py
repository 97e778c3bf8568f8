"""Checks for lesson 04, what heads learn. Use: `from mha.checks import lesson04 as check`."""

from collections import defaultdict

import torch

from ..toy.language import INDEX, RELATIONS, TemplateLanguage
from ..toy.models import AttentionOnlyConfig, build_model
from ._legacy import CheckFailed, as_tensor, call, diagnose, exercise, expect_shape

LESSON = "04"
LANGUAGE = TemplateLanguage()


def _sentences(seed: int, n: int):
    return LANGUAGE.sample_sentences(n, torch.Generator().manual_seed(seed))


def _model(seed: int = 0, heads: int = 4):
    config = AttentionOnlyConfig(vocab=LANGUAGE.vocab, seq=LANGUAGE.seq, d_model=16, heads=heads, relations=3)
    return build_model(config, seed)


def _weights(model, sentences):
    tokens, _ = LANGUAGE.encode(sentences)
    with torch.no_grad():
        _, w = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    return w


@exercise(LESSON, "it_row")
def it_row(fn) -> int:
    """fn(weights (heads, q_pos, k_pos), sentence) -> (heads, sentence.it + 1): where "it" looks, up to itself."""
    sentences = _sentences(1, 3)
    weights = _weights(_model(), sentences)
    for b, s in enumerate(sentences):
        w = weights[b]
        what = f"it_row for '{s}'"
        got = as_tensor(call(fn, w.clone(), s), what)
        if tuple(got.shape) == (w.shape[0], w.shape[2]):
            raise CheckFailed(
                f"{what}: shape {tuple(got.shape)}; keep only the keys up to and including 'it' "
                f"(positions 0..{s.it}): the causal mask leaves the rest at 0"
            )
        expect_shape(got, (w.shape[0], s.it + 1), what, "(heads, positions 0..it)")
        diagnose(
            got,
            w[:, s.it, : s.it + 1],
            [
                (
                    w[:, : s.it + 1, s.it],
                    "that is the column of 'it': how much each word looks at 'it'; we want where "
                    "'it' looks, its row: weights[:, it, :it + 1]",
                ),
            ],
            what,
        )
    return len(sentences)


@exercise(LESSON, "relation_table")
def relation_table(fn) -> int:
    """fn(weights (batch, heads, q_pos, k_pos), sentences) -> (heads, relations): mean weight on needed positions."""
    cases = [_sentences(2, 5), _sentences(3, 12)]
    model = _model(1)
    for sentences in cases:
        w = _weights(model, sentences)
        what = f"relation_table over {len(sentences)} sentences"
        got = as_tensor(call(fn, w.clone(), sentences), what)
        expected = torch.stack(
            [torch.stack([w[b, :, s.it, s.needed[r]] for b, s in enumerate(sentences)]).mean(0) for r in RELATIONS],
            dim=1,
        )  # (heads, relations)
        if tuple(got.shape) == (len(RELATIONS),):
            raise CheckFailed(
                f"{what}: shape {tuple(got.shape)}: you averaged over the heads too; keep one row per "
                f"head, (heads, relations)"
            )
        expect_shape(got, expected.shape, what, "(heads, relations), relations in the order of RELATIONS")
        column = torch.stack(
            [torch.stack([w[b, :, s.needed[r], s.it] for b, s in enumerate(sentences)]).mean(0) for r in RELATIONS],
            dim=1,
        )  # all zeros: the causal mask hides "it" from the words before it
        diagnose(
            got,
            expected,
            [
                (expected * len(sentences), "that is a sum over sentences; divide by their number"),
                (column, "you read the columns of 'it' (who looks at 'it'); read its row (where 'it' looks)"),
                (expected[:, [1, 0, 2]], f"relationships out of order: the columns follow RELATIONS = {RELATIONS}"),
            ],
            what,
        )
    return len(cases)


@exercise(LESSON, "remove_head")
def remove_head(fn) -> int:
    """fn(model, tokens, head) -> logits of the model with that head's output zeroed; the model is left unchanged."""
    model = _model(2)
    tokens, _ = LANGUAGE.encode(_sentences(4, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for head in range(model.config.heads):
        what = f"remove_head(model, tokens, head={head})"
        with torch.no_grad():
            got = as_tensor(call(fn, model, tokens.clone(), head), what)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        if changed:
            model.load_state_dict(before)
            raise CheckFailed(
                f"{what} changed the model's weights ({changed[0]}, ...): leave the model as it was, "
                f"e.g. use the head_mask argument of model(...)"
            )
        keep = torch.ones(model.config.heads)
        keep[head] = 0.0
        with torch.no_grad():
            expected = model(tokens, head_mask=keep)
            mistakes = _remove_head_mistakes(model, tokens, head)
        expect_shape(got, expected.shape, what, "the logits, (batch, seq, relations, vocab)")
        diagnose(got, expected, mistakes, what)
    return model.config.heads


def _remove_head_mistakes(model, tokens, head):
    """Logits of classic wrong ways to remove a head (each on a copy of the model)."""
    import copy

    d, d_model = model.config.d_head, model.config.d_model
    rows = slice(head * d, (head + 1) * d)
    out = []
    query_hint = (
        "zeroing the head's query projection does not remove the head: it still attends (evenly, or the "
        "same way from every query) and still writes its values; zero its output instead (head_mask)"
    )
    value_hint = (
        "zeroing the head's W_V leaves its value bias, so the head still writes something: zero its output "
        "instead (head_mask)"
    )
    for block, with_bias, hint in [(0, False, query_hint), (0, True, query_hint), (2, False, value_hint)]:
        m = copy.deepcopy(model)
        with torch.no_grad():
            m.attention.in_proj.weight[block * d_model :][rows] = 0.0
            if with_bias:
                m.attention.in_proj.bias[block * d_model :][rows] = 0.0
        out.append((m(tokens), hint))
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.attention.out_proj.weight[rows] = 0.0
    out.append(
        (
            m(tokens),
            "you zeroed rows of W_O, which are output features; the head's block of W_O is its "
            "columns, W_O[:, h*d_head:(h+1)*d_head] (or simply use head_mask)",
        )
    )
    keep_only = torch.zeros(model.config.heads)
    keep_only[head] = 1.0
    out.append((model(tokens, head_mask=keep_only), "that keeps only this head and removes all the others"))
    return out


@exercise(LESSON, "accuracy_by_distance")
def accuracy_by_distance(fn) -> int:
    """fn(correct (n,) bool, distances (n,) int) -> {distance: accuracy}, accuracy = fraction correct."""
    g = torch.Generator().manual_seed(5)
    cases = [
        (torch.rand(40, generator=g) > 0.3, torch.randint(3, 9, (40,), generator=g)),
        (torch.tensor([True, False, True, True]), torch.tensor([5, 5, 2, 9])),
    ]
    for correct, distances in cases:
        what = f"accuracy_by_distance on {len(correct)} answers"
        got = call(fn, correct.clone(), distances.clone())
        if not isinstance(got, dict):
            raise CheckFailed(f"{what}: return a dict {{distance: accuracy}}, got {type(got).__name__}")
        groups = defaultdict(list)
        for c, d in zip(correct.tolist(), distances.tolist()):
            groups[d].append(c)
        expected = {d: sum(v) / len(v) for d, v in groups.items()}
        got = {int(k): float(v) for k, v in got.items()}
        if set(got) != set(expected):
            raise CheckFailed(f"{what}: keys {sorted(got)}, expected one per distance present: {sorted(expected)}")
        counts = {d: float(sum(v)) for d, v in groups.items()}
        if got == counts and counts != expected:
            raise CheckFailed(
                f"{what}: those are counts of correct answers; divide by the number of answers at each distance"
            )
        for d in expected:
            if abs(got[d] - expected[d]) > 1e-6:
                raise CheckFailed(f"{what}: at distance {d}, accuracy {got[d]:.3f}, expected {expected[d]:.3f}")
    return len(cases)


class _ScriptedModel:
    """Stands in for a trained model: its logits name the right product at "it" for chosen sentences only."""

    def __init__(self, sentences, right_at_it, right_at_last, product_in_entity):
        self.config = AttentionOnlyConfig(vocab=LANGUAGE.vocab, seq=LANGUAGE.seq, d_model=8, heads=1, relations=3)
        g = torch.Generator().manual_seed(6)
        self.logits = torch.randn(len(sentences), LANGUAGE.seq, 3, LANGUAGE.vocab, generator=g)
        pronoun, entity = RELATIONS.index("pronoun"), RELATIONS.index("entity")
        for b, s in enumerate(sentences):
            answer = INDEX[s.answers["pronoun"]]
            for chosen, position, relation in [
                (right_at_it, s.it, pronoun),
                (right_at_last, len(s.words) - 1, pronoun),
                (product_in_entity, s.it, entity),
            ]:
                self.logits[b, position, relation, answer] = 10.0 if b in chosen else -10.0

    def __call__(self, tokens, **kwargs):
        if tokens.shape[0] != self.logits.shape[0]:
            raise ValueError(f"expected the {self.logits.shape[0]} sentences, encoded in order; got {tokens.shape[0]}")
        return self.logits.clone()


@exercise(LESSON, "pronoun_accuracy")
def pronoun_accuracy(fn) -> int:
    """fn(model, sentences) -> fraction of sentences whose product the model names at "it"."""
    sentences = _sentences(13, 20)
    model = _ScriptedModel(
        sentences, right_at_it=set(range(12)), right_at_last=set(range(4)), product_in_entity=set(range(8))
    )
    what = f"pronoun_accuracy on {len(sentences)} sentences, 12 of which the model gets right"
    got = call(fn, model, sentences)
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: return one number, the fraction correct; got {type(got).__name__}") from None
    diagnose(
        got,
        12 / 20,
        [
            (12, "that is a count; divide by the number of sentences"),
            (
                0,
                "no prediction counted as right: compare the predicted token id with INDEX[s.answers['pronoun']], "
                "the id of the word, not with the word itself",
            ),
            (4 / 20, "you read the prediction at the last word; read it at 'it' (sentence.it)"),
            (
                8 / 20,
                f"you read the entity readout; the pronoun is readout {RELATIONS.index('pronoun')} "
                f"(RELATIONS = {RELATIONS})",
            ),
        ],
        what,
    )
    return 1
