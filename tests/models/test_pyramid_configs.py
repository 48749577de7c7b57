"""The pyramid and convolution-attention families' configs (PVT / PVTv2, CvT, CeiT, LeViT, CoaT): each builds its
registered variant plus its recipe's regularisation, follows the reference's evaluation protocol, reports the
README's counts, and the K400 configs start from inflated image weights through TRAIN.CHECKPOINT_FILE_PATH."""

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
VARIANT_CONFIGS: dict[str, tuple[str, dict]] = {
    "IN1K/PVT_T.yaml": ("pvt_t_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B0.yaml": ("pvtv2_b0_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B2.yaml": ("pvtv2_b2_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B2_LI.yaml": ("pvtv2_b2_li_in1k", {"drop_path_rate": 0.1}),
}
# ImageNet evaluation: (crop ratio, mean, std), bicubic. Every official code of these families evaluates with DeiT's
# transform (short side to 256 for a 224 crop), whatever timm's pretrained_cfg says (0.9).
IMAGE_PROTOCOLS: dict[str, tuple[float, list, list]] = {
    "IN1K/PVT_T.yaml": (0.875, *IMAGENET),  # whai362/PVT datasets.py build_transform
    "IN1K/PVTV2_B0.yaml": (0.875, *IMAGENET),
    "IN1K/PVTV2_B2.yaml": (0.875, *IMAGENET),
    "IN1K/PVTV2_B2_LI.yaml": (0.875, *IMAGENET),
}
# K400 config -> (image variant it starts from, its IN1K config, config options that shrink it for the test,
# create_model arguments of the same shrunk image model, fields the video config sets on top of the variant)
INFLATED: dict[str, tuple[str, str, tuple[str, ...], dict, dict]] = {
    "K400/PVTV2_B2_16x4.yaml": ("pvtv2_b2_in1k", "IN1K/PVTV2_B2.yaml", ("PVT.DEPTHS", "[1, 1, 1, 1]"),
                                {"depths": (1, 1, 1, 1)},
                                {"num_classes": 400, "input_size": (16, 224, 224), "patch_time_kernel": 3,
                                 "patch_time_stride": 2, "dwconv_time_kernel": 3, "drop_path_rate": 0.1,
                                 "head_dropout": 0.5}),
}  # fmt: skip
# config -> (parameters, GFLOPs: fvcore, batch 1, one image or view), measured with tools/model_info.py
COUNTS: dict[str, tuple[int, float]] = {
    "IN1K/PVT_T.yaml": (13_229_288, 1.94),
    "IN1K/PVTV2_B0.yaml": (3_666_760, 0.57),
    "IN1K/PVTV2_B2.yaml": (25_362_856, 4.05),
    "IN1K/PVTV2_B2_LI.yaml": (22_553_512, 3.91),
    "K400/PVTV2_B2_16x4.yaml": (25_424_080, 42.24),
}
IMAGE_COUNTS = [k for k in COUNTS if k.startswith("IN1K/")]
# toy configs of these families (trained in tests/engine/)
TOY_CONFIGS: tuple[str, ...] = ()


def _cfg(path: str, *opts: str):
    return load_config(ROOT / "configs" / path, list(opts))


@pytest.mark.parametrize("path,name,recipe", [(k, *v) for k, v in VARIANT_CONFIGS.items()])
def test_config_builds_registered_variant(path, name, recipe):
    assert model_config_from_cfg(_cfg(path)) == model_config(name).replace(**recipe)


@pytest.mark.parametrize("path,protocol", IMAGE_PROTOCOLS.items())
def test_image_configs_follow_the_reference_evaluation(path, protocol):
    cfg = _cfg(path)
    ratio, mean, std = protocol
    assert (cfg.TRAIN.DATASET, cfg.TEST.DATASET, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE) == (
        "imagenet", "imagenet", 1, 224)  # fmt: skip
    assert cfg.DATA.IN_VAL_CROP_RATIO == ratio and cfg.AUG.INTERPOLATION == "bicubic"
    assert cfg.DATA.MEAN == pytest.approx(mean) and cfg.DATA.STD == pytest.approx(std)


@pytest.mark.parametrize("path,name,image_path,opts,reduced,changes", [(k, *v) for k, v in INFLATED.items()])
def test_k400_config_is_the_image_architecture_on_clips(path, name, image_path, opts, reduced, changes):
    cfg, image_cfg = _cfg(path), _cfg(image_path)
    assert model_config_from_cfg(cfg) == model_config(name).replace(**changes)
    assert cfg.TRAIN.CHECKPOINT_INFLATE and cfg.TRAIN.CHECKPOINT_REINIT_HEAD and cfg.TRAIN.CHECKPOINT_EPOCH_RESET
    assert (cfg.DATA.MEAN, cfg.DATA.STD) == (image_cfg.DATA.MEAN, image_cfg.DATA.STD)  # what the weights expect
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (
        16, 4, 5, 3)  # fmt: skip


@pytest.mark.parametrize("path,name,image_path,opts,reduced,changes", [(k, *v) for k, v in INFLATED.items()])
def test_k400_config_starts_from_inflated_image_weights(tmp_path, path, name, image_path, opts, reduced, changes):
    """Every tensor of the (shrunk) image checkpoint loads; a kernel that gained a time axis of kt taps holds the
    image kernel / kt on every tap (TRAIN.CHECKPOINT_INFLATE: PySlowFast's I3D rule), every other tensor is copied
    unchanged, and the 1000-class head is replaced by a 400-class one."""
    torch.manual_seed(0)
    image = create_model(name, **reduced)
    checkpoint = tmp_path / "image.pth"
    torch.save(image.state_dict(), checkpoint)
    cfg = _cfg(path, *opts, "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))
    video = build_model(cfg)
    assert init_from_checkpoint(cfg, video, None, None) == 0
    ours, theirs = video.state_dict(), image.state_dict()
    heads = [k for k in theirs if k.startswith(("head.", "head_dist.")) and k.endswith("weight") and theirs[k].ndim]
    assert heads and all(ours[k].shape[0] == 400 for k in heads)
    inflated = 0
    for key, value in theirs.items():
        if key.startswith(("head.", "head_dist.")) or key.endswith("num_batches_tracked"):
            continue
        new = ours[key]
        if new.shape != value.shape:  # a time axis of size kt: the image kernel / kt on every tap
            kernel = value if value.ndim == new.ndim else value.unsqueeze(2)  # (O, I, [1,] kh, kw)
            assert kernel.shape[2] == 1 and kernel.shape[:2] + kernel.shape[3:] == new.shape[:2] + new.shape[3:], key
            taps = new.shape[2]
            torch.testing.assert_close(new, kernel.expand_as(new) / taps, rtol=0, atol=1e-7, msg=key)
            inflated += 1
        else:
            torch.testing.assert_close(new, value, rtol=0, atol=0, msg=key)
    assert inflated > 0


@pytest.mark.parametrize("path", list(COUNTS))
def test_configs_report_their_parameters(path):
    assert describe(cfg_path=str(ROOT / "configs" / path), flops=False)["params"] == COUNTS[path][0]


@pytest.mark.parametrize("path", IMAGE_COUNTS)
def test_image_config_gflops(path):
    assert describe(cfg_path=str(ROOT / "configs" / path))["gflops"] == pytest.approx(COUNTS[path][1], abs=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("path", [k for k in COUNTS if k not in IMAGE_COUNTS])
def test_video_config_gflops(path):
    assert describe(cfg_path=str(ROOT / "configs" / path))["gflops"] == pytest.approx(COUNTS[path][1], abs=0.05)
