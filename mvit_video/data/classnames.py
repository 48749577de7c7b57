"""Class-name lists in the label order of the official checkpoints (package data under ``classnames/``).

- ``kinetics400``: the 400 official Kinetics-400 names, alphabetical (= torchvision's ``_KINETICS400_CATEGORIES``).
- ``kinetics600`` / ``kinetics700``: the official names of the annotation CSVs, alphabetical.
- ``ssv2``: the 174 Something-Something v2 templates in the index order of ``something-something-v2-labels.json``.
"""

from __future__ import annotations

import json
import os
from importlib import resources

from ..errors import UserError

BUILTIN_CLASSNAMES = ("kinetics400", "kinetics600", "kinetics700", "ssv2")
_ALIASES = {
    "k400": "kinetics400",
    "kinetics-400": "kinetics400",
    "kinetics_400": "kinetics400",
    "k600": "kinetics600",
    "kinetics-600": "kinetics600",
    "kinetics_600": "kinetics600",
    "k700": "kinetics700",
    "kinetics-700": "kinetics700",
    "kinetics_700": "kinetics700",
    "kinetics700-2020": "kinetics700",
    "kinetics700_2020": "kinetics700",
    "k700-2020": "kinetics700",
    "ssv2": "ssv2",
    "sthv2": "ssv2",
    "something-something-v2": "ssv2",
    "somethingv2": "ssv2",
}


class ClassNamesError(UserError, ValueError):
    """A class-name list that cannot be found or read; the message is one line."""


def builtin_classnames_name(name: str) -> str | None:
    """The canonical built-in list name for ``name`` or one of its aliases (case-insensitive), else None."""
    key = name.strip().lower()
    return key if key in BUILTIN_CLASSNAMES else _ALIASES.get(key)


def load_classnames(name_or_path: str | os.PathLike) -> list[str]:
    """Class names in label order.

    Args:
        name_or_path: a built-in list (``kinetics400``/``k400``, ``kinetics600``/``k600``, ``kinetics700``/``k700``,
            ``ssv2``), or a file: ``.json`` as ``{name: index}`` (e.g. ``something-something-v2-labels.json``) or
            a list of names; any other file as text with one name per line.

    Raises:
        ClassNamesError: unknown name, missing file, or a file that is not a valid list.
    """
    text = os.fspath(name_or_path)
    builtin = builtin_classnames_name(text)
    if builtin is not None and not os.path.exists(text):
        data = resources.files(__package__).joinpath("classnames", f"{builtin}.txt").read_text(encoding="utf-8")
        return _parse_lines(data, builtin)
    if not os.path.isfile(text):
        raise ClassNamesError(
            f"class-name list {text!r} is neither a file nor one of {', '.join(BUILTIN_CLASSNAMES)} "
            "(aliases k400, k600, k700, sthv2)"
        )
    with open(text, encoding="utf-8") as f:
        data = f.read()
    return _parse_json(data, text) if text.lower().endswith(".json") else _parse_lines(data, text)


def _parse_lines(data: str, source: str) -> list[str]:
    names = [line.strip() for line in data.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ClassNamesError(f"class-name file {source} is empty; write one class name per line")
    if "" in names:
        raise ClassNamesError(f"class-name file {source} has a blank line at line {names.index('') + 1}")
    return _unique(names, source)


def _parse_json(data: str, source: str) -> list[str]:
    try:
        content = json.loads(data)
    except json.JSONDecodeError as e:
        raise ClassNamesError(f"class-name file {source} is not valid JSON: {e}") from None
    if isinstance(content, list) and content and all(isinstance(n, str) for n in content):
        return _unique(content, source)
    if not isinstance(content, dict) or not content:
        raise ClassNamesError(f"class-name file {source} must hold a JSON object {{name: index}} or a list of names")
    try:
        by_index = {int(index): str(name) for name, index in content.items()}
    except (TypeError, ValueError):
        raise ClassNamesError(f"class-name file {source}: every value must be an integer index") from None
    if sorted(by_index) != list(range(len(content))):
        raise ClassNamesError(f"class-name file {source}: indices must be 0..{len(content) - 1}, each once")
    return [by_index[i] for i in range(len(content))]


def _unique(names: list[str], source: str) -> list[str]:
    seen = set()
    for name in names:
        if name in seen:
            raise ClassNamesError(f"class-name file {source} lists {name!r} twice")
        seen.add(name)
    return list(names)
