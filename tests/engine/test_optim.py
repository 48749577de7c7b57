"""Parameter groups, optimizers and LR schedules: PySlowFast semantics, with expected values written by hand."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch

from mvit_video.config import get_cfg, load_config
from mvit_video.engine.optim import (
    LRSchedule,
    build_optimizer,
    create_optimizer,
    layer_id,
    lr_at_epoch,
    param_groups,
    set_lr,
)
from mvit_video.models import MViT
from tests.conftest import ROOT
from tests.models.test_mvit import tiny_v1, tiny_v2

K400_S = ROOT / "configs" / "K400" / "MVITv2_S_16x4.yaml"


def names_by_group(model: torch.nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {name_of[id(p)] for p in g["params"]} for g in groups}


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------------------------
# LR schedule
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k400_cfg():
    cfg = load_config(K400_S)
    s = cfg.SOLVER
    # the recipe these expectations are written for
    assert (s.BASE_LR, s.WARMUP_START_LR, s.COSINE_END_LR) == (1e-4, 1e-6, 1e-6)
    assert (s.WARMUP_EPOCHS, s.MAX_EPOCH, s.LR_POLICY, s.COSINE_AFTER_WARMUP) == (30.0, 200, "cosine", True)
    assert s.BASE_LR_SCALE_NUM_SHARDS and s.OPTIMIZING_METHOD == "adamw"
    return cfg


@pytest.mark.parametrize(
    "epoch,expected",
    [
        (0.0, 1e-6),  # warmup start
        (7.5, 1e-6 + 0.25 * 99e-6),  # a quarter of the linear warmup
        (15.0, (1e-6 + 1e-4) / 2),  # warmup midpoint
        (30.0, 1e-4),  # warmup end = cosine start (COSINE_AFTER_WARMUP)
        (72.5, 1e-6 + 99e-6 * 0.5 * (1 + math.cos(math.pi / 4))),  # a quarter into the cosine
        (115.0, (1e-4 + 1e-6) / 2),  # cosine midpoint: (115 - 30) / (200 - 30) = 1/2
        (200.0, 1e-6),  # end
    ],
)
def test_k400_mvitv2_s_schedule(k400_cfg, epoch, expected):
    schedule = LRSchedule.from_cfg(k400_cfg, num_shards=1)
    assert schedule(epoch) == pytest.approx(expected, rel=1e-12, abs=0)


def test_schedule_is_evaluated_per_iteration(k400_cfg):
    schedule = LRSchedule.from_cfg(k400_cfg, num_shards=1)
    iters = 100
    assert schedule.at(0, 1, iters) == pytest.approx(1e-6 + (1 / iters) * 99e-6 / 30, rel=1e-12)
    assert schedule.at(14, 50, iters) == pytest.approx(schedule(14.5), rel=1e-15)
    # strictly rising through warmup, falling after it
    lrs = [schedule.at(e, i, 4) for e in range(200) for i in range(4)]
    peak = 30 * 4
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(lrs[peak:]))


def test_shard_scaling_multiplies_base_start_and_end_lr(k400_cfg):
    schedule = LRSchedule.from_cfg(k400_cfg, num_shards=4)
    assert (schedule.base_lr, schedule.warmup_start_lr, schedule.cosine_end_lr) == pytest.approx((4e-4, 4e-6, 4e-6))
    assert schedule(0.0) == pytest.approx(4e-6, rel=1e-12)
    assert schedule(30.0) == pytest.approx(4e-4, rel=1e-12)
    assert schedule(115.0) == pytest.approx(4 * (1e-4 + 1e-6) / 2, rel=1e-12)

    unscaled = k400_cfg.clone()
    unscaled.defrost()
    unscaled.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    assert LRSchedule.from_cfg(unscaled, num_shards=4)(30.0) == pytest.approx(1e-4, rel=1e-12)
    with pytest.raises(ValueError, match="num_shards"):
        LRSchedule.from_cfg(k400_cfg, num_shards=0)


def test_cosine_from_zero_warms_up_to_the_cosine_value():
    kw = {"policy": "cosine", "base_lr": 1.0, "max_epoch": 100, "warmup_epochs": 10, "warmup_start_lr": 0.0}
    at_warmup_end = 0.5 * (1 + math.cos(math.pi * 10 / 100))  # cosine counted from epoch 0
    assert lr_at_epoch(10.0, **kw) == pytest.approx(at_warmup_end, rel=1e-12)
    assert lr_at_epoch(5.0, **kw) == pytest.approx(at_warmup_end / 2, rel=1e-12)
    assert lr_at_epoch(50.0, **kw) == pytest.approx(0.5, rel=1e-12)
    assert lr_at_epoch(100.0, **kw) == pytest.approx(0.0, abs=1e-15)


def test_steps_with_relative_lrs():
    # PySlowFast's SlowFast 8x8 R50 recipe: the last step coincides with MAX_EPOCH
    kw = {"policy": "steps_with_relative_lrs", "base_lr": 0.8, "max_epoch": 196, "steps": [0, 94, 154, 196],
          "lrs": [1, 0.1, 0.01, 0.001]}  # fmt: skip
    expected = {0.0: 0.8, 93.99: 0.8, 94.0: 0.08, 153.5: 0.08, 154.0: 0.008, 195.9: 0.008, 196.0: 0.0008}
    for epoch, lr in expected.items():
        assert lr_at_epoch(epoch, **kw) == pytest.approx(lr, rel=1e-12), epoch
    warm = {**kw, "warmup_epochs": 34.0, "warmup_start_lr": 0.01}
    assert lr_at_epoch(17.0, **warm) == pytest.approx(0.01 + 17 * (0.8 - 0.01) / 34, rel=1e-12)
    assert lr_at_epoch(34.0, **warm) == pytest.approx(0.8, rel=1e-12)
    # steps ending before MAX_EPOCH: the last step holds to the end
    short = {**kw, "steps": [0, 10], "lrs": [1, 0.1], "max_epoch": 30}
    assert [lr_at_epoch(e, **short) for e in (9.9, 10.0, 29.9, 30.0)] == pytest.approx([0.8, 0.08, 0.08, 0.08])


def test_constant_policy_with_warmup():
    kw = {"policy": "constant", "base_lr": 0.5, "max_epoch": 10, "warmup_epochs": 2.0, "warmup_start_lr": 0.1}
    assert [lr_at_epoch(e, **kw) for e in (0.0, 1.0, 2.0, 9.0)] == pytest.approx([0.1, 0.3, 0.5, 0.5])


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"policy": "linear"}, "unknown LR policy 'linear'.*cosine, steps_with_relative_lrs, constant"),
        ({"cosine_end_lr": 1e-4}, "cosine_end_lr < base_lr"),
        ({"warmup_epochs": 200.0}, "max_epoch"),
        ({"policy": "steps_with_relative_lrs", "steps": [0, 10], "lrs": [1.0]}, "SOLVER.STEPS"),
        ({"policy": "steps_with_relative_lrs", "steps": [10, 0], "lrs": [1.0, 0.1]}, "sorted"),
    ],
)
def test_invalid_schedules_fail_in_one_line(changes, match):
    kw = {"policy": "cosine", "base_lr": 1e-4, "max_epoch": 200, "warmup_epochs": 30.0, "cosine_end_lr": 1e-6,
          "cosine_after_warmup": True}  # fmt: skip
    kw.update(changes)
    with pytest.raises(ValueError, match=match) as err:
        LRSchedule(**kw)
    assert "\n" not in str(err.value)


def test_schedule_round_trips_through_json(k400_cfg):
    schedule = LRSchedule.from_cfg(k400_cfg, num_shards=2)
    restored = LRSchedule(**json.loads(json.dumps(dataclasses.asdict(schedule))))
    assert restored == schedule
    assert [restored(e) for e in (0.0, 12.3, 150.0)] == [schedule(e) for e in (0.0, 12.3, 150.0)]


# --------------------------------------------------------------------------------------------
# Parameter groups
# --------------------------------------------------------------------------------------------


def test_param_groups_v2_membership():
    model = MViT(tiny_v2())
    groups = param_groups(model, 0.05, zero_wd_1d=True, no_decay_names=model.no_weight_decay())
    by_name = names_by_group(model, groups)
    assert set(by_name) == {"decay", "no_decay"}
    decay, no_decay = by_name["decay"], by_name["no_decay"]
    assert {g["name"]: (g["weight_decay"], g["lr_scale"]) for g in groups} == {
        "decay": (0.05, 1.0), "no_decay": (0.0, 1.0)
    }  # fmt: skip
    assert {"cls_token", "patch_embed.proj.bias", "norm.weight", "norm.bias", "head.projection.bias"} <= no_decay
    for i in range(3):
        assert {f"blocks.{i}.attn.rel_pos_{a}" for a in "hwt"} <= no_decay
        assert {f"blocks.{i}.{n}" for n in ("norm1.weight", "norm1.bias", "norm2.weight", "attn.qkv.bias",
                                           "attn.norm_q.weight", "mlp.fc1.bias")} <= no_decay  # fmt: skip
        assert {f"blocks.{i}.{n}" for n in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight",
                                           "mlp.fc2.weight", "attn.pool_k.weight")} <= decay  # fmt: skip
    assert {"patch_embed.proj.weight", "head.projection.weight", "blocks.1.proj.weight"} <= decay
    # every trainable parameter exactly once
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    assert decay | no_decay == trainable_names(model) and not decay & no_decay
    # no decay on exactly: 1-D params and biases, plus the rel-pos tables and cls token
    expected_no_decay = {n for n, p in model.named_parameters() if p.ndim == 1 or n.endswith(".bias")}
    assert no_decay == expected_no_decay | model.no_weight_decay()


def test_param_groups_v1_position_embeddings():
    model = MViT(tiny_v1())
    by_name = names_by_group(model, param_groups(model, 0.05, no_decay_names=model.no_weight_decay()))
    assert {"pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "cls_token"} <= by_name["no_decay"]
    # without the names (MVIT.ZERO_DECAY_POS_CLS False) they decay: they are not 1-D
    by_name = names_by_group(model, param_groups(model, 0.05))
    assert {"pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "cls_token"} <= by_name["decay"]


def test_short_names_match_at_any_depth():
    model = MViT(tiny_v2())
    by_name = names_by_group(model, param_groups(model, 0.05, zero_wd_1d=False, no_decay_names={"rel_pos_h"}))
    assert by_name["no_decay"] == {f"blocks.{i}.attn.rel_pos_h" for i in range(3)}


def test_without_zero_wd_1d_everything_decays():
    model = MViT(tiny_v2())
    groups = param_groups(model, 1e-4, zero_wd_1d=False)
    assert [(g["name"], g["weight_decay"]) for g in groups] == [("decay", 1e-4)]
    assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out():
    model = MViT(tiny_v2())
    model.patch_embed.requires_grad_(False)
    model.blocks[0].requires_grad_(False)
    groups = param_groups(model, 0.05, no_decay_names=model.no_weight_decay())
    grouped = set().union(*names_by_group(model, groups).values())
    assert grouped == trainable_names(model)
    assert not any(n.startswith(("patch_embed.", "blocks.0.")) for n in grouped)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.05)


def test_layer_decay_scales():
    model = MViT(tiny_v2())  # N = 3 blocks
    decay, base_lr = 0.5, 1e-3
    groups = param_groups(model, 0.05, no_decay_names=model.no_weight_decay(), layer_decay=decay, base_lr=base_lr)
    scale_of = {n: g["lr_scale"] for g in groups for n in names_by_group(model, [g])[g["name"]]}
    assert set(scale_of) == trainable_names(model)
    expected = {
        "cls_token": decay**4, "patch_embed.proj.weight": decay**4, "patch_embed.proj.bias": decay**4,
        "blocks.0.attn.qkv.weight": decay**3, "blocks.0.attn.rel_pos_h": decay**3,
        "blocks.1.mlp.fc1.weight": decay**2, "blocks.2.norm2.bias": decay**1,
        "norm.weight": 1.0, "head.projection.weight": 1.0, "head.projection.bias": 1.0,
    }  # fmt: skip
    assert {n: scale_of[n] for n in expected} == expected
    for g in groups:
        assert g["lr"] == pytest.approx(base_lr * g["lr_scale"], rel=1e-15)
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 0.05)
    # the groups split by layer and by decay; decay/no-decay membership is unchanged by layer decay
    assert {g["name"] for g in groups} == {f"layer{i}_{k}" for i in range(5) for k in ("decay", "no_decay")}
    flat = param_groups(model, 0.05, no_decay_names=model.no_weight_decay())
    flat_no_decay = names_by_group(model, flat)["no_decay"]
    assert {n for n, s in scale_of.items() if n in flat_no_decay} == flat_no_decay
    assert len([p for g in groups for p in g["params"]]) == len(list(model.parameters()))


def test_layer_decay_one_is_off_and_out_of_range_fails():
    model = MViT(tiny_v2())
    assert [g["name"] for g in param_groups(model, 0.05, layer_decay=1.0)] == ["decay", "no_decay"]
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
            param_groups(model, 0.05, layer_decay=bad)


def test_layer_id_convention():
    assert [layer_id(n, 16) for n in ("cls_token", "mask_token", "pos_embed", "pos_embed_spatial",
                                      "patch_embed.proj.weight")] == [0] * 5  # fmt: skip
    assert layer_id("blocks.0.attn.qkv.weight", 16) == 1
    assert layer_id("blocks.15.mlp.fc2.bias", 16) == 16
    assert [layer_id(n, 16) for n in ("norm.weight", "head.projection.bias", "norm_stem.weight")] == [17] * 3


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


def test_build_optimizer_k400_adamw(k400_cfg):
    model = MViT(tiny_v2())
    optimizer = build_optimizer(model, k400_cfg)
    assert type(optimizer) is torch.optim.AdamW
    assert [(g["name"], g["weight_decay"], g["lr"], g["lr_scale"]) for g in optimizer.param_groups] == [
        ("decay", 0.05, 1e-4, 1.0), ("no_decay", 0.0, 1e-4, 1.0)
    ]  # fmt: skip
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-8
    # the recipe sets MVIT.ZERO_DECAY_POS_CLS False: rel-pos tables and the cls token decay (as in PySlowFast)
    by_name = names_by_group(model, optimizer.param_groups)
    assert "cls_token" in by_name["decay"] and "blocks.0.attn.rel_pos_h" in by_name["decay"]

    cfg = k400_cfg.clone()
    cfg.defrost()
    cfg.MVIT.ZERO_DECAY_POS_CLS = True
    cfg.SOLVER.BETAS = [0.9, 0.95]
    optimizer = build_optimizer(model, cfg)
    by_name = names_by_group(model, optimizer.param_groups)
    assert model.no_weight_decay() <= by_name["no_decay"]
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_build_optimizer_sgd_and_adam():
    model = MViT(tiny_v2())
    cfg = get_cfg()  # PySlowFast defaults: sgd, momentum 0.9, nesterov, dampening 0, wd 1e-4, no 1-D exemption
    optimizer = build_optimizer(model, cfg)
    assert type(optimizer) is torch.optim.SGD
    d = optimizer.defaults
    assert (d["lr"], d["momentum"], d["dampening"], d["nesterov"], d["weight_decay"]) == (0.1, 0.9, 0.0, True, 1e-4)
    # ZERO_DECAY_POS_CLS defaults to True, so only rel-pos tables and the cls token are exempt
    assert names_by_group(model, optimizer.param_groups)["no_decay"] == model.no_weight_decay()
    cfg.SOLVER.OPTIMIZING_METHOD = "adam"
    assert type(build_optimizer(model, cfg)) is torch.optim.Adam
    cfg.SOLVER.OPTIMIZING_METHOD = "mt_adamw"
    optimizer = build_optimizer(model, cfg)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["foreach"] is True


def test_build_optimizer_with_layer_decay_and_compiled_model():
    model = MViT(tiny_v2())
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD, cfg.SOLVER.LAYER_DECAY, cfg.SOLVER.BASE_LR = "adamw", 0.75, 2e-3
    optimizer = build_optimizer(torch.compile(model), cfg)  # compiling is lazy: nothing runs here
    scales = {g["name"]: g["lr_scale"] for g in optimizer.param_groups}
    assert scales["layer0_decay"] == pytest.approx(0.75**4) and scales["layer4_decay"] == 1.0
    assert {g["lr"] for g in optimizer.param_groups} == {2e-3 * g["lr_scale"] for g in optimizer.param_groups}
    by_name = names_by_group(model, optimizer.param_groups)
    assert set().union(*by_name.values()) == trainable_names(model)


def test_unknown_optimizer_fails_in_one_line():
    model = MViT(tiny_v2())
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "lamb"
    with pytest.raises(ValueError) as err:
        build_optimizer(model, cfg)
    message = str(err.value)
    assert "SOLVER.OPTIMIZING_METHOD 'lamb'" in message and "sgd, adam, adamw, mt_adamw" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="choose one of: sgd, adam, adamw, mt_adamw"):
        create_optimizer(param_groups(model, 0.0), "rmsprop", lr=0.1, weight_decay=0.0)


def test_set_lr_applies_lr_scale_in_a_real_step():
    """AdamW with zero gradients only applies decoupled decay: p *= 1 - lr * lr_scale * wd, per group."""
    model = MViT(tiny_v2())
    wd, lr, decay = 0.1, 0.5, 0.5
    groups = param_groups(model, wd, no_decay_names=model.no_weight_decay(), layer_decay=decay)
    optimizer = create_optimizer(groups, "adamw", lr=1.0, weight_decay=wd)
    set_lr(optimizer, lr)
    assert all(g["lr"] == lr * g["lr_scale"] for g in optimizer.param_groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    name_of = {id(p): n for n, p in model.named_parameters()}
    for g in optimizer.param_groups:
        factor = 1 - g["lr"] * g["weight_decay"]
        for p in g["params"]:
            torch.testing.assert_close(p.detach(), before[name_of[id(p)]] * factor, rtol=1e-6, atol=0)
    assert {g["name"]: 1 - g["lr"] * g["weight_decay"] for g in optimizer.param_groups}["layer1_decay"] == (
        1 - lr * decay**3 * wd
    )


def test_lr_scale_survives_an_optimizer_state_round_trip():
    model = MViT(tiny_v2())
    groups = param_groups(model, 0.05, layer_decay=0.5)
    saved = create_optimizer(groups, "adamw", lr=1.0, weight_decay=0.05).state_dict()
    fresh = create_optimizer(param_groups(model, 0.05, layer_decay=0.5), "adamw", lr=1.0, weight_decay=0.05)
    fresh.load_state_dict(saved)
    set_lr(fresh, 0.1)
    assert [g["lr"] for g in fresh.param_groups] == [0.1 * g["lr_scale"] for g in groups]


def test_backbone_lr_mult_keeps_the_classifier_at_the_base_lr():
    """Video Swin's recipe: backbone at 0.1 x the lr, the classifier at the lr; with layer decay the two multiply."""
    model = MViT(tiny_v2())
    head = {"head.projection.weight", "head.projection.bias"}
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD, cfg.SOLVER.BASE_LR, cfg.SOLVER.BACKBONE_LR_MULT = "adamw", 1e-3, 0.1
    optimizer = build_optimizer(model, cfg)
    lr_of = {n: g["lr"] for g in optimizer.param_groups for n in names_by_group(model, [g])[g["name"]]}
    assert set(lr_of) == trainable_names(model)
    assert {n for n, lr in lr_of.items() if lr == pytest.approx(1e-3)} == head
    assert all(lr == pytest.approx(1e-4) for n, lr in lr_of.items() if n not in head)
    cfg.SOLVER.LAYER_DECAY = 0.5  # tiny_v2 has 3 blocks: the patch embedding is layer 0, scale 0.5 ** 4
    scales = {n: g["lr_scale"] for g in build_optimizer(model, cfg).param_groups for n in
              names_by_group(model, [g])[g["name"]]}  # fmt: skip
    assert scales["head.projection.weight"] == 1.0
    assert scales["patch_embed.proj.weight"] == pytest.approx(0.1 * 0.5**4)
    assert scales["blocks.2.attn.qkv.weight"] == pytest.approx(0.1 * 0.5)


def test_backbone_lr_mult_out_of_range_is_one_line():
    with pytest.raises(Exception) as err:
        load_config(K400_S, ["SOLVER.BACKBONE_LR_MULT", "10"])
    assert "SOLVER.BACKBONE_LR_MULT" in str(err.value) and "(0, 1]" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs head_names"):
        param_groups(MViT(tiny_v2()), 0.0, backbone_lr_mult=0.5)
