"""Intermediate outputs of every family: the token grid after a stage (or a block), for feature extraction.

``stage_output(model, x, point)`` runs ``x`` only as far as the point and returns its tokens as a channels-last grid
(B, T', H', W', C), with the class token where the family has one there. A point is ``("stage", n)`` (1-based, the
stages ``tools/model_info.py`` lists; ``n = -1``: the last) or ``("block", i)`` (0-based, families with a flat
``blocks`` list: MViT, the ViT family, CeiT). What a stage's output is, per family:

- MViT: the tokens after the stage's last block (before the final norm); the cls token with ``CLS_EMBED_ON``.
- ViT family, CeiT: one stage, the tokens after the last block (before class-attention blocks and the final norm);
  the cls token where the model has one (DeiT's distillation token is dropped).
- Swin, LeViT: the tokens after the stage's last block (LeViT: its shrink attention when the stage has no block).
- Shuffle: the stage's output map. PVTv2: the stage's normed map (timm's ``forward_intermediates``).
- CoaT: the stage's tokens after the serial blocks and, for stages 2-4, the parallel blocks (not normed); each
  stage's own class token.

Pure model code: no config is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .ceit import CeiT
from .coat import CoaT
from .levit import LeViT
from .mvit import MViT
from .pvt import PyramidVisionTransformer
from .shuffle import ShuffleTransformer
from .stats import stage_table
from .swin import SwinTransformer
from .vit import VisionTransformer

Point = tuple[str, int]  # ("stage", n) or ("block", i)


@dataclass(frozen=True)
class StageOutput:
    """Tokens at a point of the network.

    Attributes:
        grid: (B, T', H', W', C) channels-last tokens.
        cls: (B, C) class token at that point, or None where the family has none.
    """

    grid: torch.Tensor
    cls: torch.Tensor | None


class _Reached(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""

    def __init__(self, output) -> None:
        super().__init__()
        self.output = output


def _run_until(model: nn.Module, module: nn.Module, x: torch.Tensor):
    """The output of ``module`` inside ``model.forward_features(x)``; the pass stops there."""

    def hook(_module, _inputs, output):
        raise _Reached(output)

    handle = module.register_forward_hook(hook)
    try:
        model.forward_features(x)
    except _Reached as reached:
        return reached.output
    finally:
        handle.remove()
    raise RuntimeError(f"{type(module).__name__} was not called by {type(model).__name__}.forward_features")


def _tokens(x: torch.Tensor, prefix: int, grid: tuple[int, int, int], cls: bool) -> StageOutput:
    """(B, prefix + T'H'W', C) tokens -> StageOutput (the class token first among the prefix)."""
    return StageOutput(x[:, prefix:].reshape(x.shape[0], *grid, x.shape[-1]), x[:, 0] if cls else None)


def _channels_last(x: torch.Tensor) -> StageOutput:
    return StageOutput(x.permute(0, 2, 3, 4, 1), None)  # (B, C, T, H, W) -> (B, T, H, W, C)


def num_stages(model: nn.Module) -> int:
    """Stages ``("stage", n)`` may name (CoaT: its four stages, not the parallel-block row of its table)."""
    if isinstance(model, CoaT):
        return 4
    return len(stage_table(model))


def num_blocks(model: nn.Module) -> int | None:
    """Blocks ``("block", i)`` may name, or None for families without a flat ``blocks`` list."""
    if isinstance(model, (MViT, VisionTransformer, CeiT)):
        return len(model.blocks)
    return None


def check_point(model: nn.Module, point: Point) -> Point:
    """The point with ``stage -1`` resolved; a ``ValueError`` (one line) for one the model does not have."""
    kind, n = point
    name = type(model).__name__
    if isinstance(model, MViT) and model.cfg.rev_enable:
        raise ValueError(f"{kind}:{n}: a reversible MViT (MVIT.REV) carries two token streams through its stages; "
                         "features of a stage or block are not taken from it: use pre_logits or logits")
    if kind == "stage":
        count = num_stages(model)
        n = count if n == -1 else n
        if not 1 <= n <= count:
            raise ValueError(f"stage:{point[1]}: {name} has stages 1..{count} (tools/model_info.py lists them)")
        return kind, n
    if kind == "block":
        count = num_blocks(model)
        if count is None:
            raise ValueError(f"block:{n}: {name} has no flat list of blocks; use stage:N")
        if not 0 <= n < count:
            raise ValueError(f"block:{n}: {name} has blocks 0..{count - 1}")
        return kind, n
    raise ValueError(f"unknown point {kind!r}: use stage:N or block:N")


def _last_block(model: nn.Module, stage: int) -> int:
    return stage_table(model)[stage - 1].blocks[1]


def _flat_block_output(model: nn.Module, x: torch.Tensor, block: int) -> StageOutput:
    if isinstance(model, MViT):
        tokens, thw = _run_until(model, model.blocks[block], x)
        return _tokens(tokens, int(model.cls_token is not None), thw, model.cls_token is not None)
    grid = model.token_grids(tuple(x.shape[2:]) if x.ndim == 5 else (1, *x.shape[2:]))[0]
    tokens = _run_until(model, model.blocks[block], x)
    if isinstance(model, CeiT):
        return _tokens(tokens, 1, grid, True)
    return _tokens(tokens, model.cfg.num_prefix, grid, model.cfg.num_prefix > 0 and model.cfg.class_token)


def _swin(model: SwinTransformer, x: torch.Tensor, stage: int) -> StageOutput:
    return StageOutput(_run_until(model, model.layers[stage - 1].blocks[-1], x), None)


def _shuffle(model: ShuffleTransformer, x: torch.Tensor, stage: int) -> StageOutput:
    return _channels_last(_run_until(model, model.stages[stage - 1], x))


def _pvt(model: PyramidVisionTransformer, x: torch.Tensor, stage: int) -> StageOutput:
    return _channels_last(model.forward_stages(x)[stage - 1])


def _levit(model: LeViT, x: torch.Tensor, stage: int) -> StageOutput:
    module = model.stages[stage - 1]
    tokens = _run_until(model, module.blocks[-1] if len(module.blocks) else module.downsample, x)
    grid = model.cfg.stage_grids(tuple(x.shape[2:]) if x.ndim == 5 else None)[stage - 1]
    return _tokens(tokens, 0, grid, False)


def _coat(model: CoaT, x: torch.Tensor, stage: int) -> StageOutput:
    xs, grids = model.forward_stages(x)
    return _tokens(xs[stage - 1], 1, grids[stage - 1], True)


_STAGE_OUTPUTS: dict[type, Callable[[nn.Module, torch.Tensor, int], StageOutput]] = {
    SwinTransformer: _swin,
    ShuffleTransformer: _shuffle,
    PyramidVisionTransformer: _pvt,
    LeViT: _levit,
    CoaT: _coat,
}


def stage_output(model: nn.Module, x: torch.Tensor, point: Point) -> StageOutput:
    """The tokens of ``x`` at ``point`` (see the module docs); call in eval mode under ``torch.inference_mode``.

    Args:
        model: a model of any family.
        x: its input, (B, C, T, H, W).
        point: ``("stage", n)`` (1-based; -1 the last) or ``("block", i)`` (0-based).
    """
    kind, n = check_point(model, point)
    if kind == "block":
        return _flat_block_output(model, x, n)
    for family, output in _STAGE_OUTPUTS.items():
        if isinstance(model, family):
            return output(model, x, n)
    return _flat_block_output(model, x, _last_block(model, n))
