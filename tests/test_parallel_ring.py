"""The ring all-reduce in one process: every rank ends with the sum, through the wire only, with the ring's traffic."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mha.checks.lesson08 import _simulate_ring  # noqa: E402
from mha.parallel.cost import allreduce_bytes  # noqa: E402
from mha.parallel.plots import show_ring  # noqa: E402
from mha.parallel.ring import Wire, ring_all_reduce  # noqa: E402


@pytest.mark.parametrize("world", [1, 2, 3, 4, 6])
def test_every_rank_ends_with_the_sum_and_sends_what_the_formula_says(world):
    n = 2 * world
    tensors = [torch.randn(n, dtype=torch.float64) for _ in range(world)]
    before = [t.clone() for t in tensors]
    wire = Wire(world)
    results = ring_all_reduce(tensors, wire)
    for result in results:
        torch.testing.assert_close(result, sum(before))
    assert all(torch.equal(t, b) for t, b in zip(tensors, before)), "the inputs are left as they were"
    assert wire.sent == [allreduce_bytes(1, 1, n, 1, world)] * world  # 2(w − 1)/w · n numbers each


def test_each_step_every_rank_sends_one_piece_to_the_next():
    world = 4
    wire = Wire(world)
    ring_all_reduce([torch.full((8,), float(r)) for r in range(world)], wire)
    steps = wire.steps()
    assert len(steps) == 2 * (world - 1)
    for k, step in enumerate(steps):
        assert [(s, r) for s, r, _, _ in step] == [(s, (s + 1) % world) for s in range(world)]
        first = [(s - k) % world for s in range(world)] if k < world - 1 else None
        if first:  # reduce-scatter: rank r sends piece (r − s) % w
            assert [i for _, _, i, _ in step] == first
        assert all(piece.numel() == 2 for *_, piece in step)


def test_the_checks_ring_is_the_packages():
    tensors = [torch.randn(12, dtype=torch.float64) for _ in range(3)]
    wire = Wire(3)
    results = ring_all_reduce(tensors, wire)
    sent, ends = _simulate_ring(tensors)
    assert torch.equal(torch.stack([torch.stack([p for *_, p in step]) for step in wire.steps()]), sent)
    assert all(torch.equal(a, b) for a, b in zip(results, ends))


@pytest.mark.parametrize(
    "args, words",
    [
        ((0, 3, 0, torch.zeros(2)), "receiver must be an integer from 0 to world − 1 = 2, got 3"),
        ((0, 1, -1, torch.zeros(2)), "index must be an integer"),
        ((0, 1, 0, [1.0, 2.0]), "piece must be one piece of a vector, a 1-d tensor"),
        ((0, 1, 0, torch.zeros(2, 2)), r"a tensor of shape \(2, 2\)"),
    ],
)
def test_the_wire_refuses_what_is_no_message(args, words):
    with pytest.raises(ValueError, match=words):
        Wire(3)(*args)


def test_the_wire_delivers_a_copy():
    wire = Wire(2)
    piece = torch.ones(3)
    received = wire(0, 1, 0, piece)
    received += 1
    piece *= 5
    assert torch.equal(wire.messages[0][3], torch.ones(3))
    assert wire.state()["messages"][0][:3] == [0, 1, 0]


@pytest.mark.parametrize("world", [2, 3, 4, 5])
def test_the_picture_of_the_ring(world):
    fig = show_ring(world)
    assert len([ax for ax in fig.axes if ax.patches]) == 2 * world - 1  # the start and every step
    plt.close(fig)


def test_the_picture_refuses_a_ring_that_is_not_one():
    def direct(tensors, send):
        return [sum(tensors) for _ in tensors]

    with pytest.raises(ValueError, match="the ring sent 0 messages"):
        show_ring(4, direct)
