"""Dataset split files: PySlowFast CSVs (``path label`` per line) and Something-Something v2 JSON annotations."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Optional

from iopath.common.file_io import g_pathmgr

from ..errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset description that cannot be used (missing or malformed files); the message is one line."""


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video of a split: a class index, or a tuple of them for multi-label data."""

    path: str
    label: int | tuple[int, ...]


def read_csv_split(
    csv_path: str, path_prefix: str = "", separator: str = " ", multi_label: bool = False,
    allow_unlabeled: bool = False,
) -> list[VideoRecord]:
    """Reads a PySlowFast split file: one ``path<separator>label`` per line.

    Args:
        csv_path: the split file (e.g. ``DATA.PATH_TO_DATA_DIR/train.csv``).
        path_prefix: joined in front of every relative path (``DATA.PATH_PREFIX``).
        separator: between path and label (``DATA.PATH_LABEL_SEPARATOR``); paths may contain it, the label is
            the text after its last occurrence.
        multi_label: the label is a comma-separated list of classes (``path 3,17,42``; ``DATA.MULTI_LABEL``);
            records then hold tuples of class indices.
        allow_unlabeled: a row may be a bare path (pre-training needs no labels); its label is -1. A row with a
            label keeps it.

    Raises:
        DatasetError: the file is missing or a row is malformed (file, line number and row in the message).
    """
    if not g_pathmgr.exists(csv_path):
        raise DatasetError(f"split file not found: {csv_path}; check DATA.PATH_TO_DATA_DIR")
    records = []
    with g_pathmgr.open(csv_path, "r") as f:
        for line_no, line in enumerate(f, start=1):
            row = line.strip()
            if not row:
                continue
            path, sep, label = row.rpartition(separator)
            if allow_unlabeled and not (sep and re.fullmatch(r"-?\d+(,-?\d+)*", label.strip())):
                records.append(VideoRecord(os.path.join(path_prefix, row), -1))
                continue
            pattern = r"-?\d+(,-?\d+)*" if multi_label else r"-?\d+"
            if not sep or not path.strip() or not re.fullmatch(pattern, label.strip()):
                expected = "comma-separated integer labels" if multi_label else "integer label"
                raise DatasetError(
                    f"{csv_path}:{line_no}: malformed row {row!r}; expected '<path>{separator}<{expected}>'"
                )
            labels = tuple(int(v) for v in label.split(",")) if multi_label else int(label)
            records.append(VideoRecord(os.path.join(path_prefix, path.strip()), labels))
    if not records:
        raise DatasetError(f"{csv_path} lists no videos")
    return records


def _ssv2_template_key(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def read_ssv2_split(
    annotation_json: str, labels_json: str, video_dir: str, extension: str = ".webm"
) -> list[VideoRecord]:
    """Reads Something-Something v2 annotations (``[{"id", "template", ...}]``) with the label-name JSON.

    Args:
        annotation_json: e.g. ``something-something-v2-train.json``.
        labels_json: ``something-something-v2-labels.json`` ({template text: index}).
        video_dir: folder of ``<id>.webm`` videos.
        extension: video file suffix.
    """
    for path in (annotation_json, labels_json):
        if not g_pathmgr.exists(path):
            raise DatasetError(f"SSv2 annotation file not found: {path}; check DATA.PATH_TO_DATA_DIR")
    with g_pathmgr.open(labels_json, "r") as f:
        label_ids = {name: int(index) for name, index in json.load(f).items()}
    with g_pathmgr.open(annotation_json, "r") as f:
        entries = json.load(f)
    records = []
    for n, entry in enumerate(entries):
        template = entry.get("template")
        key = _ssv2_template_key(template) if template is not None else None
        if key not in label_ids:
            raise DatasetError(f"{annotation_json}: entry {n} (id {entry.get('id')}) has unknown template {template!r}")
        records.append(VideoRecord(os.path.join(video_dir, f"{entry['id']}{extension}"), label_ids[key]))
    return records


def check_labels(records: list[VideoRecord], num_classes: int, source: str) -> None:
    """Every label (each of a multi-label record's) must index a class of the model."""
    for record in records:
        labels = record.label if isinstance(record.label, tuple) else (record.label,)
        bad = next((label for label in labels if not 0 <= label < num_classes), None)
        if bad is not None:
            raise DatasetError(
                f"{source}: label {bad} of {record.path} is outside 0..{num_classes - 1}; "
                "check MODEL.NUM_CLASSES and the split file"
            )


def find_missing(records: list[VideoRecord], limit: Optional[int] = None) -> list[VideoRecord]:
    """Records whose file does not exist (checked up to ``limit`` records)."""
    subset = records if limit is None else records[:limit]
    return [r for r in subset if not os.path.exists(r.path)]
