"""Data-loading throughput: our loaders per backend against PySlowFast's PyAV decoding path, and the cost of the
training augmentation per ``AUG.ORDER`` and ``AUG.INTERPOLATION`` (``measure_augmentation``).

Everything runs in the calling process on one thread unless a DataLoader with workers is asked for, so the
per-worker numbers are "clips per second per core". Each measurement runs ``REPEAT`` times with the same random
seed and reports the fastest run.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import av
import numpy as np
import torch

from ..data.encode import write_video
from ..data.kinetics import ClipDataset, ClipSampling, MultiViewDataset, frames_to_clip, views_from_frames
from ..data.records import VideoRecord
from .timing import seconds_per_call


@dataclass
class Measurement:
    """One row of the benchmark table."""

    name: str
    backend: str
    mode: str
    workers: int
    clips: int
    seconds: float

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "clips_per_s": round(self.clips_per_s, 3)}


def _start_end(num_frames: float, clip_size: float, clip_idx: int, num_clips: int, use_offset: bool, rng) -> tuple:
    """PySlowFast's start/end frame of a clip (clip_idx -1: random, training)."""
    delta = max(num_frames - clip_size, 0)
    if clip_idx == -1:
        start = rng.uniform(0, delta)
    elif use_offset:
        start = math.floor(delta / 2) if num_clips == 1 else clip_idx * math.floor(delta / (num_clips - 1))
    else:
        start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def pyslowfast_pyav_clip(
    path: str, num_frames: int, sampling_rate: int, target_fps: float, clip_idx: int, num_clips: int,
    use_offset: bool, rng: random.Random,
) -> torch.Tensor:  # fmt: skip
    """Decodes one clip the way PySlowFast's PyAV reader does (the baseline): seek by timestamp to the clip's
    start, decode every frame up to its end, then pick ``num_frames`` evenly. Returns (T, H, W, 3) uint8.

    Kept only for measurement: it maps timestamps to frame numbers with the average frame rate, which returns
    wrong frames on variable-frame-rate files.
    """
    with av.open(path) as container:
        stream = container.streams.video[0]
        # PySlowFast leaves PyAV's thread settings at their defaults (DATA_LOADER.ENABLE_MULTI_THREAD_DECODE off)
        fps = float(stream.average_rate)
        total, duration = stream.frames, stream.duration
        decode_all = not duration or not total
        start_pts, end_pts = 0, math.inf
        if not decode_all:
            clip_size = max(1.0, math.ceil(sampling_rate * (num_frames - 1) / target_fps * fps))
            start, end = _start_end(total, clip_size, clip_idx, num_clips, use_offset, rng)
            timebase = duration / total
            start_pts, end_pts = int(start * timebase), int(end * timebase)
        container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
        frames = {}
        for frame in container.decode(video=0):
            if frame.pts < start_pts:
                continue
            frames[frame.pts] = frame
            if frame.pts > end_pts:
                break
        rgb = torch.from_numpy(np.stack([frames[p].to_rgb().to_ndarray() for p in sorted(frames)]))
    clip_size = sampling_rate * num_frames / target_fps * fps
    idx, n = (clip_idx, num_clips) if decode_all else (0, 1)
    start, end = _start_end(rgb.shape[0], clip_size, idx, n, use_offset, rng)
    index = torch.linspace(start, end, num_frames).clamp(0, rgb.shape[0] - 1).long()
    return rgb[index]


REPEAT = 3  # each measurement runs this many times; the fastest run is reported (least disturbed by noise)


def _timed(name: str, backend: str, mode: str, workers: int, run: Callable[[random.Random], int],
           repeat: int = REPEAT) -> Measurement:  # fmt: skip
    """Times ``run(rng)`` (which returns the clips it produced) ``repeat`` times with the same seed; keeps the best."""
    clips = []

    def once() -> None:
        clips.append(run(random.Random(0)))

    seconds = seconds_per_call(once, iters=1, repeat=repeat)
    return Measurement(name, backend, mode, workers, clips[-1], seconds)


def _pyslowfast_train_frames(record: VideoRecord, sampling: ClipSampling, rng) -> torch.Tensor:
    return frames_to_clip(pyslowfast_pyav_clip(
        record.path, sampling.num_frames, sampling.sampling_rate, sampling.target_fps, -1, 1, sampling.use_offset, rng
    ))  # fmt: skip


def _test_frames(record: VideoRecord, dataset: MultiViewDataset, per_view: bool) -> int:
    """Decodes the frames of all temporal views (one request, or one open + request per view); returns views."""
    for only in range(dataset.num_clips) if per_view else [None]:
        dataset.read_clips(record, only)
    return dataset.num_views


def _pyslowfast_test_views(record: VideoRecord, dataset: MultiViewDataset, rng, full: bool) -> int:
    """PySlowFast's test path: one PyAV decode per temporal view (then, if ``full``, our resize/crop/normalise)."""
    sampling, views = dataset.sampling, 0
    for clip_idx in range(dataset.num_clips):
        frames = frames_to_clip(pyslowfast_pyav_clip(
            record.path, sampling.num_frames, sampling.sampling_rate, sampling.target_fps, clip_idx,
            dataset.num_clips, sampling.use_offset, rng,
        ))  # fmt: skip
        if full:  # PySlowFast's per-view computation is ours per video: the same function on one clip's frames
            views_from_frames(frames, range(len(frames)), [list(range(len(frames)))], dataset.spatial)
        views += dataset.num_crops
    return views


def measure_train(train: ClipDataset, num_videos: int, baseline: bool) -> list[Measurement]:
    """Training clips: decoding only, and the whole item (decode + augment), ours and PySlowFast's."""
    records, backend, sampling = train.records[:num_videos], train.decode.backend, train.sampling

    def ours_decode(rng):
        return sum(1 for r in records if train.read_clip(r, rng) is not None)

    def pyslowfast_decode(rng):
        return sum(1 for r in records if _pyslowfast_train_frames(r, sampling, rng) is not None)

    def pyslowfast_item(rng):
        return sum(1 for r in records if train.transform(_pyslowfast_train_frames(r, sampling, rng), rng) is not None)

    rows = [
        _timed("train decode", backend, "train", 0, ours_decode),
        _timed("train item", backend, "train", 0, lambda rng: sum(1 for i in range(len(records)) if train[i])),
    ]
    if baseline:
        rows += [
            _timed("pyslowfast train decode", "pyav", "train", 0, pyslowfast_decode),
            _timed("pyslowfast train item", "pyav", "train", 0, pyslowfast_item),
        ]
    return rows


def measure_test(test: MultiViewDataset, num_videos: int, baseline: bool) -> list[Measurement]:
    """Test views (clips = views): decoding only and whole items, decoded once per video vs once per view."""
    records, backend, n = test.records[:num_videos], test.decode.backend, min(num_videos, len(test))
    rows = [
        _timed("test decode, once", backend, "test", 0, lambda rng: sum(_test_frames(r, test, False) for r in records)),
        _timed("test decode, per view", backend, "test", 0, lambda rng: sum(_test_frames(r, test, True) for r in records)),
        _timed("test item, once", backend, "test", 0, lambda rng: sum(test[i]["video"].shape[0] for i in range(n))),
        _timed("test item, per view", backend, "test", 0,
               lambda rng: sum(test.views(r, c).shape[0] for r in records for c in range(test.num_clips))),
    ]  # fmt: skip
    if baseline:
        rows += [
            _timed("pyslowfast test decode", "pyav", "test", 0,
                   lambda rng: sum(_pyslowfast_test_views(r, test, rng, False) for r in records)),
            _timed("pyslowfast test item", "pyav", "test", 0,
                   lambda rng: sum(_pyslowfast_test_views(r, test, rng, True) for r in records)),
        ]  # fmt: skip
    return rows


AUG_VARIANTS = (("pyslowfast", "bicubic"), ("pyslowfast", "bilinear"), ("crop_first", "bicubic"),
                ("crop_first", "bilinear"))  # fmt: skip
GEOMETRIC_SIZES = ((256, 340), (224, 224))  # a Kinetics frame and a training crop


def measure_augmentation(cfg, train: ClipDataset, num_videos: int, per_clip: int = 2) -> list[Measurement]:
    """The training augmentation alone (clips decoded once beforehand), ``per_clip`` random draws per clip, for
    each (``AUG.ORDER``, ``AUG.INTERPOLATION``) in ``AUG_VARIANTS``; clips = augmented clips."""
    from ..data.loader import build_train_transform

    rng = random.Random(0)
    clips = [train.read_clip(r, rng) for r in train.records[:num_videos]]
    rows = []
    for order, interpolation in AUG_VARIANTS:
        variant = cfg.clone()
        variant.defrost()
        variant.AUG.ORDER, variant.AUG.INTERPOLATION = order, interpolation
        transform = build_train_transform(variant)

        def run(rng, transform=transform) -> int:
            return sum(1 for clip in clips for _ in range(per_clip) if transform(clip, rng) is not None)

        rows.append(_timed(f"augment {order} {interpolation}", "-", "train", 0, run))
    return rows


def _rotation_rows(clip: torch.Tensor, calls: int) -> list[Measurement]:
    import torchvision.transforms.v2.functional as TF

    from ..data.transforms import apply_augment_op

    def pil(name: str) -> Callable[[random.Random], int]:
        return lambda rng: sum(1 for _ in range(calls) if apply_augment_op(clip, "Rotate", 17.0, name) is not None)

    def tensor(rng: random.Random) -> int:
        return sum(1 for _ in range(calls) if TF.rotate(clip, 17.0, fill=[128.0] * clip.shape[1]) is not None)

    shape = f"{clip.shape[-1]}x{clip.shape[-2]}"
    rows = [_timed(f"rotate PIL {f} {shape}", "-", "op", 0, pil(f)) for f in ("nearest", "bilinear", "bicubic")]
    return rows + [_timed(f"rotate tensor bilinear {shape}", "-", "op", 0, tensor)]


def measure_geometric_ops(
    num_frames: int = 16, sizes: Sequence[tuple[int, int]] = GEOMETRIC_SIZES, calls: int = 5
) -> list[Measurement]:
    """A RandAugment rotation (17 degrees) of a ``num_frames`` clip, ``calls`` times: through PIL frame by frame (what
    runs, with each filter) and through torchvision's tensor ``rotate`` (bilinear; it has no bicubic); clips = calls."""
    rows = []
    for height, width in sizes:
        clip = torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
        rows += _rotation_rows(clip, calls)
    return rows


def measure_loader(loader: torch.utils.data.DataLoader, num_batches: int, backend: str, split: str) -> Measurement:
    """Clips (test: views) per second through a DataLoader with worker processes, total over the workers."""

    def run() -> int:
        clips = 0
        for b, batch in enumerate(loader):
            video = batch["video"]
            clips += video.shape[0] * (video.shape[1] if video.ndim == 6 else 1)
            if b + 1 >= num_batches:
                break
        return clips

    return _timed(f"{split} DataLoader", backend, split, loader.num_workers, lambda rng: run(), repeat=1)


def run_augmentation_benchmark(cfg, num_videos: int, per_clip: int = 2) -> list[Measurement]:
    """Augmentation per order and filter on the config's training clips, and the geometric op's cost."""
    from ..data.loader import build_dataset

    return measure_augmentation(cfg, build_dataset(cfg, "train"), num_videos, per_clip) + measure_geometric_ops()


def run_benchmark(cfg, backends: Sequence[str], workers: int, num_videos: int, baseline: bool = True) -> list[Measurement]:
    """Measures the train and test data paths of a config for each backend, and PySlowFast's PyAV path.

    Args:
        cfg: a loaded config (its DATA.* describe the dataset, clips and augmentation).
        backends: decoder backends to compare.
        workers: also measure a training DataLoader with this many worker processes (0: skip).
        num_videos: videos per measurement.
        baseline: include PySlowFast's PyAV decoding path (measured once, it does not depend on the backend).
    """
    from ..data.loader import build_dataset, build_loader

    rows = []
    for n, backend in enumerate(backends):
        run_cfg = cfg.clone()
        run_cfg.defrost()
        run_cfg.DATA.DECODING_BACKEND = backend
        train, test = build_dataset(run_cfg, "train"), build_dataset(run_cfg, "test")
        train.num_samples = 1
        rows += measure_train(train, num_videos, baseline and n == 0)
        rows += measure_test(test, num_videos, baseline and n == 0)
        if workers > 0:
            run_cfg.DATA_LOADER.NUM_WORKERS = workers
            for split in ("train", "test"):
                loader = build_loader(run_cfg, split)
                rows.append(measure_loader(loader, max(1, num_videos // loader.batch_size), backend, split))
    return rows


def format_table(rows: Sequence[Measurement]) -> str:
    """The measurements as an aligned text table."""
    header = f"{'measurement':<32}{'backend':<12}{'mode':<7}{'workers':>8}{'clips':>7}{'seconds':>9}{'clips/s':>9}"
    lines = [header + f"{'ms/clip':>9}"]
    for r in rows:
        ms = 1000 * r.seconds / r.clips if r.clips else float("nan")
        lines.append(
            f"{r.name:<32}{r.backend:<12}{r.mode:<7}{r.workers:>8}{r.clips:>7}{r.seconds:>9.2f}{r.clips_per_s:>9.2f}"
            f"{ms:>9.1f}"
        )
    return "\n".join(lines)


def _source_frames(path: str, size: tuple[int, int]) -> list[np.ndarray]:
    """All frames of a source video, resized (short side) and centre-cropped to ``size`` = (height, width)."""
    height, width = size
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            scale = max(height / frame.height, width / frame.width)
            w, h = max(width, round(frame.width * scale)), max(height, round(frame.height * scale))
            rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
            y0, x0 = (h - height) // 2, (w - width) // 2
            frames.append(rgb[y0 : y0 + height, x0 : x0 + width])
    return frames


def make_benchmark_videos(
    out_dir: str, sources: Sequence[str], num_videos: int = 20, size: tuple[int, int] = (256, 340),
    seconds: float = 10.0, fps: int = 30, gop: int = 250,
) -> list[str]:  # fmt: skip
    """Kinetics-like test material from real footage: ``num_videos`` clips of ``seconds`` at ``fps``, H.264
    with keyframe interval ``gop`` (x264's default 250 is what most downloaded Kinetics files have), each
    starting at another frame of the (looped) sources. Writes ``train.csv`` and ``test.csv`` (label 0).
    """
    import os

    os.makedirs(out_dir, exist_ok=True)
    pools = [_source_frames(s, size) for s in sources]
    length = int(seconds * fps)
    paths = []
    for n in range(num_videos):
        pool = pools[n % len(pools)]
        start = (n * 37) % len(pool)
        frames = [pool[(start + i) % len(pool)] for i in range(length)]
        path = os.path.join(out_dir, f"clip_{n:03d}.mp4")
        write_video(path, frames, fps, options={"crf": "23", "bf": "2"}, gop=gop)
        paths.append(path)
    for split in ("train", "test"):
        with open(os.path.join(out_dir, f"{split}.csv"), "w") as f:
            f.writelines(f"{os.path.basename(p)} 0\n" for p in paths)
    return paths
