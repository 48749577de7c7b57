"""The PVT family against timm's PVTv2 (``pvt_v2_b0``, ``pvt_v2_b2``, ``pvt_v2_b2_li``) through load_pretrained, in
float64 with every tensor randomised; reduced copies (one or two blocks per stage, the same code paths: reduction
ratios 8/4/2/1, grids that are not multiples of the ratio, the linear variant's pooling up and down) run by default,
the published sizes under -m slow. Also: image weights inflated into video models ('centre' and 'average'), fused ==
explicit attention, and what the engine and tools use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine.optim import param_groups
from mvit_video.models import (
    CheckpointError,
    PVTConfig,
    PyramidVisionTransformer,
    build_model,
    create_model,
    load_pretrained,
)
from mvit_video.models.formats.pvt import detect_pvt_format
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2
from tests.models.equivalence import input64
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")

# reduced copies: b0's widths, one or two blocks per stage (b2 differs from b0 only in widths and depths)
REDUCED = {"depths": (2, 1, 1, 1), "embed_dims": (32, 64, 160, 256)}
VARIANTS = {"pvtv2_b0_in1k": "pvt_v2_b0", "pvtv2_b2_in1k": "pvt_v2_b2", "pvtv2_b2_li_in1k": "pvt_v2_b2_li"}
# small widths for the video and engine tests
SMALL = {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 4)}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load(ours: nn.Module, theirs: nn.Module | dict, fmt: str, **kw) -> tuple[nn.Module, list[str]]:
    report = load_pretrained(ours, theirs.state_dict() if isinstance(theirs, nn.Module) else theirs, **kw)
    assert report.source_format == fmt and report.missing == [] and report.unexpected == [], report.summary()
    return ours, report.adapted


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.double().eval()(x)



def _timm(name: str, seed: int = 1, **kw) -> nn.Module:
    return randomize_(timm.create_model(name, pretrained=False, **kw), seed)


# ------------------------------------------------------------------------------------------ timm PVTv2


@pytest.mark.parametrize("name", ["pvtv2_b0_in1k", "pvtv2_b2_li_in1k"])
def test_reduced_pvtv2_equals_timm(name):
    """68 px: grids 17, 9, 5, 3; the reductions 8, 4, 2 drop a remainder of one token a side, the linear variant
    pools 17 and 9 down to 7 and 5 and 3 up to it."""
    theirs = _timm(VARIANTS[name], **REDUCED)
    ours, _ = _load(create_model(name, **REDUCED), theirs, "pvt_v2")
    assert _params(ours) == _params(theirs)
    x = input64(1, 3, 68, 68)
    assert rel_l2(_logits(ours, x), _logits(theirs, x)) < 1e-10


def test_original_release_layout_loads():
    """whai362/PVT names (``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}``, ``dwconv.dwconv``), renamed as timm's
    ``checkpoint_filter_fn`` renames them."""
    theirs = _timm("pvt_v2_b0", embed_dims=SMALL["embed_dims"], depths=(2, 1, 1, 1), num_heads=SMALL["num_heads"])
    original = {}
    for key, value in theirs.state_dict().items():
        key = key.replace("patch_embed.", "patch_embed1.").replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        for s in range(4):
            key = key.replace(f"stages.{s}.downsample.", f"patch_embed{s + 1}.")
            key = key.replace(f"stages.{s}.blocks.", f"block{s + 1}.").replace(f"stages.{s}.norm.", f"norm{s + 1}.")
        original[key] = value
    assert "block2.0.mlp.dwconv.dwconv.weight" in original and "norm4.weight" in original
    ours = create_model("pvtv2_b0_in1k", **{**SMALL, "depths": (2, 1, 1, 1)})
    ours, _ = _load(ours, {"state_dict": original}, "pvt_v2_official")
    x = input64(1, 3, 64, 64)
    assert rel_l2(_logits(ours, x), _logits(theirs, x)) < 1e-10


@pytest.mark.parametrize("name", VARIANTS)
def test_published_parameter_counts_equal_timm(name):
    with torch.device("meta"):
        ours = _params(create_model(name))
        assert ours == _params(timm.create_model(VARIANTS[name], pretrained=False))
    if name == "pvtv2_b0_in1k":
        assert ours == 3_666_760  # 3.67M, as the notes measured


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_published_sizes_equal_timm(name):
    theirs = _timm(VARIANTS[name], seed=5)
    ours, _ = _load(create_model(name), theirs, "pvt_v2")
    x = input64(1, 3, 224, 224)
    assert rel_l2(_logits(ours, x), _logits(theirs, x)) < 1e-6


# ------------------------------------------------------------------------------------- image -> video

# every time option on: a time-strided, time-padded stem, padded downsampling and FFN convs, an SRA conv over 2 frames
VIDEO = {"patch_time_kernel": 3, "patch_time_stride": 2, "downsample_time_kernel": 3, "dwconv_time_kernel": 3,
         "sr_time_ratio": 2, "input_size": (8, 64, 64)}  # fmt: skip


def _image(linear: bool = False) -> nn.Module:
    return randomize_(create_model("pvtv2_b0_in1k", linear=linear, **SMALL), seed=7).double().eval()


def _video(image: nn.Module, inflate: str, **video) -> tuple[nn.Module, list[str]]:
    model = create_model("pvtv2_b0_in1k", linear=image.cfg.linear, **SMALL, **video)
    model, adapted = _load(model, image.state_dict(), "pvt_v2", inflate=inflate)
    return model.double().eval(), adapted


def test_image_input_is_a_one_frame_clip():
    model = _image()
    x = input64(1, 3, 64, 64)
    torch.testing.assert_close(_logits(model, x), _logits(model, x.unsqueeze(2)), rtol=0, atol=0)


@pytest.mark.parametrize("linear", [False, True])
def test_centre_inflation_keeps_static_and_one_frame_clips_equal_to_the_image_model(linear):
    """All time options on (``VIDEO``; the linear variant also pools keys/values to 2 frames): the image kernel on the
    centre tap of each time kernel (the first of the SRA conv's 2) gives exactly the image model's logits on a
    static 4-frame clip (keys repeated over time attend as one frame's) and on a one-frame clip (zero-padded)."""
    image = _image(linear)
    video, adapted = _video(image, "centre", **VIDEO, linear_pool_time=2 if linear else 0)
    assert "patch_embed.proj.weight: [16, 3, 1, 7, 7] -> [16, 3, 3, 7, 7]" in adapted
    assert "stages.1.blocks.0.mlp.dwconv.weight: [256, 1, 1, 3, 3] -> [256, 1, 3, 3, 3]" in adapted
    if not linear:
        assert "stages.0.blocks.0.attn.sr.weight: [16, 16, 1, 8, 8] -> [16, 16, 2, 8, 8]" in adapted
    x = input64(1, 3, 64, 64)
    expected = _logits(image, x)
    assert rel_l2(_logits(video, x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), expected) < 1e-12
    assert rel_l2(_logits(video, x.unsqueeze(2)), expected) < 1e-12


def test_average_inflation_spreads_kernels_and_keeps_static_clips_only_through_unpadded_convs():
    """Average inflation puts kernel / kt on every tap. Where no conv is zero-padded in time (only the SRA conv,
    over 2 frames, on an even T) a static clip gives the image model's logits; a one-frame clip (padded to 2 frames
    for the SRA conv) sees half its kernel and differs, as do static clips once the stem and FFN convs are padded in
    time (their first and last frames see part of the kernel)."""
    image = _image()
    video, _ = _video(image, "average", sr_time_ratio=2)
    kernel = video.state_dict()["stages.0.blocks.0.attn.sr.weight"]
    torch.testing.assert_close(kernel[:, :, 0], kernel[:, :, 1], rtol=0, atol=0)
    torch.testing.assert_close(2 * kernel[:, :, :1], image.state_dict()["stages.0.blocks.0.attn.sr.weight"])
    x = input64(1, 3, 64, 64)
    expected = _logits(image, x)
    assert rel_l2(_logits(video, x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), expected) < 1e-12
    assert rel_l2(_logits(video, x.unsqueeze(2)), expected) > 1e-3
    padded, _ = _video(image, "average", **VIDEO)
    assert rel_l2(_logits(padded, x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), expected) > 1e-3


def test_video_grids_and_odd_clip_lengths():
    """Stem time stride 2 (kernel 3, padding 1): 8 frames -> 4, 5 -> 3; an SRA over 2 frames pads 3 to 4."""
    model = create_model("pvtv2_b0_in1k", num_classes=5, **SMALL, **VIDEO)
    assert [grid for *_, grid in model.stage_specs()] == [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)]
    maps = model.forward_stages(torch.zeros(1, 3, 5, 64, 64))
    assert [tuple(m.shape[2:]) for m in maps] == [g for *_, g in model.stage_specs((5, 64, 64))]
    assert maps[0].shape[2] == 3 and model(torch.zeros(1, 3, 5, 64, 64)).shape == (1, 5)


# ------------------------------------------------------------------------------------- attention kernels


@pytest.mark.parametrize("linear", [False, True])
def test_fused_attention_equals_explicit_outputs_and_gradients(linear):
    x = input64(1, 3, 4, 64, 64)
    results = []
    for impl in ("sdpa", "math"):
        model = create_model("pvtv2_b0_in1k", attention=impl, linear=linear, drop_path_rate=0.0, **SMALL, **VIDEO)
        model = randomize_(model, 4).double().train()  # no dropout or drop path: train mode only enables backward
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    (out_f, grads_f), (out_m, grads_m) = results
    assert rel_l2(out_f, out_m) < 1e-12
    assert max(rel_l2(a, b) for a, b in zip(grads_f, grads_m)) < 1e-10


# ----------------------------------------------------------------------------- what the engine and tools use


def test_activation_checkpointing_gives_the_same_gradients():
    x = input64(1, 3, 2, 32, 32).float()
    grads = []
    for ckpt in (False, True):
        model = randomize_(create_model("pvtv2_b0_in1k", act_checkpoint=ckpt, drop_path_rate=0.0, **SMALL), 6)
        model.train()(x).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_engine_interfaces():
    """Logits and features, no parameters without weight decay (timm's PVTv2 has none), layer ids for layer decay
    (every parameter in [0, depth + 1]), the stage table at the configured size."""
    model = create_model("pvtv2_b0_in1k", num_classes=5, **REDUCED)
    x = torch.zeros(1, 3, 2, 64, 64)
    assert model(x).shape == (1, 5) and model.forward_features(x).shape == (1, model.num_features) == (1, 256)
    assert model.no_weight_decay() == set() and model.position_tables() == {}
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["patch_embed.proj.weight"] == 0 and ids["stages.0.blocks.1.mlp.fc1.weight"] == 2
    assert ids["stages.0.norm.weight"] == ids["stages.0.blocks.1.attn.q.weight"] == 2
    assert ids["stages.1.downsample.proj.weight"] == ids["stages.1.blocks.0.norm1.weight"] == 3
    assert ids["stages.3.norm.weight"] == 5 and ids["head.weight"] == 6
    groups = param_groups(model, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr_scale"] for g in groups} == {0.5**k for k in range(7)}
    with torch.device("meta"):
        table = stage_table(create_model("pvtv2_b2_in1k"))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 2), 64, 1, (1, 56, 56)),
        ((3, 6), 128, 2, (1, 28, 28)),
        ((7, 12), 320, 5, (1, 14, 14)),
        ((13, 15), 512, 8, (1, 7, 7)),
    ]


def test_a_pvt_config_builds_the_configured_model():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "pvt", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "64", "PVT.EMBED_DIMS", [16, 32, 48, 64], "PVT.DEPTHS", [1, 1, 1, 1],
                         "PVT.NUM_HEADS", [1, 2, 2, 4], "PVT.DWCONV_TIME_KERNEL", "3", "PVT.LINEAR", "True"])  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, PyramidVisionTransformer)
    assert model.cfg == PVTConfig(num_classes=7, input_size=(4, 64, 64), dwconv_time_kernel=3, linear=True,
                                  head_dropout=0.5, **SMALL)  # fmt: skip
    assert model(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 7)


def test_formats_are_detected_and_unknown_ones_are_one_line():
    assert detect_pvt_format(create_model("pvtv2_b0_in1k", **SMALL).state_dict()) == "pvt_v2"
    with pytest.raises(CheckpointError) as info:
        load_pretrained(create_model("pvtv2_b0_in1k", **SMALL), {"blocks.0.norm1.weight": torch.zeros(3)})
    assert "not a PVT checkpoint of a known layout" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_heads": (1, 2, 5)}, "need one entry per stage"),
        ({"num_heads": (3, 2, 5, 8)}, "stage 0 width 64 is not divisible by num_heads=3"),
        ({"dwconv_time_kernel": 2}, "dwconv_time_kernel=2 must be odd"),
        ({"input_size": (224, 224)}, r"input_size=\[224, 224\] must be three positive sizes"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        PVTConfig(**changes)
