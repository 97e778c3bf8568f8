"""Bad input to the public functions and commands gets a clear error: what was expected and what arrived."""

import warnings

import numpy as np
import pytest
import torch

import mha
from mha import attention, attention_numpy, causal_mask, masked_softmax, padding_mask, sdpa, split_heads
from mha._validate import check_fits


def _qkv(*shape):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g) for _ in range(3)]


def test_overflowing_scores_warn_and_name_the_cause():
    q, k, v = _qkv(1, 4, 8)
    with pytest.warns(RuntimeWarning, match="overflowed to ±inf.*float32.*Scale q and k down"):
        out, weights = attention(q * 1e20, k * 1e20, v)
    assert torch.isnan(out).any()  # the warning explains the NaN; it does not hide it
    with pytest.warns(RuntimeWarning, match="overflowed"):
        attention_numpy((q * 1e20).numpy(), (k * 1e20).numpy(), v.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite scores: not a word
        attention(q, k, v, causal=True)
        attention(q.double() * 1e20, k.double() * 1e20, v.double())  # float64 holds them
        attention_numpy(q.numpy(), k.numpy(), v.numpy())


@pytest.mark.parametrize("fn", [attention, sdpa, attention_numpy], ids=["attention", "sdpa", "numpy"])
def test_nan_in_an_input_is_named_not_blamed_on_the_scores(fn):
    q, k, v = _qkv(1, 4, 8)
    v[0, 2, 1] = float("nan")
    if fn is attention_numpy:
        q, k, v = q.numpy(), k.numpy(), v.numpy()
    with pytest.warns(RuntimeWarning, match=r"v holds 1 NaN \(of its 32 numbers\), so the output is NaN") as said:
        out = fn(q, k, v)
    assert not any("overflowed" in str(w.message) for w in said)
    out = out[0] if isinstance(out, tuple) else out
    assert np.isnan(np.asarray(out)).any()  # named, not hidden (the numpy version gave zeros before)


@pytest.mark.parametrize("cls", [mha.MultiHeadAttention, mha.MultiHeadAttentionLoop, mha.MultiHeadAttentionSDPA])
def test_nan_in_a_layers_input_or_weights_is_named_in_the_layers_terms(cls):
    layer = cls(8, 2)
    x = torch.randn(1, 3, 8)
    x[0, 1, 2] = float("nan")
    with pytest.warns(RuntimeWarning, match=f"{cls.__name__}: query holds 1 NaN") as said:
        layer(x)
    assert len(said) == 1  # one warning, from the layer; not a second one from the attention inside it
    with torch.no_grad():
        layer.out_proj.weight[0, 0] = float("inf")
    with pytest.warns(RuntimeWarning, match="out_proj.weight holds 1 infinite"):
        layer(torch.randn(1, 3, 8))


@pytest.mark.parametrize("fn", [attention, sdpa], ids=["attention", "sdpa"])
def test_numpy_arrays_to_the_torch_functions_say_how_to_convert(fn):
    q, k, v = _qkv(2, 4, 8)
    with pytest.raises(
        TypeError, match=r"q must be a torch.Tensor, got a numpy array of shape \(2, 4, 8\).*from_numpy"
    ):
        fn(q.numpy(), k.numpy(), v.numpy())
    with pytest.raises(TypeError, match="v must be a torch.Tensor, got a numpy array"):
        fn(q, k, v.numpy())  # numpy mixed with torch
    with pytest.raises(TypeError, match="mask must be a boolean torch.Tensor, got a numpy array"):
        fn(q, k, v, np.ones((4, 4), dtype=bool))
    with pytest.raises(TypeError, match="k must be a torch.Tensor, got list"):
        fn(q, [[1.0]], v)


def test_masked_softmax_refuses_integers_and_numpy():
    with pytest.raises(TypeError, match="scores must hold floating-point numbers.*int64"):
        masked_softmax(torch.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got a numpy array"):
        masked_softmax(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="mask must be a boolean torch.Tensor, got a numpy array"):
        masked_softmax(torch.zeros(2, 3), np.ones((2, 3), dtype=bool))


@pytest.mark.parametrize("bad", [2.5, True, "3", None])
def test_causal_mask_wants_a_whole_number(bad):
    with pytest.raises(TypeError, match="q_len must be an integer"):
        causal_mask(bad)


def test_causal_mask_sizes():
    with pytest.raises(ValueError, match="q_len must be at least 1, got 0"):
        causal_mask(0)
    with pytest.raises(TypeError, match="k_len must be an integer, got 2.0"):
        causal_mask(3, 2.0)
    assert causal_mask(np.int64(3)).shape == (3, 3)  # numpy integers are whole numbers too


def test_sizes_that_cannot_fit_are_refused_before_allocating():
    with pytest.raises(
        ValueError, match=r"a \(1000000, 1000000\) causal mask would need 931.3 GiB, more than all the memory"
    ):
        causal_mask(10**6)
    with pytest.raises(ValueError, match="the float32 parameters of a layer of d_model=1048576 would need 16.0 TiB"):
        mha.MultiHeadAttention(2**20, 8)
    with pytest.raises(ValueError, match="would need 16.0 TiB"):
        mha.MultiHeadAttentionLoop(2**20, 8)
    q = torch.empty(1, 200_000, 8).expand(64, 200_000, 8)  # no memory behind it: only the sizes matter
    with pytest.raises(ValueError, match=r"the scores and weights \(64, 200000, 200000\) would need .* TiB"):
        attention(q, q, q)
    check_fits(10, "cpu", "ten bytes")  # small sizes pass


def test_padding_mask_refuses_empty_and_strange_lengths():
    with pytest.raises(ValueError, match="lengths is empty: give one length per sequence"):
        padding_mask(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="lengths is empty"):
        padding_mask([])
    with pytest.raises(ValueError, match="1-D list of integers.*float32"):
        padding_mask(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="seq must be an integer, got 4.5"):
        padding_mask([1, 2], 4.5)
    with pytest.raises(TypeError, match="lengths must be a list of integers"):
        padding_mask(["a", "b"])


@pytest.mark.parametrize("heads", [True, 2.0, 0, -1])
def test_split_heads_refuses_heads_that_are_not_a_positive_whole_number(heads):
    with pytest.raises(
        ValueError, match=f"d_model and heads must be positive integers, got d_model=8, heads={heads!r}"
    ):
        split_heads(torch.zeros(1, 2, 8), heads)


def test_split_and_merge_heads_refuse_numpy():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got a numpy array"):
        split_heads(np.zeros((1, 2, 8)), 2)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got a numpy array"):
        mha.merge_heads(np.zeros((1, 2, 3, 4)))


def test_a_layer_refuses_numpy_input():
    layer = mha.MultiHeadAttention(8, 2)
    with pytest.raises(TypeError, match="query must be a torch.Tensor, got a numpy array of shape \\(1, 3, 8\\)"):
        layer(np.zeros((1, 3, 8), dtype=np.float32))


@pytest.mark.parametrize("cls", [mha.MultiHeadAttention, mha.MultiHeadAttentionLoop])
def test_every_version_takes_the_same_arguments_and_reads_need_weights_alike(cls):
    torch.manual_seed(0)
    batched = mha.MultiHeadAttention(8, 2)
    layer = batched if cls is mha.MultiHeadAttention else mha.MultiHeadAttentionLoop.from_batched(batched)
    x = torch.randn(2, 3, 8)
    keep = torch.tensor([1.0, 0.0])
    out, weights = layer(x, causal=True, head_mask=keep)
    assert weights is None
    expected, _ = batched(x, causal=True, head_mask=keep)
    torch.testing.assert_close(out, expected)
    _, weights = layer(x, need_weights=True, average_weights=False)
    assert weights.shape == (2, 2, 3, 3)


def test_the_pretrained_model_wants_a_batch_of_token_ids():
    from mha import pretrained

    model, tokenizer = pretrained.load()
    ids = pretrained.tokenize(tokenizer, ["Hi!"]).input_ids
    with pytest.raises(ValueError, match=r"shape \(batch, seq\), got shape \(4,\).*input_ids\[None\]"):
        model(ids[0])
    with pytest.raises(ValueError, match="integer token ids.*torch.float32"):
        model(ids.float())
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor, got a numpy array"):
        model(ids.numpy())
    with pytest.raises(TypeError, match="sentences must all be strings, got 3"):
        pretrained.tokenize(tokenizer, ["Hi!", 3])


@pytest.mark.parametrize(
    "command",
    [
        ("mha.toy.__main__", ["heads", "--steps", "1"]),
        ("mha.toy.__main__", ["tunnel-vision", "--steps", "1", "--seeds", "0"]),
        ("mha.pretrained.__main__", []),
        ("mha.pretrained.__main__", ["heads"]),
    ],
    ids=["toy heads", "toy tunnel-vision", "pretrained", "pretrained heads"],
)
def test_a_results_path_that_cannot_be_written_stops_the_command_before_the_work(command, tmp_path, monkeypatch):
    import importlib

    module_name, argv = command
    module = importlib.import_module(module_name)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for name in ("run", "run_all", "load", "train"):  # the work: must not start
        for owner in (
            module,
            *(getattr(module, n) for n in ("tunnel_vision", "what_heads_learn") if hasattr(module, n)),
        ):
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, lambda *a, **k: pytest.fail("the work started"))
    with pytest.raises(SystemExit) as exit_:
        module.main([*argv, "--json", str(blocker / "results.json")])
    assert exit_.value.code == 2


def test_a_missing_results_folder_is_created(tmp_path):
    from mha._provenance import stamp, write_results

    path = write_results(tmp_path / "new" / "folder" / "r.json", stamp("cmd"), {"x": [1.0, float("nan")]})
    assert path.read_text().count("null") == 1  # NaN is not JSON: written as null


def test_token_ids_outside_the_vocabulary_are_named():
    from mha.toy.models import AttentionOnlyConfig, AttentionOnlyModel

    model = AttentionOnlyModel(AttentionOnlyConfig(vocab=8, seq=4))
    for bad in (torch.tensor([[1, 2, 8]]), torch.tensor([[-1, 2, 3]])):
        with pytest.raises(ValueError, match=r"tokens must be token ids from 0 to vocab - 1 = 7.*got ids from"):
            model(bad)  # "index out of range in self" before
    with pytest.raises(TypeError, match="tokens must be a torch.Tensor, got a numpy array"):
        model(np.zeros((1, 3), dtype=np.int64))  # "tokens must be int64 token ids, got dtype int64" before
    from mha.toy.language import VOCAB, decode

    with pytest.raises(ValueError, match=f"tokens must be ids of the language's words, 0 to {len(VOCAB) - 1}, got -1"):
        decode(torch.tensor([1, -1]))  # the last word, silently, before


def test_the_pretrained_model_names_ids_and_masks_that_do_not_fit():
    from mha import pretrained

    model, tokenizer = pretrained.load()
    batch = pretrained.tokenize(tokenizer, ["Hi!"])
    too_big = batch.input_ids.clone()
    too_big[0, 1] = 10**6
    with pytest.raises(ValueError, match=r"input_ids must be token ids of the vocabulary from 0 to 30521, got ids"):
        model(too_big)
    with pytest.raises(ValueError, match=r"segment_ids must be segment ids .* from 0 to 1, got ids from 2 to 2"):
        model(batch.input_ids, segment_ids=torch.full_like(batch.input_ids, 2))
    with pytest.raises(ValueError, match=r"mask must be a boolean tensor of shape \(batch, seq\) = \(1, 4\)"):
        model(batch.input_ids, mask=batch.mask.long())
    with pytest.raises(ValueError, match="segment_ids must hold integer ids of shape"):
        model(batch.input_ids, segment_ids=torch.zeros(1, 3, dtype=torch.long))


def test_a_layer_names_an_input_of_another_dtype_or_device():
    layer = mha.MultiHeadAttention(8, 2)
    with pytest.raises(TypeError, match=r"query has dtype torch.float64 but the layer's weights are torch.float32"):
        layer(torch.randn(1, 3, 8, dtype=torch.float64))  # "mat1 and mat2 must have the same dtype" before
    with pytest.raises(ValueError, match="key is on meta but the layer's weights are on cpu"):
        layer(torch.randn(1, 3, 8), torch.randn(1, 3, 8, device="meta"))
    with pytest.raises(TypeError, match="query has dtype torch.float64"):
        mha.AttentionHead(8, 4)(*[torch.randn(1, 3, 8, dtype=torch.float64)] * 3)
    with pytest.raises(ValueError, match="key_padding_mask is on meta but query on cpu"):
        layer(torch.randn(1, 3, 8), key_padding_mask=torch.ones(1, 3, dtype=torch.bool, device="meta"))


def test_devices_are_checked_where_they_enter():
    with pytest.raises(ValueError, match="device must be a device such as 'cpu' or 'cuda', got 'cdua'"):
        causal_mask(3, device="cdua")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' asked for, but torch.cuda.is_available\(\) is False"):
            causal_mask(3, device="cuda")
    q = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match="k is on meta but q on cpu"):
        attention(q, q.to("meta"), q)
    with pytest.raises(ValueError, match="lengths is on the meta device"):
        padding_mask(torch.tensor([2, 3], device="meta"))


def test_the_conversions_name_the_object_they_were_given():
    layer = mha.MultiHeadAttention(8, 2)
    with pytest.raises(TypeError, match="from_torch takes a torch.nn.MultiheadAttention, got MultiHeadAttention"):
        mha.MultiHeadAttention.from_torch(layer)
    with pytest.raises(TypeError, match="from_batched takes a mha.MultiHeadAttention, got MultiheadAttention"):
        mha.MultiHeadAttentionLoop.from_batched(torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got a numpy array"):
        mha.repeat_kv(np.zeros((1, 2, 3, 4)), 2)


def test_a_head_of_width_zero_is_refused():
    q = torch.randn(1, 3, 0)
    with pytest.raises(ValueError, match=r"q has d_head = 0 \(shape \(1, 3, 0\)\).*the weights are uniform"):
        attention(q, q, torch.randn(1, 3, 4))  # uniform weights, silently, before


def test_plot_labels_must_match_the_weights():
    from mha.plots import attention_grid, show_attention

    with pytest.raises(ValueError, match=r"q_labels has 2 labels but the weights have q_pos = 3"):
        show_attention(torch.rand(3, 3), q_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"k_labels has 4 labels but the weights have k_pos = 3"):
        attention_grid(torch.rand(2, 3, 3), k_labels=list("abcd"))
    with pytest.raises(ValueError, match="titles has 1 titles but weights hold 2 maps"):
        attention_grid(torch.rand(2, 3, 3), titles=["one"])
