"""The training and multi-view test loops behind ``tools/run_net.py``, with PySlowFast's semantics.

``train(cfg)``: seed, build the model, optionally start from ``TRAIN.CHECKPOINT_FILE_PATH``, resume from the latest
checkpoint in ``OUTPUT_DIR`` (``TRAIN.AUTO_RESUME``), then per epoch: train (per-iteration LR, mixup / cross
entropy, gradient clipping), validate every ``TRAIN.EVAL_PERIOD`` epochs and checkpoint every
``TRAIN.CHECKPOINT_PERIOD`` epochs and at the end. Progress is logged as ``json_stats: {...}`` lines.

``test(cfg)``: multi-view evaluation of ``TEST.CHECKPOINT_FILE_PATH`` (or the latest checkpoint) on the test split,
writing ``test_results.json``, ``test_predictions.pt`` and ``confusion_matrix.png`` to ``OUTPUT_DIR``.

Single process only for now: no DistributedDataParallel, no mixed precision.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

import numpy as np
import simplejson
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import ConfigError
from ..data.loader import build_loader
from ..data.mixup import Mixup, soft_target_cross_entropy
from ..models import build_model, load_pretrained
from .checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from .distributed import is_main_process
from .evaluator import MultiViewAccumulator, compute_metrics, format_metrics, gather, topk_ranked, write_results
from .optim import LRSchedule, build_optimizer, set_lr

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


# ----------------------------------------------------------------------------------------------------------- set-up


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(cfg) -> torch.device:
    """CUDA when ``NUM_GPUS > 0`` and available, else CPU."""
    if cfg.NUM_GPUS > 0 and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if cfg.NUM_GPUS > 0:
        logger.warning("NUM_GPUS=%d but CUDA is not available; running on the CPU", cfg.NUM_GPUS)
    return torch.device("cpu")


def init_from_checkpoint(model: nn.Module, path: str) -> None:
    """Loads ``TRAIN.CHECKPOINT_FILE_PATH`` weights; a classifier of another size is re-initialised."""
    report = load_pretrained(model, path, num_classes_mismatch="reinit")
    logger.info("initialised from %s: %s", path, report.summary())


def log_json_stats(stats: dict) -> None:
    """Logs ``json_stats: {...}`` (PySlowFast's format; floats rounded to 6 significant digits)."""
    rounded = {k: (float(f"{v:.6g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in stats.items()}
    logger.info("json_stats: %s", simplejson.dumps(rounded, sort_keys=True, ignore_nan=True))


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[float]:
    """Top-k error rates in percent of (B, K) logits against (B,) labels (k capped at K)."""
    return [100.0 - accuracy for accuracy in topk_ranked(logits, labels, ks)[1]]


# ----------------------------------------------------------------------------------------------------------- train


def build_mixup(cfg, epoch: int) -> Mixup | None:
    """The epoch's Mixup (seeded by RNG_SEED and epoch, so a resumed run draws the same), or None."""
    if not cfg.MIXUP.ENABLE:
        return None
    m = cfg.MIXUP
    return Mixup(m.ALPHA, m.CUTMIX_ALPHA, m.PROB, m.SWITCH_PROB, m.LABEL_SMOOTH_VALUE, cfg.MODEL.NUM_CLASSES,
                 rng=random.Random(cfg.RNG_SEED * 100003 + epoch))  # fmt: skip


def compute_loss(model: nn.Module, videos: torch.Tensor, labels: torch.Tensor, mixup: Mixup | None):
    """Forward and loss: soft-target CE on mixed clips with MIXUP.ENABLE (smoothing inside the targets), else
    plain cross entropy, as PySlowFast does. Returns (loss, logits)."""
    if mixup is not None:
        videos, targets = mixup(videos, labels)
        logits = model(videos)
        return soft_target_cross_entropy(logits, targets), logits
    logits = model(videos)
    return F.cross_entropy(logits, labels), logits


def clip_and_measure(cfg, model: nn.Module) -> float:
    """Applies SOLVER.CLIP_GRAD_VAL / CLIP_GRAD_L2NORM (when set); returns the gradient L2 norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.SOLVER.CLIP_GRAD_VAL is not None:
        nn.utils.clip_grad_value_(params, cfg.SOLVER.CLIP_GRAD_VAL)
    max_norm = cfg.SOLVER.CLIP_GRAD_L2NORM if cfg.SOLVER.CLIP_GRAD_L2NORM is not None else float("inf")
    return float(nn.utils.clip_grad_norm_(params, max_norm))


def check_loss(loss: torch.Tensor, cfg, epoch: int, iteration: int) -> None:
    """Raises ``TrainingDiverged`` (one line, naming the last good checkpoint) for a NaN or infinite loss."""
    if math.isfinite(loss.item()):
        return
    last = latest_checkpoint(cfg.OUTPUT_DIR)
    where = f"resume from {last}" if last else "no checkpoint was written yet"
    raise TrainingDiverged(
        f"loss is {loss.item()} at epoch {epoch + 1}, iteration {iteration + 1}; {where} "
        "with a lower SOLVER.BASE_LR or SOLVER.CLIP_GRAD_L2NORM set"
    )


class _Stats:
    """Running sums of per-iteration numbers for the epoch summary."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float], n: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def train_step(cfg, model, optimizer, batch, device, mixup, epoch: int, it: int) -> dict[str, float]:
    """One optimizer step on ``batch``; returns loss, grad norm and top-1/top-5 error (vs. the true labels)."""
    videos = batch["video"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    loss, logits = compute_loss(model, videos, labels, mixup)
    check_loss(loss, cfg, epoch, it)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_and_measure(cfg, model)
    optimizer.step()
    top1, top5 = topk_errors(logits.detach(), labels)
    return {"loss": loss.item(), "grad_norm": grad_norm, "top1_err": top1, "top5_err": top5}


def train_epoch(cfg, model, optimizer, loader, schedule: LRSchedule, device, epoch: int) -> dict[str, float]:
    """Trains one epoch; logs json_stats every LOG_PERIOD iterations and returns the epoch means."""
    model.train()
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    mixup, iters, stats = build_mixup(cfg, epoch), len(loader), _Stats()
    bar = tqdm(total=iters, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", leave=False, dynamic_ncols=True,
               disable=not is_main_process(), mininterval=1.0)  # fmt: skip
    tick = time.perf_counter()
    for it, batch in enumerate(loader):
        data_time = time.perf_counter() - tick
        lr = schedule.at(epoch, it, iters)
        set_lr(optimizer, lr)
        values = train_step(cfg, model, optimizer, batch, device, mixup, epoch, it)
        values.update(lr=lr, data_time=data_time, net_time=time.perf_counter() - tick - data_time)
        stats.add(values, batch["label"].shape[0])
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
        if (it + 1) % cfg.LOG_PERIOD == 0 or it == 0:
            eta = bar.format_dict["elapsed"] / (it + 1) * (iters - it - 1)
            log_json_stats({"_type": "train_iter", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                            "iter": f"{it + 1}/{iters}", "eta_s": eta, **values})  # fmt: skip
        tick = time.perf_counter()
    bar.close()
    return stats.means()


def validate(cfg, model, loader, device, epoch: int) -> dict[str, Any]:
    """Single-view top-1/top-5 error on the val split; unreadable videos (valid=False) are excluded.

    Runs in a forked torch RNG, so validating or not leaves the training's random stream (and resume) unchanged.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        return _validate(cfg, model, loader, device, epoch)


def _validate(cfg, model, loader, device, epoch: int) -> dict[str, Any]:
    model.eval()
    logits_all, labels_all, failed = [], [], 0
    for batch in loader:
        valid = batch["valid"].bool()
        failed += int((~valid).sum())
        if not valid.any():
            continue
        videos = batch["video"][valid]
        if videos.ndim == 6:  # (B, 1, C, T, H, W) -> (B, C, T, H, W)
            videos = videos.flatten(0, 1)
        logits_all.append(model(videos.to(device)).float().cpu())
        labels_all.append(batch["label"][valid])
    stats: dict[str, Any] = {"_type": "val_epoch", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                             "num_videos": sum(len(x) for x in labels_all), "num_failed": failed}  # fmt: skip
    if logits_all:
        stats["top1_err"], stats["top5_err"] = topk_errors(torch.cat(logits_all), torch.cat(labels_all))
    log_json_stats(stats)
    return stats


def resume_or_init(cfg, model, optimizer) -> int:
    """The 0-based epoch to start at: after the latest checkpoint in OUTPUT_DIR (TRAIN.AUTO_RESUME), else 0 with
    weights from TRAIN.CHECKPOINT_FILE_PATH when set."""
    last = latest_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if last is not None:
        return int(load_training_state(last, model, optimizer)["start_epoch"])
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        init_from_checkpoint(model, cfg.TRAIN.CHECKPOINT_FILE_PATH)
    return 0


def build_schedule(cfg) -> LRSchedule:
    """The LR schedule of cfg.SOLVER; an impossible one is a one-line ``ConfigError``."""
    try:
        return LRSchedule.from_cfg(cfg, num_shards=cfg.NUM_SHARDS)
    except ValueError as e:
        raise ConfigError(f"SOLVER: {e}") from None


def _is_due(epoch: int, period: int, max_epoch: int) -> bool:
    return (epoch + 1) % period == 0 or epoch + 1 == max_epoch


def train(cfg) -> dict[str, Any]:
    """Trains the model ``cfg`` describes (see the module docstring). Returns the last epoch's summaries."""
    schedule = build_schedule(cfg)
    seed_everything(cfg.RNG_SEED)
    device = select_device(cfg)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    start_epoch = resume_or_init(cfg, model, optimizer)
    train_loader = build_loader(cfg, "train")
    if len(train_loader) == 0:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE={cfg.TRAIN.BATCH_SIZE} is larger than the training split "
            f"({len(train_loader.dataset)} videos): no full batch per epoch; lower TRAIN.BATCH_SIZE"
        )
    val_loader = build_loader(cfg, "val") if cfg.TRAIN.EVAL_PERIOD > 0 else None
    logger.info("start epoch %d/%d (%d iterations per epoch, device %s)", start_epoch + 1, cfg.SOLVER.MAX_EPOCH,
                len(train_loader), device)  # fmt: skip
    summary: dict[str, Any] = {"start_epoch": start_epoch}
    for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        start = time.perf_counter()
        means = train_epoch(cfg, model, optimizer, train_loader, schedule, device, epoch)
        log_json_stats({"_type": "train_epoch", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                        "epoch_time_s": time.perf_counter() - start, **means})  # fmt: skip
        summary["train"] = means
        if val_loader is not None and _is_due(epoch, cfg.TRAIN.EVAL_PERIOD, cfg.SOLVER.MAX_EPOCH):
            summary["val"] = validate(cfg, model, val_loader, device, epoch)
        if _is_due(epoch, cfg.TRAIN.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_EPOCH):
            save_checkpoint(cfg.OUTPUT_DIR, epoch, model, optimizer, cfg)
    return summary


# ------------------------------------------------------------------------------------------------------------ test


def test_checkpoint(cfg) -> str:
    """TEST.CHECKPOINT_FILE_PATH, else the latest checkpoint in OUTPUT_DIR; raises FileNotFoundError if neither."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH
    last = latest_checkpoint(cfg.OUTPUT_DIR)
    if last is None:
        raise FileNotFoundError(
            f"no checkpoint to test: TEST.CHECKPOINT_FILE_PATH is empty and {cfg.OUTPUT_DIR}/checkpoints holds none"
        )
    return last


@torch.no_grad()
def run_test_views(cfg, model, loader, device) -> MultiViewAccumulator:
    """Scores every view of every test video; (B, V, C, T, H, W) batches are run as B*V clips."""
    num_views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    acc = MultiViewAccumulator(cfg.MODEL.NUM_CLASSES, num_views, cfg.DATA.ENSEMBLE_METHOD)
    model.eval()
    for batch in tqdm(loader, desc="test", leave=False, dynamic_ncols=True, disable=not is_main_process()):
        videos = batch["video"]
        b, v = videos.shape[:2]
        logits = model(videos.flatten(0, 1).to(device)).view(b, v, -1)  # (B*V, K) -> (B, V, K)
        acc.add(batch["index"], logits, batch["label"], batch["valid"], batch["error"])
    return acc


def test(cfg, config_path: str | None = None) -> dict[str, Any]:
    """Multi-view test of a checkpoint; logs the metrics line and writes the result files to OUTPUT_DIR.

    Args:
        cfg: the root config.
        config_path: the YAML it came from, recorded in ``test_results.json``.

    Returns:
        ``compute_metrics``'s dict.
    """
    seed_everything(cfg.RNG_SEED)
    device = select_device(cfg)
    model = build_model(cfg)
    path = test_checkpoint(cfg)
    report = load_pretrained(model, path)
    logger.info("testing %s: %s", path, report.summary())
    model.to(device)
    acc = gather(run_test_views(cfg, model, build_loader(cfg, "test"), device))
    metrics = compute_metrics(acc)
    print(format_metrics(metrics, "test"), flush=True)
    if is_main_process():
        write_results(cfg.OUTPUT_DIR, metrics, acc, checkpoint=path, config_path=config_path)
    return metrics
