import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mha.pretrained.plots import head_grid, head_score_maps


def test_head_grid_lays_every_head_out_in_one_image():
    weights = torch.rand(2, 3, 4, 4).softmax(-1)  # (layers, heads, q_pos, k_pos)
    fig = head_grid(weights, highlight={(1, 2): "this one"}, gap=1)
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (2 * 5 - 1, 3 * 5 - 1)
    np.testing.assert_allclose(canvas[5:9, 10:14], weights[1, 2].numpy())  # layer 1, head 2
    assert canvas.mask[4].all(), "the gap between layers must be empty"
    assert [t.get_text() for t in fig.axes[0].texts] == ["this one"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(layers, heads, q_pos, k_pos\)"):
        head_grid(weights[0])


def test_head_score_maps_writes_each_score_in_its_cell():
    scores = {"a": torch.tensor([[0.5, 0.9996]]), "b": torch.tensor([[0.0, 0.25]])}
    fig = head_score_maps(scores, ncols=3)
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].texts] == [".50", "1.00"]
    plt.close(fig)
    fig = head_score_maps(scores, ncols=1, digits=3)
    assert [t.get_text() for t in fig.axes[1].texts] == [".000", ".250"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"score 'c' must have shape \(layers, heads\)"):
        head_score_maps({"c": torch.zeros(3)})


def test_head_score_maps_numbers_are_readable_in_a_notebook():
    """Six maps of 6 layers x 12 heads, as lesson 05 draws them, shown in a notebook output about 900 px wide:
    every number must be at least 8 px tall on screen (it was about 6)."""
    scores = {name: torch.rand(6, 12) for name in "abcdef"}
    fig = head_score_maps(scores)
    width_px = fig.get_figwidth() * fig.dpi
    shrink = min(1.0, 900 / width_px)  # JupyterLab fits a wider picture to the output's width
    sizes = {t.get_fontsize() for ax in fig.axes for t in ax.texts}
    assert len([t for ax in fig.axes for t in ax.texts]) == 6 * 6 * 12
    assert min(sizes) * fig.dpi / 72 * shrink >= 8, f"numbers at {min(sizes)} pt shown at {shrink:.2f} of their size"
    plt.close(fig)
