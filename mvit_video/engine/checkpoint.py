"""Saving and resuming training state: PySlowFast-compatible ``.pyth`` files, written atomically.

A checkpoint is a dict with PySlowFast's keys (``epoch``, ``model_state``, ``optimizer_state``, ``cfg``) plus
``mvit_video_version``, ``scaler_state`` and ``rng_state``, and ``sampler_state`` / ``scheduler_state`` / ``extra``
when given. Files live in ``OUTPUT_DIR/checkpoints/checkpoint_epoch_NNNNN.pyth``; as in PySlowFast, the file for
the epoch with 0-based index ``e`` is numbered ``e + 1`` and stores ``"epoch": e``, so training resumes at ``e + 1``.

A run stopped in the middle of epoch ``e`` after ``k`` of its iterations (a SIGTERM) writes
``checkpoint_epoch_{e:05d}_iter_{k:05d}.pyth``: the numbers count what is done (``e`` epochs, then ``k``
iterations), so the name sorts after the end of the previous epoch and before the end of this one, by name and in
``latest_checkpoint``. It stores ``"epoch": e - 1`` (PySlowFast resumes it at the start of epoch ``e``) and
``"iteration": k``. Writing a checkpoint removes the mid-epoch files it supersedes.

Every value is a tensor or plain Python data, so files load with ``torch.load(..., weights_only=True)``. Writes go
to a temporary file in the same folder that is flushed, fsynced and renamed onto the final name: a crash while
saving leaves the previous checkpoint intact, and loaders never see half-written files.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import random
import re
import uuid
import zipfile
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr
from torch import nn

from ..models.convert import MVIT_VIDEO_VERSION_KEY, unwrap_checkpoint
from ..models.pretrained import CheckpointError, read_checkpoint
from ..process import is_main_process
from .distributed import unwrap_model

__all__ = [
    "capture_rng_state",
    "checkpoint_candidates",
    "checkpoint_path",
    "has_checkpoint",
    "latest_checkpoint",
    "load_training_state",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME_PATTERN = re.compile(r"checkpoint_epoch_(\d{5,})(?:_iter_(\d{5,}))?\.pyth")
_FALLBACK_VERSION = "0.1.0"
_TRAINING_KEYS = ("epoch", "model_state")

PathLike = str | os.PathLike


def checkpoint_path(output_dir: PathLike, epoch: int, iteration: int = 0) -> str:
    """The path of checkpoint number ``epoch``: ``OUTPUT_DIR/checkpoints/checkpoint_epoch_00010.pyth``; with
    ``iteration`` > 0, the mid-epoch file ``k`` iterations after it: ``checkpoint_epoch_00010_iter_00042.pyth``."""
    name = f"checkpoint_epoch_{epoch:05d}" + (f"_iter_{iteration:05d}" if iteration else "") + ".pyth"
    return os.path.join(os.fspath(output_dir), CHECKPOINT_DIR, name)


def _package_version() -> str:
    try:
        return metadata.version("mvit_video")
    except metadata.PackageNotFoundError:
        return _FALLBACK_VERSION


# ----------------------------------------------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when available) CUDA generator states, as weights-only-safe data.

    Returns:
        ``{"python": (version, tuple of ints, gauss or None), "numpy": {"keys": int64 tensor (624,), "pos",
        "has_gauss", "cached_gaussian"}, "torch": uint8 tensor, "cuda": list of uint8 tensors (one per device)}``.
    """
    state: dict[str, Any] = {"python": random.getstate(), "numpy": None, "torch": torch.get_rng_state()}
    np_state = np.random.get_state()
    if isinstance(np_state, tuple) and np_state[0] == "MT19937":
        _, keys, pos, has_gauss, cached = np_state
        state["numpy"] = {
            "keys": torch.from_numpy(keys.astype(np.int64)),  # uint32 ndarray -> int64 tensor (exact)
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    else:
        logger.warning("NumPy's global generator is not MT19937; its state is not saved in the checkpoint")
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undoes ``capture_rng_state``: the generators continue exactly where they were when it was called."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state.get("numpy")
    if np_state is not None:
        keys = np_state["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            logger.warning("checkpoint has CUDA RNG states for %d devices, this process sees %d; restoring the "
                           "common ones", len(cuda), torch.cuda.device_count())  # fmt: skip
        for device, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


# ---------------------------------------------------------------------------------------------------------- saving


def _check_weights_only_loadable(name: str, value: Any) -> None:
    """Raises before any writing if ``torch.load(weights_only=True)`` would refuse ``value``."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0][:160]
        raise TypeError(
            f"save_checkpoint: {name} holds a value that weights-only loading refuses ({reason}); store tensors "
            "and plain Python data (int, float, str, list, tuple, dict), e.g. float(x) instead of a NumPy scalar"
        ) from None


def _cfg_text(cfg: Any) -> str | None:
    if cfg is None or isinstance(cfg, str):
        return cfg
    return cfg.dump()


def _build_checkpoint(position: dict, model: nn.Module, optimizer, cfg, scaler, optional: dict) -> dict[str, Any]:
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    checkpoint = {
        **position,
        "model_state": state,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "cfg": _cfg_text(cfg),
        MVIT_VIDEO_VERSION_KEY: _package_version(),
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "rng_state": capture_rng_state(),
    }
    checkpoint.update({k: v for k, v in optional.items() if v is not None})
    return checkpoint


def _write_atomically(obj: Any, path: str) -> None:
    """``torch.save`` to ``<path>.tmp.<id>`` beside ``path``, fsync, then rename onto ``path``."""
    folder = os.path.dirname(path)
    tmp = f"{path}.tmp.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    output_dir: PathLike,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    cfg: Any,
    *,
    iteration: int | None = None,
    scheduler_state: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    sampler_state: Any | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Saves the training state after epoch ``epoch`` (0-based, as PySlowFast's ``cur_epoch``), or after
    ``iteration`` iterations of it.

    The file is ``checkpoint_path(output_dir, epoch + 1)`` and stores ``"epoch": epoch``; with ``iteration`` it is
    ``checkpoint_path(output_dir, epoch, iteration)`` and stores ``"epoch": epoch - 1, "iteration": iteration``.
    Mid-epoch files older than the new file are then removed. Only the main process (rank 0 when
    ``torch.distributed`` is initialised) writes; other ranks return the same path without writing. The output
    folder must be on a local (POSIX-rename) file system.

    Args:
        output_dir: the run's ``OUTPUT_DIR``; files go to its ``checkpoints/`` subfolder.
        epoch: 0-based index of the epoch just finished (with ``iteration``: of the epoch in progress).
        model: the model, possibly wrapped in DDP / DataParallel / ``torch.compile`` (the inner module is saved).
        optimizer: its state is saved as ``optimizer_state`` (None stores None).
        cfg: a ``CfgNode`` (saved as ``cfg.dump()`` YAML, as PySlowFast does), a YAML string, or None.
        iteration: iterations of epoch ``epoch`` done (>= 1), for a stop in the middle of it; None at its end.
        scheduler_state: learning-rate schedule state (plain data), stored when given.
        scaler: an AMP ``GradScaler``; its ``state_dict()`` is stored as ``scaler_state``.
        sampler_state: data-sampler state (plain data), stored when given.
        extra: anything else to keep (plain data, e.g. best accuracy), stored when given.

    Returns:
        The checkpoint's path.

    Raises:
        TypeError: if ``scheduler_state``, ``sampler_state`` or ``extra`` hold values weights-only loading refuses.
    """
    if iteration is not None and iteration < 1:
        raise ValueError(f"save_checkpoint: iteration must be >= 1 (None at the end of an epoch), got {iteration}")
    path = checkpoint_path(output_dir, *((epoch + 1,) if iteration is None else (epoch, iteration)))
    if not is_main_process():
        return path
    optional = {"scheduler_state": scheduler_state, "sampler_state": sampler_state, "extra": extra}
    for name, value in optional.items():
        if value is not None:
            _check_weights_only_loadable(name, value)
    position = {"epoch": epoch} if iteration is None else {"epoch": epoch - 1, "iteration": iteration}
    checkpoint = _build_checkpoint(position, model, optimizer, cfg, scaler, optional)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_atomically(checkpoint, path)
    logger.info("saved checkpoint %s", path)
    _remove_superseded(path)
    return path


# --------------------------------------------------------------------------------------------------------- finding


def _order(name: str) -> tuple[int, int] | None:
    """(epochs done, iterations of the next one done) of a checkpoint file name; None for other names."""
    match = _NAME_PATTERN.fullmatch(name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def _remove_superseded(path: str) -> None:
    """Removes the mid-epoch checkpoints older than ``path``: the new file holds a later state."""
    folder, newest = os.path.dirname(path), _order(os.path.basename(path))
    for name in g_pathmgr.ls(folder):
        order = _order(name)
        if order is not None and order[1] > 0 and order < newest:
            g_pathmgr.rm(os.path.join(folder, name))
            logger.info("removed %s (superseded by %s)", name, os.path.basename(path))


def checkpoint_candidates(output_dir: PathLike) -> list[str]:
    """Every checkpoint file in ``OUTPUT_DIR/checkpoints``, newest first (see the module docstring for the order).

    Only names ``checkpoint_epoch_NNNNN.pyth`` and ``checkpoint_epoch_NNNNN_iter_KKKKK.pyth`` count (temporary
    ``*.pyth.tmp.*`` files never do); nothing is read.
    """
    folder = os.path.join(os.fspath(output_dir), CHECKPOINT_DIR)
    if not g_pathmgr.isdir(folder):
        return []
    named = [(order, name) for name in g_pathmgr.ls(folder) if (order := _order(name)) is not None]
    return [os.path.join(folder, name) for _, name in sorted(named, reverse=True)]


def _looks_complete(path: str) -> bool:
    """False for empty files and truncated zip archives (what an interrupted non-atomic writer leaves)."""
    with g_pathmgr.open(path, "rb") as f:
        magic = f.read(4)
        if not magic:
            return False
        return magic != b"PK\x03\x04" or zipfile.is_zipfile(f)


def latest_checkpoint(output_dir: PathLike) -> str | None:
    """The newest complete checkpoint in ``OUTPUT_DIR/checkpoints`` (``checkpoint_candidates``' order), or None.

    Empty or truncated files are skipped with a warning, falling back to the next older one.
    """
    for path in checkpoint_candidates(output_dir):
        if _looks_complete(path):
            return path
        logger.warning("skipping incomplete checkpoint %s (empty or truncated)", path)
    return None


def has_checkpoint(output_dir: PathLike) -> bool:
    """True if ``OUTPUT_DIR/checkpoints`` holds a complete checkpoint to resume from."""
    return latest_checkpoint(output_dir) is not None


# --------------------------------------------------------------------------------------------------------- loading


def _check_architecture(state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor], path: str):
    """Raises a one-line ``CheckpointError`` naming the first key that differs in name or shape."""
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    wrong = [k for k in model_state if k in state and state[k].shape != model_state[k].shape]
    if not (missing or unexpected or wrong):
        return
    if wrong:
        k = wrong[0]
        first = f"{k} is {list(state[k].shape)} in the checkpoint but {list(model_state[k].shape)} in the model"
    elif missing:
        first = f"the model's {missing[0]} is not in the checkpoint"
    else:
        first = f"the checkpoint's {unexpected[0]} has no place in the model"
    raise CheckpointError(
        f"{path}: architecture mismatch ({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} "
        f"differently shaped tensors; first: {first}); resume with the config the checkpoint was trained with"
    )


def _read_training_checkpoint(path: str) -> dict[str, Any]:
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or not all(k in checkpoint for k in _TRAINING_KEYS):
        found = ", ".join(map(str, list(checkpoint)[:8])) if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise CheckpointError(
            f"{path}: not a training checkpoint (needs keys {', '.join(_TRAINING_KEYS)}; found {found}); "
            "to start from its weights use load_pretrained (CLI: TRAIN.CHECKPOINT_FILE_PATH)"
        )
    return dict(checkpoint)


def _load_optimizer(optimizer: torch.optim.Optimizer, state: Mapping | None, path: str) -> None:
    if state is None:
        raise CheckpointError(f"{path}: holds no optimizer state; to start from its weights use load_pretrained")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"{path}: optimizer state does not fit ({str(e).splitlines()[0][:160]}); was it saved with other "
            "parameter groups (e.g. another weight-decay or layer-decay setting)?"
        ) from None


def _check_scaler_state(scaler: torch.amp.GradScaler, state: Mapping | None, path: str) -> None:
    """Raises if an enabled ``scaler`` cannot take ``state`` (before anything is loaded)."""
    missing = set(scaler.state_dict()) - set(state) if scaler.is_enabled() and state else set()
    if missing:
        raise CheckpointError(f"{path}: GradScaler state lacks {', '.join(sorted(missing))}")


def _load_scaler(scaler: torch.amp.GradScaler, state: Mapping | None, path: str) -> None:
    if not state:
        if scaler.is_enabled():
            logger.warning("%s: holds no GradScaler state; the loss scale starts afresh", path)
        return
    scaler.load_state_dict(state)


def load_training_state(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Resumes from a training checkpoint (this package's or PySlowFast's): weights, optimizer, scaler and RNGs.

    The model state is loaded strictly, by PySlowFast key names (a ``module.`` prefix is stripped; a DDP-wrapped
    ``model`` is unwrapped). Everything that can fail is checked before anything is loaded: when it raises, model,
    optimizer, scaler and generators are as they were.

    Args:
        path: a checkpoint file (local path or iopath URI), e.g. ``latest_checkpoint(cfg.OUTPUT_DIR)``.
        model: the model to fill.
        optimizer: restored from ``optimizer_state`` when given.
        scaler: restored from ``scaler_state`` when given (a checkpoint without one leaves it as it is).
        restore_rng: restore the Python / NumPy / torch / CUDA generators saved with the checkpoint, if any.

    Returns:
        ``{"epoch": the saved 0-based epoch, "start_epoch": epoch + 1, "iteration": iterations of ``start_epoch``
        already done (0 but for mid-epoch files), "rng_state" (as saved), "sampler_state", "scheduler_state",
        "extra", "cfg" (the saved YAML text)}``; absent entries are None.

    Raises:
        CheckpointError: one line, for a missing or unreadable file, a file that is not a training checkpoint, an
            architecture mismatch (naming the first differing key and shapes) or an optimizer that does not fit.
    """
    path = os.fspath(path)
    checkpoint = _read_training_checkpoint(path)
    state, _ = unwrap_checkpoint({"model_state": checkpoint["model_state"]})
    target = unwrap_model(model)
    _check_architecture(state, target.state_dict(), path)
    if scaler is not None:
        _check_scaler_state(scaler, checkpoint.get("scaler_state"), path)
    if optimizer is not None:  # first: torch checks the groups before it changes anything
        _load_optimizer(optimizer, checkpoint.get("optimizer_state"), path)
    target.load_state_dict(state, strict=True)
    if scaler is not None:
        _load_scaler(scaler, checkpoint.get("scaler_state"), path)
    if restore_rng and checkpoint.get("rng_state") is not None:
        restore_rng_state(checkpoint["rng_state"])
    epoch, iteration = int(checkpoint["epoch"]), int(checkpoint.get("iteration") or 0)
    done = f"epoch {epoch + 1} and {iteration} iterations of the next" if iteration else f"epoch {epoch + 1}"
    logger.info("resumed from %s (%s done)", path, done)
    return {
        "epoch": epoch,
        "start_epoch": epoch + 1,
        "iteration": iteration,
        **{k: checkpoint.get(k) for k in ("rng_state", "sampler_state", "scheduler_state", "extra", "cfg")},
    }
