"""Read YAML configs (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides into the schema.

``load_config(path, opts)`` = defaults <- base chain <- file <- opts, then ``validate``, then
freeze. Unknown keys are errors with suggestions; PySlowFast keys this toolkit does not use are
dropped with one warning.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from fvcore.common.config import CfgNode
from iopath.common.file_io import g_pathmgr

from .defaults import IGNORED_SLOWFAST_KEYS, UNSUPPORTED_WHEN_SET, get_cfg
from .validation import (
    ConfigError,
    coerce_value,
    decode_literal,
    iter_leaves,
    short_repr,
    unknown_key_message,
    validate,
)

__all__ = ["IgnoredConfigKeyWarning", "load_config", "merge_opts", "merge_yaml"]

_BASE_KEY = "_BASE_"


@functools.cache
def _default_leaves() -> dict[str, Any]:
    """The schema's default of every key: expected types come from it, not from values merged earlier (built on
    first use, once the model families have registered their sections)."""
    return dict(iter_leaves(get_cfg()))


class IgnoredConfigKeyWarning(UserWarning):
    """Warned once per ``load_config`` call when PySlowFast keys were dropped."""


class _Merger:
    """Merges mappings into a config, collecting ignored PySlowFast keys on the way."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        self.ignored: list[str] = []
        self.valid_keys = [k for k, _ in iter_leaves(cfg)] + [k for k, _ in _iter_nodes(cfg)]

    def merge_mapping(self, node: CfgNode, data: Mapping, prefix: str, source: str) -> None:
        """Merge a YAML mapping into ``node`` (the section at ``prefix``)."""
        for raw_key, value in data.items():
            self.set_key(node, f"{prefix}{raw_key}", value, source)

    def set_key(self, node: CfgNode, full_key: str, value: Any, source: str) -> None:
        """Set one key of ``node``; ``full_key`` ends with that key's name."""
        if _is_ignored(full_key):
            self._ignore(full_key, value, source)
            return
        name = full_key.rsplit(".", 1)[-1]
        if name not in node:
            raise ConfigError(unknown_key_message(source, full_key, self.valid_keys))
        current = node[name]
        if isinstance(current, CfgNode):
            self._merge_section(current, full_key, value, source)
        else:
            node[name] = coerce_value(value, _default_leaves()[full_key], full_key, source)

    def _merge_section(self, node: CfgNode, full_key: str, value: Any, source: str) -> None:
        if value is None:  # an empty section (`TEST:` with nothing under it)
            return
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{source}: {full_key}={short_repr(value)} must be a section "
                f"(indented KEY: VALUE lines), not a value"
            )
        self.merge_mapping(node, value, f"{full_key}.", source)

    def _ignore(self, full_key: str, value: Any, source: str) -> None:
        for key, leaf in _flatten(full_key, value):
            leaf = decode_literal(leaf) if isinstance(leaf, str) else leaf
            if key in UNSUPPORTED_WHEN_SET and leaf:
                raise ConfigError(
                    f"{source}: {key}={short_repr(leaf)} asks for "
                    f"{UNSUPPORTED_WHEN_SET[key]}, a PySlowFast feature mvit_video does not "
                    f"implement; remove the key"
                )
            if key not in self.ignored:
                self.ignored.append(key)


def _iter_nodes(node: CfgNode, prefix: str = "") -> Iterator[tuple[str, CfgNode]]:
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield f"{prefix}{key}", value
            yield from _iter_nodes(value, f"{prefix}{key}.")


def _is_ignored(full_key: str) -> bool:
    parts = full_key.split(".")
    return any(".".join(parts[:i]) in IGNORED_SLOWFAST_KEYS for i in range(1, len(parts) + 1))


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """Leaf ``(key, value)`` pairs under ``prefix`` in a YAML value."""
    if isinstance(value, Mapping) and value:
        return [pair for k, v in value.items() for pair in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


# --------------------------------------------------------------------------------------------
# YAML files
# --------------------------------------------------------------------------------------------


def _read_yaml(path: str) -> dict:
    """Parse one YAML file into a dict (an empty file is an empty dict)."""
    if not g_pathmgr.exists(path):
        raise ConfigError(f"{path}: config file not found; check the path")
    try:
        with g_pathmgr.open(path, "r") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e}); check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = e.problem or e.context
        raise ConfigError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be KEY: VALUE lines, not a {type(data).__name__}"
        )
    return data


def _resolve_base(base: Any, path: str) -> str:
    """Path of a ``_BASE_`` entry, relative to the file that names it."""
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: _BASE_={short_repr(base)} must be a path to a YAML file")
    base = os.path.expanduser(base)
    if os.path.isabs(base) or "://" in base:
        return base
    return os.path.join(os.path.dirname(path), base)


def _merge_file(merger: _Merger, path: str, chain: tuple[str, ...]) -> None:
    """Merge ``path`` into ``merger.cfg`` after its ``_BASE_`` chain."""
    if path in chain:
        cycle = " -> ".join((*chain, path))
        raise ConfigError(f"{path}: _BASE_ cycle ({cycle}); remove one of the _BASE_ keys")
    data = _read_yaml(path)
    if _BASE_KEY in data:
        base = _resolve_base(data.pop(_BASE_KEY), path)
        if not g_pathmgr.exists(base):
            raise ConfigError(f"{path}: _BASE_ file {base} not found; check the path")
        _merge_file(merger, base, (*chain, path))
    merger.merge_mapping(merger.cfg, data, "", path)


def merge_yaml(cfg: CfgNode, path: str) -> list[str]:
    """Merge a YAML file (and its ``_BASE_`` chain) into an unfrozen config, in place.

    Args:
        cfg: Config to update, e.g. from ``get_cfg()``.
        path: YAML file; ``_BASE_`` paths inside are relative to it.

    Returns:
        Full names of the PySlowFast keys that were ignored.

    Raises:
        ConfigError: Missing file, YAML syntax error, unknown key or wrong type.
    """
    merger = _Merger(cfg)
    _merge_file(merger, os.fspath(path), ())
    return merger.ignored


def merge_opts(cfg: CfgNode, opts: Sequence[Any], source: str = "opts") -> list[str]:
    """Apply ``[KEY, VALUE, KEY, VALUE, ...]`` overrides (like PySlowFast's ``--opts``).

    String values are read as Python literals where the key is not a string
    (``"1e-4"``, ``"[3, 7, 7]"``, ``"True"``).

    Args:
        cfg: Config to update in place (unfrozen).
        opts: Alternating full dotted keys and values.
        source: Name used in error messages.

    Returns:
        Full names of the PySlowFast keys that were ignored.

    Raises:
        ConfigError: Odd number of items, unknown key or wrong type.
    """
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(
            f"{source}: overrides must be KEY VALUE pairs, got {len(opts)} items "
            f"{short_repr(opts)}; add the missing value"
        )
    merger = _Merger(cfg)
    for key, value in zip(opts[0::2], opts[1::2], strict=True):
        key = str(key)
        parent = cfg if _is_ignored(key) else _parent_node(cfg, key)
        if parent is None:
            raise ConfigError(unknown_key_message(source, key, merger.valid_keys))
        merger.set_key(parent, key, value, source)
    return merger.ignored


def _parent_node(cfg: CfgNode, full_key: str) -> CfgNode | None:
    """The section holding ``full_key`` ("MVIT.DEPTH" -> cfg.MVIT), None if there is none."""
    node = cfg
    for part in full_key.split(".")[:-1]:
        node = node.get(part)
        if not isinstance(node, CfgNode):
            return None
    return node


def _warn_ignored(path: str, ignored: list[str]) -> None:
    if ignored:
        warnings.warn(
            f"{path}: ignored PySlowFast keys not used by mvit_video: {', '.join(ignored)}",
            IgnoredConfigKeyWarning,
            stacklevel=3,
        )


def load_config(path: str | os.PathLike, opts: Sequence[Any] | None = None) -> CfgNode:
    """Load a YAML config over the defaults, apply overrides, validate and freeze it.

    Args:
        path: YAML file. A top-level ``_BASE_: other.yaml`` is loaded first (relative to this
            file; bases can chain).
        opts: Optional ``[KEY, VALUE, ...]`` overrides applied after the file, e.g.
            ``["MVIT.DEPTH", "24", "SOLVER.BASE_LR", "1e-4"]``.

    Returns:
        A frozen ``CfgNode``.

    Raises:
        ConfigError: One line naming file, key and value for a missing file, YAML syntax error,
            unknown key, wrong type or impossible value. PySlowFast keys this toolkit does not
            use are not errors: they are dropped with one ``IgnoredConfigKeyWarning``.
    """
    path = os.fspath(path)
    cfg = get_cfg()
    ignored = merge_yaml(cfg, path)
    if opts:
        ignored += [k for k in merge_opts(cfg, opts) if k not in ignored]
    _apply_aliases(cfg)
    validate(cfg, source=f"{path} + opts" if opts else path)
    _warn_ignored(path, ignored)
    cfg.freeze()
    return cfg


def _apply_aliases(cfg: CfgNode) -> None:
    """PySlowFast's ``TRAIN.MIXED_PRECISION: True`` means fp16 autocast."""
    if cfg.TRAIN.MIXED_PRECISION and cfg.TRAIN.PRECISION == "fp32":
        cfg.TRAIN.PRECISION = "fp16"
