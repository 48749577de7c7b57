"""Window geometry shared by the windowed families (Swin, Video Swin, Shuffle Transformer): the index of a window's
relative-position bias table, the window and shift a token grid actually gets, and the cutting of a channels-last
grid into windows (padding, partition, reverse, the shifted-window mask)."""

from __future__ import annotations

import functools

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


def pad_to_windows(x: torch.Tensor, window: THW) -> torch.Tensor:
    """Channels-last tokens (B, T, H, W, C) zero-padded at the end of each axis to a multiple of ``window``."""
    pads = [(w - g % w) % w for g, w in zip(x.shape[1:4], window, strict=True)]
    if not any(pads):
        return x
    return torch.nn.functional.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))


def window_partition(x: torch.Tensor, window: THW) -> torch.Tensor:
    """(B, T, H, W, C) tokens, each axis a multiple of its window -> (B * nW, Wt * Wh * Ww, C) windows, windows in
    raster order (t, h, w) and tokens in raster order inside each."""
    B, T, H, W, C = x.shape
    wt, wh, ww = window
    x = x.view(B, T // wt, wt, H // wh, wh, W // ww, ww, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wt * wh * ww, C)


def window_reverse(windows: torch.Tensor, window: THW, grid: THW) -> torch.Tensor:
    """The inverse of ``window_partition``: (B * nW, Wt * Wh * Ww, C) -> (B, T, H, W, C) for ``grid`` (T, H, W)."""
    (wt, wh, ww), (T, H, W) = window, grid
    C = windows.shape[-1]
    x = windows.view(-1, T // wt, H // wh, W // ww, wt, wh, ww, C)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(-1, T, H, W, C)


def shift_window_mask(grid: THW, window: THW, shift: THW, device=None, dtype=None) -> torch.Tensor:
    """(nW, N, N) additive mask of shifted-window attention on a padded ``grid``: 0 between tokens of the same
    region of the cyclically shifted grid, -100 across regions (the value of Swin and Video Swin; exp(-100) is 0 in
    float32 and 4e-44 in float64, so masked pairs vanish without -inf). Regions along each axis are
    ``[0, -window)``, ``[-window, -shift)``, ``[-shift, end)``, as timm and torchvision slice them."""
    labels = torch.zeros(grid, device=device, dtype=dtype)
    count = 0
    slices = [((0, -w), (-w, -s), (-s, None)) for w, s in zip(window, shift, strict=True)]
    for t0, t1 in slices[0]:
        for h0, h1 in slices[1]:
            for w0, w1 in slices[2]:
                labels[t0:t1, h0:h1, w0:w1] = count
                count += 1
    regions = window_partition(labels[None, ..., None], window).squeeze(-1)  # (nW, N)
    diff = regions[:, None, :] - regions[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


@functools.lru_cache(maxsize=16)
def _cached_mask(grid: THW, window: THW, shift: THW, device=None, dtype=None) -> torch.Tensor:
    return shift_window_mask(grid, window, shift, device, dtype)


def cached_shift_window_mask(grid: THW, window: THW, shift: THW, device=None, dtype=None) -> torch.Tensor:
    """``shift_window_mask``, built once per grid, window, shift, device and dtype (every shifted block of a stage
    uses the same one, at every step). Callers must not modify it in place. While compiling or exporting it is
    built in the graph: a tensor made there is a fake one and must not outlive the trace in the cache."""
    if torch.compiler.is_compiling():
        return shift_window_mask(grid, window, shift, device, dtype)
    return _cached_mask(grid, window, shift, device, dtype)
