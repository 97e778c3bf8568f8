"""Lesson 04's analyses: the head x relationship table, ablation, distance; and a short run that learns."""

import torch

from mha.toy import what_heads_learn as experiment
from mha.toy.language import RELATIONS, TemplateLanguage
from mha.toy.models import AttentionOnlyConfig, build_model

LANGUAGE = TemplateLanguage()


def _model(heads=4):
    config = AttentionOnlyConfig(vocab=LANGUAGE.vocab, seq=LANGUAGE.seq, d_model=16, heads=heads, relations=3)
    return build_model(config, seed=0)


def test_ablation_removes_exactly_one_heads_contribution():
    model = _model()
    tokens = torch.randint(LANGUAGE.vocab, (2, LANGUAGE.seq))
    x = model.embed(tokens)
    with torch.no_grad():
        full, _ = model.attention(x, causal=True)
        without_1, _ = model.attention(x, causal=True, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0]))
        only_1, _ = model.attention(x, causal=True, head_mask=torch.tensor([0.0, 1.0, 0.0, 0.0]))
        bias = model.attention.out_proj.bias
        # the output is the sum of each head's contribution plus the bias; removing head 1 removes its term only
        torch.testing.assert_close(full - without_1, only_1 - bias, atol=1e-5, rtol=0)
        logits_a = model(tokens, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0]))
        logits_b = model(tokens)
    assert not torch.allclose(logits_a, logits_b)


def test_relation_attention_reads_the_needed_positions():
    model = _model()
    sentences = experiment.probe_sentences(20)
    table = experiment.relation_attention(model, sentences)
    assert table.shape == (4, len(RELATIONS)) and (table >= 0).all() and (table <= 1).all()
    tokens, _ = experiment.TemplateLanguage().encode(sentences[:1])
    _, w = model(tokens, need_weights=True)
    s = sentences[0]
    # with a single sentence the table is exactly that sentence's weights from "it"
    one = experiment.relation_attention(model, sentences[:1])
    expected = torch.stack([w[0, :, s.it, s.needed[r]] for r in RELATIONS], dim=1)
    torch.testing.assert_close(one, expected)


def test_a_short_run_learns_every_relationship_and_ablation_hurts():
    setting = experiment.HeadsSetting(heads=4, d_model=32, steps=250, eval_every=250)
    record = experiment.run(setting, seed=0, progress=False)
    assert record["params"] > 0 and len(record["relation_accuracy"]) == 3
    assert min(record["relation_accuracy"]) > 0.9, record["relation_accuracy"]
    ablation = torch.tensor(record["ablation"])  # (heads, relations)
    assert ablation.shape == (4, 3)
    # every relationship has a head without which it drops
    drops = torch.tensor(record["relation_accuracy"]) - ablation
    assert (drops.max(dim=0).values > 0.1).all(), drops
    assert set(record["distance"]) and all(0 <= a <= 1 for a in record["distance"].values())
