"""Frame-index and crop-offset arithmetic against PySlowFast's formulas.

The first tests use values worked out on paper from PySlowFast's formulas (decoder.get_start_end_idx,
decoder.temporal_sampling, ssv2.get_seq_frames, transform.uniform_crop); the comment above each case shows the
numbers. The sweeps at the end compare with ``tests/data/pyslowfast_reference.py``, an independent re-derivation of
the same formulas, over thousands of (frames, fps, target fps, sampling rate, clip length, views, offset) cases.
"""

from __future__ import annotations

import itertools
import random

import pytest

from mvit_video.data.sampling import (
    clip_span,
    spatial_crop_offsets,
    test_clip_indices,
    train_clip_indices,
    uniform_segment_indices,
)
from tests.data import pyslowfast_reference as ref


class FixedUniform:
    """An rng whose uniform(a, b) returns a + (b - a) * u, to pin the random start."""

    def __init__(self, u: float) -> None:
        self.u = u

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.u


class SegmentEnds:
    """An rng whose randint(a, b) always returns a (low=True) or b."""

    def __init__(self, low: bool) -> None:
        self.low = low

    def randint(self, a: int, b: int) -> int:
        return a if self.low else b


# span 64 at 30 -> 30 fps; step (64 - 1) / 15 = 4.2: start + 4.2 * i, truncated.
FROM_0 = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46, 50, 54, 58, 63]
FROM_118 = [118, 122, 126, 130, 134, 139, 143, 147, 151, 155, 160, 164, 168, 172, 176, 181]


def test_clip_span_converts_fps() -> None:
    assert clip_span(16, 4, 30, 30) == 64.0
    assert clip_span(16, 4, 25, 30) == pytest.approx(53.3333333)  # 64 / 30 * 25
    assert clip_span(16, 4, 60, 30) == 128.0
    assert clip_span(1, 1, 1, 30) == 1.0  # never below one frame


def test_train_same_fps_centre_start() -> None:
    # n = 300, delta = 236, u = 0.5 -> start 118, end 181.
    assert train_clip_indices(300, 16, 4, 30, 30, FixedUniform(0.5)) == FROM_118


def test_train_same_fps_ends() -> None:
    assert train_clip_indices(300, 16, 4, 30, 30, FixedUniform(0.0)) == FROM_0
    # u = 1: start 236, end 299 (the last frame).
    assert train_clip_indices(300, 16, 4, 30, 30, FixedUniform(1.0)) == [
        236, 240, 244, 248, 252, 257, 261, 265, 269, 273, 278, 282, 286, 290, 294, 299,
    ]  # fmt: skip


def test_train_25_to_30_fps() -> None:
    # span 53.333, delta 246.667, u = 0.5 -> start 123.333, step 52.333 / 15 = 3.4889.
    assert train_clip_indices(300, 16, 4, 25, 30, FixedUniform(0.5)) == [
        123, 126, 130, 133, 137, 140, 144, 147, 151, 154, 158, 161, 165, 168, 172, 175,
    ]  # fmt: skip
    # u = 0 -> 0, 3.49, 6.98, 10.47, ...
    assert train_clip_indices(300, 16, 4, 25, 30, FixedUniform(0.0)) == [
        0, 3, 6, 10, 13, 17, 20, 24, 27, 31, 34, 38, 41, 45, 48, 52,
    ]  # fmt: skip


def test_train_short_video_clamps_to_last_frame() -> None:
    # n = 40 < span 64: delta 0, start 0, indices 0, 4.2, ... clamped at 39.
    expected = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 39, 39, 39, 39, 39, 39]
    assert train_clip_indices(40, 16, 4, 30, 30, FixedUniform(0.7)) == expected
    # n = 10, 8 frames at stride 8: linspace(0, 63, 8) = 0, 9, 18, ... -> 0 then 9 repeated.
    assert train_clip_indices(10, 8, 8, 30, 30, FixedUniform(0.3)) == [0, 9, 9, 9, 9, 9, 9, 9]
    assert train_clip_indices(1, 4, 2, 30, 30, FixedUniform(0.3)) == [0, 0, 0, 0]


def test_train_seeded_rng_is_reproducible_and_in_range() -> None:
    first = [train_clip_indices(300, 16, 4, 30, 30, random.Random(s)) for s in range(20)]
    again = [train_clip_indices(300, 16, 4, 30, 30, random.Random(s)) for s in range(20)]
    assert first == again
    for idx in first:
        assert idx == sorted(idx) and 0 <= idx[0] <= 236 and idx[-1] - idx[0] in (62, 63) and idx[-1] <= 299
    assert len({tuple(i) for i in first}) > 1


def test_test_views_without_offset() -> None:
    # delta 236; view k starts at 236 * k / 5 = 0, 47.2, 94.4, 141.6, 188.8.
    views = test_clip_indices(300, 16, 4, 30, 30, 5, use_offset=False)
    assert views == [
        FROM_0,
        [47, 51, 55, 59, 64, 68, 72, 76, 80, 85, 89, 93, 97, 101, 106, 110],
        [94, 98, 102, 107, 111, 115, 119, 123, 128, 132, 136, 140, 144, 149, 153, 157],
        [141, 145, 150, 154, 158, 162, 166, 171, 175, 179, 183, 187, 192, 196, 200, 204],
        [188, 193, 197, 201, 205, 209, 214, 218, 222, 226, 230, 235, 239, 243, 247, 251],
    ]


def test_test_views_with_offset() -> None:
    # step floor(236 / 4) = 59: starts 0, 59, 118, 177, 236 (last view ends on the last frame).
    views = test_clip_indices(300, 16, 4, 30, 30, 5, use_offset=True)
    assert views == [
        FROM_0,
        [59, 63, 67, 71, 75, 80, 84, 88, 92, 96, 101, 105, 109, 113, 117, 122],
        FROM_118,
        [177, 181, 185, 189, 193, 198, 202, 206, 210, 214, 219, 223, 227, 231, 235, 240],
        [236, 240, 244, 248, 252, 257, 261, 265, 269, 273, 278, 282, 286, 290, 294, 299],
    ]


def test_single_view_start_depends_on_offset() -> None:
    # Without offset one view starts at 236 * 0 / 1 = 0; with offset at floor(236 / 2) = 118.
    assert test_clip_indices(300, 16, 4, 30, 30, 1, use_offset=False) == [FROM_0]
    assert test_clip_indices(300, 16, 4, 30, 30, 1, use_offset=True) == [FROM_118]


def test_test_views_25_to_30_fps() -> None:
    # n = 100, 8 x 8: span 53.333, delta 46.667, step 52.333 / 7 = 7.476.
    no_offset = test_clip_indices(100, 8, 8, 25, 30, 3, use_offset=False)  # starts 0, 15.556, 31.111
    assert no_offset == [
        [0, 7, 14, 22, 29, 37, 44, 52],
        [15, 23, 30, 37, 45, 52, 60, 67],
        [31, 38, 46, 53, 61, 68, 75, 83],
    ]
    offset = test_clip_indices(100, 8, 8, 25, 30, 3, use_offset=True)  # starts 0, 23, 46
    assert offset == [
        [0, 7, 14, 22, 29, 37, 44, 52],
        [23, 30, 37, 45, 52, 60, 67, 75],
        [46, 53, 60, 68, 75, 83, 90, 98],
    ]


def test_test_views_short_video_all_identical() -> None:
    short = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 39, 39, 39, 39, 39, 39]
    for use_offset in (False, True):
        assert test_clip_indices(40, 16, 4, 30, 30, 3, use_offset) == [short] * 3


def test_ssv2_test_takes_segment_middles() -> None:
    # n = 50, 8 segments of 49 / 8 = 6.125: bounds 0, 6, 12, 18, 24 (24.5 rounds to even), 31, 37, 43, 49.
    assert uniform_segment_indices(50, 8, train=False) == [3, 9, 15, 21, 27, 34, 40, 46]
    # n = 5: segment 0.5, bounds 0, 0, 1, 2, 2, 2, 3, 4, 4 -> frames repeat.
    assert uniform_segment_indices(5, 8, train=False) == [0, 0, 1, 2, 2, 2, 3, 4]


def test_ssv2_train_draws_within_segments() -> None:
    assert uniform_segment_indices(50, 8, train=True, rng=SegmentEnds(low=True)) == [0, 6, 12, 18, 24, 31, 37, 43]
    assert uniform_segment_indices(50, 8, train=True, rng=SegmentEnds(low=False)) == [6, 12, 18, 24, 31, 37, 43, 49]
    drawn = uniform_segment_indices(50, 8, train=True, rng=random.Random(3))
    bounds = [0, 6, 12, 18, 24, 31, 37, 43, 49]
    assert all(bounds[i] <= f <= bounds[i + 1] for i, f in enumerate(drawn))


def test_ssv2_train_needs_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        uniform_segment_indices(50, 8, train=True)


def test_spatial_crop_offsets_landscape_and_portrait() -> None:
    # 256 x 340 landscape, crop 256: x slides 0, ceil(84 / 2) = 42, 84.
    assert spatial_crop_offsets(256, 340, 256, 3) == [(0, 0), (0, 42), (0, 84)]
    assert spatial_crop_offsets(256, 340, 256, 1) == [(0, 42)]
    # Portrait: y slides instead.
    assert spatial_crop_offsets(340, 256, 256, 3) == [(0, 0), (42, 0), (84, 0)]
    # Odd margin rounds up for the centre (ceil(77 / 2) = 39); square frames slide along x (all 0).
    assert spatial_crop_offsets(224, 301, 224, 1) == [(0, 39)]
    assert spatial_crop_offsets(224, 224, 224, 3) == [(0, 0)] * 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: spatial_crop_offsets(256, 340, 224, 2), "num_crops must be 1 or 3"),
        (lambda: spatial_crop_offsets(200, 340, 224, 3), "does not fit"),
        (lambda: train_clip_indices(0, 16, 4, 30, 30, random.Random(0)), "num_video_frames"),
        (lambda: test_clip_indices(100, 16, 4, 0, 30, 1, False), "video_fps"),
    ],
)
def test_errors_are_one_clear_line(call, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------- sweeps against the re-derivation
# Frame counts around the clip spans (63/64/65 for 16 x 4 at 30 fps), short, odd and long videos; real frame rates.
NUM_VIDEO_FRAMES = (1, 7, 40, 53, 63, 64, 65, 150, 301, 601)
VIDEO_FPS = (12.0, 23.976, 25.0, 29.97, 30.0, 50.0, 59.94)
TARGET_FPS = (15.0, 25.0, 30.0)


def test_train_indices_equal_pyslowfast_sweep() -> None:
    # 3360 cases x 2 random starts; length 1 at 12 -> 30 fps has a span below one frame (clamped to 1)
    for n, fps, target, rate, length in itertools.product(NUM_VIDEO_FRAMES, VIDEO_FPS, TARGET_FPS, (1, 2, 4, 8),
                                                          (1, 4, 16, 32)):  # fmt: skip
        for seed in (0, 1):
            ours = train_clip_indices(n, length, rate, fps, target, random.Random(seed))
            assert ours == ref.decode_indices(n, length, rate, fps, target, -1, 1, False, random.Random(seed)), (
                n, fps, target, rate, length, seed,
            )  # fmt: skip


def test_test_indices_equal_pyslowfast_sweep() -> None:
    # 9450 cases, with and without DATA.USE_OFFSET_SAMPLING
    cases = list(itertools.product(NUM_VIDEO_FRAMES, VIDEO_FPS, TARGET_FPS, (1, 2, 4), (4, 16, 32), (1, 2, 3, 5, 10)))
    for (n, fps, target, rate, length, views), use_offset in itertools.product(cases, (False, True)):
        expected = [ref.decode_indices(n, length, rate, fps, target, k, views, use_offset) for k in range(views)]
        assert test_clip_indices(n, length, rate, fps, target, views, use_offset) == expected, (
            n, fps, target, rate, length, views, use_offset,
        )  # fmt: skip


def test_ssv2_segments_equal_pyslowfast_sweep() -> None:
    for n, length in itertools.product(range(1, 200), (1, 4, 8, 16, 32)):
        assert uniform_segment_indices(n, length, train=False) == ref.seq_frames(n, length, train=False), (n, length)
        for seed in (0, 1):
            ours = uniform_segment_indices(n, length, train=True, rng=random.Random(seed))
            assert ours == ref.seq_frames(n, length, train=True, rng=random.Random(seed)), (n, length, seed)


def test_crop_offsets_equal_uniform_crop_sweep() -> None:
    sides = (16, 17, 31, 32, 48, 63, 144, 176, 224, 225, 256, 297, 340)
    for height, width, size in itertools.product(sides, sides, (16, 31, 32, 224)):
        if size > min(height, width):
            continue
        three = [ref.uniform_crop_offsets(height, width, size, idx) for idx in range(3)]
        assert spatial_crop_offsets(height, width, size, 3) == three, (height, width, size)
        # one crop: PySlowFast's test loader passes spatial_idx 1 when TEST.NUM_SPATIAL_CROPS is 1
        assert spatial_crop_offsets(height, width, size, 1) == three[1:2], (height, width, size)
