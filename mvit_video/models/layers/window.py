"""Window geometry shared by the windowed families (Swin, Video Swin, Shuffle Transformer): the index of a window's
relative-position bias table, and the window and shift a token grid actually gets."""

from __future__ import annotations

import torch

THW = tuple[int, int, int]


def relative_position_index(window: THW) -> torch.Tensor:
    """(N, N) long tensor, N = Wt * Wh * Ww: for query token i and key token j of one window (raster order t, h, w),
    the row of the (2Wt-1)(2Wh-1)(2Ww-1)-entry bias table for their offset. Offsets are shifted to start at 0 and
    flattened t-major: ``(dt + Wt-1) (2Wh-1)(2Ww-1) + (dh + Wh-1) (2Ww-1) + (dw + Ww-1)``, the layout of Video Swin
    (torchvision ``swin3d_*``) and, with Wt = 1, of 2-D Swin (timm, torchvision) and Shuffle Transformer."""
    wt, wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wt), torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    dt, dh, dw = rel[0] + wt - 1, rel[1] + wh - 1, rel[2] + ww - 1
    return (dt * (2 * wh - 1) + dh) * (2 * ww - 1) + dw


def bias_table_size(window: THW) -> int:
    """Rows of the relative-position bias table of ``window``."""
    wt, wh, ww = window
    return (2 * wt - 1) * (2 * wh - 1) * (2 * ww - 1)


def fit_window(grid: THW, window: THW, shift: THW) -> tuple[THW, THW]:
    """The window and shift a ``grid`` of tokens gets: along an axis no longer than its window, the window shrinks to
    the grid and the shift vanishes (Swin and Video Swin's rule: one window covers the axis, nothing to shift)."""
    fitted = tuple(g if g <= w else w for g, w in zip(grid, window, strict=True))
    shifted = tuple(0 if g <= w else s for g, w, s in zip(grid, window, shift, strict=True))
    return fitted, shifted  # type: ignore[return-value]
