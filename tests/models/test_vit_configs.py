"""The ViT-family configs build the registered variants (plus their training recipe's regularisation), the K400
configs of image architectures start from inflated image weights, and every config follows the published evaluation
protocol of its reference."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.init_checkpoint import init_from_checkpoint
from mvit_video.models import build_model, create_model, model_config, model_config_from_cfg
from tests.conftest import ROOT
from tests.models.test_build import CONFIG_VARIANTS

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])

# config -> (registered variant, fields the config's recipe sets on top of it: regularisation only)
VARIANT_CONFIGS = {
    "IN1K/VIT_TI16.yaml": ("vit_ti16_in1k", {"drop_path_rate": 0.1}),
    "IN1K/VIT_B16.yaml": ("vit_b16_in1k", {"drop_path_rate": 0.1}),
    "IN1K/DEIT_TI16.yaml": ("deit_ti16_in1k", {"drop_path_rate": 0.1}),
    "IN1K/DEIT_TI16_DISTILLED.yaml": ("deit_ti16_distilled_in1k", {"drop_path_rate": 0.1}),
    "IN1K/CAIT_XXS24.yaml": ("cait_xxs24_in1k", {"drop_path_rate": 0.05}),
    "IN1K/CPVT_TI.yaml": ("cpvt_ti_in1k", {"drop_path_rate": 0.1}),
    "IN1K/DEEPVIT_S.yaml": ("deepvit_s_in1k", {"drop_path_rate": 0.1}),
    "K400/VIDEOMAE_B_16x4.yaml": ("videomae_b_16x4", {"drop_path_rate": 0.1}),
    "K400/TIMESFORMER_B_8x32.yaml": ("timesformer_b_8x32", {"drop_path_rate": 0.1, "head_dropout": 0.5}),
    "K400/VIVIT_B_32x2.yaml": ("vivit_b_32x2", {}),
}

_16x4 = {"num_classes": 400, "input_size": (16, 224, 224), "tubelet_size": 2}
# K400 config of an image architecture -> (image variant, its IN1K config, fields that differ from the variant)
INFLATED_CONFIGS = {
    "K400/VIT_TI16_16x4.yaml": ("vit_ti16_in1k", "IN1K/VIT_TI16.yaml", {**_16x4, "drop_path_rate": 0.1}),
    "K400/VIT_B16_16x4.yaml": ("vit_b16_in1k", "IN1K/VIT_B16.yaml", {**_16x4, "drop_path_rate": 0.1}),
    "K400/DEIT_TI16_16x4.yaml": ("deit_ti16_in1k", "IN1K/DEIT_TI16.yaml", {**_16x4, "drop_path_rate": 0.1}),
    "K400/DEIT_TI16_DISTILLED_16x4.yaml": ("deit_ti16_distilled_in1k", "IN1K/DEIT_TI16_DISTILLED.yaml",
                                           {**_16x4, "drop_path_rate": 0.1}),  # fmt: skip
    "K400/CAIT_XXS24_16x4.yaml": ("cait_xxs24_in1k", "IN1K/CAIT_XXS24.yaml", {**_16x4, "drop_path_rate": 0.05}),
    "K400/CPVT_TI_16x4.yaml": ("cpvt_ti_in1k", "IN1K/CPVT_TI.yaml",
                               {**_16x4, "drop_path_rate": 0.1, "peg_kernel": (3, 3, 3)}),  # fmt: skip
    "K400/DEEPVIT_S_16x4.yaml": ("deepvit_s_in1k", "IN1K/DEEPVIT_S.yaml", {**_16x4, "drop_path_rate": 0.1}),
}
TOY_CONFIGS = ("Toy/MVITv2_XS_8x2.yaml", "Toy/VIT_XS_8x2.yaml")

# published evaluation protocols: (frames, sampling rate, temporal clips, spatial crops, crop, mean, std)
VIDEO_PROTOCOLS = {
    "K400/VIDEOMAE_B_16x4.yaml": (16, 4, 5, 3, 224, *IMAGENET),  # MCG-NJU/VideoMAE finetune.sh, kinetics.py
    "K400/TIMESFORMER_B_8x32.yaml": (8, 32, 1, 3, 224, [0.45] * 3, [0.225] * 3),  # TimeSformer_divST_8x32_224.yaml
    "K400/VIVIT_B_32x2.yaml": (32, 2, 4, 3, 224, *HALF),  # scenic vivit_base_k400.py (zero_centering)
}
# ImageNet evaluation: (crop ratio, mean, std); the resize is PIL bicubic for every image config
IMAGE_PROTOCOLS = {
    "IN1K/VIT_TI16.yaml": (0.9, *HALF),  # timm pretrained_cfg of augreg_in21k_ft_in1k
    "IN1K/VIT_B16.yaml": (0.9, *HALF),  # timm pretrained_cfg of augreg2_in21k_ft_in1k
    "IN1K/DEIT_TI16.yaml": (0.875, *IMAGENET),  # DeiT main.py --eval-crop-ratio
    "IN1K/DEIT_TI16_DISTILLED.yaml": (0.875, *IMAGENET),
    "IN1K/CAIT_XXS24.yaml": (1.0, *IMAGENET),  # DeiT repo README_cait.md
    "IN1K/CPVT_TI.yaml": (0.875, *IMAGENET),  # CPVT trains and evaluates with DeiT's code
    "IN1K/DEEPVIT_S.yaml": (0.9, *HALF),  # dvit_repo models/deep_vision_transformer.py default_cfgs (pitfall 10)
}


def _cfg(path: str, *opts: str):
    return load_config(ROOT / "configs" / path, list(opts))


def test_every_config_is_covered():
    found = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    from tests.models import test_build as build
    from tests.models import test_pyramid_configs as pyramid
    from tests.models import test_windowed_configs as windowed

    covered = set(CONFIG_VARIANTS) | set(VARIANT_CONFIGS) | set(INFLATED_CONFIGS) | set(TOY_CONFIGS)
    covered |= set(build.MASKFEAT_CONFIGS) | set(build.CHECKED_IN)
    covered |= set(windowed.VARIANT_CONFIGS) | set(windowed.TOY_CONFIGS)
    covered |= set(pyramid.VARIANT_CONFIGS) | set(pyramid.INFLATED) | set(pyramid.TOY_CONFIGS)
    assert found == covered, f"configs without a test: {sorted(found - covered)}; missing: {sorted(covered - found)}"


@pytest.mark.parametrize("path,name,recipe", [(k, *v) for k, v in VARIANT_CONFIGS.items()])
def test_config_builds_registered_variant(path, name, recipe):
    cfg = _cfg(path)
    assert cfg.MODEL.ARCH == "vit"
    assert model_config_from_cfg(cfg) == model_config(name).replace(**recipe)


@pytest.mark.parametrize("path,name,image_path,changes", [(k, *v) for k, v in INFLATED_CONFIGS.items()])
def test_k400_config_is_the_image_architecture_on_tubelets(path, name, image_path, changes):
    cfg, image_cfg = _cfg(path), _cfg(image_path)
    assert model_config_from_cfg(cfg) == model_config(name).replace(**changes)
    assert cfg.TRAIN.CHECKPOINT_INFLATE and cfg.TRAIN.CHECKPOINT_REINIT_HEAD and cfg.TRAIN.CHECKPOINT_EPOCH_RESET
    assert (cfg.DATA.MEAN, cfg.DATA.STD) == (image_cfg.DATA.MEAN, image_cfg.DATA.STD)  # what the weights expect
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (
        16, 4, 5, 3)  # fmt: skip


@pytest.mark.parametrize("path,name,image_path,changes", [(k, *v) for k, v in INFLATED_CONFIGS.items()])
def test_k400_config_starts_from_its_image_weights(tmp_path, path, name, image_path, changes):
    """TRAIN.CHECKPOINT_FILE_PATH with the image variant's weights (reduced depth, same code path): every tensor
    loads, the patch kernel is averaged over the tubelet, the position table is repeated over the token frames, the
    1000-class head is replaced."""
    torch.manual_seed(0)
    reduced = {"depth": 2, **({"reattention_depth": 1} if model_config(name).reattention_depth else {})}
    image = create_model(name, **reduced)
    checkpoint = tmp_path / "image.pth"
    torch.save(image.state_dict(), checkpoint)
    opts = [x for k, v in reduced.items() for x in (f"VIT.{k.upper()}", str(v))]
    cfg = _cfg(path, *opts, "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))
    video = build_model(cfg)
    assert init_from_checkpoint(cfg, video, None, None) == 0
    kernel, image_kernel = video.patch_embed.proj.weight.detach(), image.patch_embed.proj.weight.detach()
    stem_channels, patch = (64, 8) if video.cfg.stem == "cnn" else (3, 16)  # DeepViT: the stem's last projection
    assert kernel.shape == (image_kernel.shape[0], stem_channels, 2, patch, patch)
    torch.testing.assert_close(kernel, image_kernel.expand_as(kernel) / 2, rtol=0, atol=1e-7)
    if video.pos_embed is not None:
        prefix = video.cfg.num_prefix
        grid = video.pos_embed.detach()[0, prefix:].reshape(8, 14 * 14, -1)
        torch.testing.assert_close(grid, image.pos_embed.detach()[0, prefix:].expand(8, -1, -1), rtol=0, atol=1e-6)
    if video.pos_block is not None:  # CPVT: the 1 x 3 x 3 PEG averaged over 3 taps
        peg = video.pos_block[0].proj[0].weight.detach()
        torch.testing.assert_close(peg, image.pos_block[0].proj[0].weight.detach().expand_as(peg) / 3, rtol=0,
                                   atol=1e-7)  # fmt: skip
    assert video.head.out_features == 400
    for key, value in image.state_dict().items():
        if not key.startswith(("head", "patch_embed", "pos_embed", "pos_block")):
            torch.testing.assert_close(video.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("path,protocol", VIDEO_PROTOCOLS.items())
def test_video_configs_follow_the_published_test_protocol(path, protocol):
    cfg = _cfg(path)
    frames, rate, clips, crops, crop, mean, std = protocol
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (frames, rate)
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, cfg.DATA.TEST_CROP_SIZE) == (clips, crops, crop)
    assert cfg.DATA.MEAN == pytest.approx(mean) and cfg.DATA.STD == pytest.approx(std)


@pytest.mark.parametrize("path,protocol", IMAGE_PROTOCOLS.items())
def test_image_configs_follow_the_reference_evaluation(path, protocol):
    cfg = _cfg(path)
    ratio, mean, std = protocol
    assert (cfg.TRAIN.DATASET, cfg.TEST.DATASET, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE) == (
        "imagenet", "imagenet", 1, 224)  # fmt: skip
    assert cfg.DATA.IN_VAL_CROP_RATIO == ratio
    assert cfg.DATA.MEAN == pytest.approx(mean) and cfg.DATA.STD == pytest.approx(std)
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (1, 1)


def test_readme_names_every_vit_key_and_variant():
    from mvit_video.config.sections import derived_sections
    from mvit_video.models import list_models

    readme = (ROOT / "README.md").read_text()
    section = derived_sections()["VIT"]
    assert [k for k in (section.key(f.name) for f in section.fields()) if f"`{k}`" not in readme] == []
    vit_variants = [n for n in list_models() if type(model_config(n)).__name__ == "ViTConfig"]
    assert [n for n in vit_variants if f"| `{n}` |" not in readme] == []
