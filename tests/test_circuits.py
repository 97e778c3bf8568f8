"""Lesson 11's wing: the repeated-token task, the head scores against hand-built patterns, ablation against the sum
over heads, composition scores, the experiment's bookkeeping, learning in context on text, MiniLM's scores, the
command."""

import json

import pytest
import torch

from mha import MultiHeadAttention
from mha.circuits import induction, minilm, text
from mha.circuits.__main__ import main as circuits_command
from mha.circuits.repeats import RepeatedTokens, chance_levels, earlier_occurrence, next_tokens, predictable
from mha.circuits.scores import (
    ablation_mask,
    after_earlier,
    composition_score,
    composition_scores,
    forward_without_head,
    head_terms,
    induction_scores,
    merge_check,
    ov_matrix,
    previous_token_scores,
    qk_matrix,
    random_composition,
    spread_evenly,
)
from mha.positions import RotaryMultiHeadAttention
from mha.toy.models import AttentionOnlyConfig, build_model, count_parameters
from mha.toy.tasks import IGNORE_INDEX

# --- the task ----------------------------------------------------------------------------------------------------


def test_each_sequence_repeats_a_pattern_of_distinct_tokens_with_its_own_period():
    task = RepeatedTokens(vocab=20, seq=30, periods=(3, 9))
    tokens, periods = task.sample_periods(200, torch.Generator().manual_seed(0))
    assert tokens.shape == (200, 30) and tokens.dtype == torch.int64
    assert set(periods.tolist()) == set(range(3, 10))  # every period drawn, none outside
    for row, p in zip(tokens, periods.tolist()):
        assert len(set(row[:p].tolist())) == p  # distinct within the pattern
        assert torch.equal(row[p:], row[:-p])  # and repeated with period p
    _, targets = task.sample(4, torch.Generator().manual_seed(0))
    again, _ = task.sample_periods(4, torch.Generator().manual_seed(0))
    assert torch.equal(targets[:, :-1, 0], again[:, 1:]) and (targets[:, -1] == IGNORE_INDEX).all()


def test_predictable_positions_are_those_from_the_period_to_the_one_before_last():
    task = RepeatedTokens(vocab=32, seq=32, periods=(6, 16))
    tokens, periods = task.sample_periods(64, torch.Generator().manual_seed(1))
    positions = torch.arange(32)
    expected = (positions >= periods[:, None]) & (positions < 31)
    assert torch.equal(predictable(tokens), expected)
    # a token seen before, by hand
    assert predictable(torch.tensor([[4, 5, 4, 6, 5, 7]])).tolist() == [[False, False, True, False, True, False]]


def test_earlier_occurrence_and_the_keys_after_it_by_hand():
    tokens = torch.tensor([[7, 8, 7, 7]])
    assert earlier_occurrence(tokens)[0].int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]]
    # query 2 (token 7, seen at 0): key 1; query 3 (seen at 0 and 2): keys 1 and 3
    assert after_earlier(tokens)[0].int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1]]


def test_bad_tasks_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="vocab must be at least the longest period"):
        RepeatedTokens(vocab=8, seq=32, periods=(6, 16))
    with pytest.raises(ValueError, match="seq must exceed the longest period"):
        RepeatedTokens(vocab=32, seq=16, periods=(6, 16))
    with pytest.raises(ValueError, match="periods must be"):
        RepeatedTokens(vocab=32, seq=32, periods=(9, 6))
    with pytest.raises(ValueError, match=r"tokens must have shape \(batch, seq\), got 1 dimensions"):
        next_tokens(torch.zeros(3, dtype=torch.long))


def test_the_seen_token_guess_matches_a_simulated_guesser():
    task = RepeatedTokens(vocab=32, seq=32, periods=(6, 16))
    tokens, periods = task.sample_periods(4000, torch.Generator().manual_seed(2))
    where = predictable(tokens)
    g = torch.Generator().manual_seed(3)
    right = total = 0
    for row, p, mark in zip(tokens.tolist(), periods.tolist(), where):
        for i in mark.nonzero().flatten().tolist():
            others = [t for t in row[:p] if t != row[i]]  # the other tokens seen so far
            right += others[int(torch.randint(len(others), (), generator=g))] == row[i + 1]
            total += 1
    levels = chance_levels(task)
    assert levels["a seen token"] == pytest.approx(right / total, abs=0.01)
    assert levels["uniform"] == 1 / 32 and levels["current token"] == 1 / 31


# --- scores against hand-built patterns --------------------------------------------------------------------------


def _shifted_eye(seq: int, by: int) -> torch.Tensor:
    """Weights that put everything on key q - by (on key 0 where there is none)."""
    w = torch.zeros(seq, seq, dtype=torch.float64)
    for q in range(seq):
        w[q, max(q - by, 0)] = 1.0
    return w


def test_previous_token_score_of_hand_built_heads():
    seq = 7
    perfect = _shifted_eye(seq, 1)
    two_back = _shifted_eye(seq, 2)
    uniform = torch.ones(seq, seq, dtype=torch.float64).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    weights = torch.stack([perfect, two_back, uniform])[None].expand(3, 3, seq, seq)  # (batch, heads, seq, seq)
    scores = previous_token_scores(weights)
    expected_uniform = sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1)
    torch.testing.assert_close(scores, torch.tensor([1.0, 1 / 6, expected_uniform], dtype=torch.float64))
    even = spread_evenly(2, seq)
    assert even.shape == (2, 1, seq, seq) and torch.equal(even[1, 0], uniform)


def test_induction_score_of_hand_built_patterns():
    tokens = torch.tensor([[3, 1, 4, 3, 1, 4, 3]])  # period 3: query i >= 3 must look at i - 2
    seq = tokens.shape[1]
    induction_head = torch.zeros(seq, seq, dtype=torch.float64)
    for q in range(seq):
        induction_head[q, q - 2 if q >= 3 else 0] = 1.0
    duplicate_head = _shifted_eye(seq, 3)  # the earlier occurrence itself
    previous_head = _shifted_eye(seq, 1)
    weights = torch.stack([induction_head, duplicate_head, previous_head])[None]  # (1, 3, seq, seq)
    torch.testing.assert_close(induction_scores(weights, tokens), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_induction_score_with_several_earlier_occurrences_by_hand():
    tokens = torch.tensor([[5, 5, 5]])
    w = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.5, 0.3]], dtype=torch.float64)
    # query 1 (5 seen at 0): key 1 -> 0.7; query 2 (seen at 0 and 1): keys 1 and 2 -> 0.5 + 0.3
    assert induction_scores(w[None, None], tokens).item() == pytest.approx((0.7 + 0.8) / 2)
    # pooled over the batch: the second sequence has one such query only
    tokens2 = torch.tensor([[5, 5, 5], [1, 2, 1]])
    w2 = torch.stack([w, torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.1, 0.6, 0.3]], dtype=torch.float64)])
    assert induction_scores(w2[:, None], tokens2).item() == pytest.approx((0.7 + 0.8 + 0.6) / 3)


def test_scores_refuse_what_they_cannot_score():
    with pytest.raises(ValueError, match="no token of these sequences occurs twice"):
        induction_scores(torch.ones(1, 2, 3, 3) / 3, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="disagree"):
        induction_scores(torch.ones(2, 2, 3, 3) / 3, torch.tensor([[0, 1, 0]]))
    with pytest.raises(ValueError, match=r"weights must have shape \(batch, ..., seq, seq\)"):
        previous_token_scores(torch.ones(3, 3))


# --- the sum over heads, and ablation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: MultiHeadAttention(12, 3),
        lambda: RotaryMultiHeadAttention(16, 4),
        lambda: MultiHeadAttention(12, 4, kv_heads=2),
    ],
    ids=["plain", "rope", "grouped"],
)
def test_the_heads_terms_add_up_to_the_layers_output(make):
    torch.manual_seed(0)
    layer = make().double()
    x = torch.randn(2, 5, layer.d_model, dtype=torch.float64)
    terms = head_terms(layer, x)
    assert terms.shape == (2, layer.heads, 5, layer.d_model)
    assert merge_check(layer, x) < 1e-12
    # each term is that head's own: zeroing the head's output (head_mask) removes exactly its term
    mask = torch.ones(layer.heads, dtype=torch.float64)
    mask[1] = 0.0
    without = layer(x, causal=True, head_mask=mask)[0]
    torch.testing.assert_close(without, terms.sum(1) - terms[:, 1] + layer.out_proj.bias)


@pytest.mark.parametrize("layers, heads", [(2, 2), (3, 4)])
def test_leaving_a_term_out_of_the_sum_is_the_head_mask_ablation(layers, heads):
    model = build_model(AttentionOnlyConfig(11, 9, 8 * heads, heads, relations=1, layers=layers), seed=4)
    tokens = torch.randint(11, (3, 9), generator=torch.Generator().manual_seed(5))
    full = model(tokens)
    for layer in range(layers):
        for head in range(heads):
            by_sum = forward_without_head(model, tokens, layer, head)
            by_mask = model(tokens, head_mask=ablation_mask(layers, heads, (layer, head)))
            torch.testing.assert_close(by_sum, by_mask, rtol=0, atol=1e-12)
            assert (by_sum - full).abs().max() > 1e-3  # every head changes something


def test_ablation_mask_layout_and_errors():
    mask = ablation_mask(2, 3, [(0, 1), (1, 2)])
    assert mask.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"no head \(2, 0\) in a model of 2 layers x 3 heads"):
        ablation_mask(2, 3, (2, 0))


# --- composition -------------------------------------------------------------------------------------------------


def _layer(d_model, heads, w_q=None, w_k=None, w_v=None, w_o=None):
    layer = MultiHeadAttention(d_model, heads, bias=False).double()
    eye = torch.eye(d_model, dtype=torch.float64)
    with torch.no_grad():
        layer.in_proj.weight.copy_(torch.cat([eye if w is None else w for w in (w_q, w_k, w_v)]))
        layer.out_proj.weight.copy_(eye if w_o is None else w_o)
    return layer


def test_w_qk_and_w_ov_reproduce_the_heads_scores_and_outputs():
    torch.manual_seed(1)
    layer = MultiHeadAttention(8, 2, bias=False).double()
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    q, k, v = layer.project(x, x, x)
    d = layer.d_head
    for h in range(2):
        rows = slice(h * d, (h + 1) * d)
        torch.testing.assert_close(x[0] @ qk_matrix(layer, h) @ x[0].T, q[0, :, rows] @ k[0, :, rows].T)
        torch.testing.assert_close(x[0] @ ov_matrix(layer, h).T, v[0, :, rows] @ layer.out_proj.weight[:, rows].T)


def test_k_composition_of_a_writer_and_a_reader_built_by_hand():
    # d_model 4, 2 heads of width 2. In the first layer head 0 writes into features 0, 1 and head 1 into 2, 3;
    # in the second layer head 0's keys read features 0, 1, head 1's keys read features 2, 3.
    eye = torch.eye(4, dtype=torch.float64)
    first = _layer(4, 2)  # W_O and W_V identities: head h writes its own two features
    second = _layer(4, 2)  # W_K identity: head h's keys read features 2h, 2h + 1
    k = composition_scores(first, second, "k")
    assert k[0, 1] == 0.0 and k[1, 0] == 0.0  # what head 0 writes, head 1's keys never read
    assert k[0, 0] == pytest.approx(2**0.5 / 2) and k[1, 1] == pytest.approx(2**0.5 / 2)
    swap = torch.cat([eye[2:], eye[:2]])  # the second layer's keys now read the other pair
    crossed = _layer(4, 2, w_k=swap)
    k = composition_scores(first, crossed, "k")
    assert k[0, 0] == 0.0 and k[1, 1] == 0.0 and k[0, 1] > 0.5 and k[1, 0] > 0.5
    q = composition_scores(first, crossed, "q")  # the queries were left as they were
    assert q[0, 0] > 0.5 and q[0, 1] == 0.0
    with pytest.raises(ValueError, match="kind must be one of"):
        composition_scores(first, second, "x")


def test_composition_scores_are_scale_free_and_the_random_baseline_is_stable():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    assert composition_score(3 * a, 0.5 * b) == pytest.approx(composition_score(a, b))
    assert 0 < composition_score(a, b) <= 1
    base = random_composition(32, 16, draws=50)
    assert base == random_composition(32, 16, draws=50) and 0.1 < base < 0.3


# --- the experiment's bookkeeping --------------------------------------------------------------------------------


def test_parameter_formula_and_matched_widths():
    for setting in (induction.InductionSetting(), induction.InductionSetting(positions="rope", layers=1, d_model=20)):
        model = build_model(setting.config(), 0)
        assert induction.parameters_of(setting) == count_parameters(model)
    two = induction.InductionSetting()
    one, same = induction.main_settings(two)
    assert same == two and one.layers == 1 and one.heads == 4
    assert induction.parameters_of(one) >= induction.parameters_of(two)
    narrower = induction.InductionSetting(layers=1, heads=4, d_model=one.d_model - 4)
    assert induction.parameters_of(narrower) < induction.parameters_of(two)


def test_halfway_steepest_and_the_in_context_score_by_hand():
    curve = [{"step": s, "loss": loss} for s, loss in [(0, 4.0), (25, 3.9), (50, 3.8), (75, 2.0), (100, 1.9)]]
    assert induction.halfway(curve) == 75  # halfway from 4.0 to 1.9 is 2.95
    assert induction.steepest(curve) == {"from": 50, "to": 75, "drop": pytest.approx(1.8)}
    assert induction.halfway([{"step": 0, "loss": 1.0}, {"step": 5, "loss": 1.0}]) is None
    losses = torch.arange(31, dtype=torch.float64).flip(0)  # 30 at position 0 down to 0 at position 30
    assert induction.in_context_score(losses) == -26.0
    with pytest.raises(ValueError, match="need 0 <= early < late < 31"):
        induction.in_context_score(losses, early=5, late=40)


class _Oracle(torch.nn.Module):
    """Puts all its logit on the true next token (it reads the future), or, with `wrong_where_predictable`, on
    another token at the predictable positions: stand-ins for a perfect model and for one that is right only where
    nothing can be known."""

    def __init__(self, wrong_where_predictable=False):
        super().__init__()
        self.wrong = wrong_where_predictable

    def forward(self, tokens, head_mask=None):
        nxt = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
        if self.wrong:
            nxt = torch.where(predictable(tokens), (nxt + 1) % 32, nxt)
        return torch.nn.functional.one_hot(nxt, 32).double()[:, :, None] * 30


def _run(seed, previous, ablation, induction_score=0.9):
    """A two-layer record as `measure` writes it, with made-up numbers."""
    return {
        "layers": 2,
        "seed": seed,
        "accuracy": 0.99,
        "previous": previous,
        "induction": [[0.1, 0.1], [induction_score, 0.5]],
        "previous_head": [0, max(range(2), key=lambda h: previous[0][h])],
        "previous_heads": [[0, h] for h in range(2) if previous[0][h] >= induction.PREVIOUS_HEAD],
        "induction_head": [1, 0],
        "ablation": [{"layer": i // 2, "head": i % 2, "accuracy": a, "induction": 0.5} for i, a in enumerate(ablation)],
        "without_previous_heads": {"accuracy": 0.05, "induction": 0.02},
    }


def test_the_summary_names_backup_previous_token_heads():
    one = _run(0, [[0.05, 0.5], [0.0, 0.0]], [0.98, 0.12, 0.9, 0.95])
    two = _run(1, [[0.45, 0.4], [0.0, 0.0]], [0.7, 0.8, 0.9, 0.95])
    first, second = induction.summary([one, two])
    assert first["without_previous"] == 0.12 and first["without_other_lowest"] == 0.98
    assert second["previous_heads"] == [[0, 0], [0, 1]] and second["without_other_lowest"] is None
    assert second["without_previous"] == 0.7 and second["without_previous_heads"] == 0.05
    table = induction.format_summary([one, two])
    assert "L0.H0+H1" in table.splitlines()[-1] and "L0.H1" in table.splitlines()[-2]
    assert "L0.H0+H1" in induction.format_ablation(two) and "all of them" in induction.format_ablation(two)
    assert "all of them" not in induction.format_ablation(one)


def test_accuracy_and_losses_are_measured_on_the_right_positions():
    task = RepeatedTokens()
    tokens, periods = task.sample_periods(16, torch.Generator().manual_seed(0))
    assert induction.predictable_accuracy(_Oracle(), tokens) == 1.0
    assert induction.predictable_accuracy(_Oracle(wrong_where_predictable=True), tokens) == 0.0
    losses = induction.position_losses(_Oracle(), tokens)
    assert losses.shape == (31,) and losses.max() < 1e-9
    wrong = induction.position_losses(_Oracle(wrong_where_predictable=True), tokens)
    assert wrong[: periods.min()].max() < 1e-9 and wrong[-1] > 1  # right in the first period only


def test_a_short_run_records_everything_the_lesson_reads():
    record, model = induction.run(induction.InductionSetting(steps=20, eval_every=10), seed=0, progress=False)
    assert [p["step"] for p in record["curve"]] == [0, 10, 20]
    assert len(record["losses"]) == 31 and len(record["previous"]) == 2 and len(record["induction"][0]) == 2
    assert len(record["ablation"]) == 4 and set(record["composition"]) == {"k", "q", "v"}
    row = next(r for r in record["ablation"] if [r["layer"], r["head"]] == record["previous_head"])
    mask = ablation_mask(2, 2, tuple(record["previous_head"]))
    probe, _ = induction.analysis_batch(RepeatedTokens())
    assert row["accuracy"] == induction.predictable_accuracy(model, probe, mask)
    every = ablation_mask(2, 2, [tuple(pair) for pair in record["previous_heads"]])
    assert record["without_previous_heads"]["accuracy"] == induction.predictable_accuracy(model, probe, every)
    layer0 = ablation_mask(2, 2, [(0, 0), (0, 1)])
    assert record["without_first_layer"]["accuracy"] == induction.predictable_accuracy(model, probe, layer0)
    assert record["previous_head"] in record["previous_heads"]
    rope, _ = induction.run(induction.InductionSetting(steps=5, positions="rope"), seed=0, progress=False)
    assert "composition" not in rope  # RoPE turns q and k between W_Q and W_K: no single W_QK


# --- learning in context on text ---------------------------------------------------------------------------------


def test_documents_are_about_one_company_and_one_product():
    docs = text.Documents(seq=64)
    tokens, targets = docs.sample(20, torch.Generator().manual_seed(0))
    assert tokens.shape == (20, 64) and torch.equal(targets[:, :-1, 0], tokens[:, 1:])
    products = set(text.PRODUCT_IDS.tolist())
    for row in tokens.tolist():
        assert len({t for t in row if t in products}) == 1
    first, later = text.product_mentions(tokens)
    assert (first.sum(1) == 1).all() and (later.sum(1) >= 1).all()  # 64 words hold at least two sentences
    for b in range(20):
        i = first[b].nonzero().item()
        assert tokens[b, i + 1].item() in products and not any(t in products for t in tokens[b, : i + 1].tolist())
    with pytest.raises(ValueError, match="seq must be an integer of at least 27"):
        text.Documents(seq=10)


class _Guesser(torch.nn.Module):
    """Logits with a fixed share of the probability on the products, spread over them unevenly."""

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, 1, len(text.VOCAB), dtype=torch.float64)
        logits[..., text.PRODUCT_IDS] = torch.linspace(0.0, 2.0, len(text.PRODUCT_IDS), dtype=torch.float64) + 3.0
        return logits


def test_the_first_mention_loss_splits_into_a_product_and_which_one():
    tokens, _ = text.Documents(seq=64).sample(8, torch.Generator().manual_seed(0))
    losses = text.product_losses(_Guesser(), tokens)
    log_p = _Guesser()(tokens)[0, 0, 0].log_softmax(-1)  # the same guess at every position
    on_products = log_p[text.PRODUCT_IDS]
    assert abs(losses["first_any"] + on_products.logsumexp(0).item()) < 1e-12
    assert abs(losses["first"] - (losses["first_any"] + losses["first_which"])) < 1e-12
    first, _ = text.product_mentions(tokens)
    products = tokens[:, 1:][first[:, :-1]]  # the product at each first mention
    which = -(log_p[products] - on_products.logsumexp(0))  # -ln p(this product | a product)
    assert abs(losses["first_which"] - which.mean().item()) < 1e-12


# --- MiniLM's scores, on hand-built weights ----------------------------------------------------------------------


def test_twin_profile_and_scores_on_hand_built_weights():
    ids = torch.tensor([[101, 7, 8, 9, 7, 8, 9, 102]])  # [CLS] a b c a b c [SEP]
    seq = 8
    after_earlier_twin = torch.zeros(seq, seq)
    duplicate = torch.zeros(seq, seq)
    look_ahead = torch.zeros(seq, seq)
    for q in range(seq):
        after_earlier_twin[q, q - 2 if 4 <= q <= 6 else q] = 1.0
        duplicate[q, q - 3 if 4 <= q <= 6 else (q + 3 if 1 <= q <= 3 else q)] = 1.0
        look_ahead[q, q + 4 if 1 <= q <= 3 else q] = 1.0
    weights = torch.stack([after_earlier_twin, duplicate, look_ahead])[None, None]  # (1, 1, 3, seq, seq)
    scores = minilm.head_scores(weights, ids)
    assert scores["induction"][0].tolist() == [1.0, 0.0, 0.0]
    assert scores["duplicate"][0].tolist() == [0.0, 1.0, 0.0]
    assert scores["look-ahead"][0].tolist() == [0.0, 0.0, 1.0]
    profile = minilm.twin_profile(weights, ids)  # (2, offsets, 1, 3)
    offsets = list(minilm.OFFSETS)
    assert profile[0, offsets.index(1), 0].tolist() == [1.0, 0.0, 0.0]
    assert profile[1, offsets.index(0), 0].tolist() == [0.0, 1.0, 0.0]


class _Tokenizer:
    def get_vocab(self):
        return {"[CLS]": 101, "[SEP]": 102, "##ing": 5, "cat": 10, "dog": 11, "sun": 12, "a": 13, "tree": 14, "x1": 15}

    def token_to_id(self, token):
        return self.get_vocab()[token]


def test_repeated_words_say_each_pattern_twice_between_cls_and_sep():
    assert minilm.word_ids(_Tokenizer()).tolist() == [10, 11, 12, 14]
    ids = minilm.repeated_words(_Tokenizer(), batch=5, length=3, seed=0)
    assert ids.shape == (5, 8) and (ids[:, 0] == 101).all() and (ids[:, -1] == 102).all()
    assert torch.equal(ids[:, 1:4], ids[:, 4:7])
    assert all(len(set(row[1:4].tolist())) == 3 for row in ids)


# --- the command -------------------------------------------------------------------------------------------------


def test_the_induction_command_prints_the_tables_and_writes_its_runs(tmp_path, capsys):
    out = tmp_path / "runs.json"
    circuits_command(["induction", "--seeds", "0", "--steps", "10", "--quiet", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "accuracy on the predictable positions" in printed and "previous-token head" in printed
    data = json.loads(out.read_text())
    assert data["provenance"]["command"].startswith("python -m mha.circuits induction --seeds 0")
    assert [r["layers"] for r in data["runs"]] == [1, 2] and set(data["chance"]) == {
        "uniform",
        "current token",
        "a seen token",
    }


def test_the_command_refuses_bad_options_in_one_line(capsys):
    with pytest.raises(SystemExit):
        circuits_command(["induction", "--steps", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        circuits_command(["minilm", "--length", "300"])
    assert "--length must be at most 254" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        circuits_command(["text", "--json", "/proc/no/such/folder/x.json"])
    assert "cannot" in capsys.readouterr().err
