"""Checkpoint formats of the Swin family, mapped onto its names (timm's layout, see ``models/swin.py``): pure
functions.

- ``swin``: timm ``SwinTransformer`` (>= 0.9: ``layers.{s}.downsample`` at the start of stages 1..) and this
  toolkit's own Swin checkpoints; also the original Microsoft layout and timm < 0.9 (``layers.{s}.downsample`` at the
  end of stages 0..2, ``head.weight``), renamed as timm's ``checkpoint_filter_fn`` renames it.
- ``torchvision_swin``: torchvision ``swin_t/s/b`` (``features.0`` the patch embedding, ``features.{2s+1}`` the
  blocks of stage s, ``features.{2s+2}`` the merging after it, ``mlp.0`` / ``mlp.3``, ``head``).
- ``torchvision_swin3d``: torchvision ``swin3d_t/s/b`` (``patch_embed``, ``features.{2s}`` stage s,
  ``features.{2s+1}`` the merging after it).

Stored relative-position indices and attention masks are dropped (computed by the model); 2-D patch kernels get a
time axis of 1 (``adapt.py`` inflates them further where the model's patch is longer in time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

SWIN_FORMATS = ("swin", "torchvision_swin", "torchvision_swin3d")
_BUFFERS = ("relative_position_index", "attn_mask")
_BLOCK_PARTS = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}  # torchvision's MLP Sequential -> ours


def detect_swin_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``SWIN_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "features.0.0.weight" in state_dict and "features.1.0.norm1.weight" in state_dict:
        return "torchvision_swin"
    if "patch_embed.proj.weight" in state_dict and "features.0.0.norm1.weight" in state_dict:
        return "torchvision_swin3d"
    if "patch_embed.proj.weight" in state_dict and "layers.0.blocks.0.norm1.weight" in state_dict:
        return "swin"
    keys = list(state_dict)
    raise ValueError(f"not a Swin checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: timm / "
                     f"Microsoft Swin, torchvision swin_t/s/b and swin3d_t/s/b")  # fmt: skip


def _block_part(rest: str) -> str:
    for theirs, ours in _BLOCK_PARTS.items():
        if rest.startswith(theirs):
            return ours + rest[len(theirs) :]
    return rest


def _finish(state: StateDict) -> StateDict:
    """Drops stored buffers and gives a 2-D patch kernel a time axis."""
    out = {k: v for k, v in state.items() if not k.endswith(_BUFFERS)}
    kernel = out.get("patch_embed.proj.weight")
    if kernel is not None and kernel.ndim == 4:
        out["patch_embed.proj.weight"] = kernel.unsqueeze(2)  # (O, C, h, w) -> (O, C, 1, h, w)
    return out


def timm_to_swin(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm (or Microsoft / timm < 0.9: merging at the end of a stage, ``head.weight``) under our names."""
    old = "layers.0.downsample.reduction.weight" in state_dict
    out: StateDict = {}
    for key, value in state_dict.items():
        if old:
            key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key)
            key = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", key)
        out[key] = value
    return _finish(out)


def _features_to_swin(key: str, first_stage: int) -> str | None:
    """``features.{i}...`` of torchvision (stage s at ``first_stage + 2s``, its merging right after) -> ours."""
    found = re.match(r"features\.(\d+)\.(.*)", key)
    if found is None:
        return None
    i, rest = int(found[1]) - first_stage, found[2]
    if i % 2 == 0:
        block, part = rest.split(".", 1)
        return f"layers.{i // 2}.blocks.{block}.{_block_part(part)}"
    return f"layers.{i // 2 + 1}.downsample.{rest}"


def torchvision_to_swin(state_dict: Mapping[str, torch.Tensor], video: bool) -> StateDict:
    """torchvision ``swin_*`` (``video`` False) or ``swin3d_*`` (True) under our names."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            out["head.fc." + key[len("head.") :]] = value
        elif not video and key.startswith("features.0."):
            part = {"0": "proj", "2": "norm"}[key.split(".")[2]]
            out[f"patch_embed.{part}.{key.split('.', 3)[3]}"] = value
        elif key.startswith("features."):
            out[_features_to_swin(key, 0 if video else 1)] = value
        else:
            out[key] = value  # patch_embed.*, norm.*
    return _finish(out)


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "swin": timm_to_swin,
    "torchvision_swin": lambda sd: torchvision_to_swin(sd, video=False),
    "torchvision_swin3d": lambda sd: torchvision_to_swin(sd, video=True),
}


def convert_to_swin(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare Swin state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_swin_format(state_dict)
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown Swin checkpoint format {fmt!r}; choose one of {', '.join(SWIN_FORMATS)}")
    return CONVERTERS[fmt](state_dict), fmt
