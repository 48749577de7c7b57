"""Per-clip preprocessing pipelines composed from the tensor ops in ``transforms.py`` (typed arguments, no config).

The training pipeline follows the MViTv2 Kinetics recipe, with one random decision per clip for all its frames:
crop (random resized crop with relative scale/aspect, or short-side jitter + random crop), horizontal flip,
RandAugment (or colour jitter), normalisation, random erasing. Cropping comes first so RandAugment works on the
crop (PySlowFast augments full frames, then crops: the same distribution of ops, on 2-4x fewer pixels).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .transforms import (
    RandAugment,
    RandomErasing,
    color_jitter,
    horizontal_flip,
    normalize,
    random_resized_crop,
    random_short_side_scale_crop,
)


@dataclass
class TrainClipTransform:
    """Augments and normalises one (T, C, H, W) uint8 clip into a (C, T, H, W) float clip.

    Attributes:
        crop_size: output side (``DATA.TRAIN_CROP_SIZE``).
        mean, std: normalisation in [0, 1] units (``DATA.MEAN`` / ``DATA.STD``).
        jitter_scales: short-side range for scale jitter (``DATA.TRAIN_JITTER_SCALES``), used when
            ``relative_scale`` is empty.
        inverse_uniform: draw that short side's reciprocal uniformly (``DATA.INV_UNIFORM_SAMPLE``).
        relative_scale, relative_aspect: random-resized-crop area and aspect ranges
            (``DATA.TRAIN_JITTER_SCALES_RELATIVE`` / ``..._ASPECT_RELATIVE``).
        flip: random horizontal flip (``DATA.RANDOM_FLIP``).
        rand_augment: RandAugment policy (``AUG.AA_TYPE``), or None.
        color_jitter_strength: used when there is no RandAugment (``AUG.COLOR_JITTER``); 0 disables.
        erasing: random erasing after normalisation (``AUG.RE_*``), or None.
        interpolation: resize filter name (``AUG.INTERPOLATION``).
        reverse_channels: RGB -> BGR at the end (``DATA.REVERSE_INPUT_CHANNEL``).
    """

    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    jitter_scales: Sequence[int] = (256, 320)
    relative_scale: Sequence[float] = ()
    relative_aspect: Sequence[float] = (0.75, 1.3333)
    inverse_uniform: bool = False
    flip: bool = True
    rand_augment: Optional[RandAugment] = None
    color_jitter_strength: float = 0.0
    erasing: Optional[RandomErasing] = None
    interpolation: str = "bilinear"
    reverse_channels: bool = False

    def __call__(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if len(self.relative_scale) == 2:
            clip = random_resized_crop(
                clip, self.crop_size, tuple(self.relative_scale), tuple(self.relative_aspect),
                rng=rng, interpolation=self.interpolation,
            )  # fmt: skip
        else:
            low, high = self.jitter_scales
            clip = random_short_side_scale_crop(clip, low, high, self.crop_size, rng, self.interpolation,
                                                inverse_uniform=self.inverse_uniform)  # fmt: skip
        if self.flip and rng.random() < 0.5:
            clip = horizontal_flip(clip)
        if self.rand_augment is not None:
            clip = self.rand_augment(clip, rng)
        elif self.color_jitter_strength > 0:
            clip = color_jitter(clip, self.color_jitter_strength, rng)
        video = normalize(clip, self.mean, self.std)
        if self.erasing is not None:
            video = self.erasing(video, rng)
        return video.flip(0) if self.reverse_channels else video
