"""The ViT family against its references (timm, HF transformers) through load_pretrained, in float64 with every
tensor randomised; reduced-depth copies run by default (same code paths), the published sizes under -m slow."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mvit_video.models import ViTConfig, VisionTransformer, create_model, load_pretrained
from tests.conftest import rel_l2
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")


def _same_logits(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, hf: bool = False) -> float:
    ours, theirs = ours.double().eval(), theirs.double().eval()
    with torch.no_grad():
        expected = theirs(pixel_values=x.transpose(1, 2)).logits if hf else theirs(x)
        got = ours(x)
    return rel_l2(got, expected)


def _load(ours: nn.Module, theirs: nn.Module, fmt: str, **kw) -> nn.Module:
    report = load_pretrained(ours, theirs.state_dict(), **kw)
    assert report.source_format == fmt and report.missing == [] and report.unexpected == [], report.summary()
    return ours


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _image(batch: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _clip(frames: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, frames, size, size, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------ timm


TIMM_CASES = {
    "vit_ti16_in1k": "vit_tiny_patch16_224",
    "deit_ti16_in1k": "deit_tiny_patch16_224",
    "deit_ti16_distilled_in1k": "deit_tiny_distilled_patch16_224",
    "cait_xxs24_in1k": "cait_xxs24_224",
}


@pytest.mark.parametrize("ours_name,timm_name", TIMM_CASES.items())
def test_reduced_depth_equals_timm(ours_name, timm_name):
    theirs = randomize_(timm.create_model(timm_name, pretrained=False, depth=2), seed=3)
    ours = _load(create_model(ours_name, depth=2), theirs, "vit")
    assert _params(ours) == _params(theirs)
    assert _same_logits(ours, theirs, _image()) < 1e-10


@pytest.mark.parametrize("ours_name,timm_name", TIMM_CASES.items())
def test_published_parameter_counts_equal_timm(ours_name, timm_name):
    with torch.device("meta"):
        assert _params(create_model(ours_name)) == _params(timm.create_model(timm_name, pretrained=False))


@pytest.mark.slow
@pytest.mark.parametrize("ours_name,timm_name", {**TIMM_CASES, "vit_b16_in1k": "vit_base_patch16_224"}.items())
def test_published_sizes_equal_timm(ours_name, timm_name):
    theirs = randomize_(timm.create_model(timm_name, pretrained=False), seed=4)
    ours = _load(create_model(ours_name), theirs, "vit")
    assert _same_logits(ours, theirs, _image(1)) < 1e-6


def test_vit_b16_parameter_count_equals_timm():
    with torch.device("meta"):
        assert _params(create_model("vit_b16_in1k")) == _params(timm.create_model("vit_base_patch16_224"))


class CPVTReference(nn.Module):
    """DeiT-Ti without position embedding plus timm's Twins ``PosConv`` after the first block (cls excluded), run
    from timm's own modules: CPVT's PEG semantics."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        from timm.models.twins import PosConv

        self.vit = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=depth, pos_embed="none")
        self.peg = PosConv(192, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        tokens = v.patch_embed(x)
        tokens = torch.cat((v.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        tokens = v.blocks[0](tokens)
        grid = self.peg(tokens[:, 1:], (14, 14))
        tokens = v.blocks[1:](torch.cat((tokens[:, :1], grid), dim=1))
        return v.head(v.norm(tokens)[:, 0])


def test_cpvt_equals_deit_with_twins_position_generator():
    reference = randomize_(CPVTReference(depth=3), seed=5)
    state = {k.removeprefix("vit."): v for k, v in reference.state_dict().items() if k.startswith("vit.")}
    state |= {k.replace("peg.", "pos_block.0."): v for k, v in reference.state_dict().items() if k.startswith("peg.")}
    ours = create_model("cpvt_ti_in1k", depth=3)
    report = load_pretrained(ours, state)
    assert report.missing == [] and report.unexpected == []
    assert _params(ours) == _params(reference)
    assert _same_logits(ours, reference, _image()) < 1e-10


# --------------------------------------------------------------------------------------------- HF transformers


def _hf(name: str, **config):
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = getattr(transformers, f"{name}Config")(**config)
        return getattr(transformers, f"{name}ForVideoClassification")(cfg)


SMALL = {"num_hidden_layers": 2, "hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 768,
         "image_size": 64, "num_labels": 5}  # fmt: skip
# HF class prefix, our variant, extra config of the reduced copy, format, frames of the reduced copy, published frames
HF_CASES = {
    "videomae": ("VideoMAE", "videomae_b_16x4", {"use_mean_pooling": True}, "hf_videomae", 8, 16),
    "timesformer": ("Timesformer", "timesformer_b_8x32", {}, "hf_timesformer", 4, 8),
    "vivit": ("Vivit", "vivit_b_32x2", {}, "hf_vivit", 8, 32),
}


@pytest.mark.parametrize("case", HF_CASES)
def test_reduced_video_models_equal_hf(case):
    name, ours_name, extra, fmt, frames, _ = HF_CASES[case]
    theirs = randomize_(_hf(name, **SMALL, **extra, num_frames=frames), seed=6)
    ours = create_model(ours_name, num_classes=5, depth=2, embed_dim=192, num_heads=3, input_size=(frames, 64, 64))
    _load(ours, theirs, fmt)
    assert _params(ours) == _params(theirs)
    assert _same_logits(ours, theirs, _clip(frames, 64), hf=True) < 1e-10


@pytest.mark.parametrize("case", HF_CASES)
def test_published_video_parameter_counts_equal_hf(case):
    name, ours_name, extra, _, _, frames = HF_CASES[case]
    with torch.device("meta"):
        reference = _hf(name, num_frames=frames, num_labels=400, **extra)
        assert _params(create_model(ours_name)) == _params(reference)


# ------------------------------------------------------------------------------------------ image <-> video


def test_image_input_is_a_one_frame_clip():
    model = create_model("vit_ti16_in1k", depth=2).double().eval()
    x = _image(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_centre_inflation_keeps_one_frame_clips_equal_to_the_image_model(pool):
    """timm image weights in a tubelet-2 video ViT (8 frames): a one-frame clip (zero-padded to the tubelet, the
    kernel on its first tap) gives the image model's logits. A static 8-frame clip does too when no prefix token
    attends with the patches (mean pooling without cls): a cls token's share of the attention would shrink with
    the number of identical frames."""
    cls = pool == "token"
    image = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=64, global_pool=pool,
                              class_token=cls, fc_norm=not cls)  # fmt: skip
    image = randomize_(image, seed=7)
    video = VisionTransformer(ViTConfig(embed_dim=192, depth=2, num_heads=3, tubelet_size=2, input_size=(8, 64, 64),
                                        class_token=cls, global_pool=pool))  # fmt: skip
    report = load_pretrained(video, image.state_dict(), inflate="centre")
    assert report.missing == [] and "patch_embed.proj.weight: [192, 3, 1, 16, 16] -> [192, 3, 2, 16, 16]" in report.adapted
    x = _image(2, 64)
    with torch.no_grad():
        expected = image.double().eval()(x)
        video = video.double().eval()
        single = video(x.unsqueeze(2))
        static = video(x.unsqueeze(2).expand(-1, -1, 8, -1, -1))
    assert rel_l2(single, expected) < 1e-12
    if not cls:
        assert rel_l2(static, expected) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("case", HF_CASES)
def test_published_video_models_equal_hf(case):
    """Full depth and width (published configs), on a short low-resolution clip to stay affordable."""
    name, ours_name, extra, fmt, _, published = HF_CASES[case]
    frames = 4 if name != "Timesformer" else published
    theirs = randomize_(_hf(name, num_frames=frames, image_size=64, num_labels=400, **extra), seed=8)
    ours = create_model(ours_name, input_size=(frames, 64, 64))
    _load(ours, theirs, fmt)
    assert _same_logits(ours, theirs, _clip(frames, 64), hf=True) < 1e-6
