"""Frame-index and crop-offset arithmetic for video clips, with PySlowFast's exact semantics.

Pure functions: they take plain numbers (and a ``random.Random`` where a choice is random) and return
indices; they never decode or read the config. The temporal recipes follow PySlowFast's
``decoder.get_start_end_idx`` + ``decoder.temporal_sampling`` (the path where the whole video's frames
are available, which is what an index-addressed reader gives), the SSv2 recipe follows
``ssv2.Ssv2.get_seq_frames``, and the spatial crops follow ``transform.uniform_crop``.
"""

from __future__ import annotations

import math
import random

import torch

__all__ = [
    "clip_indices_at",
    "clip_span",
    "spatial_crop_offsets",
    "test_clip_indices",
    "train_clip_indices",
    "uniform_segment_indices",
    "window_starts",
]


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"sampling: {name} must be > 0, got {value!r}")


def clip_span(clip_len: int, sampling_rate: int, video_fps: float, target_fps: float) -> float:
    """Number of source frames one clip covers, after converting ``video_fps`` to ``target_fps``.

    PySlowFast: ``max(1, sampling_rate * num_frames / target_fps * fps)`` (same operation order, so the
    same float).

    Args:
        clip_len: frames per clip (DATA.NUM_FRAMES).
        sampling_rate: stride between sampled frames at ``target_fps`` (DATA.SAMPLING_RATE).
        video_fps: the video's own frame rate.
        target_fps: the frame rate the stride is expressed in (DATA.TARGET_FPS).

    Returns:
        The span in source frames (a float, possibly fractional).
    """
    _check_positive(clip_len=clip_len, sampling_rate=sampling_rate, video_fps=video_fps, target_fps=target_fps)
    return max(1.0, sampling_rate * clip_len / target_fps * video_fps)


def _indices_from_start(start: float, span: float, clip_len: int, num_video_frames: int) -> list[int]:
    # PySlowFast temporal_sampling: float32 linspace, clamp to the video, truncate to int.
    index = torch.linspace(start, start + span - 1, clip_len, dtype=torch.float32)
    return torch.clamp(index, 0, num_video_frames - 1).long().tolist()


def train_clip_indices(
    num_video_frames: int,
    clip_len: int,
    sampling_rate: int,
    video_fps: float,
    target_fps: float,
    rng: random.Random,
) -> list[int]:
    """Frame indices of one randomly placed training clip.

    The start is uniform in ``[0, max(num_video_frames - span, 0)]``; ``clip_len`` indices are spread
    evenly over ``[start, start + span - 1]`` and clamped to the video, so videos shorter than the span
    repeat their last frames exactly as PySlowFast does.

    Args:
        num_video_frames: frames in the video (decode order).
        clip_len: frames per clip.
        sampling_rate: stride at ``target_fps``.
        video_fps: the video's frame rate.
        target_fps: the rate the stride is expressed in.
        rng: source of the one random draw (the start).

    Returns:
        ``clip_len`` non-decreasing frame indices in ``[0, num_video_frames - 1]``.
    """
    _check_positive(num_video_frames=num_video_frames)
    span = clip_span(clip_len, sampling_rate, video_fps, target_fps)
    delta = max(num_video_frames - span, 0)
    start = rng.uniform(0, delta)
    return _indices_from_start(start, span, clip_len, num_video_frames)


def _test_start(delta: float, clip_idx: int, num_clips: int, use_offset: bool) -> float:
    if not use_offset:
        return delta * clip_idx / num_clips
    if num_clips == 1:
        return math.floor(delta / 2)
    return clip_idx * math.floor(delta / (num_clips - 1))


def test_clip_indices(
    num_video_frames: int,
    clip_len: int,
    sampling_rate: int,
    video_fps: float,
    target_fps: float,
    num_clips: int,
    use_offset: bool,
) -> list[list[int]]:
    """Frame indices of ``num_clips`` uniformly placed test views (TEST.NUM_ENSEMBLE_VIEWS).

    With ``delta = max(num_video_frames - span, 0)``, view ``k`` starts at ``delta * k / num_clips``
    (PySlowFast default; one view therefore starts at frame 0), or with ``use_offset``
    (DATA.USE_OFFSET_SAMPLING) at ``k * floor(delta / (num_clips - 1))`` so the first and last views
    touch both ends, and a single view sits at ``floor(delta / 2)``.

    Args:
        num_video_frames: frames in the video.
        clip_len: frames per clip.
        sampling_rate: stride at ``target_fps``.
        video_fps: the video's frame rate.
        target_fps: the rate the stride is expressed in.
        num_clips: number of temporal views.
        use_offset: PySlowFast's DATA.USE_OFFSET_SAMPLING.

    Returns:
        One list of ``clip_len`` indices per view, in view order.
    """
    _check_positive(num_video_frames=num_video_frames, num_clips=num_clips)
    span = clip_span(clip_len, sampling_rate, video_fps, target_fps)
    delta = max(num_video_frames - span, 0)
    return [
        _indices_from_start(_test_start(delta, k, num_clips, use_offset), span, clip_len, num_video_frames)
        for k in range(num_clips)
    ]


test_clip_indices.__test__ = False  # not a pytest test, though its name starts with "test"


def clip_indices_at(
    start: float, num_video_frames: int, clip_len: int, sampling_rate: int, video_fps: float, target_fps: float
) -> list[int]:
    """Frame indices of the clip that starts at source frame ``start`` (may be fractional), by the rule every
    test view follows (``test_clip_indices`` with its start given): ``clip_len`` indices spread evenly over
    ``[start, start + span - 1]``, clamped to the video and truncated.

    Args:
        start: the clip's first (possibly fractional) source frame, >= 0.
        num_video_frames: frames in the video.
        clip_len: frames per clip.
        sampling_rate: stride at ``target_fps``.
        video_fps: the video's frame rate.
        target_fps: the rate the stride is expressed in.
    """
    _check_positive(num_video_frames=num_video_frames)
    if start < 0:
        raise ValueError(f"sampling: start must be >= 0, got {start!r}")
    span = clip_span(clip_len, sampling_rate, video_fps, target_fps)
    return _indices_from_start(start, span, clip_len, num_video_frames)


def window_starts(num_video_frames: int, span: float, stride: float) -> list[float]:
    """Starts (source frames) of sliding windows of ``span`` frames every ``stride`` frames: ``k * stride`` for
    every k whose window ends inside the video, at least one (a video shorter than a window gets one at 0)."""
    _check_positive(num_video_frames=num_video_frames, span=span, stride=stride)
    last = max(num_video_frames - span, 0.0)
    count = math.floor(last / stride + 1e-9) + 1  # the tolerance keeps k * stride == last for float strides
    return [k * stride for k in range(count)]


def uniform_segment_indices(
    num_video_frames: int, clip_len: int, train: bool, rng: random.Random | None = None
) -> list[int]:
    """SSv2-style sampling: one frame from each of ``clip_len`` equal segments of the whole video.

    Segment ``i`` spans ``[round(s * i), round(s * (i + 1))]`` with ``s = (num_video_frames - 1) / clip_len``
    (round half to even, like ``np.round``); training takes a uniformly random frame in it (both ends
    included), testing takes its middle ``(start + end) // 2``.

    Args:
        num_video_frames: frames in the video.
        clip_len: frames per clip (= number of segments).
        train: random frame per segment if True, middle frame otherwise.
        rng: source of the random draws; required when ``train`` is True.

    Returns:
        ``clip_len`` non-decreasing frame indices.
    """
    _check_positive(num_video_frames=num_video_frames, clip_len=clip_len)
    if train and rng is None:
        raise ValueError("uniform_segment_indices: train=True needs rng (a random.Random)")
    seg_size = (num_video_frames - 1) / clip_len
    indices = []
    for i in range(clip_len):
        start, end = round(seg_size * i), round(seg_size * (i + 1))
        indices.append(rng.randint(start, end) if train else (start + end) // 2)
    return indices


def spatial_crop_offsets(height: int, width: int, crop_size: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of the test-time spatial crops (TEST.NUM_SPATIAL_CROPS).

    One crop is the centre crop (``ceil((side - crop_size) / 2)`` on both axes). Three crops slide along
    the long side: left/centre/right when ``width >= height``, top/centre/bottom when ``height > width``
    (PySlowFast ``uniform_crop`` with spatial_idx 0, 1, 2).

    Args:
        height: frame height (after the short side was resized to ``crop_size``, as in PySlowFast).
        width: frame width.
        crop_size: side of the square crop.
        num_crops: 1 or 3.

    Returns:
        ``num_crops`` ``(y0, x0)`` tuples.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"spatial_crop_offsets: num_crops must be 1 or 3 (TEST.NUM_SPATIAL_CROPS), got {num_crops}")
    if not 0 < crop_size <= min(height, width):
        raise ValueError(f"spatial_crop_offsets: crop_size {crop_size} does not fit a {height}x{width} frame")
    y_mid, x_mid = math.ceil((height - crop_size) / 2), math.ceil((width - crop_size) / 2)
    if num_crops == 1:
        return [(y_mid, x_mid)]
    if height > width:
        return [(0, x_mid), (y_mid, x_mid), (height - crop_size, x_mid)]
    return [(y_mid, 0), (y_mid, x_mid), (y_mid, width - crop_size)]
