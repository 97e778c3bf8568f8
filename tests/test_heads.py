import pytest
import torch

from mha import merge_heads, split_heads


def test_split_puts_each_feature_block_in_its_head():
    x = torch.arange(2 * 3 * 8).reshape(2, 3, 8).float()  # (batch, seq, d_model)
    h = split_heads(x, 4)  # (batch, heads, seq, d_head)
    assert h.shape == (2, 4, 3, 2)
    for head in range(4):
        torch.testing.assert_close(h[:, head], x[..., 2 * head : 2 * head + 2])


def test_merge_undoes_split():
    x = torch.randn(3, 5, 12)
    for heads in (1, 2, 3, 4, 6, 12):
        torch.testing.assert_close(merge_heads(split_heads(x, heads)), x, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 5, 24).chunk(3, dim=-1)[0],  # q as in_proj(x).chunk(3) gives it: not contiguous
        lambda: torch.randn(5, 2, 8).transpose(0, 1),  # batch and seq swapped in memory
        lambda: torch.randn(2, 5, 16)[..., ::2],  # every other feature: d_model's stride is 2
    ],
)
def test_split_is_a_view_of_any_input(make):
    x = make()
    assert not x.is_contiguous()
    h = split_heads(x, 2)
    assert h.data_ptr() == x.data_ptr(), "split_heads must not copy"
    torch.testing.assert_close(h, x.contiguous().reshape(2, 5, 2, 4).transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(merge_heads(h), x, rtol=0, atol=0)


def test_merge_copies_what_attention_returns_where_view_fails():
    out = torch.randn(2, 3, 5, 4)  # (batch, heads, seq, d_head), fresh memory as attention returns it
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        out.transpose(1, 2).view(2, 5, 12)  # heads and d_head are not next to each other in memory
    merged = merge_heads(out)
    assert merged.is_contiguous() and merged.data_ptr() != out.data_ptr()
    torch.testing.assert_close(merged[:, :, 4:8], out[:, 1], rtol=0, atol=0)


def test_view_without_transpose_is_not_split():
    # the classic mistake: view straight to (batch, heads, seq, d_head) mixes positions into heads
    x = torch.randn(2, 3, 8)
    wrong = x.view(2, 4, 3, 2)
    assert not torch.equal(wrong, split_heads(x, 4))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: split_heads(torch.randn(2, 3, 10), 4), ValueError, "d_model=10 is not divisible by heads=4"),
        (lambda: split_heads(torch.randn(3, 10), 2), ValueError, "(batch, seq, d_model)"),
        (lambda: merge_heads(torch.randn(2, 3, 4)), ValueError, "(batch, heads, seq, d_head)"),
    ],
)
def test_bad_input(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
