"""Classifier heads and the one test-time activation rule (``MODEL.HEAD_ACT``)."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Dropout then a linear projection to class logits (no softmax: callers apply ``head_activation``).

    Args:
        dim_in: feature width.
        num_classes: outputs.
        dropout_rate: dropout before the projection.
        detach_input: cut the gradient below the projection, so only the classifier trains (PySlowFast's
            ``MODEL.DETACH_FINAL_FC``).
    """

    def __init__(self, dim_in: int, num_classes: int, dropout_rate: float = 0.0, detach_input: bool = False):
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.projection = nn.Linear(dim_in, num_classes)
        self.detach_input = detach_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        return self.projection(x.detach() if self.detach_input else x)


def head_activation(logits: torch.Tensor, act: str) -> torch.Tensor:
    """Class scores from logits, as PySlowFast's test-time head makes them (``MODEL.HEAD_ACT``).

    The one rule for every consumer of test-time scores (multi-view evaluation, the demo).

    Args:
        logits: (..., K) classifier outputs.
        act: "softmax" (over the classes), "sigmoid" (each class on its own, for multi-label models) or "none"
            (the logits themselves).

    Returns:
        Scores of the shape of ``logits``.
    """
    if act == "softmax":
        return logits.softmax(dim=-1)
    if act == "sigmoid":
        return logits.sigmoid()
    if act == "none":
        return logits
    raise ValueError(f"head activation {act!r} is not softmax, sigmoid or none (MODEL.HEAD_ACT)")


ENSEMBLE_METHODS = ("sum", "max")


def ensemble_views(view_logits: torch.Tensor, ensemble: str = "sum", head_act: str = "softmax") -> torch.Tensor:
    """Scores of V views ensembled as PySlowFast's ``TestMeter`` does (``DATA.ENSEMBLE_METHOD``): each view scored
    by ``head_activation``, then summed ("sum") or element-wise maxed ("max") over the views.

    The one rule for every consumer of multi-view scores (the evaluator, ``tools/predict.py``).

    Args:
        view_logits: (..., V, K) logits.
        ensemble: "sum" or "max".
        head_act: ``MODEL.HEAD_ACT``.

    Returns:
        (..., K) float32 scores (with "sum" and softmax they add up to V).
    """
    if ensemble not in ENSEMBLE_METHODS:
        raise ValueError(f"ensemble method {ensemble!r} is not supported; use one of {ENSEMBLE_METHODS}")
    scores = head_activation(view_logits.float(), head_act)
    return scores.sum(dim=-2) if ensemble == "sum" else scores.amax(dim=-2)
