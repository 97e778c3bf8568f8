"""The template language of lesson 04: every target is the answer its relationship asks for, at the pronoun."""

import pytest
import torch

from mha.toy.language import (
    CONTRAST,
    INDEX,
    PAD,
    RELATIONS,
    SAME,
    VOCAB,
    TemplateLanguage,
    decode,
    make_sentence,
)
from mha.toy.tasks import IGNORE_INDEX


def test_the_seed_sentence_is_in_the_language():
    s = make_sentence("apple", "iphone", "but", "expensive")
    assert str(s) == "apple released a new iphone , but it is expensive ."
    assert s.answers == {"pronoun": "iphone", "entity": "apple", "contrast": "<contrast>"}
    assert s.needed == {"pronoun": 4, "entity": 0, "contrast": 6} and s.words[s.it] == "it"


def test_passive_order_and_distractors_move_the_positions():
    s = make_sentence(
        "amazon",
        "kindle",
        "and",
        "cheap",
        verb="unveiled",
        passive=True,
        opener=["last", "week"],
        middle=["in", "paris"],
        aside=["honestly"],
    )
    assert str(s) == "last week , a new kindle was unveiled by amazon in paris , and honestly it is cheap ."
    assert s.words[s.product] == "kindle" and s.words[s.company] == "amazon" and s.words[s.connective] == "and"
    assert s.product < s.company, "in the passive the product comes first"
    assert s.answers["contrast"] == "<same>"


def test_every_target_answers_its_relationship_at_the_pronoun_only():
    language = TemplateLanguage()
    sentences = language.sample_sentences(300, torch.Generator().manual_seed(0))
    tokens, targets = language.encode(sentences)
    assert tokens.shape == (300, language.seq) and targets.shape == (300, language.seq, len(RELATIONS))
    for b, s in enumerate(sentences):
        assert decode(tokens[b]) == list(s.words)
        answered = (targets[b] != IGNORE_INDEX).any(dim=-1).nonzero().flatten().tolist()
        assert answered == [s.it] and s.words[s.it] == "it"
        product, company, contrast = (VOCAB[int(t)] for t in targets[b, s.it])
        assert product == s.words[s.product] and VOCAB[int(tokens[b, s.product])] == product
        assert company == s.words[s.company] and VOCAB[int(tokens[b, s.company])] == company
        connective = s.words[s.connective]
        assert contrast == ("<contrast>" if connective in CONTRAST else "<same>") and connective in CONTRAST + SAME
        assert (tokens[b, len(s.words) :] == PAD).all()


def test_positions_vary_so_no_offset_gives_an_answer_away():
    sentences = TemplateLanguage().sample_sentences(300, torch.Generator().manual_seed(1))
    for relation in RELATIONS:
        offsets = {s.it - s.needed[relation] for s in sentences}
        assert len(offsets) >= 3, f"{relation}: the answer always sits at the same distance from 'it'"
    assert len({s.answers["pronoun"] for s in sentences}) == 10 and len({s.answers["entity"] for s in sentences}) == 8


def test_same_generator_state_same_batch():
    a = TemplateLanguage().sample(8, torch.Generator().manual_seed(3))
    b = TemplateLanguage().sample(8, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_unknown_words_are_refused():
    with pytest.raises(ValueError, match="company must be one of"):
        make_sentence("banana", "iphone", "but", "expensive")
    with pytest.raises(ValueError, match="more than seq=5"):
        TemplateLanguage(seq=5).encode([make_sentence("apple", "iphone", "but", "expensive")])
    assert INDEX["<pad>"] == PAD == 0
