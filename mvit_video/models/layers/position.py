"""Position information for token grids: fixed sin-cos tables, resizing learned embeddings, and the positional
encoding generator (PEG, CPVT) that computes positions from the tokens with a depthwise convolution."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conv import Conv3d

THW = tuple[int, int, int]


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed 1-D sin-cos table of (VideoMAE's) ``get_sinusoid_encoding_table``: position p, channel i gets
    ``sin`` (even i) or ``cos`` (odd i) of ``p / 10000^(2 (i // 2) / dim)``. Computed in float64 and rounded to
    float32, as the reference builds it; (1, num_positions, dim)."""
    position = np.arange(num_positions, dtype=np.float64)[:, None]
    exponent = 2 * (np.arange(dim) // 2) / dim
    table = position / np.power(10000, exponent)[None, :]
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    return torch.from_numpy(table).to(torch.float32).unsqueeze(0)


def resize_grid_embedding(pos: torch.Tensor, old: THW, new: THW, mode: str = "auto") -> torch.Tensor:
    """(1, prod(old), C) embeddings laid out on grid ``old`` = (T, H, W), resized to ``new``; unchanged when equal.

    ``mode`` "auto" is bicubic when both grids are one frame (timm's image rule) and trilinear otherwise;
    "nearest" is TimeSformer's rule; "linear" is always trilinear (on one-frame grids the bilinear resizing of the
    official PVT v1).
    """
    if tuple(old) == tuple(new):
        return pos
    # (1, N, C) -> (1, C, T, H, W)
    grid = pos.reshape(1, *old, -1).permute(0, 4, 1, 2, 3)
    if mode == "auto" and old[0] == new[0] == 1:
        out = F.interpolate(grid[:, :, 0], size=tuple(new[1:]), mode="bicubic", align_corners=False).unsqueeze(2)
    elif mode == "nearest":
        out = F.interpolate(grid, size=tuple(new), mode="nearest")
    else:
        out = F.interpolate(grid, size=tuple(new), mode="trilinear", align_corners=False)
    return out.flatten(2).transpose(1, 2)


class PositionGenerator(nn.Module):
    """CPVT's positional encoding generator on a T x H x W grid: a depthwise Conv3d (kernel k, zero padding)
    added to the tokens (a residual); prefix tokens (cls, dist) pass through. Key layout of CPVT / Twins ``PosCNN``:
    ``proj.0.{weight,bias}``.

    Args:
        dim: token width.
        kernel: (kt, kh, kw) of the depthwise convolution (1 in time gives the image model's PEG on every frame).
    """

    def __init__(self, dim: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        self.proj = nn.Sequential(Conv3d(dim, dim, tuple(kernel), 1, padding, groups=dim))

    def forward(self, x: torch.Tensor, thw: THW, num_prefix: int) -> torch.Tensor:
        prefix, tokens = x[:, :num_prefix], x[:, num_prefix:]
        B, N, C = tokens.shape
        # (B, THW, C) -> (B, C, T, H, W)
        grid = tokens.transpose(1, 2).reshape(B, C, *thw)
        tokens = (self.proj(grid) + grid).flatten(2).transpose(1, 2)
        return torch.cat((prefix, tokens), dim=1)


def square_side(n: int) -> int:
    """The side of a square grid of ``n`` positions (``ValueError`` if ``n`` is not a square)."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} positions are not a square grid")
    return side
