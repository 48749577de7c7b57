"""Checkpoint formats of the PVT family, mapped onto its names (timm's layout, see ``models/pvt.py``): pure
functions.

- ``pvt_v2``: timm ``PyramidVisionTransformerV2`` (``patch_embed``, ``stages.{s}.downsample``,
  ``stages.{s}.blocks.{j}``, ``stages.{s}.norm``, ``head``) and this toolkit's own PVTv2 checkpoints.
- ``pvt_v1``: this toolkit's own PVT v1 checkpoints (the same names plus ``stages.{s}.pos_embed``, ``cls_token``,
  ``norm``).
- ``pvt_v2_official``: the original PVTv2 release (whai362/PVT ``pvt_v2.py``): ``patch_embed{1..4}``,
  ``block{1..4}.{j}``, ``norm{1..4}``, ``mlp.dwconv.dwconv``; renamed as timm's ``checkpoint_filter_fn`` renames it.
- ``pvt_v1_official``: the original PVT v1 release (``pvt.py``, e.g. ``pvt_tiny.pth``): ``patch_embed{1..4}``,
  ``pos_embed{1..4}``, ``block{1..4}.{j}``, ``norm``, ``cls_token``, ``head``.
- ``pvt_v1_hf``: HF transformers ``PvtForImageClassification`` / ``PvtModel`` (``[pvt.]encoder.patch_embeddings.{s}``
  with ``position_embeddings`` and the last stage's ``cls_token``, ``encoder.block.{s}.{j}`` with separate
  ``attention.self.{query, key, value}``, ``encoder.layer_norm``, ``classifier``); key and value are stacked into
  ``attn.kv``. HF computes the patch-embedding and reduction LayerNorms at 1e-6 where the official code (and
  ``pvt_t_in1k``) has 1e-5: build with ``conv_norm_eps=1e-6`` to reproduce HF's outputs exactly.

2-D kernels get a time axis of 1 (``adapt.py`` inflates them further where the model's kernel is longer in time);
one-frame position tables are resized to the model's grid there too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

PVT_FORMATS = ("pvt_v2", "pvt_v1", "pvt_v2_official", "pvt_v1_official", "pvt_v1_hf")

_HF_PREFIX = "pvt."
_HF_EMBED = {"projection": "proj", "layer_norm": "norm"}
_HF_BLOCK = {
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.q",
    "attention.self.sequence_reduction": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dense2": "mlp.fc2",
}
_HF_KV = ("attention.self.key", "attention.self.value")


def detect_pvt_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``PVT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "patch_embed.proj.weight" in state_dict and "stages.0.blocks.0.norm1.weight" in state_dict:
        return "pvt_v1" if "stages.0.pos_embed" in state_dict else "pvt_v2"
    if "patch_embed1.proj.weight" in state_dict and "block1.0.norm1.weight" in state_dict:
        return "pvt_v1_official" if "pos_embed1" in state_dict else "pvt_v2_official"
    hf = "encoder.patch_embeddings.0.projection.weight"
    if hf in state_dict or _HF_PREFIX + hf in state_dict:
        return "pvt_v1_hf"
    keys = list(state_dict)
    raise ValueError(f"not a PVT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: timm "
                     f"pvt_v2_*, the original PVT v1 / PVTv2 releases, HF PvtForImageClassification")  # fmt: skip


def _with_time_axis(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Conv kernels (O, I, h, w) -> (O, I, 1, h, w)."""
    return {k: v.unsqueeze(2) if k.endswith("weight") and v.ndim == 4 else v for k, v in state.items()}


def official_to_pvt(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The original PVT v1 / PVTv2 layouts under our names (for PVTv2 timm's ``checkpoint_filter_fn``)."""
    out: StateDict = {}
    for key, value in state_dict.items():
        key = re.sub(r"^patch_embed1\.", "patch_embed.", key)
        key = re.sub(r"^patch_embed(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.downsample.", key)
        key = re.sub(r"^pos_embed(\d)$", lambda m: f"stages.{int(m[1]) - 1}.pos_embed", key)
        key = key.replace("dwconv.dwconv", "dwconv")
        key = re.sub(r"^block(\d)\.(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.", key)
        key = re.sub(r"^norm(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.norm.", key)
        out[key] = value
    return _with_time_axis(out)


def _hf_embedding_key(stage: int, rest: str) -> str | None:
    """``encoder.patch_embeddings.{stage}.{rest}`` under our names (None: not a tensor we know)."""
    if rest == "position_embeddings":
        return f"stages.{stage}.pos_embed"
    if rest == "cls_token":
        return "cls_token"
    module, _, param = rest.rpartition(".")
    if module not in _HF_EMBED:
        return None
    return f"{'patch_embed' if stage == 0 else f'stages.{stage}.downsample'}.{_HF_EMBED[module]}.{param}"


def hf_to_pvt(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """HF ``PvtForImageClassification`` / ``PvtModel`` under our names; unknown keys pass through unchanged (they are
    then reported as unexpected)."""
    out: StateDict = {}
    kv: dict[str, dict[str, torch.Tensor]] = {}  # our attn.kv name -> {"key": .., "value": ..}
    for key, value in state_dict.items():
        name = key.removeprefix(_HF_PREFIX)
        embed = re.fullmatch(r"encoder\.patch_embeddings\.(\d+)\.(.+)", name)
        block = re.fullmatch(r"encoder\.block\.(\d+)\.(\d+)\.(.+)\.(weight|bias)", name)
        new = None
        if name.startswith("classifier."):
            new = "head." + name.removeprefix("classifier.")
        elif name.startswith("encoder.layer_norm."):
            new = "norm." + name.removeprefix("encoder.layer_norm.")
        elif embed:
            new = _hf_embedding_key(int(embed[1]), embed[2])
        elif block and block[3] in _HF_KV:
            name = f"stages.{block[1]}.blocks.{block[2]}.attn.kv.{block[4]}"
            kv.setdefault(name, {})[block[3].rpartition(".")[2]] = value
            continue
        elif block and block[3] in _HF_BLOCK:
            new = f"stages.{block[1]}.blocks.{block[2]}.{_HF_BLOCK[block[3]]}.{block[4]}"
        out[new or key] = value
    for name, parts in kv.items():
        if set(parts) != {"key", "value"}:
            raise ValueError(f"HF PVT checkpoint has {' and '.join(parts)} but not both key and value for {name}")
        out[name] = torch.cat((parts["key"], parts["value"]), dim=0)  # kv's outputs: the keys' C, then the values'
    return _with_time_axis(out)


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "pvt_v2": _with_time_axis,
    "pvt_v1": _with_time_axis,
    "pvt_v2_official": official_to_pvt,
    "pvt_v1_official": official_to_pvt,
    "pvt_v1_hf": hf_to_pvt,
}


def convert_to_pvt(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare PVT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_pvt_format(state_dict)
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown PVT checkpoint format {fmt!r}; choose one of {', '.join(PVT_FORMATS)}")
    return CONVERTERS[fmt](state_dict), fmt
