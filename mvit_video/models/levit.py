"""The LeViT family on video (timm ``levit_*`` / ``LevitDistilled``, the original facebookresearch code): a
convolutional stem, then attention stages whose tokens are normalised by BatchNorm, with a learned attention bias per
absolute offset.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. The stem is four Conv3d (kernel (kt, 3, 3),
stride (st, 2, 2), padding (kt // 2, 1, 1); kt = st = 1 for images) with BatchNorm and Hardswish between them (none
after the last), so the frame shrinks 16x. Its (B, C, T', H', W') output becomes tokens (B, T'H'W', C). Every linear
map is a bias-free Linear followed by BatchNorm over the tokens (``LinearNorm``). A block is attention and an MLP
(Linear+BN, Hardswish, Linear+BN), each a residual branch; the attention projection is Hardswish then Linear+BN.
Stages 1.. start with a shrink attention (``AttentionDownsample``): keys and values from every token, queries from
the tokens at stride (st, 2, 2) (timm's ``x[:, ::2, ::2]``), no residual (the width changes), then an MLP residual.
The classifier is BatchNorm + Linear on the mean token; the distilled variants have a second one (``head_dist``) and
return the mean of the two (timm's ``LevitDistilled`` at eval, and in training unless a distillation loss asks for
both through ``forward_heads``).

Attention bias: each head has one learned value per absolute offset (|dt|, |dh|, |dw|) between a query and a key,
``attention_biases`` (heads, T' H' W') indexed by ``(|dt| H' + |dh|) W' + |dw|``. With T' = 1 this is timm's 2-D
table and index exactly. The table fixes the token grid, so a model takes clips of its configured ``input_size``
only (timm's LeViT is fixed-size too). Image weights in a video model: the table is repeated over |dt|
(``adapt.inflate_offset_biases``), which keeps static clips equal to the image (each key repeats over time with the
same bias); stem kernels are inflated as every 2-D kernel (centre tap: exact on static clips).

The biases are gathered from the small table into (heads, Nq, Nk); where no gradient is needed (inference) the gathered
copy is kept, keyed by the table's storage and version counter, so ``load_state_dict``, optimizer steps, ``.to()``
or ``.double()`` can never leave a stale copy (timm and HF cache it at the first eval forward and keep it; see the
zoo notes' pitfalls). The default kernel ("auto") is the explicit one on a CPU (faster there for these short heads)
and SDPA with the bias as its additive mask elsewhere; float64 and FLOP counting use the explicit reference.

State-dict names are timm's linear-mode layout (``stem.conv{1..4}.{linear,bn}``, ``stages.{s}.downsample.
{attn_downsample.{kv, q.ln, proj.ln, attention_biases}, mlp.{ln1, ln2}}``, ``stages.{s}.blocks.{j}.{attn.{qkv,
proj.ln, attention_biases}, mlp.{ln1, ln2}}``, ``head.{bn, linear}``, ``head_dist.{bn, linear}``), the layout of the
published ``levit_*.fb_dist_in1k`` files; ``formats/levit.py`` also reads timm's conv mode (``levit_conv_*``: the same
names with 1 x 1 conv kernels). BatchNorm is never folded (published files are unfolded).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import THW, resolve_biased_attention
from .layers import DropPath
from .layers.conv import Conv3d, conv3d
from .registry import register_model

_ACTIVATIONS = {"hardswish": nn.Hardswish, "silu": nn.SiLU}


@dataclass
class LeViTConfig:
    """Architecture of one LeViT-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        input_size: (T, H, W) of the clips the model takes (T=1 for image models); the attention biases are built
            for the token grid it gives, so other sizes are refused.
        in_chans: input channels.
        embed_dim: width of each stage.
        key_dim: width of a query / key per head.
        depths: blocks per stage (not counting the shrink attention that starts stages 1..).
        num_heads: attention heads per stage (the shrink attention into stage s has ``embed_dim[s-1] // key_dim``).
        attn_ratio: value width per head over ``key_dim`` in the blocks.
        mlp_ratio: MLP expansion in the blocks.
        down_attn_ratio: value width per head over ``key_dim`` in the shrink attentions (timm: 4).
        down_mlp_ratio: MLP expansion after the shrink attentions (timm: 2).
        stem_time_kernel: temporal kernel of each of the four stem convs (padding kt // 2).
        stem_time_stride: temporal stride of each of the four stem convs.
        shrink_time_stride: temporal query stride st of each shrink attention (stages 1..; (st, 2, 2)).
        activation: "hardswish" (LeViT) or "silu" (timm's larger untrained variants).
        distilled: a second classifier (``head_dist``), averaged with the first.
        drop_path_rate: stochastic depth of every residual branch (timm's LeViT: the same rate everywhere).
        head_dropout: dropout before the classifiers.
        detach_head: the classifiers' input is detached (train the classifiers only).
        act_checkpoint: recompute each block in backward.
        attention: "auto" (SDPA with the bias as its additive mask; explicit in float64 and FLOP counting), "sdpa"
            or "math" (the explicit reference).
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    embed_dim: tuple[int, ...] = (128, 256, 384)
    key_dim: int = 16
    depths: tuple[int, ...] = (2, 3, 4)
    num_heads: tuple[int, ...] = (4, 6, 8)
    attn_ratio: float = 2.0
    mlp_ratio: float = 2.0
    down_attn_ratio: float = 4.0
    down_mlp_ratio: float = 2.0
    stem_time_kernel: tuple[int, int, int, int] = (1, 1, 1, 1)
    stem_time_stride: tuple[int, int, int, int] = (1, 1, 1, 1)
    shrink_time_stride: tuple[int, ...] = (1, 1)
    activation: str = "hardswish"
    distilled: bool = True
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) < 1 for v in self.input_size):
            raise ValueError(f"LeViTConfig.input_size={list(self.input_size)} must be three positive sizes (T, H, W)")
        stages = len(self.embed_dim)
        if not stages or len(self.depths) != stages or len(self.num_heads) != stages:
            raise ValueError(f"LeViTConfig: embed_dim={list(self.embed_dim)}, depths={list(self.depths)} and "
                             f"num_heads={list(self.num_heads)} need one entry per stage each")  # fmt: skip
        if len(self.shrink_time_stride) != stages - 1:
            raise ValueError(f"LeViTConfig.shrink_time_stride={list(self.shrink_time_stride)} needs one entry per "
                             f"shrink attention ({stages - 1}: stages 1..)")  # fmt: skip
        for name in ("stem_time_kernel", "stem_time_stride"):
            value = getattr(self, name)
            if len(value) != 4 or any(int(v) < 1 for v in value):
                raise ValueError(f"LeViTConfig.{name}={list(value)} must be four positive sizes (one per stem conv)")
        if any(int(s) < 1 for s in self.shrink_time_stride):
            raise ValueError(f"LeViTConfig.shrink_time_stride={list(self.shrink_time_stride)} must be positive")
        if self.embed_dim[0] % 8:
            raise ValueError(f"LeViTConfig: embed_dim[0]={self.embed_dim[0]} must be divisible by 8 (stem widths)")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"LeViTConfig.activation={self.activation!r} is not one of {tuple(_ACTIVATIONS)}")
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"LeViTConfig.attention={self.attention!r} is not one of ('auto', 'sdpa', 'math')")

    def replace(self, **changes) -> LeViTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Attention blocks in all stages, the shrink attentions included (the depth of layer decay)."""
        return sum(self.depths) + len(self.depths) - 1

    def stem_grid(self, input_size: THW | None = None) -> THW:
        """Token grid (T', H', W') after the stem for clips of ``input_size`` (default the configured one)."""
        t, h, w = input_size or self.input_size
        for kt, st in zip(self.stem_time_kernel, self.stem_time_stride):
            t, h, w = (t + 2 * (kt // 2) - kt) // st + 1, (h - 1) // 2 + 1, (w - 1) // 2 + 1
        return (t, h, w)

    def stage_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid each stage's blocks work on: the stem's, then one shrink (st, 2, 2) per stage."""
        grids = [self.stem_grid(input_size)]
        for st in self.shrink_time_stride:
            t, h, w = grids[-1]
            grids.append(((t - 1) // st + 1, (h - 1) // 2 + 1, (w - 1) // 2 + 1))
        return grids


def offset_bias_index(grid: THW, q_stride: THW = (1, 1, 1)) -> torch.Tensor:
    """(Nq, Nk) index of every (query, key) pair into a table of absolute offsets (|dt|, |dh|, |dw|) on ``grid``,
    ``(|dt| H + |dh|) W + |dw|``; queries at ``q_stride`` from 0 (timm's 2-D index when T = 1)."""
    _, h, w = grid
    k_pos = torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")).flatten(1)  # (3, Nk)
    q_axes = (torch.arange(0, n, s) for n, s in zip(grid, q_stride))
    q_pos = torch.stack(torch.meshgrid(*q_axes, indexing="ij")).flatten(1)  # (3, Nq)
    offsets = (q_pos[:, :, None] - k_pos[:, None, :]).abs()
    return (offsets[0] * h + offsets[1]) * w + offsets[2]


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _cache_key(*tensors: torch.Tensor) -> tuple:
    """Identifies the values of tensors: storage and version counter (every in-place change, ``load_state_dict``
    and optimizer steps included, bumps the version), dtype and device."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


class _FoldedNorm(nn.Module):
    """A bias-free ``linear`` (Linear or Conv3d) followed by a BatchNorm ``bn``. In eval mode without autograd
    (inference) the BatchNorm is folded into the weights (one matmul or conv with a bias, no normalisation pass;
    timm's ``fuse()`` does the same on request): the folded weights are kept until any of the five tensors changes
    (``_cache_key``), and ``.to()`` / ``.double()`` drop them."""

    linear: nn.Module
    bn: nn.Module

    def _fold_now(self) -> bool:
        return not self.training and not torch.is_grad_enabled() and self.bn.running_var is not None and not _tracing()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of ``linear`` with the eval-mode BatchNorm folded in."""
        bn, weight = self.bn, self.linear.weight
        key = _cache_key(weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if self._folded is None or self._folded[0] != key:
            scale = bn.weight.detach() * torch.rsqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (weight.dim() - 1)
            self._folded = (key, (weight.detach() * scale.view(shape), bn.bias.detach() - bn.running_mean * scale))
        return self._folded[1]

    def _apply(self, fn, recurse: bool = True):
        self._folded = None
        return super()._apply(fn, recurse)


class LinearNorm(_FoldedNorm):
    """A bias-free Linear and BatchNorm over the tokens: (B, N, C) -> (B, N, C'); folded for inference."""

    def __init__(self, in_dim: int, out_dim: int, bn_weight: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.bn = nn.BatchNorm1d(out_dim)
        nn.init.constant_(self.bn.weight, bn_weight)
        self._folded: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fold_now():
            return F.linear(x, *self.folded())
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class ConvNorm(_FoldedNorm):
    """A stem conv: bias-free Conv3d, kernel (kt, 3, 3), stride (st, 2, 2), padding (kt // 2, 1, 1), BatchNorm3d;
    folded for inference."""

    def __init__(self, in_chans: int, out_chans: int, time_kernel: int, time_stride: int) -> None:
        super().__init__()
        kernel, stride, padding = (time_kernel, 3, 3), (time_stride, 2, 2), (time_kernel // 2, 1, 1)
        self.linear = Conv3d(in_chans, out_chans, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(out_chans)
        self._folded: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fold_now():
            conv = self.linear
            return conv3d(x, *self.folded(), conv.stride, conv.padding)
        return self.bn(self.linear(x))


class NormLinear(nn.Module):
    """A classifier: BatchNorm over the features, dropout, Linear (trunc-normal std 0.02, zero bias)."""

    def __init__(self, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.bn(x)))


class OffsetBiasAttention(nn.Module):
    """What LeViT's attentions share: the per-offset bias table of the key grid and the attention kernel.

    Args:
        heads: attention heads.
        key_dim: query / key width per head (the scale is key_dim ** -0.5).
        grid: the key grid (T, H, W).
        q_stride: the query stride on it ((1, 1, 1): every token queries).
        impl: "auto", "sdpa" or "math".
    """

    def __init__(self, heads: int, key_dim: int, grid: THW, q_stride: THW, impl: str) -> None:
        super().__init__()
        self.heads, self.key_dim, self.scale, self.impl = heads, key_dim, key_dim**-0.5, impl
        self.grid, self.q_stride = tuple(grid), tuple(q_stride)
        self.attention_biases = nn.Parameter(torch.zeros(heads, math.prod(grid)))
        self.register_buffer("attention_bias_idxs", offset_bias_index(self.grid, self.q_stride), persistent=False)
        self._gathered: tuple[tuple, torch.Tensor] | None = None

    def attention_bias(self) -> torch.Tensor:
        """(heads, Nq, Nk) gathered from the table. Where no gradient is needed, the gathered copy is kept until the
        table changes: its storage and version counter are the key (every in-place change, ``load_state_dict``
        and optimizer steps included, bumps the version), and ``.to()`` / ``.double()`` drop it (``_apply``)."""
        table = self.attention_biases
        if _tracing() or (torch.is_grad_enabled() and table.requires_grad):  # export, compile: the gather is traced
            return table[:, self.attention_bias_idxs]
        key = _cache_key(table, self.attention_bias_idxs)
        if self._gathered is None or self._gathered[0] != key:
            self._gathered = (key, table.detach()[:, self.attention_bias_idxs])
        return self._gathered[1]

    def _apply(self, fn, recurse: bool = True):
        self._gathered = None
        return super()._apply(fn, recurse)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, heads, Nq, dk), k (B, heads, Nk, dk), v (B, heads, Nk, dv) -> (B, Nq, heads * dv)."""
        bias = self.attention_bias().to(q.dtype)
        # on a CPU the explicit kernel is the faster one for LeViT's short heads (16-32 channels, <= 196 tokens):
        # measured on levit_128s at batch 4, fp32, one thread: 73-78 ms a forward explicit, 88-94 ms with SDPA
        kernel = resolve_biased_attention(self.impl, q, bias)
        if self.impl == "auto" and q.device.type == "cpu":
            kernel = "math"
        if kernel == "sdpa":
            # a 4-D mask (1, heads, Nq, Nk): the fused kernels take a 3-D one much more slowly
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None], scale=self.scale)
        else:
            out = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1) @ v
        # (B, heads, Nq, dv) -> (B, Nq, heads * dv)
        return out.transpose(1, 2).flatten(2)


def _projection(in_dim: int, out_dim: int, act: type[nn.Module], bn_weight: float) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("act", act()), ("ln", LinearNorm(in_dim, out_dim, bn_weight))]))


class Attention(OffsetBiasAttention):
    """LeViT's self-attention on (B, N, C) tokens of ``grid``: one Linear+BN gives each head its q, k (``key_dim``)
    and v (``attn_ratio * key_dim``) side by side; the projection (Hardswish, Linear+BN) starts at BN weight 0."""

    def __init__(self, dim: int, heads: int, grid: THW, cfg: LeViTConfig, act: type[nn.Module]) -> None:
        super().__init__(heads, cfg.key_dim, grid, (1, 1, 1), cfg.attention)
        self.val_dim = int(cfg.attn_ratio * cfg.key_dim)
        self.qkv = LinearNorm(dim, heads * (2 * cfg.key_dim + self.val_dim))
        self.proj = _projection(heads * self.val_dim, dim, act, bn_weight=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        # (B, N, heads * (2 dk + dv)) -> q, k, v of (B, heads, N, d)
        qkv = self.qkv(x).view(B, N, self.heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        return self.proj(self.attend(q, k, v))


class Subsample(nn.Module):
    """The tokens (B, N, C) of ``grid`` at ``stride`` from the first: (B, N', C)."""

    def __init__(self, grid: THW, stride: THW) -> None:
        super().__init__()
        self.grid, self.stride = tuple(grid), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        st, sh, sw = self.stride
        return x.view(B, *self.grid, C)[:, ::st, ::sh, ::sw].reshape(B, -1, C)


class AttentionDownsample(OffsetBiasAttention):
    """Shrink attention: keys and values from all tokens of ``grid``, queries from those at ``stride``; width
    ``in_dim`` -> ``out_dim``, no residual."""

    def __init__(self, in_dim: int, out_dim: int, grid: THW, stride: THW, cfg: LeViTConfig,
                 act: type[nn.Module]) -> None:  # fmt: skip
        heads = in_dim // cfg.key_dim
        super().__init__(heads, cfg.key_dim, grid, stride, cfg.attention)
        self.val_dim = int(cfg.down_attn_ratio * cfg.key_dim)
        self.kv = LinearNorm(in_dim, heads * (cfg.key_dim + self.val_dim))
        self.q = nn.Sequential(OrderedDict([("down", Subsample(grid, stride)),
                                            ("ln", LinearNorm(in_dim, heads * cfg.key_dim))]))  # fmt: skip
        self.proj = _projection(heads * self.val_dim, out_dim, act, bn_weight=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        # (B, N, heads * (dk + dv)) -> k, v of (B, heads, N, d); q (B, heads, N', dk)
        k, v = self.kv(x).view(B, N, self.heads, -1).transpose(1, 2).split([self.key_dim, self.val_dim], dim=3)
        q = self.q(x).view(B, -1, self.heads, self.key_dim).transpose(1, 2)
        return self.proj(self.attend(q, k, v))


class LeViTMlp(nn.Module):
    """Linear+BN, activation, Linear+BN (its BN weight starting at 0, as a residual branch)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.ln1 = LinearNorm(dim, hidden)
        self.act = act()
        self.ln2 = LinearNorm(hidden, dim, bn_weight=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln2(self.act(self.ln1(x)))


class LeViTBlock(nn.Module):
    """Attention and MLP residuals on (B, N, C) tokens of ``grid``."""

    def __init__(self, dim: int, heads: int, grid: THW, cfg: LeViTConfig, act: type[nn.Module]) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, grid, cfg, act)
        self.drop_path1 = DropPath(cfg.drop_path_rate) if cfg.drop_path_rate > 0 else nn.Identity()
        self.mlp = LeViTMlp(dim, int(dim * cfg.mlp_ratio), act)
        self.drop_path2 = DropPath(cfg.drop_path_rate) if cfg.drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(x))
        return x + self.drop_path2(self.mlp(x))


class LeViTDownsample(nn.Module):
    """A shrink attention (no residual), then an MLP residual, at the start of stages 1.."""

    def __init__(self, in_dim: int, out_dim: int, grid: THW, stride: THW, cfg: LeViTConfig,
                 act: type[nn.Module]) -> None:  # fmt: skip
        super().__init__()
        self.attn_downsample = AttentionDownsample(in_dim, out_dim, grid, stride, cfg, act)
        self.mlp = LeViTMlp(out_dim, int(out_dim * cfg.down_mlp_ratio), act)
        self.drop_path = DropPath(cfg.drop_path_rate) if cfg.drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_downsample(x)
        return x + self.drop_path(self.mlp(x))


class LeViTStage(nn.Module):
    """One stage: the shrink attention from the previous grid (stages 1..), then the blocks."""

    def __init__(self, stage: int, grids: list[THW], cfg: LeViTConfig, act: type[nn.Module]) -> None:
        super().__init__()
        dim = cfg.embed_dim[stage]
        self.downsample = None
        if stage > 0:
            stride = (cfg.shrink_time_stride[stage - 1], 2, 2)
            self.downsample = LeViTDownsample(cfg.embed_dim[stage - 1], dim, grids[stage - 1], stride, cfg, act)
        heads = cfg.num_heads[stage]
        self.blocks = nn.ModuleList(LeViTBlock(dim, heads, grids[stage], cfg, act) for _ in range(cfg.depths[stage]))


class Stem16(nn.Sequential):
    """Four stem convs (widths C/8, C/4, C/2, C), an activation between each two: (B, 3, T, H, W) -> (B, C, T',
    H/16, W/16)."""

    def __init__(self, cfg: LeViTConfig, act: type[nn.Module]) -> None:
        super().__init__()
        dim = cfg.embed_dim[0]
        widths = (cfg.in_chans, dim // 8, dim // 4, dim // 2, dim)
        for i, (kt, st) in enumerate(zip(cfg.stem_time_kernel, cfg.stem_time_stride)):
            self.add_module(f"conv{i + 1}", ConvNorm(widths[i], widths[i + 1], kt, st))
            if i < 3:
                self.add_module(f"act{i + 1}", act())


class LeViT(nn.Module):
    """A LeViT-family model for clips (B, C, T, H, W) and images (B, C, H, W) of its configured size; returns class
    logits (distilled: the mean of both classifiers).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: LeViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        act = _ACTIVATIONS[cfg.activation]
        self.stem = Stem16(cfg, act)
        grids = cfg.stage_grids()
        self.stages = nn.ModuleList(LeViTStage(s, grids, cfg, act) for s in range(len(cfg.depths)))
        self.num_features = cfg.embed_dim[-1]
        self.num_layers = cfg.depth
        classify = cfg.num_classes > 0
        self.head = NormLinear(self.num_features, cfg.num_classes, cfg.head_dropout) if classify else nn.Identity()
        self.head_dist = None
        if cfg.distilled and classify:
            self.head_dist = NormLinear(self.num_features, cfg.num_classes, cfg.head_dropout)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """No interpolated position tables: the attention-bias tables fit one grid (image tables are repeated over
        time offsets by ``adapt.inflate_offset_biases``)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """The attention-bias tables (timm's rule)."""
        return {name for name, _ in self.named_parameters() if name.endswith("attention_biases")}

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: the stem 0, the k-th attention block of all stages
        (shrink attentions included, counted from 0) k + 1, the classifiers depth + 1."""
        if name.startswith("stem."):
            return 0
        if name.startswith("stages."):
            parts = name.split(".")
            stage = int(parts[1])
            before = sum(self.cfg.depths[:stage]) + max(stage - 1, 0)  # blocks and shrink attentions before it
            if parts[2] == "downsample":
                return before + 1
            return before + 1 + (1 if stage else 0) + int(parts[3])
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens (B, N, C) after the last stage."""
        x = self.stem(self._to_clip(x))
        expected = self.cfg.stage_grids()[0]
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"LeViT's attention biases fit a {'x'.join(map(str, expected))} token grid (input "
                             f"{'x'.join(map(str, self.cfg.input_size))}); this input of "
                             f"{'x'.join(map(str, x.shape[2:]))} tokens needs a model built with its input_size")  # fmt: skip
        x = x.flatten(2).transpose(1, 2)  # (B, C, T', H', W') -> (B, T'H'W', C)
        for stage in self.stages:
            if stage.downsample is not None:
                x = self._run_block(stage.downsample, x)
            for block in stage.blocks:
                x = self._run_block(block, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifiers' input: the mean token, (B, C)."""
        return self.forward_tokens(x).mean(dim=1)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both classifiers' logits (the second None without ``head_dist``), for a distillation loss."""
        features = self.forward_features(x)
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(features), (self.head_dist(features) if self.head_dist is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, dist = self.forward_heads(x)
        return logits if dist is None else (logits + dist) / 2

    def stage_specs(self, input_size: THW | None = None) -> list[tuple[tuple[int, int], int, int, THW]]:
        """Per stage: (first and last attention block, the shrink attention included; width, heads, token grid)."""
        out, first = [], 0
        for s, grid in enumerate(self.cfg.stage_grids(input_size)):
            count = self.cfg.depths[s] + (1 if s else 0)
            out.append(((first, first + count - 1), self.cfg.embed_dim[s], self.cfg.num_heads[s], grid))
            first += count
        return out


# ------------------------------------------------------------------------------------------- named variants


@register_model
def levit_128s_in1k() -> LeViTConfig:
    """LeViT-128S, 224, distilled (timm ``levit_128s`` / ``levit_conv_128s``; 7.78M parameters)."""
    return LeViTConfig(embed_dim=(128, 256, 384), key_dim=16, depths=(2, 3, 4), num_heads=(4, 6, 8))


@register_model
def levit_128_in1k() -> LeViTConfig:
    """LeViT-128, 224, distilled (timm ``levit_128``)."""
    return LeViTConfig(embed_dim=(128, 256, 384), key_dim=16, depths=(4, 4, 4), num_heads=(4, 8, 12))


@register_model
def levit_192_in1k() -> LeViTConfig:
    """LeViT-192, 224, distilled (timm ``levit_192``)."""
    return LeViTConfig(embed_dim=(192, 288, 384), key_dim=32, depths=(4, 4, 4), num_heads=(3, 5, 6))


@register_model
def levit_256_in1k() -> LeViTConfig:
    """LeViT-256, 224, distilled (timm ``levit_256``)."""
    return LeViTConfig(embed_dim=(256, 384, 512), key_dim=32, depths=(4, 4, 4), num_heads=(4, 6, 8))


@register_model
def levit_384_in1k() -> LeViTConfig:
    """LeViT-384, 224, distilled (timm ``levit_384``)."""
    return LeViTConfig(embed_dim=(384, 512, 768), key_dim=32, depths=(4, 4, 4), num_heads=(6, 9, 12))
