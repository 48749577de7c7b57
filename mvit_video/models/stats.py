"""Model statistics for reports: parameter count, fvcore FLOPs and the token grid of each stage."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .attention import THW
from .mvit import MViT, block_specs


@dataclass
class StageInfo:
    """One stage: consecutive blocks that share width and token grid."""

    blocks: tuple[int, int]
    dim: int
    heads: int
    grid: THW

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def is_image_model(model: nn.Module) -> bool:
    """A model whose input is (B, C, H, W) (an MViT with 2-D patches); every other model takes clips."""
    return bool(getattr(model.cfg, "patch_2d", False))


def example_input(model: nn.Module, batch: int = 1, input_size: Optional[THW] = None) -> torch.Tensor:
    """A zero input of the model's configured shape: (B, C, T, H, W), or (B, C, H, W) for image models."""
    t, h, w = input_size or model.cfg.input_size
    shape = (batch, model.cfg.in_chans, h, w) if is_image_model(model) else (batch, model.cfg.in_chans, t, h, w)
    return torch.zeros(shape)


def count_flops(model: nn.Module, input_size: Optional[THW] = None) -> float:
    """Forward FLOPs of one sample as fvcore counts them (one multiply-add = one FLOP), as PySlowFast reports."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    device = next(model.parameters()).device
    analysis = FlopCountAnalysis(model, example_input(model, 1, input_size).to(device))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analysis.total()
    model.train(was_training)
    return float(total)


def stage_table(model: nn.Module, input_size: Optional[THW] = None) -> list[StageInfo]:
    """Stages of the model with their block range, width, heads and the token grid their blocks work on."""
    if hasattr(model, "stage_specs"):  # hierarchical families report their own stages
        return [StageInfo(*spec) for spec in model.stage_specs(input_size)]
    if not isinstance(model, MViT):  # one stage: every block on the same grid and width
        grid = model.token_grids(input_size)[-1]
        return [StageInfo((0, model.cfg.depth - 1), model.cfg.embed_dim, model.cfg.num_heads, grid)]
    specs = block_specs(model.cfg)
    grids = model.token_grids(input_size)[1:]  # grid after each block
    stages: list[StageInfo] = []
    for i, (spec, grid) in enumerate(zip(specs, grids)):
        if stages and stages[-1].dim == spec.dim_out and stages[-1].grid == grid and stages[-1].heads == spec.num_heads:
            stages[-1].blocks = (stages[-1].blocks[0], i)
        else:
            stages.append(StageInfo((i, i), spec.dim_out, spec.num_heads, grid))
    return stages
