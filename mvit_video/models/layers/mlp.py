"""The transformer MLP."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Two linear layers with an activation between them (GELU by default; dropout after each when ``drop_rate``
    > 0)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, drop_rate: float = 0.0,
                 act: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act if act is not None else nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))
