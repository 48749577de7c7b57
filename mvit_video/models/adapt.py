"""Fitting checkpoint tensors to a model of another input size or dimensionality (pure functions).

All functions take PySlowFast-named state dicts (see ``convert.py``) and return new dicts; nothing is loaded.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from .attention import resize_rel_pos
from .layers.position import resize_grid_embedding

INFLATE_MODES = ("average", "centre")


class InflationRefused(ValueError):
    """A 2-D kernel would need inflating to fit a 3-D model, and inflation was not asked for."""


def inflate_kernel(weight: torch.Tensor, time: int, mode: str = "average") -> torch.Tensor:
    """Turns a 2-D conv kernel (O, I, h, w) or (O, I, 1, h, w) into a 3-D one (O, I, time, h, w).

    Args:
        weight: the image kernel.
        time: temporal kernel size of the video model.
        mode: "average" spreads the kernel evenly over time (I3D); "centre" puts it on the centre tap only,
            so a static clip gives exactly the image model's features.
    """
    if mode not in INFLATE_MODES:
        raise ValueError(f"inflate mode {mode!r} is not one of {INFLATE_MODES}")
    if weight.ndim == 5:
        weight = weight[:, :, weight.shape[2] // 2]
    if mode == "average":
        return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time
    out = weight.new_zeros(weight.shape[0], weight.shape[1], time, *weight.shape[2:])
    # the middle tap of an odd kernel; the first of an even one (a tubelet of 2 frames sees a one-frame clip,
    # zero-padded at its end, with its first tap)
    out[:, :, (time - 1) // 2] = weight
    return out


def infer_grid(n: int, target: tuple, key: str = "pos_embed") -> tuple:
    """The (T, H, W) grid a joint embedding of ``n`` positions was trained on, when nothing records it.

    The likeliest reading first: the model's frame size with another clip length, then the model's clip length
    with other (square) frames, then one square frame (an image checkpoint).

    Raises:
        ValueError: ``n`` fits none of these; pass the grid explicitly.
    """
    t, h, w = target
    if n % (h * w) == 0:
        return (n // (h * w), h, w)
    side = math.isqrt(n // t) if n % t == 0 else 0
    if side * side * t == n:
        return (t, side, side)
    side = math.isqrt(n)
    if side * side == n:
        return (1, side, side)
    raise ValueError(f"{key}: cannot tell the (T, H, W) grid of {n} positions for a {t}x{h}x{w} model")


def resize_position_table(value: torch.Tensor, prefix: int, grid: tuple, source_grid: tuple | None = None,
                          key: str = "pos_embed") -> torch.Tensor:  # fmt: skip
    """Interpolates a position table (1, prefix + N, C) to the model's grid ``grid`` = (T, H, W).

    Args:
        value: the checkpoint's table; its first ``prefix`` rows (cls / dist positions) are kept.
        prefix: prefix rows in the model's table.
        grid: the model's grid of the table ((T, H, W) joint, (1, H, W) spatial, (T, 1, 1) temporal).
        source_grid: the checkpoint's grid when known (the config stored with it); else ``infer_grid``.
        key: the tensor's name, for messages.
    """
    head, table = value[:, :prefix], value[:, prefix:]
    n = table.shape[1]
    old = tuple(source_grid) if source_grid is not None and math.prod(source_grid) == n else infer_grid(n, grid, key)
    return torch.cat((head, resize_grid_embedding(table, old, tuple(grid))), dim=1)


def bias_table_offsets(rows: int, target: tuple, key: str = "relative_position_bias_table") -> tuple:
    """The (2Wt-1, 2Wh-1, 2Ww-1) offset grid of a checkpoint's relative-position bias table of ``rows`` rows, for a
    model whose table spans ``target``: the model's own, a square 2-D window's (1, s, s), or the model's spatial
    window with another time window.

    Raises:
        ValueError: ``rows`` fits none of these (one line).
    """
    t, h, w = target
    if rows == t * h * w:
        return tuple(target)
    side = math.isqrt(rows)
    if side * side == rows and side % 2:
        return (1, side, side)
    if rows % (h * w) == 0 and (rows // (h * w)) % 2:
        return (rows // (h * w), h, w)
    raise ValueError(f"{key}: cannot tell the window of a {rows}-row relative-position bias table for a model whose "
                     f"table spans {t}x{h}x{w} offsets; use a checkpoint of the model's window")  # fmt: skip


def resize_bias_table(value: torch.Tensor, target: tuple, key: str = "relative_position_bias_table") -> torch.Tensor:
    """A relative-position bias table (rows, heads) of Swin / Video Swin resized onto the offset grid ``target``
    = (2Wt-1, 2Wh-1, 2Ww-1) of the model's window.

    Spatial offsets are interpolated bicubically (timm's ``resize_rel_pos_bias_table_simple``, align_corners False)
    per time offset; a 2-D table (one time offset) is repeated over the model's 2Wt-1 time offsets (Video Swin's
    inflation of image weights), other time lengths are interpolated linearly.
    """
    st, sh, sw = bias_table_offsets(value.shape[0], target, key)
    t, h, w = target
    heads = value.shape[1]
    table = value.t().reshape(heads, st, sh, sw).transpose(0, 1)  # (st, heads, sh, sw)
    if (sh, sw) != (h, w):
        table = torch.nn.functional.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)
    if st == 1:
        table = table.expand(t, -1, -1, -1)
    elif st != t:  # (st, heads, h, w) -> (heads * h * w, 1, st) -> interpolate over time -> back
        flat = table.permute(1, 2, 3, 0).reshape(-1, 1, st)
        flat = torch.nn.functional.interpolate(flat, size=t, mode="linear", align_corners=False)
        table = flat.reshape(heads, h, w, t).permute(3, 0, 1, 2)
    return table.transpose(0, 1).reshape(heads, -1).t().contiguous()


def _source_grid(grid: tuple, source_dims: tuple | None) -> tuple | None:
    """The checkpoint's grid of a table laid out like ``grid`` (joint, spatial or temporal) on ``source_dims``."""
    if source_dims is None:
        return None
    t, h, w = source_dims
    return (t if grid[0] > 1 or grid[1:] == (1, 1) else 1, *((1, 1) if grid[1:] == (1, 1) else (h, w)))


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    model_state: Mapping[str, torch.Tensor],
    tables: Mapping[str, tuple[int, tuple]],
    inflate: str | None = "average",
    source_dims: tuple | None = None,
) -> tuple[dict, list[str]]:
    """Resizes tensors whose shapes differ from the model's where the meaning allows it.

    Handles relative-position tables (linear), absolute position embeddings (interpolated on their real grid), and
    2-D kernels of image checkpoints in a video model (inflated). Other mismatches are left for the caller.

    Args:
        state_dict: checkpoint tensors with PySlowFast names.
        model_state: the model's state dict (for target shapes).
        tables: the model's position tables, ``{name: (prefix rows, (T, H, W) grid)}`` (``position_tables()``).
        inflate: how 2-D kernels become 3-D (see ``inflate_kernel``); None refuses to inflate them.
        source_dims: the checkpoint's token grid (T, H, W) when known (from the config stored with it).

    Returns:
        The new state dict and one human-readable note per changed tensor.

    Raises:
        InflationRefused: ``inflate`` is None and a 2-D kernel would need inflating (the message names it).
    """
    out, notes = dict(state_dict), []
    for key, value in state_dict.items():
        target = model_state.get(key)
        if target is None or target.shape == value.shape:
            continue
        if key in tables and value.ndim == 3 and value.shape[2] == target.shape[2]:
            prefix, grid = tables[key]
            new = resize_position_table(value, prefix, grid, _source_grid(grid, source_dims), key)
        elif key in tables and value.ndim == 2 and value.shape[1] == target.shape[1]:
            new = resize_bias_table(value, tables[key][1], key)
        else:
            new = _adapt_one(key, value, target.shape, inflate)
        if new is not None and new.shape == target.shape:
            out[key] = new
            notes.append(f"{key}: {list(value.shape)} -> {list(new.shape)}")
    return out, notes


def inflate_bias_table(value: torch.Tensor, rows: int) -> torch.Tensor | None:
    """A window's relative-position bias table ((2Wh-1)(2Ww-1), heads) of a 2-D model repeated over the 2Wt-1 time
    offsets of a 3-D window (t-major rows, ``layers.window.relative_position_index``): every time offset gets the
    2-D bias. None unless ``rows`` is an odd multiple of the table's rows."""
    ratio, rest = divmod(rows, value.shape[0])
    if rest or ratio % 2 == 0:
        return None
    return value.repeat(ratio, 1)


def inflate_offset_biases(value: torch.Tensor, size: int, inflate: str | None, key: str) -> torch.Tensor | None:
    """LeViT's per-offset attention biases (heads, H W) of a 2-D model repeated over the |dt| offsets of a 3-D token
    grid (heads, T H W) (|dt|-major, ``levit.offset_bias_index``): every time offset gets the 2-D bias, so a static
    clip attends as the image does. None unless ``size`` is a multiple of the table's length.

    Raises:
        InflationRefused: ``inflate`` is None (the model is a video model of image weights).
    """
    ratio, rest = divmod(size, value.shape[1])
    if rest or ratio < 2:
        return None
    if inflate is None:
        raise InflationRefused(f"{key} is a 2-D attention-bias table {list(value.shape)} and the model's spans "
                               f"{ratio} frames: inflation was not asked for")  # fmt: skip
    return value.repeat(1, ratio)


def _adapt_one(key, value, target_shape, inflate):
    if key.endswith("attention_biases") and value.ndim == len(target_shape) == 2 and value.shape[0] == target_shape[0]:
        return inflate_offset_biases(value, target_shape[1], inflate, key)
    if key.endswith("relative_position_bias_table") and value.ndim == 2 and value.shape[1] == target_shape[1]:
        return inflate_bias_table(value, target_shape[0])
    if "rel_pos_" in key and value.ndim == 2 and value.shape[1] == target_shape[1]:
        return resize_rel_pos(value, target_shape[0])
    is_2d_kernel = value.ndim == 4 or (value.ndim == 5 and value.shape[2] == 1)
    if key.endswith("weight") and len(target_shape) == 5 and is_2d_kernel:
        if tuple(value.shape[:2]) == tuple(target_shape[:2]) and tuple(value.shape[-2:]) == tuple(target_shape[-2:]):
            if inflate is None:
                raise InflationRefused(f"{key} is a 2-D kernel {list(value.shape)} and the model's is 3-D "
                                 f"{list(target_shape)}: inflation was not asked for")  # fmt: skip
            return inflate_kernel(value, target_shape[2], inflate)
    return None
