"""The one-frame Conv3d: a one-frame clip through ``layers.conv.Conv3d`` gives nn.Conv3d's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.models.layers.conv import Conv3d, centre_tap

CASES = [  # (in, out, kernel, stride, padding, dilation, groups)
    (4, 6, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), 1),
    (6, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), (1, 1, 1), 6),  # depthwise, time kernel 3 centred
    (3, 8, (3, 7, 7), (2, 4, 4), (1, 3, 3), (1, 1, 1), 1),  # a strided stem
    (4, 4, (3, 3, 3), (1, 1, 1), (2, 1, 1), (2, 1, 1), 2),  # dilated in time
    (3, 5, (2, 4, 4), (2, 4, 4), (0, 0, 0), (1, 1, 1), 1),  # a tubelet: one frame cannot fill it (conv3d's error)
]


@pytest.mark.parametrize("case", CASES)
def test_one_frame_equals_conv3d_with_gradients(case):
    cin, cout, kernel, stride, padding, dilation, groups = case
    torch.manual_seed(0)
    ours = Conv3d(cin, cout, kernel, stride, padding, dilation, groups).double()
    ref = nn.Conv3d(cin, cout, kernel, stride, padding, dilation, groups).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, cin, 1, 17, 19, dtype=torch.float64, requires_grad=True)
    if kernel[0] > 1 and 2 * padding[0] != dilation[0] * (kernel[0] - 1):
        with pytest.raises(RuntimeError):
            ref(x)
        with pytest.raises(RuntimeError):
            ours(x)
        return
    out, expected = ours(x), ref(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, ours.weight, ours.bias), grad)
    want = torch.autograd.grad(expected, (x, ref.weight, ref.bias), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_one_frame_runs_as_conv2d_and_clips_as_conv3d(monkeypatch):
    calls = []
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append("2d") or torch.conv2d(*a, **k))
    monkeypatch.setattr(F, "conv3d", lambda *a, **k: calls.append("3d") or torch.conv3d(*a, **k))
    conv = Conv3d(3, 4, (3, 3, 3), 1, (1, 1, 1))
    conv(torch.randn(1, 3, 1, 8, 8))
    conv(torch.randn(1, 3, 4, 8, 8))
    assert calls == ["2d", "3d"]
    assert list(conv.state_dict()) == ["weight", "bias"]


def test_centre_tap_is_the_middle_slice():
    weight = torch.arange(2 * 1 * 3 * 2 * 2.0).reshape(2, 1, 3, 2, 2)
    assert torch.equal(centre_tap(weight, 1, 1), weight[:, :, 1])
    assert centre_tap(weight, 2, 1) is None  # two frames: a real Conv3d
    assert centre_tap(weight, 1, 0) is None  # not centred: the output has no frame


# an image model of every family: each Conv3d in it meets one-frame inputs
IMAGE_MODELS = ["mvitv2_t_in1k", "vit_ti16_in1k", "cpvt_ti_in1k", "deepvit_s_in1k", "swin_t_in1k", "shuffle_t_in1k",
                "pvt_t_in1k", "pvtv2_b0_in1k", "cvt_13_in1k", "ceit_t_in1k", "levit_128s_in1k", "coat_ti_in1k"]  # fmt: skip


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_no_image_model_builds_a_plain_conv3d(name):
    """A plain nn.Conv3d runs PyTorch's Conv3d kernel on images (MViTv2-T's q pooling: 7.0 ms against 1.8 ms as a
    Conv2d, and 0.92x timm's training step until it was a layers.conv.Conv3d)."""
    from mvit_video.models import create_model

    plain = [n for n, m in create_model(name).named_modules() if type(m) is nn.Conv3d]
    assert not plain, f"{name}: plain nn.Conv3d at {plain[:5]}"
