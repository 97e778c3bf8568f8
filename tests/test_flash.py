"""Lesson 10: online softmax, the tiled loop, the byte model and the Triton kernel, each against a reference."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mha.flash import experiments, io, online
from mha.flash.decoding import merge_results, split_k_attention
from mha.flash.experiments import Case
from mha.flash.io import Problem, paper_blocks, roofline, standard_traffic, traffic_model
from mha.flash.tiled import Traffic, causal_blocks, tiled_attention

kernel = pytest.importorskip("mha.flash.kernel", reason="Triton is not installed")


# --- online softmax, numpy ----------------------------------------------------------------------------------------


def test_online_softmax_equals_softmax_and_never_overflows():
    rng = np.random.default_rng(0)
    for x in (rng.normal(size=37), rng.normal(size=5) * 1000, np.array([700.0, -700.0, 0.0]), np.array([-np.inf, 2.0])):
        got, steps = online.online_softmax(x)
        shifted = np.exp(x - x.max())
        np.testing.assert_allclose(got, shifted / shifted.sum(), rtol=1e-12, atol=1e-300)
        assert len(steps) == len(x) and steps[-1][0] == x.max()
    with pytest.raises(ValueError, match="every score is -inf"):
        online.online_softmax([-np.inf, -np.inf])


def test_partial_results_merge_in_any_split_and_any_order():
    rng = np.random.default_rng(1)
    scores, values = rng.normal(size=(2, 3, 23)) * 30, rng.normal(size=(2, 23, 5))
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    expected = (weights / weights.sum(-1, keepdims=True)) @ values
    for cuts in ([7], [1, 2, 20], [11, 12]):
        bounds = [0, *cuts, 23]
        parts = [online.partial(scores[..., a:b], values[..., a:b, :]) for a, b in zip(bounds, bounds[1:])]
        for order in itertools.permutations(parts):
            merged = order[0]
            for p in order[1:]:
                merged = online.merge(merged, p)
            out, lse = merged.result()
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(lse, np.log(np.exp(scores).sum(-1)), rtol=1e-12)


def test_a_block_with_every_key_masked_merges_as_nothing():
    scores = np.array([[1.0, 2.0]])
    nothing = online.partial(np.full((1, 2), -np.inf), np.ones((2, 3)))
    merged = online.merge(nothing, online.partial(scores, np.eye(2, 3)))
    assert np.isfinite(merged.acc).all() and np.isclose(merged.result()[1][0], np.log(np.exp(scores).sum()))


# --- tiled attention, PyTorch -------------------------------------------------------------------------------------

SHAPES = [  # batch, heads, kv_heads, q_pos, k_pos, d_head, causal, block_q, block_k
    (1, 1, 1, 1, 1, 16, True, 64, 64),
    (2, 4, 2, 37, 37, 16, True, 8, 16),
    (1, 6, 3, 5, 50, 32, False, 4, 7),
    (2, 4, 1, 33, 20, 24, True, 8, 8),
    (1, 8, 8, 64, 64, 64, True, 16, 16),
]


def _qkv(batch, heads, kv_heads, q_pos, k_pos, d_head, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_pos, d_head, generator=g, dtype=dtype)
    k, v = (torch.randn(batch, kv_heads, k_pos, d_head, generator=g, dtype=dtype) for _ in range(2))
    return [t.requires_grad_() for t in (q, k, v)]


def _close(got, expected, scale):
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_tiled_attention_equals_sdpa_forward_and_backward(shape):
    *sizes, causal, block_q, block_k = shape
    q, k, v = _qkv(*sizes)
    out, lse = tiled_attention(q, k, v, causal, block_q, block_k)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    _close(out, ref, ref.abs().max().item())
    grad = torch.randn_like(out)
    mine, theirs = torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)
    scale = max(t.abs().max().item() for t in theirs)
    for a, b in zip(mine, theirs):
        _close(a, b, scale)
    # the log-sum-exp of each query's scores, against the scores written out
    group = q.shape[1] // k.shape[1]
    scores = q @ k.repeat_interleave(group, 1).transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(), -math.inf)
    _close(lse, torch.logsumexp(scores, -1), 1.0)


def test_tiled_attention_keeps_the_dtype_and_refuses_bad_input():
    q, k, v = (t.detach().to(torch.bfloat16) for t in _qkv(1, 2, 1, 9, 9, 16))
    out, lse = tiled_attention(q, k, v, block_q=4, block_k=4)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(batch, heads, seq, d_head\)"):
        tiled_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="not divisible by kv_heads"):
        tiled_attention(torch.randn(1, 3, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="block_k must be at least 1"):
        tiled_attention(q, k, v, block_k=0)


def test_causal_blocks_skip_what_lies_after_and_mask_only_the_diagonal():
    # queries 8..15, 20 keys in blocks of 4: blocks 0 and 4 wholly before the queries, 8 and 12 on the diagonal,
    # 16 wholly after the last query (skipped)
    assert causal_blocks(8, 16, 20, 4) == ([0, 4, 8, 12], [8, 12])
    assert causal_blocks(0, 1, 10, 4) == ([0], [0])  # key 1..3 lie after query 0
    assert causal_blocks(4, 8, 5, 4) == ([0, 4], [])  # block 4 holds key 4 alone, seen by every query 4..7
    for q_start, q_end, k_pos, block in itertools.product(range(0, 12), range(1, 13), range(1, 14), (1, 3, 4)):
        if q_end <= q_start:
            continue
        visit, masked = causal_blocks(q_start, q_end, k_pos, block)
        for s in range(0, k_pos, block):
            keys = range(s, min(s + block, k_pos))
            seen = [[key <= query for key in keys] for query in range(q_start, q_end)]
            assert (s in visit) == any(map(any, seen)) and (s in masked) == (s in visit and not all(map(all, seen)))


@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_bytes_counted_on_the_loop_are_the_model_s(shape, dtype):
    batch, heads, kv_heads, q_pos, k_pos, d_head, causal, block_q, block_k = shape
    p = Problem(batch, heads, q_pos, k_pos, d_head, kv_heads, causal, dtype.itemsize)
    counted, modelled = experiments.counted_against_model(p, block_q, block_k)
    assert counted == modelled


def test_the_model_reads_k_and_v_once_per_block_of_queries():
    d, sram = 64, 100 * 1024 // 2  # 100 KB of bfloat16: the on-chip memory of the paper's example
    block_q, block_k = paper_blocks(d, sram)
    assert (block_q, block_k) == (64, 200)
    for n in (2048, 8192):
        p = Problem(1, 1, n, n, d)
        blocked, standard = traffic_model(p, block_q, block_k), standard_traffic(p)
        # the K, V reads are 2·N·d numbers once per block of queries; standard attention's S and P 4·N² numbers
        assert blocked.read == pytest.approx(2 * (n * d + 2 * n * d * math.ceil(n / block_q)), rel=1e-9)
        assert standard.read + standard.written == 2 * (4 * n * n + 4 * n * d)
    with pytest.raises(ValueError, match="cannot hold blocks"):
        paper_blocks(64, 100)


def test_the_roofline_puts_a_kernel_under_the_lower_of_its_two_roofs():
    h100 = io.DEVICES[0]
    assert 290 < h100.balance < 300  # 989.5 TFLOP/s over 3.35 TB/s
    slow = roofline(10**12, Traffic(read=10**12), h100)  # 1 FLOP per byte: memory-bound
    assert slow["bound"] == "memory" and slow["time_s"] == pytest.approx(10**12 / h100.bandwidth)
    fast = roofline(10**15, Traffic(read=10**9), h100)
    assert fast["bound"] == "compute" and fast["attainable"] == h100.peak


def test_memory_of_the_loop_grows_linearly_and_of_held_weights_quadratically():
    rows = experiments.memory(seqs=(512, 1024, 2048, 4096), block=128)
    seqs = [r["seq"] for r in rows]
    assert experiments.slope(seqs, [r["tiled"] for r in rows]) <= 1.1
    assert experiments.slope(seqs, [r["weights"] for r in rows]) >= 1.9


def test_split_k_decoding_equals_one_pass_and_merges_in_any_grouping():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 8, 1, 16, generator=g)
    k, v = (torch.randn(2, 2, 301, 16, generator=g) * 3 for _ in range(2))
    expected = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    for chunks in (1, 2, 7, 301):
        out, parts = split_k_attention(q, k, v, chunks)
        _close(out, expected, 1.0)
        assert len(parts) == chunks
    _, (a, b, c) = split_k_attention(q, k, v, 3)
    left, right = merge_results(merge_results(a, b), c), merge_results(a, merge_results(b, c))
    _close(left[0], right[0], 1.0)
    with pytest.raises(ValueError, match="more than the 301 cached positions"):
        split_k_attention(q, k, v, 302)


# --- the Triton kernel, in the interpreter on a CPU ---------------------------------------------------------------

KERNEL_CASES = [
    (1, 1, 1, 1, 1, 16, False),
    (2, 4, 2, 37, 37, 16, True),
    (1, 6, 3, 5, 50, 32, False),
    (2, 4, 1, 33, 20, 24, True),  # d_head 24: a block of 32 features, 8 masked
    (1, 2, 2, 64, 64, 64, True),
    (1, 2, 1, 100, 100, 64, False),  # not a multiple of the block
]


@pytest.mark.parametrize("shape", KERNEL_CASES, ids=str)
def test_the_triton_kernel_equals_sdpa_forward_and_backward(shape):
    *sizes, causal = shape
    q, k, v = _qkv(*sizes, seed=7)
    out = kernel.flash_attention(q, k, v, causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    _close(out, ref, ref.abs().max().item())
    grad = torch.randn_like(out)
    mine, theirs = torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)
    scale = max(t.abs().max().item() for t in theirs)
    for a, b in zip(mine, theirs):
        _close(a, b, scale)
    _, lse = kernel.flash_forward(q.detach(), k.detach(), v.detach(), causal)
    _, expected_lse = tiled_attention(q.detach(), k.detach(), v.detach(), causal)
    _close(lse, expected_lse, 1.0)


def test_random_shapes_through_the_kernel_and_the_loop():
    rng = np.random.default_rng(11)
    for _ in range(6):
        kv_heads = int(rng.integers(1, 3))
        heads = kv_heads * int(rng.integers(1, 4))
        q_pos, k_pos = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        causal = bool(rng.integers(2)) and q_pos <= k_pos
        d_head = int(rng.choice([16, 32, 64]))
        q, k, v = _qkv(int(rng.integers(1, 3)), heads, kv_heads, q_pos, k_pos, d_head, seed=int(rng.integers(1000)))
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        for out in (kernel.flash_attention(q, k, v, causal), tiled_attention(q, k, v, causal, 16, 16)[0]):
            _close(out, ref, ref.abs().max().item())


def test_the_kernel_refuses_what_it_cannot_do_and_says_why():
    q = torch.randn(1, 2, 4, 16, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        kernel.flash_attention(q, q, q)
    with pytest.raises(ValueError, match=r"\(batch, heads, seq, d_head\)"):
        kernel.flash_attention(q[0].float(), q[0].float(), q[0].float())


def test_triton_imported_too_early_gets_a_message_that_says_what_to_do():
    code = (
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import triton, torch\n"
        "from mha.flash.kernel import flash_attention\n"
        "q = torch.randn(1, 1, 16, 16)\n"
        "try:\n    flash_attention(q, q, q)\nexcept RuntimeError as e:\n    print(e)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    if torch.cuda.is_available():
        pytest.skip("with a GPU, triton compiles; the interpreter is not needed")
    assert "import mha.flash.kernel first" in out, out


def test_the_agreement_table_covers_every_case_and_version():
    rows = experiments.agreement(experiments.versions(), cases=experiments.CASES[:2])
    assert {r["version"] for r in rows} == {"tiled (PyTorch)", "sdpa", "Triton kernel"}
    assert max(max(r["forward"], r["backward"]) for r in rows) < 1e-5
    assert "Triton kernel" in experiments.format_agreement(rows)
    assert experiments.interpreter_seconds(Case(1, 1, 1, 16, 16, 16, False), repeats=1)["forward_s"] > 0
