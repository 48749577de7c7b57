"""The LeViT family against timm (``levit_128s`` linear mode, ``levit_conv_128s`` conv mode) through load_pretrained,
in float64 with every tensor randomised (the zero-initialised residual BN weights and the BN running statistics
too), compared in eval mode. LeViT-128S is small (0.3 GFLOPs), so the published size runs by default. Also: biases
never go stale, image weights in a video model (T = 1, static clips, centre vs average inflation), fused ==
explicit attention, and what the engine and tools use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine.optim import param_groups
from mvit_video.models import CheckpointError, LeViT, LeViTConfig, build_model, create_model, load_pretrained
from mvit_video.models.formats.levit import detect_levit_format
from mvit_video.models.levit import offset_bias_index
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2
from tests.models.equivalence import input64, load_exact, same_logits
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")

# reduced copies (the same code paths: three stages, two shrink attentions, odd grids at 160 px)
SMALL = {"embed_dim": (32, 48, 64), "key_dim": 8, "depths": (1, 2, 1), "num_heads": (2, 3, 4)}
VIDEO = {"input_size": (4, 64, 64), "stem_time_kernel": (3, 1, 3, 1), "stem_time_stride": (1, 2, 1, 1),
         "shrink_time_stride": (2, 1)}  # fmt: skip


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


def _timm(name: str = "levit_128s", seed: int = 1, **kw) -> nn.Module:
    return _randomize(timm.create_model(name, pretrained=False, **kw), seed)





# ------------------------------------------------------------------------------------------------------ timm


TIMM_SMALL = {("depth" if k == "depths" else k): v for k, v in SMALL.items()}
MODES = [("levit_128s", "levit"), ("levit_conv_128s", "levit_conv")]


@pytest.mark.parametrize(
    "name,fmt,size,last_grid",
    [
        ("levit_128s", "levit", 224, (1, 4, 4)),  # grids 14, 7, 4
        ("levit_conv_128s", "levit_conv", 160, (1, 3, 3)),  # 10, 5, 3: queries at (0, 2, 4) of 5 (ceil division)
    ],
)
def test_reduced_levit_equals_timm(name, fmt, size, last_grid):
    """Both of timm's modes (its conv mode: the same weights as 1 x 1 convs); logits are the mean of both heads."""
    theirs = _timm(name, img_size=size, **TIMM_SMALL)
    ours = load_exact(create_model("levit_128s_in1k", input_size=(1, size, size), **SMALL), theirs, fmt)
    assert _params(ours) == _params(theirs) and ours.stage_specs()[2][3] == last_grid
    assert same_logits(ours, theirs, input64(1, 3, size, size)) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", MODES)
def test_levit_128s_equals_timm(name, fmt):
    """The published size (about 10 s in float64 on two busy cores)."""
    theirs = _timm(name)
    ours = load_exact(create_model("levit_128s_in1k"), theirs, fmt)
    assert _params(ours) == _params(theirs) == 7_777_058
    assert same_logits(ours, theirs, input64(2, 3, 224, 224)) < 1e-10


def test_both_heads_are_averaged_and_returned_for_distillation():
    theirs = _timm(img_size=64, **TIMM_SMALL)
    ours = load_exact(create_model("levit_128s_in1k", input_size=(1, 64, 64), **SMALL), theirs, "levit").double().eval()
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        head, dist = ours.forward_heads(x)
        features = theirs.double().eval().forward_features(x).mean(dim=1)
        assert rel_l2(head, theirs.head(features)) < 1e-10 and rel_l2(dist, theirs.head_dist(features)) < 1e-10
        assert rel_l2(head, dist) > 1e-2
    plain = create_model("levit_128s_in1k", distilled=False, input_size=(1, 64, 64), **SMALL)
    assert plain.head_dist is None and _params(plain) == _params(ours) - 64 * 1000 - 1000 - 2 * 64


def test_biases_never_go_stale():
    """Loaded after an eval forward, changed in place, cast after it: the new biases act (timm would keep the
    cached ones until ``train()`` / ``eval()`` / a cast); ours keep a gathered copy only while the table is
    unchanged."""
    model = create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64)).double().eval()
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for key, value in state.items():
            if key.endswith("attention_biases"):
                state[key] = input64(*value.shape, seed=9)
        model.load_state_dict(state)
        after = model(x)
        assert rel_l2(after, before) > 1e-3
        fresh = create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64)).double().eval()
        fresh.load_state_dict(state)
        torch.testing.assert_close(after, fresh(x), rtol=0, atol=0)
        for name, table in model.named_parameters():  # an in-place change (an optimizer step) acts too
            if name.endswith("attention_biases"):
                table.mul_(-1.0)
                fresh.get_parameter(name).mul_(-1.0)
        stepped = model(x)
        assert rel_l2(stepped, after) > 1e-3
        torch.testing.assert_close(stepped, fresh(x), rtol=0, atol=0)
        torch.testing.assert_close(model.float()(x.float()), fresh.float()(x.float()), rtol=0, atol=0)  # a cast


def test_inference_folds_batch_norm_and_never_goes_stale():
    """Without autograd in eval mode, each Linear+BN runs as one folded matmul: equal to the unfolded path (autograd
    on) in float64; BN statistics or weights changed in place after a forward (a loaded checkpoint, a precise-BN
    update) act on the next forward."""
    model = _randomize(create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64)), seed=4).double().eval()
    x = input64(2, 3, 64, 64)
    unfolded = model(x).detach()
    with torch.inference_mode():
        folded = model(x)
    assert rel_l2(folded, unfolded) < 1e-13
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("bn.running_var"):
                buffer.mul_(2.0)
        changed = model(x)
    assert rel_l2(changed, folded) > 1e-3
    assert rel_l2(changed, model(x).detach()) < 1e-13


def test_offset_index_is_timms_on_one_frame_and_absolute_in_time():
    from timm.models.levit import AttentionDownsample

    ref = AttentionDownsample(16, 16, key_dim=8, num_heads=2, resolution=5, stride=2)
    assert torch.equal(offset_bias_index((1, 5, 5), (1, 2, 2)), ref.attention_bias_idxs)
    index = offset_bias_index((3, 2, 2))
    assert index.shape == (12, 12) and index[0, 11] == (2 * 2 + 1) * 2 + 1 and index[11, 0] == index[0, 11]
    assert torch.equal(index, index.t()) and int(index.max()) == 11


# --------------------------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("ours,theirs", [("levit_128s_in1k", "levit_128s"), ("levit_128_in1k", "levit_128"),
                                         ("levit_192_in1k", "levit_192"), ("levit_256_in1k", "levit_256"),
                                         ("levit_384_in1k", "levit_384")])  # fmt: skip
def test_published_parameter_counts_equal_timm(ours, theirs):
    with torch.device("meta"):
        count = _params(create_model(ours))
        assert count == _params(timm.create_model(theirs, pretrained=False))
    assert ours != "levit_128s_in1k" or count == 7_777_058  # 7.78M


# --------------------------------------------------------------------------------------------- image -> video


def test_image_input_is_a_one_frame_clip():
    model = _randomize(create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64)), 3).double().eval()
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


def _inflated(inflate: str) -> tuple[nn.Module, nn.Module, list[str]]:
    image = _randomize(create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64)), 7).double().eval()
    video = create_model("levit_128s_in1k", **SMALL, **VIDEO)
    report = load_pretrained(video, image.state_dict(), inflate=inflate)
    assert report.missing == [] and report.unexpected == []
    return image, video.double().eval(), report.adapted


def test_centre_inflation_keeps_static_clips_equal_to_the_image_model():
    """Image weights (grids 4, 2, 1) in a video model (stem time kernels 3, 1, 3, 1 and a time stride 2; grids
    2x4x4, 1x2x2 after a shrink of time stride 2, 1x1x1): stem kernels on the centre tap, bias tables repeated over
    |dt|. A static 4-frame clip gives the image's logits."""
    image, video, adapted = _inflated("centre")
    assert "stem.conv1.linear.weight: [4, 3, 1, 3, 3] -> [4, 3, 3, 3, 3]" in adapted
    assert "stages.0.blocks.0.attn.attention_biases: [2, 16] -> [2, 32]" in adapted
    assert "stages.1.downsample.attn_downsample.attention_biases: [4, 16] -> [4, 32]" in adapted
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_l2(video(x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), image(x)) < 1e-12


def test_average_inflation_changes_the_first_and_last_frames_of_static_clips():
    """Spread over three taps (w / 3 each), the zero-padded ends of a static clip see two thirds of the kernel (the
    logits differ by about 3e-4 here, against 1e-16 with the centre tap)."""
    image, video, _ = _inflated("average")
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_l2(video(x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), image(x)) > 1e-5


def test_refused_inflation_and_other_grids_are_one_line():
    image = create_model("levit_128s_in1k", **SMALL, input_size=(1, 64, 64))
    video = create_model("levit_128s_in1k", **SMALL, input_size=(2, 64, 64))
    with pytest.raises(CheckpointError, match="attention_biases is a 2-D attention-bias table") as info:
        load_pretrained(video, image.state_dict(), inflate=None)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"fit a 1x4x4 token grid \(input 1x64x64\); this input of 1x7x7 tokens"):
        image(torch.zeros(2, 3, 112, 112))


# ------------------------------------------------------------------------------------------- attention kernels


def test_fused_attention_equals_explicit_outputs_and_gradients():
    """SDPA with the gathered bias as its additive mask == the explicit reference, in float64, on a video grid
    (gradients compared as one vector: the last shrink's single query has near-zero gradients, 1e-10 in norm)."""
    x = input64(2, 3, 4, 64, 64)
    results = []
    for impl in ("sdpa", "math"):
        model = _randomize(create_model("levit_128s_in1k", attention=impl, **SMALL, **VIDEO), 4).double().eval()
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    (out_f, grads_f), (out_m, grads_m) = results
    assert rel_l2(out_f, out_m) < 1e-12
    assert rel_l2(torch.cat([g.flatten() for g in grads_f]), torch.cat([g.flatten() for g in grads_m])) < 1e-12


# ------------------------------------------------------------------------------- what the engine and tools use


def test_activation_checkpointing_gives_the_same_gradients():
    x = input64(2, 3, 4, 64, 64).float()
    grads = []
    for ckpt in (False, True):
        model = _randomize(create_model("levit_128s_in1k", act_checkpoint=ckpt, **SMALL, **VIDEO), 6).train()
        model(x).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_engine_interfaces():
    """Logits and features, timm's no-weight-decay names, layer ids (shrink attentions are blocks of their own),
    the stage table."""
    model = create_model("levit_128s_in1k", num_classes=5, **SMALL, **VIDEO)
    x = torch.zeros(2, 3, 4, 64, 64)
    assert model(x).shape == (2, 5) and model.forward_features(x).shape == (2, model.num_features) == (2, 64)
    assert model.no_weight_decay() == {n for n, _ in model.named_parameters() if "attention_biases" in n}
    ids = {n: model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids["stem.conv1.linear.weight"] == 0 and ids["stages.0.blocks.0.attn.qkv.linear.weight"] == 1
    assert (
        ids["stages.1.downsample.attn_downsample.kv.linear.weight"] == ids["stages.1.downsample.mlp.ln1.bn.weight"] == 2
    )
    assert ids["stages.1.blocks.1.mlp.ln2.bn.bias"] == 4 and ids["stages.2.downsample.mlp.ln1.bn.weight"] == 5
    assert ids["stages.2.blocks.0.attn.attention_biases"] == 6 == model.num_layers
    assert ids["head.linear.weight"] == ids["head_dist.bn.weight"] == 7
    groups = param_groups(model, 0.05, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr_scale"] for g in groups} == {0.5**k for k in range(8)}
    with torch.device("meta"):
        table = stage_table(create_model("levit_128s_in1k"))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in table] == [
        ((0, 1), 128, 4, (1, 14, 14)),
        ((2, 5), 256, 6, (1, 7, 7)),
        ((6, 10), 384, 8, (1, 4, 4)),
    ]


def test_a_levit_config_builds_the_configured_model():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "levit", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "64", "LEVIT.EMBED_DIM", [32, 48, 64], "LEVIT.KEY_DIM", "8",
                         "LEVIT.DEPTHS", [1, 2, 1], "LEVIT.NUM_HEADS", [2, 3, 4], "LEVIT.STEM_TIME_KERNEL", [3, 1, 3, 1],
                         "LEVIT.STEM_TIME_STRIDE", [1, 2, 1, 1], "LEVIT.SHRINK_TIME_STRIDE", [2, 1]])  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, LeViT)
    assert model.cfg == LeViTConfig(num_classes=7, head_dropout=0.5, **SMALL, **VIDEO)
    assert model.eval()(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 7)


def test_formats_are_detected_and_unknown_ones_are_one_line():
    assert detect_levit_format(create_model("levit_128s_in1k", **SMALL).state_dict()) == "levit"
    with pytest.raises(CheckpointError) as info:
        load_pretrained(create_model("levit_128s_in1k", **SMALL), {"blocks.0.norm1.weight": torch.zeros(3)})
    assert "not a LeViT checkpoint of a known layout" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_heads": (4, 6)}, "need one entry per stage"),
        ({"shrink_time_stride": (1,)}, r"needs one entry per shrink attention \(2: stages 1..\)"),
        ({"stem_time_kernel": (3, 1, 1)}, "must be four positive sizes"),
        ({"activation": "gelu"}, "is not one of"),
        ({"embed_dim": (100, 256, 384)}, "must be divisible by 8"),
    ],
)
def test_config_mistakes_are_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        LeViTConfig(**changes)
