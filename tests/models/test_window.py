"""Window geometry: the bias-table index equals timm's (2-D Swin) and torchvision's (Video Swin), and windows fit
the token grid as Swin's rule says."""

from __future__ import annotations

import pytest
import torch

from mvit_video.models.layers.window import bias_table_size, fit_window, relative_position_index


def test_index_equals_timm_2d_swin():
    timm = pytest.importorskip("timm")
    with torch.device("cpu"):
        model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    reference = model.layers[0].blocks[0].attn.relative_position_index
    assert torch.equal(relative_position_index((1, 7, 7)), reference)
    assert bias_table_size((1, 7, 7)) == model.layers[0].blocks[0].attn.relative_position_bias_table.shape[0] == 169


def test_index_equals_torchvision_video_swin():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.video.swin3d_t()
    attn = model.features[0][0].attn
    assert torch.equal(relative_position_index((8, 7, 7)).view(-1), attn.relative_position_index.view(-1))
    assert bias_table_size((8, 7, 7)) == attn.relative_position_bias_table.shape[0] == 15 * 13 * 13


def test_index_by_hand():
    # window (2, 1, 2): tokens (t, w) = (0,0), (0,1), (1,0), (1,1); table (3, 1, 3): row = (dt + 1) * 3 + (dw + 1)
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index((2, 1, 2)), expected)


@pytest.mark.parametrize("grid,window,shift,expected", [
    ((16, 56, 56), (8, 7, 7), (4, 3, 3), ((8, 7, 7), (4, 3, 3))),
    ((1, 56, 56), (8, 7, 7), (4, 3, 3), ((1, 7, 7), (0, 3, 3))),  # one frame: no window or shift in time
    ((16, 7, 7), (8, 7, 7), (4, 3, 3), ((8, 7, 7), (4, 0, 0))),  # last stage of Swin: 7 x 7 tokens, one window
    ((4, 3, 3), (8, 7, 7), (4, 3, 3), ((4, 3, 3), (0, 0, 0))),
])  # fmt: skip
def test_fit_window(grid, window, shift, expected):
    assert fit_window(grid, window, shift) == expected
