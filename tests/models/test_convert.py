"""Checkpoint conversion: format detection, key maps onto PySlowFast names, and logit equivalence after loading."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import pytest
import torch
from torch import nn

from mvit_video.models.convert import (
    convert_to_slowfast,
    detect_format,
    official_mvit_to_slowfast,
    pytorchvideo_to_slowfast,
    timm_to_slowfast,
    torchvision_to_slowfast,
    unwrap_checkpoint,
)
from tests.conftest import load_reference, rel_l2

def ref_keys(case: str) -> dict[str, tuple[int, ...]]:
    """PySlowFast's ``{name: shape}`` for one reference architecture; skips when ../shared is absent."""
    return {name: tuple(shape) for name, shape in load_reference(f"slowfast_{case}")["keys"]}


def shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in state_dict.items()}


def assert_same_layout(converted: Mapping[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    got = shapes(converted)
    missing = sorted(set(expected.items()) - set(got.items()))
    extra = sorted(set(got.items()) - set(expected.items()))
    assert not missing and not extra, f"missing (name, shape): {missing[:10]}\nunexpected (name, shape): {extra[:10]}"


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every floating tensor with seeded noise (norm scales near 1), so no zero/one init hides a mapping bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g, dtype=torch.float64)
            t.copy_(1.0 + 0.1 * noise if t.ndim == 1 and name.endswith("weight") else 0.05 * noise)
    return module


# ---------------------------------------------------------------- model builders (random weights, no download)


def torchvision_mvit(name: str) -> nn.Module:
    video = pytest.importorskip("torchvision.models.video")
    return getattr(video, name)(weights=None)


def timm_mvit(name: str) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


def pytorchvideo_mvit_b_16x4(spatial_size: int = 224, temporal_size: int = 16) -> nn.Module:
    """pytorchvideo's MViT-B 16x4 as its hub ``mvit_base_16x4`` configures it (optionally for another input size)."""
    vt = pytest.importorskip("pytorchvideo.models.vision_transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside pytorchvideo
        return vt.create_multiscale_vision_transformers(
            spatial_size=spatial_size,
            temporal_size=temporal_size,
            depth=16,
            embed_dim_mul=[[1, 2.0], [3, 2.0], [14, 2.0]],
            atten_head_mul=[[1, 2.0], [3, 2.0], [14, 2.0]],
            pool_q_stride_size=[[1, 1, 2, 2], [3, 1, 2, 2], [14, 1, 2, 2]],
            pool_kv_stride_adaptive=[1, 8, 8],
            pool_kvq_kernel=[3, 3, 3],
            head_num_classes=400,
        )


def official_mvit_state_dict(case: str) -> dict[str, torch.Tensor]:
    """A facebookresearch/mvit image checkpoint: PySlowFast names with Conv2d pooling kernels (C, 1, k, k)."""
    out = {}
    for name, shape in ref_keys(case).items():
        if ".attn.pool_" in name:
            shape = shape[:2] + shape[3:]
        out[name] = torch.randn(shape)
    return out


# ---------------------------------------------------------------- unwrap + detect


def test_unwrap_checkpoint_handles_wrappers_and_ddp_prefix():
    sd = {"module.blocks.0.norm1.weight": torch.ones(2), "module.norm.bias": torch.zeros(2)}
    plain = {"blocks.0.norm1.weight": sd["module.blocks.0.norm1.weight"], "norm.bias": sd["module.norm.bias"]}
    for wrapper in ("model_state", "state_dict", "model"):
        state_dict, meta = unwrap_checkpoint({wrapper: sd, "epoch": 7})
        assert state_dict == plain
        assert meta == {"epoch": 7}
    state_dict, meta = unwrap_checkpoint(plain)
    assert state_dict == plain and state_dict is not plain and meta == {}


def test_unwrap_checkpoint_rejects_non_state_dicts():
    with pytest.raises(ValueError, match="no state dict"):
        unwrap_checkpoint({"epoch": 3, "optimizer": {}})
    with pytest.raises(TypeError, match="mapping"):
        unwrap_checkpoint([torch.ones(1)])


@pytest.mark.parametrize("name", ["mvit_v2_s", "mvit_v1_b"])
def test_detect_torchvision(name):
    assert detect_format(torchvision_mvit(name).state_dict()) == "torchvision"


@pytest.mark.parametrize("name", ["mvitv2_tiny", "mvitv2_small_cls"])
def test_detect_timm(name):
    assert detect_format({"state_dict": timm_mvit(name).state_dict()}) == "timm"


def test_detect_pytorchvideo():
    assert detect_format(pytorchvideo_mvit_b_16x4().state_dict()) == "pytorchvideo"


@pytest.mark.parametrize("case", ["k400_mvitv2_s_16x4", "k400_mvitv1_b_16x4", "in1k_mvitv2_t"])
def test_detect_slowfast_and_own_checkpoints(case):
    sd = {name: torch.zeros(shape) for name, shape in ref_keys(case).items()}
    assert detect_format({"model_state": sd, "epoch": 10}) == "slowfast"
    assert detect_format({f"module.{k}": v for k, v in sd.items()}) == "slowfast"
    assert detect_format({"model_state": sd, "mvit_video_version": "0.1.0"}) == "mvit_video"


def test_detect_official_mvit():
    assert detect_format({"model_state": official_mvit_state_dict("in1k_mvitv2_t")}) == "official_mvit"


def test_detect_unknown_format_names_keys():
    sd = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}
    with pytest.raises(ValueError, match=r"unrecognised checkpoint format.*conv1\.weight"):
        detect_format(sd)


# ---------------------------------------------------------------- key maps: names and shapes vs PySlowFast


@pytest.mark.parametrize(("name", "case"), [("mvit_v2_s", "k400_mvitv2_s_16x4"), ("mvit_v1_b", "k400_mvitv1_b_16x4")])
def test_torchvision_keys_match_slowfast(name, case):
    assert_same_layout(torchvision_to_slowfast(torchvision_mvit(name).state_dict()), ref_keys(case))


@pytest.mark.parametrize(("name", "case"), [("mvitv2_tiny", "in1k_mvitv2_t"), ("mvitv2_small", "in1k_mvitv2_s")])
def test_timm_keys_match_slowfast(name, case):
    assert_same_layout(timm_to_slowfast(timm_mvit(name).state_dict()), ref_keys(case))


def test_pytorchvideo_keys_match_slowfast():
    assert_same_layout(
        pytorchvideo_to_slowfast(pytorchvideo_mvit_b_16x4().state_dict()), ref_keys("k400_mvitv1_b_16x4")
    )


@pytest.mark.parametrize("case", ["in1k_mvitv2_t", "in1k_mvitv2_s"])
def test_official_mvit_keys_match_slowfast(case):
    assert_same_layout(official_mvit_to_slowfast(official_mvit_state_dict(case)), ref_keys(case))


def test_convert_to_slowfast_detects_and_dispatches():
    case = "k400_mvitv2_s_16x4"
    converted, source = convert_to_slowfast({"model": torchvision_mvit("mvit_v2_s").state_dict(), "epoch": 1})
    assert source == "torchvision"
    assert_same_layout(converted, ref_keys(case))
    own = {"model_state": converted, "mvit_video_version": "0.1.0"}
    again, source = convert_to_slowfast(own)
    assert source == "mvit_video" and again.keys() == converted.keys()


# ---------------------------------------------------------------- key maps: values


def test_torchvision_values_are_the_original_tensors():
    src = randomize_(torchvision_mvit("mvit_v1_b")).state_dict()
    out = torchvision_to_slowfast(src)
    for ours, theirs in [
        ("blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.weight"),
        ("blocks.1.attn.proj.weight", "blocks.1.attn.project.0.weight"),
        ("blocks.1.attn.pool_q.weight", "blocks.1.attn.pool_q.pool.weight"),
        ("blocks.1.attn.norm_q.bias", "blocks.1.attn.pool_q.norm_act.0.bias"),
        ("blocks.2.mlp.fc2.weight", "blocks.2.mlp.3.weight"),
        ("blocks.2.proj.weight", "blocks.2.project.weight"),
        ("head.projection.weight", "head.1.weight"),
        ("patch_embed.proj.weight", "conv_proj.weight"),
    ]:
        assert out[ours] is src[theirs], ours
    assert torch.equal(out["cls_token"].flatten(), src["pos_encoding.class_token"])
    assert torch.equal(out["pos_embed_class"].flatten(), src["pos_encoding.class_pos"])
    assert torch.equal(out["pos_embed_spatial"][0], src["pos_encoding.spatial_pos"])
    assert torch.equal(out["pos_embed_temporal"][0], src["pos_encoding.temporal_pos"])


def test_timm_values_flatten_stages_and_unsqueeze_pooling():
    src = randomize_(timm_mvit("mvitv2_tiny")).state_dict()  # depths (1, 2, 5, 2)
    out = timm_to_slowfast(src)
    assert out["blocks.3.attn.qkv.weight"] is src["stages.2.blocks.0.attn.qkv.weight"]
    assert out["blocks.9.mlp.fc2.bias"] is src["stages.3.blocks.1.mlp.fc2.bias"]
    assert out["blocks.1.proj.weight"] is src["stages.1.blocks.0.shortcut_proj_attn.weight"]
    assert out["head.projection.weight"] is src["head.fc.weight"]
    assert torch.equal(out["blocks.4.attn.pool_k.weight"][:, :, 0], src["stages.2.blocks.1.attn.pool_k.weight"])


def test_pytorchvideo_values_concatenate_qkv():
    src = pytorchvideo_mvit_b_16x4().state_dict()
    out = pytorchvideo_to_slowfast(src)
    for part in ("weight", "bias"):
        expected = torch.cat([src[f"blocks.5.attn.{x}.{part}"] for x in "qkv"])
        assert torch.equal(out[f"blocks.5.attn.qkv.{part}"], expected)
    assert out["pos_embed_spatial"] is src["cls_positional_encoding.pos_embed_spatial"]
    assert out["norm.weight"] is src["norm_embed.weight"]
    assert out["head.projection.bias"] is src["head.proj.bias"]
    kept = pytorchvideo_to_slowfast(src, pool_first=True)
    assert kept["blocks.5.attn.q.weight"] is src["blocks.5.attn.q.weight"] and "blocks.5.attn.qkv.weight" not in kept


def test_official_mvit_values_are_unsqueezed():
    src = official_mvit_state_dict("in1k_mvitv2_t")
    out = official_mvit_to_slowfast(src)
    assert torch.equal(out["blocks.2.attn.pool_v.weight"].squeeze(2), src["blocks.2.attn.pool_v.weight"])
    assert out["blocks.2.attn.qkv.weight"] is src["blocks.2.attn.qkv.weight"]


@pytest.mark.parametrize(
    ("convert", "state_dict"),
    [
        (torchvision_to_slowfast, {"conv_proj.weight": torch.zeros(1), "blocks.0.attn.extra": torch.zeros(1)}),
        (timm_to_slowfast, {"stages.0.blocks.0.attn.extra": torch.zeros(1)}),
        (pytorchvideo_to_slowfast, {"blocks.0.attn.extra.weight": torch.zeros(1)}),
        (official_mvit_to_slowfast, {"blocks.0.attn.extra": torch.zeros(1)}),
    ],
)
def test_unmappable_keys_are_listed(convert, state_dict):
    with pytest.raises(ValueError, match=r"could not map 1 .*blocks\.0\.attn\.extra"):
        convert(state_dict)


def test_pytorchvideo_incomplete_qkv_is_an_error():
    with pytest.raises(ValueError, match="blocks.0.attn.qkv.weight"):
        pytorchvideo_to_slowfast(
            {"blocks.0.attn.q.weight": torch.zeros(2, 2), "blocks.0.attn.k.weight": torch.zeros(2, 2)}
        )


# ---------------------------------------------------------------- logit equivalence with our model


def assert_same_logits(ours: nn.Module, theirs: nn.Module, converted: dict, x: torch.Tensor) -> float:
    ours.double().eval().load_state_dict(converted, strict=True)
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert got.shape == expected.shape
    err = rel_l2(got, expected)
    print(f"relative L2 error: {err:.3e}")
    assert err < 1e-6, f"relative L2 error {err:.3e}"
    return err


@pytest.mark.parametrize(("name", "variant"), [("mvit_v2_s", "mvitv2_s_16x4"), ("mvit_v1_b", "mvitv1_b_16x4")])
def test_torchvision_logits_match_ours(name, variant):
    from mvit_video.models import create_model

    theirs = randomize_(torchvision_mvit(name), seed=1).double().eval()
    x = torch.randn(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    converted = torchvision_to_slowfast(theirs.state_dict())
    assert_same_logits(create_model(variant, num_classes=400), theirs, converted, x)


def test_timm_tiny_logits_match_ours():
    from mvit_video.models import create_model

    theirs = randomize_(timm_mvit("mvitv2_tiny"), seed=3).double().eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    converted = timm_to_slowfast(theirs.state_dict())
    assert_same_logits(create_model("mvitv2_t_in1k", num_classes=1000), theirs, converted, x)


def test_pytorchvideo_logits_match_ours():
    """pytorchvideo's own outputs, through load_pretrained, on a smaller clip (8x112x112) to stay fast.

    pytorchvideo builds the pooling norms (norm_q/k/v) with LayerNorm's default eps=1e-5 where PySlowFast uses 1e-6;
    load_pretrained sets that epsilon when the weights come from pytorchvideo, so the outputs match it exactly.
    """
    from mvit_video.models import create_model, load_pretrained

    theirs = randomize_(pytorchvideo_mvit_b_16x4(spatial_size=112, temporal_size=8), seed=5).double().eval()
    x = torch.randn(1, 3, 8, 112, 112, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ours = create_model("mvitv1_b_16x4", num_classes=400, input_size=(8, 112, 112)).double().eval()
    report = load_pretrained(ours, theirs.state_dict())
    assert report.source_format == "pytorchvideo" and report.missing == [] and report.unexpected == []
    assert report.model_changes == ["pooling LayerNorm eps 1e-06 -> 1e-05, as pytorchvideo computes"]
    assert "model changed: pooling LayerNorm eps 1e-06 -> 1e-05" in report.summary()
    assert ours.cfg.pool_norm_eps == 1e-5 and ours.blocks[3].attn.norm_k.eps == 1e-5
    with torch.no_grad():
        err = rel_l2(ours(x), theirs(x))
    assert err < 1e-6, f"relative L2 error {err:.3e}"


@pytest.mark.parametrize("mode", ["avg", "max", "conv"])
def test_pooling_modes_match_pytorchvideo(mode):
    """Q/K/V pooled by average, max (no pooling norm) or convolution: a small MViTv1 equals pytorchvideo's model with
    the same pooling mode and the same (random) weights."""
    from mvit_video.models import MViT, load_pretrained
    from tests.models.test_mvit import tiny_v1

    vt = pytest.importorskip("pytorchvideo.models.vision_transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        theirs = vt.create_multiscale_vision_transformers(
            spatial_size=32, temporal_size=8, depth=3, patch_embed_dim=16, embed_dim_mul=[[1, 2.0]],
            atten_head_mul=[[1, 2.0]], pool_q_stride_size=[[1, 1, 2, 2]], pool_kv_stride_adaptive=[1, 4, 4],
            pool_kvq_kernel=[3, 3, 3], pooling_mode=mode, head_num_classes=5,
        )  # fmt: skip
    theirs = randomize_(theirs, seed=11).double().eval()
    ours = MViT(tiny_v1(input_size=(8, 32, 32), pool_mode=mode)).double().eval()
    report = load_pretrained(ours, theirs.state_dict())
    assert report.missing == [] and report.unexpected == []
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    with torch.no_grad():
        err = rel_l2(ours(x), theirs(x))
    assert err < 1e-10, f"relative L2 error {err:.3e}"
