"""Shuffle Transformer (Huang et al. 2021, "Shuffle Transformer: Rethinking Spatial Shuffle for Vision Transformer")
on video: regular and shuffled windows alternating, the shuffle over T, H and W.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. The whole model works in the NCTHW layout of
the official code (mulinmeng/Shuffle-Transformer, ``models/shuffle_transformer.py``), with every 2-D operator made
3-D: the token stem (``to_token``: conv 3x3/2 to 32, BN, ReLU6, conv 3x3/2 to 96, BN, ReLU6, conv 1x1), 1x1 convs
for q/k/v, the output projection and the MLP (ReLU6), BatchNorm3d for every norm, the neighbour-window depthwise
conv ``local`` (kernel = window in space, ``local_temporal_kernel`` in time) and PatchMerging (BN, then a (1, 2, 2)
conv of stride (1, 2, 2) without bias). A block is

    x = x + drop_path(attn(norm1(x)));  x = x + local(norm2(x));  x = x + drop_path(mlp(norm3(x)))

(no drop path on ``local``). Attention runs in windows of Wt x Wh x Ww tokens: the regular block takes contiguous
windows (``(n w)`` along each axis: position = window index * w + offset), the shuffled block strided ones
(``(w n)``: position = offset * n + window index, the official einops pattern ``(ws1 hh) (ws2 ww)``), and both add a
Swin-style relative-position bias over the window's (2Wt-1)(2Wh-1)(2Ww-1) offsets as if the tokens were contiguous.
With Wt = 1 and T = 1 this is the official 2-D model. Where a token grid is no longer than the window along an axis
the window shrinks to it (one window, nothing to shuffle); elsewhere the grid must be a multiple of the window (the
official code requires it too).

Quirks of the official code kept here: ``to_qkv`` has no bias whatever the config says; ``qkv_bias`` gives the
``local`` conv a bias (the official ``QKV_BIAS: True`` does only that); there is no final norm before the average
pooling; the drop-path rate is constant within a stage (``linspace(0, drop_path_rate, stages)``); the stage width
is heads x 32 in the official constructor (here ``dims``, given explicitly). The official defines but never applies
attention dropout; ``attn_drop_rate`` (0 by default) applies it here.

State-dict keys are the official ones (``to_token.conv{1,2}.{0,1}``, ``to_token.conv3``,
``stage{s}.patch_partition.{norm,reduction}``, ``stage{s}.layers.{j}.{0,1}.{norm1, attn.to_qkv,
attn.relative_position_bias_table, attn.proj, local, norm2, mlp.fc1, mlp.fc2, norm3}``, ``head``); conv kernels
carry a time axis (1 in the image model) and the official ``relative_position_index`` buffers are recomputed, not
stored (``formats/shuffle.py`` drops them and unsqueezes 2-D kernels on load).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import resolve_attention, resolve_biased_attention
from .layers import DropPath
from .layers.conv import Conv3d
from .layers.embedding import pad_time_to
from .layers.window import bias_table_size, fit_window, relative_position_index
from .registry import register_model

THW = tuple[int, int, int]


@dataclass
class ShuffleConfig:
    """Architecture of one Shuffle Transformer, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        input_size: (T, H, W) of the clips (T=1 for image models); every stage's token grid must fit the window.
        in_chans: input channels.
        token_dim: width of the stem's first conv (the official ``token_dim``, 32).
        embed_dim: width of the stem's output (96); a stage whose width differs from its input's starts with
            PatchMerging (in Shuffle-T every stage but the first).
        stem_tubelet: time kernel and stride of the stem's first conv (frames per token; the clip is zero-padded
            at its end to a multiple). 1 for image models.
        depths: blocks per stage, each even (pairs of a regular and a shuffled block).
        dims: width per stage (the official code uses heads x 32).
        num_heads: attention heads per stage.
        window_size: (Wt, Wh, Ww) attention window; Wh and Ww odd (they are also the ``local`` conv's kernel).
        local_temporal_kernel: time kernel of the ``local`` depthwise conv (odd, zero-padded; 1 for images).
        shuffle: shuffled windows in every second block (False: all blocks regular, plain window attention).
        relative_pos: the relative-position bias (the official ``relative_pos_embedding``, True).
        mlp_ratio: MLP expansion.
        qkv_bias: a bias on the ``local`` conv (the official quirk: ``to_qkv`` never has one).
        bn_eps: BatchNorm epsilon (PyTorch's default, as the official code).
        drop_rate, attn_drop_rate, drop_path_rate: dropout after the projection and in the MLP, on the attention
            weights, stochastic depth (constant per stage, linear from 0 at the first stage to this at the last).
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward (the recomputation updates the BatchNorm statistics a
            second time per step in training: their momentum acts as 1 - (1 - m)^2).
        attention: "auto", "sdpa" (fused, the bias as an additive mask) or "math" (the explicit reference).
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    token_dim: int = 32
    embed_dim: int = 96
    stem_tubelet: int = 1
    depths: tuple[int, ...] = (2, 2, 6, 2)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (1, 7, 7)
    local_temporal_kernel: int = 1
    shuffle: bool = True
    relative_pos: bool = True
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    bn_eps: float = 1e-5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        if not len(self.depths) == len(self.dims) == len(self.num_heads) > 0:
            raise ValueError(f"ShuffleConfig: depths {self.depths}, dims {self.dims} and num_heads {self.num_heads} "
                             "need one entry per stage each")  # fmt: skip
        for i, (depth, dim, heads) in enumerate(zip(self.depths, self.dims, self.num_heads)):
            if depth <= 0 or depth % 2:
                raise ValueError(f"ShuffleConfig.depths[{i}]={depth} must be even and > 0 (regular/shuffled pairs)")
            if dim % heads:
                raise ValueError(f"ShuffleConfig.dims[{i}]={dim} is not divisible by num_heads[{i}]={heads}")
        if len(self.window_size) != 3 or min(self.window_size) < 1 or not all(w % 2 for w in self.window_size[1:]):
            raise ValueError(f"ShuffleConfig.window_size={self.window_size} must be (Wt, Wh, Ww) >= 1 with odd Wh, "
                             "Ww (they are the local conv's kernel)")  # fmt: skip
        if self.local_temporal_kernel < 1 or self.local_temporal_kernel % 2 == 0:
            raise ValueError(f"ShuffleConfig.local_temporal_kernel={self.local_temporal_kernel} must be odd and >= 1")
        if self.stem_tubelet < 1:
            raise ValueError(f"ShuffleConfig.stem_tubelet={self.stem_tubelet} must be >= 1")
        self.stage_grids(self.input_size)

    def replace(self, **changes) -> ShuffleConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Blocks in all stages."""
        return sum(self.depths)

    def stem_grid(self, input_size: THW) -> THW:
        """Token grid after the stem: frames / tubelet (rounded up), two padded stride-2 convs in space."""
        t, h, w = input_size

        def quarter(n: int) -> int:  # two convs of kernel 3, stride 2, padding 1: each rounds the half up
            return ((n + 1) // 2 + 1) // 2

        return ((t + self.stem_tubelet - 1) // self.stem_tubelet, quarter(h), quarter(w))

    def stage_grids(self, input_size: THW) -> list[THW]:
        """Token grid of each stage's blocks; ``ValueError`` where a grid does not fit the window."""
        grids, (t, h, w), width = [], self.stem_grid(input_size), self.embed_dim
        for i, dim in enumerate(self.dims):
            if dim != width:  # PatchMerging halves H and W
                h, w = h // 2, w // 2
            width = dim
            fitted, _ = fit_window((t, h, w), self.window_size, (0, 0, 0))
            if min(t, h, w) < 1 or any(g % f for g, f in zip((t, h, w), fitted)):
                raise ValueError(f"ShuffleConfig: stage {i + 1}'s token grid {t}x{h}x{w} (input {input_size}) is not a "
                                 f"multiple of window {self.window_size}; choose an input size whose grids are")  # fmt: skip
            grids.append((t, h, w))
        return grids


def _bias_index(fitted: THW, window: THW) -> torch.Tensor:
    """(N, N) rows of the ``window``-sized bias table for a window shrunk to ``fitted`` (N = its tokens): the table
    row of each offset, with ``window``'s strides (``relative_position_index`` when nothing shrank)."""
    if fitted == window:
        return relative_position_index(window)
    coords = torch.stack(torch.meshgrid(*(torch.arange(f) for f in fitted), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    (wt, wh, ww) = window
    return ((rel[0] + wt - 1) * (2 * wh - 1) + rel[1] + wh - 1) * (2 * ww - 1) + rel[2] + ww - 1


def _to_windows(x: torch.Tensor, window: THW, shuffled: bool) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * windows, N, C): regular windows take contiguous tokens (position = window * w +
    offset), shuffled ones strided tokens (position = offset * n + window)."""
    B, C, T, H, W = x.shape
    (wt, wh, ww), (nt, nh, nw) = window, (T // window[0], H // window[1], W // window[2])
    if shuffled:  # axes (B, C, wt, nt, wh, nh, ww, nw)
        x = x.reshape(B, C, wt, nt, wh, nh, ww, nw).permute(0, 3, 5, 7, 2, 4, 6, 1)
    else:  # axes (B, C, nt, wt, nh, wh, nw, ww)
        x = x.reshape(B, C, nt, wt, nh, wh, nw, ww).permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(B * nt * nh * nw, wt * wh * ww, C)


def _from_windows(x: torch.Tensor, window: THW, grid: THW, shuffled: bool) -> torch.Tensor:
    """The inverse of ``_to_windows``: (B * windows, N, C) -> (B, C, T, H, W)."""
    (wt, wh, ww), (T, H, W), C = window, grid, x.shape[-1]
    nt, nh, nw = T // wt, H // wh, W // ww
    x = x.reshape(-1, nt, nh, nw, wt, wh, ww, C)
    if shuffled:  # -> (B, C, wt, nt, wh, nh, ww, nw)
        x = x.permute(0, 7, 4, 1, 5, 2, 6, 3)
    else:  # -> (B, C, nt, wt, nh, wh, nw, ww)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(-1, C, T, H, W)


def _attend(q, k, v, bias: torch.Tensor | None, impl: str, dropout: float) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` over (B, heads, N, d): fused (SDPA, the bias as an additive mask) or
    explicit."""
    kernel = resolve_attention(impl, q) if bias is None else resolve_biased_attention(impl, q, bias)
    if kernel == "sdpa":
        # a 4-D mask (1, heads, N, N): the fused kernels take a 3-D one much more slowly
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias[None],
                                              dropout_p=dropout)  # fmt: skip
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    return F.dropout(attn.softmax(dim=-1), dropout, training=dropout > 0) @ v


class WindowAttention(nn.Module):
    """Multi-head attention in regular or shuffled Wt x Wh x Ww windows of a (B, C, T, H, W) grid, with a
    relative-position bias; ``to_qkv`` and ``proj`` are 1x1x1 convs (``to_qkv`` without bias, as the official).

    Args:
        dim: channels.
        heads: attention heads.
        window: (Wt, Wh, Ww) window (shrunk per axis to grids no longer than it).
        shuffled: strided (shuffled) windows instead of contiguous ones.
        relative_pos: add the relative-position bias.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the projection.
        impl: "auto", "sdpa" or "math".
    """

    def __init__(self, dim: int, heads: int, window: THW, shuffled: bool, relative_pos: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, impl: str = "auto") -> None:  # fmt: skip
        super().__init__()
        self.heads, self.window, self.shuffled, self.impl, self.attn_drop = (
            heads,
            tuple(window),
            shuffled,
            impl,
            attn_drop,
        )
        self.to_qkv = Conv3d(dim, dim * 3, 1, bias=False)
        self.proj = Conv3d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.relative_position_bias_table = None
        if relative_pos:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(bias_table_size(self.window), heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", relative_position_index(self.window), persistent=False)

    def _bias(self, fitted: THW) -> torch.Tensor | None:
        """(heads, N, N) bias of a ``fitted`` window."""
        table = self.relative_position_bias_table
        if table is None:
            return None
        if fitted == self.window:
            index = self.relative_position_index
        else:
            index = _bias_index(fitted, self.window).to(table.device)
        n = index.shape[0]
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C, T, H, W = x.shape[1:]
        fitted, _ = fit_window((T, H, W), self.window, (0, 0, 0))
        qkv = _to_windows(self.to_qkv(x), fitted, self.shuffled)  # (B * windows, N, 3C)
        Bw, N, _ = qkv.shape
        # channels are (qkv, heads, d): (Bw, N, 3C) -> (3, Bw, heads, N, d)
        q, k, v = qkv.reshape(Bw, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        bias = self._bias(fitted)
        out = _attend(q, k, v, None if bias is None else bias.to(q.dtype), self.impl,
                      self.attn_drop if self.training else 0.0)  # fmt: skip
        out = _from_windows(out.transpose(1, 2).reshape(Bw, N, C), fitted, (T, H, W), self.shuffled)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """The official MLP: 1x1x1 conv, ReLU6, dropout, 1x1x1 conv, dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Conv3d(dim, hidden, 1)
        self.act = nn.ReLU6()
        self.fc2 = Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ShuffleBlock(nn.Module):
    """Window attention, the neighbour-window depthwise conv ``local`` and the MLP, each a pre-norm residual
    (BatchNorm3d); drop path on the attention and MLP branches only.

    Args:
        cfg: the architecture.
        dim: channels.
        heads: attention heads.
        shuffled: shuffled windows.
        drop_path: stochastic depth rate.
    """

    def __init__(self, cfg: ShuffleConfig, dim: int, heads: int, shuffled: bool, drop_path: float) -> None:
        super().__init__()
        window = tuple(cfg.window_size)
        self.norm1 = nn.BatchNorm3d(dim, eps=cfg.bn_eps)
        self.attn = WindowAttention(dim, heads, window, shuffled, cfg.relative_pos, cfg.attn_drop_rate, cfg.drop_rate,
                                    cfg.attention)  # fmt: skip
        kernel = (cfg.local_temporal_kernel, window[1], window[2])
        self.local = Conv3d(dim, dim, kernel, 1, tuple(k // 2 for k in kernel), groups=dim, bias=cfg.qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm3d(dim, eps=cfg.bn_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        self.norm3 = nn.BatchNorm3d(dim, eps=cfg.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.local(self.norm2(x))  # no drop path here (official)
        return x + self.drop_path(self.mlp(self.norm3(x)))


class PatchMerging(nn.Module):
    """BatchNorm, then a (1, 2, 2) conv of stride (1, 2, 2) without bias: H and W halve, the width changes."""

    def __init__(self, dim: int, out_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(dim, eps=eps)
        self.reduction = Conv3d(dim, out_dim, (1, 2, 2), (1, 2, 2), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(x))


class ShuffleStage(nn.Module):
    """An optional PatchMerging (``patch_partition``), then pairs of a regular and a shuffled block (``layers.j.0``,
    ``layers.j.1``)."""

    def __init__(self, cfg: ShuffleConfig, in_dim: int, stage: int, drop_path: float) -> None:
        super().__init__()
        dim, heads = cfg.dims[stage], cfg.num_heads[stage]
        self.patch_partition = PatchMerging(in_dim, dim, cfg.bn_eps) if in_dim != dim else None
        pairs = [(ShuffleBlock(cfg, dim, heads, False, drop_path), ShuffleBlock(cfg, dim, heads, cfg.shuffle, drop_path))
                 for _ in range(cfg.depths[stage] // 2)]  # fmt: skip
        self.layers = nn.ModuleList(nn.ModuleList(pair) for pair in pairs)

    def forward(self, x: torch.Tensor, act_checkpoint: bool = False) -> torch.Tensor:
        if self.patch_partition is not None:
            x = self.patch_partition(x)
        for pair in self.layers:
            for block in pair:
                x = checkpoint(block, x, use_reentrant=False) if act_checkpoint else block(x)
        return x


class TokenStem(nn.Module):
    """The official ``to_token`` stem on clips: ``conv1`` (3x3 stride 2, ``stem_tubelet`` frames and stride in
    time, the clip zero-padded at its end to a multiple) to ``token_dim``, BN, ReLU6; ``conv2`` (3x3 stride 2) to
    ``embed_dim``, BN, ReLU6; ``conv3`` (1x1). 224 pixels give 56 tokens a side."""

    def __init__(self, cfg: ShuffleConfig) -> None:
        super().__init__()
        tub, eps = cfg.stem_tubelet, cfg.bn_eps
        self.conv1 = nn.Sequential(Conv3d(cfg.in_chans, cfg.token_dim, (tub, 3, 3), (tub, 2, 2), (0, 1, 1)),
                                   nn.BatchNorm3d(cfg.token_dim, eps=eps), nn.ReLU6())  # fmt: skip
        self.conv2 = nn.Sequential(Conv3d(cfg.token_dim, cfg.embed_dim, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
                                   nn.BatchNorm3d(cfg.embed_dim, eps=eps), nn.ReLU6())  # fmt: skip
        self.conv3 = Conv3d(cfg.embed_dim, cfg.embed_dim, 1)
        self.tubelet = tub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(pad_time_to(x, self.tubelet))))


class ShuffleTransformer(nn.Module):
    """A Shuffle Transformer for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: ShuffleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.to_token = TokenStem(cfg)
        n = len(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path_rate, n, device="cpu").tolist()  # one rate per stage (official)
        in_dims = (cfg.embed_dim, *cfg.dims[:-1])
        for s in range(n):
            self.add_module(f"stage{s + 1}", ShuffleStage(cfg, in_dims[s], s, rates[s]))
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.num_features = cfg.dims[-1]
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation: trunc-normal (std 0.02) conv and linear weights, zero biases, BN 1/0."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def stages(self) -> list[ShuffleStage]:
        return [getattr(self, f"stage{s + 1}") for s in range(len(self.cfg.depths))]

    @property
    def blocks(self) -> tuple[ShuffleBlock, ...]:
        """Every block in order (a view: they are registered under their stages)."""
        return tuple(block for stage in self.stages for pair in stage.layers for block in pair)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """No absolute position tables (the bias tables are relative)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """The relative-position bias tables (the official ``no_weight_decay_keywords``)."""
        return {name for name, _ in self.named_parameters() if name.endswith("relative_position_bias_table")}

    def layer_id(self, name: str) -> int:
        """Depth index for layer-wise LR decay: the stem 0, block i (counted over all stages) i + 1, a stage's
        PatchMerging with its first block, the head depth + 1."""
        if name.startswith("to_token."):
            return 0
        if name.startswith("stage"):
            stage, part = name.split(".", 2)[:2]
            s = int(stage[len("stage") :]) - 1
            first = sum(self.cfg.depths[:s])
            if part == "layers":
                j, k = name.split(".")[2:4]
                return first + 2 * int(j) + int(k) + 1
            return first + 1
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output grid (B, C, T', H', W') (no final norm, as the official)."""
        x = self._to_clip(x)
        self.cfg.stage_grids(tuple(x.shape[2:]))  # a one-line error for grids that do not fit the window
        x = self.to_token(x)
        ckpt = self.cfg.act_checkpoint and self.training and torch.is_grad_enabled()
        for stage in self.stages:
            x = stage(x, ckpt)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the mean over the last grid, (B, C)."""
        return self.forward_grid(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head_drop(self.forward_features(x))
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(features)

    def stage_specs(self, input_size: THW | None = None) -> list[tuple[tuple[int, int], int, int, THW]]:
        """Per stage: (first block, last block), width, heads and the token grid of its blocks."""
        grids = self.cfg.stage_grids(tuple(input_size or self.cfg.input_size))
        specs, first = [], 0
        for depth, dim, heads, grid in zip(self.cfg.depths, self.cfg.dims, self.cfg.num_heads, grids):
            specs.append(((first, first + depth - 1), dim, heads, grid))
            first += depth
        return specs


# ------------------------------------------------------------------------------------------- named variants


@register_model
def shuffle_t_in1k() -> ShuffleConfig:
    """Shuffle-T at 224 (official ``shuffle_vit_tiny_patch4_window7_224``): depths 2/2/6/2, widths 96/192/384/768,
    heads 3/6/12/24, window 7, the ``local`` conv with bias (``QKV_BIAS: True``). 28,532,482 parameters (28M in the
    paper), 4.7 GFLOPs as fvcore counts (4.6 in the paper), 82.4% ImageNet top-1 (paper; the official config trains
    with drop path 0.1). Its weights were trained on inputs
    normalised with the ImageNet mean and std (timm's defaults), bicubic resizing, centre crop 0.875."""
    return ShuffleConfig()


@register_model
def shuffle3d_t_32x2() -> ShuffleConfig:
    """Shuffle-T on video, 32 frames x 224 for Kinetics-400, chosen as Video Swin-T does: tubelets of 2 frames in
    the stem's first conv (16 token frames), windows of 8 x 7 x 7 (two windows in time, shuffled over T as over H
    and W), and a ``local`` conv of 3 x 7 x 7. From Shuffle-T weights (``load_pretrained``): 2-D kernels are
    inflated (``inflate="centre"`` keeps one-frame and static clips equal to the image model) and the bias tables
    repeated over the 2Wt - 1 = 15 time offsets. 28,831,222 parameters, 93.0 GFLOPs per 32 x 224 view (fvcore;
    Video Swin-T: 28.2M, 87.8). No published weights."""
    return ShuffleConfig(num_classes=400, input_size=(32, 224, 224), stem_tubelet=2, window_size=(8, 7, 7),
                         local_temporal_kernel=3, drop_path_rate=0.1)  # fmt: skip
