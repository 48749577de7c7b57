"""Batch-level Mixup / CutMix for video batches and the soft-target loss (MIXUP.* keys).

Semantics of timm's ``Mixup`` in "batch" mode as used by PySlowFast: one lambda per batch, every clip is
mixed with the clip at the mirrored batch position (``flip(0)``), the CutMix box is the same for all
frames, and lambda is corrected to the box's true area after clipping to the frame.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

__all__ = ["Mixup", "cutmix_box", "mixup_target", "soft_target_cross_entropy"]


def mixup_target(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.0) -> torch.Tensor:
    """Soft targets ``lam * y + (1 - lam) * y.flip(0)`` of label-smoothed one-hot vectors.

    Smoothing follows timm: off value ``smoothing / num_classes``, on value ``1 - smoothing + off``.

    Args:
        labels: int class indices (B,).
        num_classes: K.
        lam: weight of each sample's own label.
        smoothing: label smoothing (MIXUP.LABEL_SMOOTH_VALUE).

    Returns:
        float32 (B, K), each row summing to 1.
    """
    labels = labels.long().view(-1)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"mixup_target: labels must lie in [0, {num_classes}), got {labels.tolist()}")
    off = smoothing / num_classes
    one_hot = torch.full((labels.numel(), num_classes), off, device=labels.device)
    one_hot.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)
    return one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, rng: random.Random) -> tuple[int, int, int, int]:
    """timm's ``rand_bbox``: a box of ``sqrt(1 - lam)`` of each side around a uniform centre, clipped.

    Returns:
        ``(y_lo, y_hi, x_lo, x_hi)``, half-open.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    y_lo, y_hi = min(max(cy - cut_h // 2, 0), height), min(max(cy + (cut_h + 1) // 2, 0), height)
    x_lo, x_hi = min(max(cx - cut_w // 2, 0), width), min(max(cx + (cut_w + 1) // 2, 0), width)
    return y_lo, y_hi, x_lo, x_hi


class Mixup:
    """Mixup or CutMix on a (B, C, T, H, W) batch with soft targets.

    With probability ``prob`` the batch is mixed: CutMix with probability ``switch_prob`` when both
    alphas are positive (lambda ~ Beta(cutmix_alpha, cutmix_alpha)), Mixup otherwise
    (lambda ~ Beta(mixup_alpha, mixup_alpha)). Unmixed batches still get label-smoothed targets.

    Args:
        mixup_alpha: MIXUP.ALPHA; Mixup is active when > 0.
        cutmix_alpha: MIXUP.CUTMIX_ALPHA; CutMix is active when > 0.
        prob: MIXUP.PROB, chance that a batch is mixed at all.
        switch_prob: MIXUP.SWITCH_PROB, chance of CutMix when both are active.
        label_smoothing: MIXUP.LABEL_SMOOTH_VALUE.
        num_classes: MODEL.NUM_CLASSES.
        rng: source of the random draws (a fresh unseeded one when None).
    """

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
            raise ValueError(
                f"Mixup: need mixup_alpha > 0 or cutmix_alpha > 0 (MIXUP.ALPHA, MIXUP.CUTMIX_ALPHA), got "
                f"{mixup_alpha}, {cutmix_alpha}; set MIXUP.ENABLE False to turn mixing off"
            )
        if not 0 <= prob <= 1 or not 0 <= switch_prob <= 1 or not 0 <= label_smoothing < 1 or num_classes < 1:
            raise ValueError(
                f"Mixup: need prob, switch_prob in [0, 1], label_smoothing in [0, 1), num_classes >= 1; got "
                f"{prob}, {switch_prob}, {label_smoothing}, {num_classes}"
            )
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob = prob, switch_prob
        self.label_smoothing, self.num_classes = label_smoothing, num_classes
        self.rng = rng if rng is not None else random.Random()

    def sample_params(self) -> tuple[float, bool]:
        """Draw ``(lam, use_cutmix)`` for one batch; ``lam == 1`` means no mixing."""
        if self.rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = self.rng.random() < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return self.rng.betavariate(alpha, alpha), use_cutmix

    def __call__(self, videos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a float (B, C, T, H, W) batch (not modified in place); returns (videos, soft targets (B, K))."""
        if videos.dim() != 5 or videos.shape[0] < 2:
            raise ValueError(
                f"Mixup: expected a (B, C, T, H, W) batch with B >= 2, got {tuple(videos.shape)}; "
                "use drop_last=True for the training loader"
            )
        lam, use_cutmix = self.sample_params()
        if lam == 1.0:
            pass
        elif use_cutmix:
            y_lo, y_hi, x_lo, x_hi = cutmix_box(videos.shape[-2], videos.shape[-1], lam, self.rng)
            videos = videos.clone()
            videos[..., y_lo:y_hi, x_lo:x_hi] = videos.flip(0)[..., y_lo:y_hi, x_lo:x_hi]
            lam = 1.0 - (y_hi - y_lo) * (x_hi - x_lo) / (videos.shape[-2] * videos.shape[-1])
        else:
            videos = videos * lam + videos.flip(0) * (1.0 - lam)
        targets = mixup_target(labels, self.num_classes, lam, self.label_smoothing)
        return videos, targets.to(device=videos.device)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum_k -targets_k * log_softmax(logits)_k`` (timm SoftTargetCrossEntropy)."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
