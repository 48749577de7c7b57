"""What ``tools/run_net.py`` runs: checks that fail in one line before any work, then training and/or the test.

``run_job(cfg, init_method, config_path)`` generates the toy dataset if the config asks for it and it is missing,
runs ``preflight``, launches the processes (``distributed.launch``) and runs ``train`` / ``test`` in each as
``TRAIN.ENABLE`` / ``TEST.ENABLE`` say; training stopped by a signal skips the test (``was_stopped``).
(``DEMO.ENABLE`` is dispatched by ``tools/run_net.py`` to the demo.)
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import torch

from ..config import ConfigError
from ..data.loader import check_split
from ..models import build_model
from ..models.pretrained import CheckpointError
from ..process import is_main_process, setup_logging
from .checkpoint import has_checkpoint
from .distributed import barrier, launch, torchrun_plan
from .init_checkpoint import init_from_checkpoint
from .optim import build_optimizer
from .trainer import load_test_model, test, train

logger = logging.getLogger(__name__)

TOY_DATA_DIR = "data/toy"


def check_output_dir(path: str) -> None:
    """Creates OUTPUT_DIR and proves it writable; else a one-line ``ConfigError``."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test_{uuid.uuid4().hex}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"OUTPUT_DIR={path!r} is not writable ({e.strerror or e}); set OUTPUT_DIR to a writable "
                          "folder") from None  # fmt: skip


def needed_splits(cfg) -> list[str]:
    """The data splits this run will read."""
    splits = []
    if cfg.TRAIN.ENABLE:
        splits.append("train")
        if cfg.TRAIN.EVAL_PERIOD > 0:
            splits.append("val")
    if cfg.TEST.ENABLE:
        splits.append("test")
    return splits


def _check_checkpoint(key: str, load: Callable[[], object]) -> None:
    """Runs ``load``; a checkpoint it cannot use becomes one line that names the config key."""
    try:
        load()
    except CheckpointError as e:
        raise CheckpointError(str(e) if key in str(e) else f"{key}: {e}") from None


def _initialise_fresh_model(cfg) -> None:
    """Starts a throw-away model, optimizer and scaler from TRAIN.CHECKPOINT_FILE_PATH as training will."""
    model = build_model(cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=cfg.TRAIN.PRECISION == "fp16")
    init_from_checkpoint(cfg, model, build_optimizer(model, cfg), scaler)


def preflight(cfg) -> None:
    """Everything that can be checked before work starts: OUTPUT_DIR, every split's index and files, and the
    checkpoints the run will load (read and fitted to the model: a file that is not a checkpoint, or one of
    another architecture or class count, fails here). Raises a one-line user error."""
    check_output_dir(cfg.OUTPUT_DIR)
    for split in needed_splits(cfg):
        check_split(cfg, split)
    resumes = cfg.TRAIN.AUTO_RESUME and has_checkpoint(cfg.OUTPUT_DIR)
    if cfg.TRAIN.ENABLE and cfg.TRAIN.CHECKPOINT_FILE_PATH and not resumes:
        _check_checkpoint("TRAIN.CHECKPOINT_FILE_PATH", lambda: _initialise_fresh_model(cfg))
    if cfg.TEST.ENABLE and cfg.TEST.CHECKPOINT_FILE_PATH:
        _check_checkpoint("TEST.CHECKPOINT_FILE_PATH", lambda: load_test_model(cfg, cfg.TEST.CHECKPOINT_FILE_PATH))


def ensure_toy_dataset(cfg) -> None:
    """Generates the toy dataset when the config points at the default toy folder and it is missing or was written
    by another generator version (so an old, differently made dataset is never silently reused)."""
    from ..data.toy import format_summary, make_toy_dataset, stale_reason

    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    is_toy_default = os.path.normpath(data_dir) == os.path.normpath(TOY_DATA_DIR)
    reason = stale_reason(data_dir) if is_toy_default and is_main_process() else None
    if reason is not None:
        logger.info("%s: %s; generating the toy dataset there", data_dir, reason)
        logger.info(format_summary(make_toy_dataset(data_dir, workers=min(4, os.cpu_count() or 1))))
    barrier()


def prepare(cfg) -> None:
    """``preflight``, with the toy dataset generated (if the config asks for it) once OUTPUT_DIR is known good."""
    check_output_dir(cfg.OUTPUT_DIR)
    ensure_toy_dataset(cfg)
    preflight(cfg)


def _work(cfg, config_path: str | None, prepared: bool) -> dict[str, Any]:
    setup_logging()
    if not prepared:
        prepare(cfg)
    results: dict[str, Any] = {}
    if cfg.TRAIN.ENABLE:
        results["train"] = train(cfg)
    if cfg.TEST.ENABLE and not was_stopped(results):
        results["test"] = test(cfg, config_path=config_path)
    return results


def was_stopped(results: dict[str, Any] | None) -> bool:
    """True if a stop signal ended training early (``run_job``'s results; also its launcher's report)."""
    return bool(results and results.get("train", {}).get("stopped"))


def run_job(cfg, init_method: str | None = None, config_path: str | None = None) -> dict[str, Any] | None:
    """Trains and/or tests as the config says, in one or many processes (see ``distributed.launch``).

    A process that starts the job itself checks everything before it spawns workers; under torchrun every process
    checks after joining the group (rank 0 generates the toy dataset while the others wait).
    """
    prepared = torchrun_plan(cfg) is None
    if prepared:
        prepare(cfg)
    return launch(cfg, init_method, _work, config_path, prepared)
