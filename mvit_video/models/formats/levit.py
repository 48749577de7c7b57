"""Checkpoint formats of the LeViT family, mapped onto its names (timm's linear-mode layout, see
``models/levit.py``): pure functions.

- ``levit``: timm ``levit_*`` (linear mode, the published ``levit_*.fb_dist_in1k`` files) and this toolkit's own
  LeViT checkpoints.
- ``levit_conv``: timm ``levit_conv_*`` (conv mode): the same names and weights, every Linear+BN a 1 x 1 Conv2d+BN.

Stored ``attention_bias_idxs`` buffers (older files) are dropped (the model computes its index), 1 x 1 conv kernels
(O, I, 1, 1) become Linear weights (O, I), and the stem's 2-D kernels (O, I, 3, 3) get a time axis of 1
(``adapt.py`` inflates them further where the model's stem is longer in time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

LEVIT_FORMATS = ("levit", "levit_conv")
_QKV = "stages.0.blocks.0.attn.qkv.linear.weight"


def detect_levit_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``LEVIT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "stem.conv1.linear.weight" in state_dict and _QKV in state_dict:
        return "levit_conv" if state_dict[_QKV].ndim == 4 else "levit"
    keys = list(state_dict)
    raise ValueError(f"not a LeViT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: timm "
                     "levit_* (linear mode) and levit_conv_* (conv mode), and mvit_video's own")  # fmt: skip


def timm_to_levit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """A timm state dict of either mode under our names."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.endswith("attention_bias_idxs"):
            continue
        if key.startswith("stem.") and value.ndim == 4:
            value = value.unsqueeze(2)  # (O, I, h, w) -> (O, I, 1, h, w)
        elif value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)  # conv mode's 1 x 1 kernel -> a Linear weight
        out[key] = value
    return out


def convert_to_levit(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare LeViT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_levit_format(state_dict)
    if fmt not in LEVIT_FORMATS:
        raise ValueError(f"unknown LeViT checkpoint format {fmt!r}; choose one of {', '.join(LEVIT_FORMATS)}")
    return timm_to_levit(state_dict), fmt
