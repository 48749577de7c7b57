"""The family structure: MODEL.ARCH picks the family, a family's YAML section is derived from its config dataclass,
settings of another family are refused, and every family offers what the engine, demo and tools use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mvit_video.config import ConfigError, get_cfg, load_config
from mvit_video.engine.optim import param_groups
from mvit_video.models import FAMILIES, MViT, ViTConfig, VisionTransformer, build_model, create_model, list_models
from mvit_video.models.stats import count_params, stage_table


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_vit_section_is_the_dataclass_minus_the_shared_fields():
    """Every ViTConfig field is a VIT key with the field's default (tuples as lists), except the fields that come
    from the shared sections; nothing else is in the section."""
    shared = {"num_classes", "input_size", "in_chans", "head_dropout", "detach_head", "act_checkpoint", "attention"}
    section = get_cfg().VIT
    expected = {}
    for field in dataclasses.fields(ViTConfig):
        if field.name in shared:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        expected[field.name.upper()] = list(default) if isinstance(default, tuple) else default
    assert dict(section) == expected


def test_a_vit_yaml_builds_the_configured_model(tmp_path):
    path = _yaml(tmp_path, "MODEL:\n  ARCH: vit\n  NUM_CLASSES: 7\n  DROPOUT_RATE: 0.1\nDATA:\n  NUM_FRAMES: 4\n"
                           "  TRAIN_CROP_SIZE: 32\nVIT:\n  PATCH_SIZE: 8\n  TUBELET_SIZE: 2\n  EMBED_DIM: 48\n  DEPTH: 2\n"
                           "  NUM_HEADS: 3\n  PEG_KERNEL: [3, 3, 3]\n  POS_EMBED: none\n")  # fmt: skip
    model = build_model(load_config(path))
    assert isinstance(model, VisionTransformer)
    assert model.cfg == ViTConfig(num_classes=7, input_size=(4, 32, 32), patch_size=8, tubelet_size=2, embed_dim=48,
                                  depth=2, num_heads=3, peg_kernel=(3, 3, 3), pos_embed="none", head_dropout=0.1)
    assert model(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 7)
    assert model.pos_block[0].proj[0].weight.shape == (48, 1, 3, 3, 3)


@pytest.mark.parametrize(
    "opts,message",
    [
        (["VIT.DEPHT", "3"], "unknown config key VIT.DEPHT; did you mean VIT.DEPTH?"),
        (["MVIT.DEPTH", "3"], "MVIT.DEPTH=3 is a setting of the mvit family, but MODEL.ARCH='vit': remove it"),
        (["VIT.NUM_HEADS", "5"], "VIT: ViTConfig.embed_dim=768 is not divisible by num_heads=5"),
        (["VIT.POS_EMBED", "rope"], "VIT: ViTConfig.pos_embed='rope' is not one of"),
        (["VIT.PEG_KERNEL", "big"], "VIT.PEG_KERNEL='big' has the wrong type (str); expected a list"),
        (["MODEL.ARCH", "resnet"],
         "MODEL.ARCH='resnet' is not a model family; use one of "
         "['ceit', 'coat', 'cvt', 'levit', 'mvit', 'pvt', 'shuffle', 'swin', 'vit']"),  # fmt: skip
    ],
)
def test_family_mistakes_are_one_line_at_load(tmp_path, opts, message):
    path = _yaml(tmp_path, "MODEL:\n  ARCH: vit\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, opts)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_vit_setting_in_an_mvit_config_is_refused():
    with pytest.raises(ConfigError, match=r"VIT.DEPTH=3 is a setting of the vit family, but MODEL.ARCH='mvit'"):
        load_config(Path(__file__).resolve().parents[2] / "configs" / "K400" / "MVITv2_S_16x4.yaml", ["VIT.DEPTH", "3"])


def test_every_family_offers_what_the_engine_and_tools_use():
    """forward -> logits, forward_features, no-weight-decay names, layer ids for layer decay (each parameter in
    [0, depth + 1]), a stage table, position tables; create_model / list_models cover every family."""
    assert set(FAMILIES) == {"mvit", "vit", "swin", "shuffle", "pvt", "levit", "coat", "ceit", "cvt"}
    assert set(list_models("pvt*")) == {"pvt_t_in1k", "pvtv2_b0_in1k", "pvtv2_b2_in1k", "pvtv2_b2_li_in1k"}
    assert set(list_models("vit*")) == {"vit_ti16_in1k", "vit_b16_in1k"}
    assert set(list_models("shuffle*")) == {"shuffle_t_in1k", "shuffle3d_t_32x2"}
    assert set(list_models("ceit*")) == {"ceit_t_in1k"}
    assert set(list_models("cvt*")) == {"cvt_13_in1k"}
    # small widths and 112-pixel clips: BatchNorm in training needs more than one token in stage 4
    small_shuffle = {"depths": (2, 2, 2, 2), "dims": (32, 64, 64, 128), "num_heads": (1, 2, 2, 4), "embed_dim": 32,
                     "window_size": (2, 7, 7), "input_size": (2, 112, 112)}  # fmt: skip
    small_swin = {"embed_dim": 32, "depths": (1, 1), "num_heads": (1, 2), "input_size": (2, 32, 32)}
    small_pvt = {"embed_dims": (16, 32), "depths": (1, 1), "num_heads": (1, 2), "sr_ratios": (2, 1),
                 "mlp_ratios": (4, 4), "dwconv_time_kernel": 3, "input_size": (2, 32, 32)}  # fmt: skip
    small_coat = {"embed_dims": (16, 24, 24, 24), "serial_depths": (1, 1, 1, 1), "parallel_depth": 1,
                  "mlp_ratios": (4, 4, 4, 4), "input_size": (2, 32, 32)}  # fmt: skip
    small_cvt = {"embed_dims": (16, 32, 48), "depths": (1, 1, 1), "num_heads": (1, 2, 3), "qkv_time_kernel": 3,
                 "input_size": (2, 32, 32)}  # fmt: skip
    for name in ("mvitv2_t_in1k", "vit_ti16_in1k", "cait_xxs24_in1k", "timesformer_b_8x32", "swin3d_t_32x2",
                 "shuffle3d_t_32x2", "pvtv2_b0_in1k", "pvt_t_in1k", "coat_lite_ti_in1k", "ceit_t_in1k",
                 "cvt_13_in1k"):  # fmt: skip
        sizes = {} if name.startswith("mvit") else {"depth": 2, "input_size": (2, 32, 32)}
        sizes = small_swin if name.startswith("swin") else small_shuffle if name.startswith("shuffle") else sizes
        sizes = small_pvt if name.startswith("pvt") else small_coat if name.startswith("coat") else sizes
        sizes = small_cvt if name.startswith("cvt") else sizes
        sizes = {**small_pvt, "dwconv_time_kernel": 1} if name.startswith("pvt_") else sizes  # PVT v1: no dwconv
        model = create_model(name, num_classes=3, **sizes)
        x = torch.zeros(1, 3, 2, 32, 32) if not name.startswith("mvit") else torch.zeros(1, 3, 32, 32)
        x = torch.zeros(1, 3, 2, 112, 112) if name.startswith("shuffle") else x
        assert model(x).shape == (1, 3) and model.forward_features(x).shape[-1] == model.num_features
        # PVTv2 has no position tables, cls tokens or bias tables: nothing is exempt from weight decay (as in timm)
        assert (model.no_weight_decay() or name.startswith("pvtv2")) and isinstance(model.position_tables(), dict)
        groups = param_groups(model, 0.05, layer_decay=0.5)
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
        assert stage_table(model) and count_params(model) > 0
    ceit = create_model("ceit_t_in1k", depth=2)
    assert [ceit.layer_id(n) for n in ("i2t.proj.weight", "blocks.1.leff.conv2.weight", "lca.attn.qkv.weight",
                                       "pos_layer_embed")] == [0, 2, 3, 3]  # fmt: skip
    vit = create_model("vit_ti16_in1k", depth=2)
    assert [vit.layer_id(n) for n in ("cls_token", "patch_embed.proj.weight", "blocks.1.mlp.fc1.weight", "head.weight")] == [0, 0, 2, 3]
    assert isinstance(create_model("mvitv2_t_in1k"), MViT)
    # LeViT: BatchNorm over the batch in its classifiers (two clips), attention biases for one grid (64 px)
    levit = create_model("levit_128s_in1k", num_classes=3, input_size=(2, 64, 64), embed_dim=(32, 48, 64), key_dim=8)
    x = torch.zeros(2, 3, 2, 64, 64)
    assert levit(x).shape == (2, 3) and levit.forward_features(x).shape[-1] == levit.num_features
    assert levit.no_weight_decay() and levit.position_tables() == {}
    groups = param_groups(levit, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(levit.parameters()))
    assert stage_table(levit) and count_params(levit) > 0
