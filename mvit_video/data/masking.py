"""Token masks for masked pre-training (MaskFeat, VideoMAE): pure functions of a window size, a ratio and a random
source; no config.

A mask is a (T, H, W) bool tensor over a token window (``AUG.MASK_WINDOW_SIZE``), True where a token is masked.
Kinds (``mask_kind``):

- ``"cube"``: PySlowFast's ``MaskingGenerator3D`` (MaskFeat's default): cuboids of random area, aspect and
  duration are added until ``round(ratio * T*H*W)`` tokens are masked (never more; fewer only when 100 tries in a
  row find no cuboid that fits the remaining count).
- ``"block_tube"``: PySlowFast's ``AUG.MASK_TUBE`` for MaskFeat: 2-D blocks on one (H, W) slice, repeated over T.
- ``"frames"``: PySlowFast's ``AUG.MASK_FRAMES``: ``round(ratio * T)`` whole time slices.
- ``"tube"``: VideoMAE's tube masking (and PySlowFast's MAE with ``AUG.MASK_TUBE``): ``int(ratio * H*W)`` tokens of
  a random spatial permutation, the same at every t.
- ``"random"``: MAE's random masking (``MASK.MAE_RND_MASK``; VideoMAE's ``random``): ``int(ratio * T*H*W)`` tokens of
  a random permutation of the whole window.
- ``"per_frame"``: ``MASK.PER_FRAME_MASKING`` with random masking: ``int(ratio * H*W)`` random tokens of every time
  slice, drawn anew for each t.

MAE's encoder takes the same number of visible tokens from every clip of a batch: ``"tube"``, ``"random"`` and
``"per_frame"`` mask an exact count, the MaskFeat kinds do not.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

import torch

MASK_KINDS = ("cube", "block_tube", "frames", "tube", "random", "per_frame")
EXACT_COUNT_KINDS = ("tube", "random", "per_frame")  # what an MAE can batch
_CUBE_TRIES = 100  # PySlowFast's MaskingGenerator3D
_BLOCK_TRIES = 10  # PySlowFast's 2-D MaskingGenerator


@dataclass(frozen=True)
class BlockMasking:
    """PySlowFast's block masking rule on a (T, H, W) window (T = 1: its 2-D generator).

    Attributes:
        window: (T, H, W) token window.
        num_masked: tokens to mask.
        min_block: smallest area (h * w) drawn for one block.
        max_block: largest area drawn for one block.
        min_aspect: smallest aspect ratio h / w (the largest is its inverse).
        tries: attempts per block before giving up.
    """

    window: tuple[int, int, int]
    num_masked: int
    min_block: int
    max_block: int
    min_aspect: float = 0.3
    tries: int = _CUBE_TRIES

    def add_block(self, mask: torch.Tensor, remaining: int, rng: random.Random) -> int:
        """Masks one random cuboid that adds between 1 and ``remaining`` new tokens; returns how many it added."""
        t_size, height, width = self.window
        log_aspect = (math.log(self.min_aspect), math.log(1 / self.min_aspect))
        for _ in range(self.tries):
            area = rng.uniform(self.min_block, self.max_block)
            aspect = math.exp(rng.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            t = rng.randint(1, t_size)
            if not (w < width and h < height):
                continue
            top, left, front = rng.randint(0, height - h), rng.randint(0, width - w), rng.randint(0, t_size - t)
            block = mask[front : front + t, top : top + h, left : left + w]
            new = block.numel() - int(block.sum())
            if 0 < new <= remaining:
                block.fill_(True)
                return new
        return 0

    def __call__(self, rng: random.Random) -> torch.Tensor:
        mask = torch.zeros(self.window, dtype=torch.bool)
        count = 0
        while count < self.num_masked:
            added = self.add_block(mask, self.num_masked - count, rng)
            if added == 0:
                break
            count += added
        return mask


def cube_masking(window: tuple[int, int, int], ratio: float, max_block: Optional[int] = None) -> BlockMasking:
    """MaskFeat's cube masking (PySlowFast ``kinetics.py``): ``round(ratio * T*H*W)`` tokens, block areas between
    a fifth of ``max_block`` and ``max_block`` (default H*W, one slice; ``AUG.MAX_MASK_PATCHES_PER_BLOCK``)."""
    largest = max_block if max_block is not None else window[1] * window[2]
    return BlockMasking(tuple(window), round(math.prod(window) * ratio), largest // 5, largest)


def block_tube_mask(window: tuple[int, int, int], ratio: float, rng: random.Random) -> torch.Tensor:
    """PySlowFast's ``AUG.MASK_TUBE`` for MaskFeat: 2-D blocks covering ``round(ratio * H*W)`` tokens of one slice,
    the same at every t. (T, H, W) bool."""
    t, h, w = window
    num = round(h * w * ratio)
    plane = BlockMasking((1, h, w), num, num // 5, num, tries=_BLOCK_TRIES)(rng)
    return plane.expand(t, h, w).clone()


def frame_mask(window: tuple[int, int, int], ratio: float, rng: random.Random) -> torch.Tensor:
    """PySlowFast's ``AUG.MASK_FRAMES``: ``round(ratio * T)`` random whole time slices. (T, H, W) bool."""
    t = window[0]
    mask = torch.zeros(window, dtype=torch.bool)
    mask[rng.sample(range(t), round(t * ratio))] = True
    return mask


def tube_mask(window: tuple[int, int, int], ratio: float, rng: random.Random) -> torch.Tensor:
    """VideoMAE's tube masking: ``int(ratio * H*W)`` tokens of a random spatial permutation masked at every t.
    (T, H, W) bool."""
    t, h, w = window
    order = list(range(h * w))
    rng.shuffle(order)
    plane = torch.zeros(h * w, dtype=torch.bool)
    plane[order[: int(ratio * h * w)]] = True
    return plane.view(1, h, w).expand(t, h, w).clone()


def _masked_first(size: int, count: int, rng: random.Random) -> torch.Tensor:
    """(size,) bool with ``count`` True at the first ``count`` positions of a random permutation."""
    order = list(range(size))
    rng.shuffle(order)
    flat = torch.zeros(size, dtype=torch.bool)
    flat[order[:count]] = True
    return flat


def random_mask(window: tuple[int, int, int], ratio: float, rng: random.Random) -> torch.Tensor:
    """MAE's random masking: ``int(ratio * T*H*W)`` tokens of a random permutation of the window. (T, H, W) bool."""
    t, h, w = window
    return _masked_first(t * h * w, int(ratio * t * h * w), rng).view(t, h, w)


def per_frame_mask(window: tuple[int, int, int], ratio: float, rng: random.Random) -> torch.Tensor:
    """Random masking per time slice: ``int(ratio * H*W)`` tokens of each t, drawn anew for each. (T, H, W) bool."""
    t, h, w = window
    return torch.stack([_masked_first(h * w, int(ratio * h * w), rng).view(h, w) for _ in range(t)])


@dataclass(frozen=True)
class MaskGenerator:
    """One mask per call, of ``kind`` (``MASK_KINDS``) on ``window`` at ``ratio``.

    Args:
        kind: one of ``MASK_KINDS``.
        window: (T, H, W) token window.
        ratio: fraction of tokens to mask.
        max_block: largest cube area (cube masking only; None: H*W).
    """

    kind: str
    window: tuple[int, int, int]
    ratio: float
    max_block: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {self.kind!r}")
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.ratio}")

    def __call__(self, rng: random.Random) -> torch.Tensor:
        window = tuple(self.window)
        if self.kind == "cube":
            return cube_masking(window, self.ratio, self.max_block)(rng)
        if self.kind == "block_tube":
            return block_tube_mask(window, self.ratio, rng)
        if self.kind == "frames":
            return frame_mask(window, self.ratio, rng)
        if self.kind == "random":
            return random_mask(window, self.ratio, rng)
        if self.kind == "per_frame":
            return per_frame_mask(window, self.ratio, rng)
        return tube_mask(window, self.ratio, rng)
