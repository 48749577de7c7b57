"""CeiT against the official code, which has no pip package: its key layout rebuilt from the official constructors,
its forward pass re-derived here from the official formulas (functional, 2-D ops on images, einsum over heads,
BatchNorm in eval mode with randomised running statistics), timm's DeiT blocks for the degenerate case (LeFF
replaced by the MLP, no LCA), and the image <-> video identities. Everything in float64 with every tensor randomised;
reduced depth and 64-pixel images by default, the published size under -m slow.

The official facts used (coeusguo/ceit ``ceit_model.py``):
- ``ceit_tiny_patch16_224``: ``Image2Tokens()`` (``conv`` Conv2d(3, 64, 7, stride 2, padding 3, bias=False),
  ``bn`` BatchNorm2d(64), ``maxpool`` MaxPool2d(3, 2, 1); forward conv -> bn -> maxpool, no activation) as the
  ``HybridEmbed`` backbone, whose ``proj`` is Conv2d(64, 192, 4, stride 4) with bias; ``embed_dim=192, depth=12,
  num_heads=3, mlp_ratio=4, qkv_bias=True``, LayerNorm eps 1e-6.
- ``Block`` ('leff'): ``x = x + attn(norm1(x))``, ``x = x + leff(norm2(x))``; it also returns ``x[:, 0]``.
- ``LocallyEnhancedFeedForward`` (with_bn): split off the cls token, the rest reshaped to its square grid; ``conv1``
  1x1 (bias) -> ``bn1`` -> GELU -> ``conv2`` depthwise 3x3 padding 1 (bias) -> ``bn2`` -> GELU -> ``conv3`` 1x1
  (bias) -> ``bn3``; the cls token it was given is concatenated back unchanged.
- ``Attention``: ``softmax(q k^T * head_dim ** -0.5) v``, ``proj``.
- ``CeIT.forward_features``: cat(cls, tokens) + ``pos_embed``; the blocks' cls tokens stacked (B, depth, C) +
  ``pos_layer_embed``; ``lca`` (a 'lca' ``Block``: ``x + attn(norm1(x))``, ``x + feedforward(norm2(x))`` with an
  ``Mlp`` fc1 -> GELU -> fc2, returns ``x[:, -1]``); ``norm``; then ``head``.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.models import CeiT, CeiTConfig, create_model, load_pretrained, model_config, model_config_from_cfg
from tests.conftest import rel_l2
from tests.models.equivalence import input64

BN_EPS, LN_EPS = 1e-5, 1e-6  # PyTorch's BatchNorm2d default (the official code keeps it); the official LayerNorm
SMALL = {"depth": 3, "input_size": (1, 64, 64)}  # reduced CeiT-T: 3 blocks, 64 pixels -> 4 x 4 tokens


# ------------------------------------------------------------------------------------- the official layout


def official_layout(depth: int = 12, dim: int = 192, grid: int = 14, classes: int = 1000, stem: int = 64,
                    patch: int = 4, mlp_ratio: int = 4) -> dict[str, tuple]:  # fmt: skip
    """The official ``CeIT`` state dict (names -> shapes) of ``ceit_tiny_patch16_224`` (the defaults), from its
    constructors. BatchNorm buffers included (``num_batches_tracked`` is a 0-d tensor)."""

    def bn(prefix: str, channels: int) -> dict[str, tuple]:
        names = ("weight", "bias", "running_mean", "running_var")
        return {f"{prefix}.{n}": (channels,) for n in names} | {f"{prefix}.num_batches_tracked": ()}

    def attention_and_norms(p: str) -> dict[str, tuple]:
        return {p + "norm1.weight": (dim,), p + "norm1.bias": (dim,), p + "attn.qkv.weight": (3 * dim, dim),
                p + "attn.qkv.bias": (3 * dim,), p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                p + "norm2.weight": (dim,), p + "norm2.bias": (dim,)}  # fmt: skip

    hidden = dim * mlp_ratio
    layout = {"i2t.backbone.conv.weight": (stem, 3, 7, 7), **bn("i2t.backbone.bn", stem),
              "i2t.proj.weight": (dim, stem, patch, patch), "i2t.proj.bias": (dim,),
              "cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim)}  # fmt: skip
    for i in range(depth):
        p = f"blocks.{i}."
        layout |= attention_and_norms(p)
        layout |= {p + "leff.conv1.weight": (hidden, dim, 1, 1), p + "leff.conv1.bias": (hidden,),
                   p + "leff.conv2.weight": (hidden, 1, 3, 3), p + "leff.conv2.bias": (hidden,),
                   p + "leff.conv3.weight": (dim, hidden, 1, 1), p + "leff.conv3.bias": (dim,)}  # fmt: skip
        layout |= bn(p + "leff.bn1", hidden) | bn(p + "leff.bn2", hidden) | bn(p + "leff.bn3", dim)
    layout |= attention_and_norms("lca.")
    layout |= {"lca.feedforward.fc1.weight": (hidden, dim), "lca.feedforward.fc1.bias": (hidden,),
               "lca.feedforward.fc2.weight": (dim, hidden), "lca.feedforward.fc2.bias": (dim,),
               "pos_layer_embed": (1, depth, dim)}  # fmt: skip
    return layout | {"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)}


def _is_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _layout_params(layout: dict[str, tuple]) -> int:
    return sum(math.prod(shape) for name, shape in layout.items() if not _is_buffer(name))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _our_layout(model: nn.Module) -> dict[str, tuple]:
    """Our state dict's names and shapes, our 3-D kernels (O, I, 1, k, k) read as the official 2-D ones."""
    layout = {}
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        if len(shape) == 5:
            assert shape[2] == 1, key
            shape = shape[:2] + shape[3:]
        layout[key] = shape
    return layout


def test_ceit_t_layout_and_parameter_count_equal_the_official():
    with torch.device("meta"):
        model = create_model("ceit_t_in1k")
    expected = official_layout()
    assert _our_layout(model) == expected
    assert _params(model) == _layout_params(expected) == 6_356_904  # published: 6.4M


# ------------------------------------------------------------------ the official forward, re-derived here


def random_state(layout: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """A float64 state dict of ``layout``: affine scales near 1, BatchNorm variances in [0.5, 1.5], the rest small
    (every tensor random, the zero-initialised ``pos_layer_embed`` and the BatchNorm statistics included)."""
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


def _ln(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], LN_EPS)


def official_attention(x: torch.Tensor, sd: dict, p: str, heads: int) -> torch.Tensor:
    """The official ``Attention.forward`` in einsum form; ``p`` is the attention's prefix."""
    B, N, C = x.shape
    d = C // heads
    q, k, v = F.linear(x, sd[p + "qkv.weight"], sd[p + "qkv.bias"]).reshape(B, N, 3, heads, d).unbind(2)
    attn = (torch.einsum("bnhd,bmhd->bhnm", q, k) * d**-0.5).softmax(dim=-1)
    return F.linear(torch.einsum("bhnm,bmhd->bnhd", attn, v).reshape(B, N, C), sd[p + "proj.weight"],
                    sd[p + "proj.bias"])  # fmt: skip


def _depthwise3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Conv2d(C, C, 3, padding 1, groups=C) written out: each channel's 3 x 3 zero-padded neighbourhood (``unfold``)
    weighted by its own kernel (PyTorch has no fast grouped conv in float64)."""
    B, C, H, W = x.shape
    patches = F.unfold(x, 3, padding=1).reshape(B, C, 9, H * W)
    return (torch.einsum("bckn,ck->bcn", patches, weight.reshape(C, 9)) + bias[:, None]).reshape(B, C, H, W)


def official_leff(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """``LocallyEnhancedFeedForward.forward`` (with_bn, eval): the cls token returned as given."""
    b, n, k = x.shape
    side = int(math.sqrt(n - 1))
    grid = x[:, 1:].reshape(b, side, side, k).permute(0, 3, 1, 2)
    grid = F.gelu(_bn(F.conv2d(grid, sd[p + "conv1.weight"], sd[p + "conv1.bias"]), sd, p + "bn1"))
    grid = F.gelu(_bn(_depthwise3x3(grid, sd[p + "conv2.weight"], sd[p + "conv2.bias"]), sd, p + "bn2"))
    grid = _bn(F.conv2d(grid, sd[p + "conv3.weight"], sd[p + "conv3.bias"]), sd, p + "bn3")
    return torch.cat((x[:, :1], grid.flatten(2).permute(0, 2, 1)), dim=1)


def official_stem(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """``HybridEmbed(Image2Tokens())`` on images (B, 3, H, W) -> tokens (B, N, C)."""
    x = _bn(F.conv2d(x, sd["i2t.backbone.conv.weight"], stride=2, padding=3), sd, "i2t.backbone.bn")
    x = F.max_pool2d(x, 3, 2, 1)
    w = sd["i2t.proj.weight"]
    return F.conv2d(x, w, sd["i2t.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)


def official_forward(x: torch.Tensor, sd: dict, depth: int, heads: int = 3) -> torch.Tensor:
    """``CeIT.forward`` of ``ceit_tiny_patch16_224`` (eval) from a state dict of the official layout."""
    x = official_stem(x, sd)
    x = torch.cat((sd["cls_token"].expand(x.shape[0], -1, -1), x), dim=1) + sd["pos_embed"]
    cls_tokens = []
    for i in range(depth):
        p = f"blocks.{i}."
        x = x + official_attention(_ln(x, sd, p + "norm1"), sd, p + "attn.", heads)
        x = x + official_leff(_ln(x, sd, p + "norm2"), sd, p + "leff.")
        cls_tokens.append(x[:, 0])
    t = torch.stack(cls_tokens, dim=1) + sd["pos_layer_embed"]
    t = t + official_attention(_ln(t, sd, "lca.norm1"), sd, "lca.attn.", heads)
    hidden = F.gelu(F.linear(_ln(t, sd, "lca.norm2"), sd["lca.feedforward.fc1.weight"], sd["lca.feedforward.fc1.bias"]))
    t = t + F.linear(hidden, sd["lca.feedforward.fc2.weight"], sd["lca.feedforward.fc2.bias"])
    return F.linear(_ln(t[:, -1], sd, "norm"), sd["head.weight"], sd["head.bias"])


def _load_official(model: nn.Module, state: dict, **kw) -> nn.Module:
    """``state`` loaded into ``model`` in float64 (cast first: a float32 copy would round the float64 tensors)."""
    model = model.double()
    report = load_pretrained(model, state, **kw)
    assert report.source_format == "ceit_official" and report.missing == [] and report.unexpected == [], (
        report.summary())  # fmt: skip
    return model.eval()


def test_reduced_ceit_t_equals_the_official_formulas():
    """An official-layout file (2-D kernels, BatchNorm statistics) loads with nothing missing or left over, and the
    model computes the official forward: I2T stem, LeFF with its cls bypass, LCA over the layers' cls tokens."""
    layout = official_layout(depth=3, grid=4)
    state = random_state(layout, seed=1)
    model = _load_official(create_model("ceit_t_in1k", **SMALL), state)
    assert _params(model) == _layout_params(layout)
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        got = model(x)
        assert rel_l2(got, official_forward(x, state, depth=3)) < 1e-12
        # the running statistics and the layer table are part of it: other values, other outputs
        state["blocks.1.leff.bn2.running_var"] = state["blocks.1.leff.bn2.running_var"] * 2
        assert rel_l2(got, official_forward(x, state, depth=3)) > 1e-3
        state["pos_layer_embed"] = torch.zeros_like(state["pos_layer_embed"])
        assert rel_l2(official_forward(x, state, depth=3), official_forward(x, random_state(layout, 1), 3)) > 1e-3


@pytest.mark.slow
def test_ceit_t_equals_the_official_formulas():
    state = random_state(official_layout(), seed=2)
    model = _load_official(create_model("ceit_t_in1k"), state)
    x = input64(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_l2(model(x), official_forward(x, state, depth=12)) < 1e-10


# ----------------------------------------------------------------- degenerate case: timm's DeiT blocks


@pytest.mark.parametrize("depth", [2, pytest.param(12, marks=pytest.mark.slow)])
def test_with_the_mlp_and_without_lca_the_blocks_are_timm_deit_blocks(depth):
    """LeFF replaced by the MLP (``feedforward="mlp"``, every token through it) and no LCA: the blocks and the final
    norm are timm ``deit_tiny_patch16_224``'s (2 of its blocks by default, all 12 under -m slow), with its weights."""
    timm = pytest.importorskip("timm")
    from tests.models.test_convert import randomize_

    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=depth, img_size=64)
    deit = randomize_(deit, seed=3).double().eval()
    ours = create_model("ceit_t_in1k", feedforward="mlp", lca=False, depth=depth, input_size=(1, 64, 64)).double()
    trunk = {k: v for k, v in deit.state_dict().items() if k.startswith(("blocks.", "norm."))}
    result = ours.load_state_dict(trunk, strict=False)
    assert result.unexpected_keys == [] and not [k for k in result.missing_keys if k.startswith(("blocks.", "norm."))]
    ours.eval()
    x = input64(2, 17, 192, seed=4)
    with torch.no_grad():
        y = x
        for block in ours.blocks:
            y = block(y, (1, 4, 4))
        assert rel_l2(ours.norm(y), deit.norm(deit.blocks(x))) < 1e-12


def test_lca_off_classifies_from_the_last_cls_token():
    model = create_model("ceit_t_in1k", lca=False, **SMALL).double().eval()
    assert model.lca is None and model.pos_layer_embed is None
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        tokens, thw = model._embed(x)
        for block in model.blocks:
            tokens = block(tokens, thw)
        torch.testing.assert_close(model(x), model.head(model.norm(tokens[:, 0])), rtol=0, atol=0)


# --------------------------------------------------------------------------------------- image <-> video


def _random_model(**kw) -> CeiT:
    model = create_model("ceit_t_in1k", **kw)
    state = random_state({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed=5)
    model.load_state_dict(state)
    return model.double().eval()


def test_image_input_is_a_one_frame_clip():
    model = _random_model(**SMALL)
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


VIDEO = {"depth": 3, "input_size": (8, 64, 64), "stem_time_kernel": 3, "stem_time_stride": 2, "pool_time_kernel": 3,
         "tubelet_size": 2, "leff_time_kernel": 3}  # fmt: skip
# every time kernel 3, the clip's 4 frames strided down to one token frame (conv stride 2, pool stride 2)
ONE_TOKEN_FRAME = {"depth": 3, "input_size": (4, 64, 64), "stem_time_kernel": 3, "stem_time_stride": 2,
                   "pool_time_kernel": 3, "pool_time_stride": 2, "leff_time_kernel": 3}  # fmt: skip


@functools.cache
def _small_state() -> dict[str, torch.Tensor]:
    """One random official-layout state of the reduced model, shared by the inflation tests (read only)."""
    return random_state(official_layout(depth=3, grid=4), seed=6)


def _inflated(state: dict, inflate: str, **kw) -> CeiT:
    video = create_model("ceit_t_in1k", **kw).double()
    report = load_pretrained(video, state, inflate=inflate)
    assert report.missing == [] and report.unexpected == []
    return video.eval()


def test_centre_inflated_video_model_equals_the_image_model_on_one_frame_clips():
    """The official image layout in a video CeiT (stem conv 3 frames stride 2, max pool 3 frames, tubelets of 2, LeFF
    dwconv 3 frames; 8 frames -> 2 x 4 x 4 tokens): every 2-D kernel inflated onto its centre (the tubelet on its
    first tap), the position table repeated over the token frames; a one-frame clip (zero-padded in time, -inf for
    the pool) gives the official image forward."""
    state = _small_state()
    video = create_model("ceit_t_in1k", **VIDEO).double()
    assert video.patch_dims == (2, 4, 4)
    report = load_pretrained(video, state, inflate="centre")
    assert report.missing == [] and report.unexpected == []
    adapted = {note.split(":")[0] for note in report.adapted}
    assert adapted == {"i2t.backbone.conv.weight", "i2t.proj.weight", "pos_embed",
                       *(f"blocks.{i}.leff.conv2.weight" for i in range(3))}  # fmt: skip
    grid = video.pos_embed.detach()[0, 1:].reshape(2, 16, -1)
    torch.testing.assert_close(grid, state["pos_embed"][0, 1:].expand(2, -1, -1), rtol=0, atol=1e-15)
    x = input64(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_l2(video.eval()(x.unsqueeze(2)), official_forward(x, state, depth=3)) < 1e-12


def test_centre_inflated_static_clip_equals_the_image_model_when_it_has_one_token_frame():
    """A static 4-frame clip through time kernels of 3 (stem conv, max pool, LeFF dwconv) strided to one token frame
    equals the image. With more token frames it cannot, whatever the inflation: every patch key appears T' times in
    the softmax but the cls key once, so the cls token's share of the attention shrinks (as for any cls-token ViT)."""
    state = _small_state()
    x = input64(2, 3, 64, 64)
    expected = official_forward(x, state, depth=3)
    one = _inflated(state, "centre", **ONE_TOKEN_FRAME)
    assert one.patch_dims == (1, 4, 4)
    two = _inflated(state, "centre", **VIDEO)
    with torch.no_grad():
        assert rel_l2(one(x.unsqueeze(2).expand(-1, -1, 4, -1, -1)), expected) < 1e-12
        assert rel_l2(two(x.unsqueeze(2).expand(-1, -1, 8, -1, -1)), expected) > 1e-3


def test_average_inflation_breaks_static_clips_through_the_padded_time_kernels():
    """I3D (average) inflation spreads each kernel over its taps; the zero-padded first and last frames of the stem
    conv and the LeFF dwconv then see part of it, so even a clip of one token frame no longer equals the image
    (pitfall 6)."""
    state = _small_state()
    video = _inflated(state, "average", **ONE_TOKEN_FRAME)
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        static = video(x.unsqueeze(2).expand(-1, -1, 4, -1, -1))
        assert rel_l2(static, official_forward(x, state, depth=3)) > 1e-3


# ------------------------------------------------------------------------------------------ formats, config, errors


def test_own_checkpoints_round_trip_and_unknown_layouts_are_refused():
    source = _random_model(**SMALL)
    target = create_model("ceit_t_in1k", **SMALL).double()
    report = load_pretrained(target, source.state_dict())
    assert report.source_format == "ceit" and report.missing == [] and report.adapted == []
    x = input64(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a CeiT checkpoint") as info:
        load_pretrained(target, {"patch_embed.proj.weight": torch.zeros(1)})
    assert "\n" not in str(info.value)


def test_ceit_section_builds_ceit_t():
    """The derived ``CEIT`` section carries every field, so a YAML describes the variant and its video options."""
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ARCH", "ceit", "MODEL.NUM_CLASSES", 1000, "MODEL.DROPOUT_RATE", 0.0,
                         "DATA.NUM_FRAMES", 1, "DATA.TRAIN_CROP_SIZE", 224])  # fmt: skip
    assert model_config_from_cfg(cfg) == model_config("ceit_t_in1k")
    cfg.merge_from_list(["CEIT.STEM_TIME_KERNEL", 3, "CEIT.LEFF_TIME_KERNEL", 3, "DATA.NUM_FRAMES", 16])
    built = model_config_from_cfg(cfg)
    assert (built.stem_time_kernel, built.leff_time_kernel, built.patch_dims) == (3, 3, (16, 14, 14))


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"feedforward": "ffn"}, "feedforward='ffn' is not one of"),
        ({"leff_time_kernel": 2}, "leff_time_kernel=2 must be odd"),
        ({"stem_time_kernel": 0}, "stem_time_kernel=0 must be odd"),
        ({"num_heads": 5}, "not divisible by num_heads=5"),
        ({"input_size": (1, 8, 8)}, "gives no tokens"),
        ({"tubelet_size": 0}, "tubelet_size=0 must be >= 1"),
    ],
)
def test_invalid_ceit_settings_are_one_line_errors(changes, match):
    with pytest.raises(ValueError, match=match) as info:
        CeiTConfig(**changes)
    assert "\n" not in str(info.value)
