"""The model families: what ``MODEL.ARCH`` selects.

A family is a model class, its config dataclass, its YAML section, its checkpoint converter and its classifier's
tensor names. ``build.py`` registers them (it is the one place that turns a root config into a family's config):
MViT keeps PySlowFast's hand-written ``MVIT`` section, every other family's section is derived from its dataclass
(``config/sections.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import ConfigError

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
        pretraining_keys: name prefixes of pre-training parts (an MAE's decoder, its mask token) that a model
            without them drops from a checkpoint, reported in ``LoadReport.dropped``.
    """

    arch: str
    model_type: type[nn.Module]
    config_type: type
    section: str
    from_cfg: Callable[[Any], Any]
    convert: Callable[[Any, str | None], tuple[dict, str]]
    head_keys: tuple[str, ...]
    pretraining_keys: tuple[str, ...] = ()

    def build(self, config: Any) -> nn.Module:
        return VARIANT_TYPES.get(type(config), self.model_type)(config)


FAMILIES: dict[str, Family] = {}
# config dataclasses that extend a family's and build another class of it (MAEConfig -> MaskedAutoencoder)
VARIANT_TYPES: dict[type, type[nn.Module]] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.arch] = family
    return family


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
