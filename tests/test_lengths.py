"""Lesson 09's experiment: every position scheme trains in the toy models and the offset task's command, and the
length test scores what it says it scores."""

import json

import pytest
import torch

from mha.heads import split_heads
from mha.positions import SCHEMES, RotaryMultiHeadAttention, SinusoidalPositions, apply_rope
from mha.toy import lengths
from mha.toy import tunnel_vision as tv
from mha.toy.__main__ import main as cli
from mha.toy.language import COMPANIES, CONTRAST, INDEX, PRODUCTS, SAME, VOCAB
from mha.toy.models import AttentionOnlyConfig, build_model, count_parameters
from mha.toy.tasks import IGNORE_INDEX, OffsetCopyTask

# --- the toy model with each scheme ---------------------------------------------------------------------------------


def test_the_default_model_is_the_learned_table_of_lessons_02_and_04():
    config = AttentionOnlyConfig(vocab=64, seq=16, d_model=64, heads=4, relations=3)
    assert config.positions == "learned"
    model, again = build_model(config, 0), build_model(config, 0)
    assert isinstance(model.position_embedding, torch.nn.Embedding) and type(model.attention).__name__ == (
        "MultiHeadAttention"
    )
    assert list(model.state_dict()) == [
        "token_embedding.weight",
        "position_embedding.weight",
        "attention.in_proj.weight",
        "attention.in_proj.bias",
        "attention.out_proj.weight",
        "attention.out_proj.bias",
        "readouts.0.weight",
        "readouts.0.bias",
        "readouts.1.weight",
        "readouts.1.bias",
        "readouts.2.weight",
        "readouts.2.bias",
    ]
    assert count_parameters(model) == 34_240
    tokens = torch.randint(64, (2, 16))
    x = model.token_embedding(tokens) + model.position_embedding(torch.arange(16))
    torch.testing.assert_close(model.embed(tokens), x, atol=0, rtol=0)
    torch.testing.assert_close(model(tokens), again(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_builds_runs_and_adds_only_what_it_should(scheme):
    config = AttentionOnlyConfig(vocab=10, seq=12, d_model=16, heads=2, relations=2, positions=scheme)
    model = build_model(config, 0)
    learned = count_parameters(build_model(AttentionOnlyConfig(vocab=10, seq=12, d_model=16, heads=2, relations=2), 0))
    table = 12 * 16
    assert count_parameters(model) == (learned if scheme == "learned" else learned - table)
    assert isinstance(model.attention, RotaryMultiHeadAttention) == (scheme == "rope")
    assert isinstance(model.position_embedding, SinusoidalPositions) == (scheme == "sinusoidal")
    tokens = torch.randint(10, (3, 12))
    logits, weights = model(tokens, need_weights=True)
    assert logits.shape == (3, 12, 2, 10) and weights.shape == (3, 2, 12, 12)
    assert (weights.triu(1) == 0).all()
    embedded = model.embed(tokens)
    if scheme in ("none", "rope"):
        torch.testing.assert_close(embedded, model.token_embedding(tokens))  # nothing added to the tokens
    else:
        assert not torch.allclose(embedded, model.token_embedding(tokens))


def test_an_extra_mask_narrows_what_each_query_sees():
    model = build_model(AttentionOnlyConfig(vocab=10, seq=8, d_model=16, heads=2, relations=1, positions="rope"), 0)
    tokens = torch.randint(10, (2, 8))
    _, weights = model(tokens, need_weights=True, attn_mask=lengths.window_mask(8, 3))
    q, k = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert (weights[..., (q - k >= 3) | (k > q)] == 0).all()
    assert (weights[..., (q - k < 3) & (k <= q)] > 0).all()


def test_too_long_input_is_named_for_every_scheme():
    for scheme in SCHEMES:
        model = build_model(AttentionOnlyConfig(vocab=10, seq=8, d_model=16, heads=2, positions=scheme), 0)
        with pytest.raises(ValueError, match="at most seq=8 positions"):
            model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown position scheme"):
        AttentionOnlyConfig(positions="relative")


# --- each scheme trains in the offset task's command ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_trains_in_the_offset_tasks_command(scheme, tmp_path, capsys):
    path = tmp_path / "runs.json"
    cli(["tunnel-vision", "--positions", scheme, "--heads", "2", "--d-model", "16", "--steps", "30", "--seeds", "0"]
        + ["--vocab", "8", "--seq", "8", "--json", str(path), "--quiet"])  # fmt: skip
    [record] = json.loads(path.read_text())["runs"]
    assert record["positions"] == scheme
    assert record["label"] == ("2 heads" if scheme == "learned" else f"2 heads, {scheme}")
    assert record["curve"]["step"][-1] == 30
    losses = tv.run(tv.Setting(heads=2, d_model=16, vocab=8, seq=8, steps=30, positions=scheme), 0, False)[1].history
    assert losses[-1]["loss"] < losses[0]["train_loss"], "training lowers the loss"
    assert scheme in capsys.readouterr().out or scheme == "learned"


# --- the length test -------------------------------------------------------------------------------------------------


def test_sentence_stream_asks_at_every_it_about_its_own_sentence():
    stream = lengths.SentenceStream(60)
    tokens, targets = stream.sample(30, torch.Generator().manual_seed(0))
    assert tokens.shape == (30, 60) and targets.shape == (30, 60, 3)
    asked = (targets != IGNORE_INDEX).all(-1)  # (batch, seq)
    assert torch.equal(asked, tokens == INDEX["it"]), "a question at every 'it', and nowhere else"
    assert (asked.sum(1) >= 2).all(), "60 tokens hold at least two sentences"
    for b in range(30):
        words = [VOCAB[int(t)] for t in tokens[b]]
        for i in asked[b].nonzero()[:, 0].tolist():
            before = words[:i]
            last_product = max(j for j, w in enumerate(before) if w in PRODUCTS)
            last_company = max(j for j, w in enumerate(before) if w in COMPANIES)
            last_connective = max(j for j, w in enumerate(before) if w in CONTRAST + SAME)
            product, company, contrast = (VOCAB[int(t)] for t in targets[b, i])
            assert product == words[last_product] and company == words[last_company], "the last one before 'it'"
            assert contrast == ("<contrast>" if words[last_connective] in CONTRAST else "<same>")
    several = [b for b in range(30) if len({VOCAB[int(t)] for t in tokens[b] if VOCAB[int(t)] in PRODUCTS}) > 1]
    assert several, "earlier sentences hold other products: the answer depends on order"
    with pytest.raises(ValueError, match="positive integer"):
        lengths.SentenceStream(0)


def test_chance_is_the_score_of_a_guess_that_ignores_the_sequence():
    assert OffsetCopyTask(vocab=64).chance == 1 / 64
    assert lengths.SentenceStream().chance == pytest.approx((1 / 10 + 1 / 8 + 1 / 2) / 3)
    tokens, targets = lengths.SentenceStream(96).sample(400, torch.Generator().manual_seed(1))
    asked = targets[targets[..., 0] != IGNORE_INDEX]  # (questions, relations)
    fixed = torch.tensor([INDEX["iphone"], INDEX["apple"], INDEX["<contrast>"]])  # one fixed answer per question
    assert (asked == fixed).double().mean().item() == pytest.approx(lengths.SentenceStream().chance, abs=0.02)


def test_window_mask_keeps_the_last_window_keys():
    mask = lengths.window_mask(5, 2)
    assert mask[4].tolist() == [False, False, False, True, True]
    assert mask[0].tolist() == [True] * 5  # keys ahead: the model's causal mask hides them


class _RightUpTo(torch.nn.Module):
    """Answers an OffsetCopyTask perfectly at positions below `up_to`, wrongly beyond."""

    def __init__(self, task, up_to):
        super().__init__()
        self.task, self.up_to = task, up_to

    def forward(self, tokens, attn_mask=None):
        batch, seq = tokens.shape
        logits = torch.zeros(batch, seq, self.task.relations, self.task.vocab)
        for r, offset in enumerate(self.task.offsets):
            answer = torch.roll(tokens, offset, dims=1)
            answer[:, self.up_to :] = (answer[:, self.up_to :] + 1) % self.task.vocab
            logits[:, :, r].scatter_(-1, answer[..., None], 1.0)
        return logits


def test_score_separates_new_positions_from_trained_ones():
    task = OffsetCopyTask((1, 2, 3), vocab=16, seq=32)
    result = lengths.score(_RightUpTo(task, 16), task, trained=16, eval_batch=8)
    assert result["new_accuracy"] == 0.0
    assert result["by_position"][:3] == [None, 1.0, 1.0] and result["by_position"][16:] == [0.0] * 16
    # relationship i-d has answers at positions d..31, right at d..15: (16 - d) / (32 - d); accuracy is their mean
    assert result["accuracy"] == pytest.approx(sum((16 - d) / (32 - d) for d in (1, 2, 3)) / 3, abs=1e-6)
    assert lengths.score(_RightUpTo(task, 32), task, trained=16, eval_batch=8)["accuracy"] == 1.0
    assert result["answers_by_position"][:4] == [0, 8, 16, 24] and result["answers_by_position"][4:] == [24] * 28


def test_accuracy_by_position_pools_the_answers_of_each_bin():
    score = {"by_position": [None, 1.0, 0.5, 0.0, None, None], "answers_by_position": [0, 2, 4, 6, 0, 0]}
    assert lengths.accuracy_by_position(score) == ([0, 1, 2, 3, 4, 5], [None, 1.0, 0.5, 0.0, None, None])
    starts, pooled = lengths.accuracy_by_position(score, width=2)
    assert starts == [0, 2, 4] and pooled == [1.0, pytest.approx(2 / 10), None]  # (2 + 2) / 6 then (2 + 0) / 10
    with pytest.raises(ValueError, match="width must be a positive integer"):
        lengths.accuracy_by_position(score, width=0)


def test_the_most_frequent_token_so_far_is_what_it_says():
    task = OffsetCopyTask((1,), vocab=4, seq=6)
    tokens, targets = task.sample(3, torch.Generator().manual_seed(lengths.EVAL_SEED))
    right = valid = 0
    for b in range(3):
        for i in range(4, 6):
            seen = tokens[b, : i + 1].tolist()
            guess = min(range(4), key=lambda t: (-seen.count(t), t))  # most frequent, lowest id among ties
            right, valid = right + int(guess == int(targets[b, i, 0])), valid + 1
    assert lengths.most_frequent_guess(task, trained=4, eval_batch=3) == right / valid


def test_a_learned_tables_rows_past_the_trained_length_never_change():
    setting = lengths.offset_setting("learned", steps=20, d_model=16, eval_batch=16)
    record, model = lengths.run(setting, seed=0, progress=False)
    assert record["table_rows"] == 64 and record["untouched_rows"] == 48
    start = build_model(setting.model_config(), 0).position_embedding.weight
    assert torch.equal(model.position_embedding.weight[16:], start[16:])
    assert not torch.equal(model.position_embedding.weight[:16], start[:16])
    assert record["lengths"] == [16, 32, 64] and len(record["scores"]) == len(record["window_scores"]) == 3
    rope, _ = lengths.run(lengths.offset_setting("rope", steps=2, d_model=16, eval_batch=16), seed=0, progress=False)
    assert rope["untouched_rows"] is None and rope["params"] == record["params"] - 64 * 16
    assert rope["looks"] is None and torch.equal(torch.tensor(record["looks"]), lengths.looks_by_position(model))


@pytest.mark.parametrize("scheme", ["learned", "sinusoidal"])
def test_looks_by_position_is_the_favourite_key_of_the_position_only_scores(scheme):
    model = build_model(AttentionOnlyConfig(vocab=10, seq=9, d_model=16, heads=2, relations=1, positions=scheme), 3)
    looks = lengths.looks_by_position(model)  # (heads, seq)
    with torch.no_grad():
        rows = model.position_embedding(torch.arange(9))  # (seq, d_model)
        q, k, _ = model.attention.project(rows, rows, rows)
    for h in range(2):
        part = slice(8 * h, 8 * h + 8)
        for m in range(9):
            scores = [float(q[m, part] @ k[n, part]) for n in range(m + 1)]  # the keys it can see
            assert looks[h, m] == m - max(range(m + 1), key=scores.__getitem__)
    assert lengths.looks_by_position(build_model(AttentionOnlyConfig(vocab=10, seq=9, positions="rope"), 0)) is None


def test_summary_gives_mean_lowest_and_highest_over_seeds():
    def record(seed, accuracies):
        scores = [{"accuracy": a, "new_accuracy": None if i == 0 else a / 2} for i, a in enumerate(accuracies)]
        return {"task": "offset", "positions": "rope", "seed": seed, "trained": 16, "lengths": [16, 32, 64],
                "params": 1, "scores": scores}  # fmt: skip

    [row] = lengths.summarize([record(0, [1.0, 0.5, 0.2]), record(1, [0.8, 0.7, 0.4])])
    assert row["mean"] == pytest.approx([0.9, 0.6, 0.3]) and row["low"] == [0.8, 0.5, 0.2]
    assert row["high"] == [1.0, 0.7, 0.4] and row["new_mean"][0] is None
    text = lengths.format_summary([record(0, [1.0, 0.5, 0.2]), record(1, [0.8, 0.7, 0.4])])
    assert "rope" in text and "90% [80%-100%]" in text


def test_the_positions_command_writes_its_runs_with_provenance(tmp_path, capsys):
    path = tmp_path / "out" / "lengths.json"
    cli(["positions", "--tasks", "offset", "--schemes", "rope", "none", "--seeds", "0", "--steps", "3"]
        + ["--json", str(path), "--quiet"])  # fmt: skip
    written = json.loads(path.read_text())
    assert written["provenance"]["command"].startswith("python -m mha.toy positions --tasks offset")
    assert [r["positions"] for r in written["runs"]] == ["rope", "none"]
    out = capsys.readouterr().out
    assert "new positions only" in out and "window of the trained length" in out


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown task"):
        lengths.LengthSetting(task="copy")
    with pytest.raises(ValueError, match="unknown position scheme"):
        lengths.offset_setting("alibi")
    with pytest.raises(ValueError, match="factors must be positive integers"):
        lengths.offset_setting("rope", factors=(1, 0))


@pytest.mark.parametrize("scheme", ["rope", "learned"])
def test_scores_by_offset_are_the_scores_behind_the_models_weights(scheme):
    model = build_model(AttentionOnlyConfig(vocab=10, seq=9, d_model=16, heads=2, relations=1, positions=scheme), 3)
    tokens = torch.randint(10, (4, 9), generator=torch.Generator().manual_seed(0))
    table = lengths.scores_by_offset(model, tokens)  # (heads, seq)
    with torch.no_grad():
        _, weights = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    # the weights of the last query are the softmax of its scores; rebuild them from a per-query computation
    x = model.embed(tokens)
    q, k, _ = model.attention.project(x, x, x)
    q, k = split_heads(q, 2), split_heads(k, 2)
    if scheme == "rope":
        q, k = apply_rope(q), apply_rope(k)
    scores = (q @ k.transpose(-2, -1)).detach() / 8**0.5
    torch.testing.assert_close(scores[:, :, -1].softmax(-1), weights[:, :, -1])
    torch.testing.assert_close(table[:, 2], scores.diagonal(offset=-2, dim1=-2, dim2=-1).mean(dim=(0, 2)))
    assert table.shape == (2, 9)


def test_runs_in_parallel_processes_give_the_same_records():
    settings = [lengths.offset_setting("rope", steps=3, d_model=16, eval_batch=8)]
    one_by_one = lengths.run_all(settings, [0, 1], progress=False)
    parallel = lengths.run_all(settings, [0, 1], jobs=2)
    for a, b in zip(one_by_one, parallel, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    with pytest.raises(ValueError, match="keep_models needs jobs=1"):
        lengths.run_all(settings, [0], keep_models=True, jobs=2)
