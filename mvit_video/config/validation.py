"""What a valid config is: value types (``coerce_value``) and cross-key rules (``validate``).

Every failure raises ``ConfigError`` with one line: where (file), what (key=value), what to do.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from ast import literal_eval
from collections.abc import Callable, Iterator
from typing import Any

from fvcore.common.config import CfgNode

from ..errors import UserError
from .defaults import HEAD_ACTS, LOSS_FUNCS, REFUSED_KEYS, get_cfg, nullable_type
from .sections import dataclass_kwargs, derived_sections

__all__ = [
    "ConfigError",
    "coerce_value",
    "decode_literal",
    "iter_leaves",
    "short_repr",
    "suggest_keys",
    "unknown_key_message",
    "validate",
]

_POOL_MODES = ("conv", "conv_unshared", "avg", "max")
_PRECISIONS = ("fp32", "fp16", "bf16")
_ENSEMBLE_METHODS = ("sum", "max")
_AUG_ORDERS = ("pyslowfast", "crop_first")  # = mvit_video.data.pipeline.AUG_ORDERS (config does not import data)

_short = reprlib.Repr()
_short.maxlist = 6
_short.maxstring = 60
_short.maxother = 60


class ConfigError(UserError, ValueError):
    """A user mistake in a config file, an override or a config built in Python.

    The message is always a single line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


def short_repr(value: Any) -> str:
    """``repr`` cut to one short line, for error messages.

    Args:
        value: Any config value.

    Returns:
        Its repr, with long lists and strings abbreviated by ``...``.
    """
    return _short.repr(value)


def iter_leaves(node: CfgNode, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Walk the values of a config.

    Args:
        node: A config or one of its sections.
        prefix: Prepended to every key (``"MVIT."`` for a section).

    Yields:
        ``(full_key, value)`` for every non-section entry, depth first.
    """
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from iter_leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decode_literal(value: str) -> Any:
    """Read a string as a Python literal like yacs does ("1e-4" -> 1e-4); keep it if not one.

    Args:
        value: Text from YAML or an override.

    Returns:
        The literal's value, or ``value`` unchanged when it is not a Python literal.
    """
    try:
        return literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _to_list(value: Any) -> list:
    """Tuples become lists (recursively); numeric strings in lists are decoded."""
    out = []
    for item in value:
        if isinstance(item, (list, tuple)):
            item = _to_list(item)
        elif isinstance(item, str) and _is_number(decode_literal(item)):
            item = decode_literal(item)
        out.append(item)
    return out


def _expected_name(kind: type, default: Any) -> str:
    names = {bool: "a bool", int: "an int", float: "a number", str: "a string", list: "a list"}
    name = names.get(kind, kind.__name__)
    element = _element_kind(default) if isinstance(default, list) else None
    if element is not None:
        name += {int: " of ints", float: " of numbers", str: " of strings"}[element]
    example = f" like {short_repr(default)}" if default not in (None, []) else ""
    return name + example


def _element_kind(default: list) -> type | None:
    """Type every element of a homogeneous default list has (int, float or str), else None."""
    for kind in (int, float, str):
        if default and all(type(item) is kind for item in default):
            return kind
    return None


def _coerce_elements(items: list, default: list) -> list | None:
    """Check/convert list elements against a homogeneous default; None when one does not fit."""
    kind = _element_kind(default)
    if kind is float and all(_is_number(item) for item in items):
        return [float(item) for item in items]
    if kind is None or all(type(item) is kind for item in items):
        return items
    return None


def _coerce_to(value: Any, kind: type, default: Any) -> tuple[bool, Any]:
    """Try to give ``value`` the type ``kind``; returns (ok, converted value)."""
    if kind is str:
        if value is None:  # an empty YAML value (`KEY:`) means an empty string
            return True, ""
        if isinstance(value, str):
            decoded = decode_literal(value)
            return True, decoded if isinstance(decoded, str) else value
        return False, value
    if isinstance(value, str):
        value = decode_literal(value)
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        return _is_number(value), float(value) if _is_number(value) else value
    if kind is list and isinstance(value, (list, tuple)):
        items = _coerce_elements(_to_list(value), default if isinstance(default, list) else [])
        return items is not None, items
    return False, value


def coerce_value(value: Any, default: Any, key: str, source: str) -> Any:
    """Give a new value for ``key`` the type of its default, like yacs but with clear errors.

    Strings are read as Python literals for non-string keys (``"1e-4"`` -> ``1e-4``,
    ``"(3, 7, 7)"`` -> ``[3, 7, 7]``), tuples become lists, ints become floats where the default
    is a float. Keys whose default is None accept None or their declared type (``defaults.nullable_type``).

    Args:
        value: The new value (from YAML, an override string or Python).
        default: The key's default value; its type is the expected type.
        key: Full dotted key, for the error message.
        source: Where the value comes from (file path, "opts", ...), for the error message.

    Returns:
        The value converted to the expected type.

    Raises:
        ConfigError: If the value cannot have the expected type.
    """
    kind = nullable_type(key) if default is None else type(default)
    if kind is None:  # None default without a declared type: anything yacs accepts
        return value
    if isinstance(value, str) and default is None and decode_literal(value) is None:
        return None
    if value is None and default is None:
        return None
    ok, converted = _coerce_to(value, kind, default)
    if not ok:
        raise ConfigError(
            f"{source}: {key}={short_repr(value)} has the wrong type "
            f"({type(value).__name__}); expected {_expected_name(kind, default)}"
        )
    return converted


def suggest_keys(key: str, valid_keys: list[str]) -> list[str]:
    """Guess which valid keys a mistyped key meant.

    Args:
        key: The unknown full key, e.g. ``"MVIT.DEPHT"``.
        valid_keys: Full keys (and section names) of the schema.

    Returns:
        Up to three keys: the same name in another section first, then close spellings.
    """
    name = key.rsplit(".", 1)[-1]
    section = key.rsplit(".", 1)[0] if "." in key else ""
    same_name = [k for k in valid_keys if k.rsplit(".", 1)[-1] == name]
    close = difflib.get_close_matches(key, valid_keys, n=3, cutoff=0.75)
    same_section = [k for k in close if "." in k and k.rsplit(".", 1)[0] == section]
    return list(dict.fromkeys(same_name + (same_section or close)))[:3]


def unknown_key_message(source: str, key: str, valid_keys: list[str]) -> str:
    """Build the error message for a key the schema does not have.

    Args:
        source: Where the key was found (file path, "opts", ...).
        key: The unknown full key.
        valid_keys: Full keys (and section names) of the schema.

    Returns:
        One line naming the source and key, with the closest valid keys when there are any.
    """
    guesses = suggest_keys(key, valid_keys)
    if guesses:
        return f"{source}: unknown config key {key}; did you mean {' or '.join(guesses)}?"
    return (
        f"{source}: unknown config key {key}; remove it (valid keys: mvit_video/config/defaults.py)"
    )


def _check_types(cfg: CfgNode, source: str) -> None:
    """Every key exists in the schema and already has its default's type (no strings for
    numbers, no None outside nullable keys)."""
    defaults = dict(iter_leaves(get_cfg()))
    for key, value in iter_leaves(cfg):
        if key not in defaults:
            raise ConfigError(unknown_key_message(source, key, list(defaults)))
        default = defaults[key]
        loose = (isinstance(value, str) and not isinstance(default, str)) or (
            value is None and default is not None
        )
        if loose:
            kind = nullable_type(key) or type(default)
            raise ConfigError(
                f"{source}: {key}={short_repr(value)} has the wrong type "
                f"({type(value).__name__}); expected {_expected_name(kind, default)}"
            )
        coerce_value(value, default, key, source)


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _fail(source: str, key: str, value: Any, problem: str) -> None:
    raise ConfigError(f"{source}: {key}={short_repr(value)} {problem}")


def _fail_entry(source: str, key: str, entry: Any, problem: str) -> None:
    raise ConfigError(f"{source}: {key} entry {short_repr(entry)} {problem}")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_int_list(source: str, key: str, value: Any, length: int, minimum: int) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        _fail(source, key, value, f"must be a list of {length} ints")
    if not all(_is_int(v, minimum) for v in value):
        _fail(source, key, value, f"must contain ints >= {minimum}")


def _check_patch(cfg: CfgNode, source: str) -> None:
    """Patch kernel/stride/padding: 3 ints, or 2 when MVIT.PATCH_2D."""
    length = 2 if cfg.MVIT.PATCH_2D else 3
    hint = " (MVIT.PATCH_2D=True uses [h, w])" if cfg.MVIT.PATCH_2D else ""
    for name, minimum in (("PATCH_KERNEL", 1), ("PATCH_STRIDE", 1), ("PATCH_PADDING", 0)):
        value = cfg.MVIT[name]
        if not isinstance(value, (list, tuple)) or len(value) != length:
            _fail(source, f"MVIT.{name}", value, f"must be a list of {length} ints{hint}")
        if not all(_is_int(v, minimum) for v in value):
            _fail(source, f"MVIT.{name}", value, f"must contain ints >= {minimum}")


def _check_input_size(cfg: CfgNode, source: str) -> None:
    """Crops divide by the spatial patch stride; clip length by the temporal one."""
    stride = list(cfg.MVIT.PATCH_STRIDE)
    spatial = math.lcm(stride[-2], stride[-1])
    for name in ("TRAIN_CROP_SIZE", "TEST_CROP_SIZE"):
        size = cfg.DATA[name]
        if not _is_int(size, 1):
            _fail(source, f"DATA.{name}", size, "must be a positive int")
        if size % spatial:
            _fail(
                source,
                f"DATA.{name}",
                size,
                f"is not divisible by the patch stride {spatial} (MVIT.PATCH_STRIDE={stride}); "
                f"use a multiple of {spatial}",
            )
    frames = cfg.DATA.NUM_FRAMES
    if not _is_int(frames, 1):
        _fail(source, "DATA.NUM_FRAMES", frames, "must be a positive int")
    if not cfg.MVIT.PATCH_2D and frames % stride[0]:
        _fail(
            source,
            "DATA.NUM_FRAMES",
            frames,
            f"is not divisible by the temporal patch stride {stride[0]} "
            f"(MVIT.PATCH_STRIDE={stride}); use a multiple of {stride[0]}",
        )


def _check_layer_index(source: str, key: str, entry: Any, depth: int) -> None:
    layer = entry[0]
    if not _is_int(layer, 0) or layer >= depth:
        _fail_entry(
            source,
            key,
            entry,
            f"has layer index {short_repr(layer)}; use an int in 0..{depth - 1} "
            f"(MVIT.DEPTH={depth})",
        )


def _check_multipliers(cfg: CfgNode, source: str) -> None:
    """DIM_MUL / HEAD_MUL entries are [layer, multiplier] with a layer < MVIT.DEPTH."""
    for name in ("DIM_MUL", "HEAD_MUL"):
        key = f"MVIT.{name}"
        for entry in cfg.MVIT[name]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                _fail_entry(source, key, entry, "is not [layer, multiplier]; write e.g. [1, 2.0]")
            _check_layer_index(source, key, entry, cfg.MVIT.DEPTH)
            if not _is_number(entry[1]) or entry[1] <= 0:
                _fail_entry(source, key, entry, "has a multiplier that is not a positive number")


def _check_pool_strides(cfg: CfgNode, source: str) -> None:
    """POOL_Q_STRIDE / POOL_KV_STRIDE entries are [layer, st, sh, sw]."""
    for name in ("POOL_Q_STRIDE", "POOL_KV_STRIDE"):
        key = f"MVIT.{name}"
        for entry in cfg.MVIT[name]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 4:
                _fail_entry(
                    source, key, entry, "is not [layer, st, sh, sw]; write e.g. [1, 1, 2, 2]"
                )
            _check_layer_index(source, key, entry, cfg.MVIT.DEPTH)
            if not all(_is_int(s, 1) for s in entry[1:]):
                _fail_entry(source, key, entry, "has strides that are not ints >= 1")


def _check_pool_kernels(cfg: CfgNode, source: str) -> None:
    """POOL_KV_STRIDE_ADAPTIVE / POOL_KVQ_KERNEL: None or [t, h, w]."""
    for name in ("POOL_KV_STRIDE_ADAPTIVE", "POOL_KVQ_KERNEL"):
        value = cfg.MVIT[name]
        if value is not None:
            _check_int_list(source, f"MVIT.{name}", value, 3, 1)


def _check_architecture(cfg: CfgNode, source: str) -> None:
    """Pooling mode, depth, width/heads and the class count."""
    mvit = cfg.MVIT
    if mvit.MODE not in _POOL_MODES:
        _fail(source, "MVIT.MODE", mvit.MODE, f"is not one of {', '.join(_POOL_MODES)}")
    for name in ("DEPTH", "EMBED_DIM", "NUM_HEADS"):
        if not _is_int(mvit[name], 1):
            _fail(source, f"MVIT.{name}", mvit[name], "must be an int >= 1")
    if mvit.EMBED_DIM % mvit.NUM_HEADS:
        _fail(
            source,
            "MVIT.EMBED_DIM",
            mvit.EMBED_DIM,
            f"is not divisible by MVIT.NUM_HEADS={mvit.NUM_HEADS}; "
            f"use a multiple of {mvit.NUM_HEADS}",
        )


_REV_FUSIONS = ("concat", "avg", "add", "max", "min")


def _check_reversible(cfg: CfgNode, source: str) -> None:
    """MVIT.REV: what a reversible MViT can be built with (PySlowFast's rules, and the options not built here)."""
    mvit, rev = cfg.MVIT, cfg.MVIT.REV
    if not rev.ENABLE:
        return
    if mvit.CLS_EMBED_ON:
        _fail(source, "MVIT.CLS_EMBED_ON", True, "cannot be combined with MVIT.REV.ENABLE: a reversible MViT has no "
              "cls token (PySlowFast's code asserts it, though its REV_MVIT_B_16x4_CONV.yaml sets True); set "
              "MVIT.CLS_EMBED_ON False")  # fmt: skip
    for name in ("RESPATH_FUSE", "PRE_Q_FUSION"):
        if rev[name] not in _REV_FUSIONS:
            _fail(source, f"MVIT.REV.{name}", rev[name], f"is not supported by mvit_video (PySlowFast's "
                  f"concat_linear fusions are not built); use one of {', '.join(_REV_FUSIONS)}")  # fmt: skip
    if rev.RESPATH_FUSE != "concat" and not mvit.USE_MEAN_POOLING:
        _fail(source, "MVIT.REV.RESPATH_FUSE", rev.RESPATH_FUSE, "needs MVIT.USE_MEAN_POOLING True (otherwise the "
              "final norm sees both streams at the fused width); set it, or use 'concat'")  # fmt: skip
    not_built = {"MODEL.ACT_CHECKPOINT": cfg.MODEL.ACT_CHECKPOINT, "MVIT.LAYER_SCALE_INIT_VALUE":
                 mvit.LAYER_SCALE_INIT_VALUE}  # fmt: skip
    for key, value in not_built.items():
        if value:
            _fail(source, key, value, "cannot be combined with MVIT.REV.ENABLE (reversible blocks already recompute "
                  "activations and have no layer scale); remove it")  # fmt: skip
    _check_buffer_layers(cfg, source)


def _check_buffer_layers(cfg: CfgNode, source: str) -> None:
    """Buffer layers lie strictly inside the depth, are not adjacent, and cover every width change and query
    stride (a reversible block keeps its width and grid)."""
    depth, layers = cfg.MVIT.DEPTH, cfg.MVIT.REV.BUFFER_LAYERS
    if not all(_is_int(i, 1) and i < depth - 1 for i in layers):
        _fail(source, "MVIT.REV.BUFFER_LAYERS", layers, f"must hold layers in 1..{depth - 2} (the first and last "
              "layers are reversible)")  # fmt: skip
    if any(i + 1 in layers for i in layers):
        _fail(source, "MVIT.REV.BUFFER_LAYERS", layers, "must not hold two adjacent layers")
    changing = {int(e[0]) for e in cfg.MVIT.DIM_MUL if e[1] != 1} | {
        int(e[0]) for e in cfg.MVIT.POOL_Q_STRIDE if any(s > 1 for s in e[1:])}  # fmt: skip
    missing = sorted(changing - set(layers))
    if missing:
        _fail(source, "MVIT.REV.BUFFER_LAYERS", layers, f"misses layers {missing}, which change the width "
              "(MVIT.DIM_MUL) or pool queries (MVIT.POOL_Q_STRIDE); add them")  # fmt: skip


def _check_model(cfg: CfgNode, source: str) -> None:
    """What every family shares: the class count and the head dropout."""
    if not _is_int(cfg.MODEL.NUM_CLASSES, 1):
        _fail(source, "MODEL.NUM_CLASSES", cfg.MODEL.NUM_CLASSES, "must be an int >= 1")
    rate = cfg.MODEL.DROPOUT_RATE
    if not _is_number(rate) or not 0.0 <= rate < 1.0:
        _fail(source, "MODEL.DROPOUT_RATE", rate, "must be in [0, 1)")


def _check_rates(cfg: CfgNode, source: str) -> None:
    """Drop rates lie in [0, 1)."""
    for key in ("MVIT.DROPPATH_RATE", "MVIT.DROPOUT_RATE"):
        section, name = key.split(".")
        value = cfg[section][name]
        if not _is_number(value) or not 0.0 <= value < 1.0:
            _fail(source, key, value, "must be in [0, 1)")


def _check_normalisation(cfg: CfgNode, source: str) -> None:
    """DATA.MEAN / DATA.STD have one value per RGB channel; STD is positive."""
    for name in ("MEAN", "STD"):
        value = cfg.DATA[name]
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            _fail(source, f"DATA.{name}", value, "must have 3 values (R, G, B)")
    if not all(_is_number(v) and v > 0 for v in cfg.DATA.STD):
        _fail(source, "DATA.STD", cfg.DATA.STD, "must be positive")


def _check_testing(cfg: CfgNode, source: str) -> None:
    """Multi-view test settings."""
    if cfg.TEST.NUM_SPATIAL_CROPS not in (1, 3):
        _fail(source, "TEST.NUM_SPATIAL_CROPS", cfg.TEST.NUM_SPATIAL_CROPS, "must be 1 or 3")
    if not _is_int(cfg.TEST.NUM_ENSEMBLE_VIEWS, 1):
        _fail(source, "TEST.NUM_ENSEMBLE_VIEWS", cfg.TEST.NUM_ENSEMBLE_VIEWS, "must be >= 1")
    if cfg.DATA.ENSEMBLE_METHOD not in _ENSEMBLE_METHODS:
        _fail(source, "DATA.ENSEMBLE_METHOD", cfg.DATA.ENSEMBLE_METHOD, "must be sum or max")


def _check_toolkit(cfg: CfgNode, source: str) -> None:
    """Toolkit keys: precision, augmentation order, bad-video budget, demo."""
    if cfg.TRAIN.PRECISION not in _PRECISIONS:
        _fail(source, "TRAIN.PRECISION", cfg.TRAIN.PRECISION, f"must be one of {_PRECISIONS}")
    if cfg.TRAIN.MIXED_PRECISION and cfg.TRAIN.PRECISION == "fp32":
        _fail(
            source,
            "TRAIN.MIXED_PRECISION",
            True,
            "contradicts TRAIN.PRECISION='fp32'; set TRAIN.PRECISION to fp16 or bf16",
        )
    if cfg.MODEL.ATTN_IMPL not in ("auto", "sdpa", "math"):
        _fail(source, "MODEL.ATTN_IMPL", cfg.MODEL.ATTN_IMPL, "must be auto, sdpa or math")
    if not _is_int(cfg.TRAIN.GRAD_ACCUM_STEPS, 1):
        _fail(source, "TRAIN.GRAD_ACCUM_STEPS", cfg.TRAIN.GRAD_ACCUM_STEPS, "must be an integer >= 1")
    if not _is_int(cfg.TRAIN.OVERFIT_CLIPS, 0):
        _fail(source, "TRAIN.OVERFIT_CLIPS", cfg.TRAIN.OVERFIT_CLIPS, "must be an integer >= 0 (0: off)")
    if cfg.AUG.ORDER not in _AUG_ORDERS:
        _fail(source, "AUG.ORDER", cfg.AUG.ORDER, "must be pyslowfast or crop_first")
    if not 0.0 <= cfg.DATA.MAX_BAD_FRACTION <= 1.0:
        _fail(source, "DATA.MAX_BAD_FRACTION", cfg.DATA.MAX_BAD_FRACTION, "must be in [0, 1]")
    if not _is_int(cfg.DEMO.TOPK, 1):
        _fail(source, "DEMO.TOPK", cfg.DEMO.TOPK, "must be >= 1")
    if not _is_int(cfg.DEMO.STRIDE, 0):
        _fail(source, "DEMO.STRIDE", cfg.DEMO.STRIDE, "must be >= 0")
    if not _is_int(cfg.DEMO.BUFFER_SIZE, 0):
        _fail(source, "DEMO.BUFFER_SIZE", cfg.DEMO.BUFFER_SIZE, "must be >= 0")
    if not cfg.DEMO.STALL_SECONDS > 0:
        _fail(source, "DEMO.STALL_SECONDS", cfg.DEMO.STALL_SECONDS, "must be > 0")


def _check_refused(cfg: CfgNode, source: str) -> None:
    """Keys mvit_video does not implement (``REFUSED_KEYS``) keep their default."""
    defaults = dict(iter_leaves(get_cfg()))
    for key, what_to_do in REFUSED_KEYS.items():
        section, name = key.split(".")
        value = cfg[section][name]
        if value != defaults[key]:
            _fail(source, key, value, f"is not supported by mvit_video: {what_to_do}")


def _check_training(cfg: CfgNode, source: str) -> None:
    """Loss, test-time head, multi-label targets and the initial checkpoint's options."""
    if cfg.MODEL.LOSS_FUNC not in LOSS_FUNCS:
        _fail(source, "MODEL.LOSS_FUNC", cfg.MODEL.LOSS_FUNC, f"must be one of {', '.join(LOSS_FUNCS)}")
    if cfg.MODEL.HEAD_ACT not in HEAD_ACTS:
        _fail(source, "MODEL.HEAD_ACT", cfg.MODEL.HEAD_ACT, f"must be one of {', '.join(HEAD_ACTS)}")
    if cfg.DATA.MULTI_LABEL and cfg.MIXUP.ENABLE:
        _fail(source, "DATA.MULTI_LABEL", True, "cannot be combined with MIXUP.ENABLE (mixup mixes one-hot targets "
              "of single labels); set MIXUP.ENABLE False")  # fmt: skip
    if cfg.DATA.MULTI_LABEL and cfg.DATA.PATH_LABEL_SEPARATOR == ",":
        _fail(source, "DATA.PATH_LABEL_SEPARATOR", ",", "cannot separate paths from DATA.MULTI_LABEL labels, which "
              "are comma-separated; use ' ' or ';'")  # fmt: skip
    if not cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR >= 0.0:
        _fail(source, "TRAIN.KILL_LOSS_EXPLOSION_FACTOR", cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR,
              "must be >= 0 (0 disables the check)")  # fmt: skip
    mult = cfg.SOLVER.BACKBONE_LR_MULT
    if not _is_number(mult) or not 0.0 < mult <= 1.0:
        _fail(source, "SOLVER.BACKBONE_LR_MULT", mult, "must be in (0, 1]: the backbone's lr as a fraction of "
              "SOLVER.BASE_LR, which the classifier keeps (1.0: one lr for all)")  # fmt: skip
    patterns = cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN
    if not all(isinstance(p, str) and p for p in patterns):
        _fail(source, "TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN", patterns, "must be a list of non-empty strings, "
              "e.g. ['backbone.']")  # fmt: skip


def _family_sections() -> dict[str, str]:
    """``MODEL.ARCH`` value -> its config section: MViT's hand-written one and the derived ones."""
    return {"mvit": "MVIT", **{s.arch: name for name, s in derived_sections().items()}}


def _check_family(cfg: CfgNode, source: str) -> None:
    """``MODEL.ARCH`` names a family, and no other family's section holds a setting (it would be ignored)."""
    sections = _family_sections()
    arch = str(cfg.MODEL.ARCH).lower()
    if arch not in sections:
        _fail(source, "MODEL.ARCH", cfg.MODEL.ARCH, f"is not a model family; use one of {sorted(sections)}")
    defaults = get_cfg()
    for other, name in sections.items():
        if other == arch:
            continue
        for key, value in cfg[name].items():
            if value != defaults[name][key]:
                _fail(source, f"{name}.{key}", value, f"is a setting of the {other} family, but MODEL.ARCH={arch!r}: "
                                                      f"remove it, or set MODEL.ARCH {other}")  # fmt: skip


# rules of the MViT section, checked when MODEL.ARCH is mvit
_MVIT_RULES: tuple[Callable[[CfgNode, str], None], ...] = (
    _check_patch,
    _check_input_size,
    _check_architecture,
    _check_multipliers,
    _check_pool_strides,
    _check_pool_kernels,
    _check_rates,
    _check_reversible,
)


def _check_architecture_section(cfg: CfgNode, source: str) -> None:
    """The selected family's section: MViT's rules, or the derived family's dataclass checks its own values."""
    arch = str(cfg.MODEL.ARCH).lower()
    if arch == "mvit":
        for rule in _MVIT_RULES:
            rule(cfg, source)
        return
    name, section = next((n, s) for n, s in derived_sections().items() if s.arch == arch)
    try:
        section.config_type(**dataclass_kwargs(section, cfg[name]))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {name}: {e}") from None


# ------------------------------------------------------------------------------------------ masked pre-training

_MASK_SETTINGS = ("PRETRAIN_DEPTH", "PRED_HOG", "NORM_PRED_PIXEL", "TIME_STRIDE_LOSS", "SCALE_INIT_BY_DEPTH", "MAE_ON",
                  "MAE_RND_MASK", "PER_FRAME_MASKING", "DECODER_EMBED_DIM", "DECODER_DEPTH")
_MAE_ONLY = ("MAE_RND_MASK", "PER_FRAME_MASKING", "DECODER_EMBED_DIM", "DECODER_DEPTH")
_MASKFEAT_ONLY = ("PRETRAIN_DEPTH", "PRED_HOG", "SCALE_INIT_BY_DEPTH")
_MASK_AUG = ("MASK_TUBE", "MASK_FRAMES", "MASK_WINDOW_SIZE", "MASK_RATIO", "MAX_MASK_PATCHES_PER_BLOCK")


def _check_pyslowfast_mask_names(cfg: CfgNode, source: str) -> None:
    """PySlowFast names the pre-training model MODEL.ARCH maskmvit / MODEL_NAME MaskMViT; here MASK.ENABLE does."""
    for key, value in (("MODEL.ARCH", cfg.MODEL.ARCH), ("MODEL.MODEL_NAME", cfg.MODEL.MODEL_NAME)):
        if str(value).lower() == "maskmvit":
            fix = "mvit" if key == "MODEL.ARCH" else "MViT"
            _fail(source, key, value, f"is PySlowFast's name of the MaskFeat model; set {key} {fix} with MASK.ENABLE "
                  "True (the switch that builds MaskMViT here)")  # fmt: skip


def _check_mask_off(cfg: CfgNode, source: str, defaults: CfgNode) -> None:
    """Without MASK.ENABLE no masking key may be set: nothing would read it."""
    if cfg.MODEL.LOSS_FUNC == "multi_mse":
        _fail(source, "MODEL.LOSS_FUNC", "multi_mse", "is the masked pre-training loss; set MASK.ENABLE True, or a "
              "classification loss")  # fmt: skip
    for section, names in (("MASK", _MASK_SETTINGS), ("AUG", ("GEN_MASK_LOADER", *_MASK_AUG))):
        for name in names:
            if cfg[section][name] != defaults[section][name]:
                _fail(source, f"{section}.{name}", cfg[section][name], "is a masked pre-training setting, but "
                      "MASK.ENABLE is False: remove it, or set MASK.ENABLE True")  # fmt: skip


def _feature_grid(cfg: CfgNode, depth: int) -> list[int]:
    """(T, H, W) tokens after block ``depth`` (patch grid divided by the query strides up to it); an MAE's ViT has
    one grid, its tubelets'."""
    if cfg.MASK.MAE_ON:
        patch = cfg.VIT.PATCH_SIZE
        return [cfg.DATA.NUM_FRAMES // cfg.VIT.TUBELET_SIZE, cfg.DATA.TRAIN_CROP_SIZE // patch,
                cfg.DATA.TRAIN_CROP_SIZE // patch]  # fmt: skip
    stride = list(cfg.MVIT.PATCH_STRIDE)
    grid = [cfg.DATA.NUM_FRAMES // stride[0], cfg.DATA.TRAIN_CROP_SIZE // stride[1],
            cfg.DATA.TRAIN_CROP_SIZE // stride[2]]  # fmt: skip
    for layer, *q in cfg.MVIT.POOL_Q_STRIDE:
        if layer <= depth:
            grid = [g // s for g, s in zip(grid, q)]
    return grid


def _check_mask_window(cfg: CfgNode, source: str) -> None:
    """The mask window: the token grid's T, and an H x W that divides the patch grid and every pretrain grid."""
    window = cfg.AUG.MASK_WINDOW_SIZE
    if not (isinstance(window, (list, tuple)) and len(window) == 3 and all(_is_int(v, 1) for v in window)):
        _fail(source, "AUG.MASK_WINDOW_SIZE", window, "must be 3 positive ints [T, H, W]")
    patch = _feature_grid(cfg, -1)
    if cfg.MASK.MAE_ON:
        if list(window) != patch:
            _fail(source, "AUG.MASK_WINDOW_SIZE", window, f"must be the ViT's token grid {patch} (DATA.NUM_FRAMES / "
                  "VIT.TUBELET_SIZE, crop / VIT.PATCH_SIZE): an MAE masks single tokens")  # fmt: skip
        return
    grids = {"the patch-token grid": patch, **{f"block {d}'s token grid": _feature_grid(cfg, d)
                                              for d in cfg.MASK.PRETRAIN_DEPTH}}  # fmt: skip
    if window[0] != patch[0]:
        _fail(source, "AUG.MASK_WINDOW_SIZE", window, f"must have T = {patch[0]}, the token grid's (DATA.NUM_FRAMES / "
              "temporal patch stride)")  # fmt: skip
    for where, grid in grids.items():
        if grid[1] % window[1] or grid[2] % window[2]:
            _fail(source, "AUG.MASK_WINDOW_SIZE", window, f"does not match {where} {grid[1]}x{grid[2]}: its H and W "
                  f"must divide it (each mask cell covers whole tokens)")  # fmt: skip


def _check_pretrain_depth(cfg: CfgNode, source: str) -> None:
    depths = cfg.MASK.PRETRAIN_DEPTH
    ok = bool(depths) and all(_is_int(d, 0) and d < cfg.MVIT.DEPTH for d in depths)
    if not ok or list(depths) != sorted(set(depths)):
        _fail(source, "MASK.PRETRAIN_DEPTH", depths, f"must be increasing block indices below MVIT.DEPTH="
              f"{cfg.MVIT.DEPTH}")  # fmt: skip


def _check_mae(cfg: CfgNode, source: str, defaults: CfgNode) -> None:
    """MASK.MAE_ON: the ViT family, masks of one exact count per clip, no MaskFeat setting."""
    if cfg.MODEL.ARCH != "vit":
        _fail(source, "MASK.MAE_ON", True, f"MAE pre-training is built for MODEL.ARCH vit, not {cfg.MODEL.ARCH!r} (for "
              "mvit use MaskFeat: MASK.MAE_ON False)")  # fmt: skip
    for name in _MASKFEAT_ONLY:
        if cfg.MASK[name] != defaults.MASK[name]:
            _fail(source, f"MASK.{name}", cfg.MASK[name], "is a MaskFeat setting; an MAE (MASK.MAE_ON) reconstructs "
                  "pixels with its decoder: remove it")  # fmt: skip
    if cfg.AUG.MASK_FRAMES or cfg.AUG.MAX_MASK_PATCHES_PER_BLOCK is not None:
        key = "AUG.MASK_FRAMES" if cfg.AUG.MASK_FRAMES else "AUG.MAX_MASK_PATCHES_PER_BLOCK"
        _fail(source, key, cfg[key.split(".")[0]][key.split(".")[1]], "is a MaskFeat masking setting; an MAE masks "
              "tubes (AUG.MASK_TUBE) or random tokens (MASK.MAE_RND_MASK)")  # fmt: skip
    if cfg.AUG.MASK_TUBE == cfg.MASK.MAE_RND_MASK:
        _fail(source, "AUG.MASK_TUBE", cfg.AUG.MASK_TUBE, "an MAE's encoder takes the same number of visible tokens "
              "from every clip: set exactly one of AUG.MASK_TUBE (VideoMAE's tubes) and MASK.MAE_RND_MASK (random "
              "tokens)")  # fmt: skip
    if cfg.MASK.PER_FRAME_MASKING and not cfg.MASK.MAE_RND_MASK:
        _fail(source, "MASK.PER_FRAME_MASKING", True, "draws MASK.MAE_RND_MASK's random tokens per time slice; set "
              "MASK.MAE_RND_MASK True, or remove it")  # fmt: skip
    if cfg.MASK.DECODER_DEPTH < 1 or cfg.MASK.DECODER_EMBED_DIM < 1:
        _fail(source, "MASK.DECODER_DEPTH", cfg.MASK.DECODER_DEPTH, "an MAE needs a decoder: MASK.DECODER_DEPTH >= 1 "
              "blocks of MASK.DECODER_EMBED_DIM >= 1 channels (VideoMAE-B: 4 of 384)")  # fmt: skip


def _check_mask_recipe(cfg: CfgNode, source: str, defaults: CfgNode) -> None:
    """Settings a pre-training run cannot combine with (no labels, no classifier, one mask per clip)."""
    maskfeat = not cfg.MASK.MAE_ON
    refusals = {
        "MODEL.ARCH": (maskfeat and cfg.MODEL.ARCH != "mvit", "MaskFeat pre-training is implemented for mvit; for "
                       "the ViT family set MASK.MAE_ON True (MAE)"),
        "MVIT.PATCH_2D": (maskfeat and cfg.MVIT.PATCH_2D, "image MaskFeat is not implemented; pre-train on clips"),
        "AUG.GEN_MASK_LOADER": (not cfg.AUG.GEN_MASK_LOADER, "MASK.ENABLE needs the loader's masks; set it True"),
        "MODEL.LOSS_FUNC": (cfg.MODEL.LOSS_FUNC != "multi_mse", "masked pre-training regresses its targets; set "
                            "multi_mse"),
        "MIXUP.ENABLE": (cfg.MIXUP.ENABLE, "mixup needs labels; a pre-training run has none: set it False"),
        "AUG.NUM_SAMPLE": (cfg.AUG.NUM_SAMPLE != 1, "one mask per clip: set it 1 for masked pre-training"),
        "TRAIN.OVERFIT_CLIPS": (cfg.TRAIN.OVERFIT_CLIPS != 0, "the sanity check needs labels; set it 0"),
        "TEST.ENABLE": (cfg.TEST.ENABLE, "a pre-training model has no classifier to test; set it False and fine-tune "
                        "from the checkpoint (TRAIN.CHECKPOINT_FILE_PATH)"),
        "AUG.MASK_RATIO": (not 0.0 < cfg.AUG.MASK_RATIO < 1.0, "must be in (0, 1)"),
        "AUG.MASK_FRAMES": (cfg.AUG.MASK_FRAMES and cfg.AUG.MASK_TUBE, "AUG.MASK_TUBE and AUG.MASK_FRAMES are two "
                            "masking kinds; set one"),
    }  # fmt: skip
    for key, (bad, problem) in refusals.items():
        if bad:
            section, name = key.split(".")
            _fail(source, key, cfg[section][name], problem)
    if maskfeat:
        for name in _MAE_ONLY:
            if cfg.MASK[name] != defaults.MASK[name]:
                _fail(source, f"MASK.{name}", cfg.MASK[name], "is an MAE setting; it applies with MASK.MAE_ON True "
                      "(MODEL.ARCH vit): remove it")  # fmt: skip
    if cfg.MASK.PRED_HOG:
        for name in ("NORM_PRED_PIXEL", "TIME_STRIDE_LOSS"):
            if cfg.MASK[name] != defaults.MASK[name]:
                _fail(source, f"MASK.{name}", cfg.MASK[name], "applies to pixel targets, but MASK.PRED_HOG is True; "
                      "remove it")  # fmt: skip
    limit = cfg.AUG.MAX_MASK_PATCHES_PER_BLOCK
    if limit is not None and (cfg.AUG.MASK_TUBE or cfg.AUG.MASK_FRAMES or not _is_int(limit, 5)):
        _fail(source, "AUG.MAX_MASK_PATCHES_PER_BLOCK", limit, "limits cube masking blocks: an int >= 5 (blocks are "
              "at least a fifth of it), with AUG.MASK_TUBE and AUG.MASK_FRAMES False")  # fmt: skip


def _check_hog_cells(cfg: CfgNode, source: str) -> None:
    """HOG targets: every pretrain depth's tokens cover whole 8 x 8 cells."""
    if not cfg.MASK.PRED_HOG:
        return
    for depth in cfg.MASK.PRETRAIN_DEPTH:
        stride = cfg.DATA.TRAIN_CROP_SIZE // _feature_grid(cfg, depth)[2]
        if stride % 8:
            _fail(source, "MASK.PRETRAIN_DEPTH", list(cfg.MASK.PRETRAIN_DEPTH), f"block {depth}'s tokens are "
                  f"{stride} pixels wide, not a multiple of the 8-pixel HOG cell")  # fmt: skip


def _check_masking(cfg: CfgNode, source: str) -> None:
    """MASK.ENABLE (MaskFeat pre-training of MViT, or with MASK.MAE_ON an MAE of the ViT family) and its loader
    masks: consistent, or one line naming the key."""
    defaults = get_cfg()
    if not cfg.MASK.ENABLE:
        _check_mask_off(cfg, source, defaults)
        return
    _check_mask_recipe(cfg, source, defaults)
    if cfg.MASK.MAE_ON:
        _check_mae(cfg, source, defaults)
    else:
        _check_pretrain_depth(cfg, source)
    _check_mask_window(cfg, source)
    _check_hog_cells(cfg, source)


_RULES: tuple[Callable[[CfgNode, str], None], ...] = (
    _check_types,
    _check_pyslowfast_mask_names,
    _check_family,
    _check_refused,
    _check_model,
    _check_architecture_section,
    _check_normalisation,
    _check_testing,
    _check_toolkit,
    _check_training,
    _check_masking,
)


def validate(cfg: CfgNode, source: str = "config") -> CfgNode:
    """Check a config for wrong types and impossible values; the config is not modified.

    Args:
        cfg: A config from ``get_cfg()`` / ``load_config()``, possibly edited in Python.
        source: Name used at the start of error messages (usually the YAML path).

    Returns:
        ``cfg`` itself, so calls can be chained.

    Raises:
        ConfigError: On the first problem found, with a one-line message naming key and value.
    """
    for rule in _RULES:
        rule(cfg, source)
    return cfg
