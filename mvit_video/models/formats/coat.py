"""Checkpoint formats of the CoaT family, mapped onto its names (timm's, each shared module once; see
``models/coat.py``): pure functions.

- ``coat``: timm ``coat_*`` / ``coat_lite_*`` (the published ``*.in1k`` files, the mlpc-ucsd layout) and this
  toolkit's own CoaT checkpoints.

timm registers every shared module under each of its users, so a timm state dict may list one tensor under several
keys (or, once de-duplicated, e.g. by safetensors, under any one of them). Every alias is mapped to its canonical
key; copies that disagree are an error:

- ``serial_blocks{i}.{j}.cpe.*`` -> ``cpe{i}.*``
- ``serial_blocks{i}.{j}.factoratt_crpe.crpe.*`` and ``parallel_blocks.{j}.factoratt_crpe{i}.crpe.*`` ->
  ``crpe{i}.*``
- ``parallel_blocks.{j}.mlp{3,4}.*`` -> ``parallel_blocks.{j}.mlp2.*``

The original code's unused ``norm1.*`` is dropped (as timm's ``checkpoint_filter_fn``). 2-D kernels (O, I, h, w)
of the patch embeddings, CPE and CRPE get a time axis of 1 (``adapt.py`` inflates them further).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

COAT_FORMATS = ("coat",)
_ALIASES = (
    (re.compile(r"^serial_blocks(\d)\.\d+\.cpe\.(.*)$"), r"cpe\1.\2"),
    (re.compile(r"^serial_blocks(\d)\.\d+\.factoratt_crpe\.crpe\.(.*)$"), r"crpe\1.\2"),
    (re.compile(r"^parallel_blocks\.\d+\.factoratt_crpe(\d)\.crpe\.(.*)$"), r"crpe\1.\2"),
    (re.compile(r"^(parallel_blocks\.\d+)\.mlp[34]\.(.*)$"), r"\1.mlp2.\2"),
)


def canonical_coat_key(key: str) -> str:
    """The key a (possibly aliased) timm CoaT tensor name has here."""
    for pattern, replacement in _ALIASES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key


def detect_coat_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``COAT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "patch_embed1.proj.weight" in state_dict and "cls_token1" in state_dict:
        return "coat"
    keys = list(state_dict)
    raise ValueError(f"not a CoaT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: timm "
                     "coat_* / coat_lite_* (the mlpc-ucsd layout), and mvit_video's own")  # fmt: skip


def timm_to_coat(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """A timm state dict (shared modules listed once or under every user) under our names."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("norm1."):
            continue
        name = canonical_coat_key(key)
        if value.ndim == 4:
            value = value.unsqueeze(2)  # (O, I, h, w) -> (O, I, 1, h, w)
        if name in out:
            if out[name].shape != value.shape or not torch.equal(out[name], value):
                raise ValueError(f"{key} and {name} are one shared module in CoaT but hold different values")
            continue
        out[name] = value
    return out


def convert_to_coat(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare CoaT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_coat_format(state_dict)
    if fmt not in COAT_FORMATS:
        raise ValueError(f"unknown CoaT checkpoint format {fmt!r}; choose one of {', '.join(COAT_FORMATS)}")
    return timm_to_coat(state_dict), fmt
