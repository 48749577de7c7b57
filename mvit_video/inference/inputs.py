"""The videos a batch tool reads: one file, every video under a folder, or the rows of a CSV (labels ignored).

Each video gets an ``id``: its path relative to the folder (or the CSV's folder, or ``path_prefix``) without the
extension, or its file name when it lies elsewhere. Outputs are named by it, so two videos with one id are refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg")
_LABEL = re.compile(r"-?\d+(,-?\d+)*")


class InputListError(UserError, ValueError):
    """An input that lists no videos, a missing CSV or folder, or two videos with one output name; one line."""


@dataclass(frozen=True)
class VideoItem:
    """One input video: its path and the id its outputs are named by."""

    path: str
    id: str


def _id(path: str, root: str) -> str:
    relative = os.path.relpath(path, root)
    if relative.startswith(os.pardir) or os.path.isabs(relative):
        relative = os.path.basename(path)
    return os.path.splitext(relative)[0].replace(os.sep, "/")


def _csv_paths(csv_path: str, separator: str | None) -> list[str]:
    """PySlowFast split rows (``path label``), or one path per row; a trailing integer label is dropped."""
    paths = []
    with open(csv_path, encoding="utf-8") as f:
        for line in f:
            row = line.strip()
            if not row:
                continue
            for sep in (separator,) if separator else (" ", ",", "\t"):
                path, found, label = row.rpartition(sep)
                if found and path.strip() and _LABEL.fullmatch(label.strip()):
                    row = path.strip()
                    break
            paths.append(row)
    return paths


def list_videos(source: str, path_prefix: str | None = None, separator: str | None = None) -> list[VideoItem]:
    """The videos of a file, a folder (searched recursively for ``VIDEO_EXTENSIONS``) or a ``.csv``/``.txt`` list.

    Args:
        source: the input.
        path_prefix: joined in front of a list's relative paths (``DATA.PATH_PREFIX``); default the list's folder.
        separator: between path and label in a list (default: a space, a comma or a tab before an integer label).

    Raises:
        InputListError: nothing to read, or two videos with one id.
    """
    if os.path.isdir(source):
        root = source
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(source) for f in files
                       if f.lower().endswith(VIDEO_EXTENSIONS))  # fmt: skip
        if not paths:
            raise InputListError(
                f"{source} holds no video ({', '.join(VIDEO_EXTENSIONS)}); give a file, a folder or a CSV"
            )
    elif source.lower().endswith((".csv", ".txt")):
        if not os.path.isfile(source):
            raise InputListError(f"video list {source} does not exist")
        root = path_prefix or os.path.dirname(os.path.abspath(source))
        paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in _csv_paths(source, separator)]
        if not paths:
            raise InputListError(f"video list {source} lists no video")
    elif os.path.isfile(source):
        root, paths = os.path.dirname(os.path.abspath(source)), [source]
    else:
        raise InputListError(f"input {source} does not exist; give a video file, a folder or a CSV")
    items = [VideoItem(path, _id(os.path.abspath(path), os.path.abspath(root))) for path in paths]
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise InputListError(f"{seen[item.id]} and {item.path} would write the same outputs ({item.id}); "
                                 "list videos with distinct names or paths")  # fmt: skip
        seen[item.id] = item.path
    return items
