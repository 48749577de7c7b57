"""MaskMViT (mvit_video/models/maskfeat.py): PySlowFast's state-dict names, HOG against an independent computation,
targets and loss against hand computations on masked cubes, and the fine-tuning load that drops the pre-training
tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvit_video.config import load_config
from mvit_video.models import build_model, load_pretrained
from mvit_video.models.build import mvit_config_from_cfg
from mvit_video.models.maskfeat import HOGLayer, MaskFeatConfig, MaskMViT, multi_mse
from mvit_video.models.mvit import MViT, _mvitv2_video
from tests.conftest import ROOT


def _tiny(pred_hog: bool = True, **mask_kw) -> MaskMViT:
    """Toy MViTv2 (8 x 32 x 32 clips): patch grid 4 x 8 x 8, block 2's grid 4 x 4 x 4 (8-pixel tokens)."""
    cfg = _mvitv2_video(3, (1,), input_size=(8, 32, 32), embed_dim=16, pool_kv_stride_adaptive=(1, 2, 2),
                        drop_path_rate=0.0, head_dropout=0.0, attention="math")  # fmt: skip
    torch.manual_seed(0)
    return MaskMViT(cfg, MaskFeatConfig(pretrain_depth=(2,), pred_hog=pred_hog, **mask_kw)).eval()


def test_state_dict_has_pyslowfast_maskmvit_names_and_shapes():
    """PySlowFast's MaskMViT on the K400 MaskFeat config: MViT's tensors of blocks 0..15 without ``norm`` and
    ``head`` (as ``del self.norm, self.head``), plus ``mask_token`` (1, 1, EMBED_DIM), the HOGLayerC buffers
    ``hogs.0.weight_{x,y}`` (3, 1, 3, 3) and MSSeparateHead's LayerNorm / Linear on block 15's 768 channels with
    9 bins x (16 / 8)^2 cells x 3 colours = 108 outputs."""
    cfg = load_config(ROOT / "configs" / "K400" / "MVITv2_S_16x4_MaskFeat_PT.yaml")
    model = build_model(cfg)
    assert isinstance(model, MaskMViT)
    encoder = {k: tuple(v.shape) for k, v in MViT(mvit_config_from_cfg(cfg)).state_dict().items()}
    expected = {k: s for k, s in encoder.items() if not k.startswith(("norm.", "head."))}
    expected.update({
        "mask_token": (1, 1, 96), "hogs.0.weight_x": (3, 1, 3, 3), "hogs.0.weight_y": (3, 1, 3, 3),
        "pred_head.transforms.0.0.weight": (768,), "pred_head.transforms.0.0.bias": (768,),
        "pred_head.projections.0.weight": (108, 768), "pred_head.projections.0.bias": (108,),
    })  # fmt: skip
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert model.feature_grids == [(8, 14, 14)] and model.feature_strides == [16]
    sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    assert torch.equal(model.hogs[0].weight_x[2, 0], sobel) and torch.equal(model.hogs[0].weight_y[0, 0], sobel.T)


def _hog_reference(image: np.ndarray, nbins: int = 9, cell: int = 8) -> np.ndarray:
    """HOG written out pixel by pixel: Sobel on the reflect-padded channel, magnitude into bin
    floor(atan2(gx, gy) / pi * nbins) mod nbins, sums per cell, L2 over the bins. (C, H, W) -> (C, nbins, h, w)."""
    c, h, w = image.shape
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    out = np.zeros((c, nbins, h // cell, w // cell))
    for ch in range(c):
        padded = np.pad(image[ch].astype(np.float64), 1, mode="reflect")
        for y in range(h):
            for x in range(w):
                patch = padded[y : y + 3, x : x + 3]
                gx, gy = (patch * kx).sum(), (patch * kx.T).sum()
                b = math.floor(math.atan2(gx, gy) / math.pi * nbins) % nbins
                out[ch, b, y // cell, x // cell] += math.hypot(gx, gy)
    norm = np.sqrt((out**2).sum(axis=1, keepdims=True))
    return out / np.maximum(norm, 1e-12)


def test_hog_equals_an_independent_computation():
    rng = np.random.default_rng(0)
    image = rng.random((3, 16, 24)).astype(np.float32)
    ours = HOGLayer()(torch.from_numpy(image)[None])[0].double().numpy()
    np.testing.assert_allclose(ours, _hog_reference(image), atol=1e-5)


def test_hog_of_a_vertical_edge_is_one_bin():
    """x-gradient only: atan2(gx, 0) = +-pi/2 -> bin floor(+-4.5) mod 9 = 4 for both signs."""
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0
    hog = HOGLayer()(image)[0]
    expected = torch.zeros(3, 9, 2, 2)
    expected[:, 4] = 1.0  # every cell has edge pixels (the edge at x = 7, 8 lies in both cell columns)
    assert torch.allclose(hog, expected)


def _cube_mask() -> torch.Tensor:
    mask = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    mask[0, 1:3, 0:2, 1:4] = True  # a 2 x 2 x 3 cube
    mask[1, 0, 3, 0] = True
    return mask


def test_hog_targets_and_loss_equal_a_hand_computation_on_masked_cubes():
    model = _tiny()
    torch.nn.init.zeros_(model.pred_head.projections[0].weight)
    torch.nn.init.constant_(model.pred_head.projections[0].bias, 0.25)  # every prediction is 0.25
    x = torch.randn(2, 3, 8, 32, 32)
    mask = _cube_mask()
    predictions, targets = model(x, mask)
    rows = []
    for b, t, i, j in mask.nonzero().tolist():  # token order: t, then h, then w
        hog = HOGLayer()(x[b : b + 1, :, 2 * t])[0]  # frame 2t: every temporal-stride-th frame, (3, 9, 4, 4)
        rows.append(hog[:, :, i, j].reshape(-1))  # one 8 x 8 cell per 8-pixel token: 27 values
    expected = torch.stack(rows)
    assert len(predictions) == len(targets) == 1 and targets[0][1] == 1.0
    assert torch.allclose(targets[0][0], expected, atol=1e-6)
    assert predictions[0].shape == (13, 27)
    loss = multi_mse(predictions, targets)
    assert torch.allclose(loss, ((expected - 0.25) ** 2).mean(), atol=1e-6)


def test_pixel_targets_are_the_normalised_pixels_of_each_masked_token():
    model = _tiny(pred_hog=False)
    x = torch.randn(2, 3, 8, 32, 32)
    mask = _cube_mask()
    _, targets = model(x, mask)
    rows = []
    for b, t, i, j in mask.nonzero().tolist():
        patch = x[b, :, 2 * t, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8].permute(1, 2, 0).reshape(-1)  # (p, p, C)
        rows.append((patch - patch.mean()) / (patch.var() + 1e-6) ** 0.5)
    assert targets[0][1] == 1.0 and torch.allclose(targets[0][0], torch.stack(rows), atol=1e-5)


def test_gradients_reach_the_mask_token_and_not_the_targets():
    model = _tiny().train()
    x = torch.randn(2, 3, 8, 32, 32, requires_grad=True)
    predictions, targets = model(x, _cube_mask())
    assert not targets[0][0].requires_grad
    multi_mse(predictions, targets).backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    unmasked = model(x, torch.zeros(2, 4, 4, 4, dtype=torch.bool))[0][0]
    assert unmasked.shape == (0, 27)  # nothing masked, nothing predicted


def test_scale_init_by_depth_divides_output_projections():
    plain, scaled = _tiny(), _tiny(scale_init_by_depth=True)
    for layer, (a, b) in enumerate(zip(plain.blocks, scaled.blocks), start=1):
        assert torch.allclose(b.attn.proj.weight, a.attn.proj.weight / math.sqrt(2 * layer))
        assert torch.allclose(b.mlp.fc2.weight, a.mlp.fc2.weight / math.sqrt(2 * layer))


def test_fine_tuning_load_drops_the_pretraining_tensors():
    pretrained = _tiny()
    classifier = MViT(pretrained.cfg)
    report = load_pretrained(classifier, pretrained.state_dict())
    assert sorted(report.dropped) == sorted(
        k for k in pretrained.state_dict() if k.startswith(("mask_token", "pred_head", "hogs"))
    )
    assert (
        len(report.dropped) == 7 and "dropped 7 pre-training tensors (mask_token, hogs, pred_head)" in report.summary()
    )
    assert report.head_reinitialized and "head re-initialised" in report.summary()  # a pre-training file has none
    assert sorted(report.missing) == ["norm.bias", "norm.weight"]
    assert torch.equal(classifier.blocks[1].attn.qkv.weight, pretrained.blocks[1].attn.qkv.weight)


def test_bad_pretrain_depth_is_refused():
    with pytest.raises(ValueError, match="pretrain_depth"):
        MaskMViT(_tiny().cfg, MaskFeatConfig(pretrain_depth=(2, 1)))
