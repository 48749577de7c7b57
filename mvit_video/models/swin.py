"""The Swin family on video, one implementation for 2-D Swin (timm ``swin_*``, torchvision ``swin_t/s/b``) and
Video Swin (torchvision ``swin3d_*``, the original mmaction code): shifted-window attention over T x H x W windows.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. A Conv3d patch embedding (``patch_size`` (t,
h, w); the clip zero-padded at the end of each axis to a multiple, as torchvision's ``PatchEmbed3d`` pads) and a
LayerNorm make a channels-last grid (B, T', H', W', C). Each stage is a patch merging (stages 1.. only: spatial 2 x 2
neighbours concatenated as (h, w) = (0, 0), (1, 0), (0, 1), (1, 1), LayerNorm, a bias-free linear 4C -> 2C; time is
never merged) and blocks that alternate plain and shifted windows (half a window on every axis, odd blocks). Each
block's attention adds a learned relative-position bias (a (2Wt-1)(2Wh-1)(2Ww-1)-row table per block, indexed by
``layers.window.relative_position_index``) and, in shifted blocks, the -100 mask between tokens that the cyclic
shift brought together. The final norm, a global average over T' H' W' and the classifier follow.

Window rules, as the references apply them (they agree at the published sizes, where every grid is a multiple of
its window; they differ only on other grids):

- Along an axis whose grid is no longer than its window, the window shrinks to the grid and the shift vanishes
  (``fit_window``; Video Swin, timm). ``shrink_window=False`` keeps the window (torchvision's 2-D Swin: the grid is
  padded up to it; the shift still vanishes there).
- Grids are zero-padded at their end to window multiples before the cyclic shift (Video Swin, torchvision);
  ``shift_before_pad=True`` rolls the unpadded grid and pads after it (timm >= 0.9). The mask is built on the padded
  grid either way; padded tokens are keys like any other (none of the references masks them).
- A shrunk window takes its bias from the first N x N entries of the full window's index (Video Swin's
  ``relative_position_index[:N, :N]``; exact when only time shrinks, as for images in a video model). timm instead
  builds the blocks of a small input with smaller tables (its own parameter shapes): its files load where no window
  shrinks (224 for window 7).

State-dict names follow timm's layout (``patch_embed.{proj,norm}``, ``layers.{s}.downsample.{norm,reduction}`` at
the start of stages 1.., ``layers.{s}.blocks.{j}.{norm1, attn.qkv, attn.proj, attn.relative_position_bias_table,
norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head.fc``): it names every part (torchvision's ``features.{i}.{j}`` does not),
it is the layout of the largest set of published 2-D Swin weights (``swin_*.ms_in1k`` / ``ms_in22k``), its
no-weight-decay names are timm's, and stages own their merging so a stage's blocks and grid go together. The
relative-position index and masks are computed, not stored. ``formats/swin.py`` maps torchvision's 2-D and 3-D
layouts and Microsoft's (downsample at the end of a stage) onto it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import resolve_biased_attention
from .layers import DropPath, Mlp
from .layers.conv import Conv3d
from .layers.window import (
    THW,
    bias_table_size,
    cached_shift_window_mask,
    fit_window,
    pad_to_windows,
    relative_position_index,
    window_partition,
    window_reverse,
)
from .registry import register_model


@dataclass
class SwinConfig:
    """Architecture of one Swin-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        input_size: (T, H, W) of the clips the model is configured for (T=1 for image models; reports and FLOP
            counts use it, the model takes other sizes).
        in_chans: input channels.
        patch_size: (t, h, w) of the patch embedding (1 x 4 x 4 for images, 2 x 4 x 4 for Video Swin).
        embed_dim: width of the first stage (doubled by each patch merging).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: (Wt, Wh, Ww) attention window (1 x 7 x 7 for images, 8 x 7 x 7 for Video Swin).
        mlp_ratio: MLP expansion.
        qkv_bias: biases on q, k and v.
        norm_eps: LayerNorm epsilon (1e-5 in every Swin reference).
        shrink_window: windows shrink to shorter grids (Video Swin, timm); False: torchvision's 2-D rule (see the
            module docstring).
        shift_before_pad: timm's order: roll the unpadded grid, then pad (see the module docstring).
        drop_rate: dropout after the patch embedding and after the attention and MLP projections.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, linear from 0 at the first block to this at the last.
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward.
        attention: "auto" (SDPA, with bias + mask as its additive mask; explicit in float64 and FLOP counting),
            "sdpa" or "math" (the explicit reference).
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    patch_size: tuple[int, int, int] = (1, 4, 4)
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (1, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    shrink_window: bool = True
    shift_before_pad: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        for name in ("input_size", "patch_size", "window_size"):
            value = getattr(self, name)
            if len(value) != 3 or any(int(v) < 1 for v in value):
                raise ValueError(f"SwinConfig.{name}={list(value)} must be three positive sizes (T, H, W)")
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"SwinConfig: depths={list(self.depths)} and num_heads={list(self.num_heads)} need one "
                             f"entry per stage each")  # fmt: skip
        for stage, heads in enumerate(self.num_heads):
            if self.stage_dim(stage) % heads:
                raise ValueError(f"SwinConfig: stage {stage} width {self.stage_dim(stage)} is not divisible by "
                                 f"num_heads={heads}")  # fmt: skip
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"SwinConfig.attention={self.attention!r} is not one of ('auto', 'sdpa', 'math')")

    def replace(self, **changes) -> SwinConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage

    @property
    def depth(self) -> int:
        """Blocks in all stages."""
        return sum(self.depths)

    def stage_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid (T', H', W') each stage's blocks work on, for clips of ``input_size`` (default the
        configured one): the padded patch grid, then spatial halves (rounded up: patch merging pads odd sides)."""
        t, h, w = input_size or self.input_size
        pt, ph, pw = self.patch_size
        grid = (-(-t // pt), -(-h // ph), -(-w // pw))
        grids = [grid]
        for _ in self.depths[1:]:
            grid = (grid[0], -(-grid[1] // 2), -(-grid[2] // 2))
            grids.append(grid)
        return grids


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a relative-position bias, on channels-last grids.

    Args:
        dim: token width.
        heads: attention heads.
        window: the configured (Wt, Wh, Ww) window.
        shift: its cyclic shift (0 for plain blocks, half the window for shifted ones).
        cfg: the architecture (window rules, dropouts, attention kernel).
    """

    def __init__(self, dim: int, heads: int, window: THW, shift: THW, cfg: SwinConfig) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, tuple(window), tuple(shift)
        self.shrink, self.shift_before_pad, self.impl = cfg.shrink_window, cfg.shift_before_pad, cfg.attention
        self.attn_drop = cfg.attn_drop_rate
        self.qkv = nn.Linear(dim, dim * 3, bias=cfg.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        self.relative_position_bias_table = nn.Parameter(torch.zeros(bias_table_size(self.window), heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window), persistent=False)

    def window_and_shift(self, grid: THW) -> tuple[THW, THW]:
        """The window and shift this block uses on ``grid``."""
        window, shift = fit_window(grid, self.window, self.shift)
        return (window if self.shrink else self.window), shift

    def _bias(self, window: THW) -> torch.Tensor:
        """(heads, N, N) bias of a (possibly shrunk) window: Video Swin's cut of the full window's index."""
        n = math.prod(window)
        index = self.relative_position_index[:n, :n].reshape(-1)
        return self.relative_position_bias_table[index].view(n, n, -1).permute(2, 0, 1).contiguous()

    def _attend(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Windows (B * nW, N, C) -> attended (B * nW, N, C); ``mask`` (nW, N, N) or None."""
        Bw, N, C = x.shape
        # (B*nW, N, 3C) -> (3, B*nW, heads, N, C/heads)
        qkv = self.qkv(x).reshape(Bw, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # one stacked gradient in the backward pass (three selects zero-fill three)
        # bias and shift mask as one additive term: (1, heads, N, N), or (nW, heads, N, N) for the windows of a clip
        additive = bias[None] if mask is None else bias[None] + mask[:, None]
        dropout = self.attn_drop if self.training else 0.0
        if resolve_biased_attention(self.impl, q, additive) == "sdpa":
            # SDPA's fused CPU/GPU kernels take the mask fastest as one 4-D tensor: (1, heads, N, N) broadcast over
            # the windows, or one (heads, N, N) per window of every clip (windows are clip-major)
            additive = additive if mask is None else additive.repeat(batch, 1, 1, 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive.to(q.dtype), dropout_p=dropout)
        else:
            attn = (q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)  # (B*nW, heads, N, N)
            # the term broadcasts over the windows as they are: add in place (not when tracing: a traced graph must
            # serve every batch size)
            if mask is None or (batch == 1 and not torch.jit.is_tracing()):
                attn = attn.add_(additive)  # (the matmul's backward needs its inputs, not this output)
            else:  # one term per window of a clip, broadcast over the clips: (B, nW, heads, N, N)
                attn = (attn.unflatten(0, (batch, -1)) + additive).flatten(0, 1)
            out = F.dropout(attn.softmax(dim=-1), dropout, training=dropout > 0) @ v
        # (B*nW, heads, N, C/heads) -> (B*nW, N, C)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(Bw, N, C)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> (B, T, H, W, C)."""
        grid = tuple(x.shape[1:4])
        window, shift = self.window_and_shift(grid)
        # only the axes that shift are rolled, and only padded grids are cut back (a cut, even of the full extent,
        # costs a zero-filled gradient and a copy per axis in the backward pass)
        axes = tuple(axis + 1 for axis, s in enumerate(shift) if s)
        back = tuple(shift[axis - 1] for axis in axes)
        forth = tuple(-s for s in back)
        if axes and self.shift_before_pad:
            x = torch.roll(x, forth, dims=axes)
        x = pad_to_windows(x, window)
        padded = tuple(x.shape[1:4])
        if axes and not self.shift_before_pad:
            x = torch.roll(x, forth, dims=axes)
        mask = cached_shift_window_mask(padded, window, shift, x.device, x.dtype) if axes else None
        out = self._attend(window_partition(x, window), self._bias(window), mask, x.shape[0])
        x = window_reverse(out, window, padded)
        if axes and not self.shift_before_pad:
            x = torch.roll(x, back, dims=axes)
        if padded != grid:
            x = x[:, : grid[0], : grid[1], : grid[2]].contiguous()
        if axes and self.shift_before_pad:
            x = torch.roll(x, back, dims=axes)
        return x


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted-)window attention and MLP residuals on (B, T, H, W, C).

    Args:
        dim: token width.
        heads: attention heads.
        shift: whether this block's windows are shifted by half a window.
        drop_path: stochastic depth rate of this block.
        cfg: the architecture.
    """

    def __init__(self, dim: int, heads: int, shift: bool, drop_path: float, cfg: SwinConfig) -> None:
        super().__init__()
        window = tuple(cfg.window_size)
        shifts = tuple(w // 2 for w in window) if shift else (0, 0, 0)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = WindowAttention(dim, heads, window, shifts, cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), dim, cfg.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Spatial 2 x 2 patch merging on (B, T, H, W, C): odd sides zero-padded, the four neighbours concatenated as
    (h, w) = (0, 0), (1, 0), (0, 1), (1, 1) (Swin's ``x0..x3``), LayerNorm over 4C, bias-free linear to 2C."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H, W = x.shape[2], x.shape[3]
        # (B, T, H, W, C) -> (B, T, H/2, W/2, [w, h], C): h varies fastest in the concatenation
        x = x.reshape(B, T, H // 2, 2, W // 2, 2, C).permute(0, 1, 2, 4, 5, 3, 6).flatten(4)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """One stage: patch merging (all stages but the first), then the blocks."""

    def __init__(self, stage: int, rates: list[float], first_block: int, cfg: SwinConfig) -> None:
        super().__init__()
        dim = cfg.stage_dim(stage)
        self.downsample = PatchMerging(dim // 2, cfg.norm_eps) if stage > 0 else None
        heads = cfg.num_heads[stage]
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, j % 2 == 1, rates[first_block + j], cfg) for j in range(cfg.depths[stage])
        )


class PatchEmbed3d(nn.Module):
    """Clip (B, C, T, H, W) -> channels-last tokens (B, T', H', W', C'): the clip zero-padded at the end of each
    axis to a multiple of the patch, a strided Conv3d, LayerNorm."""

    def __init__(self, in_chans: int, dim: int, patch: THW, eps: float) -> None:
        super().__init__()
        self.patch = tuple(patch)
        self.proj = Conv3d(in_chans, dim, self.patch, self.patch)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [(p - s % p) % p for s, p in zip(x.shape[2:], self.patch)]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        # (B, C, T, H, W) -> (B, T', H', W', C')
        return self.norm(self.proj(x).permute(0, 2, 3, 4, 1))


class ClassifierHead(nn.Module):
    """Dropout and the linear classifier (``head.fc``, timm's name)."""

    def __init__(self, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


class SwinTransformer(nn.Module):
    """A Swin-family model for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed3d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, cfg.norm_eps)
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        firsts = [sum(cfg.depths[:s]) for s in range(len(cfg.depths))]
        self.layers = nn.ModuleList(SwinStage(s, rates, firsts[s], cfg) for s in range(len(cfg.depths)))
        self.num_features = cfg.stage_dim(len(cfg.depths) - 1)
        self.num_layers = cfg.depth
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = ClassifierHead(self.num_features, cfg.num_classes, cfg.head_dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's Swin initialisation: trunc-normal (std 0.02) Linear weights and bias tables, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The learned position tables, ``{name: (prefix rows, grid)}``: every block's relative-position bias table
        over its (2Wt-1, 2Wh-1, 2Ww-1) offsets (checkpoints of another window are resized onto it)."""
        offsets = tuple(2 * w - 1 for w in self.cfg.window_size)
        return {
            name: (0, offsets) for name, _ in self.named_parameters() if name.endswith("relative_position_bias_table")
        }

    def no_weight_decay(self) -> set[str]:
        """The relative-position bias tables (timm's rule)."""
        return set(self.position_tables())

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: the patch embedding 0, the k-th block of all stages
        (counted from 0) k + 1, a stage's patch merging with its first block, the final norm and head depth + 1."""
        if name.startswith("patch_embed."):
            return 0
        if name.startswith("layers."):
            parts = name.split(".")
            stage = int(parts[1])
            first = sum(self.cfg.depths[:stage])
            return first + 1 + (int(parts[3]) if parts[2] == "blocks" else 0)
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _run_block(self, block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The channels-last grid (B, T', H', W', C) after the last stage and the final norm."""
        x = self.pos_drop(self.patch_embed(self._to_clip(x)))
        for stage in self.layers:
            if stage.downsample is not None:
                x = stage.downsample(x)
            for block in stage.blocks:
                x = self._run_block(block, x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the mean token of the final grid, (B, C)."""
        return self.forward_tokens(x).mean(dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(features)

    def token_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid entering each block, and after the last."""
        grids = self.cfg.stage_grids(input_size)
        return [g for g, d in zip(grids, self.cfg.depths) for _ in range(d)] + [grids[-1]]

    def stage_specs(self, input_size: THW | None = None) -> list[tuple[tuple[int, int], int, int, THW]]:
        """Per stage: (first and last block, width, heads, token grid) for reports."""
        out, first = [], 0
        for s, grid in enumerate(self.cfg.stage_grids(input_size)):
            depth = self.cfg.depths[s]
            out.append(((first, first + depth - 1), self.cfg.stage_dim(s), self.cfg.num_heads[s], grid))
            first += depth
        return out


# ------------------------------------------------------------------------------------------- named variants


@register_model
def swin_t_in1k() -> SwinConfig:
    """Swin-T, window 7, 224 (timm ``swin_tiny_patch4_window7_224``, torchvision ``swin_t``)."""
    return SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2)


@register_model
def swin_s_in1k() -> SwinConfig:
    """Swin-S, window 7, 224 (timm ``swin_small_patch4_window7_224``, torchvision ``swin_s``)."""
    return SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3)


@register_model
def swin_b_in1k() -> SwinConfig:
    """Swin-B, window 7, 224 (timm ``swin_base_patch4_window7_224``, torchvision ``swin_b``)."""
    return SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)


def _video(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...]) -> SwinConfig:
    return SwinConfig(num_classes=400, input_size=(32, 224, 224), patch_size=(2, 4, 4), embed_dim=embed_dim,
                      depths=depths, num_heads=heads, window_size=(8, 7, 7), drop_path_rate=0.1)  # fmt: skip


@register_model
def swin3d_t_32x2() -> SwinConfig:
    """Video Swin-T, patch 2x4x4, window 8x7x7, 32 x 224, K400 (torchvision ``swin3d_t``)."""
    return _video(96, (2, 2, 6, 2), (3, 6, 12, 24))


@register_model
def swin3d_s_32x2() -> SwinConfig:
    """Video Swin-S, patch 2x4x4, window 8x7x7, 32 x 224, K400 (torchvision ``swin3d_s``)."""
    return _video(96, (2, 2, 18, 2), (3, 6, 12, 24))


@register_model
def swin3d_b_32x2() -> SwinConfig:
    """Video Swin-B, patch 2x4x4, window 8x7x7, 32 x 224, K400 (torchvision ``swin3d_b``)."""
    return _video(128, (2, 2, 18, 2), (4, 8, 16, 32))
