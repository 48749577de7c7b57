"""ImageNet-style folders (one sub-folder per class) as one-frame clips: images are the T=1 case."""

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
from .transforms import crop, normalize, short_side_resize

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


def read_image(path: str) -> torch.Tensor:
    """An image file as a (1, 3, H, W) uint8 RGB one-frame clip."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise ImageDecodeError(path, "missing file")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageDecodeError(path, f"corrupt: {str(e).splitlines()[0][:120]}") from None
    # (H, W, 3) -> (1, 3, H, W)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)


class ImageDataset(Dataset):
    """Images as (C, 1, H, W) clips: training applies ``transform``; evaluation resizes and centre-crops.

    Args:
        records: image files and labels.
        bad_log: where unreadable images are recorded.
        transform: training augmentation (same pipeline as videos); None for evaluation.
        crop_size: evaluation crop; the short side is first resized to ``crop_size / crop_ratio``.
        mean, std: evaluation normalisation.
        crop_ratio: evaluation centre-crop fraction (0.875 as in the MViTv2 ImageNet recipe).
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

    def _evaluate_view(self, clip: torch.Tensor) -> torch.Tensor:
        clip = short_side_resize(clip, int(self.crop_size / self.crop_ratio), "bicubic")
        y0, x0 = (clip.shape[2] - self.crop_size) // 2, (clip.shape[3] - self.crop_size) // 2
        return normalize(crop(clip, y0, x0, self.crop_size), self.mean, self.std)

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
            video, valid, error = self._evaluate_view(read_image(record.path)), True, ""
        except ImageDecodeError as e:
            self._on_bad(index, e)
            video, valid, error = torch.zeros(3, 1, self.crop_size, self.crop_size), False, e.reason
        return {"video": video, "label": record.label, "index": index, "valid": valid, "error": error}
