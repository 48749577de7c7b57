"""Checkpoint formats of the PVT family, mapped onto its names (timm's layout, see ``models/pvt.py``): pure
functions.

- ``pvt_v2``: timm ``PyramidVisionTransformerV2`` (``patch_embed``, ``stages.{s}.downsample``,
  ``stages.{s}.blocks.{j}``, ``stages.{s}.norm``, ``head``) and this toolkit's own PVTv2 checkpoints.
- ``pvt_v2_official``: the original release (whai362/PVT): ``patch_embed{1..4}``, ``block{1..4}.{j}``,
  ``norm{1..4}``, ``mlp.dwconv.dwconv``; renamed as timm's ``checkpoint_filter_fn`` renames it.

2-D kernels get a time axis of 1 (``adapt.py`` inflates them further where the model's kernel is longer in time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

PVT_FORMATS = ("pvt_v2", "pvt_v2_official")


def detect_pvt_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``PVT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "patch_embed.proj.weight" in state_dict and "stages.0.blocks.0.norm1.weight" in state_dict:
        return "pvt_v2"
    if "patch_embed1.proj.weight" in state_dict and "block1.0.norm1.weight" in state_dict:
        return "pvt_v2_official"
    keys = list(state_dict)
    raise ValueError(f"not a PVT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: timm "
                     f"pvt_v2_*, the original PVTv2 release")  # fmt: skip


def _with_time_axis(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Conv kernels (O, I, h, w) -> (O, I, 1, h, w)."""
    return {k: v.unsqueeze(2) if k.endswith("weight") and v.ndim == 4 else v for k, v in state.items()}


def official_to_pvt(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The original PVTv2 layout under timm's names (timm's ``checkpoint_filter_fn``)."""
    out: StateDict = {}
    for key, value in state_dict.items():
        key = re.sub(r"^patch_embed1\.", "patch_embed.", key)
        key = re.sub(r"^patch_embed(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.downsample.", key)
        key = key.replace("dwconv.dwconv", "dwconv")
        key = re.sub(r"^block(\d)\.(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.", key)
        key = re.sub(r"^norm(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.norm.", key)
        out[key] = value
    return _with_time_axis(out)


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "pvt_v2": _with_time_axis,
    "pvt_v2_official": official_to_pvt,
}


def convert_to_pvt(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare PVT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_pvt_format(state_dict)
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown PVT checkpoint format {fmt!r}; choose one of {', '.join(PVT_FORMATS)}")
    return CONVERTERS[fmt](state_dict), fmt
