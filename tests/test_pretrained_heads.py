import json

import pytest
import torch

from mha import pretrained
from mha.pretrained import analysis
from mha.pretrained.__main__ import main as pretrained_command
from mha.pretrained.analysis import (
    ablate_heads,
    embed_with_head_masks,
    pair_similarities,
    prune,
    rank_changes,
    unique_sentences,
)

PAIRS = [  # short sentences: ablation runs the encoder 72 times over them
    ("The cat sat on the mat.", "A cat is sleeping on a rug."),
    ("The cat sat on the mat.", "The bank raised its rates."),
]


@pytest.fixture(scope="module")
def loaded():
    return pretrained.load()


def test_rank_changes_counts_discordant_pairs():
    ref = torch.tensor([0.9, 0.5, 0.1])
    assert rank_changes(ref, ref).item() == 0
    assert rank_changes(ref, torch.tensor([0.5, 0.9, 0.1])).item() == 1
    assert rank_changes(ref, ref.flip(0)).item() == 3
    assert rank_changes(ref, torch.stack([ref, ref.flip(0)])).tolist() == [0, 3]


def test_unique_sentences_and_pair_similarities():
    sentences, index = unique_sentences(PAIRS)
    assert sentences == ["The cat sat on the mat.", "A cat is sleeping on a rug.", "The bank raised its rates."]
    assert index.tolist() == [[0, 1], [0, 2]]
    emb = torch.eye(3)
    emb[1] = emb[0]
    assert pair_similarities(emb, index).tolist() == [1.0, 0.0]


def test_ablation_from_cached_layer_inputs_equals_full_runs_with_a_head_mask(loaded):
    model, tokenizer = loaded
    ablation = ablate_heads(model, tokenizer, PAIRS)
    sentences, index = unique_sentences(PAIRS)
    masks = torch.ones(3, 6, 12)
    masks[1, 0, 2] = 0  # layer 0 head 2
    masks[2, 5, 5] = 0  # layer 5 head 5
    emb = embed_with_head_masks(model, tokenizer, sentences, masks)  # (3, sentences, d_model)
    for i, (layer, head) in enumerate([(0, 2), (5, 5)], start=1):
        shift = 1 - (emb[i] * emb[0]).sum(-1).mean()
        assert abs(shift - ablation.shift[layer, head]) < 1e-5
    torch.testing.assert_close(ablation.similarities, pair_similarities(emb[0], index))
    assert ablation.shift.shape == ablation.rank_changes.shape == (6, 12)
    assert ablation.shift.min() >= -1e-6 and ablation.shift[5, 5] > 10 * ablation.shift.median()


def test_pruning_everything_least_first_and_most_first_meet(loaded):
    model, tokenizer = loaded
    importance = torch.arange(72.0).reshape(6, 12)
    rows = prune(model, tokenizer, importance, counts=(0, 72), pairs=PAIRS)
    assert [(r.removed, r.order) for r in rows] == [
        (0, "least important first"),
        (72, "least important first"),
        (0, "most important first"),
        (72, "most important first"),
    ]
    assert rows[0].similarity == pytest.approx(1, abs=1e-5) and rows[0].rank_changes == 0
    assert rows[1].similarity == pytest.approx(rows[3].similarity, abs=1e-5)  # no head left either way
    assert rows[1].similarity < 0.9


def test_pronoun_links_need_single_token_words(loaded):
    model, tokenizer = loaded
    links = analysis.pronoun_links(model, tokenizer, analysis.PRONOUN_SENTENCES[:2])
    assert links.antecedent.shape == (2, 6, 12)
    assert links.antecedent[0, 3, 1] > 0.5 > links.distractor[0, 3, 1]  # L3H1: "it" -> "iphone", not "apple"
    with pytest.raises(ValueError, match="'smartphone' is not one token"):
        analysis.pronoun_links(model, tokenizer, [(pretrained.COURSE_SENTENCE, "it", "smartphone", "apple")])


def test_command_prints_the_tables_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analysis, "PAIRS", PAIRS)
    monkeypatch.setattr(analysis, "PRUNE_COUNTS", (0, 36))
    monkeypatch.setattr(analysis, "TYPE_SENTENCES", analysis.TYPE_SENTENCES[:3])
    monkeypatch.setattr(analysis, "PRONOUN_SENTENCES", analysis.PRONOUN_SENTENCES[:3])
    path = tmp_path / "heads.json"
    pretrained_command(["heads", "--json", str(path)])
    out = capsys.readouterr().out
    assert "previous   L0H2 1.00" in out
    assert "pronoun -> antecedent, over 3 sentences" in out and "L3H1: 0.76 on the antecedent" in out
    assert "one head removed at a time" in out and "least important first" in out
    data = json.loads(path.read_text())
    assert set(data) == {"provenance", "head_types", "sink_shares", "pronoun", "ablation", "prune"}
    assert data["provenance"]["command"] == f"python -m mha.pretrained heads --json {path}"
    assert "weight on [CLS]" in out
    assert len(data["ablation"]["shift"]) == 6 and len(data["prune"]) == 4


def test_values_through_output_rebuild_the_attention_output(loaded):
    model, tokenizer = loaded
    batch = pretrained.tokenize(tokenizer, [pretrained.COURSE_SENTENCE, "Hi!"])
    inputs, _ = analysis.layer_inputs(model, batch)
    att = model.layers[2].attention
    out, weights = att(inputs[2], key_padding_mask=batch.mask, need_weights=True, average_weights=False)
    f = analysis.values_through_output(att, inputs[2])  # (batch, heads, k_pos, d_model)
    rebuilt = torch.einsum("bhqk,bhkm->bqm", weights, f) + att.out_proj.bias
    torch.testing.assert_close(rebuilt, out, atol=1e-5, rtol=0)


def test_sink_shares_weight_on_cls_is_mostly_parking(loaded):
    model, tokenizer = loaded
    shares = analysis.sink_shares(model, tokenizer, analysis.TYPE_SENTENCES[:3])
    assert shares.weight.shape == shares.norm.shape == (6, 12)
    assert ((shares.weight >= 0) & (shares.weight <= 1) & (shares.norm >= 0) & (shares.norm <= 1)).all()
    assert shares.weight.mean() > 0.4 > 0.15 > shares.norm.mean()
