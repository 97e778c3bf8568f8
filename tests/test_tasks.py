import pytest
import torch

from mha.toy.tasks import IGNORE_INDEX, OffsetCopyTask


def sample(task, batch=8, seed=0):
    return task.sample(batch, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("offsets", [(1,), (1, 2, 3), (3, 1), (2, 5, 7)])
def test_each_target_is_the_token_at_its_offset(offsets):
    task = OffsetCopyTask(offsets, vocab=11, seq=9)
    tokens, targets = sample(task)
    assert tokens.shape == (8, 9) and targets.shape == (8, 9, len(offsets))
    assert tokens.dtype == targets.dtype == torch.int64
    for r, offset in enumerate(offsets):
        for i in range(task.seq):
            expected = tokens[:, i - offset] if i >= offset else torch.full((8,), IGNORE_INDEX)
            assert torch.equal(targets[:, i, r], expected), (offset, i)


def test_positions_without_an_answer_are_ignored_and_all_others_are_real_tokens():
    task = OffsetCopyTask((1, 2, 3), vocab=5, seq=6)
    _, targets = sample(task, batch=50)
    ignored = targets == IGNORE_INDEX
    expected = torch.tensor([[i < o for o in (1, 2, 3)] for i in range(6)])  # (seq, relations)
    assert torch.equal(ignored, expected.expand_as(ignored))
    assert ((targets[~ignored] >= 0) & (targets[~ignored] < 5)).all()


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    task = OffsetCopyTask()
    a, b, c = sample(task, seed=3), sample(task, seed=3), sample(task, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_tokens_are_uniform_over_the_vocabulary():
    task = OffsetCopyTask(vocab=4, seq=8)
    tokens, _ = sample(task, batch=5000)
    freq = torch.bincount(tokens.flatten(), minlength=4) / tokens.numel()
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.01)


def test_names_and_relations():
    task = OffsetCopyTask([2, 1])
    assert task.offsets == (2, 1) and task.relations == 2 and task.names == ["i-2", "i-1"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(offsets=()), "offsets must be distinct positive integers"),
        (dict(offsets=(0, 1)), "offsets must be distinct positive integers"),
        (dict(offsets=(1, 1)), "offsets must be distinct positive integers"),
        (dict(vocab=1), "vocab must be at least 2"),
        (dict(offsets=(1, 4), seq=4), "seq must exceed the largest offset"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OffsetCopyTask(**kwargs)
