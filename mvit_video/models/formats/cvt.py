"""Checkpoint formats of the CvT family, mapped onto its names (the official layout with the stages in a list, see
``models/cvt.py``): pure functions.

- ``cvt``: this toolkit's own CvT checkpoints.
- ``cvt_hf``: HF transformers ``CvtForImageClassification`` (``cvt.encoder.stages.{s}.embedding...``,
  ``...layers.{j}.attention.attention.convolution_projection_{query,key,value}``, ``layernorm``, ``classifier``)
  and ``CvtModel`` (the same without the ``cvt.`` prefix and the classifier): the hub's ``microsoft/cvt-*`` files.
- ``cvt_official``: microsoft/CvT (``stage{s}.patch_embed``, ``stage{s}.blocks.{j}``, ``stage{s}.cls_token``,
  ``norm``, ``head``): its model-zoo files. Its MLPs compute QuickGELU; ``load_pretrained`` switches the model to it.

2-D kernels get a time axis of 1 (``adapt.py`` inflates them further where the model's kernel is longer in time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

CVT_FORMATS = ("cvt", "cvt_hf", "cvt_official")

# HF names inside a layer -> ours, applied in this order (``attention.output.dense`` before ``output.dense``)
_HF_LAYER = (
    (r"attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.convolution\.",
     lambda m: f"attn.conv_proj_{m[1][0]}.conv."),
    (r"attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.normalization\.",
     lambda m: f"attn.conv_proj_{m[1][0]}.bn."),
    (r"attention\.attention\.projection_(query|key|value)\.", lambda m: f"attn.proj_{m[1][0]}."),
    (r"attention\.output\.dense\.", lambda m: "attn.proj."),
    (r"layernorm_before\.", lambda m: "norm1."),
    (r"layernorm_after\.", lambda m: "norm2."),
    (r"intermediate\.dense\.", lambda m: "mlp.fc1."),
    (r"output\.dense\.", lambda m: "mlp.fc2."),
)  # fmt: skip


def detect_cvt_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``CVT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    if "stages.0.patch_embed.proj.weight" in state_dict and "stages.0.blocks.0.attn.proj_q.weight" in state_dict:
        return "cvt"
    hf = "encoder.stages.0.embedding.convolution_embeddings.projection.weight"
    if hf in state_dict or f"cvt.{hf}" in state_dict:
        return "cvt_hf"
    if "stage0.patch_embed.proj.weight" in state_dict and "stage0.blocks.0.attn.proj_q.weight" in state_dict:
        return "cvt_official"
    keys = list(state_dict)
    raise ValueError(f"not a CvT checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); supported: HF "
                     f"transformers Cvt*, the official microsoft/CvT release, this toolkit's")  # fmt: skip


def _with_time_axis(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Conv kernels (O, I, h, w) -> (O, I, 1, h, w)."""
    return {k: v.unsqueeze(2) if k.endswith("weight") and v.ndim == 4 else v for k, v in state.items()}


def _hf_key(key: str) -> str:
    key = key.removeprefix("cvt.")
    if key.startswith("layernorm."):
        return "norm." + key.removeprefix("layernorm.")
    if key.startswith("classifier."):
        return "head." + key.removeprefix("classifier.")
    match = re.match(r"encoder\.stages\.(\d+)\.", key)
    if match is None:
        return key
    stage, rest = f"stages.{match[1]}.", key[match.end() :]
    rest = rest.replace("embedding.convolution_embeddings.projection.", "patch_embed.proj.")
    rest = rest.replace("embedding.convolution_embeddings.normalization.", "patch_embed.norm.")
    layer = re.match(r"layers\.(\d+)\.", rest)
    if layer is None:
        return stage + rest
    inner = rest[layer.end() :]
    for pattern, name in _HF_LAYER:
        inner, count = re.subn("^" + pattern, name, inner)
        if count:
            break
    return f"{stage}blocks.{layer[1]}.{inner}"


def hf_to_cvt(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """HF transformers' CvT layout under our names."""
    return _with_time_axis({_hf_key(k): v for k, v in state_dict.items()})


def official_to_cvt(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The official microsoft/CvT layout under our names (``stage{s}.`` -> ``stages.{s}.``)."""
    return _with_time_axis({re.sub(r"^stage(\d+)\.", r"stages.\1.", k): v for k, v in state_dict.items()})


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "cvt": _with_time_axis,
    "cvt_hf": hf_to_cvt,
    "cvt_official": official_to_cvt,
}


def convert_to_cvt(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare CvT state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_cvt_format(state_dict)
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown CvT checkpoint format {fmt!r}; choose one of {', '.join(CVT_FORMATS)}")
    return CONVERTERS[fmt](state_dict), fmt
