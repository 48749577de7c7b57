"""configs/ and PySlowFast's own YAMLs build the published architectures through the one cfg adapter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mvit_video.config import ConfigError, get_cfg, load_config
from mvit_video.models import MViT, build_model, model_config, model_config_from_cfg, mvit_config_from_cfg
from tests.conftest import ROOT, shared_path

CONFIG_VARIANTS = {
    "K400/MVITv2_S_16x4.yaml": "mvitv2_s_16x4",
    "K400/MVITv2_B_32x3.yaml": "mvitv2_b_32x3",
    "K400/MVITv2_L_40x3_312.yaml": "mvitv2_l_40x3_312",
    "K400/MVITv1_B_16x4.yaml": "mvitv1_b_16x4",
    "K400/MVITv1_B_32x3.yaml": "mvitv1_b_32x3",
    "K600/MVITv2_S_16x4.yaml": "mvitv2_s_16x4_k600",
    "K700/MVITv2_S_16x4.yaml": "mvitv2_s_16x4_k700",
    "SSv2/MVITv2_S_16x4.yaml": "mvitv2_s_16x4_ssv2",
    "SSv2/MVITv2_B_32x3.yaml": "mvitv2_b_32x3_ssv2",
    "IN1K/MVITv2_T.yaml": "mvitv2_t_in1k",
    "IN1K/MVITv2_S.yaml": "mvitv2_s_in1k",
    "IN1K/MVITv2_B.yaml": "mvitv2_b_in1k",
}

# MaskFeat's configs (PySlowFast's masked_ssl values): MViTv2-S 16x4 with the recipe's changes (the pre-training
# backbone keeps the last stage's grid: no query pooling at block 14)
_MASKFEAT_RECIPE = {"sep_pos_embed": True, "dim_mul_in_att": False, "head_dropout": 0.0}
MASKFEAT_CONFIGS = {
    "K400/MVITv2_S_16x4_MaskFeat_FT.yaml": ("mvitv2_s_16x4", {**_MASKFEAT_RECIPE, "use_mean_pooling": True,
                                             "drop_path_rate": 0.1, "head_init_scale": 0.001}),
    "K400/MVITv2_S_16x4_MaskFeat_PT.yaml": ("mvitv2_s_16x4", {**_MASKFEAT_RECIPE, "drop_path_rate": 0.0,
                                             "pool_q_stride": [[i, 1, 2, 2] if i in (1, 3) else [i, 1, 1, 1]
                                                               for i in range(16)]}),
}
# configs whose builds and runs are checked in their features' own test files
CHECKED_IN = {
    "K400/REV_MVIT_B_16x4.yaml": "tests/models/test_reversible.py",
    "Toy/REV_MVIT_XS_8x2.yaml": "tests/engine/test_toy_rev_end_to_end.py",
    "Toy/MVITv2_XS_8x2_MaskFeat_PT.yaml": "tests/engine/test_maskfeat_run.py",
    "K400/VIDEOMAE_B_16x4_PT.yaml": "tests/models/test_mae.py",
    "Toy/VIT_XS_8x2_MAE_PT.yaml": "tests/engine/test_mae_run.py",
}


@pytest.mark.parametrize("path", MASKFEAT_CONFIGS)
def test_maskfeat_configs_build_mvitv2_s_with_their_recipe(path):
    name, recipe = MASKFEAT_CONFIGS[path]
    assert model_config_from_cfg(load_config(ROOT / "configs" / path)) == model_config(name).replace(**recipe)


@pytest.mark.parametrize("path", CHECKED_IN)
def test_configs_checked_elsewhere_are_named_by_their_test(path):
    assert (ROOT / "configs" / path).exists() and Path(path).name in (ROOT / CHECKED_IN[path]).read_text()


SLOWFAST_TWINS = {
    "Kinetics_MVITv2_S_16x4.yaml": "K400/MVITv2_S_16x4.yaml",
    "Kinetics_MVITv2_B_32x3.yaml": "K400/MVITv2_B_32x3.yaml",
    "Kinetics_MVITv2_L_40x3_test.yaml": "K400/MVITv2_L_40x3_312.yaml",
    "Kinetics_MVIT_B_16x4_CONV.yaml": "K400/MVITv1_B_16x4.yaml",
    "Kinetics_MVIT_B_32x3_CONV.yaml": "K400/MVITv1_B_32x3.yaml",
    "SSv2_MVITv2_S_16x4.yaml": "SSv2/MVITv2_S_16x4.yaml",
    "ImageNet_MVITv2_T.yaml": "IN1K/MVITv2_T.yaml",
    "ImageNet_MVITv2_S.yaml": "IN1K/MVITv2_S.yaml",
}


def test_every_config_is_covered():
    found = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    assert set(CONFIG_VARIANTS) <= found


@pytest.mark.parametrize("path,name", CONFIG_VARIANTS.items())
def test_config_builds_named_variant(path, name):
    cfg = load_config(ROOT / "configs" / path)
    assert mvit_config_from_cfg(cfg) == model_config(name)


@pytest.mark.parametrize("theirs,ours", SLOWFAST_TWINS.items())
def test_pyslowfast_yaml_builds_same_model(theirs, ours):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. PySlowFast's PREFETCH section
        their_cfg = load_config(shared_path("slowfast_configs", theirs))
    assert mvit_config_from_cfg(their_cfg) == mvit_config_from_cfg(load_config(ROOT / "configs" / ours))


def test_build_model_is_plain_cpu_module():
    model = build_model(load_config(ROOT / "configs" / "IN1K/MVITv2_T.yaml"))
    assert type(model) is MViT
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model.head.projection.out_features == 1000


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("MVIT.POOL_FIRST", True, "MVIT.POOL_FIRST"),
        ("MVIT.USE_FIXED_SINCOS_POS", True, "MVIT.USE_FIXED_SINCOS_POS"),
        ("MVIT.MODE", "conv_unshared", "conv_unshared"),
        ("MODEL.ARCH", "slowfast", "MODEL.ARCH"),
    ],
)
def test_unsupported_options_are_one_line_errors(key, value, match):
    cfg = get_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(ConfigError, match=match) as info:
        model_config_from_cfg(cfg)
    assert "\n" not in str(info.value)
