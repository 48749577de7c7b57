"""Feature extraction over many videos: one ``.npy`` per video, resumable, split over ranks, one merged index.

Output folder::

    features/<id>.npy     (num_windows, D) | (num_windows, crops, D) | (num_windows, [crops,] T', H', W', D)
    records/<id>.json     the video's windows, shape and settings (written after its .npy: a video is finished
                          when both are there; a rerun skips it)
    records/<id>.bad      why a video could not be read (retried on a rerun)
    index.json, index.csv the merged index (rank 0, once every rank is done): per video and per window
    bad_files.txt         path<TAB>reason of every unreadable video

Ranks (torchrun's ``RANK`` / ``WORLD_SIZE``): rank r takes videos r, r + world, ...; with a rendezvous
(``MASTER_ADDR``) the ranks meet in a gloo group before rank 0 merges, without one rank 0 merges what is finished
and counts the rest as pending (run rank 0 again once the others are done).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from tqdm import tqdm

from ..data.decode import VideoDecodeError, open_video
from ..errors import UserError
from ..data.loader import clip_sampling, spatial_views
from ..data.decode import SUPPORTED_BACKENDS
from .features import FeatureExtractor, FeatureSpec, FeatureSpecError, parse_stride, plan_windows, source_fps
from .inputs import list_videos
from .predictor import load_model
from .inputs import VideoItem

logger = logging.getLogger(__name__)

INDEX_JSON, INDEX_CSV, BAD_FILES = "index.json", "index.csv", "bad_files.txt"
CSV_FIELDS = ("video", "id", "feature_file", "row", "start_frame", "end_frame", "start_sec", "end_sec", "shape")


class OutputMismatchError(UserError, ValueError):
    """The output folder holds features made with other settings; one line."""


def ranks_from_env() -> tuple[int, int]:
    """(rank, world size): the process group's, else torchrun's ``RANK`` / ``WORLD_SIZE``, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def join_ranks() -> bool:
    """Joins a gloo group when torchrun started several ranks with a rendezvous; True when in a group."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and "MASTER_ADDR" in os.environ:
        dist.init_process_group("gloo")
        return True
    return False


def _paths(output: str, video_id: str) -> dict[str, str]:
    return {"npy": os.path.join(output, "features", f"{video_id}.npy"),
            "record": os.path.join(output, "records", f"{video_id}.json"),
            "bad": os.path.join(output, "records", f"{video_id}.bad")}  # fmt: skip


def _write_atomic(path: str, write) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def _read_record(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_resumable(output: str, items: Sequence[VideoItem], settings: dict) -> None:
    """A one-line ``OutputMismatchError`` when a finished video of ``output`` was made with other settings."""
    for item in items:
        record = _read_record(_paths(output, item.id)["record"])
        if record is not None and record["settings"] != settings:
            changed = sorted(k for k in settings if record["settings"].get(k) != settings[k])
            raise OutputMismatchError(
                f"{output} holds features of {item.path} made with other settings "
                f"({', '.join(changed)}); give another --output or remove that folder"
            )


def extract_video(extractor: FeatureExtractor, item: VideoItem, output: str, stride, backend: str,
                  settings: dict) -> dict:  # fmt: skip
    """Extracts one video and writes its ``.npy`` and record; returns the record (``VideoDecodeError`` if bad)."""
    paths = _paths(output, item.id)
    started = time.perf_counter()
    with open_video(item.path, backend) as reader:
        fps = source_fps(extractor.sampling, reader.fps)
        windows = plan_windows(extractor.sampling, reader.num_frames, fps, stride)
        features = extractor.extract(reader, windows)
    _write_atomic(paths["npy"], lambda tmp: _save_npy(tmp, features))
    span = extractor.sampling.span(fps)
    record = {"video": item.path, "id": item.id, "feature_file": os.path.relpath(paths["npy"], output),
              "fps": fps, "num_frames": reader.num_frames, "span_frames": span, "shape": list(features.shape),
              "seconds": round(time.perf_counter() - started, 3),
              "windows": [w.as_dict(fps, span, reader.num_frames) for w in windows], "settings": settings}  # fmt: skip
    _write_atomic(paths["record"], lambda tmp: _dump(tmp, record))
    if os.path.exists(paths["bad"]):
        os.remove(paths["bad"])
    return record


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
        np.save(f, array)


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _dump(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _is_done(output: str, item: VideoItem) -> bool:
    paths = _paths(output, item.id)
    return os.path.isfile(paths["npy"]) and os.path.isfile(paths["record"])


def run_share(extractor: FeatureExtractor, items: Sequence[VideoItem], output: str, stride, backend: str,
              settings: dict, rank: int = 0, world: int = 1, progress: bool = True) -> dict[str, int]:  # fmt: skip
    """Extracts this rank's share of ``items`` (skipping finished videos); counts of done, skipped and bad."""
    share = list(items)[rank::world]
    counts = {"extracted": 0, "skipped": 0, "bad": 0}
    desc = "features" if world == 1 else f"features (rank {rank}/{world})"
    for item in tqdm(share, desc=desc, unit="video", disable=not progress, position=rank, dynamic_ncols=True):
        if _is_done(output, item):
            counts["skipped"] += 1
            continue
        try:
            extract_video(extractor, item, output, stride, backend, settings)
            counts["extracted"] += 1
        except VideoDecodeError as e:
            counts["bad"] += 1
            logger.warning("%s: %s (listed in %s)", item.path, e.reason, BAD_FILES)
            entry = {"video": item.path, "id": item.id, "reason": e.reason}
            _write_atomic(_paths(output, item.id)["bad"], lambda tmp: _dump(tmp, entry))
    return counts


def merge_index(output: str, items: Sequence[VideoItem], header: dict) -> dict:
    """Writes ``index.json``, ``index.csv`` and ``bad_files.txt`` from the records of ``items``; returns the index."""
    videos, bad, pending = [], [], []
    for item in items:
        paths = _paths(output, item.id)
        record = _read_record(paths["record"]) if os.path.isfile(paths["npy"]) else None
        if record is not None:
            videos.append({k: v for k, v in record.items() if k != "settings"})
        elif os.path.isfile(paths["bad"]):
            bad.append(_read_record(paths["bad"]))
        else:
            pending.append(item.path)
    index = {**header, "num_videos": len(videos), "num_bad": len(bad), "num_pending": len(pending),
             "videos": videos, "bad": bad, "pending": pending}  # fmt: skip
    _write_atomic(os.path.join(output, INDEX_JSON), lambda tmp: _dump(tmp, index))
    _write_atomic(os.path.join(output, INDEX_CSV), lambda tmp: _write_csv(tmp, videos))
    lines = "".join(f"{b['video']}\t{b['reason']}\n" for b in bad)
    _write_atomic(os.path.join(output, BAD_FILES), lambda tmp: _write_text(tmp, lines))
    return index


def _write_csv(path: str, videos: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for video in videos:
            shape = "x".join(map(str, video["shape"][1:]))
            for row, w in enumerate(video["windows"]):
                writer.writerow([video["video"], video["id"], video["feature_file"], row, w["start_frame"],
                                 w["end_frame"], w["start_sec"], w["end_sec"], shape])  # fmt: skip


def extract_all(extractor: FeatureExtractor, items: Sequence[VideoItem], output: str, stride, backend: str,
                header: dict, progress: bool = True) -> dict | None:  # fmt: skip
    """Extracts the features of ``items`` into ``output`` on this rank, then (rank 0) merges the index.

    Args:
        extractor: model, preprocessing and point.
        items: every video (each rank takes its share).
        output: the output folder.
        stride: ``parse_stride``'s (value, unit), or None (windows tile the video).
        backend: video decoder.
        header: model, checkpoint, config, layer, pool, preprocessing...: written in the index and, as the
            settings a rerun must match, in every record.
        progress: show a progress bar.

    Returns:
        The index on rank 0, None on the other ranks.
    """
    grouped = join_ranks()
    rank, world = ranks_from_env()
    settings = json.loads(json.dumps(header))  # the record's own copy, as JSON reads it back
    check_resumable(output, items, settings)
    counts = run_share(extractor, items, output, stride, backend, settings, rank, world, progress)
    logger.info("rank %d/%d: %d videos extracted, %d already done, %d unreadable", rank, world, counts["extracted"],
                counts["skipped"], counts["bad"])  # fmt: skip
    if grouped:
        dist.barrier()
    if rank != 0:
        return None
    index = merge_index(output, items, header)
    if index["num_pending"]:
        logger.warning("%d videos are not finished (other ranks still running?); run rank 0 again to merge them",
                       index["num_pending"])  # fmt: skip
    return index


def build_extractor(cfg, checkpoint: str, spec: FeatureSpec, crops: int = 1, device: str = "cpu",
                    batch: int = 8) -> FeatureExtractor:  # fmt: skip
    """The config's model with a checkpoint's weights (``predictor.load_model``: a checkpoint of another
    architecture is a one-line error) and its test preprocessing with ``crops`` spatial views."""
    spatial = spatial_views(cfg, "test", num_crops=crops)
    return FeatureExtractor(load_model(cfg, checkpoint), clip_sampling(cfg, "test"), spatial, spec, device, batch)


def index_header(cfg, extractor: FeatureExtractor, checkpoint: str, config_path: str | None, stride) -> dict:
    """The settings every record and the index carry: model, weights, point, windows, preprocessing."""
    stride_text = "one clip span (windows tile the video)" if stride is None else f"{stride[0]:g}{stride[1]}"
    return {"model": str(cfg.MODEL.ARCH), "model_class": type(extractor.model).__name__,
            "checkpoint": os.path.abspath(checkpoint), "config": config_path, "layer": extractor.spec.describe(),
            "pool": extractor.spec.pool, "crops": extractor.spatial.num_crops, "stride": stride_text,
            "preprocessing": extractor.preprocessing()}  # fmt: skip


def default_device() -> str:
    """CUDA when available (under torchrun: the rank's ``LOCAL_RANK`` GPU), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"


def run_extraction(cfg, checkpoint: str, source: str, output: str, layer: str = "pre_logits",
                   pool: str | None = None, stride: str | None = None, crops: int = 1, batch: int = 8,
                   device: str | None = None, path_prefix: str | None = None, config_path: str | None = None,
                   progress: bool = True) -> dict | None:  # fmt: skip
    """``tools/extract_features.py``: every user mistake (layer, pool, stride, input, checkpoint) fails in one line
    before the first video; returns the index on rank 0 (see ``extract_all``)."""
    spec = FeatureSpec.parse(layer, pool)
    parsed_stride = parse_stride(stride) if stride else None
    items = list_videos(source, path_prefix)
    backend = str(cfg.DATA.DECODING_BACKEND).lower()
    if backend not in SUPPORTED_BACKENDS:
        raise FeatureSpecError(f"DATA.DECODING_BACKEND={backend!r}: use one of {list(SUPPORTED_BACKENDS)}")
    os.makedirs(output, exist_ok=True)
    extractor = build_extractor(cfg, checkpoint, spec, crops, device or default_device(), batch)
    header = index_header(cfg, extractor, checkpoint, config_path, parsed_stride)
    return extract_all(extractor, items, output, parsed_stride, backend, header, progress)
