import math

import pytest
import torch

from mha.pretrained import head_scores
from mha.pretrained.head_scores import (
    head_type_scores,
    mean_over_sentences,
    next_token,
    previous_token,
    same_word,
    to_token,
)

TOKENS = ["[CLS]", "the", "cat", "saw", "the", "dog", "[SEP]"]


def shifted(seq: int, offset: int) -> torch.Tensor:
    """Each query puts all its weight `offset` positions away (clamped to the sentence)."""
    w = torch.zeros(seq, seq)
    for i in range(seq):
        w[i, min(max(i + offset, 0), seq - 1)] = 1
    return w


def test_previous_and_next_token_heads_score_one():
    prev, nxt = shifted(7, -1), shifted(7, +1)
    assert previous_token(prev).item() == 1 and next_token(prev).item() == 0
    assert next_token(nxt).item() == 1 and previous_token(nxt).item() == 0
    uniform = torch.full((7, 7), 1 / 7)
    assert math.isclose(previous_token(uniform).item(), 1 / 7, rel_tol=1e-6)


def test_sink_scores_count_the_weight_on_a_token():
    w = torch.zeros(7, 7)
    w[:, 0] = 0.75  # every query parks three quarters of its weight on [CLS] ...
    w[:, 6] = 0.25  # ... and the rest on [SEP]
    assert to_token(w, TOKENS, "[CLS]").item() == 0.75
    assert to_token(w, TOKENS, "[SEP]").item() == 0.25
    assert to_token(w, TOKENS, "[MASK]").item() == 0


def test_same_word_averages_over_the_queries_that_have_a_twin():
    w = torch.full((7, 7), 0.0)
    w[1, 4] = 1.0  # the first "the" looks at the second
    w[4, 4] = 1.0  # the second "the" looks at itself: not the same word elsewhere
    assert same_word(w, TOKENS).item() == 0.5
    assert math.isnan(same_word(w, ["a", "b", "c", "d", "e", "f", "g"]).item())


def test_scores_keep_leading_dimensions_and_average_over_sentences():
    w = torch.stack([shifted(7, -1), shifted(7, +1)]).expand(3, 2, 7, 7)  # (layers, heads, seq, seq)
    scores = head_type_scores(w, TOKENS)
    assert set(scores) == {"previous", "next", "self", "same word", "[CLS]", "[SEP]"}
    assert scores["previous"].shape == (3, 2)
    assert scores["previous"][:, 0].eq(1).all() and scores["next"][:, 1].eq(1).all()
    other = head_type_scores(torch.full((3, 2, 4, 4), 0.25), ["[CLS]", "a", "b", "[SEP]"])
    mean = mean_over_sentences([scores, other])
    assert torch.allclose(mean["previous"][:, 0], torch.tensor(0.625))
    assert torch.equal(mean["same word"], scores["same word"]), "a NaN (no repeated word) must not count"


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match=r"one sentence, \(\.\.\., seq, seq\).*got shape \(3, 4\)"):
        head_scores.previous_token(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="and 3 tokens"):
        head_scores.to_token(torch.zeros(4, 4), ["a", "b", "c"], "a")
    with pytest.raises(ValueError, match="at least one sentence"):
        mean_over_sentences([])
