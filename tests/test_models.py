import pytest
import torch

from mha import MultiHeadAttention
from mha.toy.models import AttentionOnlyConfig, AttentionOnlyModel, build_model, count_parameters


def expected_parameters(vocab, seq, d_model, relations):
    embeddings = vocab * d_model + seq * d_model
    attention = (d_model * 3 * d_model + 3 * d_model) + (d_model * d_model + d_model)  # W_Q, W_K, W_V; W_O
    readouts = relations * (d_model * vocab + vocab)
    return embeddings + attention + readouts


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16])
def test_parameter_count_is_the_formula_and_does_not_depend_on_heads(heads):
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=64, seq=16, d_model=64, heads=heads, relations=3))
    assert count_parameters(model) == expected_parameters(64, 16, 64, 3) == 34_240


def test_parameter_count_grows_with_width():
    one = count_parameters(AttentionOnlyModel(AttentionOnlyConfig(d_model=64, heads=1)))
    wide = count_parameters(AttentionOnlyModel(AttentionOnlyConfig(d_model=128, heads=1)))
    assert wide == expected_parameters(64, 32, 128, 3) and wide > one


def test_count_parameters_skips_frozen_ones():
    model = AttentionOnlyModel(AttentionOnlyConfig())
    model.token_embedding.weight.requires_grad_(False)
    assert count_parameters(model) == expected_parameters(64, 32, 64, 3) - 64 * 64


def test_uses_the_package_attention_and_returns_per_head_weights():
    config = AttentionOnlyConfig(vocab=10, seq=7, d_model=12, heads=3, relations=2)
    model = AttentionOnlyModel(config)
    assert type(model.attention) is MultiHeadAttention
    tokens = torch.randint(10, (5, 7))
    logits, weights = model(tokens, need_weights=True)
    assert logits.shape == (5, 7, 2, 10)
    assert weights.shape == (5, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 3, 7))
    assert (weights.triu(diagonal=1) == 0).all(), "the attention must be causal"
    torch.testing.assert_close(model(tokens), logits)


def test_a_position_only_sees_the_past():
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=10, seq=8, d_model=16, heads=2, relations=1))
    tokens = torch.randint(10, (2, 8))
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 10
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_shorter_sequences_are_accepted():
    model = AttentionOnlyModel(AttentionOnlyConfig(seq=32))
    assert model(torch.randint(64, (2, 5))).shape == (2, 5, 3, 64)


def test_embed_is_token_plus_position():
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=10, seq=4, d_model=8, heads=2, relations=1))
    tokens = torch.tensor([[3, 1, 3, 0]])
    x = model.embed(tokens)
    torch.testing.assert_close(x[0, 2], model.token_embedding.weight[3] + model.position_embedding.weight[2])


def test_build_model_depends_on_the_seed_alone():
    config = AttentionOnlyConfig()
    state = torch.random.get_rng_state()
    a, b, c = build_model(config, 0), build_model(config, 0), build_model(config, 1)
    assert torch.equal(torch.random.get_rng_state(), state), "build_model must not move the global random state"
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), name
        if p.std() > 0:  # biases start at zero in every model
            assert not torch.equal(p, r), name


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(d_model=64, heads=3), ValueError, "not divisible by heads=3"),
        (dict(vocab=0), ValueError, "vocab must be a positive integer"),
        (dict(relations=0), ValueError, "relations must be a positive integer"),
    ],
)
def test_bad_config_is_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        AttentionOnlyConfig(**kwargs)


def test_bad_tokens_are_refused():
    model = AttentionOnlyModel(AttentionOnlyConfig(seq=8))
    with pytest.raises(TypeError, match="int64 token ids, got dtype torch.float32"):
        model(torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"at most seq=8 positions"):
        model(torch.zeros(2, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        model(torch.zeros(8, dtype=torch.int64))


def test_the_residual_carries_each_position_past_attention():
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=2, relations=2))
    with torch.no_grad():
        model.attention.out_proj.weight.zero_()  # attention now adds nothing
        model.attention.out_proj.bias.zero_()
    tokens = torch.randint(10, (3, 6))
    x = model.embed(tokens)
    expected = torch.stack([readout(x) for readout in model.readouts], dim=2)
    torch.testing.assert_close(model(tokens), expected)


def test_head_mask_removes_heads_from_the_output():
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=2, relations=1))
    tokens = torch.randint(10, (3, 6))
    torch.testing.assert_close(model(tokens, head_mask=torch.ones(2)), model(tokens))
    x = model.embed(tokens)
    no_attention = model.readouts[0](x + model.attention.out_proj.bias)[:, :, None]  # only W_O's bias is left
    torch.testing.assert_close(model(tokens, head_mask=torch.zeros(2)), no_attention)
    assert not torch.allclose(model(tokens, head_mask=torch.tensor([1.0, 0.0])), model(tokens))


def test_a_one_layer_model_is_what_it_always_was():
    model = build_model(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=2, relations=2), seed=3)
    assert not hasattr(model, "later_layers") and model.layers == [model.attention]
    assert "later_layers" not in repr(model)
    tokens = torch.randint(10, (3, 6))
    x = model.embed(tokens)
    x = x + model.attention(x, causal=True)[0]
    expected = torch.stack([readout(x) for readout in model.readouts], dim=2)
    torch.testing.assert_close(model(tokens), expected, rtol=0, atol=0)


def test_later_layers_leave_the_first_layers_starting_weights_alone():
    one = build_model(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=1, relations=2), seed=0)
    three = build_model(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=1, relations=2, layers=3), seed=0)
    deep = dict(three.named_parameters())
    for name, p in one.named_parameters():
        assert torch.equal(p, deep[name]), name
    assert count_parameters(three) == count_parameters(one) + 2 * (4 * 8 * 8 + 4 * 8)  # W_Q, W_K, W_V, W_O + biases


def test_stacked_layers_each_read_what_the_one_before_wrote():
    config = AttentionOnlyConfig(vocab=10, seq=7, d_model=12, heads=2, relations=1, layers=3)
    model = AttentionOnlyModel(config)
    assert len(model.layers) == 3 and all(type(layer) is MultiHeadAttention for layer in model.layers)
    tokens = torch.randint(10, (4, 7))
    x, expected_weights = model.embed(tokens), []
    for layer in model.layers:
        mixed, w = layer(x, causal=True, need_weights=True, average_weights=False)
        x, expected_weights = x + mixed, expected_weights + [w]
    logits, weights = model(tokens, need_weights=True)
    torch.testing.assert_close(logits, model.readouts[0](x)[:, :, None])
    assert weights.shape == (4, 3 * 2, 7, 7), "every head of every layer, layer 0's first"
    torch.testing.assert_close(weights, torch.cat(expected_weights, dim=1))
    assert (weights.triu(diagonal=1) == 0).all(), "every layer is causal"
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 10
    torch.testing.assert_close(model(changed)[:, :4], logits[:, :4])


def test_head_mask_covers_every_layer():
    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=10, seq=6, d_model=8, heads=2, relations=1, layers=2))
    tokens = torch.randint(10, (3, 6))
    torch.testing.assert_close(model(tokens, head_mask=torch.ones(4)), model(tokens))
    only_biases = model.embed(tokens) + sum(layer.out_proj.bias for layer in model.layers)
    torch.testing.assert_close(model(tokens, head_mask=torch.zeros(4)), model.readouts[0](only_biases)[:, :, None])
    second_off = model(tokens, head_mask=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert not torch.allclose(second_off, model(tokens)) and not torch.allclose(
        second_off, model(tokens, head_mask=torch.zeros(4))
    )
    with pytest.raises(ValueError, match=r"layers \* heads = 4 entries .* got shape \(2,\)"):
        model(tokens, head_mask=torch.ones(2))


def test_layers_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="layers must be a positive integer, got 0"):
        AttentionOnlyConfig(layers=0)
