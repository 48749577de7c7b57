"""The pyramid and convolution-attention families' configs (PVT / PVTv2, CvT, CeiT, LeViT, CoaT): each builds its
registered variant plus its recipe's regularisation, follows the reference's evaluation protocol, reports the
README's counts, and the K400 configs start from inflated image weights through TRAIN.CHECKPOINT_FILE_PATH."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.init_checkpoint import init_from_checkpoint
from mvit_video.models import build_model, create_model, model_config, model_config_from_cfg
from mvit_video.models.families import get_family
from mvit_video.models.info import describe
from tests.conftest import ROOT
from tests.models import test_windowed_configs as windowed

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

# config -> (registered variant, fields its recipe sets on top of the variant)
VARIANT_CONFIGS: dict[str, tuple[str, dict]] = {
    "IN1K/LEVIT_128S.yaml": ("levit_128s_in1k", {}),
    "IN1K/COAT_LITE_TI.yaml": ("coat_lite_ti_in1k", {}),
    "IN1K/COAT_TI.yaml": ("coat_ti_in1k", {}),
    "IN1K/CEIT_T.yaml": ("ceit_t_in1k", {"drop_path_rate": 0.1}),
    "IN1K/CVT_13.yaml": ("cvt_13_in1k", {}),
    "IN1K/PVT_T.yaml": ("pvt_t_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B0.yaml": ("pvtv2_b0_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B2.yaml": ("pvtv2_b2_in1k", {"drop_path_rate": 0.1}),
    "IN1K/PVTV2_B2_LI.yaml": ("pvtv2_b2_li_in1k", {"drop_path_rate": 0.1}),
}
# ImageNet evaluation: (crop ratio, mean, std), bicubic. Every official code of these families evaluates with DeiT's
# transform (short side to 256 for a 224 crop), whatever timm's pretrained_cfg says (0.9).
IMAGE_PROTOCOLS: dict[str, tuple[float, list, list]] = {
    "IN1K/LEVIT_128S.yaml": (0.875, *IMAGENET),  # facebookresearch/LeViT (DeiT's datasets.py)
    "IN1K/COAT_LITE_TI.yaml": (0.875, *IMAGENET),  # mlpc-ucsd/CoaT src/datasets.py
    "IN1K/COAT_TI.yaml": (0.875, *IMAGENET),
    "IN1K/CEIT_T.yaml": (0.875, *IMAGENET),  # coeusguo/ceit datasets.py (DeiT's build_transform)
    "IN1K/CVT_13.yaml": (0.875, *IMAGENET),
    "IN1K/PVT_T.yaml": (0.875, *IMAGENET),  # whai362/PVT datasets.py build_transform
    "IN1K/PVTV2_B0.yaml": (0.875, *IMAGENET),
    "IN1K/PVTV2_B2.yaml": (0.875, *IMAGENET),
    "IN1K/PVTV2_B2_LI.yaml": (0.875, *IMAGENET),
}
# K400 config -> (image variant it starts from, its IN1K config, config options that shrink it for the test,
# create_model arguments of the same shrunk image model, fields the video config sets on top of the variant)
_K400 = {"num_classes": 400, "input_size": (16, 224, 224)}
INFLATED: dict[str, tuple[str, str, tuple[str, ...], dict, dict]] = {
    "K400/LEVIT_128S_16x4.yaml": ("levit_128s_in1k", "IN1K/LEVIT_128S.yaml", ("LEVIT.DEPTHS", "[1, 1, 1]"),
                                  {"depths": (1, 1, 1)},
                                  {**_K400, "stem_time_kernel": (3, 1, 1, 1), "stem_time_stride": (2, 1, 1, 1),
                                   "shrink_time_stride": (2, 2)}),
    "K400/COAT_LITE_TI_16x4.yaml": ("coat_lite_ti_in1k", "IN1K/COAT_LITE_TI.yaml",
                                    ("COAT.SERIAL_DEPTHS", "[1, 1, 1, 1]"), {"serial_depths": (1, 1, 1, 1)},
                                    {**_K400, "patch_time_kernel": (2, 1, 1, 1), "patch_time_stride": (2, 1, 1, 1),
                                     "cpe_time_kernel": 3, "crpe_time_kernel": 3}),
    "K400/CEIT_T_16x4.yaml": ("ceit_t_in1k", "IN1K/CEIT_T.yaml", ("CEIT.DEPTH", "2"), {"depth": 2},
                              {"num_classes": 400, "input_size": (16, 224, 224), "stem_time_kernel": 3,
                               "stem_time_stride": 2, "leff_time_kernel": 3, "drop_path_rate": 0.1}),
    "K400/CVT_13_16x4.yaml": (
        "cvt_13_in1k", "IN1K/CVT_13.yaml",
        ("CVT.DEPTHS", "[1, 1, 1]", "CVT.EMBED_DIMS", "[16, 32, 48]", "CVT.NUM_HEADS", "[1, 2, 3]"),
        {"depths": (1, 1, 1), "embed_dims": (16, 32, 48), "num_heads": (1, 2, 3)},
        {"num_classes": 400, "input_size": (16, 224, 224), "patch_time_kernels": (3, 1, 1),
         "patch_time_strides": (2, 1, 1), "qkv_time_kernel": 3, "kv_time_stride": 2},
    ),
    "K400/PVTV2_B2_16x4.yaml": ("pvtv2_b2_in1k", "IN1K/PVTV2_B2.yaml", ("PVT.DEPTHS", "[1, 1, 1, 1]"),
                                {"depths": (1, 1, 1, 1)},
                                {"num_classes": 400, "input_size": (16, 224, 224), "patch_time_kernel": 3,
                                 "patch_time_stride": 2, "dwconv_time_kernel": 3, "drop_path_rate": 0.1,
                                 "head_dropout": 0.5}),
}  # fmt: skip
# config -> (parameters, GFLOPs: fvcore, batch 1, one image or view), measured with tools/model_info.py
COUNTS: dict[str, tuple[int, float]] = {
    "IN1K/LEVIT_128S.yaml": (7_777_058, 0.31),
    "IN1K/COAT_LITE_TI.yaml": (5_721_960, 1.60),
    "IN1K/COAT_TI.yaml": (5_498_540, 4.35),
    "K400/LEVIT_128S_16x4.yaml": (7_343_384, 2.70),
    "K400/COAT_LITE_TI_16x4.yaml": (5_592_336, 13.28),
    "IN1K/CEIT_T.yaml": (6_356_904, 1.41),
    "K400/CEIT_T_16x4.yaml": (6_689_232, 23.32),
    "IN1K/CVT_13.yaml": (19_997_480, 4.585),
    "K400/CVT_13_16x4.yaml": (20_016_848, 48.70),
    "IN1K/PVT_T.yaml": (13_229_288, 1.94),
    "IN1K/PVTV2_B0.yaml": (3_666_760, 0.57),
    "IN1K/PVTV2_B2.yaml": (25_362_856, 4.05),
    "IN1K/PVTV2_B2_LI.yaml": (22_553_512, 3.91),
    "K400/PVTV2_B2_16x4.yaml": (25_424_080, 42.24),
}
# the checks of counts and evaluation protocols below run for the windowed families' configs too
ALL_COUNTS = {**windowed.COUNTS, **COUNTS}
ALL_IMAGE_PROTOCOLS = {**windowed.IMAGE_PROTOCOLS, **IMAGE_PROTOCOLS}
# toy configs of these families (trained in tests/engine/)
TOY_CONFIGS: tuple[str, ...] = ("Toy/PVTV2_XS_8x2.yaml",)  # tests/engine/test_toy_pvt_end_to_end.py


def _cfg(path: str, *opts: str):
    return load_config(ROOT / "configs" / path, list(opts))


@pytest.mark.parametrize("path,name,recipe", [(k, *v) for k, v in VARIANT_CONFIGS.items()])
def test_config_builds_registered_variant(path, name, recipe):
    assert model_config_from_cfg(_cfg(path)) == model_config(name).replace(**recipe)


@pytest.mark.parametrize("path,protocol", ALL_IMAGE_PROTOCOLS.items())
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
    image kernel / kt on every tap (TRAIN.CHECKPOINT_INFLATE: PySlowFast's I3D rule), a learned position table that
    gained token frames keeps its prefix rows and repeats the image grid on every frame, every other tensor is copied
    unchanged, and the 1000-class head is replaced by a 400-class one."""
    torch.manual_seed(0)
    image = create_model(name, **reduced)
    checkpoint = tmp_path / "image.pth"
    torch.save(image.state_dict(), checkpoint)
    cfg = _cfg(path, *opts, "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))
    video = build_model(cfg)
    assert init_from_checkpoint(cfg, video, None, None) == 0
    ours, theirs = video.state_dict(), image.state_dict()
    classifier = get_family(cfg.MODEL.ARCH).head_keys  # the tensors a new head replaces
    assert all(ours[k].shape[0] == 400 and theirs[k].shape[0] == 1000 for k in classifier if k in theirs)
    inflated = 0
    tables = video.position_tables()
    for key, value in theirs.items():
        if key in classifier or key.endswith("num_batches_tracked"):
            continue
        new = ours[key]
        if new.shape != value.shape and key in tables:  # (1, prefix + H W, C) -> (1, prefix + T' H W, C)
            prefix, (t, h, w) = tables[key]
            torch.testing.assert_close(new[:, :prefix], value[:, :prefix], rtol=0, atol=0, msg=key)
            grid = new[0, prefix:].reshape(t, h * w, -1)
            torch.testing.assert_close(grid, value[0, prefix:].expand(t, -1, -1), rtol=0, atol=1e-6, msg=key)
            inflated += 1
        elif key.endswith("attention_biases") and new.shape != value.shape:  # LeViT: (heads, H W) -> (heads, T H W)
            copies = new.shape[1] // value.shape[1]  # the 2-D table for every |dt| (|dt|-major)
            torch.testing.assert_close(new, value.repeat(1, copies), rtol=0, atol=0, msg=key)
            inflated += 1
        elif new.shape != value.shape:  # a time axis of size kt: the image kernel / kt on every tap
            kernel = value if value.ndim == new.ndim else value.unsqueeze(2)  # (O, I, [1,] kh, kw)
            assert kernel.shape[2] == 1 and kernel.shape[:2] + kernel.shape[3:] == new.shape[:2] + new.shape[3:], key
            taps = new.shape[2]
            torch.testing.assert_close(new, kernel.expand_as(new) / taps, rtol=0, atol=1e-7, msg=key)
            inflated += 1
        else:
            torch.testing.assert_close(new, value, rtol=0, atol=0, msg=key)
    assert inflated > 0


@pytest.mark.parametrize("path", list(ALL_COUNTS))
def test_configs_report_their_parameters(path):
    assert describe(cfg_path=str(ROOT / "configs" / path), flops=False)["params"] == ALL_COUNTS[path][0]


@pytest.mark.parametrize("path", [k for k in ALL_COUNTS if k.startswith("IN1K/")])
def test_image_config_gflops(path):
    assert describe(cfg_path=str(ROOT / "configs" / path))["gflops"] == pytest.approx(ALL_COUNTS[path][1], abs=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("path", [k for k in ALL_COUNTS if not k.startswith("IN1K/")])
def test_video_config_gflops(path):
    assert describe(cfg_path=str(ROOT / "configs" / path))["gflops"] == pytest.approx(ALL_COUNTS[path][1], abs=0.05)


@pytest.mark.parametrize("section,prefixes", [("SWIN", ("swin",)), ("SHUFFLE", ("shuffle",)), ("PVT", ("pvt",)),
                                              ("CVT", ("cvt",)), ("CEIT", ("ceit",)), ("LEVIT", ("levit",)),
                                              ("COAT", ("coat",))])  # fmt: skip
def test_readme_names_every_key_and_variant(section, prefixes):
    """The README's model section names every key of these families' sections and every registered variant (in
    a table row); the windowed families' too."""
    from mvit_video.config.sections import derived_sections
    from mvit_video.models import list_models

    readme = (ROOT / "README.md").read_text()
    derived = derived_sections()[section]
    assert [k for k in (derived.key(f.name) for f in derived.fields()) if f"`{k}`" not in readme] == []
    variants = [n for n in list_models() if n.startswith(prefixes)]
    assert variants and [n for n in variants if f"| `{n}` |" not in readme] == []
