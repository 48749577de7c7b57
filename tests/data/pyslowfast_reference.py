"""PySlowFast's data protocols re-derived for the tests, independently of ``mvit_video.data``.

Each function is written from PySlowFast's formulas (``datasets/decoder.py``, ``ssv2.py``, ``transform.py``,
``utils.py``, ``kinetics.py``, ``imagenet.py``), in PySlowFast's order of operations and layouts, using only torch,
numpy, PIL, torchvision and timm: the code under test is never called, so a test comparing the two can fail.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------- temporal sampling


def start_end_idx(video_size: float, clip_size: float, clip_idx: int, num_clips: int, use_offset: bool,
                  rng: random.Random | None = None) -> tuple[float, float]:  # fmt: skip
    """``decoder.get_start_end_idx``: clip_idx -1 draws the start uniformly (from ``rng``)."""
    delta = max(video_size - clip_size, 0)
    if clip_idx == -1:
        start = rng.uniform(0, delta)
    elif use_offset:
        start = math.floor(delta / 2) if num_clips == 1 else clip_idx * math.floor(delta / (num_clips - 1))
    else:
        start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def temporal_sampling(start: float, end: float, num_samples: int, num_video_frames: int) -> list[int]:
    """``decoder.temporal_sampling``'s index: a float32 linspace, clamped to the video, truncated."""
    index = torch.linspace(start, end, num_samples)
    return torch.clamp(index, 0, num_video_frames - 1).long().tolist()


def decode_indices(
    num_video_frames: int, num_frames: int, sampling_rate: int, fps: float, target_fps: float, clip_idx: int,
    num_clips: int, use_offset: bool, rng: random.Random | None = None,
) -> list[int]:  # fmt: skip
    """``decoder.decode`` on a fully decoded video: the frame indices of clip ``clip_idx`` (-1: random)."""
    clip_size = float(np.maximum(1.0, sampling_rate * num_frames / target_fps * fps))
    start, end = start_end_idx(num_video_frames, clip_size, clip_idx, num_clips, use_offset, rng)
    return temporal_sampling(start, end, num_frames, num_video_frames)


def seq_frames(video_length: int, num_frames: int, train: bool, rng: random.Random | None = None) -> list[int]:
    """``ssv2.Ssv2.get_seq_frames``: one frame per segment (random in training, the middle otherwise)."""
    seg_size = float(video_length - 1) / num_frames
    seq = []
    for i in range(num_frames):
        start, end = int(np.round(seg_size * i)), int(np.round(seg_size * (i + 1)))
        seq.append(rng.randint(start, end) if train else (start + end) // 2)
    return seq


# --------------------------------------------------------------------------------------------- spatial, test


def uniform_crop_offsets(height: int, width: int, size: int, spatial_idx: int) -> tuple[int, int]:
    """``transform.uniform_crop``: (y_offset, x_offset) of crop ``spatial_idx`` in 0, 1, 2."""
    y_offset, x_offset = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if height > width:
        y_offset = {0: 0, 1: y_offset, 2: height - size}[spatial_idx]
    else:
        x_offset = {0: 0, 1: x_offset, 2: width - size}[spatial_idx]
    return y_offset, x_offset


def short_side_scale(images: torch.Tensor, size: int) -> torch.Tensor:
    """``transform.random_short_side_scale_jitter`` with min = max = ``size`` on a (C, T, H, W) float clip."""
    height, width = images.shape[2], images.shape[3]
    if (width <= height and width == size) or (height <= width and height == size):
        return images
    new_height, new_width = size, size
    if width < height:
        new_height = math.floor((float(height) / width) * size)
    else:
        new_width = math.floor((float(width) / height) * size)
    return F.interpolate(images, size=(new_height, new_width), mode="bilinear", align_corners=False)


def tensor_normalize(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """``utils.tensor_normalize`` on (T, H, W, C) uint8 frames."""
    return (frames.float() / 255.0 - torch.tensor(mean)) / torch.tensor(std)


def kinetics_view(frames: torch.Tensor, scale: int, crop_size: int, spatial_idx: int, mean, std) -> torch.Tensor:
    """One test view as ``Kinetics.__getitem__`` computes it from the clip's (T, H, W, C) uint8 frames:
    normalise, (C, T, H, W), ``spatial_sampling`` with min = max = ``scale`` and ``uniform_crop``."""
    video = tensor_normalize(frames, mean, std).permute(3, 0, 1, 2)
    video = short_side_scale(video, scale)
    y0, x0 = uniform_crop_offsets(video.shape[2], video.shape[3], crop_size, spatial_idx)
    return video[:, :, y0 : y0 + crop_size, x0 : x0 + crop_size]


def image_test_view(image, test_size: int, crop_ratio: float, mean, std) -> torch.Tensor:
    """``Imagenet._prepare_im_tf`` in test mode, with torchvision's transforms on the PIL image: (3, S, S)."""
    import torchvision.transforms as T

    if crop_ratio == 0.0:
        steps = [T.Resize((test_size, test_size), interpolation=T.InterpolationMode.BICUBIC)]
    else:
        size = int((1.0 / crop_ratio) * test_size)
        steps = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(test_size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])(image)


# ----------------------------------------------------------------------------------------- spatial, training


def random_resized_crop(images: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """``transform.random_resized_crop`` on a (C, T, H, W) float clip, for a given ``(i, j, h, w)`` box."""
    i, j, h, w = box
    return F.interpolate(images[:, :, i : i + h, j : j + w], size=(size, size), mode="bilinear", align_corners=False)


def timm_op_frames(frames: np.ndarray, name: str, arg: float | None, resample: int) -> np.ndarray:
    """timm's (= PySlowFast's vendored) RandAugment op applied to every frame of (T, H, W, C) uint8 frames as PIL
    images, with PySlowFast's fill (128, 128, 128)."""
    from PIL import Image
    from timm.data import auto_augment

    args = () if arg is None else (arg,)
    op = auto_augment.NAME_TO_OP[name]
    out = [op(Image.fromarray(f), *args, fillcolor=(128, 128, 128), resample=resample) for f in frames]
    return np.stack([np.asarray(image) for image in out])
