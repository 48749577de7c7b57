"""Stratified train/val/test split CSVs from a folder-per-class tree of videos.

Input: ``ROOT/<class name>/**/<video>`` (any of ``prepare.VIDEO_EXTENSIONS``; hidden files and folders skipped).
Classes are the sub-folders of ``ROOT`` in sorted order (labels 0..K-1, written to ``classnames.txt``). Every video is
checked with ``verify.verify_files`` first (the loader's reader; its journal makes a rerun quick), and files of the
dropped kinds are left out and listed in ``splits_report.json``.

Each class's usable videos (sorted by path) are shuffled with a generator seeded by ``seed`` and the class name, then
cut into ``val`` and ``test`` fractions (rounded, at least one video where the fraction is above zero) and the rest
for training: the same tree and seed give byte-identical files, and adding a class leaves the others' splits alone.
Rows are ``<path relative to ROOT> <label>`` (set ``DATA.PATH_PREFIX`` to ``ROOT``), or absolute paths.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .prepare import VIDEO_EXTENSIONS
from .verify import JOURNAL_FILE, VerifySettings, verify_files

SPLIT_NAMES = ("train", "val", "test")
REPORT_FILE = "splits_report.json"
CLASSNAMES_FILE = "classnames.txt"


class SplitError(UserError, ValueError):
    """A folder tree or split request that cannot give the splits asked for; the message is one line."""


def find_class_videos(root: str | os.PathLike) -> dict[str, list[str]]:
    """{class name: sorted video paths} of a folder-per-class tree (class folders in sorted order).

    Raises:
        SplitError: no such folder, no class sub-folders, or a class folder without videos.
    """
    root = Path(root)
    if not root.is_dir():
        raise SplitError(f"video folder not found: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SplitError(f"{root} has no class sub-folders; expected {root}/<class name>/<video files>")
    found = {}
    for folder in classes:
        videos = sorted(
            str(path) for path in folder.rglob("*")
            if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )  # fmt: skip
        if not videos:
            raise SplitError(f"class folder {folder} holds no videos ({', '.join(VIDEO_EXTENSIONS)}); add some or "
                             "move the folder out of the tree")  # fmt: skip
        found[folder.name] = videos
    return found


def split_counts(num_videos: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) sizes of one class: val and test rounded, at least one where asked for."""
    sizes = [max(1, round(num_videos * f)) if f > 0 else 0 for f in (val, test)]
    while num_videos - sum(sizes) < 1 and max(sizes) > 1:  # rounding up left training nothing
        sizes[sizes.index(max(sizes))] -= 1
    return num_videos - sum(sizes), sizes[0], sizes[1]


def _check_ratios(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SplitError(f"--val {val} and --test {test} must be fractions in [0, 1) with val + test < 1 (train "
                         "gets the rest)")  # fmt: skip


def assign_splits(videos: dict[str, list[str]], val: float, test: float, seed: int) -> dict[str, list[tuple[str, int]]]:
    """{split: [(path, label)]}: each class shuffled (seed, class name) and cut by ``split_counts``.

    Raises:
        SplitError: a class with too few videos to give every requested split one and keep one for training.
    """
    _check_ratios(val, test)
    out: dict[str, list[tuple[str, int]]] = {name: [] for name in SPLIT_NAMES}
    needed = 1 + (val > 0) + (test > 0)
    small = {name: len(paths) for name, paths in videos.items() if len(paths) < needed}
    if small:
        listed = ", ".join(f"{name!r} ({n})" for name, n in list(small.items())[:3])
        raise SplitError(
            f"{len(small)} class(es) have fewer than {needed} usable videos, the least --val {val} --test {test} "
            f"need (one per split): {listed}{', ...' if len(small) > 3 else ''}; add videos, or set --test 0 / --val 0"
        )
    for label, (name, paths) in enumerate(videos.items()):
        order = list(paths)
        random.Random(f"{seed}-{name}").shuffle(order)
        n_train, n_val, _ = split_counts(len(order), val, test)
        for split, part in zip(
            SPLIT_NAMES, (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
        ):
            out[split] += [(path, label) for path in sorted(part)]
    return out


@dataclass
class SplitsReport:
    """What ``make_splits`` wrote."""

    root: str
    out_dir: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> videos
    csv: dict[str, str]
    classnames: str
    left_out: list[dict] = field(default_factory=list)  # {"path", "kind", "reason"}
    seconds: float = 0.0
    report_path: str = ""


def _left_out(videos: dict[str, list[str]], settings: VerifySettings, workers: int, out: Path, progress: bool):
    result = verify_files([p for paths in videos.values() for p in paths], settings, workers, out / JOURNAL_FILE,
                          progress)  # fmt: skip
    left_out = [{"path": p, "kind": result.kind(p), "reason": result.problems[p][0][1]}
                for p in result.paths if result.dropped(p)]  # fmt: skip
    dropped = {entry["path"] for entry in left_out}
    usable = {name: [p for p in paths if p not in dropped] for name, paths in videos.items()}
    return usable, left_out


def _write(out: Path, splits, classes: list[str], root: Path, absolute: bool) -> dict[str, str]:
    (out / CLASSNAMES_FILE).write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")
    written = {}
    for split, rows in splits.items():
        if not rows:
            continue
        shown = (p if absolute else os.path.relpath(p, root) for p, _ in rows)
        path = out / f"{split}.csv"
        path.write_text("".join(f"{p} {label}\n" for p, (_, label) in zip(shown, rows)), encoding="utf-8")
        written[split] = str(path)
    return written


def make_splits(root: str | os.PathLike, out_dir: str | os.PathLike, val: float = 0.1, test: float = 0.1,
                seed: int = 0, settings: VerifySettings = VerifySettings(), workers: int = 1, absolute: bool = False,
                progress: bool = False) -> SplitsReport:  # fmt: skip
    """Writes ``{train,val,test}.csv`` (splits with a zero fraction are not written), ``classnames.txt`` and
    ``splits_report.json`` for a folder-per-class tree.

    Args:
        root: the tree (``ROOT/<class>/**/<video>``).
        out_dir: output folder (created); use it as ``DATA.PATH_TO_DATA_DIR`` and ``root`` as ``DATA.PATH_PREFIX``.
        val, test: fractions of each class's usable videos; train gets the rest.
        seed: the shuffle's seed.
        settings: the verification (clip length, crop, back-end, kinds dropped).
        workers: decoding processes for the verification.
        absolute: write absolute paths instead of paths relative to ``root``.
        progress: a progress bar while verifying.

    Raises:
        SplitError: bad fractions, an empty tree or class, or a class too small for the splits, before any output.
    """
    begin = time.perf_counter()
    _check_ratios(val, test)
    root, out = Path(root).resolve(), Path(out_dir)
    videos = find_class_videos(root)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SplitError(f"cannot create output folder {out}: {e.strerror or e}") from None
    usable, left_out = _left_out(videos, settings, workers, out, progress)
    splits = assign_splits(usable, val, test, seed)
    classes = list(videos)
    report = SplitsReport(
        root=str(root), out_dir=str(out), classes=classes,
        counts={s: {c: sum(1 for _, label in rows if label == k) for k, c in enumerate(classes)}
                for s, rows in splits.items() if rows},
        csv=_write(out, splits, classes, root, absolute), classnames=str(out / CLASSNAMES_FILE), left_out=left_out,
    )  # fmt: skip
    report.seconds = round(time.perf_counter() - begin, 2)
    report.report_path = str(out / REPORT_FILE)
    data = {k: v for k, v in report.__dict__.items() if k != "seconds"}  # the report is reproducible too
    Path(report.report_path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return report


def format_splits(report: SplitsReport) -> str:
    """Per-split totals, left-out files with reasons, and the files written."""
    lines = [f"{len(report.classes)} classes from {report.root}, in {report.seconds:.1f} s"]
    for split, per_class in report.counts.items():
        lines.append(f"{split:<5} {sum(per_class.values()):>6} videos  ({report.csv[split]})")
    lines.append(f"left out {len(report.left_out)} bad file(s)" + (":" if report.left_out else ""))
    lines += [f"  {e['kind']:<12} {e['path']}: {e['reason']}" for e in report.left_out]
    lines.append(f"classnames: {report.classnames} (MODEL.NUM_CLASSES {len(report.classes)})")
    lines.append(f"report: {report.report_path}")
    return "\n".join(lines) + "\n"


def make_splits_command(root: str | os.PathLike, out_dir: str | os.PathLike, val: float = 0.1, test: float = 0.1,
                        seed: int = 0, workers: int | None = None, cfg: str | None = None, absolute: bool = False,
                        progress: bool = True) -> SplitsReport:  # fmt: skip
    """``tools/make_splits.py``: ``make_splits`` with the verification settings of ``cfg`` (its training clip, crop
    and back-end) or the defaults, on ``workers`` processes (default: all CPUs)."""
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise SplitError(f"--workers must be at least 1, got {workers}")
    settings = VerifySettings()
    if cfg is not None:
        from ..config import load_config
        from .verify import settings_from_cfg

        settings = settings_from_cfg(load_config(cfg), "train")
    return make_splits(root, out_dir, val, test, seed, settings, workers, absolute, progress)


# ------------------------------------------------------------------------------------------- label fractions


def label_fraction(rows: list[tuple[str, int]], fraction: float, seed: int = 0) -> list[tuple[str, int]]:
    """A stratified, seeded subset of labelled rows: ``round(fraction * n)`` of each class's n rows (at least one),
    drawn with a generator seeded by ``seed`` and the label; the kept rows stay in their input order.

    Args:
        rows: (path text, label) per CSV row.
        fraction: the share of each class to keep, in (0, 1].
        seed: the draw's seed (the same rows and seed give the same subset).

    Raises:
        SplitError: a fraction outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise SplitError(f"label fraction must be in (0, 1], got {fraction}")
    by_label: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(index)
    keep: set[int] = set()
    for label, indices in by_label.items():
        count = max(1, round(fraction * len(indices)))
        keep.update(random.Random(f"{seed}-{label}").sample(indices, count))
    return [row for index, row in enumerate(rows) if index in keep]


def write_label_fraction(data_dir: str | os.PathLike, out_dir: str | os.PathLike, fraction: float,
                         seed: int = 0) -> dict[str, int]:  # fmt: skip
    """A copy of a split folder whose train.csv keeps ``label_fraction`` of each class (val.csv, test.csv and
    classnames.txt are copied as they are, so fine-tuning and the test see the same videos); returns the row counts.

    Raises:
        SplitError: no ``train.csv`` in ``data_dir``, a row without an integer label, or ``out_dir`` = ``data_dir``.
    """
    data, out = Path(data_dir), Path(out_dir)
    if data.resolve() == out.resolve():
        raise SplitError(f"--out {out} is the data folder itself; choose another folder")
    train = data / "train.csv"
    if not train.is_file():
        raise SplitError(f"{train} not found: --data must hold PySlowFast split files (train.csv, ...)")
    rows = []
    for line_no, line in enumerate(train.read_text().splitlines(), start=1):
        path, _, label = line.strip().rpartition(" ")
        if line.strip() and not label.lstrip("-").isdigit():
            raise SplitError(f"{train}:{line_no}: {line!r} has no integer label")
        if line.strip():
            rows.append((path, int(label)))
    subset = label_fraction(rows, fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_text("".join(f"{path} {label}\n" for path, label in subset))
    counts = {"train": len(subset), "train_all": len(rows)}
    for name in ("val.csv", "test.csv", CLASSNAMES_FILE):
        if (data / name).is_file():
            (out / name).write_text((data / name).read_text())
            counts[name.removesuffix(".csv")] = len((data / name).read_text().splitlines())
    return counts
