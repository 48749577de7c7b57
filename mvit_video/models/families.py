"""The model families: what ``MODEL.ARCH`` selects, and how a root config becomes each family's typed config.

A family is a model class, its config dataclass and its YAML section. MViT keeps PySlowFast's hand-written ``MVIT``
section (``build.mvit_config_from_cfg``); every other family's section is derived from its dataclass
(``config/sections.py``), and the fields it shares with the rest of the toolkit come from the root sections
(``ROOT_FIELDS``: classes, input size, channels, head dropout, activation checkpointing, attention kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import ConfigError
from ..config.sections import dataclass_kwargs, register_section

# dataclass field -> (where it comes from, how to read it from a root config)
ROOT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "num_classes": ("MODEL.NUM_CLASSES", lambda cfg: cfg.MODEL.NUM_CLASSES),
    "input_size": ("DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE",
                   lambda cfg: (cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)),
    "in_chans": ("DATA.INPUT_CHANNEL_NUM[0]", lambda cfg: cfg.DATA.INPUT_CHANNEL_NUM[0]),
    "head_dropout": ("MODEL.DROPOUT_RATE", lambda cfg: cfg.MODEL.DROPOUT_RATE),
    "detach_head": ("MODEL.DETACH_FINAL_FC", lambda cfg: cfg.MODEL.DETACH_FINAL_FC),
    "act_checkpoint": ("MODEL.ACT_CHECKPOINT", lambda cfg: cfg.MODEL.ACT_CHECKPOINT),
    "attention": ("MODEL.ATTN_IMPL", lambda cfg: cfg.MODEL.ATTN_IMPL),
}  # fmt: skip


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        arch: its ``MODEL.ARCH`` name.
        model_type: the ``nn.Module`` class, built from one ``config_type`` argument.
        config_type: the typed config dataclass.
        section: its config section (``MVIT``, ``VIT``, ...).
        from_cfg: root config -> ``config_type`` instance.
        convert: (loaded checkpoint, format or None) -> (state dict under the family's names, detected format).
        head_keys: the classifier's tensors (dropped when the class count differs and a new head is asked for).
    """

    arch: str
    model_type: type[nn.Module]
    config_type: type
    section: str
    from_cfg: Callable[[Any], Any]
    convert: Callable[[Any, str | None], tuple[dict, str]]
    head_keys: tuple[str, ...]

    def build(self, config: Any) -> nn.Module:
        return self.model_type(config)


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.arch] = family
    return family


def derived_family(arch: str, model_type: type[nn.Module], config_type: type, section: str,
                   convert: Callable[[Any, str | None], tuple[dict, str]], head_keys: tuple[str, ...]) -> Family:  # fmt: skip
    """Registers a family whose section mirrors ``config_type`` (every field but the ``ROOT_FIELDS`` it has)."""
    field_names = {f.name for f in dataclasses.fields(config_type)}
    from_root = {name: where for name, (where, _) in ROOT_FIELDS.items() if name in field_names}
    derived = register_section(section, config_type, from_root, arch)

    def from_cfg(cfg) -> Any:
        kwargs = dataclass_kwargs(derived, cfg[section])
        kwargs.update({name: ROOT_FIELDS[name][1](cfg) for name in from_root})
        try:
            return config_type(**kwargs)
        except ValueError as e:
            raise ConfigError(f"{section}: {e}") from None

    return register_family(Family(arch, model_type, config_type, section, from_cfg, convert, head_keys))


def get_family(arch: str) -> Family:
    """The family ``MODEL.ARCH`` names; a one-line ``ConfigError`` for an unknown one."""
    family = FAMILIES.get(str(arch).lower())
    if family is None:
        raise ConfigError(f"MODEL.ARCH={arch!r} is not a model family of mvit_video; use one of {sorted(FAMILIES)}")
    return family


def family_of(config: Any) -> Family:
    """The family whose config dataclass ``config`` is."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_type):
            return family
    raise TypeError(f"{type(config).__name__} is not the config of a registered model family")
