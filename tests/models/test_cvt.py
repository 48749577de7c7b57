"""The CvT family against HF transformers' ``CvtForImageClassification`` through load_pretrained, in float64 with
every tensor randomised (BatchNorm running statistics, LayerNorm parameters and the cls token included; both sides in
eval mode); a reduced copy (CvT-13's widths, 1/2/3 blocks, 72 px: grids 18, 9, 5 and key grids 9, 5, 3) runs by
default, the published size under -m slow. Also: the official layout (and its QuickGELU), image weights inflated
into video models, fused == explicit attention, and what the engine and tools use."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine.optim import param_groups
from mvit_video.models import (
    CheckpointError,
    ConvolutionalVisionTransformer,
    CvTConfig,
    build_model,
    create_model,
    load_pretrained,
)
from mvit_video.models.cvt import QuickGELU
from mvit_video.models.formats.cvt import detect_cvt_format, hf_to_cvt
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2
from tests.models.equivalence import input64, load_exact, same_logits
from tests.models.test_convert import randomize_

transformers = pytest.importorskip("transformers")

# HF picks a block's drop-path rate by its stage's index, so every stage needs more blocks than its index
REDUCED = {"depths": (1, 2, 3)}
# small widths for the layout, video and engine tests
SMALL = {"embed_dims": (16, 32, 48), "depths": (1, 1, 2), "num_heads": (1, 2, 3)}
SMALL_HF = {"embed_dim": [16, 32, 48], "depth": [1, 2, 3], "num_heads": [1, 2, 3]}
SMALL_OURS = {"embed_dims": (16, 32, 48), "depths": (1, 2, 3), "num_heads": (1, 2, 3)}
# every time option on: time-strided and time-padded embeddings, q/k/v convs over 3 frames, keys strided in time
VIDEO = {"patch_time_kernels": (3, 3, 3), "patch_time_strides": (2, 1, 1), "qkv_time_kernel": 3, "kv_time_stride": 2}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Every floating tensor noise (``randomize_``), BN running variances positive."""
    randomize_(model, seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.abs_().add_(0.5)
    return model


class HFLogits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _hf(seed: int = 1, **config) -> nn.Module:
    """HF CvT with 1000 classes (``CvtConfig()`` is CvT-13 but with 2 labels), randomised."""
    model = transformers.CvtForImageClassification(transformers.CvtConfig(num_labels=1000, **config))
    return _randomize(model, seed)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.double().eval()(x)


# ------------------------------------------------------------------------------------------ HF transformers


def test_reduced_cvt_13_equals_hf():
    theirs = _hf(depth=list(REDUCED["depths"]))
    ours = load_exact(create_model("cvt_13_in1k", **REDUCED), theirs, "cvt_hf")
    assert _params(ours) == _params(theirs)
    assert same_logits(ours, HFLogits(theirs), input64(2, 3, 72, 72)) < 1e-10


def test_hf_backbone_layout_maps_onto_ours():
    """``CvtModel`` (no ``cvt.`` prefix, no final norm or classifier) maps onto our names minus those two."""
    backbone = transformers.CvtModel(transformers.CvtConfig(**SMALL_HF))
    ours = create_model("cvt_13_in1k", **SMALL_OURS).state_dict()
    assert set(hf_to_cvt(backbone.state_dict())) == {k for k in ours if not k.startswith(("norm.", "head."))}
    assert detect_cvt_format(backbone.state_dict()) == "cvt_hf"


def test_official_layout_loads_and_computes_quick_gelu():
    """microsoft/CvT names (``stage{s}.``, 2-D kernels): the model switches its MLPs to the official QuickGELU and
    equals HF's model with that activation."""
    theirs = _hf(**SMALL_HF)
    ours = load_exact(create_model("cvt_13_in1k", **SMALL_OURS), theirs, "cvt_hf")
    official = {re.sub(r"^stages\.(\d+)\.", r"stage\1.", k): v.squeeze(2) if v.ndim == 5 else v
                for k, v in ours.state_dict().items()}  # fmt: skip
    assert "stage2.blocks.2.attn.conv_proj_v.bn.running_var" in official and "stage2.cls_token" in official
    fresh = create_model("cvt_13_in1k", **SMALL_OURS)
    report = load_pretrained(fresh, {"state_dict": official})
    assert report.source_format == "cvt_official" and not report.missing and not report.unexpected
    assert report.model_changes == ["MLP activation gelu -> quick_gelu, as the official CvT code computes"]
    assert fresh.cfg.mlp_act == "quick_gelu" and isinstance(fresh.stages[2].blocks[0].mlp.act, QuickGELU)
    for stage in theirs.cvt.encoder.stages:
        for layer in stage.layers:
            layer.intermediate.activation = QuickGELU()
    x = input64(1, 3, 72, 72)
    assert same_logits(fresh, HFLogits(theirs), x) < 1e-10
    assert rel_l2(_logits(ours, x), _logits(fresh, x)) > 1e-4  # GELU and QuickGELU really differ


def test_published_parameter_count_equals_hf():
    with torch.device("meta"):
        ours = _params(create_model("cvt_13_in1k"))
        theirs = _params(transformers.CvtForImageClassification(transformers.CvtConfig(num_labels=1000)))
    assert ours == theirs == 19_997_480  # CvT-13: 20.0M


@pytest.mark.slow
def test_published_cvt_13_equals_hf():
    theirs = _hf(seed=5)
    ours = load_exact(create_model("cvt_13_in1k"), theirs, "cvt_hf")
    assert same_logits(ours, HFLogits(theirs), input64(1, 3, 224, 224)) < 1e-6


# ------------------------------------------------------------------------------------- image -> video


def _image() -> nn.Module:
    return _randomize(create_model("cvt_13_in1k", **SMALL), seed=7).double().eval()


def _video(image: nn.Module, inflate: str, **video) -> tuple[nn.Module, list[str]]:
    model = create_model("cvt_13_in1k", **SMALL, **video)
    report = load_pretrained(model, image.state_dict(), inflate=inflate)
    assert report.source_format == "cvt" and not report.missing and not report.unexpected
    return model.double().eval(), report.adapted


def _static(x: torch.Tensor, frames: int) -> torch.Tensor:
    return x.unsqueeze(2).expand(-1, -1, frames, -1, -1)


def test_image_input_is_a_one_frame_clip():
    model = _image()
    x = input64(1, 3, 64, 64)
    torch.testing.assert_close(_logits(model, x), _logits(model, x.unsqueeze(2)), rtol=0, atol=0)


def test_centre_inflation_keeps_static_and_one_frame_clips_equal_to_the_image_model():
    """All time options on (``VIDEO``): the image kernel on the centre tap of every time kernel gives exactly the
    image model's logits on a static 8-frame clip (4 token frames, 2 key frames: the cls key enters once per key
    frame) and on a one-frame clip (zero-padded). With a single cls key the static clip's cls weight shrinks."""
    image = _image()
    video, adapted = _video(image, "centre", **VIDEO)
    assert "stages.0.patch_embed.proj.weight: [16, 3, 1, 7, 7] -> [16, 3, 3, 7, 7]" in adapted
    assert "stages.2.blocks.1.attn.conv_proj_k.conv.weight: [48, 1, 1, 3, 3] -> [48, 1, 3, 3, 3]" in adapted
    x = input64(1, 3, 64, 64)
    expected = _logits(image, x)
    assert rel_l2(_logits(video, _static(x, 8)), expected) < 1e-12
    assert rel_l2(_logits(video, x.unsqueeze(2)), expected) < 1e-12
    single, _ = _video(image, "centre", **VIDEO, cls_key_per_frame=False)
    assert rel_l2(_logits(single, x.unsqueeze(2)), expected) < 1e-12  # one key frame: the same model
    assert rel_l2(_logits(single, _static(x, 8)), expected) > 1e-4


def test_average_inflation_changes_the_first_and_last_frames_of_static_clips():
    """Kernel / kt on every tap: the zero padding in time hides part of the kernel from the first and last frames,
    so even a static clip differs from the image model; with time kernels of 1 nothing is inflated."""
    image = _image()
    video, _ = _video(image, "average", **VIDEO)
    key = "stages.1.blocks.0.attn.conv_proj_q.conv.weight"
    kernel = video.state_dict()[key]
    torch.testing.assert_close(3 * kernel[:, :, 1], image.state_dict()[key][:, :, 0])
    x = input64(1, 3, 64, 64)
    assert rel_l2(_logits(video, _static(x, 8)), _logits(image, x)) > 1e-3
    plain, adapted = _video(image, "average")
    assert adapted == [] and rel_l2(_logits(plain, _static(x, 3)), _logits(image, x)) < 1e-12


def test_video_grids_and_odd_clip_lengths():
    """Embedding time stride 2 (kernel 3, padding 1): 8 frames -> 4, 5 -> 3; keys strided by 2 in time: 3 -> 2."""
    model = create_model("cvt_13_in1k", num_classes=5, **SMALL, **VIDEO, input_size=(8, 64, 64))
    assert [grid for *_, grid in model.stage_specs()] == [(4, 16, 16), (4, 8, 8), (4, 4, 4)]
    maps, cls = model.forward_stages(torch.zeros(1, 3, 5, 64, 64))
    assert [tuple(m.shape[2:]) for m in maps] == [g for *_, g in model.stage_specs((5, 64, 64))] == [
        (3, 16, 16), (3, 8, 8), (3, 4, 4)]  # fmt: skip
    assert cls.shape == (1, 48) and model(torch.zeros(1, 3, 5, 64, 64)).shape == (1, 5)


# ------------------------------------------------------------------------------------- attention kernels


def test_fused_attention_equals_explicit_outputs_and_gradients():
    x = input64(2, 3, 4, 64, 64)
    results = []
    for impl in ("sdpa", "math"):
        model = _randomize(create_model("cvt_13_in1k", attention=impl, drop_path_rate=0.0, **SMALL, **VIDEO), 4)
        out = model.double().train()(x)  # no dropout or drop path; BatchNorm on batch statistics on both sides
        out.square().sum().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    (out_f, grads_f), (out_m, grads_m) = results
    assert rel_l2(out_f, out_m) < 1e-12
    # absolute slack for the key biases, whose true gradient is 0 (a shift of every key logit of a row): 1e-17 noise
    for a, b in zip(grads_f, grads_m):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-14)


# ----------------------------------------------------------------------------- what the engine and tools use


def test_activation_checkpointing_gives_the_same_gradients():
    x = input64(2, 3, 2, 32, 32).float()
    grads = []
    for ckpt in (False, True):
        model = _randomize(create_model("cvt_13_in1k", act_checkpoint=ckpt, drop_path_rate=0.0, **SMALL), 6)
        model.train()(x).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_engine_interfaces():
    """Logits and features (the normed cls token), the cls token without weight decay, layer ids for layer decay
    (every parameter in [0, depth + 1]), the stage table and drop-path rates at the published size."""
    model = create_model("cvt_13_in1k", num_classes=5, **SMALL_OURS)
    x = torch.zeros(1, 3, 2, 64, 64)
    assert model(x).shape == (1, 5) and model.forward_features(x).shape == (1, model.num_features) == (1, 48)
    assert model.no_weight_decay() == {"stages.2.cls_token"} and model.position_tables() == {}
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["stages.0.patch_embed.proj.weight"] == 0 and ids["stages.0.blocks.0.attn.proj_q.weight"] == 1
    assert ids["stages.1.patch_embed.norm.weight"] == ids["stages.1.blocks.0.norm1.weight"] == 2
    assert ids["stages.2.cls_token"] == ids["stages.2.blocks.0.mlp.fc1.weight"] == 4
    assert ids["stages.2.blocks.2.attn.conv_proj_v.bn.bias"] == 6 and ids["norm.weight"] == ids["head.weight"] == 7
    groups = param_groups(model, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr_scale"] for g in groups} == {0.5**k for k in range(8)}
    with torch.device("meta"):
        published = create_model("cvt_13_in1k")
    table = stage_table(published)
    # stochastic depth as the official DROP_PATH_RATE [0, 0, 0.1]: none in stages 1-2, rising over stage 3
    rates = [getattr(block.drop_path, "p", 0.0) for stage in published.stages for block in stage.blocks]
    assert rates == [0.0] * 3 + torch.linspace(0, 0.1, 10).tolist()
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 0), 64, 1, (1, 56, 56)),
        ((1, 2), 192, 3, (1, 28, 28)),
        ((3, 12), 384, 6, (1, 14, 14)),
    ]


def test_a_cvt_config_builds_the_configured_model():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "cvt", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "64", "CVT.EMBED_DIMS", [16, 32, 48], "CVT.DEPTHS", [1, 1, 2],
                         "CVT.NUM_HEADS", [1, 2, 3], "CVT.QKV_TIME_KERNEL", "3",
                         "CVT.MLP_ACT", "quick_gelu"])  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, ConvolutionalVisionTransformer)
    assert model.cfg == CvTConfig(num_classes=7, input_size=(4, 64, 64), qkv_time_kernel=3, mlp_act="quick_gelu",
                                  head_dropout=0.5, **SMALL)  # fmt: skip
    assert model(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 7)


def test_formats_are_detected_and_unknown_ones_are_one_line():
    assert detect_cvt_format(create_model("cvt_13_in1k", **SMALL).state_dict()) == "cvt"
    with pytest.raises(CheckpointError) as info:
        load_pretrained(create_model("cvt_13_in1k", **SMALL), {"blocks.0.norm1.weight": torch.zeros(3)})
    assert "not a CvT checkpoint of a known layout" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_heads": (1, 3)}, "need one entry per stage"),
        ({"num_heads": (1, 5, 6)}, "stage 1 width 192 is not divisible by num_heads=5"),
        ({"qkv_time_kernel": 2}, "time kernel 2 must be odd"),
        ({"kv_time_stride": 2}, r"time stride 2 with time kernel 1 \(qkv_time_kernel\) must be in \[1, kernel\]"),
        ({"mlp_act": "relu"}, "mlp_act='relu' is not one of"),
        ({"input_size": (224, 224)}, r"input_size=\[224, 224\] must be three positive sizes"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        CvTConfig(**changes)
