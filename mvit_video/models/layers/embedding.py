"""Patch embedding: pixels to tokens, by one strided convolution (2-D patches or 3-D tubelets) or by DeepViT's
small CNN stem."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import Conv3d


def pad_time_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """A clip (B, C, T, H, W) zero-padded at its end to a multiple of ``multiple`` frames."""
    if x.shape[2] % multiple:
        x = F.pad(x, (0, 0, 0, 0, 0, multiple - x.shape[2] % multiple))
    return x


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
        conv = nn.Conv2d if len(kernel) == 2 else Conv3d
        self.proj = conv(in_chans, embed_dim, tuple(kernel), tuple(stride), tuple(padding))
        self.pad_time = pad_time and len(kernel) == 3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if self.pad_time:
            x = pad_time_to(x, self.proj.stride[0])
        x = self.proj(x)
        thw = (1, *x.shape[2:]) if x.ndim == 4 else tuple(x.shape[2:])
        # (B, C, [T,] H, W) -> (B, THW, C)
        return x.flatten(2).transpose(1, 2), thw


class ConvPatchEmbed(nn.Module):
    """DeepViT's CNN patch stem (``PatchEmbed_CNN``, after T2T-ViT) on clips: ``conv1`` 7x7 stride 2 to ``channels``
    (no bias), ``bn1``, ReLU, ``conv2`` 3x3 stride 1 (no bias), ``bn2``, ReLU, then ``proj``: a (patch/2 x patch/2)
    strided conv with bias to the token width. 224 pixels give 112, then 14 tokens a side for patch 16.

    In time, ``conv1`` and ``conv2`` have an odd kernel ``temporal_kernel``, zero-padded to keep the length (``conv1``
    strided by ``temporal_stride``), and ``proj`` takes ``tubelet`` frames (the clip zero-padded at its end to a
    multiple). Image weights inflated onto the centre tap of ``conv1``/``conv2`` (the first tap of ``proj``) keep a
    one-frame clip equal to the image model; BatchNorm3d in eval mode is BatchNorm2d on every frame.

    Args:
        in_chans: input channels.
        embed_dim: token width.
        patch_size: pixels per token side (even: ``proj`` covers half of it after the stride-2 ``conv1``).
        tubelet: frames per token of ``proj``.
        temporal_kernel: time kernel of ``conv1`` and ``conv2`` (odd).
        temporal_stride: time stride of ``conv1``.
        channels: width of the two stem convolutions (64 in DeepViT).
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16, tubelet: int = 1,
                 temporal_kernel: int = 1, temporal_stride: int = 1, channels: int = 64) -> None:  # fmt: skip
        super().__init__()
        if patch_size % 2 or temporal_kernel % 2 == 0:
            raise ValueError(f"ConvPatchEmbed needs an even patch_size and an odd temporal_kernel, got {patch_size} "
                             f"and {temporal_kernel}")  # fmt: skip
        kt, pt, half = temporal_kernel, temporal_kernel // 2, patch_size // 2
        self.conv1 = Conv3d(in_chans, channels, (kt, 7, 7), (temporal_stride, 2, 2), (pt, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.relu = nn.ReLU()
        self.conv2 = Conv3d(channels, channels, (kt, 3, 3), 1, (pt, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.proj = Conv3d(channels, embed_dim, (tubelet, half, half), (tubelet, half, half))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, C, T, H, W) -> (B, 64, T/st, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.proj(pad_time_to(x, self.proj.stride[0]))
        # (B, C, T', H', W') -> (B, T'H'W', C)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])
