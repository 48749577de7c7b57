"""The Swin family against its references (timm 2-D Swin, torchvision ``swin_*`` and ``swin3d_*``) through
load_pretrained, in float64 with every tensor randomised; reduced copies (fewer blocks, narrower, the same code
paths: shifted blocks, padding to windows, windows that shrink in the last stages) run by default, the published
sizes under -m slow. Also: image weights inflated into Video Swin, fused == explicit attention, and what the engine
and tools use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine.optim import param_groups
from mvit_video.models import CheckpointError, SwinConfig, SwinTransformer, build_model, create_model, load_pretrained
from mvit_video.models.adapt import resize_bias_table
from mvit_video.models.formats.swin import detect_swin_format
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2
from tests.models.equivalence import input64, load_exact, same_logits
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")
tv_swin = pytest.importorskip("torchvision.models.swin_transformer")
tv_video = pytest.importorskip("torchvision.models.video.swin_transformer")

# reduced copies: 4 stages, shifted blocks in stages 0 and 2, narrow
SMALL = {"embed_dim": 32, "num_heads": (1, 2, 4, 8), "depths": (2, 1, 2, 1)}
TV_SMALL = ([32], [[2, 1, 2, 1]], [[1, 2, 4, 8]])


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())





def _timm(name: str = "swin_tiny_patch4_window7_224", seed: int = 1, **kw) -> nn.Module:
    return randomize_(timm.create_model(name, pretrained=False, **kw), seed)


def _tv2d(embed, depths, heads, window=(7, 7), seed: int = 2) -> nn.Module:
    return randomize_(tv_swin.SwinTransformer([4, 4], embed, depths, heads, list(window)), seed)


def _tv3d(embed, depths, heads, window=(8, 7, 7), seed: int = 3) -> nn.Module:
    return randomize_(tv_video.SwinTransformer3d([2, 4, 4], embed, depths, heads, list(window), num_classes=400), seed)


# ------------------------------------------------------------------------------------------ timm (2-D Swin)


def test_reduced_swin_equals_timm():
    """224: grids 56, 28, 14, 7 (window 7: shifted in stages 0 and 2, one unshifted window in the last stage)."""
    theirs = _timm(**SMALL)
    ours = load_exact(create_model("swin_t_in1k", **SMALL), theirs, "swin")
    assert _params(ours) == _params(theirs)
    assert same_logits(ours, theirs, input64(1, 3, 224, 224)) < 1e-10


def test_reduced_swin_equals_timm_with_padding_in_every_stage():
    """Window 6 at 112 px, three stages: grids 28, 14, 7 all padded (to 30, 18, 12), every odd block shifted; timm
    rolls the unpadded grid and pads after it (``shift_before_pad``); the other order differs."""
    small = {"embed_dim": 32, "num_heads": (1, 2, 4), "depths": (2, 1, 2)}
    theirs = _timm(img_size=112, window_size=6, **small).double().eval()
    x = input64(1, 3, 112, 112)
    ours = load_exact(create_model("swin_t_in1k", window_size=(1, 6, 6), shift_before_pad=True, **small), theirs, "swin")
    assert same_logits(ours, theirs, x) < 1e-10
    other = load_exact(create_model("swin_t_in1k", window_size=(1, 6, 6), **small), theirs, "swin")
    assert same_logits(other, theirs, x) > 1e-4


def test_microsoft_layout_loads():
    """The original layout (merging at the end of stages 0..2, ``head.weight``) is renamed as timm renames it."""
    theirs = _timm(**SMALL)
    old = {}
    for key, value in theirs.state_dict().items():
        for s in (1, 2, 3):
            key = key.replace(f"layers.{s}.downsample", f"layers.{s - 1}.downsample")
        old[key.replace("head.fc.", "head.")] = value
    ours = load_exact(create_model("swin_t_in1k", **SMALL), {"model": old}, "swin")
    assert same_logits(ours, theirs, input64(1, 3, 224, 224)) < 1e-10


# ------------------------------------------------------------------------------------- torchvision 2-D Swin


def test_reduced_swin_equals_torchvision():
    theirs = _tv2d(*(v[0] for v in TV_SMALL))
    ours = load_exact(create_model("swin_t_in1k", **SMALL), theirs, "torchvision_swin")
    assert _params(ours) == _params(theirs)
    assert same_logits(ours, theirs, input64(1, 3, 224, 224)) < 1e-10


def test_torchvision_window_rule_on_small_images():
    """64 px: grids 16, 8, 4, 2. torchvision keeps 7 x 7 windows (padding 4 and 2 up to 7); ``shrink_window=False``
    reproduces it. timm's and Video Swin's rule (windows shrink to 4 and 2) gives other logits."""
    theirs = _tv2d(*(v[0] for v in TV_SMALL))
    x = input64(2, 3, 64, 64)
    ours = load_exact(create_model("swin_t_in1k", shrink_window=False, **SMALL), theirs, "torchvision_swin")
    assert same_logits(ours, theirs, x) < 1e-10
    shrinking = load_exact(create_model("swin_t_in1k", **SMALL), theirs, "torchvision_swin")
    assert same_logits(shrinking, theirs, x) > 1e-4


# ----------------------------------------------------------------------------------- torchvision Video Swin


@pytest.mark.parametrize(
    "window,frames",
    [
        ((8, 7, 7), 4),  # T' = 2 shrinks the window to 2 (shift 0 in time); 16 px grid padded to 21; 4, 2 shrink
        ((2, 7, 7), 5),  # T' = 3 (5 frames padded to the tubelet) padded to 4 and shifted by 1 in time
    ],
)
def test_reduced_video_swin_equals_torchvision(window, frames):
    theirs = _tv3d(*(v[0] for v in TV_SMALL), window=window)
    ours = load_exact(create_model("swin3d_t_32x2", window_size=window, **SMALL), theirs, "torchvision_swin3d")
    assert _params(ours) == _params(theirs)
    assert same_logits(ours, theirs, input64(2, 3, frames, 64, 64)) < 1e-10


# ------------------------------------------------------------------------------------------ parameter counts

PUBLISHED = {
    "swin_t_in1k": ("swin_tiny_patch4_window7_224", "swin_t"),
    "swin_s_in1k": ("swin_small_patch4_window7_224", "swin_s"),
    "swin_b_in1k": ("swin_base_patch4_window7_224", "swin_b"),
    "swin3d_t_32x2": (None, "swin3d_t"),
    "swin3d_s_32x2": (None, "swin3d_s"),
    "swin3d_b_32x2": (None, "swin3d_b"),
}


def _reference(timm_name, tv_name) -> list[nn.Module]:
    tv = getattr(tv_video if tv_name.startswith("swin3d") else tv_swin, tv_name)(weights=None)
    return [tv] + ([timm.create_model(timm_name, pretrained=False)] if timm_name else [])


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_parameter_counts_equal_the_references(name):
    with torch.device("meta"):
        ours = _params(create_model(name))
        assert all(ours == _params(ref) for ref in _reference(*PUBLISHED[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_sizes_equal_the_references(name):
    timm_name, tv_name = PUBLISHED[name]
    video = tv_name.startswith("swin3d")
    x = input64(1, 3, 8, 224, 224) if video else input64(1, 3, 224, 224)  # 8 frames: T' = 4 shrinks the window
    refs = [randomize_(ref, seed=5) for ref in _reference(timm_name, tv_name)]
    for ref, fmt in zip(refs, ["torchvision_swin3d" if video else "torchvision_swin", "swin"]):
        ours = load_exact(create_model(name), ref, fmt)
        assert same_logits(ours, ref, x) < 1e-6


# ------------------------------------------------------------------------------------- image -> video


def test_image_input_is_a_one_frame_clip():
    model = create_model("swin_t_in1k", **SMALL).double().eval()
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


def _inflated(inflate: str) -> tuple[nn.Module, nn.Module, list[str]]:
    image = randomize_(create_model("swin_t_in1k", **SMALL), seed=7).double().eval()  # == timm's, tested above
    video = create_model("swin3d_t_32x2", num_classes=1000, **SMALL)
    report = load_pretrained(video, image.state_dict(), inflate=inflate)
    assert report.missing == [] and report.unexpected == []
    return image, video.double().eval(), report.adapted


def test_centre_inflation_keeps_one_frame_clips_and_static_clips_equal_to_the_image_model():
    """Swin-T weights in Video Swin (patch 2x4x4, window 8x7x7): the kernel on the first tap and the 2-D bias table
    repeated over the 15 time offsets. A one-frame clip (zero-padded to the tubelet, the window shrunk to one frame)
    gives the image model's logits (64 px: padded and shrunk windows too), and so does a static 4-frame clip (every
    token repeats over time) where no window shrinks in space (224). Where one does (64 px: 4 and 2 tokens), Video
    Swin's bias of a shrunk window (the first N x N entries of the full window's index) is not the image model's."""
    image, video, adapted = _inflated("centre")
    assert "patch_embed.proj.weight: [32, 3, 1, 4, 4] -> [32, 3, 2, 4, 4]" in adapted
    assert "layers.0.blocks.0.attn.relative_position_bias_table: [169, 1] -> [2535, 1]" in adapted
    small, large = input64(2, 3, 64, 64), input64(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_l2(video(small.unsqueeze(2)), image(small)) < 1e-12
        assert rel_l2(video(large.unsqueeze(2).expand(-1, -1, 4, -1, -1)), image(large)) < 1e-12
        assert rel_l2(video(small.unsqueeze(2).expand(-1, -1, 4, -1, -1)), image(small)) > 1e-4


def test_average_inflation_keeps_static_clips_but_not_one_frame_clips():
    """Spread over the two taps (w / 2 each), a static clip sees the whole kernel; a one-frame clip, zero-padded,
    sees half of it and differs (the reference's padding, not a bug)."""
    image, video, _ = _inflated("average")
    small, large = input64(2, 3, 64, 64), input64(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_l2(video(large.unsqueeze(2).expand(-1, -1, 4, -1, -1)), image(large)) < 1e-12
        assert rel_l2(video(small.unsqueeze(2)), image(small)) > 1e-3


def test_bias_table_interpolation_equals_timm_and_unknown_windows_are_refused():
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_simple

    table = input64(169, 3)
    expected = resize_rel_pos_bias_table_simple(table, (12, 12), (23 * 23, 3))
    torch.testing.assert_close(resize_bias_table(table, (1, 23, 23)), expected, rtol=0, atol=1e-12)
    video = resize_bias_table(table, (15, 23, 23))  # 2-D window 7 -> 8 x 12 x 12: interpolated, then repeated
    torch.testing.assert_close(video[7 * 23 * 23 : 8 * 23 * 23], expected, rtol=0, atol=1e-12)
    assert video.shape == (15 * 23 * 23, 3) and torch.equal(video[: 23 * 23], video[-23 * 23 :])
    model = create_model("swin3d_t_32x2", **SMALL, window_size=(8, 6, 6))
    state = _timm(**SMALL).state_dict()
    assert "[169, 1] -> [1815, 1]" in " ".join(load_pretrained(model, state, num_classes_mismatch="reinit").adapted)
    state["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.zeros(170, 1)
    with pytest.raises(CheckpointError, match="cannot tell the window of a 170-row relative-position bias table"):
        load_pretrained(model, state, num_classes_mismatch="reinit")


# ------------------------------------------------------------------------------------- attention kernels


def test_fused_attention_equals_explicit_outputs_and_gradients():
    """SDPA with (bias + mask) as its additive mask == the explicit reference, in float64, with shifted and
    padded windows (window 6 on 64 px: 16 -> 18) and a window shrunk in time."""
    x = input64(2, 3, 4, 64, 64)
    results = []
    for impl in ("sdpa", "math"):
        torch.manual_seed(0)
        model = randomize_(create_model("swin3d_t_32x2", window_size=(8, 6, 6), attention=impl, **SMALL), 4)
        model = model.double().train()  # no dropout configured: train mode only enables the backward checks
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
        model = randomize_(create_model("swin3d_t_32x2", act_checkpoint=ckpt, drop_path_rate=0.0, **SMALL), 6).train()
        model(x).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_engine_interfaces():
    """Logits and features, timm's no-weight-decay names, layer ids for layer decay (every parameter in
    [0, depth + 1]), the stage table."""
    model = create_model("swin3d_t_32x2", num_classes=5, **SMALL)
    x = torch.zeros(1, 3, 4, 64, 64)
    assert model(x).shape == (1, 5) and model.forward_features(x).shape == (1, model.num_features) == (1, 256)
    assert model.no_weight_decay() == {n for n, _ in model.named_parameters() if "relative_position_bias_table" in n}
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["patch_embed.proj.weight"] == 0 and ids["layers.0.blocks.1.mlp.fc1.weight"] == 2
    assert ids["layers.1.downsample.reduction.weight"] == ids["layers.1.blocks.0.norm1.weight"] == 3
    assert ids["layers.3.blocks.0.attn.qkv.weight"] == 6 and ids["head.fc.weight"] == ids["norm.weight"] == 7
    groups = param_groups(model, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr_scale"] for g in groups} == {0.5**k for k in range(8)}
    table = stage_table(create_model("swin3d_t_32x2"))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 1), 96, 3, (16, 56, 56)),
        ((2, 3), 192, 6, (16, 28, 28)),
        ((4, 9), 384, 12, (16, 14, 14)),
        ((10, 11), 768, 24, (16, 7, 7)),
    ]


def test_a_swin_config_builds_the_configured_model():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "swin", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "64", "SWIN.PATCH_SIZE", [2, 4, 4], "SWIN.WINDOW_SIZE", [8, 7, 7],
                         "SWIN.EMBED_DIM", "32", "SWIN.DEPTHS", [2, 1, 2, 1], "SWIN.NUM_HEADS", [1, 2, 4, 8]])  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, SwinTransformer)
    assert model.cfg == SwinConfig(num_classes=7, input_size=(4, 64, 64), patch_size=(2, 4, 4),
                                   window_size=(8, 7, 7), head_dropout=0.5, **SMALL)  # fmt: skip
    assert model(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 7)


def test_formats_are_detected_and_unknown_ones_are_one_line():
    assert detect_swin_format(create_model("swin_t_in1k", **SMALL).state_dict()) == "swin"
    with pytest.raises(CheckpointError) as info:
        load_pretrained(create_model("swin_t_in1k", **SMALL), {"blocks.0.norm1.weight": torch.zeros(3)})
    assert "not a Swin checkpoint of a known layout" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_heads": (3, 6, 12)}, "need one entry per stage"),
        ({"num_heads": (5, 6, 12, 24)}, "stage 0 width 96 is not divisible by num_heads=5"),
        ({"window_size": (7, 7)}, r"window_size=\[7, 7\] must be three positive sizes"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        SwinConfig(**changes)
