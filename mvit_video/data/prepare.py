"""Kinetics split files from the official annotation CSVs and a folder of downloaded clips.

Input: annotation CSVs with the header ``label,youtube_id,time_start,time_end,split`` (``label`` may be absent, as
in unlabelled test sets) and a folder (searched recursively) of clips named
``{youtube_id}_{time_start:06d}_{time_end:06d}`` or ``{youtube_id}``, with any of ``VIDEO_EXTENSIONS``.

Output: ``train.csv`` / ``val.csv`` / ``test.csv`` (``path label`` per line, labels in the official class order of
``mvit_video.data.classnames``) for the splits the annotations name, and ``report.txt`` listing missing clips, broken
files (cannot be opened, no video stream, or no decodable frame: probed in parallel with PyAV) and failed re-encodes.
Optionally every usable clip is re-encoded (H.264, yuv420p, given short side and keyframe interval) and the CSVs point
at the new files.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from ..errors import UserError
from .classnames import ClassNamesError, builtin_classnames_name, load_classnames
from .decode import VideoDecodeError, probe_video
from .encode import VideoWriter

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}
OUTPUT_SPLITS = ("train", "val", "test")
AUTO_CLASSNAMES = ("kinetics400", "kinetics600", "kinetics700")
_REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end", "split")
_SEGMENT_STEM = re.compile(r"^(?P<id>.+)_(?P<start>\d+)_(?P<end>\d+)$")
_ENCODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


class PrepareError(UserError, ValueError):
    """Inputs that cannot be prepared (files, labels, options); the message is one line."""


@dataclass(frozen=True)
class Clip:
    """One annotated clip: a segment of a YouTube video."""

    youtube_id: str
    time_start: int
    time_end: int
    split: str  # train / val / test
    label_name: str | None  # None in unlabelled (test) annotations

    @property
    def stem(self) -> str:
        """The usual file name without extension: ``{youtube_id}_{time_start:06d}_{time_end:06d}``."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"


@dataclass
class SplitCounts:
    """Per-split bookkeeping of the report."""

    clips: int = 0
    unlabelled: int = 0
    found: int = 0
    missing: int = 0
    broken: int = 0
    reencode_failed: int = 0
    written: int = 0


@dataclass
class PrepareReport:
    """What ``prepare_kinetics`` found and wrote."""

    classnames: str
    num_classes: int
    counts: dict[str, SplitCounts]
    csv: dict[str, str] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (split, expected file stem)
    broken: list[tuple[str, str, str]] = field(default_factory=list)  # (split, path, reason)
    reencode_failed: list[tuple[str, str, str]] = field(default_factory=list)  # (split, path, reason)
    reencoded: int = 0
    reused: int = 0
    report_path: str = ""
    seconds: float = 0.0


def read_annotations(paths: Sequence[str | os.PathLike]) -> list[Clip]:
    """Reads official Kinetics annotation CSVs.

    Raises:
        PrepareError: a missing file, a header without the required columns, or a malformed row (file and line named).
    """
    clips = []
    for path in paths:
        if not os.path.isfile(path):
            raise PrepareError(f"annotation file not found: {path}")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PrepareError(
                    f"{path}: header lacks {', '.join(missing)}; expected label,youtube_id,time_start,time_end,split"
                )
            for row in reader:
                clips.append(_parse_row(row, f"{path}:{reader.line_num}"))
    return clips


def _parse_row(row: dict, where: str) -> Clip:
    split = SPLIT_NAMES.get((row.get("split") or "").strip().lower())
    if split is None:
        raise PrepareError(f"{where}: unknown split {row.get('split')!r}; expected one of {', '.join(SPLIT_NAMES)}")
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except (TypeError, ValueError):
        raise PrepareError(
            f"{where}: time_start/time_end must be numbers, got {row['time_start']!r}, {row['time_end']!r}"
        )
    youtube_id = (row.get("youtube_id") or "").strip()
    if not youtube_id:
        raise PrepareError(f"{where}: empty youtube_id")
    label = (row.get("label") or "").strip() or None
    return Clip(youtube_id, start, end, split, label)


def _normalize_label(name: str) -> str:
    return " ".join(name.strip().strip('"').replace("_", " ").lower().split())


def map_labels(label_names: Iterable[str], classnames: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Maps annotation label names to indices of ``classnames``: exact match, else case/underscore-insensitive.

    Returns:
        (mapping, unknown names) - unknown names are sorted.
    """
    exact = {name: i for i, name in enumerate(classnames)}
    loose = {_normalize_label(name): i for i, name in enumerate(classnames)}
    mapping, unknown = {}, []
    for name in sorted(set(label_names)):
        index = exact.get(name, loose.get(_normalize_label(name)))
        if index is None:
            unknown.append(name)
        else:
            mapping[name] = index
    return mapping, unknown


def resolve_classes(label_names: set[str], classes: str) -> tuple[str, list[str], dict[str, int]]:
    """The class list to use and the label mapping; ``classes="auto"`` picks the first Kinetics list that fits.

    Raises:
        PrepareError: the list cannot be loaded, or some label names are not in it (they are named).
    """
    candidates = AUTO_CLASSNAMES if classes == "auto" else (classes,)
    best = None
    for candidate in candidates:
        try:
            names = load_classnames(candidate)
        except ClassNamesError as e:
            raise PrepareError(str(e)) from None
        mapping, unknown = map_labels(label_names, names)
        if not unknown:
            return builtin_classnames_name(candidate) or candidate, names, mapping
        if best is None or len(unknown) < len(best[1]):
            best = (candidate, unknown)
    candidate, unknown = best
    shown = ", ".join(repr(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    tried = "any of " + ", ".join(AUTO_CLASSNAMES) if classes == "auto" else candidate
    raise PrepareError(f"{len(unknown)} label name(s) not in {tried}: {shown}; pass --classes with the right list")


def index_videos(video_dir: str | os.PathLike) -> tuple[dict[tuple[str, int, int], str], dict[str, str]]:
    """Every video file under ``video_dir``: by (youtube_id, start, end) where the name encodes a segment; by stem."""
    by_segment, by_stem = {}, {}
    for root, dirs, files in os.walk(video_dir, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            path = os.path.join(root, name)
            by_stem.setdefault(stem, path)
            match = _SEGMENT_STEM.match(stem)
            if match:
                by_segment.setdefault((match["id"], int(match["start"]), int(match["end"])), path)
    return by_segment, by_stem


def locate_clip(clip: Clip, by_segment: dict, by_stem: dict) -> str | None:
    """The clip's file: ``{id}_{start}_{end}.*`` (zero-padded or not), else ``{id}.*``; None when absent."""
    return by_segment.get((clip.youtube_id, clip.time_start, clip.time_end)) or by_stem.get(clip.youtube_id)


def check_video(path: str) -> str | None:
    """None when the loaders can read the file, else the reason they would give (``open_video``'s own probe)."""
    try:
        probe_video(path)
    except VideoDecodeError as e:
        return e.reason
    return None


def _reason(error: Exception) -> str:
    detail = getattr(error, "strerror", None) or str(error)  # strerror leaves out the file name
    return f"{type(error).__name__}: {detail}".splitlines()[0]


def check_videos(paths: Sequence[str], workers: int) -> dict[str, str]:
    """Checks files in a process pool; returns {path: reason} of the broken ones."""
    if workers <= 1 or len(paths) < 2:
        reasons = [check_video(p) for p in paths]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(check_video, paths, chunksize=max(1, min(64, len(paths) // (4 * workers)))))
    return {p: r for p, r in zip(paths, reasons) if r is not None}


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side equal to ``short_side`` and the other rounded to an even number."""
    if height <= width:
        return short_side, max(2, round(width * short_side / height / 2) * 2)
    return max(2, round(height * short_side / width / 2) * 2), short_side


def reencode_video(src: str, dst: str, short_side: int = 320, gop: int = 30, crf: int = 23) -> int:
    """Re-encodes the first video stream to H.264 (yuv420p, constant frame rate, a keyframe every ``gop`` frames).

    The file appears at ``dst`` only when complete (written beside it, then renamed). Audio is dropped.

    Returns:
        The number of frames written.
    """
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    partial = f"{dst}.partial.mp4"
    writer = None
    try:
        with av.open(src) as source:
            if not source.streams.video:
                raise ValueError("no video stream")
            stream_in = source.streams.video[0]
            stream_in.thread_type = "AUTO"
            rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(30)
            for frame in source.decode(stream_in):
                if writer is None:
                    height, width = scaled_size(frame.height, frame.width, short_side)
                    writer = VideoWriter(partial, rate, height, width, options={"crf": str(crf)}, deterministic=False,
                                         gop=gop)
                writer.write(frame)
    finally:
        if writer is not None:
            writer.close()
    count = writer.frames if writer is not None else 0
    if count == 0:
        if os.path.exists(partial):
            os.remove(partial)
        raise ValueError("zero decodable frames")
    os.replace(partial, dst)
    return count


def _reencode_job(job: tuple[str, str, int, int]) -> str | None:
    src, dst, short_side, gop = job
    try:
        reencode_video(src, dst, short_side, gop)
        return None
    except _ENCODE_ERRORS as e:
        if os.path.exists(f"{dst}.partial.mp4"):
            os.remove(f"{dst}.partial.mp4")
        return _reason(e)


def reencode_videos(jobs: Sequence[tuple[str, str, int, int]], workers: int, progress: bool = True) -> dict[str, str]:
    """Runs ``(src, dst, short_side, gop)`` jobs in a process pool with a progress bar; returns {src: error}."""
    from tqdm import tqdm

    failures = {}
    with tqdm(total=len(jobs), desc="re-encode", unit="video", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                error = _reencode_job(job)
                if error:
                    failures[job[0]] = error
                bar.update()
            return failures
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_reencode_job, job): job[0] for job in jobs}
            for future in as_completed(futures):
                if future.result():
                    failures[futures[future]] = future.result()
                bar.update()
    return failures


def _check_options(annotations, video_dir, reencode_dir, short_side: int, gop: int, workers: int) -> None:
    if not annotations:
        raise PrepareError("no annotation CSV given; pass the official train/validate/test CSVs")
    if not os.path.isdir(video_dir):
        raise PrepareError(f"video folder not found: {video_dir}")
    if reencode_dir is not None and (short_side < 2 or short_side % 2):
        raise PrepareError(f"--short-side must be a positive even number (H.264 yuv420p), got {short_side}")
    if gop < 1 or workers < 1:
        raise PrepareError(f"--gop and --workers must be at least 1, got {gop} and {workers}")


def _new_report(clips: list[Clip], classes: str, names: list[str]) -> PrepareReport:
    counts = {split: SplitCounts() for split in OUTPUT_SPLITS if any(c.split == split for c in clips)}
    for clip in clips:
        counts[clip.split].clips += 1
        counts[clip.split].unlabelled += clip.label_name is None
    return PrepareReport(classnames=classes, num_classes=len(names), counts=counts)


def _find_files(clips: list[Clip], video_dir: str, report: PrepareReport) -> list[tuple[Clip, str]]:
    by_segment, by_stem = index_videos(video_dir)
    found = []
    for clip in clips:
        if clip.label_name is None:
            continue
        path = locate_clip(clip, by_segment, by_stem)
        if path is None:
            report.counts[clip.split].missing += 1
            report.missing.append((clip.split, clip.stem))
        else:
            report.counts[clip.split].found += 1
            found.append((clip, os.path.abspath(path)))
    return found


def _drop_broken(found: list[tuple[Clip, str]], workers: int, report: PrepareReport) -> list[tuple[Clip, str]]:
    broken = check_videos(sorted({path for _, path in found}), workers)
    usable = []
    for clip, path in found:
        if path in broken:
            report.counts[clip.split].broken += 1
            report.broken.append((clip.split, path, broken[path]))
        else:
            usable.append((clip, path))
    return usable


def _reencode_all(usable, reencode_dir: str, short_side: int, gop: int, workers: int, progress: bool, report):
    targets = [
        (clip, src, os.path.join(os.path.abspath(reencode_dir), clip.split, clip.stem + ".mp4")) for clip, src in usable
    ]
    jobs = [(src, dst, short_side, gop) for _, src, dst in {t[2]: t for t in targets}.values()]
    todo = [job for job in jobs if not os.path.exists(job[1])]
    report.reused = len(jobs) - len(todo)
    failures = reencode_videos(todo, workers, progress)
    report.reencoded = len(todo) - len(failures)
    done = []
    for clip, src, dst in targets:
        if src in failures:
            report.counts[clip.split].reencode_failed += 1
            report.reencode_failed.append((clip.split, src, failures[src]))
        else:
            done.append((clip, dst))
    return done


def _write_csvs(rows, mapping: dict[str, int], out_dir: Path, path_prefix: str | None, report: PrepareReport) -> None:
    lines: dict[str, list[str]] = {split: [] for split in report.counts}
    for clip, path in rows:
        shown = os.path.relpath(path, path_prefix) if path_prefix else path
        lines[clip.split].append(f"{shown} {mapping[clip.label_name]}\n")
        report.counts[clip.split].written += 1
    for split, split_lines in lines.items():
        report.csv[split] = str(out_dir / f"{split}.csv")
        Path(report.csv[split]).write_text("".join(split_lines), encoding="utf-8")


def prepare_kinetics(
    annotations: Sequence[str | os.PathLike],
    video_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    classes: str = "auto",
    reencode_dir: str | os.PathLike | None = None,
    short_side: int = 320,
    gop: int = 30,
    workers: int | None = None,
    path_prefix: str | os.PathLike | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Writes PySlowFast split CSVs and ``report.txt`` for downloaded Kinetics clips.

    Args:
        annotations: official annotation CSVs (any splits).
        video_dir: folder of downloaded clips (searched recursively).
        out_dir: where ``{train,val,test}.csv`` and ``report.txt`` go (created).
        classes: built-in list name, class-name file, or ``"auto"`` (first of kinetics400/600/700 with every label).
        reencode_dir: when given, usable clips are re-encoded to ``reencode_dir/<split>/<stem>.mp4`` (files already
            there are reused) and the CSVs point at them.
        short_side, gop: re-encoding size (even) and keyframe interval in frames.
        workers: processes for probing and re-encoding (default: all CPUs).
        path_prefix: write paths relative to this folder (set ``DATA.PATH_PREFIX`` to it); default absolute paths.
        progress: show a tqdm bar while re-encoding.

    Raises:
        PrepareError: bad options, unreadable annotations or unknown label names, before any video is touched.
    """
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    _check_options(annotations, video_dir, reencode_dir, short_side, gop, workers)
    clips = read_annotations(annotations)
    labels = {c.label_name for c in clips if c.label_name is not None}
    name, names, mapping = resolve_classes(labels, classes)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepareError(f"cannot create output folder {out}: {e.strerror or e}") from None
    report = _new_report(clips, name, names)
    usable = _drop_broken(_find_files(clips, os.fspath(video_dir), report), workers, report)
    if reencode_dir is not None:
        usable = _reencode_all(usable, os.fspath(reencode_dir), short_side, gop, workers, progress, report)
    _write_csvs(usable, mapping, out, os.fspath(path_prefix) if path_prefix else None, report)
    report.seconds = round(time.perf_counter() - start, 2)
    report.report_path = str(out / "report.txt")
    Path(report.report_path).write_text(format_report(report, full=True), encoding="utf-8")
    return report


def format_report(report: PrepareReport, full: bool = False) -> str:
    """A table of per-split counts; with ``full`` also every missing, broken and failed file."""
    columns = ("clips", "unlabelled", "found", "missing", "broken", "reencode_failed", "written")
    totals = SplitCounts()
    for counts in report.counts.values():
        for c in columns:
            setattr(totals, c, getattr(totals, c) + getattr(counts, c))

    def row(name: str, counts: SplitCounts) -> str:
        return f"{name:<6} " + " ".join(f"{getattr(counts, c):>{max(len(c), 7)}}" for c in columns)

    lines = [f"class list: {report.classnames} ({report.num_classes} classes)"]
    lines.append(f"{'split':<6} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    lines += [row(split, counts) for split, counts in report.counts.items()] + [row("total", totals)]
    if report.reencoded or report.reused or report.reencode_failed:
        lines.append(f"re-encoded {report.reencoded}, reused {report.reused}, failed {len(report.reencode_failed)}")
    lines += [f"{split}.csv: {path}" for split, path in report.csv.items()]
    if full:
        lines += [f"missing ({len(report.missing)}):"] + [f"  {split} {stem}" for split, stem in report.missing]
        lines += [f"broken ({len(report.broken)}):"] + [f"  {s} {p}: {r}" for s, p, r in report.broken]
        lines += [f"re-encode failed ({len(report.reencode_failed)}):"] + [
            f"  {s} {p}: {r}" for s, p, r in report.reencode_failed
        ]
    elif report.report_path:
        lines.append(f"lists of missing, broken and failed files: {report.report_path}")
    return "\n".join(lines) + "\n"
