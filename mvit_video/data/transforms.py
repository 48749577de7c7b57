"""Spatial and photometric clip transforms on tensors.

Clips travel as ``uint8`` tensors shaped ``(T, C, H, W)`` through the photometric ops and the uint8 crops, which
treat the frames as one batch: every random decision (crop box, flip, RandAugment op and magnitude, jitter
factor) is drawn once per clip from a ``random.Random`` and applied to all frames. ``normalize`` turns
the clip into ``float32 (C, T, H, W)``; the ``*_float`` crops (PySlowFast's ``spatial_sampling``, which runs on
normalised clips) and ``RandomErasing`` run after it.

Semantics follow PySlowFast's ``datasets/transform.py`` (short-side jitter, random and uniform crops,
Inception-style resized crop: ``F.interpolate`` bilinear without antialiasing on float clips) and timm's
RandAugment / RandomErasing as vendored by PySlowFast (geometric ops through PIL, frame by frame).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

__all__ = [
    "RandAugment",
    "RandomErasing",
    "apply_augment_op",
    "color_jitter",
    "crop",
    "draw_crop_offsets",
    "draw_jitter_size",
    "horizontal_flip",
    "interpolate_bilinear",
    "jitter_crop_float",
    "normalize",
    "random_resized_crop",
    "random_short_side_scale_crop",
    "resized_crop_float",
    "resized_crop_params",
    "short_side_interpolate",
    "short_side_resize",
    "short_side_shape",
]

_INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _interpolation(name: str) -> InterpolationMode:
    if name not in _INTERPOLATIONS:
        raise ValueError(f"transforms: unknown interpolation {name!r}; use one of {sorted(_INTERPOLATIONS)}")
    return _INTERPOLATIONS[name]


def _check_clip(clip: torch.Tensor, where: str) -> None:
    if clip.dim() != 4 or clip.dtype != torch.uint8:
        raise ValueError(f"{where}: expected a uint8 (T, C, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")


def _resize(clip: torch.Tensor, height: int, width: int, interpolation: str) -> torch.Tensor:
    # Anti-alias only when shrinking; bicubic output is clamped to [0, 255] by torchvision.
    in_h, in_w = clip.shape[-2:]
    antialias = height < in_h or width < in_w
    return TF.resize(clip, [height, width], interpolation=_interpolation(interpolation), antialias=antialias)


def short_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after resizing the short side to ``size``: the long side becomes ``floor(long / short * size)``
    (PySlowFast ``random_short_side_scale_jitter``; a square frame stays square)."""
    if width < height:
        return math.floor(height / width * size), size
    return size, math.floor(width / height * size)


def short_side_resize(clip: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a uint8 clip so the short side is ``size`` (``short_side_shape``), with torchvision's antialiasing.

    A clip whose short side already equals ``size`` is returned unchanged (PySlowFast
    ``random_short_side_scale_jitter`` with a fixed size).

    Args:
        clip: uint8 (T, C, H, W).
        size: target short side.
        interpolation: "bilinear" or "bicubic".

    Returns:
        uint8 (T, C, H', W').
    """
    _check_clip(clip, "short_side_resize")
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    return _resize(clip, *short_side_shape(height, width, size), interpolation)


def draw_jitter_size(min_size: int, max_size: int, rng: random.Random, inverse_uniform: bool = False) -> int:
    """The short side of a scale-jittered clip: ``round(uniform(min_size, max_size))``, or with ``inverse_uniform``
    (DATA.INV_UNIFORM_SAMPLE) the rounded reciprocal of a uniform draw in ``[1/max_size, 1/min_size]``."""
    if inverse_uniform:
        return round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size))
    return round(rng.uniform(min_size, max_size))


def draw_crop_offsets(height: int, width: int, crop_size: int, rng: random.Random) -> tuple[int, int]:
    """``(y0, x0)`` of a random square crop as PySlowFast's ``random_crop`` draws it: ``randrange(0, side - crop)``
    per axis (so the last position is never chosen), 0 when the side equals ``crop_size``."""
    y0 = rng.randrange(0, height - crop_size) if height > crop_size else 0
    x0 = rng.randrange(0, width - crop_size) if width > crop_size else 0
    return y0, x0


def _check_jitter(min_size: int, max_size: int, crop_size: int, where: str) -> None:
    if not 0 < crop_size <= min_size <= max_size:
        raise ValueError(
            f"{where}: need 0 < crop_size <= min_size <= max_size, got "
            f"crop_size={crop_size}, scales=({min_size}, {max_size}) (DATA.TRAIN_JITTER_SCALES)"
        )


def random_short_side_scale_crop(
    clip: torch.Tensor,
    min_size: int,
    max_size: int,
    crop_size: int,
    rng: random.Random,
    interpolation: str = "bilinear",
    inverse_uniform: bool = False,
) -> torch.Tensor:
    """Short-side scale jitter then a random square crop of a uint8 clip (DATA.TRAIN_JITTER_SCALES recipe).

    The short side is ``draw_jitter_size``; the offsets are ``draw_crop_offsets``. The resize is torchvision's
    antialiased one on uint8 (``jitter_crop_float`` is PySlowFast's on normalised clips).

    Args:
        clip: uint8 (T, C, H, W).
        min_size: smallest short side.
        max_size: largest short side.
        crop_size: side of the square crop; must be <= ``min_size``.
        rng: source of the random draws.
        interpolation: "bilinear" or "bicubic".
        inverse_uniform: sample the scale's reciprocal uniformly.

    Returns:
        uint8 (T, C, crop_size, crop_size).
    """
    _check_jitter(min_size, max_size, crop_size, "random_short_side_scale_crop")
    clip = short_side_resize(clip, draw_jitter_size(min_size, max_size, rng, inverse_uniform), interpolation)
    y0, x0 = draw_crop_offsets(clip.shape[-2], clip.shape[-1], crop_size, rng)
    return crop(clip, y0, x0, crop_size)


def resized_crop_params(
    height: int, width: int, scale: Sequence[float], ratio: Sequence[float], rng: random.Random
) -> tuple[int, int, int, int]:
    """Inception-style crop box ``(y0, x0, h, w)`` as in PySlowFast ``_get_param_spatial_crop`` / torchvision.

    Up to 10 attempts draw an area fraction uniformly from ``scale`` and an aspect ratio (w/h)
    log-uniformly from ``ratio``; the first box that fits wins, placed uniformly (both ends included).
    Otherwise a centre crop of the whole frame, clipped to the ratio range, is returned.

    Args:
        height: frame height.
        width: frame width.
        scale: (min, max) area fraction (DATA.TRAIN_JITTER_SCALES_RELATIVE).
        ratio: (min, max) aspect ratio (DATA.TRAIN_JITTER_ASPECT_RELATIVE).
        rng: source of the random draws.

    Returns:
        ``(y0, x0, h, w)``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    clip: torch.Tensor,
    crop_size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (0.75, 1.3333),
    *,
    rng: random.Random,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Crop one random box (see ``resized_crop_params``) from every frame of a uint8 clip and resize it to a square
    with torchvision's antialiased resize (``resized_crop_float`` is PySlowFast's on normalised clips).

    Args:
        clip: uint8 (T, C, H, W).
        crop_size: output side.
        scale: (min, max) area fraction.
        ratio: (min, max) aspect ratio.
        rng: source of the random draws.
        interpolation: "bilinear" or "bicubic".

    Returns:
        uint8 (T, C, crop_size, crop_size).
    """
    _check_clip(clip, "random_resized_crop")
    y0, x0, h, w = resized_crop_params(clip.shape[-2], clip.shape[-1], scale, ratio, rng)
    return _resize(clip[..., y0 : y0 + h, x0 : x0 + w], crop_size, crop_size, interpolation)


def crop(clip: torch.Tensor, y0: int, x0: int, size: int) -> torch.Tensor:
    """The square ``size`` window at ``(y0, x0)`` of every frame (a view, no copy)."""
    height, width = clip.shape[-2:]
    if y0 < 0 or x0 < 0 or y0 + size > height or x0 + size > width:
        raise ValueError(f"crop: window {size}x{size} at (y0={y0}, x0={x0}) leaves the {height}x{width} frame")
    return clip[..., y0 : y0 + size, x0 : x0 + size]


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right (columns reversed); any layout ending in (H, W)."""
    return clip.flip(-1)


# ------------------------------------------------------------------ float clips: PySlowFast's spatial_sampling
def _check_float(video: torch.Tensor, where: str) -> None:
    if video.dim() != 4 or not video.is_floating_point():
        raise ValueError(f"{where}: expected a float 4-D clip ending in (H, W), got {video.dtype} {tuple(video.shape)}")


def interpolate_bilinear(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PySlowFast's resize: ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing, on a float
    4-D clip such as (C, T, H, W) or (T, C, H, W) (every (H, W) plane resized alike)."""
    _check_float(video, "interpolate_bilinear")
    return F.interpolate(video, size=(height, width), mode="bilinear", align_corners=False)


def short_side_interpolate(video: torch.Tensor, size: int) -> torch.Tensor:
    """``interpolate_bilinear`` to ``short_side_shape``; unchanged when the short side already equals ``size``
    (PySlowFast ``random_short_side_scale_jitter`` with min = max = ``size``)."""
    _check_float(video, "short_side_interpolate")
    height, width = video.shape[-2:]
    if min(height, width) == size:
        return video
    return interpolate_bilinear(video, *short_side_shape(height, width, size))


def jitter_crop_float(
    video: torch.Tensor,
    min_size: int,
    max_size: int,
    crop_size: int,
    rng: random.Random,
    inverse_uniform: bool = False,
) -> torch.Tensor:
    """PySlowFast's training ``spatial_sampling`` without relative scales: short side ``draw_jitter_size``
    (``short_side_interpolate``), then a random square crop (``draw_crop_offsets``).

    Args:
        video: float (C, T, H, W), normalised.
        min_size, max_size: short-side range (DATA.TRAIN_JITTER_SCALES).
        crop_size: side of the square crop; must be <= ``min_size``.
        rng: source of the random draws.
        inverse_uniform: DATA.INV_UNIFORM_SAMPLE.

    Returns:
        float (C, T, crop_size, crop_size).
    """
    _check_jitter(min_size, max_size, crop_size, "jitter_crop_float")
    video = short_side_interpolate(video, draw_jitter_size(min_size, max_size, rng, inverse_uniform))
    y0, x0 = draw_crop_offsets(video.shape[-2], video.shape[-1], crop_size, rng)
    return crop(video, y0, x0, crop_size)


def resized_crop_float(
    video: torch.Tensor, crop_size: int, scale: Sequence[float], ratio: Sequence[float], rng: random.Random
) -> torch.Tensor:
    """PySlowFast's ``random_resized_crop``: one ``resized_crop_params`` box, ``interpolate_bilinear`` to a square.

    Args:
        video: float (C, T, H, W), normalised.
        crop_size: output side.
        scale: (min, max) area fraction (DATA.TRAIN_JITTER_SCALES_RELATIVE).
        ratio: (min, max) aspect ratio (DATA.TRAIN_JITTER_ASPECT_RELATIVE).
        rng: source of the random draws.

    Returns:
        float (C, T, crop_size, crop_size).
    """
    _check_float(video, "resized_crop_float")
    y0, x0, h, w = resized_crop_params(video.shape[-2], video.shape[-1], scale, ratio, rng)
    return interpolate_bilinear(video[..., y0 : y0 + h, x0 : x0 + w], crop_size, crop_size)


# ---------------------------------------------------------------------------------------------- RandAugment
_LEVEL_DENOM = 10.0


# PIL resampling filters (``PIL.Image.Resampling`` values) for the geometric ops; PIL's affine transform and rotate
# accept only these three.
_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3}


def _pil_filter(name: str) -> int:
    if name not in _PIL_FILTERS:
        raise ValueError(f"RandAugment: unknown interpolation {name!r} (AUG.INTERPOLATION); use one of "
                         f"{sorted(_PIL_FILTERS)}")  # fmt: skip
    return _PIL_FILTERS[name]


@dataclass(frozen=True)
class _Geometry:
    resample: int  # PIL filter
    fill: tuple[int, ...]


def _per_frame_pil(clip: torch.Tensor, op: Callable) -> torch.Tensor:
    """``op(PIL image) -> PIL image`` applied to every frame of a uint8 (T, C, H, W) clip, as PySlowFast's
    ``_frame_to_list_img`` + RandAugment + ``_list_img_to_frames`` does (the values stay uint8: exact)."""
    from PIL import Image

    frames = clip.permute(0, 2, 3, 1).numpy()  # (T, H, W, C), a view when the decoder's layout is kept
    out = np.empty(frames.shape, dtype=np.uint8)
    for t, frame in enumerate(frames):
        out[t] = np.asarray(op(Image.fromarray(np.ascontiguousarray(frame))))
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _pil_affine(clip: torch.Tensor, geo: _Geometry, matrix: Callable[[int, int], tuple]) -> torch.Tensor:
    """PIL's affine transform with the inverse map ``matrix(width, height)``: output (x, y) samples the input at
    (a x + b y + c, d x + e y + f), pixels from outside get ``fill`` (timm's shear / translate)."""
    from PIL import Image

    def op(image):
        coefficients = matrix(*image.size)
        return image.transform(image.size, Image.Transform.AFFINE, coefficients, resample=geo.resample,
                               fillcolor=geo.fill)  # fmt: skip

    return _per_frame_pil(clip, op)


def _pil_rotate(clip: torch.Tensor, degrees: float, geo: _Geometry) -> torch.Tensor:
    """PIL's rotate about the frame centre, counter-clockwise for positive degrees (timm's Rotate)."""
    return _per_frame_pil(clip, lambda image: image.rotate(degrees, resample=geo.resample, fillcolor=geo.fill))


def _solarize(clip: torch.Tensor, threshold: float) -> torch.Tensor:
    # 255 - x == x ^ 255 for uint8; arithmetic masks are much faster than torch.where on uint8 (CPU).
    return clip ^ (clip >= threshold).to(torch.uint8).mul_(255)


def _solarize_add(clip: torch.Tensor, add: float, threshold: int = 128) -> torch.Tensor:
    add = int(add)
    if 0 <= add <= 256 - threshold:  # no pixel below the threshold can pass 255
        return clip + (clip < threshold).to(torch.uint8).mul_(add)
    added = (clip.to(torch.int16) + (clip < threshold).to(torch.int16) * add).clamp_(0, 255)
    return added.to(torch.uint8)


def _posterize(clip: torch.Tensor, bits: float) -> torch.Tensor:
    return clip if bits >= 8 else TF.posterize(clip, int(bits))


def _sharpness(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (kernel 1 1 1 / 1 5 1 / 1 1 1, / 13).

    Same result as torchvision's ``adjust_sharpness`` (border pixels unfiltered) via separable sums,
    several times faster than its grouped convolution on CPU.
    """
    if clip.shape[-1] <= 2 or clip.shape[-2] <= 2:
        return clip
    image = clip.to(torch.float32)
    rows = image[..., :-2, :] + image[..., 1:-1, :] + image[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    inner = image[..., 1:-1, 1:-1]
    smooth = box.add_(inner.mul(4.0)).div_(13.0).round_()
    # blend inside the border, in torchvision's form x + (1 - factor) * (smooth - x)
    inner.add_(smooth.sub_(inner), alpha=1.0 - factor)
    return image.clamp_(0, 255).to(torch.uint8)


# op name -> fn(clip, arg, geometry); the arg follows timm's PIL op (degrees, factor, fraction, bits, ...). Geometric
# ops run through PIL frame by frame (exact timm semantics for every filter; torchvision's tensor affine has no
# bicubic); the colour ops run on the whole clip as tensors (within one grey level of PIL's, tested).
_OP_FNS: dict[str, Callable[[torch.Tensor, float, _Geometry], torch.Tensor]] = {
    "AutoContrast": lambda c, a, g: TF.autocontrast(c),
    "Equalize": lambda c, a, g: TF.equalize(c),
    "Invert": lambda c, a, g: TF.invert(c),
    "Rotate": lambda c, a, g: _pil_rotate(c, a, g),
    "Posterize": lambda c, a, g: _posterize(c, a),
    "Solarize": lambda c, a, g: _solarize(c, a),
    "SolarizeAdd": lambda c, a, g: _solarize_add(c, a),
    "Color": lambda c, a, g: TF.adjust_saturation(c, a),
    "Contrast": lambda c, a, g: TF.adjust_contrast(c, a),
    "Brightness": lambda c, a, g: TF.adjust_brightness(c, a),
    "Sharpness": lambda c, a, g: _sharpness(c, a),
    # timm's PIL ops: the coefficients map an output pixel to the input position it samples
    "ShearX": lambda c, a, g: _pil_affine(c, g, lambda w, h: (1, a, 0, 0, 1, 0)),
    "ShearY": lambda c, a, g: _pil_affine(c, g, lambda w, h: (1, 0, 0, a, 1, 0)),
    "TranslateXRel": lambda c, a, g: _pil_affine(c, g, lambda w, h: (1, 0, a * w, 0, 1, 0)),
    "TranslateYRel": lambda c, a, g: _pil_affine(c, g, lambda w, h: (1, 0, 0, 0, 1, a * h)),
}
for _name in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"):
    _OP_FNS[_name + "Increasing"] = _OP_FNS[_name]

_RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip
_RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip


def _negate(value: float, rng: random.Random) -> float:
    return -value if rng.random() > 0.5 else value


def _level_to_arg(name: str, magnitude: float, rng: random.Random, translate_pct: float) -> float:
    """timm's ``LEVEL_TO_ARG``: the op argument for a magnitude in [0, 10] (random sign where timm has one)."""
    level = magnitude / _LEVEL_DENOM
    if name in ("AutoContrast", "Equalize", "Invert"):
        return 0.0
    if name == "Rotate":
        return _negate(level * 30.0, rng)
    if name in ("ShearX", "ShearY"):
        return _negate(level * 0.3, rng)
    if name in ("TranslateXRel", "TranslateYRel"):
        return _negate(level * translate_pct, rng)
    if name.startswith("Posterize"):
        bits = int(level * 4)
        return 4 - bits if name.endswith("Increasing") else bits
    if name == "SolarizeAdd":
        return min(128, int(level * 110))
    if name.startswith("Solarize"):
        threshold = min(256, int(level * 256))
        return 256 - threshold if name.endswith("Increasing") else threshold
    if name.endswith("Increasing"):  # Color / Contrast / Brightness / Sharpness: 1 +- 0.9 level
        return max(0.1, 1.0 + _negate(level * 0.9, rng))
    return level * 1.8 + 0.1  # Color / Contrast / Brightness / Sharpness: [0.1, 1.9]


def apply_augment_op(
    clip: torch.Tensor, name: str, arg: float, interpolation: str = "bilinear", fill: int = 128
) -> torch.Tensor:
    """Apply one RandAugment op with an explicit argument to all frames of a uint8 (T, C, H, W) clip.

    ``arg`` has the meaning of timm's PIL op argument (degrees, enhance factor, shear factor, translate
    fraction, bits, threshold, added value); ops without an argument ignore it. ``interpolation`` ("nearest",
    "bilinear" or "bicubic", AUG.INTERPOLATION) is the PIL filter of the geometric ops; ``fill`` the grey level of
    the pixels they uncover.
    """
    if name not in _OP_FNS:
        raise ValueError(f"apply_augment_op: unknown op {name!r}; known ops: {sorted(_OP_FNS)}")
    geometry = _Geometry(_pil_filter(interpolation), (int(fill),) * clip.shape[-3])
    return _OP_FNS[name](clip, arg, geometry)


_RA_SECTION = re.compile(r"([a-z]+)(\d.*)")
_RA_HELP = (
    "expected e.g. 'rand-m7-n4-mstd0.5-inc1' (sections m<int>, n<int>, mstd<float>, inc<0|1>, p<float>, mmax<int>)"
)
_RA_KEYS = {"m": ("magnitude", int), "n": ("num_ops", int), "mstd": ("magnitude_std", float),
            "inc": ("increasing", int), "p": ("prob", float), "mmax": ("magnitude_max", int)}  # fmt: skip


@dataclass(frozen=True)
class RandAugment:
    """RandAugment for clips with timm's semantics (AUG.AA_TYPE strings such as ``rand-m7-n4-mstd0.5-inc1``).

    Each call picks ``num_ops`` ops uniformly with replacement; each is applied with probability ``prob``,
    its magnitude drawn from ``N(magnitude, magnitude_std)`` (uniform in ``[0, magnitude]`` when the std
    is above 100) and clipped to ``[0, magnitude_max]``, then mapped to the op argument as timm does.
    The same op and argument are applied to every frame.

    Args:
        magnitude: timm "m" (0-10 scale).
        num_ops: timm "n".
        magnitude_std: timm "mstd".
        increasing: timm "inc1": the op set whose severity increases with magnitude.
        prob: timm "p", per-op application probability.
        magnitude_max: timm "mmax", the clip bound for sampled magnitudes.
        translate_pct: TranslateXRel/YRel range at magnitude 10 (timm hparam, 0.45).
        fill: grey level for pixels uncovered by geometric ops (timm's img_mean 128).
        interpolation: PIL filter of the geometric ops (AUG.INTERPOLATION): "nearest", "bilinear" or "bicubic".
    """

    magnitude: float = 10.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    prob: float = 0.5
    magnitude_max: float = _LEVEL_DENOM
    translate_pct: float = 0.45
    fill: int = 128
    interpolation: str = "bilinear"

    @classmethod
    def from_string(cls, spec: str, **overrides) -> RandAugment:
        """Parse a timm RandAugment string; unknown or malformed sections raise one ValueError line."""
        sections = spec.split("-") if isinstance(spec, str) else [None]
        if sections[0] != "rand":
            raise ValueError(f"RandAugment string {spec!r} must start with 'rand'; {_RA_HELP}")
        values: dict = {}
        for section in sections[1:]:
            match = _RA_SECTION.fullmatch(section)
            if match is None or match.group(1) not in _RA_KEYS:
                raise ValueError(f"RandAugment string {spec!r}: unknown section {section!r}; {_RA_HELP}")
            field, convert = _RA_KEYS[match.group(1)]
            try:
                values[field] = convert(match.group(2))
            except ValueError:
                raise ValueError(f"RandAugment string {spec!r}: bad value in section {section!r}; {_RA_HELP}") from None
        if values.get("magnitude_std", 0) > 100:
            values["magnitude_std"] = math.inf
        if "increasing" in values:
            values["increasing"] = bool(values["increasing"])
        return cls(**(values | overrides))

    def __post_init__(self) -> None:
        if self.num_ops < 0 or not 0.0 <= self.prob <= 1.0 or self.magnitude_std < 0:
            raise ValueError(f"RandAugment: need num_ops >= 0, 0 <= prob <= 1, magnitude_std >= 0, got {self}")
        _pil_filter(self.interpolation)

    @property
    def ops(self) -> tuple[str, ...]:
        """Names of the candidate ops (timm's increasing or original RandAugment set)."""
        return _RAND_INCREASING_TRANSFORMS if self.increasing else _RAND_TRANSFORMS

    def _sample_magnitude(self, rng: random.Random) -> float:
        magnitude = self.magnitude
        if self.magnitude_std == math.inf:
            magnitude = rng.uniform(0, magnitude)
        elif self.magnitude_std > 0:
            magnitude = rng.gauss(magnitude, self.magnitude_std)
        return max(0.0, min(magnitude, self.magnitude_max))

    def __call__(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """Augment a uint8 (T, C, H, W) clip; returns a clip of the same shape and dtype."""
        _check_clip(clip, "RandAugment")
        for name in rng.choices(self.ops, k=self.num_ops):
            if self.prob < 1.0 and rng.random() > self.prob:
                continue
            arg = _level_to_arg(name, self._sample_magnitude(rng), rng, self.translate_pct)
            clip = apply_augment_op(clip, name, arg, self.interpolation, self.fill)
        return clip


# ----------------------------------------------------------------------------------------- colour / normalize
def color_jitter(clip: torch.Tensor, strength: float | Sequence[float], rng: random.Random) -> torch.Tensor:
    """Brightness, contrast and saturation jitter in random order (torchvision ColorJitter, AUG.COLOR_JITTER).

    Each factor is uniform in ``[max(0, 1 - s), 1 + s]``; contrast blends each frame with its own grey
    mean, as PySlowFast's per-frame jitter does.

    Args:
        clip: uint8 (T, C, H, W) with C == 3.
        strength: one value for all three, or (brightness, contrast, saturation).
        rng: source of the random draws.

    Returns:
        uint8 (T, C, H, W).
    """
    _check_clip(clip, "color_jitter")
    strengths = [float(strength)] * 3 if isinstance(strength, (int, float)) else [float(s) for s in strength]
    if len(strengths) != 3 or min(strengths) < 0:
        raise ValueError(f"color_jitter: strength must be >= 0 or three such values, got {strength!r}")
    ops = [
        (op, s) for op, s in zip((TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation), strengths) if s > 0
    ]
    rng.shuffle(ops)
    for op, s in ops:
        clip = op(clip, rng.uniform(max(0.0, 1.0 - s), 1.0 + s))
    return clip


def _check_mean_std(channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(f"normalize: need {channels} means and {channels} positive stds, got {mean!r}, {std!r}")


def normalize_(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """In place on float pixel values 0..255 laid out (..., C, T, H, W): ``(x / 255 - mean) / std``."""
    _check_mean_std(video.shape[-4], mean, std)
    mean_t = torch.tensor(mean, dtype=video.dtype).view(-1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=video.dtype).view(-1, 1, 1, 1)
    return video.div_(255.0).sub_(mean_t).div_(std_t)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float32 (C, T, H, W) as ``(x / 255 - mean) / std`` (DATA.MEAN / DATA.STD units)."""
    _check_clip(clip, "normalize")
    # (T, C, H, W) -> (C, T, H, W), contiguous whatever the decoder's layout
    return normalize_(clip.permute(1, 0, 2, 3).to(torch.float32, memory_format=torch.contiguous_format), mean, std)


# ------------------------------------------------------------------------------------------- random erasing
class RandomErasing:
    """Random erasing after normalisation, one box shared by all frames (PySlowFast's "cube" variant of timm).

    With probability ``prob`` the clip gets ``randint(min_count, count)`` boxes; each box's area is a
    uniform fraction in ``[min_area, max_area] / n_boxes`` of the frame, its aspect ratio log-uniform in
    ``[min_aspect, max_aspect]``, up to 100 attempts to fit strictly inside the frame. Erased pixels get
    per-pixel N(0, 1) noise ("pixel"), a per-channel N(0, 1) colour ("rand"), or 0 ("const"); the random
    values are drawn afresh for every frame, as PySlowFast does, while the box stays put.

    Args:
        prob: AUG.RE_PROB.
        mode: AUG.RE_MODE: "pixel", "rand" or "const".
        count: AUG.RE_COUNT, the largest number of boxes.
        min_count: the smallest number of boxes.
        min_area: smallest erased area fraction.
        max_area: largest erased area fraction.
        min_aspect: smallest aspect ratio; the largest defaults to its inverse.
        max_aspect: largest aspect ratio.
    """

    def __init__(
        self,
        prob: float = 0.25,
        mode: str = "pixel",
        count: int = 1,
        min_count: int = 1,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ) -> None:
        if mode not in ("pixel", "rand", "const"):
            raise ValueError(f"RandomErasing: unknown mode {mode!r} (AUG.RE_MODE); use 'pixel', 'rand' or 'const'")
        if not 0.0 <= prob <= 1.0 or not 1 <= min_count <= count or not 0 < min_area <= max_area:
            raise ValueError(
                f"RandomErasing: need 0 <= prob <= 1, 1 <= min_count <= count, 0 < min_area <= max_area; got "
                f"prob={prob}, count=({min_count}, {count}), area=({min_area}, {max_area})"
            )
        self.prob, self.mode, self.count, self.min_count = prob, mode, count, min_count
        self.min_area, self.max_area = min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))

    def sample_boxes(self, height: int, width: int, rng: random.Random) -> list[tuple[int, int, int, int]]:
        """The ``(top, left, h, w)`` boxes one call would erase (empty when the coin says no)."""
        if rng.random() > self.prob:
            return []
        count = self.min_count if self.min_count == self.count else rng.randint(self.min_count, self.count)
        boxes = []
        for _ in range(count):
            for _ in range(100):
                target_area = rng.uniform(self.min_area, self.max_area) * height * width / count
                aspect = math.exp(rng.uniform(*self.log_aspect))
                h = round(math.sqrt(target_area * aspect))
                w = round(math.sqrt(target_area / aspect))
                if w < width and h < height:
                    boxes.append((rng.randint(0, height - h), rng.randint(0, width - w), h, w))
                    break
        return boxes

    def __call__(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """Erase boxes in a float (C, T, H, W) clip in place and return it."""
        if clip.dim() != 4 or not clip.is_floating_point():
            raise ValueError(f"RandomErasing: expected a float (C, T, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")
        channels, frames, height, width = clip.shape
        boxes = self.sample_boxes(height, width, rng)
        if not boxes:
            return clip
        gen = torch.Generator().manual_seed(rng.getrandbits(63))
        for top, left, h, w in boxes:
            if self.mode == "pixel":
                values = torch.randn((channels, frames, h, w), generator=gen, dtype=clip.dtype)
            elif self.mode == "rand":
                values = torch.randn((channels, frames, 1, 1), generator=gen, dtype=clip.dtype)
            else:
                values = torch.zeros((), dtype=clip.dtype)
            clip[:, :, top : top + h, left : left + w] = values
        return clip
