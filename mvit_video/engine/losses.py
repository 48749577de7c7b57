"""Training losses (``MODEL.LOSS_FUNC``) and PySlowFast's loss-explosion check (``TRAIN.KILL_LOSS_EXPLOSION_FACTOR``).

Targets come in three forms: (B,) class indices, (B, K) soft targets from mixup, or (B, K) multi-hot rows
(``DATA.MULTI_LABEL``). PySlowFast feeds them to its loss as they are; where that would crash (class indices into a
loss that needs (B, K) targets) they become one-hot rows here, which is what the loss means for a single label:

- ``cross_entropy``: ``F.cross_entropy``, which takes class indices or (B, K) probabilities (PySlowFast's
  ``nn.CrossEntropyLoss``; with mixup targets it equals soft_cross_entropy).
- ``soft_cross_entropy``: ``mean_b sum_k -y_bk log softmax(x_b)_k`` (PySlowFast's ``SoftTargetCrossEntropy``).
- ``bce_logit``: ``F.binary_cross_entropy_with_logits``, each class a binary problem (``nn.BCEWithLogitsLoss``).
- ``bce``: ``F.binary_cross_entropy`` of ``sigmoid(logits)``. PySlowFast hands the raw training logits to
  ``nn.BCELoss``, which fails on values outside [0, 1] (its head applies the activation only at test time);
  the probabilities are what the key asks for. Prefer ``bce_logit``: the same loss, computed stably.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from ..data.mixup import soft_target_cross_entropy


def dense_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K) float targets: class indices become one-hot rows, (B, K) targets are returned as float."""
    if targets.ndim == 1:
        return F.one_hot(targets.long(), num_classes).float()
    return targets.float()


def classification_loss(name: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The ``MODEL.LOSS_FUNC`` loss, averaged over the batch.

    Args:
        name: "cross_entropy", "soft_cross_entropy", "bce" or "bce_logit" (see the module docstring).
        logits: (B, K) classifier outputs (float32).
        targets: (B,) class indices, or (B, K) soft or multi-hot targets.

    Returns:
        The scalar loss.
    """
    if name == "cross_entropy":
        return F.cross_entropy(logits, targets if targets.ndim == 1 else targets.float())
    dense = dense_targets(targets, logits.shape[-1])
    if name == "soft_cross_entropy":
        return soft_target_cross_entropy(logits, dense)
    if name == "bce_logit":
        return F.binary_cross_entropy_with_logits(logits, dense)
    if name == "bce":
        return F.binary_cross_entropy(logits.sigmoid(), dense)
    raise ValueError(f"loss {name!r} is not cross_entropy, soft_cross_entropy, bce or bce_logit (MODEL.LOSS_FUNC)")


class LossExplosionGuard:
    """PySlowFast's ``TRAIN.KILL_LOSS_EXPLOSION_FACTOR`` check, as its ``TrainMeter`` does it.

    From the 7th iteration of an epoch on, a loss greater than ``factor`` times the mean of the 5 losses before it
    has exploded (the trainer then stops with ``TrainingDiverged``). The history starts again every epoch.
    (PySlowFast keeps the losses in its ``LOG_PERIOD`` window, so the check never fires there when LOG_PERIOD < 7;
    here it does not depend on LOG_PERIOD.)

    Args:
        factor: the ratio; 0 disables the check.
    """

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._epoch: int | None = None
        self._losses: deque[float] = deque(maxlen=7)

    def exploded(self, loss: float, epoch: int) -> float | None:
        """Records the (all-reduced) loss of an iteration of ``epoch``; returns the mean of the 5 losses before it
        when ``loss`` exceeds ``factor`` times that mean, else None."""
        if self.factor <= 0:
            return None
        if epoch != self._epoch:
            self._epoch = epoch
            self._losses.clear()
        self._losses.append(loss)
        if len(self._losses) < 7:
            return None
        previous = sum(list(self._losses)[-6:-1]) / 5
        return previous if loss > self.factor * previous else None
