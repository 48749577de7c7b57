"""The windowed families' configs (Shuffle Transformer; Swin and Video Swin): each builds its registered variant plus
its recipe's regularisation, follows the published evaluation protocol, reports the README's counts, and the video
configs start from inflated image weights through TRAIN.CHECKPOINT_FILE_PATH."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.init_checkpoint import init_from_checkpoint
from mvit_video.models import build_model, create_model, model_config, model_config_from_cfg
from mvit_video.models.info import describe
from tests.conftest import ROOT

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

# config -> (registered variant, fields its recipe sets on top of the variant)
VARIANT_CONFIGS = {
    "IN1K/SHUFFLE_T.yaml": ("shuffle_t_in1k", {"drop_path_rate": 0.1}),
    "K400/SHUFFLE3D_T_32x2.yaml": ("shuffle3d_t_32x2", {"head_dropout": 0.5}),
    "IN1K/SWIN_T.yaml": ("swin_t_in1k", {"drop_path_rate": 0.2}),
    "IN1K/SWIN_S.yaml": ("swin_s_in1k", {"drop_path_rate": 0.3}),
    "IN1K/SWIN_B.yaml": ("swin_b_in1k", {"drop_path_rate": 0.5}),
    "K400/SWIN3D_T_32x2.yaml": ("swin3d_t_32x2", {"drop_path_rate": 0.1, "head_dropout": 0.5}),
    "K400/SWIN3D_S_32x2.yaml": ("swin3d_s_32x2", {"drop_path_rate": 0.1, "head_dropout": 0.5}),
    "K400/SWIN3D_B_32x2.yaml": ("swin3d_b_32x2", {"drop_path_rate": 0.3, "head_dropout": 0.5}),
    # Video Swin's SSv2 model: windows of 16 x 7 x 7, 174 classes
    "SSv2/SWIN3D_B_32x2.yaml": ("swin3d_b_32x2", {"drop_path_rate": 0.4, "head_dropout": 0.5, "num_classes": 174,
                                                  "window_size": (16, 7, 7)}),  # fmt: skip
}
# ImageNet evaluation: (crop ratio, mean, std), bicubic
IMAGE_PROTOCOLS = {
    "IN1K/SHUFFLE_T.yaml": (0.875, *IMAGENET),  # the official code's (Swin's) TEST.CROP: resize 256, crop 224
    "IN1K/SWIN_T.yaml": (0.875, *IMAGENET),  # Microsoft's config.py TEST.CROP
    "IN1K/SWIN_S.yaml": (0.875, *IMAGENET),
    "IN1K/SWIN_B.yaml": (0.875, *IMAGENET),
}
# Video Swin's K400 recipe: (frames, rate, clips, crops, base lr, backbone lr mult, weight decay, epochs, warm-up,
# gradient accumulation)
VIDEO_SWIN_K400 = (32, 2, 4, 3, 1e-3, 0.1, 0.02, 30, 2.5, 8)
VIDEO_RECIPES = {"K400/SHUFFLE3D_T_32x2.yaml": VIDEO_SWIN_K400, "K400/SWIN3D_T_32x2.yaml": VIDEO_SWIN_K400,
                 "K400/SWIN3D_S_32x2.yaml": VIDEO_SWIN_K400, "K400/SWIN3D_B_32x2.yaml": VIDEO_SWIN_K400,
                 "SSv2/SWIN3D_B_32x2.yaml": (32, 2, 1, 3, 3e-4, 0.1, 0.05, 60, 2.5, 8)}  # fmt: skip
# video config -> (image variant it starts from, reduced depths for the test)
INFLATED = {"K400/SHUFFLE3D_T_32x2.yaml": ("shuffle_t_in1k", (2, 2, 2, 2)),
            "K400/SWIN3D_T_32x2.yaml": ("swin_t_in1k", (1, 1, 1, 1)),
            "K400/SWIN3D_B_32x2.yaml": ("swin_b_in1k", (1, 1, 1, 1))}
# config -> (parameters, GFLOPs: fvcore, batch 1, one image or view), measured with tools/model_info.py; these and
# IMAGE_PROTOCOLS are checked with the other families' in test_pyramid_configs.py
COUNTS = {
    "IN1K/SHUFFLE_T.yaml": (28_532_482, 4.68),
    "K400/SHUFFLE3D_T_32x2.yaml": (28_831_222, 93.0),
    "IN1K/SWIN_T.yaml": (28_288_354, 4.51),
    "IN1K/SWIN_S.yaml": (49_606_258, 8.77),
    "IN1K/SWIN_B.yaml": (87_768_224, 15.47),
    "K400/SWIN3D_T_32x2.yaml": (28_158_070, 88.06),
    "K400/SWIN3D_S_32x2.yaml": (49_816_678, 166.13),
    "K400/SWIN3D_B_32x2.yaml": (88_048_984, 281.92),
    "SSv2/SWIN3D_B_32x2.yaml": (88_834_038, 320.95),
}
IMAGE_COUNTS = [k for k in COUNTS if k.startswith("IN1K/")]
# toy config -> (parameters, its clip (T, H, W)); trained in tests/engine/test_toy_swin_end_to_end.py
TOY_COUNTS = {"Toy/SWIN3D_XS_8x2.yaml": (213_594, (8, 64, 64))}
TOY_CONFIGS: tuple[str, ...] = tuple(TOY_COUNTS)


def _cfg(path: str, *opts: str):
    return load_config(ROOT / "configs" / path, list(opts))


@pytest.mark.parametrize("path,name,recipe", [(k, *v) for k, v in VARIANT_CONFIGS.items()])
def test_config_builds_registered_variant(path, name, recipe):
    assert model_config_from_cfg(_cfg(path)) == model_config(name).replace(**recipe)


@pytest.mark.parametrize("path,recipe", VIDEO_RECIPES.items())
def test_video_configs_follow_the_video_swin_recipe(path, recipe):
    cfg = _cfg(path)
    frames, rate, clips, crops, lr, mult, wd, epochs, warmup, accum = recipe
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (frames, rate)
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, cfg.DATA.TEST_CROP_SIZE) == (clips, crops, 224)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.BACKBONE_LR_MULT, cfg.SOLVER.WEIGHT_DECAY) == (lr, mult, wd)
    assert (cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.WARMUP_EPOCHS, cfg.TRAIN.GRAD_ACCUM_STEPS) == (epochs, warmup, accum)
    assert cfg.DATA.MEAN == pytest.approx(IMAGENET[0]) and cfg.DATA.STD == pytest.approx(IMAGENET[1])


@pytest.mark.parametrize("path,name,depths", [(k, *v) for k, v in INFLATED.items()])
def test_video_config_starts_from_inflated_image_weights(tmp_path, path, name, depths):
    """Every tensor of the image checkpoint loads; kernels with a new time axis are spread evenly over it, the bias
    tables repeated over the time offsets; the 1000-class head is replaced."""
    torch.manual_seed(0)
    image = create_model(name, depths=depths)
    checkpoint = tmp_path / "image.pth"
    torch.save(image.state_dict(), checkpoint)
    section = "SHUFFLE" if name.startswith("shuffle") else "SWIN"
    cfg = _cfg(path, f"{section}.DEPTHS", str(list(depths)), "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))
    video = build_model(cfg)
    assert init_from_checkpoint(cfg, video, None, None) == 0
    ours, theirs = video.state_dict(), image.state_dict()
    head = next(k for k in ("head.weight", "head.fc.weight") if k in ours)  # Shuffle's, Swin's (timm's) classifier
    assert ours[head].shape == (400, theirs[head].shape[1])
    inflated = 0
    for key, value in theirs.items():
        if key.startswith("head.") or key.endswith(("relative_position_index", "attn_mask")):
            continue
        new = ours[key]
        if key.endswith("relative_position_bias_table"):  # (2Wt-1) copies of the 2-D table, t-major
            copies = new.shape[0] // value.shape[0]
            torch.testing.assert_close(new, value.repeat(copies, 1), rtol=0, atol=0, msg=key)
            inflated += 1
        elif new.shape != value.shape:  # a time axis of size kt: the image kernel / kt on every tap
            taps = new.shape[2]
            torch.testing.assert_close(new, value.expand_as(new) / taps, rtol=0, atol=1e-7, msg=key)
            inflated += 1
        else:
            torch.testing.assert_close(new, value, rtol=0, atol=0, msg=key)
    assert inflated > 0


@pytest.mark.parametrize("path,counts", TOY_COUNTS.items())
def test_toy_config_shifts_windows_on_every_axis(path, counts):
    """At the toy config's own clips every odd (shifted) block of every stage really shifts in T, H and W (no window
    shrinks to its grid), with no horizontal flip (it would swap the toy's left/right and spin classes)."""
    params, clip = counts
    cfg = _cfg(path)
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE) == (clip[0], clip[1], clip[2])
    assert cfg.MODEL.ARCH == "swin" and not cfg.DATA.RANDOM_FLIP
    model = build_model(cfg)
    blocks = [block for stage in model.layers for block in stage.blocks]
    shifted = 0
    for grid, block in zip(model.token_grids(clip), blocks):
        window, shift = block.attn.window_and_shift(grid)
        assert window == tuple(cfg.SWIN.WINDOW_SIZE), (grid, window)
        assert all(g % w == 0 for g, w in zip(grid, window)), (grid, window)  # no padded windows
        if block.attn.shift != (0, 0, 0):
            assert shift == tuple(w // 2 for w in window) and all(shift), (grid, shift)
            shifted += 1
    assert shifted == sum(d // 2 for d in cfg.SWIN.DEPTHS) > 0  # the odd blocks
    assert describe(cfg_path=str(ROOT / "configs" / path), flops=False)["params"] == params
