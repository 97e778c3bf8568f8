"""The KV cache: every cached step equals the full causal recomputation; the size formula equals the real bytes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mha import MultiHeadAttention
from mha.decoding.model import DecoderConfig, StepDecoder, build_decoder, generate, left_pad
from mha.heads import split_heads
from mha.kv_cache import KVCache, cache_bytes, cached_self_attention, causal_mask_after
from mha.positions import RotaryMultiHeadAttention, apply_rope

TOL = dict(atol=1e-5, rtol=0)


def layer_with_biases(d_model, heads, kv_heads):
    layer = MultiHeadAttention(d_model, heads, kv_heads=kv_heads)
    with torch.no_grad():
        layer.in_proj.bias.normal_()
        layer.out_proj.bias.normal_()
    return layer.eval()


@settings(max_examples=15, deadline=None)
@given(
    shape=st.sampled_from([(4, 4), (4, 2), (4, 1), (6, 3), (6, 1)]),
    prompt=st.integers(1, 6),
    steps=st.integers(1, 6),
    batch=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_layer_cache_equals_full_causal_recomputation_at_every_step(shape, prompt, steps, batch, seed):
    heads, kv_heads = shape
    torch.manual_seed(seed)
    layer = layer_with_biases(4 * heads, heads, kv_heads)
    x = torch.randn(batch, prompt + steps, 4 * heads)
    full, _ = layer(x, causal=True)  # (batch, seq, d_model)
    cache = KVCache(batch, kv_heads, 4, prompt + steps)
    with torch.no_grad():
        outs = [cached_self_attention(layer, x[:, :prompt], cache)]  # prefill
        for t in range(prompt, prompt + steps):
            outs.append(cached_self_attention(layer, x[:, t : t + 1], cache))  # one position at a time
    torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


@settings(max_examples=10, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    kv_heads=st.sampled_from([4, 2, 1]),
    steps=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_decoder_cache_equals_recomputation_for_padded_batches(lengths, kv_heads, steps, seed):
    """Prompts of different lengths, padded on the left: each sequence's logits equal its own unpadded run."""
    g = torch.Generator().manual_seed(seed)
    model = build_decoder(DecoderConfig(vocab=20, seq=16, d_model=16, heads=4, kv_heads=kv_heads, layers=2), seed)
    model.eval()
    prompts = [torch.randint(20, (n,), generator=g).tolist() for n in lengths]
    tokens, mask = left_pad(prompts)
    cache = model.new_cache(len(prompts), tokens.shape[1] + steps)
    with torch.no_grad():
        logits = model.forward_cached(tokens, cache, mask)  # (batch, prompt, vocab)
        for b, p in enumerate(prompts):
            alone = model(torch.tensor([p]))[0]  # (len, vocab)
            torch.testing.assert_close(logits[b, -len(p) :], alone, **TOL)
        for _ in range(steps):
            nxt = torch.randint(20, (len(prompts),), generator=g)
            logits = model.forward_cached(nxt[:, None], cache)[:, 0]  # (batch, vocab)
            for b, p in enumerate(prompts):
                p.append(int(nxt[b]))
                torch.testing.assert_close(logits[b], model(torch.tensor([p]))[0, -1], **TOL)
        # the padded full forward agrees too
        padded, padded_mask = left_pad(prompts)
        full = model(padded, padded_mask)
        for b, p in enumerate(prompts):
            torch.testing.assert_close(full[b, -len(p) :], model(torch.tensor([p]))[0], **TOL)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_greedy_generation_is_identical_with_and_without_the_cache(kv_heads):
    model = build_decoder(DecoderConfig(vocab=30, seq=40, d_model=32, heads=4, kv_heads=kv_heads, layers=3), 1)
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    with_cache = generate(model.eval(), prompts, 20, use_cache=True)
    without = generate(model, prompts, 20, use_cache=False)
    assert with_cache.shape == (3, 20)
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("kv_heads", [8, 4, 2, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_size_formula_equals_the_bytes_of_the_real_tensors(kv_heads, dtype):
    config = DecoderConfig(vocab=20, seq=64, d_model=32, heads=8, kv_heads=kv_heads, layers=3)
    model = build_decoder(config, 0).to(dtype)
    cache = model.new_cache(batch=5, max_seq=37)
    held = sum(c.keys.nbytes + c.values.nbytes for c in cache)
    assert held == sum(c.nbytes for c in cache)
    assert held == cache_bytes(config.layers, 5, kv_heads, config.d_head, 37, dtype.itemsize)
    with torch.no_grad():
        model.forward_cached(torch.randint(20, (5, 11)), cache)
    used = sum(c.keys[:, :, : c.length].nbytes + c.values[:, :, : c.length].nbytes for c in cache)
    assert used == cache_bytes(config.layers, 5, kv_heads, config.d_head, 11, dtype.itemsize)


def test_cache_bytes_of_a_known_model():
    # Llama 3.1 8B (32 layers, 8 kv heads of 128), one sequence of 8,192 tokens in bfloat16: 1 GiB
    assert cache_bytes(32, 1, 8, 128, 8192, 2) == 2**30


def test_causal_mask_after_aligns_the_new_queries_at_the_end():
    assert causal_mask_after(2, 2).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask_after(0, 3).tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()


def test_cache_errors_name_the_problem():
    cache = KVCache(2, 2, 4, max_seq=3)
    with pytest.raises(ValueError, match=r"must have shape \(batch, kv_heads, new, d_head\) = \(2, 2, 1, 4\)"):
        cache.append(torch.zeros(2, 4, 1, 4), torch.zeros(2, 4, 1, 4))
    cache.append(torch.zeros(2, 2, 3, 4), torch.zeros(2, 2, 3, 4))
    with pytest.raises(ValueError, match="holds 3 positions: 3 held \\+ 1 new is too many"):
        cache.append(torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 4))
    with pytest.raises(ValueError, match="length must lie in 0..3"):
        cache.truncate(5)
    cache.truncate(1)
    assert cache.length == 1 and cache.real[:, 1:].sum() == 0


def test_a_decoder_past_its_positions_says_so():
    model = build_decoder(DecoderConfig(vocab=10, seq=4, d_model=8, heads=2, layers=1), 0)
    cache = model.new_cache(1, 8)
    with torch.no_grad(), pytest.raises(ValueError, match="beyond the model's seq=4 positions"):
        model.forward_cached(torch.zeros(1, 5, dtype=torch.int64), cache)


# --- every layer class through the cache: plain and rotary, with and without shared keys and values ---------------

LAYER_CLASSES = [
    pytest.param(MultiHeadAttention, None, id="MultiHeadAttention"),
    pytest.param(MultiHeadAttention, 2, id="MultiHeadAttention-kv_heads=2"),
    pytest.param(RotaryMultiHeadAttention, None, id="RotaryMultiHeadAttention"),
    pytest.param(RotaryMultiHeadAttention, 2, id="RotaryMultiHeadAttention-kv_heads=2"),
]


@pytest.mark.parametrize("layer_class, kv_heads", LAYER_CLASSES)
def test_every_layer_class_cached_step_by_step_equals_the_full_causal_layer(layer_class, kv_heads):
    """Prefill a prompt, then one position at a time: the same outputs as the layer on the whole sequence."""
    torch.manual_seed(5)
    layer = layer_class(16, 4, kv_heads=kv_heads).double().eval()  # d_head 4: RoPE turns its two pairs
    x = torch.randn(3, 12, 16, dtype=torch.float64)
    full, _ = layer(x, causal=True)  # (batch, seq, d_model)
    cache = KVCache(3, layer.kv_heads, 4, 12, dtype=torch.float64)
    with torch.no_grad():
        outs = [cached_self_attention(layer, x[:, :5], cache)]
        outs += [cached_self_attention(layer, x[:, t : t + 1], cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("layer_class, kv_heads", LAYER_CLASSES)
def test_every_layer_class_cached_under_left_padding_equals_each_sequence_alone(layer_class, kv_heads):
    """Prompts of 2, 5 and 7 tokens padded on the left, then 4 steps: each sequence's outputs equal its own run.

    A rotary layer counts a token's position as the real tokens before it, so the padding moves no real token."""
    torch.manual_seed(6)
    layer = layer_class(16, 4, kv_heads=kv_heads).double().eval()
    lengths, steps = [2, 5, 7], 4
    x = torch.randn(3, 7 + steps, 16, dtype=torch.float64)
    real = torch.tensor([[False] * (7 - n) + [True] * n for n in lengths])  # (batch, 7): left padding
    cache = KVCache(3, layer.kv_heads, 4, 7 + steps, dtype=torch.float64)
    with torch.no_grad():
        out = torch.cat(
            [cached_self_attention(layer, x[:, :7], cache, real)]
            + [cached_self_attention(layer, x[:, t : t + 1], cache) for t in range(7, 7 + steps)],
            dim=1,
        )  # (batch, 7 + steps, d_model)
        for b, n in enumerate(lengths):
            alone, _ = layer(x[b : b + 1, 7 - n :], causal=True)  # the sequence without its padding
            torch.testing.assert_close(out[b, 7 - n :], alone[0], atol=1e-12, rtol=0)
        padded, _ = layer(x, causal=True, key_padding_mask=torch.cat([real, torch.ones(3, steps, dtype=torch.bool)], 1))
        for b, n in enumerate(lengths):  # the full layer on the padded batch: RoPE's scores depend on m - n alone
            torch.testing.assert_close(out[b, 7 - n :], padded[b, 7 - n :], atol=1e-12, rtol=0)


def test_a_rotary_cache_holds_keys_already_turned_each_at_its_own_position():
    torch.manual_seed(7)
    layer = RotaryMultiHeadAttention(16, 4).double().eval()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    real = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    cache = KVCache(2, 4, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        cached_self_attention(layer, x, cache, real)
        _, k, _ = layer.project(x, x, x)
    k = split_heads(k, 4)  # (batch, heads, seq, d_head), not turned
    positions = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])  # real tokens before each one
    for b in range(2):
        turned = apply_rope(k[b], positions[b])
        torch.testing.assert_close(cache.keys[b][:, real[b]], turned[:, real[b]], atol=1e-12, rtol=0)


# --- StepDecoder: the same model, called with the caller's positions and mask -----------------------------------


def _loop(step, prompts, new_tokens):
    """Greedy generation written against StepDecoder, as the lesson's exercise asks."""
    tokens, mask = left_pad(prompts)
    cache = step.new_cache(len(prompts))
    logits = step(tokens, (mask.cumsum(1) - 1).clamp(min=0), mask, cache)[:, -1]
    out = [logits.argmax(-1, keepdim=True)]
    while len(out) < new_tokens:
        position = mask.sum(1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out.append(step(out[-1], position, mask, cache)[:, -1].argmax(-1, keepdim=True))
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_a_loop_written_against_step_decoder_generates_what_generate_does(kv_heads):
    model = build_decoder(DecoderConfig(vocab=20, seq=24, d_model=16, heads=4, kv_heads=kv_heads, layers=2), 3)
    step = StepDecoder(model)
    prompts = [[3, 4, 5, 6], [7], [8, 9, 10, 11, 12, 13], [1, 2]]
    assert torch.equal(_loop(step, prompts, 7), generate(model, prompts, 7))
    padded = sum(max(map(len, prompts)) for _ in prompts)
    assert step.state() == {"calls": 7, "positions_run": padded + 6 * len(prompts)}


def test_step_decoder_refuses_what_it_cannot_run_and_says_why():
    step = StepDecoder(build_decoder(DecoderConfig(vocab=10, seq=8, d_model=8, heads=2, layers=1), 0))
    tokens, mask = left_pad([[1, 2, 3], [4]])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache = step.new_cache(2)
    with pytest.raises(ValueError, match=r"mask covers 2 positions of 2 sequences, but the cache holds 0 and this "):
        step(tokens, positions, mask[:, 1:], cache)
    with pytest.raises(ValueError, match=r"positions must have the shape of tokens \(2, 3\)"):
        step(tokens, positions[:, :1], mask, cache)
    with pytest.raises(ValueError, match=r"positions must lie in 0..7, got -1..2"):
        step(tokens, mask.cumsum(1) - 1, mask, cache)
    with pytest.raises(TypeError, match="tokens and positions must be int64 tensors"):
        step(tokens, positions.float(), mask, cache)
    step(tokens, positions, mask, cache)
    with pytest.raises(ValueError, match="the cache has room for 8 positions; it holds 3 and this call adds 6"):
        step(torch.cat([tokens, tokens], 1), torch.cat([positions, positions], 1), torch.ones(2, 9).bool(), cache)
    assert step.state() == {"calls": 1, "positions_run": 6}  # a refused call runs nothing
