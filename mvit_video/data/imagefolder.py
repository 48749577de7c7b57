"""ImageNet-style folders (one sub-folder per class) as one-frame clips: images are the T=1 case.

Evaluation follows PySlowFast's ``datasets/imagenet.py`` test transform (torchvision's ``Resize`` with bicubic on
the PIL image, ``CenterCrop``, ``ToTensor``, ``Normalize``), computed with PIL directly.
"""

from __future__ import annotations

import os
import random
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .badfiles import BadVideoLog, load_or_replace
from .kinetics import ClipTransform
from .records import DatasetError, VideoRecord
from .transforms import normalize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageDecodeError(RuntimeError):
    """An image file that cannot be read; ``reason`` is short."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_image_folder(root: str) -> tuple[list[VideoRecord], list[str]]:
    """Lists ``root/<class>/<image>`` files; classes are the sorted sub-folder names (label = position)."""
    if not os.path.isdir(root):
        raise DatasetError(f"image folder not found: {root}; check DATA.PATH_TO_DATA_DIR")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    records = []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
            records += [
                VideoRecord(os.path.join(dirpath, f), label)
                for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
    if not records:
        raise DatasetError(f"{root} holds no images in class sub-folders ({', '.join(IMAGE_EXTENSIONS)})")
    return records, classes


def open_rgb(path: str):
    """An image file as an RGB ``PIL.Image`` (decoded now, the file closed)."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise ImageDecodeError(path, "missing file")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageDecodeError(path, f"corrupt: {str(e).splitlines()[0][:120]}") from None


def _to_clip(image) -> torch.Tensor:
    # (H, W, 3) -> (1, 3, H, W)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)


def read_image(path: str) -> torch.Tensor:
    """An image file as a (1, 3, H, W) uint8 RGB one-frame clip."""
    return _to_clip(open_rgb(path))


def evaluation_view(
    image, crop_size: int, crop_ratio: float, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """PySlowFast's image test view of an RGB ``PIL.Image``, as a (3, 1, crop_size, crop_size) float clip.

    ``crop_ratio`` > 0 (``DATA.IN_VAL_CROP_RATIO``): the short side is resized (PIL bicubic) to
    ``int(1 / crop_ratio * crop_size)``, the long side to ``int(size * long / short)`` (torchvision ``Resize``), then
    the centre ``crop_size`` square is taken at ``round((side - crop_size) / 2)`` (torchvision ``CenterCrop``).
    ``crop_ratio`` 0: the image is resized to ``crop_size`` x ``crop_size``. Then ``(x / 255 - mean) / std``.
    """
    from PIL import Image

    width, height = image.size
    if crop_ratio == 0:
        image = image.resize((crop_size, crop_size), Image.Resampling.BICUBIC)
    else:
        size = int((1.0 / crop_ratio) * crop_size)
        short, long = min(width, height), max(width, height)
        new_w, new_h = (size, int(size * long / short)) if width <= height else (int(size * long / short), size)
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        top, left = round((new_h - crop_size) / 2.0), round((new_w - crop_size) / 2.0)
        image = image.crop((left, top, left + crop_size, top + crop_size))
    return normalize(_to_clip(image), mean, std)


class ImageDataset(Dataset):
    """Images as (C, 1, H, W) clips: training applies ``transform``; evaluation resizes and centre-crops.

    Args:
        records: image files and labels.
        bad_log: where unreadable images are recorded.
        transform: training augmentation (same pipeline as videos); None for evaluation.
        crop_size: evaluation crop (``DATA.TEST_CROP_SIZE``).
        mean, std: evaluation normalisation.
        crop_ratio: evaluation centre-crop fraction (``DATA.IN_VAL_CROP_RATIO``, 0.875); 0 resizes to the crop
            (see ``evaluation_view``).
        seed: base of the per-item random streams.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        bad_log: BadVideoLog,
        transform: ClipTransform | None = None,
        crop_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        crop_ratio: float = 0.875,
        seed: int = 0,
        max_retries: int = 10,
    ) -> None:
        self.records, self.bad_log, self.transform = list(records), bad_log, transform
        self.crop_size, self.mean, self.std, self.crop_ratio = crop_size, list(mean), list(std), crop_ratio
        self.seed, self.max_retries, self.epoch = seed, max_retries, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _on_bad(self, index: int, error: ImageDecodeError) -> None:
        self.bad_log.record(self.records[index].path, error.reason)

    def _train_item(self, index: int, rng: random.Random) -> torch.Tensor:
        return self.transform(read_image(self.records[index].path), rng)

    def __getitem__(self, index: int) -> dict:
        if self.transform is not None:
            index, video = load_or_replace(
                index, len(self), self._train_item, self._on_bad, (ImageDecodeError,), f"{self.seed}-{self.epoch}",
                self.max_retries,
            )  # fmt: skip
            return {"video": video, "label": self.records[index].label, "index": index}
        record = self.records[index]
        try:
            view = evaluation_view(open_rgb(record.path), self.crop_size, self.crop_ratio, self.mean, self.std)
            video, valid, error = view, True, ""
        except ImageDecodeError as e:
            self._on_bad(index, e)
            video, valid, error = torch.zeros(3, 1, self.crop_size, self.crop_size), False, e.reason
        return {"video": video, "label": record.label, "index": index, "valid": valid, "error": error}
