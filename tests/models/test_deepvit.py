"""DeepViT in the ViT family against the official code, which has no pip package: its key layout rebuilt from the
official constructors, its forward pass re-derived here from the official formulas (functional, einsum over heads,
BatchNorm in eval mode with randomised running statistics), timm ViT for the degenerate case without re-attention,
and the image <-> video identities. Everything in float64 with every tensor randomised; reduced depth and 64-pixel
images by default, the published size under -m slow.

The official facts used (dvit_repo ``models/deep_vision_transformer.py`` and ``models/layers.py``):
- ``deepvit_S``: ``embed_dim=396, depth=[False] * 16, apply_transform=[False] * 11 + [True] * 5, num_heads=12,
  mlp_ratio=3, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), transform_scale=True, use_cnn_embed=True,
  scale_adjustment=0.5``; ``re_atten`` keeps its default True, so every block takes the scale-adjusted path.
- ``PatchEmbed_CNN``: ``conv1`` Conv2d(3, 64, 7, stride 2, padding 3, bias=False), ``bn1`` BatchNorm2d(64), ReLU,
  ``conv2`` Conv2d(64, 64, 3, stride 1, padding 1, bias=False), ``bn2``, ReLU, ``proj`` Conv2d(64, embed_dim,
  patch_size // 2, stride patch_size // 2) with bias.
- ``ReAttention``: ``qkv`` Linear(dim, dim * 3, bias), ``attn = softmax(q k^T * head_dim ** -0.5)``, then (only
  where ``apply_transform``) ``attn = var_norm(reatten_matrix(attn)) * head_dim ** -0.5`` with ``reatten_matrix``
  Conv2d(heads, heads, 1) (bias) and ``var_norm`` BatchNorm2d(heads); ``proj`` Linear(dim, dim).
- ``Block`` with ``re_atten``: ``x = x + attn(norm1(x * s)) / s``, ``x = x + mlp(norm2(x * s)) / s``.
- ``DeepVisionTransformer``: ``cls_token`` (1, 1, C), ``pos_embed`` (1, 197, C), ``blocks``, ``norm``, ``head``;
  the cls token after ``norm`` feeds ``head``.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.models import ViTConfig, create_model, load_pretrained, model_config, model_config_from_cfg
from mvit_video.models.layers.attention import ReAttention
from tests.conftest import rel_l2
from tests.models.test_convert import randomize_

timm = pytest.importorskip("timm")

BN_EPS, LN_EPS = 1e-5, 1e-6  # PyTorch's BatchNorm2d default (the official code keeps it); the official LayerNorm
SMALL = {"depth": 3, "reattention_depth": 2, "input_size": (1, 64, 64)}  # reduced DeepViT-S: 3 blocks, the last 2 mixing


# ------------------------------------------------------------------------------------- the official layout


def official_layout(depth: int = 16, mixing: int = 5, dim: int = 396, heads: int = 12, grid: int = 14,
                    classes: int = 1000, stem: int = 64, patch: int = 16, mlp_ratio: int = 3) -> dict[str, tuple]:  # fmt: skip
    """The official ``DeepVisionTransformer`` state dict (names -> shapes) for ``deepvit_S`` (the defaults), from its
    constructors: the CNN stem, cls token, position table, blocks (re-attention parts in the last ``mixing``),
    final norm, head. BatchNorm buffers included (``num_batches_tracked`` is a 0-d tensor)."""

    def bn(prefix: str, channels: int) -> dict[str, tuple]:
        return {f"{prefix}.{n}": (channels,) for n in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()}

    half = patch // 2
    layout = {"cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim),
              "patch_embed.conv1.weight": (stem, 3, 7, 7), **bn("patch_embed.bn1", stem),
              "patch_embed.conv2.weight": (stem, stem, 3, 3), **bn("patch_embed.bn2", stem),
              "patch_embed.proj.weight": (dim, stem, half, half), "patch_embed.proj.bias": (dim,)}  # fmt: skip
    hidden = dim * mlp_ratio
    for i in range(depth):
        p = f"blocks.{i}."
        layout |= {p + "norm1.weight": (dim,), p + "norm1.bias": (dim,)}
        if i >= depth - mixing:
            layout |= {p + "attn.reatten_matrix.weight": (heads, heads, 1, 1), p + "attn.reatten_matrix.bias": (heads,)}
            layout |= bn(p + "attn.var_norm", heads)
        layout |= {p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
                   p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                   p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
                   p + "mlp.fc1.weight": (hidden, dim), p + "mlp.fc1.bias": (hidden,),
                   p + "mlp.fc2.weight": (dim, hidden), p + "mlp.fc2.bias": (dim,)}  # fmt: skip
    return layout | {"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)}


def _is_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _layout_params(layout: dict[str, tuple]) -> int:
    return sum(math.prod(shape) for name, shape in layout.items() if not _is_buffer(name))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


STEM_KERNELS = ("patch_embed.conv1.weight", "patch_embed.conv2.weight", "patch_embed.proj.weight")


def _our_layout(model: nn.Module) -> dict[str, tuple]:
    """Our state dict's names and shapes, our 3-D stem kernels (O, I, 1, k, k) read as the official 2-D ones."""
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key in STEM_KERNELS:
        assert layout[key][2] == 1, key
        layout[key] = layout[key][:2] + layout[key][3:]
    return layout


def test_deepvit_s_layout_and_parameter_count_equal_the_official():
    with torch.device("meta"):
        model = create_model("deepvit_s_in1k")
    expected = official_layout()
    assert _our_layout(model) == expected
    assert _params(model) == _layout_params(expected) == 27_312_632
    mixing = [i for i, block in enumerate(model.blocks) if isinstance(block.attn, ReAttention)]
    assert mixing == list(range(11, 16))


# ------------------------------------------------------------------ the official forward, re-derived here


def random_state(layout: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """A float64 state dict of ``layout``: affine scales near 1, BatchNorm variances in [0.5, 1.5], the rest small."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
            continue
        noise = torch.randn(shape, generator=g, dtype=torch.float64)
        if name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif name.endswith("running_mean"):
            state[name] = 0.2 * noise
        else:
            state[name] = 1.0 + 0.1 * noise if len(shape) == 1 and name.endswith("weight") else 0.05 * noise
    return state


def _bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    """BatchNorm in eval mode, written out: per channel (dim 1), running statistics."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = sd[prefix + ".running_mean"].view(shape), sd[prefix + ".running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + BN_EPS) * sd[prefix + ".weight"].view(shape) + sd[prefix + ".bias"].view(shape)


def official_attention(x: torch.Tensor, sd: dict, p: str, heads: int, mixing: bool, transform_scale: bool = True):
    """The official ``ReAttention.forward`` (eval), in einsum form; ``p`` is the attention's prefix."""
    B, N, C = x.shape
    d = C // heads
    q, k, v = F.linear(x, sd[p + "qkv.weight"], sd[p + "qkv.bias"]).reshape(B, N, 3, heads, d).unbind(2)
    attn = (torch.einsum("bnhd,bmhd->bhnm", q, k) * d**-0.5).softmax(dim=-1)
    if mixing:
        mix = sd[p + "reatten_matrix.weight"][:, :, 0, 0]  # (out head g, in head h)
        attn = torch.einsum("gh,bhnm->bgnm", mix, attn) + sd[p + "reatten_matrix.bias"].view(1, -1, 1, 1)
        attn = _bn(attn, sd, p + "var_norm") * (d**-0.5 if transform_scale else 1.0)
    out = torch.einsum("bhnm,bmhd->bnhd", attn, v).reshape(B, N, C)
    return F.linear(out, sd[p + "proj.weight"], sd[p + "proj.bias"])


def official_stem(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """``PatchEmbed_CNN.forward`` on images (B, 3, H, W) -> tokens (B, N, C)."""
    x = F.relu(_bn(F.conv2d(x, sd["patch_embed.conv1.weight"], stride=2, padding=3), sd, "patch_embed.bn1"))
    x = F.relu(_bn(F.conv2d(x, sd["patch_embed.conv2.weight"], stride=1, padding=1), sd, "patch_embed.bn2"))
    w = sd["patch_embed.proj.weight"]
    return F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)


def official_forward(x: torch.Tensor, sd: dict, depth: int, mixing: int, heads: int = 12, s: float = 0.5):
    """``DeepVisionTransformer.forward`` of ``deepvit_S`` (eval) from a state dict of the official layout."""
    x = official_stem(x, sd)
    C = x.shape[-1]
    x = torch.cat((sd["cls_token"].expand(x.shape[0], -1, -1), x), dim=1) + sd["pos_embed"]

    def ln(t: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.layer_norm(t, (C,), sd[prefix + ".weight"], sd[prefix + ".bias"], LN_EPS)

    for i in range(depth):
        p = f"blocks.{i}."
        x = x + official_attention(ln(x * s, p + "norm1"), sd, p + "attn.", heads, i >= depth - mixing) / s
        hidden = F.gelu(F.linear(ln(x * s, p + "norm2"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        x = x + F.linear(hidden, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"]) / s
    return F.linear(ln(x, "norm")[:, 0], sd["head.weight"], sd["head.bias"])


def _image(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _load_official(model: nn.Module, state: dict, **kw) -> nn.Module:
    """``state`` loaded into ``model`` in float64 (cast first: a float32 copy would round the float64 tensors)."""
    model = model.double()
    report = load_pretrained(model, state, **kw)
    assert report.source_format == "vit" and report.missing == [] and report.unexpected == [], report.summary()
    return model.eval()


def test_reduced_deepvit_s_equals_the_official_formulas():
    """An official-layout file (2-D kernels, BatchNorm statistics) loads with nothing missing or left over, and
    the model computes the official forward: CNN stem, scale adjustment in every block, re-attention in the last."""
    layout = official_layout(depth=3, mixing=2, grid=4)
    state = random_state(layout, seed=1)
    model = _load_official(create_model("deepvit_s_in1k", **SMALL), state)
    assert _params(model) == _layout_params(layout)
    x = _image()
    with torch.no_grad():
        assert rel_l2(model(x), official_forward(x, state, depth=3, mixing=2)) < 1e-12


def test_reattention_equals_the_official_formula_with_running_statistics():
    attn = randomize_(ReAttention(396, 12, scale=True), seed=2)
    attn.var_norm.running_mean.normal_(0, 0.2, generator=torch.Generator().manual_seed(3))
    attn.var_norm.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(4))
    attn = attn.double().eval()
    sd = dict(attn.state_dict())
    x = torch.randn(2, 17, 396, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        got = attn(x)
        assert rel_l2(got, official_attention(x, sd, "", 12, mixing=True)) < 1e-12
        # the running statistics and the scale are part of it: other values, other outputs
        assert rel_l2(got, official_attention(x, sd, "", 12, mixing=True, transform_scale=False)) > 0.1
        sd["var_norm.running_var"] = sd["var_norm.running_var"] * 2
        assert rel_l2(got, official_attention(x, sd, "", 12, mixing=True)) > 0.05


@pytest.mark.slow
def test_deepvit_s_equals_the_official_formulas():
    state = random_state(official_layout(), seed=6)
    model = _load_official(create_model("deepvit_s_in1k"), state)
    x = _image(1, 224)
    with torch.no_grad():
        assert rel_l2(model(x), official_forward(x, state, depth=16, mixing=5)) < 1e-10


# ----------------------------------------------------------------- degenerate case: timm's ViT blocks


def _timm_vit(depth: int):
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return TimmViT(img_size=64, patch_size=16, embed_dim=396, depth=depth, num_heads=12, mlp_ratio=3.0, qkv_bias=True)


def test_without_reattention_and_adjustment_equals_timm_vit():
    """Re-attention off in every block, no scale adjustment, the plain patch embedding: timm's ViT."""
    theirs = randomize_(_timm_vit(depth=2), seed=7).double().eval()
    ours = create_model("deepvit_s_in1k", depth=2, reattention_depth=0, scale_adjustment=1.0, stem="patch",
                        input_size=(1, 64, 64))  # fmt: skip
    _load_official(ours, theirs.state_dict())
    assert _params(ours) == _params(theirs)
    x = _image()
    with torch.no_grad():
        assert rel_l2(ours(x), theirs(x)) < 1e-12


def test_scale_adjusted_block_equals_timm_block_with_rescaled_weights():
    """A DeepViT block without re-attention computes ``x + f(norm(x * s)) / s``; since ``LayerNorm_eps(s x)`` is
    ``LayerNorm_{eps / s^2}(x)``, it equals timm's block with LayerNorm eps 1e-6 / s^2 and ``attn.proj`` and
    ``mlp.fc2`` divided by s."""
    from timm.models.vision_transformer import Block as TimmBlock

    s = 0.5
    ours = create_model("deepvit_s_in1k", depth=1, reattention_depth=0, input_size=(1, 64, 64)).blocks[0]
    ours = randomize_(ours, seed=8).double().eval()
    theirs = TimmBlock(396, 12, mlp_ratio=3.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=LN_EPS / s**2))
    state = {k: v / s if k.startswith(("attn.proj.", "mlp.fc2.")) else v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    theirs = theirs.double().eval()
    x = torch.randn(2, 17, 396, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        got = ours(x, (1, 4, 4), 1)
        assert rel_l2(got, theirs(x)) < 1e-12
        assert rel_l2(got, x + 2 * (theirs(x) - x)) > 0.1  # the adjustment is not a no-op


# --------------------------------------------------------------------------------------- image <-> video


def test_image_input_is_a_one_frame_clip():
    model = randomize_(create_model("deepvit_s_in1k", **SMALL), seed=10)
    for name, t in model.state_dict().items():
        if name.endswith("running_var"):
            t.uniform_(0.5, 1.5)
    model = model.double().eval()
    x = _image(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


def test_centre_inflated_stem_keeps_a_one_frame_clip_equal_to_the_image_model():
    """The official image layout in a video DeepViT (stem convs 3 frames, first conv strided 2 in time, tubelets of
    2, 8 frames): every 2-D kernel inflated onto its centre (the tubelet on its first tap), a one-frame clip gives
    the official image forward."""
    state = random_state(official_layout(depth=3, mixing=2, grid=4), seed=11)
    video = create_model("deepvit_s_in1k", depth=3, reattention_depth=2, input_size=(8, 64, 64), tubelet_size=2,
                         stem_temporal_kernel=3, stem_temporal_stride=2)  # fmt: skip
    assert video.patch_dims == (2, 4, 4)
    report = load_pretrained(video.double(), state, inflate="centre")
    assert report.missing == [] and report.unexpected == []
    assert {note.split(":")[0] for note in report.adapted} >= {*STEM_KERNELS, "pos_embed"}
    video = video.eval()
    x = _image()
    with torch.no_grad():
        assert rel_l2(video(x.unsqueeze(2)), official_forward(x, state, depth=3, mixing=2)) < 1e-12


# ------------------------------------------------------------------------------------------ config and errors


def test_vit_section_builds_deepvit_s():
    """The derived ``VIT`` section carries every DeepViT field, so a YAML can describe the variant."""
    expected = model_config("deepvit_s_in1k")
    cfg = get_cfg()
    opts = ["MODEL.ARCH", "vit", "MODEL.NUM_CLASSES", 1000, "DATA.NUM_FRAMES", 1, "DATA.TRAIN_CROP_SIZE", 224]
    for name in ("embed_dim", "depth", "num_heads", "mlp_ratio", "stem", "reattention_depth", "reattention_scale",
                 "scale_adjustment"):  # fmt: skip
        opts += [f"VIT.{name.upper()}", getattr(expected, name)]
    cfg.merge_from_list(opts)
    built = model_config_from_cfg(cfg)
    deepvit = ("stem", "stem_temporal_kernel", "stem_temporal_stride", "reattention_depth", "reattention_scale",
               "scale_adjustment", "embed_dim", "depth", "num_heads", "mlp_ratio", "input_size", "patch_size")  # fmt: skip
    assert {k: getattr(built, k) for k in deepvit} == {k: getattr(expected, k) for k in deepvit}


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"reattention_depth": 17}, "reattention_depth=17"),
        ({"stem": "patch", "stem_temporal_kernel": 3}, "stem='cnn' only"),
        ({"stem_temporal_kernel": 2}, "odd stem_temporal_kernel"),
        ({"patch_size": 15}, "even patch_size"),
        ({"attention_type": "divided"}, "joint attention blocks only"),
        ({"scale_adjustment": 0.0, "reattention_depth": 0}, "must be > 0"),
    ],
)
def test_invalid_deepvit_settings_are_one_line_errors(changes, match):
    with pytest.raises(ValueError, match=match) as info:
        model_config("deepvit_s_in1k").replace(**changes)
    assert "\n" not in str(info.value)


def test_plain_vit_configs_are_unchanged_by_the_deepvit_options():
    cfg = ViTConfig()
    assert (cfg.stem, cfg.reattention_depth, cfg.scale_adjustment) == ("patch", 0, 1.0)
    assert cfg.patch_dims == (1, 14, 14)
