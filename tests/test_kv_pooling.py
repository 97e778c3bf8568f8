"""Mean-pooling the key/value heads of a multi-head layer (lesson 07's conversion of MiniLM)."""

import pytest
import torch

from mha import MultiHeadAttention
from mha.pretrained.kv_pooling import (
    head_keys_values,
    key_error,
    key_similarity,
    neighbour_groups,
    pool_kv,
    procrustes,
    rotate_heads,
    rotation_similarity,
    similar_groups,
)


def layer_with_biases(d_model=24, heads=6):
    layer = MultiHeadAttention(d_model, heads)
    with torch.no_grad():
        layer.in_proj.bias.normal_()
        layer.out_proj.bias.normal_()
    return layer.eval()


def test_pooling_to_as_many_kv_heads_changes_nothing_even_reordered():
    layer = layer_with_biases()
    x = torch.randn(2, 5, 24)
    for order in (None, [3, 1, 5, 0, 2, 4]):
        pooled = pool_kv(layer, 6, order)
        torch.testing.assert_close(pooled(x)[0], layer(x)[0], atol=1e-6, rtol=0)


def test_pooled_keys_and_values_are_the_means_of_each_group():
    layer = layer_with_biases()
    x = torch.randn(2, 5, 24)
    pooled = pool_kv(layer, 2, [0, 2, 4, 1, 3, 5])  # groups {0, 2, 4} and {1, 3, 5}
    _, k, v = layer.project(x, x, x)
    _, pk, pv = pooled.project(x, x, x)
    for full, mean in ((k, pk), (v, pv)):
        heads = full.reshape(2, 5, 6, 4)
        expected = torch.stack([heads[:, :, [0, 2, 4]].mean(2), heads[:, :, [1, 3, 5]].mean(2)], dim=2)
        torch.testing.assert_close(mean, expected.reshape(2, 5, 8), atol=1e-6, rtol=0)
    q, _, _ = layer.project(x, x, x)
    pq, _, _ = pooled.project(x, x, x)
    torch.testing.assert_close(pq.reshape(2, 5, 6, 4), q.reshape(2, 5, 6, 4)[:, :, [0, 2, 4, 1, 3, 5]])


def test_pool_kv_checks_its_order_and_starting_point():
    layer = layer_with_biases()
    with pytest.raises(ValueError, match="order must list each of the 6 heads once"):
        pool_kv(layer, 2, [0, 0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="already has kv_heads=2"):
        pool_kv(pool_kv(layer, 2), 1)


def test_groups_partition_the_heads():
    assert neighbour_groups(6, 2) == [[0, 1, 2], [3, 4, 5]]
    sim = torch.eye(6)
    sim[0, 3] = sim[3, 0] = 0.9  # heads 0 and 3 alike, 1 and 4, 2 and 5
    sim[1, 4] = sim[4, 1] = 0.8
    sim[2, 5] = sim[5, 2] = 0.7
    assert similar_groups(sim, 3) == [[0, 3], [1, 4], [2, 5]]
    for kv in (6, 3, 2, 1):
        groups = similar_groups(torch.rand(6, 6), kv)
        assert sorted(h for g in groups for h in g) == list(range(6)) and len(groups) == kv


def test_key_similarity_and_error():
    keys = torch.randn(4, 10, 3)
    keys[1] = 2 * keys[0]  # the same direction
    sim = key_similarity(keys)
    assert sim[0, 1] == pytest.approx(1.0, abs=1e-6) and sim.shape == (4, 4)
    assert key_error(keys, [[0], [1], [2], [3]]) == 0.0
    assert 0 < key_error(keys, [[0, 1], [2, 3]]) < 1


def test_rotating_heads_changes_nothing_and_lines_their_keys_up():
    layer = layer_with_biases()
    x = torch.randn(3, 7, 24)
    mask = torch.ones(3, 7, dtype=torch.bool)
    keys, values = head_keys_values(layer, x, mask)
    groups = [[0, 1, 2], [3, 4, 5]]
    turned = rotate_heads(layer, groups, keys, values)
    torch.testing.assert_close(turned(x)[0], layer(x)[0], atol=1e-5, rtol=0)  # the same function
    turned_keys, _ = head_keys_values(turned, x, mask)
    assert key_error(turned_keys, groups) < key_error(keys, groups)  # but keys closer to their group's mean


def test_rotation_similarity_sees_through_a_rotation():
    keys = torch.randn(2, 20, 4)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4))
    keys[1] = keys[0] @ rotation
    assert float(key_similarity(keys)[0, 1]) < 0.9
    assert float(rotation_similarity(keys)[0, 1]) == pytest.approx(1.0, abs=1e-5)
    assert procrustes(keys[1], keys[0]).allclose(rotation.T, atol=1e-5)


@pytest.mark.slow
def test_conversion_of_the_real_model():
    from mha import pretrained
    from mha.pretrained.analysis import PAIRS
    from mha.pretrained.kv_pooling import GROUPINGS, conversion

    model, tokenizer = pretrained.load()
    base, rows = conversion(model, tokenizer, kv_heads=(12, 4), pairs=PAIRS[:4])
    assert len(base) == 4 and len(rows) == 2 * len(GROUPINGS)
    for row in rows[: len(GROUPINGS)]:  # 12 key/value heads of 12: nothing pooled, nothing moves
        assert row.kv_heads == 12 and row.key_error < 1e-9 and row.cosine == pytest.approx(1.0, abs=1e-5)
    pooled = {row.grouping: row for row in rows[len(GROUPINGS) :]}
    assert all(0 < row.cosine < 1 for row in pooled.values())
    assert pooled["similar keys, rotated"].key_error < pooled["neighbours"].key_error
