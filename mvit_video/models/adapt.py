"""Fitting checkpoint tensors to a model of another input size or dimensionality (pure functions).

All functions take PySlowFast-named state dicts (see ``convert.py``) and return new dicts; nothing is loaded.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from .attention import resize_rel_pos

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
    out[:, :, time // 2] = weight
    return out


def _resize_grid(pos: torch.Tensor, old: tuple, new: tuple) -> torch.Tensor:
    """Resizes (1, prod(old), C) position embeddings laid out on grid ``old`` to grid ``new``."""
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[len(old)]
    # (1, N, C) -> (1, C, *old) -> (1, C, *new) -> (1, N', C)
    grid = pos.reshape(1, *old, -1).movedim(-1, 1)
    return F.interpolate(grid, size=tuple(new), mode=mode, align_corners=False).flatten(2).transpose(1, 2)


def _square_side(n: int, key: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{key}: cannot resize a non-square grid of {n} spatial positions")
    return side


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


def resize_pos_embed(
    key: str, value: torch.Tensor, target: torch.Size, patch_dims: tuple, source_dims: tuple | None = None
) -> torch.Tensor:
    """Interpolates an absolute position embedding to the model's token grid ``patch_dims`` = (T, H, W).

    Args:
        key: the tensor's name (``pos_embed``, ``pos_embed_spatial`` or ``pos_embed_temporal``).
        value: the checkpoint's embedding, (1, N, C); a joint one may start with cls positions.
        target: the model's shape of it.
        patch_dims: the model's token grid.
        source_dims: the checkpoint's token grid when known (from the config stored with it); otherwise a joint
            grid is inferred (``infer_grid``) and a spatial one is taken as square.
    """
    t, h, w = patch_dims
    if key.endswith("pos_embed_temporal"):
        return _resize_grid(value, (value.shape[1],), (t,))
    if key.endswith("pos_embed_spatial"):
        n = value.shape[1]
        old = tuple(source_dims[1:]) if source_dims and source_dims[1] * source_dims[2] == n else None
        side = _square_side(n, key) if old is None else None
        return _resize_grid(value, old or (side, side), (h, w))
    n_cls = target[1] - t * h * w  # joint embedding, maybe with a cls position first
    cls_pos, pos = value[:, :n_cls], value[:, n_cls:]
    n = pos.shape[1]
    fits = source_dims is not None and math.prod(source_dims) == n
    old = tuple(source_dims) if fits else infer_grid(n, patch_dims, key)
    return torch.cat((cls_pos, _resize_grid(pos, old, (t, h, w))), dim=1)


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    model_state: Mapping[str, torch.Tensor],
    patch_dims: tuple,
    inflate: str | None = "average",
    source_dims: tuple | None = None,
) -> tuple[dict, list[str]]:
    """Resizes tensors whose shapes differ from the model's where the meaning allows it.

    Handles relative-position tables (linear), absolute position embeddings (interpolated on their real grid), and
    2-D kernels of image checkpoints in a video model (inflated). Other mismatches are left for the caller.

    Args:
        state_dict: checkpoint tensors with PySlowFast names.
        model_state: the model's state dict (for target shapes).
        patch_dims: the model's token grid (T, H, W) after patch embedding.
        inflate: how 2-D kernels become 3-D (see ``inflate_kernel``); None refuses to inflate them.
        source_dims: the checkpoint's token grid (T, H, W) when known (see ``resize_pos_embed``).

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
        new = _adapt_one(key, value, target.shape, patch_dims, inflate, source_dims)
        if new is not None and new.shape == target.shape:
            out[key] = new
            notes.append(f"{key}: {list(value.shape)} -> {list(new.shape)}")
    return out, notes


def _adapt_one(key, value, target_shape, patch_dims, inflate, source_dims):
    if "rel_pos_" in key and value.ndim == 2 and value.shape[1] == target_shape[1]:
        return resize_rel_pos(value, target_shape[0])
    if "pos_embed" in key and value.ndim == 3 and value.shape[2] == target_shape[2]:
        return resize_pos_embed(key, value, target_shape, patch_dims, source_dims)
    is_2d_kernel = value.ndim == 4 or (value.ndim == 5 and value.shape[2] == 1)
    if key.endswith("weight") and len(target_shape) == 5 and is_2d_kernel:
        if tuple(value.shape[:2]) == tuple(target_shape[:2]) and tuple(value.shape[-2:]) == tuple(target_shape[-2:]):
            if inflate is None:
                raise InflationRefused(f"{key} is a 2-D kernel {list(value.shape)} and the model's is 3-D "
                                 f"{list(target_shape)}: inflation was not asked for")  # fmt: skip
            return inflate_kernel(value, target_shape[2], inflate)
    return None
