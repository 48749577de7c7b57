"""Config sections derived from a model family's typed config dataclass (``VIT:`` from ``ViTConfig``, ...).

A family registers its dataclass once (``register_section``); the schema then has a section of that name whose keys
are the dataclass's field names in upper case with the dataclass's defaults (tuples written as lists), except the
fields the family takes from other sections (``from_root``: the class count from ``MODEL.NUM_CLASSES``, the input
size from ``DATA``, ...). Adding a family therefore adds no hand-written list of keys, and ``dataclass_kwargs`` turns
a loaded section back into the dataclass's arguments.

Families register when ``mvit_video.models`` is imported; ``derived_sections`` imports it on first use, so the
schema is complete whoever asks for it first. (The dependency runs from models to config: this module only looks
the registered dataclasses up.)
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fvcore.common.config import CfgNode

__all__ = ["DerivedSection", "dataclass_kwargs", "derived_sections", "register_section"]

_SECTIONS: dict[str, DerivedSection] = {}
_FAMILIES_MODULE = "mvit_video.models"


@dataclass(frozen=True)
class DerivedSection:
    """A config section that mirrors a dataclass.

    Attributes:
        name: the section's name (``"VIT"``).
        config_type: the dataclass.
        from_root: fields not in the section, each with the root key it comes from (for documentation).
        arch: the ``MODEL.ARCH`` value that uses this section.
    """

    name: str
    config_type: type
    from_root: Mapping[str, str]
    arch: str

    def fields(self) -> list[dataclasses.Field]:
        """The dataclass fields that are keys of this section."""
        return [f for f in dataclasses.fields(self.config_type) if f.init and f.name not in self.from_root]

    def key(self, field_name: str) -> str:
        return field_name.upper()


def register_section(name: str, config_type: type, from_root: Mapping[str, str], arch: str) -> DerivedSection:
    """Adds (or replaces) the section ``name`` mirroring ``config_type``, used by ``MODEL.ARCH`` ``arch``."""
    if not dataclasses.is_dataclass(config_type):
        raise TypeError(f"register_section: {config_type!r} is not a dataclass")
    section = DerivedSection(name, config_type, dict(from_root), arch)
    _SECTIONS[name] = section
    return section


def derived_sections() -> dict[str, DerivedSection]:
    """Every registered section, by name (importing the model families first)."""
    importlib.import_module(_FAMILIES_MODULE)
    return dict(_SECTIONS)


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"field {field.name} has no default: every field of a config dataclass needs one")


def _as_yaml(value: Any) -> Any:
    """Tuples become lists (recursively), as YAML and yacs write them."""
    if isinstance(value, (tuple, list)):
        return [_as_yaml(v) for v in value]
    return value


def section_node(section: DerivedSection) -> CfgNode:
    """The section's keys with the dataclass's defaults."""
    node = CfgNode()
    for field in section.fields():
        node[section.key(field.name)] = _as_yaml(_field_default(field))
    return node


def _hint(section: DerivedSection, field_name: str) -> Any:
    return typing.get_type_hints(section.config_type)[field_name]


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def nullable_types() -> dict[str, type]:
    """Expected types of the derived keys whose default is None (None stays allowed): ``{"VIT.KEY": type}``."""
    out = {}
    for section in derived_sections().values():
        for field in section.fields():
            if _field_default(field) is None:
                hint, _ = _strip_optional(_hint(section, field.name))
                origin = typing.get_origin(hint) or hint
                out[f"{section.name}.{section.key(field.name)}"] = list if origin in (tuple, list) else origin
    return out


def _as_field_value(value: Any, hint: Any) -> Any:
    """A YAML value as the field's type: lists become tuples where the field is a tuple (recursively)."""
    hint, optional = _strip_optional(hint)
    if value is None and optional:
        return None
    origin = typing.get_origin(hint) or hint
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis or len(set(args)) == 1) else Any
        return tuple(_as_field_value(v, inner) for v in value)
    return value


def dataclass_kwargs(section: DerivedSection, node: CfgNode) -> dict[str, Any]:
    """The dataclass arguments a loaded section holds (every field of ``section.fields()``)."""
    return {f.name: _as_field_value(node[section.key(f.name)], _hint(section, f.name)) for f in section.fields()}
