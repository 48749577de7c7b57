"""Video datasets for Kinetics-style CSV splits and Something-Something v2.

``ClipDataset`` (training): one randomly sampled, augmented clip per item (``num_samples`` > 1 decodes once and
augments several times: repeated augmentation). ``MultiViewDataset`` (validation and test): one item per video
carrying all its temporal x spatial views, decoded once. Unreadable videos are recorded in a ``BadVideoLog``:
training replaces them with another sample, evaluation marks the item ``valid=False``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .badfiles import BadVideoLog, load_or_replace
from .decode import VideoDecodeError, open_video
from .records import DatasetError, VideoRecord
from .sampling import clip_span, spatial_crop_offsets, test_clip_indices, train_clip_indices, uniform_segment_indices
from .transforms import normalize_, short_side_interpolate

# (T, C, H, W) uint8 clip and a random source -> (C, T, H, W) float clip
ClipTransform = Callable[[torch.Tensor, random.Random], torch.Tensor]


@dataclass(frozen=True)
class ClipSampling:
    """Which frames make a clip.

    Attributes:
        num_frames: frames per clip (``DATA.NUM_FRAMES``).
        sampling_rate: stride between them at ``target_fps`` (``DATA.SAMPLING_RATE``).
        target_fps: frame rate the stride refers to (``DATA.TARGET_FPS``); rescaled to each video's fps.
        uniform: sample one frame per equal segment of the whole video instead (the SSv2 recipe).
        use_offset: test-clip placement (``DATA.USE_OFFSET_SAMPLING``).
    """

    num_frames: int
    sampling_rate: int
    target_fps: float = 30.0
    uniform: bool = False
    use_offset: bool = False

    def _fps(self, fps: float) -> float:
        """A file without frame-rate metadata is taken to run at ``target_fps`` (its frames are used as they are)."""
        return fps if fps > 0 else self.target_fps

    def span(self, fps: float) -> float:
        """Source frames one clip covers in a video of this frame rate (``sampling.clip_span``)."""
        return clip_span(self.num_frames, self.sampling_rate, self._fps(fps), self.target_fps)

    def train_indices(self, num_video_frames: int, fps: float, rng: random.Random) -> list[int]:
        fps = self._fps(fps)
        if self.uniform:
            return uniform_segment_indices(num_video_frames, self.num_frames, train=True, rng=rng)
        return train_clip_indices(num_video_frames, self.num_frames, self.sampling_rate, fps, self.target_fps, rng)

    def test_indices(self, num_video_frames: int, fps: float, num_clips: int) -> list[list[int]]:
        fps = self._fps(fps)
        if self.uniform:
            return [uniform_segment_indices(num_video_frames, self.num_frames, train=False)] * num_clips
        return test_clip_indices(
            num_video_frames, self.num_frames, self.sampling_rate, fps, self.target_fps, num_clips, self.use_offset
        )


@dataclass(frozen=True)
class DecodeOptions:
    """How videos are opened: backend name and decoder threads per reader."""

    backend: str = "decord"
    num_threads: int = 1


def frames_to_clip(frames: torch.Tensor) -> torch.Tensor:
    """Decoder output (T, H, W, 3) uint8 -> (T, 3, H, W) uint8, the layout the transforms use."""
    return frames.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class SpatialViews:
    """The spatial side of evaluation views: PySlowFast's ``spatial_sampling`` with a fixed scale.

    Frames are normalised, resized so their short side is ``short_side`` (``F.interpolate`` bilinear, no
    antialiasing, long side floored) and cut into ``num_crops`` square crops (``spatial_crop_offsets``).

    Attributes:
        short_side: the resized short side. PySlowFast's test: ``DATA.TRAIN_JITTER_SCALES[0]`` with one crop,
            ``DATA.TEST_CROP_SIZE`` with three (SSv2: always ``TEST_CROP_SIZE``); see ``loader.spatial_views``.
        crop_size: side of the crops.
        num_crops: 1 (centre) or 3 (along the long side: left/centre/right or top/centre/bottom).
        mean, std: normalisation (``DATA.MEAN`` / ``DATA.STD``).
        reverse_channels: RGB -> BGR after normalisation (``DATA.REVERSE_INPUT_CHANNEL``).
    """

    short_side: int
    crop_size: int
    num_crops: int = 1
    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    std: tuple[float, ...] = (0.225, 0.225, 0.225)
    reverse_channels: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.crop_size <= self.short_side:
            raise ValueError(f"SpatialViews: crop_size {self.crop_size} must be in (0, short_side={self.short_side}]")
        if self.num_crops not in (1, 3):
            raise ValueError(f"SpatialViews: num_crops must be 1 or 3 (TEST.NUM_SPATIAL_CROPS), got {self.num_crops}")


_RESIZE_CHUNK = 32  # frames normalised and resized at a time (bounds the full-size float copy)


def _normalised_resized(frames: torch.Tensor, spatial: SpatialViews) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, H', W') float32: PySlowFast's test arithmetic, normalise then resize."""
    out = None
    for start in range(0, frames.shape[0], _RESIZE_CHUNK):
        part = frames[start : start + _RESIZE_CHUNK].to(torch.float32, memory_format=torch.contiguous_format)
        normalize_(part.transpose(0, 1), spatial.mean, spatial.std)  # in place, through a (C, N, H, W) view
        part = short_side_interpolate(part, spatial.short_side)
        if start == 0 and len(part) == frames.shape[0]:
            return part
        if out is None:
            out = torch.empty(frames.shape[0], *part.shape[1:])
        out[start : start + len(part)] = part
    return out


def views_from_frames(
    frames: torch.Tensor, wanted: Sequence[int], clips: Sequence[Sequence[int]], spatial: SpatialViews
) -> torch.Tensor:
    """The evaluation views of decoded frames: each frame normalised and resized once, then each clip cut into
    ``spatial.num_crops`` square crops.

    Equals PySlowFast's test-time computation per view (``tensor_normalize``, ``random_short_side_scale_jitter``
    with min = max = ``short_side``, ``uniform_crop``) up to float rounding.

    Args:
        frames: (N, C, H, W) uint8, the frames at the sorted unique indices ``wanted``.
        wanted: the frame index of each of ``frames``.
        clips: per temporal clip, its frame indices (each in ``wanted``).
        spatial: resize, crops and normalisation.

    Returns:
        float32 (len(clips) * num_crops, C, T, crop_size, crop_size), clip-major.
    """
    video = _normalised_resized(frames, spatial)
    position = {frame: i for i, frame in enumerate(wanted)}
    size = spatial.crop_size
    offsets = spatial_crop_offsets(video.shape[2], video.shape[3], size, spatial.num_crops)
    views = torch.empty(len(clips) * len(offsets), video.shape[1], len(clips[0]), size, size)
    for c, clip in enumerate(clips):
        clip_frames = video[[position[i] for i in clip]]  # (T, C, H', W')
        for o, (y0, x0) in enumerate(offsets):
            views[c * len(offsets) + o].copy_(clip_frames[:, :, y0 : y0 + size, x0 : x0 + size].transpose(0, 1))
    return views.flip(1) if spatial.reverse_channels else views


class ClipDataset(Dataset):
    """Training clips: random temporal position, augmented by ``transform``; bad videos replaced.

    Args:
        records: the split's videos.
        sampling: clip sampling rule.
        transform: augmentation + normalisation of one clip.
        bad_log: where unreadable videos are recorded.
        decode: backend options.
        num_samples: clips per decoded video (``AUG.NUM_SAMPLE``); items then hold (N, C, T, H, W).
        seed: base of the per-item random streams (with the epoch and index, so any worker draws the same).
        max_retries: other videos tried after a bad one before giving up.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampling: ClipSampling,
        transform: ClipTransform,
        bad_log: BadVideoLog,
        decode: DecodeOptions = DecodeOptions(),
        num_samples: int = 1,
        seed: int = 0,
        max_retries: int = 10,
    ) -> None:
        self.records = list(records)
        self.sampling, self.transform, self.bad_log, self.decode = sampling, transform, bad_log, decode
        self.num_samples, self.seed, self.max_retries = num_samples, seed, max_retries
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Changes the random streams for a new epoch (call before creating the epoch's iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def read_clip(self, record: VideoRecord, rng: random.Random) -> torch.Tensor:
        """The frames of one randomly placed training clip, (T, C, H, W) uint8, before augmentation."""
        with open_video(record.path, self.decode.backend, self.decode.num_threads) as reader:
            indices = self.sampling.train_indices(reader.num_frames, reader.fps, rng)
            return frames_to_clip(reader.get_frames(indices))

    def _load(self, index: int, rng: random.Random) -> torch.Tensor:
        clip = self.read_clip(self.records[index], rng)
        views = [self.transform(clip, rng) for _ in range(self.num_samples)]
        return views[0] if self.num_samples == 1 else torch.stack(views)

    def _on_bad(self, index: int, error: VideoDecodeError) -> None:
        self.bad_log.record(self.records[index].path, error.reason)

    def __getitem__(self, index: int) -> dict:
        index, video = load_or_replace(
            index, len(self), self._load, self._on_bad, (VideoDecodeError,), f"{self.seed}-{self.epoch}",
            self.max_retries,
        )  # fmt: skip
        return {"video": video, "label": self.records[index].label, "index": index}


class MultiViewDataset(Dataset):
    """Evaluation: every temporal clip x spatial crop of a video, decoded and resized once per video.

    Frames of all temporal clips are read in one sorted request, normalised and resized once (``views_from_frames``);
    then each clip is cut into ``spatial.num_crops`` crops.

    Args:
        records: the split's videos.
        sampling: clip sampling rule.
        num_clips: temporal views (``TEST.NUM_ENSEMBLE_VIEWS``).
        spatial: resize, crops and normalisation of the views (``loader.spatial_views``).
        bad_log: where unreadable videos are recorded.
        decode: backend options.
        single_view: return (C, T, H, W) instead of (1, C, T, H, W) when there is one view (validation).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampling: ClipSampling,
        num_clips: int,
        spatial: SpatialViews,
        bad_log: BadVideoLog,
        decode: DecodeOptions = DecodeOptions(),
        single_view: bool = False,
    ) -> None:
        self.records = list(records)
        self.sampling, self.num_clips, self.spatial = sampling, num_clips, spatial
        self.bad_log, self.decode = bad_log, decode
        self.single_view = single_view and self.num_views == 1

    @property
    def num_crops(self) -> int:
        return self.spatial.num_crops

    @property
    def crop_size(self) -> int:
        return self.spatial.crop_size

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.records)

    def read_clips(self, record: VideoRecord, only_clip: int | None = None) -> tuple[torch.Tensor, list, list]:
        """Decodes the frames of all temporal clips in one sorted request (or of ``only_clip`` alone).

        Returns:
            frames (N, C, H, W) uint8 for the sorted unique frame indices ``wanted``, and the clips' index lists.
        """
        with open_video(record.path, self.decode.backend, self.decode.num_threads) as reader:
            clips = self.sampling.test_indices(reader.num_frames, reader.fps, self.num_clips)
            if only_clip is not None:
                clips = clips[only_clip : only_clip + 1]
            wanted = sorted({i for clip in clips for i in clip})
            return frames_to_clip(reader.get_frames(wanted)), wanted, clips

    def views(self, record: VideoRecord, only_clip: int | None = None) -> torch.Tensor:
        """All views of one video, (V, C, T, H, W); with ``only_clip``, just that temporal clip's crops."""
        frames, wanted, clips = self.read_clips(record, only_clip)
        return views_from_frames(frames, wanted, clips, self.spatial)

    def empty_views(self) -> torch.Tensor:
        t = self.sampling.num_frames
        return torch.zeros(self.num_views, 3, t, self.crop_size, self.crop_size)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            video, valid, error = self.views(record), True, ""
        except VideoDecodeError as e:
            self.bad_log.record(record.path, e.reason)
            video, valid, error = self.empty_views(), False, e.reason
        if self.single_view:
            video = video[0]
        return {"video": video, "label": record.label, "index": index, "valid": valid, "error": error}


class FixedClipDataset(Dataset):
    """The sanity-check training set (``TRAIN.OVERFIT_CLIPS``): the same clip of each video every epoch, without
    augmentation -- the single evaluation view of ``views`` (a centred temporal clip, short side resized, centre crop).

    A model that cannot drive the loss on a handful of such clips to ~0 has a bug in its data, labels or recipe.

    Args:
        views: a ``MultiViewDataset`` with one view per video over the chosen records.
    """

    def __init__(self, views: MultiViewDataset) -> None:
        if views.num_views != 1:
            raise ValueError(f"FixedClipDataset needs one view per video, got {views.num_views}")
        self.views = views
        self.records = views.records

    def set_epoch(self, epoch: int) -> None:
        """Nothing changes between epochs (the training loop calls it)."""

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            video = self.views.views(record)[0]
        except VideoDecodeError as e:
            raise DatasetError(f"TRAIN.OVERFIT_CLIPS: {record.path} cannot be decoded ({e.reason}); remove it from "
                               "the training split") from None  # fmt: skip
        return {"video": video, "label": record.label, "index": index}
