"""MaskFeat pre-training of MViT (Wei et al., 2022), as PySlowFast's ``MaskMViT`` computes it.

The encoder is an ``MViT`` cut after the last ``pretrain_depth`` block, without its final norm and classifier.
Masked patch tokens are replaced by a learned ``mask_token``; at each pretrain depth a prediction head (LayerNorm +
Linear) regresses, for every masked token, the HOG features (or the normalised pixels) of the picture region the
token covers. The model returns its predictions and the targets; ``multi_mse`` turns them into the loss.

State-dict keys are PySlowFast's: the MViT keys of the kept blocks, ``mask_token``,
``pred_head.transforms.<i>.0.{weight,bias}``, ``pred_head.projections.<i>.{weight,bias}`` and the HOG filter
buffers ``hogs.0.weight_x`` / ``hogs.0.weight_y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .mvit import MViT, MViTConfig, block_specs

# tensors that exist only for pre-training: a fine-tuned classifier drops them
PRETRAINING_PREFIXES = ("mask_token", "pred_head.", "hogs.")

HOG_BINS = 9  # PySlowFast's MaskMViT: 9 orientation bins ...
HOG_CELL = 8  # ... on 8 x 8 pixel cells


@dataclass(frozen=True)
class MaskFeatConfig:
    """The pre-training side of a ``MaskMViT`` (PySlowFast's ``MASK`` section).

    Args:
        pretrain_depth: blocks whose outputs feed a prediction head (``MASK.PRETRAIN_DEPTH``); blocks after the last
            one are dropped.
        pred_hog: regress HOG features (MaskFeat) instead of pixels (``MASK.PRED_HOG``).
        norm_pred_pixel: pixel targets normalised per token (``MASK.NORM_PRED_PIXEL``).
        time_stride_loss: pixel targets only on every temporal-stride-th frame (``MASK.TIME_STRIDE_LOSS``).
        scale_init_by_depth: divide each block's output projections by sqrt(2 * layer) (``MASK.SCALE_INIT_BY_DEPTH``).
        hog_bins, hog_cell: HOG orientation bins and cell size in pixels.
    """

    pretrain_depth: tuple[int, ...] = (15,)
    pred_hog: bool = True
    norm_pred_pixel: bool = True
    time_stride_loss: bool = True
    scale_init_by_depth: bool = False
    hog_bins: int = HOG_BINS
    hog_cell: int = HOG_CELL


class HOGLayer(nn.Module):
    """Histograms of oriented gradients per colour channel (PySlowFast's ``HOGLayerC``, no Gaussian window).

    Sobel gradients (reflect-padded), each pixel's magnitude added to the bin ``floor(atan2(gx, gy) / pi * nbins)
    mod nbins``, summed over ``pool`` x ``pool`` cells, L2-normalised over the bins of each cell.

    Args:
        nbins: orientation bins.
        pool: cell size in pixels.
    """

    def __init__(self, nbins: int = HOG_BINS, pool: int = HOG_CELL) -> None:
        super().__init__()
        self.nbins, self.pool = nbins, pool
        weight_x = (
            torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
        )
        self.register_buffer("weight_x", weight_x)
        self.register_buffer("weight_y", weight_x.transpose(2, 3).contiguous())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, nbins, H / pool, W / pool)."""
        x = F.pad(x.float(), (1, 1, 1, 1), mode="reflect")
        gx = F.conv2d(x, self.weight_x, groups=3)
        gy = F.conv2d(x, self.weight_y, groups=3)
        magnitude = torch.stack([gx, gy], dim=-1).norm(dim=-1)
        bins = (torch.atan2(gx, gy) / math.pi * self.nbins).floor().long() % self.nbins
        b, c, h, w = magnitude.shape
        hist = torch.zeros(b, c, self.nbins, h, w, device=x.device)
        hist.scatter_add_(2, bins.unsqueeze(2), magnitude.unsqueeze(2))
        # (B, 3, nbins, H, W) -> (B, 3, nbins, H/p, W/p, p, p) -> summed per cell
        hist = hist.unfold(3, self.pool, self.pool).unfold(4, self.pool, self.pool).sum(dim=(-1, -2))
        return F.normalize(hist, p=2, dim=2)


class SeparateHead(nn.Module):
    """PySlowFast's ``MSSeparateHead`` of type "separate": per pretrain depth a LayerNorm and a Linear, applied to the
    masked tokens only.

    Args:
        dims: token width at each pretrain depth.
        num_outputs: target width at each pretrain depth.
        has_cls: the tokens start with a cls token (dropped before the projection).
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, dims: Sequence[int], num_outputs: Sequence[int], has_cls: bool, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.has_cls = has_cls
        self.transforms = nn.ModuleList(nn.Sequential(nn.LayerNorm(d, eps=norm_eps)) for d in dims)
        self.projections = nn.ModuleList(nn.Linear(d, n) for d, n in zip(dims, num_outputs))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per depth: ([cls +] N tokens (B, [1 +] N, C), (B, N) bool mask) -> (masked tokens, outputs)."""
        outputs = []
        for transform, projection, x, mask in zip(self.transforms, self.projections, features, masks):
            x = transform(x)
            if self.has_cls:
                x = x[:, 1:]
            outputs.append(projection(x[mask]))
        return outputs


def _output_strides(cfg: MViTConfig) -> list[tuple[int, int, int]]:
    """(t, h, w) pixel stride of each block's output tokens: the patch stride times the query strides so far."""
    stride = list(cfg.patch_stride) if not cfg.patch_2d else [1, *cfg.patch_stride]
    strides = []
    for spec in block_specs(cfg):
        if spec.stride_q:
            stride = [s * q for s, q in zip(stride, spec.stride_q)]
        strides.append(tuple(stride))
    return strides


class MaskMViT(MViT):
    """An MViT encoder for MaskFeat pre-training (PySlowFast's ``MaskMViT`` without its MAE branch).

    ``forward(x, mask)`` takes clips (B, 3, T, H, W) and a (B, T', h, w) bool mask over the patch-token grid
    (T' = T / temporal patch stride; h, w divide the token grid: the mask is repeated to it, as PySlowFast's nearest
    interpolation does) and returns ``(predictions, targets)``: per pretrain depth, the (M, D) predictions for the
    M masked tokens and ``(target (M, D), weight)``.

    Args:
        cfg: the MViT encoder (its blocks after ``mask.pretrain_depth[-1]`` are dropped).
        mask: the pre-training settings.
    """

    def __init__(self, cfg: MViTConfig, mask: MaskFeatConfig) -> None:
        super().__init__(cfg)
        if cfg.patch_2d:
            raise ValueError("MaskMViT: image (2-D patch) models are not supported")
        depths = tuple(mask.pretrain_depth)
        if not depths or list(depths) != sorted(set(depths)) or not 0 <= depths[0] <= depths[-1] < cfg.depth:
            raise ValueError(f"MaskMViT: pretrain_depth {list(depths)} must be increasing block indices < {cfg.depth}")
        self.mask_cfg = mask
        del self.blocks[depths[-1] + 1 :]
        del self.norm, self.head
        grids = self.token_grids()
        self.feature_grids = [grids[d + 1] for d in depths]
        strides = _output_strides(cfg)
        self.feature_strides = [strides[d][-1] for d in depths]
        specs = block_specs(cfg)
        dims = [specs[d].dim_out for d in depths]
        if mask.pred_hog:
            self.hogs = nn.ModuleList([HOGLayer(mask.hog_bins, mask.hog_cell)])
            outputs = [mask.hog_bins * (s // mask.hog_cell) ** 2 * 3 for s in self.feature_strides]
        else:
            frames = 1 if mask.time_stride_loss else cfg.patch_stride[0]
            outputs = [frames * s**2 * 3 for s in self.feature_strides]
        self.pred_head = SeparateHead(dims, outputs, cfg.cls_embed, cfg.norm_eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if mask.scale_init_by_depth:
            self._scale_init_by_depth()

    @property
    def pretrain_depth(self) -> tuple[int, ...]:
        return tuple(self.mask_cfg.pretrain_depth)

    def _scale_init_by_depth(self) -> None:
        with torch.no_grad():
            for layer, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"mask_token"}

    # ------------------------------------------------------------------------------------------------ targets

    def feature_masks(self, mask: torch.Tensor) -> list[torch.Tensor]:
        """(B, T', h, w) mask -> per pretrain depth a (B, T'*H_d*W_d) bool mask on that depth's token grid."""
        float_mask = mask.float()
        return [F.interpolate(float_mask, size=tuple(grid[1:])).flatten(1).bool() for grid in self.feature_grids]

    def hog_targets(self, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, float]]:
        """HOG of every temporal-stride-th frame, grouped per token: per depth ((M, 3 * nbins * cells), 1.0)."""
        frames = x[:, :, :: self.cfg.patch_stride[0]].transpose(1, 2)  # (B, T', C, H, W)
        b, t = frames.shape[:2]
        hog = self.hogs[0](frames.flatten(0, 1)).flatten(1, 2)  # (B*T', 3 * nbins, H/cell, W/cell)
        targets = []
        for grid, mask in zip(self.feature_grids, masks):
            u = hog.shape[-1] // grid[-1]  # cells per token side
            # (BT', 3nb, Hc, Wc) -> (BT', h, w, 3nb, u, u) -> (B, T'*h*w, 3nb*u*u)
            cells = hog.permute(0, 2, 3, 1).unfold(1, u, u).unfold(2, u, u)
            per_token = cells.flatten(3).reshape(b, t * grid[1] * grid[2], -1)
            targets.append((per_token[mask], 1.0))
        return targets

    def pixel_targets(self, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, float]]:
        """The pixels each masked token covers (normalised per token with ``norm_pred_pixel``), weight 1/depths."""
        stride_t = self.cfg.patch_stride[0]
        u = 1 if self.mask_cfg.time_stride_loss else stride_t
        clips = x[:, :, ::stride_t] if self.mask_cfg.time_stride_loss else x
        n, c, frames, height, width = clips.shape
        targets = []
        for p, mask in zip(self.feature_strides, masks):
            t, h, w = frames // u, height // p, width // p
            # (N, C, T, H, W) -> (N, t, h, w, u, p, p, C) -> (N, t*h*w, u*p*p*C)
            patches = clips.reshape(n, c, t, u, h, p, w, p).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(n, t * h * w, -1)
            label = patches[mask]
            if self.mask_cfg.norm_pred_pixel:
                label = (label - label.mean(-1, keepdim=True)) / (label.var(-1, keepdim=True) + 1e-6) ** 0.5
            targets.append((label, 1.0 / len(masks)))
        return targets

    # ------------------------------------------------------------------------------------------------ forward

    def _masked_tokens(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch tokens with the masked ones replaced by ``mask_token``, plus cls token and positions."""
        x, thw = self.patch_embed(x)  # (B, N, C)
        token_mask = F.interpolate(mask.float(), size=tuple(thw[1:])).flatten(1).unsqueeze(-1).to(x.dtype)  # (B, N, 1)
        x = x * (1 - token_mask) + self.mask_token.to(x.dtype) * token_mask
        return self._start_tokens(x, thw), thw

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        masks = self.feature_masks(mask)
        source = x.detach()
        targets = self.hog_targets(source, masks) if self.mask_cfg.pred_hog else self.pixel_targets(source, masks)
        x, thw = self._masked_tokens(x, mask)
        features = []
        for index, block in enumerate(self.blocks):
            x, thw = self._run_block(block, x, thw)
            if index in self.pretrain_depth:
                features.append(x)
        return self.pred_head(features, masks), targets


def multi_mse(predictions: Sequence[torch.Tensor], targets: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """PySlowFast's ``multi_mse`` loss: the weighted sum over pretrain depths of the mean squared error (float32)."""
    return sum(weight * F.mse_loss(p.float(), t.float()) for p, (t, weight) in zip(predictions, targets))
