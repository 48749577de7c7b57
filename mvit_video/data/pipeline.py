"""Per-clip preprocessing pipelines composed from the ops in ``transforms.py`` (typed arguments, no config).

The training pipeline follows the MViTv2 Kinetics recipe, with one random decision per clip for all its frames:
crop (random resized crop with relative scale/aspect, or short-side jitter + random crop), horizontal flip,
RandAugment (or colour jitter), normalisation, random erasing. Two orders (``AUG.ORDER``):

- ``"pyslowfast"`` (default), PySlowFast's ``Kinetics._aug_frame`` / SSv2 order: RandAugment on the decoded
  frames (geometric ops through PIL with ``AUG.INTERPOLATION``), normalisation, then the crop on the float clip
  (``F.interpolate`` bilinear without antialiasing) and the flip, then random erasing.
- ``"crop_first"``: crop and flip on the uint8 clip (torchvision's antialiased resize), then RandAugment on the
  crop, normalisation and erasing. RandAugment then touches 2-4x fewer pixels, but it is another distribution:
  a rotation, shear or translation of the crop fills the crop's own corners and edges with grey (in PySlowFast's
  order the fill lands at the frame's border, which the crop often leaves out), and translations are relative to
  the crop's side, not the frame's. The measured costs of both orders are in ``docs/benchmarks.md``.
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
    jitter_crop_float,
    normalize,
    random_resized_crop,
    random_short_side_scale_crop,
    resized_crop_float,
)

AUG_ORDERS = ("pyslowfast", "crop_first")


@dataclass
class TrainClipTransform:
    """Augments and normalises one (T, C, H, W) uint8 clip into a (C, T, H, W) float clip.

    Attributes:
        crop_size: output side (``DATA.TRAIN_CROP_SIZE``).
        mean, std: normalisation in [0, 1] units (``DATA.MEAN`` / ``DATA.STD``).
        jitter_scales: short-side range for scale jitter (``DATA.TRAIN_JITTER_SCALES``), used when
            ``relative_scale`` is empty.
        relative_scale, relative_aspect: random-resized-crop area and aspect ranges
            (``DATA.TRAIN_JITTER_SCALES_RELATIVE`` / ``..._ASPECT_RELATIVE``).
        flip: random horizontal flip (``DATA.RANDOM_FLIP``).
        rand_augment: RandAugment policy (``AUG.AA_TYPE``, filter ``AUG.INTERPOLATION``), or None.
        color_jitter_strength: used when there is no RandAugment (``AUG.COLOR_JITTER``); 0 disables.
        erasing: random erasing after normalisation (``AUG.RE_*``), or None.
        reverse_channels: RGB -> BGR at the end (``DATA.REVERSE_INPUT_CHANNEL``).
        order: ``"pyslowfast"`` or ``"crop_first"`` (``AUG.ORDER``, see the module docstring).
        inverse_uniform: draw the jitter scale's reciprocal uniformly (``DATA.INV_UNIFORM_SAMPLE``).
    """

    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    jitter_scales: Sequence[int] = (256, 320)
    relative_scale: Sequence[float] = ()
    relative_aspect: Sequence[float] = (0.75, 1.3333)
    flip: bool = True
    rand_augment: Optional[RandAugment] = None
    color_jitter_strength: float = 0.0
    erasing: Optional[RandomErasing] = None
    reverse_channels: bool = False
    order: str = "pyslowfast"
    inverse_uniform: bool = False

    def __post_init__(self) -> None:
        if self.order not in AUG_ORDERS:
            raise ValueError(f"TrainClipTransform: order must be one of {AUG_ORDERS} (AUG.ORDER), got {self.order!r}")

    def _photometric(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if self.rand_augment is not None:
            return self.rand_augment(clip, rng)
        if self.color_jitter_strength > 0:
            return color_jitter(clip, self.color_jitter_strength, rng)
        return clip

    def _flip(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        return horizontal_flip(clip) if self.flip and rng.random() < 0.5 else clip

    def _crop_uint8(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if len(self.relative_scale) == 2:
            return random_resized_crop(clip, self.crop_size, tuple(self.relative_scale), tuple(self.relative_aspect),
                                       rng=rng)  # fmt: skip
        low, high = self.jitter_scales
        return random_short_side_scale_crop(clip, low, high, self.crop_size, rng, inverse_uniform=self.inverse_uniform)

    def _crop_float(self, video: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if len(self.relative_scale) == 2:
            return resized_crop_float(video, self.crop_size, tuple(self.relative_scale), tuple(self.relative_aspect),
                                      rng)  # fmt: skip
        low, high = self.jitter_scales
        return jitter_crop_float(video, low, high, self.crop_size, rng, self.inverse_uniform)

    def __call__(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if self.order == "pyslowfast":
            video = normalize(self._photometric(clip, rng), self.mean, self.std)
            video = self._flip(self._crop_float(video, rng), rng).contiguous()  # a crop is a view of the frames
        else:
            clip = self._flip(self._crop_uint8(clip, rng), rng)
            video = normalize(self._photometric(clip, rng), self.mean, self.std)
        if self.erasing is not None:
            video = self.erasing(video, rng)
        return video.flip(0) if self.reverse_channels else video
