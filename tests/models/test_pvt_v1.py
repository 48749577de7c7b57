"""PVT v1 in the PVT family against HF transformers' ``PvtForImageClassification`` (``PvtConfig()`` is PVT-Tiny),
through load_pretrained, in float64 with every tensor randomised (position tables and the cls token included); a
reduced copy (one block per stage, every code path: reductions 8/4/2/1 over grids that are not multiples of the ratio,
patch embeddings that drop a remainder, the cls stage) runs by default, the published size under -m slow. Also: the
original release's layout, image weights inflated into video models, and position tables resized at run time as the
official code resizes them (bilinear)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.models import PVTConfig, create_model
from mvit_video.models.formats.pvt import detect_pvt_format
from mvit_video.models.stats import stage_table
from tests.models.equivalence import input64, load_exact, same_logits
from tests.models.test_convert import randomize_

transformers = pytest.importorskip("transformers")

# HF computes the patch-embedding and reduction norms at 1e-6 (the official code and pvt_t_in1k: 1e-5)
HF_NUMERICS = {"conv_norm_eps": 1e-6}
REDUCED = {"depths": (1, 1, 1, 1)}
# small widths for the video tests
SMALL = {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 4)}
# every time option on: a time-strided, time-padded stem, time-padded downsampling, an SRA conv over 2 frames
VIDEO = {"patch_time_kernel": 3, "patch_time_stride": 2, "downsample_time_kernel": 3, "sr_time_ratio": 2,
         "input_size": (8, 64, 64)}  # fmt: skip


class HFLogits(nn.Module):
    """``PvtForImageClassification`` as ``image (B, C, H, W) -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _hf(size: int, seed: int = 1, **config) -> nn.Module:
    """HF's PVT for ``size`` px images, every tensor random (built on the meta device: its own init is not needed)."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # transformers' notices
        model = transformers.PvtForImageClassification(transformers.PvtConfig(image_size=size, **config))
    return randomize_(model.to_empty(device="cpu"), seed)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.double().eval()(x)


# ------------------------------------------------------------------------------------------ HF PVT v1


def test_reduced_pvt_t_equals_hf():
    """72 px: grids 18, 9, 4, 2 (the stage-2 patch embedding drops a row and column of 9); the reductions 8, 4, 2
    keep 2 x 2 keys each, dropping remainders; the last stage attends over cls + 4 tokens."""
    theirs = _hf(72, depths=[1, 1, 1, 1])
    ours = load_exact(create_model("pvt_t_in1k", input_size=(1, 72, 72), **REDUCED, **HF_NUMERICS), theirs,
                      "pvt_v1_hf")  # fmt: skip
    assert [grid for *_, grid in ours.stage_specs()] == [(1, 18, 18), (1, 9, 9), (1, 4, 4), (1, 2, 2)]
    assert _params(ours) == _params(theirs)
    assert same_logits(ours, HFLogits(theirs), input64(2, 3, 72, 72)) < 1e-12


def test_published_parameter_count_equals_hf():
    with torch.device("meta"):
        ours = _params(create_model("pvt_t_in1k"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = _params(transformers.PvtForImageClassification(transformers.PvtConfig()))
    assert ours == theirs == 13_229_288  # 13.23M, as the notes measured


@pytest.mark.slow
def test_published_size_equals_hf():
    theirs = _hf(224, seed=5)
    ours = load_exact(create_model("pvt_t_in1k", **HF_NUMERICS), theirs, "pvt_v1_hf")
    assert same_logits(ours, HFLogits(theirs), input64(1, 3, 224, 224)) < 1e-6


def test_original_release_layout_loads():
    """whai362/PVT ``pvt.py`` names: ``patch_embed{i}``, ``pos_embed{i}``, ``block{i}.{j}``, ``norm``, ``cls_token``,
    ``head`` (a ``{"model": ...}`` file)."""
    source = randomize_(create_model("pvt_t_in1k", num_classes=10, **SMALL), seed=3)
    original = {}
    for key, value in source.state_dict().items():
        key = key.replace("patch_embed.", "patch_embed1.")
        for s in range(4):
            key = key.replace(f"stages.{s}.downsample.", f"patch_embed{s + 1}.")
            key = key.replace(f"stages.{s}.pos_embed", f"pos_embed{s + 1}")
            key = key.replace(f"stages.{s}.blocks.", f"block{s + 1}.")
        original[key] = value.squeeze(2) if value.ndim == 5 else value  # Conv2d kernels
    assert {"pos_embed1", "pos_embed4", "block4.0.attn.kv.weight", "norm.weight", "cls_token"} <= set(original)
    ours = load_exact(create_model("pvt_t_in1k", num_classes=10, **SMALL), {"model": original}, "pvt_v1_official")
    x = input64(1, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(source, x), rtol=0, atol=0)


def test_formats_are_told_apart():
    assert detect_pvt_format(create_model("pvt_t_in1k", **SMALL).state_dict()) == "pvt_v1"
    assert detect_pvt_format(create_model("pvtv2_b0_in1k", **SMALL).state_dict()) == "pvt_v2"
    hf = {"encoder.patch_embeddings.0.projection.weight": torch.zeros(1)}  # PvtModel: no "pvt." prefix
    assert detect_pvt_format(hf) == detect_pvt_format({"pvt." + k: v for k, v in hf.items()}) == "pvt_v1_hf"


# ------------------------------------------------------------------------------------- position tables


def test_position_tables_follow_another_input_size_as_the_official_code():
    """Built for 64 px, run on 96 px: each stage's table (without the cls row) is resized bilinearly (align_corners
    False), the official ``_get_pos_embed``; HF built for 96 px with tables resized that way gives the same logits."""
    hf_small = {"hidden_sizes": list(SMALL["embed_dims"]), "depths": [1, 1, 1, 1], "num_attention_heads": [1, 2, 2, 4]}
    small = _hf(64, **hf_small).double()
    ours = load_exact(create_model("pvt_t_in1k", input_size=(1, 64, 64), **SMALL, **HF_NUMERICS), small, "pvt_v1_hf")
    state = dict(small.state_dict())
    for s, (old, new) in enumerate(zip((16, 8, 4, 2), (24, 12, 6, 3))):
        key = f"pvt.encoder.patch_embeddings.{s}.position_embeddings"
        table, cls = state[key][:, int(s == 3) :], state[key][:, : int(s == 3)]
        grid = table.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(new, new), mode="bilinear", align_corners=False)
        state[key] = torch.cat((cls, grid.flatten(2).transpose(1, 2)), dim=1)
    large = _hf(96, **hf_small).double()
    large.load_state_dict(state)
    assert same_logits(ours, HFLogits(large), input64(1, 3, 96, 96)) < 1e-12


def test_image_input_is_a_one_frame_clip():
    model = randomize_(create_model("pvt_t_in1k", input_size=(1, 64, 64), **SMALL), seed=7)
    x = input64(1, 3, 64, 64)
    torch.testing.assert_close(_logits(model, x), _logits(model, x.unsqueeze(2)), rtol=0, atol=0)


def test_centre_inflation_keeps_static_and_one_frame_clips_equal_to_the_image_model():
    """All time options on (``VIDEO``: 8 frames -> T' = 4): kernels on their centre tap (the SRA conv's first of 2),
    each stage's one-frame table repeated over the 4 token frames; a static 8-frame clip and a one-frame clip (the
    tables resized to T' = 1 at run time) give the image model's logits, the cls key counted once per token frame."""
    image = randomize_(create_model("pvt_t_in1k", input_size=(1, 64, 64), **SMALL), seed=7).double().eval()
    video = load_exact(create_model("pvt_t_in1k", **SMALL, **VIDEO), image.state_dict(), "pvt_v1", inflate="centre")
    video = video.double().eval()
    for key, (prefix, grid) in video.position_tables().items():
        table, inflated = image.state_dict()[key], video.state_dict()[key]
        assert grid[0] == 4 and inflated.shape[1] == prefix + 4 * (table.shape[1] - prefix)
        torch.testing.assert_close(inflated[:, :prefix], table[:, :prefix], rtol=0, atol=0)  # the cls row
        frames = inflated[0, prefix:].reshape(4, -1, table.shape[-1])  # (T', H'W', C)
        torch.testing.assert_close(frames, table[0, prefix:].expand_as(frames), rtol=0, atol=0)
    assert (video.state_dict()["stages.0.blocks.0.attn.sr.weight"][:, :, 1] == 0).all()
    x = input64(1, 3, 64, 64)
    static = x.unsqueeze(2).expand(-1, -1, 8, -1, -1)
    assert same_logits(video, image, static) < 1e-12
    assert same_logits(video, image, x.unsqueeze(2)) < 1e-12
    # one cls key among 4 copies of each patch key: the static clip drifts from the image
    plain = create_model("pvt_t_in1k", **SMALL, **VIDEO, cls_key_per_frame=False)
    plain = load_exact(plain, image.state_dict(), "pvt_v1", inflate="centre")
    assert same_logits(plain, image, static) > 1e-3


def test_video_grids_and_odd_clip_lengths():
    """Stem time stride 2 (kernel 3, padding 1): 8 frames -> 4, 5 -> 3 (the tables resized from 4 to 3 frames); an
    SRA over 2 frames pads 3 to 4."""
    model = create_model("pvt_t_in1k", num_classes=5, **SMALL, **VIDEO)
    assert [grid for *_, grid in model.stage_specs()] == [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)]
    assert model.stages[3].pos_embed.shape == (1, 1 + 4 * 2 * 2, 64)
    maps = model.forward_stages(torch.zeros(1, 3, 5, 64, 64))
    assert [tuple(m.shape[2:]) for m in maps] == [g for *_, g in model.stage_specs((5, 64, 64))]
    assert maps[0].shape[2] == 3 and model(torch.zeros(1, 3, 5, 64, 64)).shape == (1, 5)


# ----------------------------------------------------------------------------- what the engine and tools use


def test_engine_interfaces():
    """The cls token without weight decay (the official rule), layer ids (tables with their stage's entry, the cls
    token with the last stage's), the published stage table."""
    model = create_model("pvt_t_in1k", num_classes=5, input_size=(1, 64, 64), **SMALL)
    assert model.no_weight_decay() == {"cls_token"}
    assert model.position_tables() == {
        "stages.0.pos_embed": (0, (1, 16, 16)),
        "stages.1.pos_embed": (0, (1, 8, 8)),
        "stages.2.pos_embed": (0, (1, 4, 4)),
        "stages.3.pos_embed": (1, (1, 2, 2)),
    }
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["patch_embed.proj.weight"] == ids["stages.0.pos_embed"] == 0
    assert ids["stages.1.pos_embed"] == ids["stages.1.downsample.proj.weight"] == ids["stages.1.blocks.0.attn.q.weight"]
    assert ids["cls_token"] == ids["stages.3.pos_embed"] == 4 and ids["norm.weight"] == ids["head.weight"] == 5
    assert model.forward_features(torch.zeros(2, 3, 64, 64)).shape == (2, 64)
    with torch.device("meta"):
        table = stage_table(create_model("pvt_t_in1k"))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 1), 64, 1, (1, 56, 56)),
        ((2, 3), 128, 2, (1, 28, 28)),
        ((4, 5), 320, 5, (1, 14, 14)),
        ((6, 7), 512, 8, (1, 7, 7)),
    ]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"version": 3}, "version=3 is not 1"),
        ({"version": 1, "linear": True}, "PVTv2 options"),
        ({"version": 1, "dwconv_time_kernel": 3}, "PVTv2 options"),
        ({"version": 1, "sr_ratios": (8, 4, 2, 2)}, "last stage .* needs r = 1"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        PVTConfig(**changes)
