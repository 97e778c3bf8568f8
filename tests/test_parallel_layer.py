"""The head split in one process: who holds what, slices and their inverse, partial outputs that add up."""

import pytest
import torch

import mha
from mha.parallel import HeadParallelAttention, SplitQKVAttention, gather, head_split, module_from_weights, shard
from mha.parallel.jobs import Problem, make, single_process
from mha.parallel.shard import KEYS, kv_heads_in, weights_of
from mha.parallel.torch_tp import fused_rows_per_rank

# grouped-query layers of 12 heads (d_head 2) and every number of ranks the split accepts, K/V heads divided among
# the ranks or, with fewer K/V heads than ranks, copied
GROUPED = [(kv, world) for kv in (1, 2, 3, 4, 6) for world in (1, 2, 3, 4, 6, 12) if kv % world == 0 or world % kv == 0]


def module(d_model=16, heads=4, seed=0, kv_heads=None):
    torch.manual_seed(seed)
    m = mha.MultiHeadAttention(d_model, heads, kv_heads=kv_heads)
    with torch.no_grad():  # nonzero biases, so that a bias added twice or dropped shows
        m.in_proj.bias.normal_()
        m.out_proj.bias.normal_()
    return m


def test_each_rank_holds_a_contiguous_block_of_heads():
    split = head_split(8, 4, d_head=3)
    assert [list(split.heads_of(r)) for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert split.rows(1) == slice(6, 12)
    assert split.kv_heads_of(3) == range(6, 8)


def test_grouped_query_heads_divide_or_replicate():
    divided = head_split(8, 2, kv_heads=4)
    assert [list(divided.kv_heads_of(r)) for r in range(2)] == [[0, 1], [2, 3]]
    assert divided.kv_index(1) == [0, 0, 1, 1]  # query heads 4,5 read K/V head 2, heads 6,7 read K/V head 3
    replicated = head_split(8, 4, kv_heads=2)
    assert [list(replicated.kv_heads_of(r)) for r in range(4)] == [[0], [0], [1], [1]]
    assert replicated.holders(1) == [2, 3]


@pytest.mark.parametrize(
    "heads, world, kv_heads, words",
    [
        (6, 4, None, "heads=6 cannot be divided evenly among world=4 ranks.*choose world among \\[1, 2, 3, 6\\]"),
        (8, 2, 3, "heads=8 is not a multiple of kv_heads=3"),
        (12, 4, 6, "kv_heads=6 and world=4.*choose world among \\[1, 2, 3, 6, 12\\]"),
        (8, 0, None, "world must be a positive integer"),
    ],
)
def test_uneven_splits_are_refused_with_the_sizes_that_work(heads, world, kv_heads, words):
    with pytest.raises(ValueError, match=words):
        head_split(heads, world, kv_heads)


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank must be an integer from 0 to world - 1 = 1"):
        HeadParallelAttention(16, 4, world=2, rank=2)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_slices_put_back_together_give_the_layer_back(world):
    m = module()
    shards = [shard(weights_of(m), 4, world, r) for r in range(world)]
    assert shards[0]["W_O"].shape == (16, 16 // world)  # a block of columns of W_O
    back = module_from_weights(gather(shards, 4), 4)
    for (name, a), b in zip(m.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def test_grouped_query_slices_put_back_together():
    weights, _, _ = make(Problem(d_model=16, heads=8, kv_heads=2))
    for world in (1, 2, 4, 8):
        back = gather([shard(weights, 8, world, r, kv_heads=2) for r in range(world)], 8, kv_heads=2)
        assert all(torch.equal(back[k], weights[k]) for k in KEYS)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_partial_outputs_add_up_to_the_layer_output(world):
    m = module()
    x = torch.randn(2, 5, 16)
    expected, expected_w = m(x, need_weights=True, average_weights=False)
    ranks = [HeadParallelAttention.from_module(m, world, r) for r in range(world)]
    partials = [layer.partial(x, need_weights=True) for layer in ranks]
    total = sum(p for p, _ in partials) + m.out_proj.bias
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(torch.cat([w for _, w in partials], dim=1), expected_w)  # each rank: its heads


def test_partial_outputs_add_up_with_masks_and_cross_attention():
    m = module(seed=1)
    query, memory = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    keep = mha.padding_mask([6, 3])
    per_head = torch.rand(2, 4, 4, 6) > 0.3
    expected, _ = m(query, memory, key_padding_mask=keep, attn_mask=per_head)
    ranks = [HeadParallelAttention.from_module(m, 2, r) for r in range(2)]
    total = sum(r.partial(query, memory, key_padding_mask=keep, attn_mask=per_head)[0] for r in ranks)
    torch.testing.assert_close(total + m.out_proj.bias, expected)


def test_one_rank_is_the_whole_layer_and_adds_the_bias_once():
    m = module()
    x = torch.randn(3, 5, 16)
    out, _ = HeadParallelAttention.from_module(m, 1, 0)(x, causal=True)
    torch.testing.assert_close(out, m(x, causal=True)[0])


def test_gradients_of_the_slices_are_slices_of_the_gradients():
    problem = Problem(d_model=16, heads=4, seq=5)
    reference = single_process(problem)
    weights, x, target = make(problem)
    ranks = [HeadParallelAttention.from_weights(weights, 4, 2, r) for r in range(2)]
    total = sum(r.partial(x)[0] for r in ranks) + ranks[0].out_bias
    (total * target).sum().backward()
    for r, layer in enumerate(ranks):
        grads, rows = layer.shard_weights(grad=True), layer.split.rows(r)
        torch.testing.assert_close(grads["W_Q"], reference["grads"]["W_Q"][rows])
        torch.testing.assert_close(grads["W_V"], reference["grads"]["W_V"][rows])
        torch.testing.assert_close(grads["W_O"], reference["grads"]["W_O"][:, rows])


def test_grouped_query_partials_add_up_to_the_core_layer():
    weights, x, _ = make(Problem(d_model=16, heads=8, kv_heads=2, seq=5))
    expected, _ = module_from_weights(weights, 8)(x)  # the core's own grouped-query attention (lesson 07)
    for world in (1, 2, 4, 8):
        ranks = [HeadParallelAttention.from_weights(weights, 8, world, r, kv_heads=2) for r in range(world)]
        total = sum(r.partial(x)[0] for r in ranks) + weights["b_O"]
        torch.testing.assert_close(total, expected)


@pytest.mark.parametrize("kv_heads", [1, 2, 3, 4, 6, 12])
def test_the_weights_of_a_grouped_query_module_are_its_own(kv_heads):
    m = module(24, 12, kv_heads=kv_heads)
    w = weights_of(m)
    q, k, v = m.in_proj.weight.split(m.projection_sizes())
    qb, kb, vb = m.in_proj.bias.split(m.projection_sizes())
    assert w["W_Q"].shape == (24, 24) and w["W_K"].shape == w["W_V"].shape == (2 * kv_heads, 24)
    for key, t in {"W_Q": q, "W_K": k, "W_V": v, "b_Q": qb, "b_K": kb, "b_V": vb}.items():
        assert torch.equal(w[key], t), key
    assert kv_heads_in(w, 12) == kv_heads


@pytest.mark.parametrize("kv_heads, world", GROUPED, ids=[f"kv{kv}-world{w}" for kv, w in GROUPED])
def test_a_grouped_query_module_splits_through_every_entry_point(kv_heads, world):
    m = module(24, 12, seed=kv_heads, kv_heads=kv_heads)
    x, memory = torch.randn(2, 5, 24), torch.randn(2, 7, 24)
    expected, _ = m(x, causal=True)
    ranks = [HeadParallelAttention.from_module(m, world, r) for r in range(world)]
    assert [list(r.split.kv_heads_of(r.rank)) for r in ranks] == [
        sorted({h // (12 // kv_heads) for h in r.split.heads_of(r.rank)}) for r in ranks
    ]
    total = sum(r.partial(x, causal=True)[0] for r in ranks) + m.out_proj.bias
    torch.testing.assert_close(total, expected)
    cross = sum(r.partial(x, memory)[0] for r in ranks) + m.out_proj.bias  # keys and values from another sequence
    torch.testing.assert_close(cross, m(x, memory)[0])
    shards = [shard(weights_of(m), 12, world, r, kv_heads=kv_heads) for r in range(world)]
    back = module_from_weights(gather(shards, 12, kv_heads=kv_heads), 12)
    assert back.kv_heads == kv_heads
    for (name, a), b in zip(m.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    if world == 1:
        out, _ = ranks[0](x, causal=True)  # one rank: forward is the whole layer, b_O added once
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(SplitQKVAttention.from_module(m)(x, causal=True), expected)


def test_grouped_weights_without_kv_heads_say_so():
    weights = weights_of(module(24, 12, kv_heads=3))
    with pytest.raises(ValueError, match=r"W_K has shape \(6, 24\), expected \(24, 24\).*kv_heads=3"):
        HeadParallelAttention.from_weights(weights, 12, 2, 0)
    with pytest.raises(ValueError, match="grouped-query weights of 3 K/V heads"):
        SplitQKVAttention.from_weights(weights, 12)


def test_forward_without_the_processes_says_what_to_do():
    layer = HeadParallelAttention.from_module(module(), 2, 0)
    with pytest.raises(RuntimeError, match="start 2 processes .* or, in one process, sum every rank's .partial"):
        layer(torch.randn(1, 3, 16))


def test_bad_shapes_are_named():
    weights = weights_of(module())
    weights["W_O"] = weights["W_O"][:, :8]
    with pytest.raises(ValueError, match=r"W_O has shape \(16, 8\), expected \(16, 16\)"):
        shard(weights, 4, 2, 0)
    weights = weights_of(module())
    weights["W_K"] = weights["W_K"][:5]
    with pytest.raises(ValueError, match="W_K has 5 rows: expected a whole number of K/V heads of d_head = 4 rows"):
        module_from_weights(weights, 4)


def test_separate_projections_compute_the_same_layer():
    m = module()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(SplitQKVAttention.from_module(m)(x, causal=True), m(x, causal=True)[0])


def test_column_sharding_of_the_fused_in_proj_mixes_queries_and_keys():
    lines = fused_rows_per_rank(32, 4, 2)
    assert lines == [
        "rank 0: rows 0-47 = W_Q heads 0-3, W_K heads 0-1",
        "rank 1: rows 48-95 = W_K heads 2-3, W_V heads 0-3",
    ]


def test_without_processes_the_rank_job_is_the_whole_layer():
    from mha.parallel.experiments import summarise_check
    from mha.parallel.jobs import on_rank

    problem = Problem(d_model=16, heads=4, seq=5, causal=True)
    summary = summarise_check(problem, [on_rank(problem)])
    assert summary["backend"] == "one process" and summary["heads"] == [[0, 1, 2, 3]]
    assert all(summary["equal"].values()) and "tp_output" not in summary["differences"]
