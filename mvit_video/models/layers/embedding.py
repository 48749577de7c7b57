"""Patch embedding: one strided convolution from pixels to tokens (2-D patches or 3-D tubelets)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Cuts a clip (or an image) into patch tokens with one strided convolution.

    Args:
        in_chans: input channels.
        embed_dim: output channels (token width).
        kernel: conv kernel, (t, h, w) for video or (h, w) for images.
        stride: conv stride, same length as ``kernel``.
        padding: conv padding, same length as ``kernel``.
        pad_time: zero-pad the clip at its end to a multiple of the temporal stride (tubelets of 2 frames still
            take a one-frame clip, as torchvision's ``PatchEmbed3d``).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        pad_time: bool = False,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if len(kernel) == 2 else nn.Conv3d
        self.proj = conv(in_chans, embed_dim, tuple(kernel), tuple(stride), tuple(padding))
        self.pad_time = pad_time and len(kernel) == 3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if self.pad_time and x.shape[2] % self.proj.stride[0]:
            x = F.pad(x, (0, 0, 0, 0, 0, self.proj.stride[0] - x.shape[2] % self.proj.stride[0]))
        x = self.proj(x)
        thw = (1, *x.shape[2:]) if x.ndim == 4 else tuple(x.shape[2:])
        # (B, C, [T,] H, W) -> (B, THW, C)
        return x.flatten(2).transpose(1, 2), thw
