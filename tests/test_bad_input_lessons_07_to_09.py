"""Bad input to lessons 07, 08 and 09's public functions gets a clear error where it enters: what was expected and
what arrived (the KV cache, the decoder, the head-parallel layer and its paper model, positions, the length runs)."""

import pytest
import torch

from mha import MultiHeadAttention
from mha.decoding import sharing, speed
from mha.decoding.model import Decoder, DecoderConfig, build_decoder, generate, left_pad
from mha.decoding.writer import WriterSetting, continue_text, encode_words
from mha.kv_cache import KVCache, cache_bytes, causal_mask_after, grouped_attention
from mha.parallel import experiments, launch
from mha.parallel.cost import LINKS, layer_time, model_table
from mha.parallel.jobs import Problem
from mha.parallel.layer import HeadParallelAttention
from mha.parallel.shard import gather, module_from_weights, shard, weights_of
from mha.positions import SinusoidalPositions, apply_rope, rope_matrix, sinusoidal_table
from mha.toy.lengths import LengthSetting, SentenceStream, run_all, window_mask

# ------------------------------------------------------------------------------------------------- lesson 07


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((-1, 1, 1, 1, 1, 2), ValueError, "layers must be at least 1, got -1"),
        (("2", 1, 1, 1, 1, 1), TypeError, r"layers must be an integer, got '2' \(str\)"),
        ((1, 1, 1, 1.5, 1, 2), TypeError, r"d_head must be an integer, got 1.5"),
        ((1, 1, 1, 1, 0, 2), ValueError, "seq must be at least 1, got 0"),
    ],
)
def test_cache_bytes_wants_whole_sizes(args, error, match):
    with pytest.raises(error, match=match):
        cache_bytes(*args)


def test_a_cache_holds_real_numbers_and_refuses_what_it_would_round():
    with pytest.raises(TypeError, match="dtype must be a floating-point torch dtype.*got torch.int64"):
        KVCache(1, 1, 2, 4, dtype=torch.int64)
    cache = KVCache(1, 1, 2, 4)  # float32
    with pytest.raises(TypeError, match="k has dtype torch.float64 but this cache holds torch.float32"):
        cache.append(torch.full((1, 1, 1, 2), 0.7, dtype=torch.float64), torch.zeros(1, 1, 1, 2, dtype=torch.float64))
    assert cache.length == 0  # nothing written


def test_a_cache_too_large_for_the_machine_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"a KV cache of .*max_seq 1000000000000.* more than all the memory"):
        KVCache(1, 1, 2, 10**12)
    with pytest.raises(ValueError, match="max_seq must be at least 1, got 0"):
        KVCache(1, 1, 2, 0)
    with pytest.raises(ValueError, match="device must be a device such as 'cpu' or 'cuda', got 'banana'"):
        KVCache(1, 1, 2, 4, device="banana")


def test_a_cache_names_a_padding_mask_that_does_not_fit():
    cache = KVCache(2, 1, 2, 4)
    k = torch.zeros(2, 1, 3, 2)
    with pytest.raises(ValueError, match=r"real must be a bool tensor of shape \(batch, new\) = \(2, 3\).*\(3,\)"):
        cache.append(k, k, torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="k must be a torch.Tensor, got a numpy array"):
        cache.append(k.numpy(), k)
    with pytest.raises(ValueError, match="length must lie in 0..0"):
        cache.truncate(1.5)


@pytest.mark.parametrize(("past", "new", "match"), [(-1, 3, "past must be at least 0, got -1"), (0, 2.0, "new must")])
def test_causal_mask_after_wants_whole_sizes(past, new, match):
    with pytest.raises((ValueError, TypeError), match=match):
        causal_mask_after(past, new)


def test_grouped_attention_names_shapes_dtypes_and_masks_that_do_not_fit():
    q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match=r"k \(1, 2, 5, 8\) and v \(1, 2, 4, 8\).*k_pos"):
        grouped_attention(q, k, torch.randn(1, 2, 4, 8))
    with pytest.raises(TypeError, match="share one dtype"):
        grouped_attention(q, k, k.double())
    with pytest.raises(ValueError, match=r"mask has shape \(3, 4\) but scores have shape \(1, 4, 3, 5\)"):
        grouped_attention(q, k, k, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        grouped_attention(q, k, k, torch.ones(3, 5))


def test_decoder_config_refuses_an_mlp_of_no_width():
    with pytest.raises(ValueError, match="d_ff must be a positive integer .* got 0"):
        DecoderConfig(d_ff=0)
    with pytest.raises(ValueError, match="vocab must be a positive integer, got True"):
        DecoderConfig(vocab=True)


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return build_decoder(DecoderConfig(vocab=10, seq=8, d_model=8, heads=2, layers=1), seed=0)


def test_generate_names_a_count_of_new_tokens_and_prompts_that_make_no_sense(decoder):
    with pytest.raises(ValueError, match="new_tokens must be a whole number of at least 1.*got 0"):
        generate(decoder, [[1, 2]], 0)
    with pytest.raises(TypeError, match="expected a list of token lists.*got Tensor"):
        generate(decoder, torch.tensor([[1, 2]]), 2)
    with pytest.raises(ValueError, match=r"each a non-empty list of token ids, got \[\[1, 2\], \[\]\]"):
        left_pad([[1, 2], []])
    with pytest.raises(TypeError, match=r"token ids must be whole numbers, got \[\[1.5\]\]"):
        left_pad([[1.5]])


def test_the_decoder_names_token_ids_outside_its_vocabulary_and_too_many_positions(decoder):
    with pytest.raises(ValueError, match="tokens must be ids from 0 to vocab - 1 = 9, got values from 1 to 10"):
        decoder(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="9 real tokens in a sequence, more than the model's seq=8 positions"):
        decoder(torch.ones(1, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"one KVCache per layer \(1\), as new_cache returns, got 2"):
        decoder.forward_cached(torch.tensor([[1]]), decoder.new_cache(1) * 2)


def test_a_prompt_of_no_words_is_refused():
    with pytest.raises(ValueError, match="expected a text of at least one word, got '  '"):
        encode_words("  ")


def test_the_writers_setting_and_prompts_are_checked_before_training(decoder):
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        WriterSetting(steps=0)
    with pytest.raises(ValueError, match="heads=4 is not divisible by kv_heads=3"):
        WriterSetting(kv_heads=3)
    with pytest.raises(ValueError, match="lr must be a finite learning rate above 0, got nan"):
        WriterSetting(lr=float("nan"))
    with pytest.raises(TypeError, match=r"prompts must be a list of texts, e.g. \['the phone'\], got str"):
        continue_text(decoder, "the")


@pytest.mark.parametrize("device", ["banana", "meta", ""])
def test_timing_names_a_device_that_cannot_be_timed(device):
    with pytest.raises(ValueError, match=f"device must be .*got {device!r}"):
        speed.per_token(speed.QUICK, device=device)
    with pytest.raises(ValueError, match=f"device must be .*got {device!r}"):
        speed.by_kv_heads(speed.QUICK, device=device)


def test_an_unknown_sharing_task_is_named():
    with pytest.raises(ValueError, match=r"unknown tasks \['nope'\]: expected some of"):
        sharing.settings_for(["nope"])
    with pytest.raises(ValueError, match="kv_heads must be a non-empty list, got 8"):
        sharing.settings_for(kv_heads=8)


# ------------------------------------------------------------------------------------------------- lesson 08


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ({"batch": -1}, "batch must be at least 1, got -1"),
        ({"seq": 0}, "seq must be at least 1, got 0"),
        ({"d_model": 0}, "d_model must be at least 1"),
        ({"heads": 0}, "heads must be at least 1"),
        ({"kv_heads": -1}, "kv_heads must be at least 1, got -1"),
        ({"heads": 3}, "d_model=32 is not divisible by heads=3"),
        ({"kv_heads": 3}, "heads=8 is not a multiple of kv_heads=3"),
    ],
)
def test_a_problem_is_checked_before_any_process_starts(sizes, match):
    with pytest.raises(ValueError, match=match):
        Problem(**sizes)


def test_every_world_is_checked_before_the_first_process_starts(monkeypatch):
    started = []
    monkeypatch.setattr(experiments, "run", lambda *a, **k: started.append(a) or [])
    with pytest.raises(ValueError, match="heads=8 cannot be divided evenly among world=3 ranks"):
        experiments.check(Problem(), worlds=(1, 2, 3))
    with pytest.raises(ValueError, match="world must be at least 1, got 0"):
        experiments.measure(worlds=(1, 0))
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds above 0, got inf"):
        experiments.check(Problem(), worlds=(1,), timeout=float("inf"))
    assert started == []


def test_a_run_without_end_is_refused():
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds above 0, got inf"):
        launch.run(launch.loopback_interface, 1, timeout=float("inf"))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"d_model": -1}, "d_model must be at least 1, got -1"),
        ({"seq": 0}, "seq must be at least 1, got 0"),
        ({"share_of_peak": 0.0}, r"share_of_peak must be a number above 0 and at most 1 \(0.5 is half\), got 0.0"),
        ({"share_of_peak": float("nan")}, "share_of_peak must be .* got nan"),
        ({"share_of_peak": -1}, "share_of_peak must be .* got -1"),
        ({"peak": float("inf")}, "peak must be a finite number of FLOP/s above 0, got inf"),
    ],
)
def test_the_paper_model_refuses_sizes_and_shares_that_give_no_time(changes, match):
    args = {"batch": 1, "seq": 256, "d_model": 1024, "world": 2, "link": LINKS[0], **changes}
    with pytest.raises(ValueError, match=match):
        layer_time(**args)


def test_the_paper_models_table_refuses_empty_or_bad_sizes():
    with pytest.raises(ValueError, match=r"d_models must be a non-empty list of sizes, got \[\]"):
        model_table([], [256])
    with pytest.raises(ValueError, match="share_of_peak must be .* got inf"):
        model_table([1024], [256], share=float("inf"))


def test_the_wrong_object_given_for_a_layers_weights_is_named():
    with pytest.raises(TypeError, match="module must be a mha.MultiHeadAttention .* got int"):
        weights_of(3)
    weights = weights_of(MultiHeadAttention(8, 2))
    incomplete = {k: v for k, v in weights.items() if k != "W_Q"}
    with pytest.raises(ValueError, match=r"weights lack \['W_Q'\]: expected the keys"):
        shard(incomplete, 2, 2, 0)
    with pytest.raises(ValueError, match=r"weights lack \['W_Q'\]"):
        module_from_weights(incomplete, 2)
    with pytest.raises(ValueError, match=r"weights lack \['W_Q'\]"):
        HeadParallelAttention.from_weights(incomplete, 2)
    with pytest.raises(TypeError, match=r"weights\['W_K'\] must be a torch.Tensor, got ndarray"):
        shard({**weights, "W_K": weights["W_K"].numpy()}, 2, 2, 0)
    with pytest.raises(TypeError, match="weights must be a dict of the layer's weights"):
        shard([weights], 2, 2, 0)
    pieces = [shard(weights, 2, 2, r) for r in range(2)]
    with pytest.raises(ValueError, match=r"shards\[1\] lack \['W_O'\]"):
        gather([pieces[0], {k: v for k, v in pieces[1].items() if k != "W_O"}], 2)
    with pytest.raises(TypeError, match="shards must be a list of every rank's slices"):
        gather(pieces[0], 2)


# ------------------------------------------------------------------------------------------------- lesson 09


@pytest.mark.parametrize("base", [float("inf"), float("nan"), 1.0, "10000"])
def test_a_frequency_base_must_be_a_finite_number_above_1(base):
    with pytest.raises(ValueError, match="base must be a finite number greater than 1"):
        sinusoidal_table(4, 8, base=base)
    with pytest.raises(ValueError, match="base must be a finite number greater than 1"):
        apply_rope(torch.randn(3, 4), base=base)


def test_a_sinusoidal_table_too_large_for_the_machine_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"a sinusoidal table of \(seq 1000000000000, d_model 8\).*more than all"):
        sinusoidal_table(10**12, 8)


def test_positions_outside_the_table_are_named():
    table = SinusoidalPositions(4, 8)
    with pytest.raises(ValueError, match=r"positions must lie in 0..3 \(the table holds 4 positions\), got .* 4"):
        table(torch.arange(5))
    with pytest.raises(TypeError, match="positions must be integers .* got dtype torch.float32"):
        table(torch.zeros(2))
    with pytest.raises(TypeError, match="position must be an integer, got 1.5"):
        rope_matrix(1.5, 4)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got a numpy array .* torch.from_numpy\(x\)"):
        apply_rope(torch.randn(3, 4).numpy())


def test_a_length_setting_is_checked_where_it_enters():
    with pytest.raises(ValueError, match="trained must be at least 1, got 0"):
        LengthSetting(trained=0)
    with pytest.raises(ValueError, match="d_model=64 is not divisible by heads=5"):
        LengthSetting(heads=5)
    with pytest.raises(ValueError, match="lr must be a finite learning rate above 0, got inf"):
        LengthSetting(lr=float("inf"))
    with pytest.raises(ValueError, match="factors must be a list of positive integers"):
        LengthSetting(factors=4)
    with pytest.raises(ValueError, match="seed must be at least 0, got -1"):
        run_all([LengthSetting()], [-1])
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        window_mask(4, 0)
    with pytest.raises(ValueError, match="batch must be at least 1, got 0"):
        SentenceStream().sample(0, torch.Generator())
