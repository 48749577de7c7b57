"""The Shuffle Transformer family against the official code, which has no pip package: its key layout rebuilt from
the official constructors, its forward pass re-derived here from the official formulas (functional, BatchNorm in eval
mode with randomised running statistics, windows gathered by explicit position indices rather than reshapes), timm's
Swin ``WindowAttention`` for the degenerate case without the shuffle, and the image <-> video identities. Everything
in float64 with every tensor randomised; reduced widths, depths and 112-pixel images by default, Shuffle-T at 224
under -m slow.

The official facts used (mulinmeng/Shuffle-Transformer ``models/shuffle_transformer.py``, ``config.py``, the tiny
config):
- ``ShuffleTransformer(token_dim=32, embed_dim=96, layers=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
  relative_pos_embedding=True, shuffle=True, qkv_bias=True (config QKV_BIAS), mlp_ratio=4)``; stage widths are
  ``heads * 32``; a stage whose width differs from its input's starts with ``patch_partition``.
- ``to_token``: ``conv1`` = (Conv2d(3, 32, 3, 2, 1), BN, ReLU6), ``conv2`` = (Conv2d(32, 96, 3, 2, 1), BN, ReLU6),
  ``conv3`` = Conv2d(96, 96, 1); all convs with bias.
- ``PatchMerging``: ``norm`` BatchNorm2d(dim), ``reduction`` Conv2d(dim, out, 2, 2, bias=False).
- ``Block``: ``x + drop_path(attn(norm1(x)))``, ``x + local(norm2(x))``, ``x + drop_path(mlp(norm3(x)))``; ``local``
  = Conv2d(dim, dim, ws, 1, ws // 2, groups=dim, bias=qkv_bias); ``mlp`` = 1x1 conv, ReLU6, 1x1 conv (with bias).
- ``Attention``: ``to_qkv`` Conv2d(dim, 3 dim, 1, bias=False), channels split as ``(qkv h d)``; regular windows
  ``(hh ws1) (ww ws2)``, shuffled ``(ws1 hh) (ws2 ww)``; ``dots = q k^T * d ** -0.5 + bias`` with the Swin index
  (``(dh + ws - 1) (2 ws - 1) + dw + ws - 1``) on every window; ``proj`` Conv2d(dim, dim, 1); the
  ``relative_position_index`` buffer is part of the state dict.
- ``forward``: ``to_token``, the four stages, average pooling (no norm), ``head`` Linear.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvit_video.config import ConfigError, get_cfg, load_config
from mvit_video.engine.optim import param_groups
from mvit_video.models import (
    ShuffleConfig,
    ShuffleTransformer,
    build_model,
    create_model,
    load_pretrained,
    model_config,  # fmt: skip
)
from mvit_video.models.layers.window import relative_position_index
from mvit_video.models.shuffle import WindowAttention, _bias_index
from mvit_video.models.stats import stage_table
from tests.conftest import rel_l2

BN_EPS = 1e-5
# a reduced Shuffle-T: official widths rule (heads * 32), stage 3 as wide as stage 2 (no PatchMerging there)
SMALL_HEADS = (1, 2, 2, 4)
SMALL = {"input_size": (1, 112, 112), "token_dim": 16, "embed_dim": 32, "depths": (2, 2, 2, 2),
         "dims": tuple(32 * h for h in SMALL_HEADS), "num_heads": SMALL_HEADS}  # fmt: skip
SMALL_LAYOUT = {"depths": (2, 2, 2, 2), "heads": SMALL_HEADS, "token_dim": 16, "embed_dim": 32}


# ------------------------------------------------------------------------------------- the official layout


def official_layout(depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window: int = 7, classes: int = 1000,
                    token_dim: int = 32, embed_dim: int = 96, mlp_ratio: int = 4, qkv_bias: bool = True,
                    in_chans: int = 3) -> dict[str, tuple]:  # fmt: skip
    """The official ``ShuffleTransformer`` state dict (names -> shapes), from its constructors, buffers included."""

    def bn(prefix: str, c: int) -> dict[str, tuple]:
        return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()
        }

    def conv(prefix: str, o: int, i: int, k: int, bias: bool = True) -> dict[str, tuple]:
        return {f"{prefix}.weight": (o, i, k, k)} | ({f"{prefix}.bias": (o,)} if bias else {})

    layout = {**conv("to_token.conv1.0", token_dim, in_chans, 3), **bn("to_token.conv1.1", token_dim),
              **conv("to_token.conv2.0", embed_dim, token_dim, 3), **bn("to_token.conv2.1", embed_dim),
              **conv("to_token.conv3", embed_dim, embed_dim, 1)}  # fmt: skip
    width, n = embed_dim, window * window
    for s, (depth, h) in enumerate(zip(depths, heads)):
        dim, p = h * 32, f"stage{s + 1}."
        if dim != width:
            layout |= bn(p + "patch_partition.norm", width) | conv(
                p + "patch_partition.reduction", dim, width, 2, False
            )
        width = dim
        for j in range(depth // 2):
            for k in (0, 1):
                b = f"{p}layers.{j}.{k}."
                layout |= bn(b + "norm1", dim) | conv(b + "attn.to_qkv", 3 * dim, dim, 1, False)
                layout |= {b + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, h),
                           b + "attn.relative_position_index": (n, n)}  # fmt: skip
                layout |= conv(b + "attn.proj", dim, dim, 1) | bn(b + "norm2", dim)
                layout |= {b + "local.weight": (dim, 1, window, window)} | (
                    {b + "local.bias": (dim,)} if qkv_bias else {}
                )
                layout |= conv(b + "mlp.fc1", dim * mlp_ratio, dim, 1) | conv(b + "mlp.fc2", dim, dim * mlp_ratio, 1)
                layout |= bn(b + "norm3", dim)
    return layout | {"head.weight": (classes, width), "head.bias": (classes,)}


def _is_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked", "relative_position_index"))


def _layout_params(layout: dict[str, tuple]) -> int:
    return sum(math.prod(shape) for name, shape in layout.items() if not _is_buffer(name))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _our_layout(model: nn.Module) -> dict[str, tuple]:
    """Our names and shapes, 3-D conv kernels (O, I, 1, k, k) read as the official 2-D ones."""
    layout = {}
    for k, v in model.state_dict().items():
        shape = tuple(v.shape)
        if len(shape) == 5:
            assert shape[2] == 1, k
            shape = shape[:2] + shape[3:]
        layout[k] = shape
    return layout


def test_shuffle_t_layout_and_parameter_count_equal_the_official():
    """Official names and shapes except the ``relative_position_index`` buffers (recomputed, not stored); the
    official count, analytically: stem 38,208 + blocks 12 C^2 + 62 C + 169 heads each + PatchMerging + head."""
    with torch.device("meta"):
        model = create_model("shuffle_t_in1k")
    expected = official_layout()
    assert _our_layout(model) == {k: v for k, v in expected.items() if not k.endswith("relative_position_index")}
    blocks = sum(depth * (12 * c * c + 62 * c + 169 * h) for depth, c, h in zip((2, 2, 6, 2), (96, 192, 384, 768),
                                                                                  (3, 6, 12, 24)))  # fmt: skip
    merging = sum(2 * i + 4 * i * o for i, o in ((96, 192), (192, 384), (384, 768)))
    analytic = 38_208 + blocks + merging + 768 * 1000 + 1000
    assert _params(model) == _layout_params(expected) == analytic == 28_532_482


# ------------------------------------------------------------------ the official forward, re-derived here


def random_state(layout: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """A float64 state dict of ``layout``: affine scales near 1, BN variances in [0.5, 1.5], the rest small, the
    official index buffers as the official code builds them."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("relative_position_index"):
            state[name] = official_index(math.isqrt(shape[0]))
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        else:
            noise = torch.randn(shape, generator=g, dtype=torch.float64)
            if name.endswith("running_mean"):
                state[name] = 0.2 * noise
            elif len(shape) == 1 and name.endswith("weight"):
                state[name] = 1.0 + 0.1 * noise
            elif name.endswith("relative_position_bias_table"):
                state[name] = 0.5 * noise  # large enough to move the attention weights
            else:
                state[name] = 0.05 * noise
    return state


def official_index(ws: int) -> torch.Tensor:
    """The official (Swin) 2-D ``relative_position_index`` of a ws x ws window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def index_3d(fitted: tuple, table: tuple) -> torch.Tensor:
    """The bias rows of a ``fitted`` window in a ``table``-window table, offsets of (t, h, w), t-major."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(f) for f in fitted), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel = rel + torch.tensor([w - 1 for w in table])
    return rel[..., 0] * (2 * table[1] - 1) * (2 * table[2] - 1) + rel[..., 1] * (2 * table[2] - 1) + rel[..., 2]


def window_positions(grid: tuple, window: tuple, shuffled: bool) -> torch.Tensor:
    """(windows, N) flat positions in the (T, H, W) grid: along each axis of n windows of w, token o of window i
    sits at ``i * w + o`` (the official ``(hh ws)``) or, shuffled, at ``o * n + i`` (``(ws hh)``)."""
    axes = []
    for g, w in zip(grid, window):
        n = g // w
        i, o = torch.arange(n)[:, None], torch.arange(w)[None, :]
        axes.append(o * n + i if shuffled else i * w + o)  # (n, w)
    (t, h, w), (_, H, W) = axes, grid
    pos = (t[:, None, None, :, None, None] * H + h[None, :, None, None, :, None]) * W + w[None, None, :, None, None, :]
    return pos.reshape(t.shape[0] * h.shape[0] * w.shape[0], -1)


def _k3(w: torch.Tensor) -> torch.Tensor:
    return w if w.ndim == 5 else w.unsqueeze(2)  # official 2-D kernels act on one-frame clips


def _conv(x, sd, p, stride=1, padding=0, groups=1):
    return F.conv3d(x, _k3(sd[p + ".weight"]), sd.get(p + ".bias"), stride, padding, 1, groups)


def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """BatchNorm in eval mode, written out per channel with the running statistics."""
    shape = (1, -1, 1, 1, 1)
    mean, var = sd[p + ".running_mean"].view(shape), sd[p + ".running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + BN_EPS) * sd[p + ".weight"].view(shape) + sd[p + ".bias"].view(shape)


def official_attention(x: torch.Tensor, sd: dict, p: str, heads: int, window: tuple, shuffled: bool):
    """The official ``Attention.forward`` (eval) on (B, C, T, H, W): windows gathered by position, the bias of the
    window's offsets added to every window's logits."""
    B, C, T, H, W = x.shape
    d = C // heads
    fitted = tuple(min(g, w) for g, w in zip((T, H, W), window))
    pos = window_positions((T, H, W), fitted, shuffled)  # (windows, N)
    nwin, n = pos.shape
    qkv = _conv(x, sd, p + "to_qkv").flatten(2)[:, :, pos]  # (B, 3C, windows, N)
    q, k, v = qkv.reshape(B, 3, heads, d, nwin, n).unbind(1)  # channels (qkv h d)
    dots = torch.einsum("bhdwn,bhdwm->bwhnm", q, k) * d**-0.5
    table = sd.get(p + "relative_position_bias_table")
    if table is not None:
        dots = dots + table[index_3d(fitted, window).reshape(-1)].reshape(n, n, heads).permute(2, 0, 1)
    out = torch.einsum("bwhnm,bhdwm->bhdwn", dots.softmax(dim=-1), v).reshape(B, C, nwin, n)
    grid = x.new_zeros(B, C, T * H * W)
    grid[:, :, pos] = out
    return _conv(grid.reshape(B, C, T, H, W), sd, p + "proj")


def official_forward(x, sd, depths, heads, window=(1, 7, 7), shuffle=True, tubelet=1):
    """``ShuffleTransformer.forward`` (eval) from a state dict of the official layout (2-D kernels on one-frame
    clips) or of ours (3-D kernels, ``window`` in time)."""
    x = x.unsqueeze(2) if x.ndim == 4 else x
    if x.shape[2] % tubelet:
        x = F.pad(x, (0, 0, 0, 0, 0, tubelet - x.shape[2] % tubelet))
    x = F.relu6(_bn(_conv(x, sd, "to_token.conv1.0", (tubelet, 2, 2), (0, 1, 1)), sd, "to_token.conv1.1"))
    x = F.relu6(_bn(_conv(x, sd, "to_token.conv2.0", (1, 2, 2), (0, 1, 1)), sd, "to_token.conv2.1"))
    x = _conv(x, sd, "to_token.conv3")
    for s, depth in enumerate(depths):
        p = f"stage{s + 1}."
        if p + "patch_partition.norm.weight" in sd:
            x = _conv(_bn(x, sd, p + "patch_partition.norm"), sd, p + "patch_partition.reduction", (1, 2, 2))
        for j in range(depth // 2):
            for k in (0, 1):
                b = f"{p}layers.{j}.{k}."
                x = x + official_attention(
                    _bn(x, sd, b + "norm1"), sd, b + "attn.", heads[s], window, shuffle and k == 1
                )
                kernel = _k3(sd[b + "local.weight"]).shape[2:]
                x = x + _conv(_bn(x, sd, b + "norm2"), sd, b + "local", 1, tuple(q // 2 for q in kernel), x.shape[1])
                x = x + _conv(F.relu6(_conv(_bn(x, sd, b + "norm3"), sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
    return F.linear(x.mean(dim=(2, 3, 4)), sd["head.weight"], sd["head.bias"])


def _image(batch: int = 2, size: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _load(model: nn.Module, state: dict, **kw) -> nn.Module:
    """``state`` loaded into ``model`` in float64 with nothing missing or left over."""
    model = model.double()
    report = load_pretrained(model, state, **kw)
    assert report.source_format == "shuffle" and report.missing == [] and report.unexpected == [], report.summary()
    return model.eval()


def test_reduced_shuffle_t_equals_the_official_formulas():
    """An official-layout file (2-D kernels, index buffers, BN statistics) loads with nothing missing or left over
    and nothing adapted, and the model computes the official forward; the shuffle and the bias matter."""
    state = random_state(official_layout(**SMALL_LAYOUT), seed=1)
    model = create_model("shuffle_t_in1k", **SMALL).double()
    report = load_pretrained(model, {"model": state})  # the official files hold the state dict under "model"
    assert report.missing == report.unexpected == report.adapted == [], report.summary()
    model.eval()
    x = _image()
    with torch.no_grad():
        got = model(x)
        assert rel_l2(got, official_forward(x, state, (2, 2, 2, 2), SMALL_HEADS)) < 1e-12
        assert rel_l2(got, official_forward(x, state, (2, 2, 2, 2), SMALL_HEADS, shuffle=False)) > 1e-3
        no_bias = {k: v for k, v in state.items() if not k.endswith("bias_table")}
        assert rel_l2(got, official_forward(x, no_bias, (2, 2, 2, 2), SMALL_HEADS)) > 1e-3


@pytest.mark.slow
def test_shuffle_t_equals_the_official_formulas():
    state = random_state(official_layout(), seed=2)
    model = _load(create_model("shuffle_t_in1k"), state)
    x = _image(1, 224)
    with torch.no_grad():  # 12 random blocks give logits in the thousands: float64 rounding reaches ~2e-10
        assert rel_l2(model(x), official_forward(x, state, (2, 2, 6, 2), (3, 6, 12, 24))) < 1e-9


def _random_model(cfg: ShuffleConfig, seed: int) -> ShuffleTransformer:
    model = ShuffleTransformer(cfg).double()
    state = random_state({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed)
    model.load_state_dict(state)
    return model.eval()


def test_shuffle3d_equals_the_official_formulas_over_time():
    """Windows of 2 x 7 x 7 over 4 token frames (two windows in time, shuffled over T as over H and W), tubelets of
    2, a 3 x 7 x 7 local conv: the 3-D model computes the official block on (T, H, W) grids."""
    cfg = model_config("shuffle3d_t_32x2").replace(**VIDEO_SMALL)
    model = _random_model(cfg, seed=3)
    sd = model.state_dict()
    x = torch.randn(1, 3, 7, 56, 56, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # padded to 8
    with torch.no_grad():
        got = model(x)
        expected = official_forward(x, sd, (2, 2, 2, 2), SMALL_HEADS, (2, 7, 7), tubelet=2)
        assert rel_l2(got, expected) < 1e-12
        # shuffling over time matters: the same model with regular windows in time only differs
        other = official_forward(x, sd, (2, 2, 2, 2), SMALL_HEADS, (2, 7, 7), shuffle=False, tubelet=2)
        assert rel_l2(got, other) > 1e-3


# ------------------------------------------------------- degenerate case: plain window attention (timm Swin)


def test_without_shuffle_the_attention_is_timm_swin_window_attention():
    """A regular (not shuffled) window attention of the image model equals timm's Swin ``WindowAttention`` on the
    same windows (its q/k/v without bias, its index = the official one); the shuffled one does not."""
    swin = pytest.importorskip("timm.models.swin_transformer")
    ours = WindowAttention(64, 2, (1, 7, 7), shuffled=False).double()
    theirs = swin.WindowAttention(64, 2, window_size=7, qkv_bias=False).double().eval()
    state = random_state({k: tuple(v.shape) for k, v in ours.state_dict().items()}, seed=5)
    ours.load_state_dict(state)
    theirs.load_state_dict({"qkv.weight": state["to_qkv.weight"].flatten(1), "proj.weight": state["proj.weight"].flatten(1),
                            "proj.bias": state["proj.bias"],
                            "relative_position_bias_table": state["relative_position_bias_table"]}, strict=False)  # fmt: skip
    assert torch.equal(theirs.relative_position_index, official_index(7))
    x = torch.randn(2, 64, 1, 14, 21, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        windows = swin.window_partition(x[:, :, 0].permute(0, 2, 3, 1), (7, 7)).reshape(-1, 49, 64)
        expected = swin.window_reverse(theirs(windows).reshape(-1, 7, 7, 64), (7, 7), 14, 21).permute(0, 3, 1, 2)
        assert rel_l2(ours(x)[:, :, 0], expected) < 1e-12
        ours.shuffled = True
        assert rel_l2(ours(x)[:, :, 0], expected) > 1e-3


def test_shuffle_off_model_equals_the_rederivation_without_shuffle():
    cfg = model_config("shuffle_t_in1k").replace(**SMALL, shuffle=False)
    model = _random_model(cfg, seed=7)
    x = _image(1)
    with torch.no_grad():
        expected = official_forward(x, model.state_dict(), (2, 2, 2, 2), SMALL_HEADS, shuffle=False)
        assert rel_l2(model(x), expected) < 1e-12


def test_bias_index_of_the_full_window_is_the_shared_one_and_shrinks_geometrically():
    assert torch.equal(_bias_index((1, 7, 7), (1, 7, 7)), official_index(7))
    assert torch.equal(_bias_index((8, 7, 7), (8, 7, 7)), relative_position_index((8, 7, 7)))
    assert torch.equal(_bias_index((3, 2, 7), (8, 7, 7)), index_3d((3, 2, 7), (8, 7, 7)))


# --------------------------------------------------------------------------------------- image <-> video


# 4 token frames (2 windows in time), 14 x 14 tokens in stage 1 (stage 4's 3 x 3 grid shrinks the window)
VIDEO_SMALL = {**SMALL, "input_size": (8, 56, 56), "window_size": (2, 7, 7)}


def _video_small() -> ShuffleTransformer:
    return create_model("shuffle3d_t_32x2", num_classes=1000, **VIDEO_SMALL)  # the image head


def test_image_input_is_a_one_frame_clip():
    model = _random_model(model_config("shuffle_t_in1k").replace(**SMALL), seed=8)
    x = _image(1, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)), rtol=0, atol=0)


def test_centre_inflated_video_model_equals_the_image_model_on_one_frame_and_static_clips():
    """Official 2-D weights in the 3-D model (tubelets of 2, windows 2 x 7 x 7, local 3 x 7 x 7): with ``centre``
    inflation (tubelet kernel on its first tap, local on its centre, bias tables repeated over the 3 time offsets)
    a one-frame clip and a static 8-frame clip both give the official image forward. ``average`` inflation keeps
    static clips' interior but not their zero-padded ends (the local conv's time taps, the stem's padding of a
    one-frame clip), so it differs: pitfall 6 of the zoo notes."""
    state = random_state(official_layout(**SMALL_LAYOUT), seed=9)
    video = _video_small().double()
    report = load_pretrained(video, state, inflate="centre")
    assert report.missing == [] and report.unexpected == []
    adapted = {note.split(":")[0] for note in report.adapted}
    assert {"to_token.conv1.0.weight", "stage1.layers.0.0.local.weight",
            "stage4.layers.0.1.attn.relative_position_bias_table"} <= adapted  # fmt: skip
    assert video.state_dict()["stage1.layers.0.0.attn.relative_position_bias_table"].shape == (3 * 169, 1)
    video.eval()
    x = _image(1, 56)
    image = official_forward(x, state, (2, 2, 2, 2), SMALL_HEADS)
    with torch.no_grad():
        assert rel_l2(video(x.unsqueeze(2)), image) < 1e-12
        assert rel_l2(video(x.unsqueeze(2).expand(-1, -1, 8, -1, -1)), image) < 1e-12
        average = _load(_video_small(), state, inflate="average")
        assert rel_l2(average(x.unsqueeze(2).expand(-1, -1, 8, -1, -1)), image) > 1e-4


# ------------------------------------------------------------------------------------ fused vs explicit


def test_fused_attention_equals_the_explicit_path():
    cfg = model_config("shuffle3d_t_32x2").replace(**VIDEO_SMALL)
    model = _random_model(cfg.replace(attention="math"), seed=10)
    fused = _random_model(cfg.replace(attention="sdpa"), seed=10)
    x = torch.randn(1, 3, 8, 56, 56, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    with torch.no_grad():
        assert rel_l2(fused(x), model(x)) < 1e-12
        fused32, x32 = fused.float(), x.float()
        assert rel_l2(fused32(x32), model(x)) < 1e-5


# -------------------------------------------------------------------- engine hooks, config and errors


def test_engine_hooks_layer_ids_no_decay_checkpointing_and_stage_table():
    model = create_model("shuffle_t_in1k", num_classes=5, **SMALL)
    assert len(model.blocks) == 8
    names = ("to_token.conv1.0.weight", "stage1.layers.0.0.attn.to_qkv.weight", "stage1.layers.0.1.local.weight",
             "stage2.patch_partition.reduction.weight", "stage2.layers.0.1.norm1.weight",
             "stage4.layers.0.1.mlp.fc2.weight", "head.weight")  # fmt: skip
    assert [model.layer_id(n) for n in names] == [0, 1, 2, 3, 4, 8, 9]
    assert model.no_weight_decay() == {n for n, _ in model.named_parameters() if "bias_table" in n}
    assert len(model.no_weight_decay()) == 8
    groups = param_groups(model, 0.05, no_decay_names=model.no_weight_decay(), layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert [(s.blocks, s.dim, s.heads, s.grid) for s in stage_table(model)] == [
        ((0, 1), 32, 1, (1, 28, 28)), ((2, 3), 64, 2, (1, 14, 14)), ((4, 5), 64, 2, (1, 14, 14)),
        ((6, 7), 128, 4, (1, 7, 7))]  # fmt: skip
    x = torch.randn(2, 3, 56, 56)
    assert model.forward_features(x).shape == (2, model.num_features) and model(x).shape == (2, 5)
    # activation checkpointing: the same gradients
    plain = create_model("shuffle_t_in1k", num_classes=5, **SMALL)
    ckpt = create_model("shuffle_t_in1k", num_classes=5, act_checkpoint=True, **SMALL)
    ckpt.load_state_dict(plain.state_dict())
    for m in (plain, ckpt):
        m.train()
        m(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_shuffle3d_t_grids():
    with torch.device("meta"):
        model = create_model("shuffle3d_t_32x2")
    assert [s.grid for s in stage_table(model)] == [(16, 56, 56), (16, 28, 28), (16, 14, 14), (16, 7, 7)]
    assert model.to_token.conv1[0].weight.shape == (32, 3, 2, 3, 3)
    assert model.stage1.layers[0][0].local.weight.shape == (96, 1, 3, 7, 7)


def test_a_shuffle_yaml_builds_the_configured_model(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("MODEL:\n  ARCH: shuffle\n  NUM_CLASSES: 7\n  DROPOUT_RATE: 0.0\nDATA:\n  NUM_FRAMES: 4\n  TRAIN_CROP_SIZE: 56\n"
                    "SHUFFLE:\n  DEPTHS: [2, 2]\n  DIMS: [32, 64]\n  NUM_HEADS: [1, 2]\n  EMBED_DIM: 32\n"
                    "  STEM_TUBELET: 2\n  WINDOW_SIZE: [2, 7, 7]\n  LOCAL_TEMPORAL_KERNEL: 3\n")  # fmt: skip
    model = build_model(load_config(path))
    assert isinstance(model, ShuffleTransformer)
    assert model.cfg == ShuffleConfig(num_classes=7, input_size=(4, 56, 56), depths=(2, 2), dims=(32, 64),
                                      num_heads=(1, 2), embed_dim=32, stem_tubelet=2, window_size=(2, 7, 7),
                                      local_temporal_kernel=3)  # fmt: skip
    assert model(torch.zeros(1, 3, 4, 56, 56)).shape == (1, 7)
    assert set(get_cfg().SHUFFLE) >= {"DEPTHS", "WINDOW_SIZE", "QKV_BIAS", "SHUFFLE"}


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"depths": (2, 3, 6, 2)}, r"depths\[1\]=3 must be even"),
        ({"dims": (96, 192)}, "one entry per stage"),
        ({"num_heads": (5, 6, 12, 24)}, r"dims\[0\]=96 is not divisible by num_heads\[0\]=5"),
        ({"window_size": (1, 8, 8)}, "odd Wh, Ww"),
        ({"local_temporal_kernel": 2}, "local_temporal_kernel=2 must be odd"),
        ({"input_size": (1, 200, 200)}, "stage 1's token grid 1x50x50"),
    ],
)
def test_invalid_shuffle_settings_are_one_line_errors(changes, match):
    with pytest.raises(ValueError, match=match) as info:
        model_config("shuffle_t_in1k").replace(**changes)
    assert "\n" not in str(info.value)


def test_an_input_whose_grid_does_not_fit_the_window_is_a_one_line_error():
    model = create_model("shuffle_t_in1k", **SMALL)
    with pytest.raises(ValueError, match="not a multiple of window") as info:
        model(torch.zeros(1, 3, 96, 96))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="SHUFFLE: ShuffleConfig.depths"):
        cfg = get_cfg()
        cfg.merge_from_list(["MODEL.ARCH", "shuffle", "SHUFFLE.DEPTHS", [2, 2, 5, 2]])
        build_model(cfg)


def test_a_checkpoint_of_another_family_is_a_one_line_error():
    from mvit_video.models import CheckpointError

    model = create_model("shuffle_t_in1k", **SMALL)
    vit = create_model("vit_ti16_in1k", depth=1).state_dict()
    with pytest.raises(CheckpointError, match="not a Shuffle Transformer checkpoint") as info:
        load_pretrained(model, vit)
    assert "\n" not in str(info.value)
