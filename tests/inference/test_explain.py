"""Explanations on small random models: heat maps of the clip's size for every family, token grids mapped back to
the frames where the tokens sit, rollout through MViT's pooling, and the one-line errors."""

from __future__ import annotations

import pytest
import torch

from mvit_video.inference.explain import (
    ExplainError,
    TokenGeometry,
    _mvit_geometry,
    _pool_back,
    block_views,
    explain_clip,
    grad_cam,
    grid_to_input,
)
from mvit_video.models import create_model

MVIT = ("mvitv2_s_16x4", dict(num_classes=5, input_size=(4, 32, 32), depth=3, embed_dim=16, cls_embed=False,
                              pool_q_stride=[[1, 1, 2, 2]], dim_mul=[[1, 2.0]], head_mul=[[1, 2.0]],
                              pool_kv_stride_adaptive=(1, 4, 4)))  # fmt: skip
FAMILIES = {
    "mvit": MVIT,
    "mvit_cls": ("mvitv2_s_16x4", {**MVIT[1], "cls_embed": True}),
    "vit": (
        "vit_ti16_in1k",
        dict(num_classes=5, input_size=(4, 32, 32), depth=2, tubelet_size=2, patch_size=8, embed_dim=24, num_heads=2),
    ),  # fmt: skip
    "swin": (
        "swin3d_t_32x2",
        dict(
            num_classes=5,
            input_size=(4, 64, 64),
            embed_dim=16,
            depths=(2, 1, 2, 1),
            num_heads=(1, 2, 4, 8),
            window_size=(2, 2, 2),
        ),
    ),  # fmt: skip
    "shuffle": (
        "shuffle3d_t_32x2",
        dict(
            num_classes=5,
            input_size=(4, 56, 56),
            token_dim=16,
            embed_dim=32,
            depths=(2, 2),
            dims=(32, 64),
            num_heads=(1, 2),
            window_size=(2, 7, 7),
        ),
    ),
    "pvt": (
        "pvtv2_b0_in1k",
        dict(
            num_classes=5,
            input_size=(4, 64, 64),
            embed_dims=(16, 32, 48, 64),
            depths=(1, 1, 1, 1),
            num_heads=(1, 2, 2, 4),
        ),
    ),  # fmt: skip
    "levit": (
        "levit_128s_in1k",
        dict(
            num_classes=5,
            input_size=(2, 48, 48),
            embed_dim=(32, 48, 64),
            key_dim=8,
            depths=(1, 2, 1),
            num_heads=(2, 3, 4),
        ),
    ),  # fmt: skip
    "coat": (
        "coat_ti_in1k",
        dict(
            num_classes=5,
            input_size=(2, 32, 32),
            embed_dims=(16, 24, 24, 24),
            serial_depths=(1, 1, 1, 1),
            parallel_depth=2,
        ),
    ),  # fmt: skip
    "ceit": ("ceit_t_in1k", dict(num_classes=5, depth=2, input_size=(4, 64, 64), embed_dim=24, num_heads=2)),
}
ROLLOUT = ("mvit", "mvit_cls", "vit", "ceit")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared machine: one torch thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(key: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name, kw = FAMILIES[key]
    model = create_model(name, **kw).eval()
    for module in model.modules():  # LeViT starts its residual branches' BatchNorm scales at 0: a constant model
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.ones_(module.weight)
    return model


def _clip(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 3, *model.cfg.input_size)


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_heat_maps_have_the_clip_size(key):
    model = _model(key)
    clip = _clip(model)
    methods = ("gradcam", "rollout") if key in ROLLOUT else ("gradcam",)
    for method in methods:
        for block in (0, None):
            result = explain_clip(model, clip, method, block)
            assert tuple(result.heat.shape) == tuple(clip.shape[2:]), (method, block)
            assert result.heat.min() >= 0 and result.heat.max() == pytest.approx(1.0)  # random weights still explain
            assert result.block == (0 if block == 0 else len(block_views(model)) - 1)
    if key not in ROLLOUT:
        with pytest.raises(ExplainError, match="rollout does not apply") as error:
            explain_clip(model, clip, "rollout")
        assert "\n" not in str(error.value) and "--method gradcam" in str(error.value)


def test_token_centres_follow_the_strides():
    """One hot token on a grid -> heat 1 at that token's centre in the input, 0 one stride away and beyond."""
    geometry = TokenGeometry(grid=(2, 4, 4), stride=(2.0, 8.0, 8.0), offset=(0.0, 0.0, 0.0))
    heat = torch.zeros(2, 4, 4)
    heat[1, 2, 1] = 1.0
    mapped = grid_to_input(heat, geometry, (4, 32, 32))
    assert mapped.shape == (4, 32, 32)
    assert mapped[2, 16, 8] == 1.0 and mapped.argmax() == 2 * 32 * 32 + 16 * 32 + 8
    assert mapped[:, 24:].max() == 0 and mapped[:, :8].max() == 0 and mapped[:, :, 16:].max() == 0
    assert mapped[3, 16, 8] == 1.0  # past the last token centre in time: the last token's value
    assert mapped[2, 12, 8] == pytest.approx(0.5)  # half way to the next centre
    uniform = TokenGeometry.uniform((2, 4, 4), (4, 32, 32))  # patches of 2 x 8 x 8: centres at 0.5, 3.5, 11.5, ...
    assert uniform.stride == (2.0, 8.0, 8.0) and uniform.offset == (0.5, 3.5, 3.5)


def test_mvit_geometry_is_the_convolution_arithmetic():
    """The toy-like MViT: patch conv 3x7x7 stride 2x4x4 padding 1x3x3 centres token 0 on pixel 0; a query pooling of
    kernel 3 stride 2 padding 1 keeps it there and doubles the stride."""
    model = _model("mvit")
    before, after = _mvit_geometry(model, 0)((4, 32, 32)), _mvit_geometry(model, 1)((4, 32, 32))
    assert before == TokenGeometry((2, 8, 8), (2.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    assert after == TokenGeometry((2, 4, 4), (2.0, 8.0, 8.0), (0.0, 0.0, 0.0))


def test_gradcam_lights_the_region_of_the_one_token_that_matters():
    """MViT whose second block's output keeps one token (the others zeroed): Grad-CAM there is the map of that
    token alone, peaking at its centre in the frames."""
    model = _model("mvit")
    clip = _clip(model)
    keep = (1, 2, 1)  # on the block's (2, 4, 4) grid

    def one_token(module, args, output):
        x, thw = output
        mask = torch.zeros(thw)
        mask[keep] = 1.0
        return x * mask.flatten()[None, :, None], thw

    handle = model.blocks[1].register_forward_hook(one_token)
    try:
        heats = [grad_cam(model, clip, block=1, target=c)[0] for c in range(5)]
    finally:
        handle.remove()
    lit = [h for h in heats if h.max() > 0]
    assert lit, "no class's logit rises with the kept token"
    for heat in lit:
        assert heat[2, 16, 8] == 1.0 and heat[:, 24:].max() == 0 and heat[:, :, 16:].max() == 0


def test_pooling_back_keeps_the_relevance_mass():
    pool = torch.nn.Conv3d(4, 4, 3, (1, 2, 2), 1, groups=4, bias=False)
    r = torch.rand(1, 1 + 2 * 4 * 4, dtype=torch.float64)
    back = _pool_back(r, pool, (2, 8, 8), has_cls=True)
    assert back.shape == (1, 1 + 2 * 8 * 8) and back[0, 0] == r[0, 0]
    assert back.sum() == pytest.approx(r.sum()) and back.min() >= 0


def test_one_line_errors():
    model = _model("mvit")
    clip = _clip(model)
    for block, method, match in ((3, "gradcam", "--block 3 is out of range"), (-4, "rollout", "out of range"),
                                 (None, "saliency", "--method 'saliency' is not one of")):  # fmt: skip
        with pytest.raises(ExplainError, match=match) as error:
            explain_clip(model, clip, method, block)
        assert "\n" not in str(error.value)
    with pytest.raises(ExplainError, match="class 9 is out of range"):
        explain_clip(model, clip, "gradcam", target=9)
    divided = create_model("timesformer_b_8x32", num_classes=5, input_size=(2, 32, 32), depth=1, patch_size=16,
                           embed_dim=24, num_heads=2)  # fmt: skip
    with pytest.raises(ExplainError, match="plain joint attention"):
        explain_clip(divided.eval(), torch.zeros(1, 3, 2, 32, 32), "rollout")
