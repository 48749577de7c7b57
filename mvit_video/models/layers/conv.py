"""A Conv3d that runs one-frame inputs as a Conv2d.

Every family is a video model whose images are one-frame clips. On one frame a Conv3d whose time padding centres its
kernel (``2 * padding = dilation * (kernel - 1)``, every config of the toolkit) sees only its centre time tap, and
PyTorch's Conv3d kernels are slower than its Conv2d ones (CPU: about 1.5x for a depthwise 3 x 3 at 56 x 56): the
same function runs as a Conv2d with the centre tap's weights, forward and backward, with the parameters (and state
dict) of an ``nn.Conv3d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def centre_tap(weight: torch.Tensor, time_size: int, padding: int, dilation: int = 1) -> torch.Tensor | None:
    """The (C', C / groups, kh, kw) time slice of a Conv3d weight that alone meets a one-frame input, or None when
    the time padding does not centre the kernel (the output would have more or fewer than one frame)."""
    if time_size != 1 or 2 * padding != dilation * (weight.shape[2] - 1):
        return None
    if weight.shape[2] == 1:  # a view in backward too (a selected slice's gradient is scattered into zeros)
        return weight.squeeze(2)
    return weight[:, :, padding // dilation]


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation=(1, 1, 1),
           groups: int = 1) -> torch.Tensor:  # fmt: skip
    """``F.conv3d`` on (B, C, T, H, W) with tuples of three for stride, padding and dilation; a one-frame input runs
    as ``F.conv2d`` with the centre time tap (the same values)."""
    tap = centre_tap(weight, x.shape[2], padding[0], dilation[0])
    if tap is None:
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    # (B, C, 1, H, W) -> (B, C, H, W) -> conv -> (B, C', 1, H', W'); squeeze is a view in backward too (indexing
    # would scatter the gradient into a zero tensor)
    return F.conv2d(x.squeeze(2), tap, bias, stride[1:], padding[1:], dilation[1:], groups).unsqueeze(2)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same arguments, parameters and state-dict keys) whose one-frame inputs run as a Conv2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        return conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
