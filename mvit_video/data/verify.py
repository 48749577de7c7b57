"""Dataset verification: decode every file of a split with the loader's own reader and say what is wrong with it.

Each file is inspected once (``inspect_file``: open with ``open_video`` and the configured backend, as the loaders
do, then decode every frame) and the facts found are appended to a journal (``verify_journal.jsonl`` in the output
folder), so a rerun after an interruption decodes only the files not yet journaled. Classification is a pure
function of those facts and the clip settings (``classify``), so changing the clip length or crop reuses the journal.

Kinds of problem, in order of severity (a file reports its worst as ``kind``, and all of them as ``problems``):

    unreadable      the loader cannot open it: missing, empty, not a video, no video stream, corrupt header.
    zero_frames     it opens but no frame decodes.
    truncated       frames its index or header lists are gone (a cut download), or a listed frame fails to decode.
    too_short       fewer frames than one clip spans (``ClipSampling.span``: NUM_FRAMES x SAMPLING_RATE at
                    TARGET_FPS, rescaled to the file's fps, exactly as the sampler computes it).
    odd_resolution  odd width or height, a short side below the crop, or a long side above ``max_side``.
    rotated         rotation metadata (the decoder turns frames upright; re-encoding removes the surprise).
    vfr             variable frame rate: uneven gaps between frame timestamps.

The first four are dropped from the cleaned CSV by default (``DROPPED_BY_DEFAULT``); the others are reported and
kept (the loader reads them correctly) unless asked otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from ..errors import UserError
from .decode import SUPPORTED_BACKENDS, VideoDecodeError, open_video
from .kinetics import ClipSampling
from .records import VideoRecord, read_csv_split

KINDS = ("unreadable", "zero_frames", "truncated", "too_short", "odd_resolution", "rotated", "vfr")
DROPPED_BY_DEFAULT = ("unreadable", "zero_frames", "truncated", "too_short")
JOURNAL_FILE = "verify_journal.jsonl"
REPORT_FILE = "verify_report.json"
_CHUNK = 32  # frames decoded per request in a full decode
_VFR_TOLERANCE = 0.1  # a gap this far (relative) from the median gap, and more than one timestamp tick, is uneven
_TRUNCATION_SLACK = (0.5, 0.05)  # header duration beyond the decoded one: seconds, fraction


class VerifyError(UserError, ValueError):
    """Options of a verification that cannot work; the message is one line."""


@dataclass(frozen=True)
class VerifySettings:
    """What a file is checked against.

    Attributes:
        sampling: the clip the loader samples (``loader.clip_sampling``).
        crop_size: training crop (``DATA.TRAIN_CROP_SIZE``): a shorter short side is flagged.
        max_side: a longer long side is flagged (slow to decode and resize).
        backend: decoder back-end (``DATA.DECODING_BACKEND``).
        full_decode: decode every frame (else only the first, middle and last: fast, misses mid-file damage).
        drop: kinds left out of the cleaned CSV.
    """

    sampling: ClipSampling = ClipSampling(num_frames=16, sampling_rate=4, target_fps=30.0)
    crop_size: int = 224
    max_side: int = 1920
    backend: str = "pyav"
    full_decode: bool = True
    drop: tuple[str, ...] = DROPPED_BY_DEFAULT

    def __post_init__(self) -> None:
        if self.backend not in SUPPORTED_BACKENDS:
            raise VerifyError(f"unknown backend {self.backend!r}; use one of {', '.join(SUPPORTED_BACKENDS)}")
        unknown = sorted(set(self.drop) - set(KINDS))
        if unknown:
            raise VerifyError(f"unknown kind(s) to drop {unknown}; kinds are {', '.join(KINDS)}")
        if self.crop_size < 1 or self.max_side < self.crop_size:
            raise VerifyError(f"crop size {self.crop_size} and max side {self.max_side} must satisfy 1 <= crop <= max")


def settings_from_cfg(cfg, split: str = "train", **overrides) -> VerifySettings:
    """The settings a config's loader implies for a split: its clip sampling, crop and back-end."""
    from .loader import clip_sampling

    crop = cfg.DATA.TRAIN_CROP_SIZE if split == "train" else cfg.DATA.TEST_CROP_SIZE
    values = dict(sampling=clip_sampling(cfg, split), crop_size=crop, backend=str(cfg.DATA.DECODING_BACKEND).lower())
    return VerifySettings(**{**values, **overrides})


# ---------------------------------------------------------------------------------------------------- inspection


def _listed(path: str) -> tuple[int, float]:
    """(frames the container's index lists, seconds its header claims); 0 where it says nothing."""
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not seconds and container.duration:
            seconds = container.duration / av.time_base
        return int(stream.frames or 0), seconds


def _intervals(reader) -> dict | None:
    """Gaps between consecutive frame timestamps (seconds): min, median, max, uneven count; None without timestamps."""
    probe = reader.probe
    if probe.frame_pts is None or len(probe.frame_pts) < 3:
        return None
    gaps = [b - a for a, b in zip(probe.frame_pts, probe.frame_pts[1:])]
    median = statistics.median(gaps)
    uneven = sum(abs(g - median) > max(1, _VFR_TOLERANCE * median) for g in gaps)
    base = float(probe.time_base)
    return {"min": min(gaps) * base, "median": median * base, "max": max(gaps) * base, "uneven": uneven}


def _decode(reader, full: bool) -> None:
    """Reads every frame (in chunks, decode order), or the first, middle and last; raises VideoDecodeError."""
    n = reader.num_frames
    if not full:
        reader.get_frames(sorted({0, n // 2, n - 1}))
        return
    for start in range(0, n, _CHUNK):
        reader.get_frames(range(start, min(start + _CHUNK, n)))


def inspect_file(path: str, backend: str = "pyav", full_decode: bool = True) -> dict:
    """Opens and decodes one file as the loader would; returns the facts found (a journal record, JSON-able).

    Keys: path, size, mtime_ns, backend, full_decode, error (VideoDecodeError reason or None), stage ("open" or
    "decode" where it failed), num_frames, fps, duration, height, width (upright), rotation, listed_frames,
    listed_duration, intervals, fallback (why PyAV served it instead of the backend), seconds.
    """
    begin = time.perf_counter()
    facts: dict = {"path": path, "backend": backend, "full_decode": full_decode, "error": None, "stage": None}
    try:
        stat = os.stat(path)
        facts.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    except OSError:
        facts.update(size=None, mtime_ns=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fall-backs to PyAV: kept in "fallback"
        try:
            with open_video(path, backend, num_threads=1) as reader:
                facts.update(num_frames=reader.num_frames, fps=reader.fps, duration=reader.duration,
                             height=reader.height, width=reader.width, rotation=reader.rotation,
                             intervals=_intervals(reader))  # fmt: skip
                facts["listed_frames"], facts["listed_duration"] = _listed(path)
                facts["stage"] = "decode"
                _decode(reader, full_decode)
                facts["stage"] = None
                facts["fallback"] = reader.fallback_reason
        except VideoDecodeError as e:
            facts.update(error=e.reason, stage=facts["stage"] or "open")
        except (av.error.FFmpegError, OSError, RuntimeError, ValueError, IndexError) as e:  # reported, never lost
            facts.update(error=f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:200]}",
                         stage=facts["stage"] or "open")  # fmt: skip
    facts["seconds"] = round(time.perf_counter() - begin, 4)
    return facts


# ------------------------------------------------------------------------------------------------ classification


def _error_problem(facts: dict) -> tuple[str, str]:
    reason = facts["error"]
    if facts["stage"] == "decode" or reason.startswith("truncated"):
        return "truncated", f"{reason} (the file opens, {facts.get('num_frames')} frames listed)"
    if reason.startswith("zero frames"):
        return "zero_frames", reason
    return "unreadable", reason


def _truncation(facts: dict) -> str | None:
    n, listed = facts["num_frames"], facts.get("listed_frames") or 0
    if listed > n:
        return f"the index lists {listed} frames, only {n} decode (cut or damaged file)"
    claimed, decoded = facts.get("listed_duration") or 0.0, facts.get("duration") or 0.0
    seconds, fraction = _TRUNCATION_SLACK
    if claimed > decoded + max(seconds, fraction * claimed):
        return f"the header says {claimed:.2f} s, the frames that decode last {decoded:.2f} s (cut or damaged file)"
    return None


def _too_short(facts: dict, sampling: ClipSampling) -> str | None:
    n, fps = facts["num_frames"], facts.get("fps") or 0.0
    clip = f"{sampling.num_frames}x{sampling.sampling_rate}"
    if sampling.uniform:
        need = float(sampling.num_frames)
        what = f"one {sampling.num_frames}-frame clip (one frame per segment) needs {sampling.num_frames}"
    else:
        need = sampling.span(fps)
        what = f"one {clip} clip at {sampling.target_fps:g} fps spans {need:.1f} frames of it"
    if n < need:
        return f"{n} frames at {fps:.3g} fps; {what} (the loader would repeat its last frame)"
    return None


def _resolution(facts: dict, settings: VerifySettings) -> str | None:
    height, width = facts["height"], facts["width"]
    size = f"{width}x{height}"
    if min(height, width) < settings.crop_size:
        return f"{size}: short side below the {settings.crop_size}-pixel crop (frames are upscaled)"
    if max(height, width) > settings.max_side:
        return f"{size}: long side above {settings.max_side} (slow to decode and resize; re-encode it smaller)"
    odd = [name for name, side in (("width", width), ("height", height)) if side % 2]
    if odd:
        return f"{size}: odd {' and '.join(odd)} (4:2:0 video and many encoders need even sizes)"
    return None


def _vfr(facts: dict) -> str | None:
    gaps = facts.get("intervals")
    if not gaps or not gaps["uneven"]:
        return None
    return (f"{gaps['uneven']} uneven gaps between frames: {1000 * gaps['min']:.1f}-{1000 * gaps['max']:.1f} ms "
            f"(median {1000 * gaps['median']:.1f} ms); frames are indexed by decode order, not time")  # fmt: skip


def classify(facts: dict, settings: VerifySettings) -> list[tuple[str, str]]:
    """Every (kind, reason) problem of a file from its ``inspect_file`` facts, worst first; [] for a good file."""
    if facts["error"] is not None:
        return [_error_problem(facts)]
    checks: list[tuple[str, str | None]] = [
        ("truncated", _truncation(facts)),
        ("too_short", _too_short(facts, settings.sampling)),
        ("odd_resolution", _resolution(facts, settings)),
        ("rotated", f"rotation metadata: {facts['rotation']} degrees (frames are decoded upright)"
         if facts.get("rotation") else None),
        ("vfr", _vfr(facts)),
    ]  # fmt: skip
    return [(kind, reason) for kind, reason in checks if reason is not None]


# ------------------------------------------------------------------------------------------------------ journal


def _same_file(facts: dict, backend: str, full_decode: bool) -> bool:
    """Whether a journal record still describes the file as it is now, read the way asked."""
    if facts.get("backend") != backend or facts.get("full_decode", True) < full_decode:
        return False
    try:
        stat = os.stat(facts["path"])
    except OSError:
        return facts.get("size") is None
    return facts.get("size") == stat.st_size and facts.get("mtime_ns") == stat.st_mtime_ns


def read_journal(path: str | os.PathLike) -> dict[str, dict]:
    """{path: facts} of a journal; a line cut by an interruption (the last one) is ignored."""
    found: dict[str, dict] = {}
    if not os.path.exists(path):
        return found
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                facts = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(facts, dict) and "path" in facts:
                found[facts["path"]] = facts
    return found


def _open_journal(path: str | os.PathLike):
    """The journal opened for appending, after ending a line an interruption left unfinished."""
    sink = open(path, "a+b")
    if sink.tell() > 0:
        sink.seek(-1, os.SEEK_END)
        if sink.read(1) != b"\n":
            sink.write(b"\n")
    sink.close()
    return open(path, "a", encoding="utf-8")


# --------------------------------------------------------------------------------------------------------- runs


@dataclass
class VerifyResult:
    """The outcome of ``verify_files``: facts and problems per path, and how the work was done."""

    paths: list[str]
    facts: dict[str, dict]
    problems: dict[str, list[tuple[str, str]]]
    settings: VerifySettings
    checked: int = 0
    from_journal: int = 0
    seconds: float = 0.0
    journal: str | None = None

    def kind(self, path: str) -> str:
        """The worst problem of a file, or "ok"."""
        return self.problems[path][0][0] if self.problems[path] else "ok"

    def dropped(self, path: str) -> bool:
        return any(kind in self.settings.drop for kind, _ in self.problems[path])

    def counts(self) -> dict[str, int]:
        """Files per worst kind ("ok" included), every kind listed."""
        found = Counter(self.kind(p) for p in self.paths)
        return {kind: found.get(kind, 0) for kind in ("ok", *KINDS)}


def _run_checks(todo: Sequence[str], settings: VerifySettings, workers: int, progress: bool,
                on_facts: Callable[[dict], None]) -> None:  # fmt: skip
    from tqdm import tqdm

    with tqdm(total=len(todo), desc="verify", unit="video", disable=not progress, dynamic_ncols=True) as bar:
        if workers <= 1 or len(todo) < 2:
            for path in todo:
                on_facts(inspect_file(path, settings.backend, settings.full_decode))
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(inspect_file, p, settings.backend, settings.full_decode) for p in todo]
            try:
                for future in as_completed(futures):
                    on_facts(future.result())
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def verify_files(paths: Iterable[str], settings: VerifySettings = VerifySettings(), workers: int = 1,
                 journal: str | os.PathLike | None = None, progress: bool = False) -> VerifyResult:  # fmt: skip
    """Inspects files (those already in ``journal`` and unchanged are not decoded again) and classifies them.

    Args:
        paths: video files (duplicates are checked once).
        settings: what they are checked against.
        workers: processes decoding in parallel (1: in this process).
        journal: JSON-lines file of finished files, appended as each finishes (None: keep nothing).
        progress: show a tqdm bar.
    """
    begin = time.perf_counter()
    unique = list(dict.fromkeys(os.fspath(p) for p in paths))
    known = read_journal(journal) if journal is not None else {}
    facts = {p: known[p] for p in unique if p in known and _same_file(known[p], settings.backend,
                                                                       settings.full_decode)}  # fmt: skip
    todo = [p for p in unique if p not in facts]
    sink = _open_journal(journal) if journal is not None else None

    def record(found: dict) -> None:
        facts[found["path"]] = found
        if sink is not None:
            sink.write(json.dumps(found) + "\n")
            sink.flush()

    try:
        _run_checks(todo, settings, workers, progress, record)
    finally:
        if sink is not None:
            sink.close()
    problems = {p: classify(facts[p], settings) for p in unique}
    return VerifyResult(unique, facts, problems, settings, checked=len(todo), from_journal=len(unique) - len(todo),
                        seconds=round(time.perf_counter() - begin, 2),
                        journal=os.fspath(journal) if journal else None)  # fmt: skip


# ----------------------------------------------------------------------------------------------------- CSV splits


@dataclass
class SplitRows:
    """A split CSV's rows as written (``lines``) beside the records the loader reads from them."""

    csv: str
    lines: list[str]
    records: list[VideoRecord]


def read_rows(csv_path: str, path_prefix: str = "", separator: str = " ", multi_label: bool = False) -> SplitRows:
    """Reads a toolkit split CSV (``read_csv_split``'s rules) keeping every row's original text."""
    records = read_csv_split(csv_path, path_prefix, separator, multi_label)
    with open(csv_path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return SplitRows(csv_path, lines, records)


@dataclass
class VerifyReport:
    """Where ``verify_split`` wrote its outputs, and its result."""

    result: VerifyResult
    rows: SplitRows
    clean_csv: str
    report_json: str
    kept: int = 0
    extra: dict = field(default_factory=dict)


def _report_dict(result: VerifyResult, rows: SplitRows, clean_csv: str, kept: int) -> dict:
    bad = []
    for line_no, (line, record) in enumerate(zip(rows.lines, rows.records), start=1):
        problems = result.problems[record.path]
        if problems:
            bad.append({"row": line_no, "path": record.path, "kind": problems[0][0], "reason": problems[0][1],
                        "dropped": result.dropped(record.path),
                        "problems": [{"kind": k, "reason": r} for k, r in problems]})  # fmt: skip
    settings = asdict(result.settings)
    return {"csv": rows.csv, "clean_csv": clean_csv, "rows": len(rows.records), "kept": kept,
            "dropped": len(rows.records) - kept, "files": len(result.paths), "counts": result.counts(),
            "settings": settings, "checked_now": result.checked, "from_journal": result.from_journal,
            "seconds": result.seconds, "bad": bad}  # fmt: skip


def verify_split(csv_path: str | os.PathLike, out_dir: str | os.PathLike, path_prefix: str = "",
                 separator: str = " ", settings: VerifySettings = VerifySettings(), workers: int = 1,
                 progress: bool = False, multi_label: bool = False) -> VerifyReport:  # fmt: skip
    """Verifies every file of a split CSV; writes the cleaned CSV (same name, good rows as written) and the report.

    Args:
        csv_path: the split file (``path label`` rows, ``DATA.PATH_PREFIX`` joined in front of relative paths).
        out_dir: gets ``<csv name>`` (kept rows), ``verify_report.json`` and the resume journal.
        path_prefix, separator, multi_label: ``DATA.PATH_PREFIX``, ``DATA.PATH_LABEL_SEPARATOR``, ``DATA.MULTI_LABEL``.
        settings, workers, progress: as ``verify_files``.

    Raises:
        VerifyError / DatasetError: a missing or malformed CSV, or an output that would overwrite the input.
    """
    csv_path, out = os.fspath(csv_path), Path(out_dir)
    clean_csv = out / Path(csv_path).name
    if clean_csv.resolve() == Path(csv_path).resolve():
        raise VerifyError(f"the cleaned CSV would overwrite {csv_path}; choose another output folder")
    rows = read_rows(csv_path, path_prefix, separator, multi_label)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VerifyError(f"cannot create output folder {out}: {e.strerror or e}") from None
    result = verify_files([r.path for r in rows.records], settings, workers, out / JOURNAL_FILE, progress)
    kept_lines = [line for line, r in zip(rows.lines, rows.records) if not result.dropped(r.path)]
    clean_csv.write_text("".join(f"{line}\n" for line in kept_lines), encoding="utf-8")
    report = _report_dict(result, rows, str(clean_csv), len(kept_lines))
    report_json = out / REPORT_FILE
    report_json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return VerifyReport(result, rows, str(clean_csv), str(report_json), kept=len(kept_lines), extra=report)


def verify_dataset(
    out_dir: str | os.PathLike,
    *,
    cfg: str | None = None,
    opts: Sequence[str] = (),
    split: str = "train",
    csv: str | None = None,
    prefix: str = "",
    separator: str = " ",
    workers: int | None = None,
    backend: str | None = None,
    num_frames: int = 16,
    sampling_rate: int = 4,
    target_fps: float = 30.0,
    crop: int | None = None,
    max_side: int = 1920,
    drop: Sequence[str] | None = None,
    quick: bool = False,
    progress: bool = True,
) -> VerifyReport:
    """``tools/verify_dataset.py``: a config's split (``cfg`` + ``opts`` + ``split``) or a CSV with explicit clip
    settings; the options not given keep the config's (or the MViTv2-S 16x4 recipe's) values."""
    if (cfg is None) == (csv is None):
        raise VerifyError("give either a config (--cfg, with --split) or a split CSV (--csv, with --prefix)")
    if opts and cfg is None:
        raise VerifyError(f"config overrides {list(opts)[:2]} need --cfg")
    overrides = {"max_side": max_side, "full_decode": not quick}
    overrides.update({k: v for k, v in (("backend", backend), ("crop_size", crop)) if v is not None})
    if drop is not None:
        overrides["drop"] = tuple(drop)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise VerifyError(f"--workers must be at least 1, got {workers}")
    if cfg is not None:
        from ..config import load_config

        config = load_config(cfg, list(opts))
        if str(config.TRAIN.DATASET if split != "test" else config.TEST.DATASET).lower() in (
            "ssv2",
            "imagenet",
            "imagefolder",
        ):
            raise VerifyError("only CSV splits (Kinetics-style datasets) can be verified; use --csv for others")
        settings = settings_from_cfg(config, split, **overrides)
        data = config.DATA
        csv, prefix, separator = (
            os.path.join(data.PATH_TO_DATA_DIR, f"{split}.csv"),
            data.PATH_PREFIX,
            data.PATH_LABEL_SEPARATOR,
        )
        multi_label = bool(data.MULTI_LABEL)
    else:
        multi_label = False
        if min(num_frames, sampling_rate) < 1 or target_fps <= 0:
            raise VerifyError("--num-frames, --sampling-rate and --target-fps must be positive")
        sampling = ClipSampling(num_frames=num_frames, sampling_rate=sampling_rate, target_fps=float(target_fps))
        settings = VerifySettings(sampling=sampling, **overrides)
    return verify_split(csv, out_dir, prefix, separator, settings, workers, progress, multi_label)


def format_summary(report: VerifyReport, max_listed: int = 20) -> str:
    """Counts per kind, the first ``max_listed`` problem files with their reasons, and the output paths."""
    data = report.extra
    lines = [f"{data['rows']} rows, {data['files']} files: {data['checked_now']} decoded now, "
             f"{data['from_journal']} from the journal, in {data['seconds']:.1f} s"]  # fmt: skip
    lines.append("  ".join(f"{kind} {count}" for kind, count in data["counts"].items()))
    for entry in data["bad"][:max_listed]:
        action = "dropped" if entry["dropped"] else "kept"
        lines.append(f"  {entry['kind']:<14} {action:<7} {entry['path']}: {entry['reason']}")
    if len(data["bad"]) > max_listed:
        lines.append(f"  ... {len(data['bad']) - max_listed} more in the report")
    lines.append(f"kept {data['kept']} of {data['rows']} rows -> {report.clean_csv}")
    lines.append(f"report: {report.report_json}")
    return "\n".join(lines) + "\n"


__all__ = ["DROPPED_BY_DEFAULT", "KINDS", "VerifyError", "VerifyReport", "VerifyResult", "VerifySettings",
           "classify", "format_summary", "inspect_file", "read_journal", "settings_from_cfg", "verify_dataset",
           "verify_files", "verify_split"]  # fmt: skip
