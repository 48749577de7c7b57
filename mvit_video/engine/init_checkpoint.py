"""Starting a training run from ``TRAIN.CHECKPOINT_FILE_PATH``, with the semantics of PySlowFast's
``load_train_checkpoint`` (used when auto-resume finds nothing in ``OUTPUT_DIR``).

- The weights load through ``load_pretrained`` (any supported format), after ``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN``
  removed substrings from the tensor names. 2-D kernels of an image checkpoint are inflated to 3-D only with
  ``TRAIN.CHECKPOINT_INFLATE`` (PySlowFast's I3D average; without it they are an error, where PySlowFast would
  silently leave those tensors at their initialisation). A classifier of another class count needs
  ``TRAIN.CHECKPOINT_REINIT_HEAD``.
- A training checkpoint (one that stores ``epoch``: PySlowFast's and this toolkit's) continues: training starts at
  the epoch after the stored one, with the stored optimizer state (and loss-scaler state when fp16 is on and the
  file has one). ``TRAIN.CHECKPOINT_EPOCH_RESET True`` starts at epoch 1 with a fresh optimizer instead: the way to
  fine-tune. Files without ``epoch`` (torchvision, timm, bare state dicts) always start at epoch 1, and so do
  published weights named ``weights:<model>[.<tag>]`` (``mvit_video.models.weights``; fetched into the cache).
- A masked pre-training checkpoint (MaskFeat: it holds a ``mask_token``) always starts a fine-tuning run at epoch 1:
  its mask token, prediction head and HOG filter buffers are dropped (the load line counts them) and the final norm
  and classifier, which pre-training does not have, start fresh.
- Where PySlowFast would crash or do nothing (no optimizer state, the state of another optimizer or model, a
  checkpoint that already reached ``SOLVER.MAX_EPOCH``) the run stops with one ``CheckpointError`` line.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..models import load_pretrained
from ..models.download import is_published, resolve_checkpoint
from ..models.pretrained import CheckpointError, LoadReport, check_complete, is_pretraining_checkpoint, read_checkpoint

logger = logging.getLogger(__name__)

# tensors a checkpoint may lack and the model starts fresh (temporal tables of image checkpoints)
MAY_BE_MISSING = ("rel_pos_t", "pos_embed_temporal")
_RESET_HINT = "set TRAIN.CHECKPOINT_EPOCH_RESET True to start at epoch 1 from its weights (fine-tuning)"
# hyper-parameters that tell SGD groups from Adam(W) groups
_OPTIMIZER_KEYS = ("momentum", "dampening", "nesterov", "betas", "eps")


def stored_epoch(checkpoint: Any) -> int | None:
    """The 0-based epoch a training checkpoint stores (PySlowFast's ``"epoch"``), None for a weights-only file."""
    epoch = checkpoint.get("epoch") if isinstance(checkpoint, Mapping) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


def init_from_checkpoint(cfg, model: nn.Module, optimizer: torch.optim.Optimizer, scaler) -> int:
    """Loads ``TRAIN.CHECKPOINT_FILE_PATH`` into ``model`` (and, continuing, ``optimizer`` / ``scaler``); returns the
    0-based epoch to start at. See the module docstring; every refusal is a one-line ``CheckpointError``."""
    train, given = cfg.TRAIN, cfg.TRAIN.CHECKPOINT_FILE_PATH
    path = resolve_checkpoint(given)  # weights:<model>[.<tag>]: the published file, fetched into the cache
    checkpoint = read_checkpoint(path)
    pretrained = is_pretraining_checkpoint(checkpoint)
    fresh_start = train.CHECKPOINT_EPOCH_RESET or is_published(given) or pretrained
    epoch = None if fresh_start else stored_epoch(checkpoint)
    if epoch is not None and epoch + 1 >= cfg.SOLVER.MAX_EPOCH:
        raise CheckpointError(f"TRAIN.CHECKPOINT_FILE_PATH={path} finished epoch {epoch + 1}, SOLVER.MAX_EPOCH="
                              f"{cfg.SOLVER.MAX_EPOCH} leaves nothing to train: raise SOLVER.MAX_EPOCH, or "
                              f"{_RESET_HINT}")  # fmt: skip
    report = load_pretrained(
        model, checkpoint, num_classes_mismatch="reinit" if train.CHECKPOINT_REINIT_HEAD else "error",
        inflate="average" if train.CHECKPOINT_INFLATE else None, clear_patterns=train.CHECKPOINT_CLEAR_NAME_PATTERN,
        origin=path,
    )  # fmt: skip
    check_complete(_without_fresh_parts(report) if pretrained else report, path, MAY_BE_MISSING)
    if epoch is None:
        logger.info("initialised from %s: %s; training starts at epoch 1", path, report.summary())
        return 0
    _continue_training_state(path, checkpoint, report, optimizer, scaler, epoch)
    logger.info("continuing %s (%s) after its epoch %d, with its optimizer state", path, report.summary(), epoch + 1)
    return epoch + 1


def _without_fresh_parts(report: LoadReport) -> LoadReport:
    """The report without the final norm and classifier, which a pre-training checkpoint does not have (a ViT
    fine-tuned from an MAE with mean pooling: ``fc_norm``)."""
    fresh = ("norm", "fc_norm", "head")
    return dataclasses.replace(report, missing=[k for k in report.missing if k.split(".")[0] not in fresh])


def _continue_training_state(path: str, checkpoint: Mapping, report: LoadReport, optimizer, scaler, epoch: int) -> None:
    """Loads the optimizer (and loss-scaler) state of a training checkpoint that continues, or raises."""
    where = f"TRAIN.CHECKPOINT_FILE_PATH={path} stores epoch {epoch + 1} and continues with its optimizer state"
    if report.head_reinitialized or report.adapted:
        change = "its classifier was re-initialised" if report.head_reinitialized else (
            f"{len(report.adapted)} of its tensors were resized ({report.adapted[0]})")  # fmt: skip
        raise CheckpointError(f"{where}, which fits only the same model, but {change}; {_RESET_HINT}")
    state = checkpoint.get("optimizer_state")
    if not state:
        raise CheckpointError(f"{where}, but it holds none; {_RESET_HINT}")
    _load_optimizer_state(optimizer, state, where)
    scaler_state = checkpoint.get("scaler_state")
    if scaler is not None and scaler.is_enabled() and scaler_state:
        scaler.load_state_dict(scaler_state)


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping, where: str) -> None:
    """``optimizer.load_state_dict`` where it fits the optimizer and its parameters (torch checks only the counts)."""
    groups = state.get("param_groups", []) if isinstance(state, Mapping) else []
    ours = optimizer.param_groups
    other_kind = len(groups) == len(ours) and any(
        (key in saved) != (key in group) for saved, group in zip(groups, ours) for key in _OPTIMIZER_KEYS
    )
    if other_kind:
        raise CheckpointError(f"{where}, of another optimizer than SOLVER.OPTIMIZING_METHOD="
                              f"{type(optimizer).__name__.lower()}; {_RESET_HINT}")  # fmt: skip
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as e:
        reason = str(e).splitlines()[0][:200]
        raise CheckpointError(f"{where}, which does not fit this model's parameter groups ({reason}); "
                              f"{_RESET_HINT}") from None  # fmt: skip
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise CheckpointError(f"{where}, whose {name} of shape {list(value.shape)} does not fit a "
                                          f"parameter of shape {list(param.shape)}; {_RESET_HINT}")  # fmt: skip
