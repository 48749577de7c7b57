"""Checkpoint formats: detect where a state dict comes from and map it onto PySlowFast names.

Our models use exactly PySlowFast's parameter names and shapes, so every foreign checkpoint is converted *into*
PySlowFast names. All functions here are pure: they take mappings of tensors and return new dicts, never touching a
model or a config. Renamed tensors are passed through as the same objects (no copies); reshaped ones are views;
only tensors that have to be concatenated are new.

Supported sources:

- ``slowfast``: PySlowFast ``.pyth`` files (``{"model_state": ...}``), already in our names.
- ``mvit_video``: checkpoints written by this package (top-level key ``"mvit_video_version"``), PySlowFast names.
- ``torchvision``: ``torchvision.models.video.mvit_v1_b`` / ``mvit_v2_s``.
- ``timm``: ``timm`` ``mvitv2_*`` image models (stage-nested blocks, 2-D pooling convs).
- ``pytorchvideo``: ``create_multiscale_vision_transformers`` (split q/k/v linears).
- ``official_mvit``: the facebookresearch/mvit image repository (PySlowFast-like names, 2-D pooling convs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "FORMATS",
    "MVIT_VIDEO_VERSION_KEY",
    "convert_to_slowfast",
    "detect_format",
    "is_slowfast_key",
    "official_mvit_to_slowfast",
    "pytorchvideo_to_slowfast",
    "timm_to_slowfast",
    "torchvision_to_slowfast",
    "unwrap_checkpoint",
]

FORMATS = ("slowfast", "mvit_video", "torchvision", "pytorchvideo", "timm", "official_mvit")
MVIT_VIDEO_VERSION_KEY = "mvit_video_version"

StateDict = dict[str, torch.Tensor]
_Transform = Callable[[torch.Tensor], torch.Tensor]
_Rule = tuple[re.Pattern[str], str, _Transform | None]

_WRAPPER_KEYS = ("model_state", "state_dict", "model")
_DDP_PREFIX = "module."
_MAX_LISTED = 8

# Tensor names PySlowFast's MViT (v1 and v2, video and image) uses, outside and inside blocks.
_SLOWFAST_TOP_LEVEL = (
    r"cls_token|pos_embed|pos_embed_(spatial|temporal|class)|patch_embed\.proj\.(weight|bias)"
    r"|norm_stem\.(weight|bias)|norm\.(weight|bias)|head\.projection\.(weight|bias)"
)
_SLOWFAST_BLOCK_PART = (
    r"(norm1|norm2|proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|attn\.(qkv|q|k|v|proj)\.(weight|bias)|attn\.norm_[qkv]\.(weight|bias)|attn\.rel_pos_[thw]|gamma_[12]"
)
_SLOWFAST_POOL = r"blocks\.\d+\.attn\.pool_[qkv]\.(weight|bias)"
# Reversible MViT (MVIT.REV): F = norm + attention, G = norm + MLP, res_proj at stage transitions.
_SLOWFAST_REV = (
    r"rev_backbone\.layers\.\d+\.(F\.norm\.(weight|bias)|F\.attn\.(qkv|q|k|v|proj)\.(weight|bias)"
    r"|F\.attn\.(norm|pool)_[qkv]\.(weight|bias)|F\.attn\.rel_pos_[thw]|G\.norm\.(weight|bias)"
    r"|G\.mlp\.fc[12]\.(weight|bias)|res_proj\.(weight|bias))"
)
_SLOWFAST_KEY = re.compile(
    rf"{_SLOWFAST_TOP_LEVEL}|{_SLOWFAST_POOL}|blocks\.\d+\.({_SLOWFAST_BLOCK_PART})|{_SLOWFAST_REV}"
)
# PySlowFast's MaskMViT (MaskFeat pre-training): mask token, prediction heads, HOG filter buffers
_SLOWFAST_PRETRAINING = r"mask_token|hogs\.\d+\.weight_[xy]|pred_head\.(transforms\.\d+\.\d+|projections\.\d+)\.(weight|bias)"


def is_slowfast_key(name: str) -> bool:
    """Return True if ``name`` is a tensor name PySlowFast's MViT uses."""
    return _SLOWFAST_KEY.fullmatch(name) is not None


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_checkpoint(obj: Mapping[str, Any]) -> tuple[StateDict, dict[str, Any]]:
    """Split a loaded checkpoint into its model state dict and everything else.

    Handles PySlowFast ``{"model_state": ...}``, ``{"state_dict": ...}``, ``{"model": ...}`` and bare state dicts,
    and strips the ``module.`` prefix that ``DistributedDataParallel`` adds.

    Args:
        obj: what ``torch.load`` returned.

    Returns:
        ``(state_dict, meta)``: a new dict of tensors, and the remaining top-level entries (epoch, optimizer, ...).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"checkpoint must be a mapping (a state dict or a dict holding one), got {type(obj).__name__}")
    for wrapper in _WRAPPER_KEYS:
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            meta = {k: v for k, v in obj.items() if k != wrapper}
            return _strip_ddp_prefix(inner), meta
    if not _is_state_dict(obj):
        raise ValueError(
            f"checkpoint holds no state dict: expected tensors or one of the keys {_WRAPPER_KEYS}, "
            f"found keys {_listing(map(str, obj))}"
        )
    return _strip_ddp_prefix(obj), {}


def _strip_ddp_prefix(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return {k.removeprefix(_DDP_PREFIX): v for k, v in state_dict.items()}


def detect_format(obj: Mapping[str, Any]) -> str:
    """Name the layout of a checkpoint or state dict.

    Args:
        obj: a bare state dict or a whole loaded checkpoint (wrappers and ``module.`` prefixes are fine).

    Returns:
        One of :data:`FORMATS`.

    Raises:
        ValueError: if no known MViT layout matches; the message names some of the keys.
    """
    if isinstance(obj, Mapping) and MVIT_VIDEO_VERSION_KEY in obj:
        return "mvit_video"
    state_dict, _ = unwrap_checkpoint(obj)
    keys = set(state_dict)

    def has(*names: str) -> bool:
        return any(k in keys for k in names)

    def has_prefix(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if has("conv_proj.weight") or has_prefix("pos_encoding.") or any(".attn.project.0." in k for k in keys):
        return "torchvision"
    if has("patch_embed.patch_model.weight", "norm_embed.weight", "head.proj.weight") or has_prefix(
        "cls_positional_encoding."
    ):
        return "pytorchvideo"
    if has_prefix("stages.") or has("head.fc.weight"):
        return "timm"
    if has("patch_embed.proj.weight") and any(k.startswith("rev_backbone.") and is_slowfast_key(k) for k in keys):
        return "slowfast"
    if has("patch_embed.proj.weight") and any(k.startswith("blocks.") and is_slowfast_key(k) for k in keys):
        pool_dims = {state_dict[k].ndim for k in keys if re.fullmatch(r"blocks\.\d+\.attn\.pool_[qkv]\.weight", k)}
        return "official_mvit" if 4 in pool_dims else "slowfast"
    raise ValueError(
        f"unrecognised checkpoint format (known: {', '.join(FORMATS)}); some of its keys: {_listing(sorted(keys))}"
    )


def _token(t: torch.Tensor) -> torch.Tensor:
    # (C,) -> (1, 1, C)
    return t.reshape(1, 1, -1)


def _batch(t: torch.Tensor) -> torch.Tensor:
    # (N, C) -> (1, N, C)
    return t.unsqueeze(0)


def _pool_3d(t: torch.Tensor) -> torch.Tensor:
    # Conv2d (C, 1, kh, kw) -> Conv3d (C, 1, 1, kh, kw); 5-D kernels pass through.
    return t.unsqueeze(2) if t.ndim == 4 else t


def _rules(*rules: tuple[str, str, _Transform | None]) -> tuple[_Rule, ...]:
    return tuple((re.compile(pattern), repl, fn) for pattern, repl, fn in rules)


def _apply_rules(state_dict: Mapping[str, torch.Tensor], rules: tuple[_Rule, ...], source: str) -> StateDict:
    out: StateDict = {}
    unmapped = []
    for key, value in state_dict.items():
        for pattern, repl, fn in rules:
            match = pattern.fullmatch(key)
            if match:
                out[match.expand(repl)] = fn(value) if fn else value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"could not map {len(unmapped)} {source} key(s) to PySlowFast names: {_listing(unmapped)}; "
            f"is this an MViT {source} checkpoint?"
        )
    return out


# Shared by formats whose names already match PySlowFast (only pooling kernels may need a new shape).
_SLOWFAST_BLOCK_RULE = (rf"(blocks\.\d+\.({_SLOWFAST_BLOCK_PART}))", r"\1", None)
_TOP_LEVEL_RULE = (rf"({_SLOWFAST_TOP_LEVEL})", r"\1", None)
_POOL_RULE = (rf"({_SLOWFAST_POOL})", r"\1", _pool_3d)

_TORCHVISION_RULES = _rules(
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1", None),
    (r"pos_encoding\.class_token", "cls_token", _token),
    (r"pos_encoding\.class_pos", "pos_embed_class", _token),
    (r"pos_encoding\.spatial_pos", "pos_embed_spatial", _batch),
    (r"pos_encoding\.temporal_pos", "pos_embed_temporal", _batch),
    (r"blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)", r"blocks.\1.\2.\3", None),
    (r"blocks\.(\d+)\.attn\.(qkv\.weight|qkv\.bias|rel_pos_[thw])", r"blocks.\1.attn.\2", None),
    (r"blocks\.(\d+)\.attn\.project\.0\.(weight|bias)", r"blocks.\1.attn.proj.\2", None),
    (r"blocks\.(\d+)\.attn\.pool_([qkv])\.pool\.(weight|bias)", r"blocks.\1.attn.pool_\2.\3", None),
    (r"blocks\.(\d+)\.attn\.pool_([qkv])\.norm_act\.0\.(weight|bias)", r"blocks.\1.attn.norm_\2.\3", None),
    (r"blocks\.(\d+)\.mlp\.0\.(weight|bias)", r"blocks.\1.mlp.fc1.\2", None),
    (r"blocks\.(\d+)\.mlp\.3\.(weight|bias)", r"blocks.\1.mlp.fc2.\2", None),
    (r"blocks\.(\d+)\.project\.(weight|bias)", r"blocks.\1.proj.\2", None),
    (r"norm\.(weight|bias)", r"norm.\1", None),
    (r"head\.1\.(weight|bias)", r"head.projection.\1", None),
)


def torchvision_to_slowfast(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Map a torchvision ``mvit_v1_b`` / ``mvit_v2_s`` state dict onto PySlowFast names.

    ``conv_proj`` -> ``patch_embed.proj``; ``pos_encoding.*`` -> ``cls_token`` / ``pos_embed_*`` (reshaped to
    ``(1, 1, C)`` / ``(1, N, C)``); ``attn.project.0`` -> ``attn.proj``; ``attn.pool_x.pool`` / ``.norm_act.0`` ->
    ``attn.pool_x`` / ``attn.norm_x``; ``mlp.0`` / ``mlp.3`` -> ``mlp.fc1`` / ``mlp.fc2``; ``project`` -> ``proj``;
    ``head.1`` -> ``head.projection``.

    Raises:
        ValueError: listing the keys that have no PySlowFast counterpart.
    """
    return _apply_rules(state_dict, _TORCHVISION_RULES, "torchvision")


_TIMM_STAGE_BLOCK = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)")
_TIMM_RULES = _rules(
    (r"(blocks\.\d+)\.shortcut_proj_(attn|mlp)\.(weight|bias)", r"\1.proj.\3", None),
    (r"head\.fc\.(weight|bias)", r"head.projection.\1", None),
    _POOL_RULE,
    _SLOWFAST_BLOCK_RULE,
    _TOP_LEVEL_RULE,
)


def _flatten_timm_blocks(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Renumber ``stages.i.blocks.j`` into PySlowFast's flat ``blocks.N`` (stage depths read off the keys)."""
    depths: dict[int, int] = {}
    for key in state_dict:
        match = _TIMM_STAGE_BLOCK.fullmatch(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if sorted(depths) != list(range(len(depths))):
        raise ValueError(f"timm checkpoint has non-contiguous stages {sorted(depths)}; cannot number its blocks")
    offsets = {stage: sum(depths[s] for s in range(stage)) for stage in depths}

    out: StateDict = {}
    for key, value in state_dict.items():
        match = _TIMM_STAGE_BLOCK.fullmatch(key)
        if match:
            key = f"blocks.{offsets[int(match[1])] + int(match[2])}.{match[3]}"
        out[key] = value
    return out


def timm_to_slowfast(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Map a timm ``mvitv2_*`` state dict onto PySlowFast names.

    ``stages.i.blocks.j`` -> ``blocks.N`` (stages concatenated in order); ``shortcut_proj_attn`` /
    ``shortcut_proj_mlp`` -> ``proj``; 2-D pooling kernels ``(C, 1, k, k)`` -> ``(C, 1, 1, k, k)``;
    ``head.fc`` -> ``head.projection``. The 2-D patch embedding stays 2-D, as in PySlowFast's image models.

    Raises:
        ValueError: listing the keys that have no PySlowFast counterpart.
    """
    return _apply_rules(_flatten_timm_blocks(state_dict), _TIMM_RULES, "timm")


_PYTORCHVIDEO_RULES = _rules(
    (r"patch_embed\.patch_model\.(weight|bias)", r"patch_embed.proj.\1", None),
    (
        r"cls_positional_encoding\.(cls_token|pos_embed|pos_embed_spatial|pos_embed_temporal|pos_embed_class)",
        r"\1",
        None,
    ),
    (r"norm_embed\.(weight|bias)", r"norm.\1", None),
    (r"head\.proj\.(weight|bias)", r"head.projection.\1", None),
    _POOL_RULE,
    _SLOWFAST_BLOCK_RULE,
)
_PYTORCHVIDEO_QKV = re.compile(r"(blocks\.\d+\.attn)\.([qkv])\.(weight|bias)")


def _fuse_qkv(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Concatenate split ``attn.q`` / ``attn.k`` / ``attn.v`` linears into one ``attn.qkv`` (rows q, k, v)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _PYTORCHVIDEO_QKV.fullmatch(key)
        if match:
            parts.setdefault(f"{match[1]}.qkv.{match[3]}", {})[match[2]] = value

    out: StateDict = {}
    for key, value in state_dict.items():
        match = _PYTORCHVIDEO_QKV.fullmatch(key)
        if not match:
            out[key] = value
            continue
        fused = f"{match[1]}.qkv.{match[3]}"
        if fused in out:
            continue
        found = parts[fused]
        if set(found) != {"q", "k", "v"}:
            raise ValueError(f"cannot build {fused}: pytorchvideo checkpoint has only attn.{sorted(found)} of q/k/v")
        out[fused] = torch.cat([found["q"], found["k"], found["v"]], dim=0)
    return out


def pytorchvideo_to_slowfast(state_dict: Mapping[str, torch.Tensor], pool_first: bool = False) -> StateDict:
    """Map a pytorchvideo ``create_multiscale_vision_transformers`` state dict onto PySlowFast names.

    ``patch_embed.patch_model`` -> ``patch_embed.proj``; ``cls_positional_encoding.*`` -> top-level ``cls_token`` /
    ``pos_embed*``; ``norm_embed`` -> ``norm``; ``head.proj`` -> ``head.projection``; split ``attn.q/k/v`` linears
    are concatenated into ``attn.qkv`` (PySlowFast keeps them split only for ``POOL_FIRST`` models).

    Args:
        state_dict: the pytorchvideo model's state dict.
        pool_first: the model was built with ``pool_first=True``; keep ``attn.q/k/v`` split, as PySlowFast does.

    Raises:
        ValueError: listing the keys that have no PySlowFast counterpart.
    """
    fused = dict(state_dict) if pool_first else _fuse_qkv(state_dict)
    return _apply_rules(fused, _PYTORCHVIDEO_RULES, "pytorchvideo")


_OFFICIAL_MVIT_RULES = _rules(_POOL_RULE, _SLOWFAST_BLOCK_RULE, _TOP_LEVEL_RULE)


def official_mvit_to_slowfast(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Map a facebookresearch/mvit (image) state dict onto PySlowFast names.

    Names already match; 2-D pooling kernels ``(C, 1, k, k)`` become Conv3d kernels ``(C, 1, 1, k, k)``.

    Raises:
        ValueError: listing the keys that have no PySlowFast counterpart.
    """
    return _apply_rules(state_dict, _OFFICIAL_MVIT_RULES, "official_mvit")


_SLOWFAST_RULES = _rules(
    _SLOWFAST_BLOCK_RULE, (rf"({_SLOWFAST_POOL})", r"\1", None), (rf"({_SLOWFAST_REV})", r"\1", None), _TOP_LEVEL_RULE,
    (rf"({_SLOWFAST_PRETRAINING})", r"\1", None),
)
_CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "slowfast": lambda sd: _apply_rules(sd, _SLOWFAST_RULES, "slowfast"),
    "mvit_video": lambda sd: _apply_rules(sd, _SLOWFAST_RULES, "mvit_video"),
    "torchvision": torchvision_to_slowfast,
    "timm": timm_to_slowfast,
    "pytorchvideo": pytorchvideo_to_slowfast,
    "official_mvit": official_mvit_to_slowfast,
}


def convert_to_slowfast(obj: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """Unwrap a loaded checkpoint of any supported format and return it under PySlowFast names.

    Args:
        obj: what ``torch.load`` returned (bare state dict or wrapped checkpoint).
        source: one of :data:`FORMATS`; detected with :func:`detect_format` when None.

    Returns:
        ``(state_dict, source)``.
    """
    if source is None:
        source = detect_format(obj)
    if source not in _CONVERTERS:
        raise ValueError(f"unknown checkpoint format {source!r}; choose one of {', '.join(FORMATS)}")
    state_dict, _ = unwrap_checkpoint(obj)
    return _CONVERTERS[source](state_dict), source


def stored_patch_dims(obj: Any) -> tuple[int, int, int] | None:
    """The token grid (T, H, W) a PySlowFast or mvit_video checkpoint was trained on, from the config YAML saved in
    it (``"cfg"``: DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE, MVIT.PATCH_STRIDE, MVIT.PATCH_2D); None without one."""
    import yaml

    text = obj.get("cfg") if isinstance(obj, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        cfg = yaml.safe_load(text)
        data, mvit = cfg["DATA"], cfg["MVIT"]
        frames, crop, stride = int(data["NUM_FRAMES"]), int(data["TRAIN_CROP_SIZE"]), list(mvit["PATCH_STRIDE"])
        if mvit.get("PATCH_2D", False):
            return (1, crop // int(stride[0]), crop // int(stride[1]))
        return (frames // int(stride[0]), crop // int(stride[1]), crop // int(stride[2]))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
