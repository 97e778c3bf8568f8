"""MiniLM's previous-token head with its position table moved; the loaded model is never changed for good."""

import json

import pytest
import torch

from mha import pretrained
from mha.pretrained import analysis, moved_positions
from mha.pretrained.__main__ import main as pretrained_command

SENTENCES = ["The cat sat on the mat.", "Apple released a new iPhone, but it is expensive."]


@pytest.fixture(scope="module")
def loaded():
    return pretrained.load()


def test_the_table_is_swapped_inside_the_block_and_back_afterwards(loaded):
    model, tokenizer = loaded
    own = model.embeddings.position.weight
    before = pretrained.encode(model, tokenizer, SENTENCES[:1]).hidden
    zeros = torch.zeros_like(own)
    with moved_positions.position_table(model, zeros):
        assert torch.equal(model.embeddings.position.weight, zeros)
        inside = pretrained.encode(model, tokenizer, SENTENCES[:1]).hidden
    assert model.embeddings.position.weight is own
    assert not torch.allclose(inside, before)
    torch.testing.assert_close(pretrained.encode(model, tokenizer, SENTENCES[:1]).hidden, before, atol=0, rtol=0)
    with pytest.raises(RuntimeError), moved_positions.position_table(model, zeros):
        raise RuntimeError("a failing block")
    assert model.embeddings.position.weight is own
    with pytest.raises(ValueError, match=r"table has shape \(10, 384\): expected .* \(512, 384\)"):
        with moved_positions.position_table(model, zeros[:10]):
            pass


def test_shifted_and_shuffled_tables():
    table = torch.arange(10.0)[:, None].expand(10, 3)
    assert moved_positions.shifted(table, 3)[:, 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    perm = torch.tensor([2, 0, 1])
    assert moved_positions.shuffled(table, perm)[:, 0].tolist() == [2, 0, 1, 3, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="permutation"):
        moved_positions.shuffled(table, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="shift must lie in 0..9"):
        moved_positions.shifted(table, 10)


def test_follows_table_score_finds_the_key_with_the_row_before():
    perm = torch.tensor([2, 0, 3, 1])  # slot 0 has row 2, slot 1 row 0, slot 2 row 3, slot 3 row 1
    weights = torch.zeros(4, 4)
    # a head that follows the rows: from the slot with row r to the slot with row r - 1
    for slot, row in enumerate(perm.tolist()):
        if row > 0:
            weights[slot, perm.tolist().index(row - 1)] = 1.0
    assert moved_positions.follows_table_score(weights, perm) == 1.0
    assert moved_positions.previous_score(weights) == 0.0  # no slot looks at the slot just before it


def test_the_previous_token_head_follows_the_rows_not_the_order(loaded):
    model, tokenizer = loaded
    report = moved_positions.moved_table_report(model, tokenizer, SENTENCES, shifts=(0, 7), shuffle_seeds=(0,))
    as_trained, shifted = report["shift"]
    assert as_trained["previous"] > 0.95 and as_trained["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert shifted["previous"] > 0.9
    assert report["shuffle"]["previous"] < 0.3 < 0.9 < report["shuffle"]["follows_table"]
    assert "shuffled" in moved_positions.format_report(report)


def test_command_prints_the_report_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analysis, "TYPE_SENTENCES", SENTENCES[:1])
    monkeypatch.setattr(moved_positions, "SHIFTS", (0, 3))
    path = tmp_path / "moved.json"
    pretrained_command(["positions", "--json", str(path)])
    assert "L0H2, averaged over 1 sentences" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert data["provenance"]["command"] == f"python -m mha.pretrained positions --json {path}"
    assert data["head"] == [0, 2] and data["sentences"] == SENTENCES[:1]
    assert "L0H2, averaged over 1 sentences" in moved_positions.format_report(data)
