"""Small building blocks shared by the MViT family: patch embedding, MLP, stochastic depth, head."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """Scales a channel width and rounds it to a multiple of ``divisor`` (PySlowFast's rule).

    Args:
        width: the width to scale.
        multiplier: the scale factor; 0 or None leaves ``width`` unchanged.
        min_width: the smallest width returned (``divisor`` when 0).
        divisor: the result is a multiple of this.

    Returns:
        The scaled width, never more than 10% below ``width * multiplier``.
    """
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


class PatchEmbed(nn.Module):
    """Cuts a clip (or an image) into patch tokens with one strided convolution.

    Args:
        in_chans: input channels.
        embed_dim: output channels (token width).
        kernel: conv kernel, (t, h, w) for video or (h, w) for images.
        stride: conv stride, same length as ``kernel``.
        padding: conv padding, same length as ``kernel``.
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if len(kernel) == 2 else nn.Conv3d
        self.proj = conv(in_chans, embed_dim, tuple(kernel), tuple(stride), tuple(padding))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.proj(x)
        thw = (1, *x.shape[2:]) if x.ndim == 4 else tuple(x.shape[2:])
        # (B, C, [T,] H, W) -> (B, THW, C)
        return x.flatten(2).transpose(1, 2), thw


class Mlp(nn.Module):
    """Two linear layers with GELU between them (and dropout after each when ``drop_rate`` > 0)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, drop_rate: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
