"""Checkpoint formats of the ViT family, mapped onto its names (timm's ViT/DeiT/CaiT layout): pure functions.

- ``vit``: timm ``VisionTransformer`` / ``VisionTransformerDistilled`` / ``Cait`` state dicts, the official DeepViT
  files (``patch_embed.{conv1,bn1,conv2,bn2,proj}``, ``attn.reatten_matrix``, ``attn.var_norm``: already our names)
  and this toolkit's own ViT-family checkpoints (the same names; 2-D patch-embedding kernels get a time axis of 1).
- ``hf_videomae``: HF transformers ``VideoMAEForVideoClassification`` (separate query/key/value; q and v biases).
- ``hf_timesformer``: HF ``TimesformerForVideoClassification`` (divided attention; 2-D patch kernel).
- ``hf_vivit``: HF ``VivitForVideoClassification`` (separate q/k/v projections).
- ``hf_videomae_pt``: HF ``VideoMAEForPreTraining`` (the ``videomae.`` encoder as ``hf_videomae``, its final
  ``layernorm``, ``encoder_to_decoder``, ``mask_token``, ``decoder.decoder_layers.N`` in HF's block names,
  ``decoder.norm``, ``decoder.head``).
- ``videomae_pt``: the original VideoMAE repository's pre-training files (``PretrainVisionTransformer``:
  ``encoder.patch_embed.proj``, ``encoder.blocks.N``, ``encoder.norm``, ``encoder_to_decoder``, ``mask_token``,
  ``decoder.blocks.N``, ``decoder.norm``, ``decoder.head``).

The two pre-training formats map onto ``mae.MaskedAutoencoder``'s names: the encoder's are the ViT family's (so a
``VisionTransformer`` classifier takes them as they are), the decoder's keep VideoMAE's (``PRETRAINING_KEYS``).

HF video models take (B, T, C, H, W) clips; the weights do not depend on that layout, so only names change here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

VIT_FORMATS = ("vit", "hf_videomae", "hf_timesformer", "hf_vivit", "hf_videomae_pt", "videomae_pt")
# tensor-name prefixes of an MAE's pre-training parts (a classifier initialised from one drops them)
PRETRAINING_KEYS = ("decoder.", "encoder_to_decoder.", "mask_token")
_HF_PREFIXES = {"videomae.": "hf_videomae", "timesformer.": "hf_timesformer", "vivit.": "hf_vivit"}

# HF block entries (after "<model>.encoder.layer.N." or "vivit.layers.N.") -> ours (after "blocks.N.")
_HF_BLOCK = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.attention.qkv": "attn.qkv",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "temporal_layernorm": "temporal_norm1",
    "temporal_attention.attention.qkv": "temporal_attn.qkv",
    "temporal_attention.output.dense": "temporal_attn.proj",
    "temporal_dense": "temporal_fc",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.time_embeddings": "time_embed",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
}
# separate q/k/v projections, fused into attn.qkv in this order
_SPLIT_QKV = re.compile(r"(?P<block>\d+)\.attention\.(?:attention\.)?(?P<part>query|key|value|q_proj|k_proj|v_proj)\.(?P<kind>weight|bias)")
_PART = {"query": 0, "q_proj": 0, "key": 1, "k_proj": 1, "value": 2, "v_proj": 2}


def detect_vit_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``VIT_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    keys = list(state_dict)
    if "encoder.patch_embed.proj.weight" in state_dict:
        return "videomae_pt"
    if any(k.startswith("videomae.") for k in keys) and any(k.startswith(PRETRAINING_KEYS) for k in keys):
        return "hf_videomae_pt"
    for prefix, fmt in _HF_PREFIXES.items():
        if any(k.startswith(prefix) for k in keys):
            return fmt
    if "patch_embed.proj.weight" in state_dict and any(k.startswith("blocks.0.") for k in keys):
        return "vit"
    raise ValueError(f"not a ViT-family checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); "
                     f"supported: timm ViT/DeiT/CaiT, official DeepViT, HF VideoMAE/TimeSformer/ViViT, VideoMAE "
                     f"pre-training (HF and original)")  # fmt: skip


def _patch_kernel_3d(state: StateDict) -> StateDict:
    """2-D kernels of the patch embedding (``proj``; DeepViT's stem ``conv1``, ``conv2``) get a time axis of 1."""
    for key, weight in list(state.items()):
        if key.startswith("patch_embed.") and key.endswith(".weight") and weight.ndim == 4:
            state[key] = weight.unsqueeze(2)  # (O, C, k, k) -> (O, C, 1, k, k)
    return state


def _rename_hf_block(rest: str) -> str:
    for theirs, ours in _HF_BLOCK.items():
        if rest.startswith(theirs + "."):
            return ours + rest[len(theirs) :]
    raise ValueError(f"unexpected HF block tensor {rest!r}")


def _rename_hf(key: str, model: str) -> str | None:
    """Our name for an HF tensor, or None for a part of a separate q/k/v projection (fused later)."""
    if key.startswith("classifier."):
        return "head." + key[len("classifier.") :]
    if key.startswith("fc_norm."):
        return key
    body = key[len(model) + 1 :]
    block = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.*)", body)
    if block is not None:
        if _SPLIT_QKV.match(f"{block[1]}.{block[2]}"):
            return None
        return f"blocks.{block[1]}.{_rename_hf_block(block[2])}"
    for theirs, ours in _HF_TOP.items():
        if body == theirs or body.startswith(theirs + "."):
            return ours + body[len(theirs) :]
    raise ValueError(f"unexpected HF tensor {key!r}")


def _fuse_split_qkv(state_dict: Mapping[str, torch.Tensor], model: str) -> StateDict:
    """Separate q/k/v projections -> ``attn.qkv``; a key without bias next to q and v biases (VideoMAE) becomes
    ``attn.q_bias`` / ``attn.v_bias``."""
    parts: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for key, value in state_dict.items():
        body = key[len(model) + 1 :]
        block = re.match(r"(?:encoder\.layer|layers)\.(.*)", body)
        found = _SPLIT_QKV.fullmatch(block[1]) if block else None
        if found:
            parts.setdefault((found["block"], found["kind"]), {})[_PART[found["part"]]] = value
    out: StateDict = {}
    for (block, kind), pieces in parts.items():
        if kind == "weight" or len(pieces) == 3:
            out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([pieces[i] for i in range(3)])
        else:  # q and v biases only
            out[f"blocks.{block}.attn.q_bias"], out[f"blocks.{block}.attn.v_bias"] = pieces[0], pieces[2]
    return out


def hf_to_vit(state_dict: Mapping[str, torch.Tensor], fmt: str) -> StateDict:
    """An HF VideoMAE / TimeSformer / ViViT state dict under our names."""
    model = {v: k for k, v in _HF_PREFIXES.items()}[fmt].rstrip(".")
    out: StateDict = {}
    for key, value in state_dict.items():
        name = _rename_hf(key, model)
        if name is not None:
            out[name] = value
    out.update(_fuse_split_qkv(state_dict, model))
    return _patch_kernel_3d(out)


def hf_pretraining_to_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An HF ``VideoMAEForPreTraining`` state dict under ``MaskedAutoencoder``'s names."""
    out = hf_to_vit({k: v for k, v in state_dict.items() if k.startswith("videomae.")}, "hf_videomae")
    # the decoder's blocks are HF VideoMAE layers: rename them as encoder layers would be, then move them
    layers = {}
    for key, value in state_dict.items():
        found = re.match(r"decoder\.decoder_layers\.(.*)", key)
        if found:
            layers[f"videomae.encoder.layer.{found[1]}"] = value
        elif not key.startswith("videomae."):
            out[key] = value  # encoder_to_decoder, mask_token, decoder.norm, decoder.head: our names
    out.update({f"decoder.{k}": v for k, v in hf_to_vit(layers, "hf_videomae").items()})
    return out


def videomae_pretraining_to_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An original VideoMAE pre-training state dict under ``MaskedAutoencoder``'s names (``encoder.`` dropped)."""
    return {k.removeprefix("encoder."): v for k, v in state_dict.items()}


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "vit": lambda sd: _patch_kernel_3d(dict(sd)),
    "hf_videomae": lambda sd: hf_to_vit(sd, "hf_videomae"),
    "hf_timesformer": lambda sd: hf_to_vit(sd, "hf_timesformer"),
    "hf_vivit": lambda sd: hf_to_vit(sd, "hf_vivit"),
    "hf_videomae_pt": hf_pretraining_to_mae,
    "videomae_pt": videomae_pretraining_to_mae,
}


def convert_to_vit(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare ViT-family state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_vit_format(state_dict)
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown ViT checkpoint format {fmt!r}; choose one of {', '.join(VIT_FORMATS)}")
    return CONVERTERS[fmt](state_dict), fmt
