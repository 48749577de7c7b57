"""The CoaT family against timm (``coat_lite_tiny``, ``coat_tiny``) through load_pretrained, in float64 with every
tensor randomised (shared modules included), reduced sizes by default and the published sizes under ``slow``. Also:
shared modules counted once and their timm aliases mapped (listed once or under every user), image weights in a
video model (T = 1, centre vs average inflation, where static clips cannot equal the image), and what the engine
and tools use."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine.optim import param_groups
from mvit_video.models import CheckpointError, CoaT, CoaTConfig, build_model, create_model, load_pretrained
from mvit_video.models.formats.coat import canonical_coat_key, detect_coat_format
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2
from tests.models.equivalence import input64
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")

LITE_SMALL = {"embed_dims": (16, 32, 48, 64), "serial_depths": (1, 2, 1, 1)}
COAT_SMALL = {"embed_dims": (16, 24, 24, 24), "serial_depths": (1, 1, 1, 1), "parallel_depth": 2}
# a video stem that takes two frames to one (kernel 3, stride 2, padding 1), CPE / CRPE of time kernel 3
TO_ONE_FRAME = {"patch_time_kernel": (3, 1, 1, 1), "patch_time_stride": (2, 1, 1, 1), "cpe_time_kernel": 3,
                "crpe_time_kernel": 3}  # fmt: skip


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _timm(name: str, seed: int = 1, **kw) -> nn.Module:
    return randomize_(timm.create_model(name, pretrained=False, **kw), seed)


def _load(ours: nn.Module, state: dict, **kw) -> nn.Module:
    report = load_pretrained(ours, state, **kw)
    assert report.source_format == "coat" and report.missing == [] and report.unexpected == [], report.summary()
    return ours


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.double().eval()(x)



def _small(name: str, small: dict, size: int = 64, seed: int | None = None, **kw) -> nn.Module:
    model = create_model(name, input_size=kw.pop("input_size", (1, size, size)), **small, **kw)
    return randomize_(model, seed) if seed is not None else model


# ------------------------------------------------------------------------------------------------------ timm


@pytest.mark.parametrize(
    "ours,theirs,small",
    [("coat_lite_ti_in1k", "coat_lite_tiny", LITE_SMALL), ("coat_ti_in1k", "coat_tiny", COAT_SMALL)],
)
def test_reduced_coat_equals_timm(ours, theirs, small):
    """Grids 16, 8, 4, 2 at 64 px; CoaT: two parallel blocks resampling between all three scales."""
    ref = _timm(theirs, img_size=64, **{k: list(v) if isinstance(v, tuple) else v for k, v in small.items()})
    model = _load(_small(ours, small), ref.state_dict())
    assert _params(model) == _params(ref)
    x = input64(2, 3, 64, 64)
    assert rel_l2(_logits(model, x), _logits(ref, x)) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs", [("coat_lite_ti_in1k", "coat_lite_tiny"), ("coat_ti_in1k", "coat_tiny")])
def test_published_coat_equals_timm(ours, theirs):
    ref = _timm(theirs)
    model = _load(create_model(ours), ref.state_dict())
    x = input64(2, 3, 224, 224)
    assert rel_l2(_logits(model, x), _logits(ref, x)) < 1e-10


@pytest.mark.parametrize(
    "ours,theirs,count",
    [("coat_lite_ti_in1k", "coat_lite_tiny", 5_721_960), ("coat_ti_in1k", "coat_tiny", 5_498_540),
     ("coat_lite_mi_in1k", "coat_lite_mini", None), ("coat_lite_s_in1k", "coat_lite_small", None)],
)  # fmt: skip
def test_published_parameter_counts_equal_timm(ours, theirs, count):
    """Shared modules once: 5.72M (Lite-Ti) and 5.50M (CoaT-Ti); timm's state dict holds 7.86M numbers for the
    latter (its aliases), ours exactly the parameters."""
    with torch.device("meta"):
        model, ref = create_model(ours), timm.create_model(theirs, pretrained=False)
    assert _params(model) == _params(ref) and (count is None or _params(model) == count)
    assert sum(t.numel() for t in model.state_dict().values()) == _params(model)
    if theirs == "coat_tiny":
        assert round(sum(t.numel() for t in ref.state_dict().values()) / 1e6, 2) == 7.86


# --------------------------------------------------------------------------------------------- shared modules


def _timm_small_coat() -> nn.Module:
    return _timm("coat_tiny", img_size=64, embed_dims=[16, 24, 24, 24], serial_depths=[1, 1, 1, 1], parallel_depth=2)


def test_shared_modules_load_from_any_one_alias():
    """timm's state dict with each shared tensor under every user, under its first name only, or under one of the
    aliases only (as a de-duplicating save keeps): the same model."""
    ref = _timm_small_coat()
    full = ref.state_dict()
    assert (
        "serial_blocks2.0.cpe.proj.weight" in full and "parallel_blocks.1.factoratt_crpe4.crpe.conv_list.2.bias" in full
    )
    canonical_only = {k: v for k, v in full.items() if canonical_coat_key(k) == k}
    last_alias = {}
    for key, value in full.items():  # the last key of each tensor wins
        last_alias = {k: v for k, v in last_alias.items() if canonical_coat_key(k) != canonical_coat_key(key)}
        last_alias[key] = value
    assert len(canonical_only) == len(last_alias) < len(full) and canonical_only.keys() != last_alias.keys()
    x = input64(1, 3, 64, 64)
    expected = _logits(ref, x)
    for state in (full, canonical_only, last_alias):
        model = _load(_small("coat_ti_in1k", COAT_SMALL), state)
        assert rel_l2(_logits(model, x), expected) < 1e-10


def test_shared_module_blocks_use_one_tensor():
    """One CPE / CRPE per stage and one MLP per parallel block: changing it changes every user."""
    model = _small("coat_ti_in1k", COAT_SMALL, seed=2).double().eval()
    names = [n for n, _ in model.named_parameters()]
    assert not any(".cpe." in n or ".crpe." in n or ".mlp3." in n or ".mlp4." in n for n in names)
    x = input64(1, 3, 64, 64)
    before = _logits(model, x)
    with torch.no_grad():
        model.crpe4.conv_list[2].weight.add_(0.5)
    assert rel_l2(_logits(model, x), before) > 1e-4


def test_disagreeing_copies_of_a_shared_module_are_refused():
    state = dict(_timm_small_coat().state_dict())
    state["serial_blocks1.0.cpe.proj.bias"] = state["serial_blocks1.0.cpe.proj.bias"] + 1
    with pytest.raises(CheckpointError, match="are one shared module in CoaT but hold different values") as info:
        load_pretrained(_small("coat_ti_in1k", COAT_SMALL), state)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- image -> video


def test_image_input_is_a_one_frame_clip():
    model = _small("coat_ti_in1k", COAT_SMALL, seed=3)
    x = input64(2, 3, 64, 64)
    torch.testing.assert_close(_logits(model, x), _logits(model, x.unsqueeze(2)), rtol=0, atol=0)


def _inflated(inflate: str, **video: object) -> tuple[nn.Module, nn.Module, list[str]]:
    image = _small("coat_ti_in1k", COAT_SMALL, seed=7)
    model = _small("coat_ti_in1k", COAT_SMALL, input_size=(2, 64, 64), **video)
    report = load_pretrained(model, image.state_dict(), inflate=inflate)
    assert report.missing == [] and report.unexpected == []
    return image, model, report.adapted


def test_centre_inflation_keeps_static_clips_equal_to_the_image_model_when_stages_have_one_frame():
    """Patch kernel 3 / stride 2 over a 2-frame clip (T' = 1), CPE and CRPE kernels 3 in time: on the centre tap
    a static clip gives the image's logits."""
    image, video, adapted = _inflated("centre", **TO_ONE_FRAME)
    assert "patch_embed1.proj.weight: [16, 3, 1, 4, 4] -> [16, 3, 3, 4, 4]" in adapted
    assert "crpe3.conv_list.2.weight: [9, 1, 1, 7, 7] -> [9, 1, 3, 7, 7]" in adapted
    assert video.stage_specs()[0][3] == (1, 16, 16)
    x = input64(2, 3, 64, 64)
    assert rel_l2(_logits(video, x.unsqueeze(2).expand(-1, -1, 2, -1, -1)), _logits(image, x)) < 1e-12


def test_average_inflation_changes_static_clips():
    """w / 3 per tap: the zero-padded taps (patch embedding, CPE and CRPE on one frame) lose a third."""
    image, video, _ = _inflated("average", **TO_ONE_FRAME)
    x = input64(2, 3, 64, 64)
    assert rel_l2(_logits(video, x.unsqueeze(2).expand(-1, -1, 2, -1, -1)), _logits(image, x)) > 1e-3


def test_static_clips_of_several_frames_differ_from_the_image_whatever_the_inflation():
    """With T' = 2 every patch token is twice in the key softmax but the class token once (its share of
    softmax_N(k)^T v shrinks): not the image's logits even on the centre tap (documented in models/coat.py)."""
    image, video, _ = _inflated("centre", cpe_time_kernel=3, crpe_time_kernel=3)
    assert video.stage_specs()[0][3] == (2, 16, 16)
    x = input64(2, 3, 64, 64)
    assert rel_l2(_logits(video, x.unsqueeze(2).expand(-1, -1, 2, -1, -1)), _logits(image, x)) > 1e-6


def test_co_scale_resampling_across_time_strides():
    """Stage 2 halves time (4 -> 2 frames): the parallel blocks resample 4x16x16 / 2x8x8 / 2x4x4 grids into each
    other (trilinear); grids that do not halve exactly (88 px: 22, 11, 5, 2) are resampled to the exact size."""
    model = _small("coat_ti_in1k", COAT_SMALL, input_size=(4, 64, 64), patch_time_kernel=(1, 2, 1, 1),
                   patch_time_stride=(1, 2, 1, 1), seed=5).eval()  # fmt: skip
    assert [s[3] for s in model.stage_specs()] == [(4, 16, 16), (2, 8, 8), (2, 4, 4), (2, 2, 2), (2, 8, 8)]
    assert model(input64(1, 3, 4, 64, 64).float()).shape == (1, 1000)
    assert [s[3] for s in model.stage_specs((4, 88, 88))][:4] == [(4, 22, 22), (2, 11, 11), (2, 5, 5), (2, 2, 2)]
    assert model(torch.zeros(1, 3, 4, 88, 88)).shape == (1, 1000)


# ------------------------------------------------------------------------------- what the engine and tools use


def test_activation_checkpointing_gives_the_same_gradients():
    x = input64(2, 3, 2, 32, 32).float()
    grads = []
    for ckpt in (False, True):
        model = _small("coat_ti_in1k", COAT_SMALL, input_size=(2, 32, 32), act_checkpoint=ckpt, seed=6).train()
        model(x).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_engine_interfaces():
    """Logits and features, timm's no-weight-decay names, layer ids in timm's group order, the stage table."""
    model = _small("coat_ti_in1k", COAT_SMALL, num_classes=5)
    x = torch.zeros(2, 3, 1, 64, 64)
    assert model(x).shape == (2, 5) and model.forward_features(x).shape == (2, model.num_features) == (2, 24)
    assert model.no_weight_decay() == {"cls_token1", "cls_token2", "cls_token3", "cls_token4"}
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["patch_embed1.proj.weight"] == ids["cls_token1"] == ids["crpe1.conv_list.0.weight"] == 0
    assert ids["serial_blocks1.0.mlp.fc1.weight"] == 1 and ids["cpe2.proj.weight"] == ids["cls_token2"] == 2
    assert ids["serial_blocks4.0.norm1.weight"] == 7 and ids["parallel_blocks.0.mlp2.fc1.weight"] == 8
    assert ids["parallel_blocks.1.norm24.bias"] == 9 == model.num_layers
    assert ids["norm2.weight"] == ids["aggregate.weight"] == ids["head.weight"] == 10
    groups = param_groups(model, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr_scale"] for g in groups} == {0.5**k for k in range(11)}
    with torch.device("meta"):
        table = stage_table(create_model("coat_lite_ti_in1k"))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 1), 64, 8, (1, 56, 56)),
        ((2, 3), 128, 8, (1, 28, 28)),
        ((4, 5), 256, 8, (1, 14, 14)),
        ((6, 7), 320, 8, (1, 7, 7)),
    ]


def test_a_coat_config_builds_the_configured_model():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "coat", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "2",
                         "DATA.TRAIN_CROP_SIZE", "64", "COAT.EMBED_DIMS", [16, 24, 24, 24],
                         "COAT.SERIAL_DEPTHS", [1, 1, 1, 1], "COAT.PARALLEL_DEPTH", "2", "COAT.MLP_RATIOS", [4, 4, 4, 4],
                         "COAT.PATCH_TIME_KERNEL", [3, 1, 1, 1], "COAT.PATCH_TIME_STRIDE", [2, 1, 1, 1],
                         "COAT.CPE_TIME_KERNEL", "3", "COAT.CRPE_TIME_KERNEL", "3"])  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, CoaT)
    expected = create_model("coat_ti_in1k", num_classes=7, head_dropout=0.5, input_size=(2, 64, 64), **COAT_SMALL,
                            **TO_ONE_FRAME).cfg  # fmt: skip
    assert model.cfg == expected
    assert model.eval()(torch.zeros(1, 3, 2, 64, 64)).shape == (1, 7)


def test_formats_are_detected_and_unknown_ones_are_one_line():
    assert detect_coat_format(_small("coat_lite_ti_in1k", LITE_SMALL).state_dict()) == "coat"
    with pytest.raises(CheckpointError) as info:
        load_pretrained(_small("coat_lite_ti_in1k", LITE_SMALL), {"blocks.0.norm1.weight": torch.zeros(3)})
    assert "not a CoaT checkpoint of a known layout" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"serial_depths": (2, 2, 2)}, r"needs one entry per stage \(4\)"),
        ({"num_heads": 5}, "must be divisible by num_heads=5"),
        ({"crpe_head_splits": (2, 3, 2)}, "must sum to num_heads=8"),
        ({"cpe_time_kernel": 2}, "must be odd and positive"),
        ({"parallel_depth": 1}, r"parallel blocks need embed_dims\[1:\] equal"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        CoaTConfig(**changes)


@pytest.mark.parametrize("grid,target", [((1, 14, 14), (1, 7, 7)), ((3, 7, 5), (3, 4, 9)), ((4, 8, 8), (2, 4, 4))])
def test_resampling_equals_trilinear_interpolation(grid, target):
    """Where time is kept, the co-scale resampling runs per frame in 2-D: the same values as trilinear in 3-D."""
    from mvit_video.models.coat import _resample

    B, C = 2, 6
    x = torch.randn(B, 1 + math.prod(grid), C, dtype=torch.float64)
    img = x[:, 1:].transpose(1, 2).reshape(B, C, *grid)
    expected = F.interpolate(img, size=target, mode="trilinear", align_corners=False).flatten(2).transpose(1, 2)
    got = _resample(x, grid, target)
    assert torch.equal(got[:, 0], x[:, 0])
    torch.testing.assert_close(got[:, 1:], expected, rtol=1e-13, atol=1e-13)
