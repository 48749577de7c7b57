"""Checkpoint formats of the CeiT family, mapped onto its names (the official ones, see ``models/ceit.py``): pure
functions.

- ``ceit_official``: the official code's state dict (coeusguo/ceit ``CeIT``): ``i2t.backbone.{conv,bn}``,
  ``i2t.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.{norm1, attn.{qkv,proj}, norm2,
  leff.{conv1,bn1,conv2,bn2,conv3,bn3}}``, ``lca.{norm1, attn.{qkv,proj}, norm2, feedforward.{fc1,fc2}}``,
  ``pos_layer_embed``, ``norm``, ``head``, with 2-D conv kernels (O, I, h, w). Its kernels get a time axis of 1
  (``adapt.py`` inflates them further where the model's kernel is longer in time); the names are already ours.
- ``ceit``: this toolkit's own CeiT checkpoints (the same names, 3-D kernels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

CEIT_FORMATS = ("ceit_official", "ceit")
_STEM_CONV = "i2t.backbone.conv.weight"


def detect_ceit_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``CEIT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if _STEM_CONV in state_dict and "i2t.proj.weight" in state_dict and "blocks.0.norm1.weight" in state_dict:
        return "ceit_official" if state_dict[_STEM_CONV].ndim == 4 else "ceit"
    keys = list(state_dict)
    raise ValueError(f"not a CeiT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: the "
                     f"official CeiT (coeusguo/ceit) and this toolkit's CeiT checkpoints")  # fmt: skip


def official_to_ceit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The official layout with a time axis of 1 on every conv kernel: (O, I, h, w) -> (O, I, 1, h, w)."""
    return {k: v.unsqueeze(2) if k.endswith(".weight") and v.ndim == 4 else v for k, v in state_dict.items()}


def convert_to_ceit(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare CeiT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_ceit_format(state_dict)
    if fmt not in CEIT_FORMATS:
        raise ValueError(f"unknown CeiT checkpoint format {fmt!r}; choose one of {', '.join(CEIT_FORMATS)}")
    return (official_to_ceit(state_dict) if fmt == "ceit_official" else dict(state_dict)), fmt
