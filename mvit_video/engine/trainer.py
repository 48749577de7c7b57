"""The training and multi-view test loops behind ``tools/run_net.py``, with PySlowFast's semantics.

``train(cfg)``: seed, build the model (DDP-wrapped in a multi-process run), resume from the latest checkpoint in
``OUTPUT_DIR`` (``TRAIN.AUTO_RESUME``) or else start from ``TRAIN.CHECKPOINT_FILE_PATH`` (a training checkpoint
continues after its epoch unless ``TRAIN.CHECKPOINT_EPOCH_RESET``), then per epoch: train (per-iteration LR, mixup,
the ``MODEL.LOSS_FUNC`` loss, autocast in ``TRAIN.PRECISION`` with a loss scaler for fp16, ``TRAIN.GRAD_ACCUM_STEPS``
batches per optimizer step, gradient clipping), validate every ``TRAIN.EVAL_PERIOD`` epochs and checkpoint every
``TRAIN.CHECKPOINT_PERIOD`` epochs and at the end.

``test(cfg)``: multi-view evaluation of ``TEST.CHECKPOINT_FILE_PATH`` (or the latest checkpoint) on the test split;
every rank scores its shard, rank 0 gathers and writes ``test_results.json``, ``test_predictions.pt`` and
``confusion_matrix.png`` (and ``TEST.SAVE_RESULTS_PATH``, PySlowFast's pickle) to ``OUTPUT_DIR``.

Randomness: the model is initialised from ``RNG_SEED``; each epoch re-seeds torch from (``RNG_SEED``, epoch, rank)
and the data pipeline draws per item, so an epoch's batches, augmentations and drop-path masks do not depend on
what happened before it -- a run resumed at an epoch boundary repeats the uninterrupted run exactly.

Preemption: SIGTERM or SIGUSR1 during training (``preemption.stop_signals``) stops every rank after the same
optimizer step; the state goes to a mid-epoch checkpoint (generators, the Mixup generator and the epoch's running
means included) and the test is not run. Resuming from it skips the batches already used without loading them and
continues with the uninterrupted run's per-iteration losses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import UserError
from ..config import ConfigError
from ..data.loader import build_loader
from ..data.mixup import Mixup
from ..models import build_model, load_pretrained
from ..models.maskfeat import multi_mse
from ..models.download import resolve_checkpoint
from ..models.pretrained import CheckpointError, check_complete
from ..models.stats import count_flops, count_params
from .checkpoint import (checkpoint_candidates, latest_checkpoint, load_training_state, restore_rng_state,
                         save_checkpoint)  # fmt: skip
from ..process import is_dist, is_main_process, rank, world_size
from .distributed import all_reduce_mean, barrier, share_cpu, unwrap_model, wrap_ddp
from .init_checkpoint import init_from_checkpoint
from .losses import LossExplosionGuard, classification_loss
from .evaluator import MultiViewAccumulator, compute_metrics, format_metrics, gather, topk_ranked, write_results
from .stats import CURVES_FILE, STATS_FILE, Meter, StatsLogger, memory_mb, plot_training_curves
from .optim import LRSchedule, build_optimizer, set_lr
from .preemption import StopRequest, stop_signals

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite, or exploded (``TRAIN.KILL_LOSS_EXPLOSION_FACTOR``); the message names the
    last good checkpoint."""


# ----------------------------------------------------------------------------------------------------------- set-up


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(cfg, epoch: int) -> int:
    """The seed of epoch ``epoch`` on this rank (drop path and other in-model randomness)."""
    return (cfg.RNG_SEED * 1_000_003 + epoch * 1_009 + rank()) % 2**63


def select_device(cfg) -> torch.device:
    """CUDA (this process's device) when ``NUM_GPUS > 0`` and available, else CPU."""
    if cfg.NUM_GPUS > 0 and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if cfg.NUM_GPUS > 0:
        logger.warning("NUM_GPUS=%d but CUDA is not available; running on the CPU", cfg.NUM_GPUS)
    logger.info("CPU run: %d compute thread(s) per process", share_cpu(cfg))
    return torch.device("cpu")


def autocast(device: torch.device, precision: str):
    """The autocast context of ``TRAIN.PRECISION`` (a no-op for fp32)."""
    dtype = _DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def log_model_info(cfg, model: nn.Module, stats: StatsLogger) -> None:
    """Logs parameters and GFLOPs of one view (fvcore) at the start of training."""
    if not (cfg.LOG_MODEL_INFO and is_main_process()):
        return
    inner = unwrap_model(model)
    devices = [next(inner.parameters()).device] if next(inner.parameters()).is_cuda else []
    gflops = None  # a pre-training model's forward needs a mask: its FLOPs are not counted
    if not cfg.MASK.ENABLE:
        with torch.random.fork_rng(devices=devices):
            gflops = count_flops(inner) / 1e9
    stats.log({"_type": "model_info", "params_m": count_params(inner) / 1e6, "gflops": gflops,
               "input_size": list(inner.cfg.input_size)})  # fmt: skip


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[float]:
    """Top-k error rates in percent of (B, K) logits against (B,) labels (k capped at K)."""
    return [100.0 - accuracy for accuracy in topk_ranked(logits, labels, ks)[1]]


def class_names(cfg) -> list[str] | None:
    """Class names for the confusion matrix: TENSORBOARD.CLASS_NAMES_PATH, else DATA_DIR/classnames.txt."""
    from ..data.classnames import load_classnames

    path = cfg.TENSORBOARD.CLASS_NAMES_PATH or os.path.join(cfg.DATA.PATH_TO_DATA_DIR, "classnames.txt")
    if not os.path.isfile(path):
        return None
    names = load_classnames(path)
    return names if len(names) == cfg.MODEL.NUM_CLASSES else None


# ----------------------------------------------------------------------------------------------------------- train


@dataclass
class Run:
    """What the training loop carries from step to step."""

    cfg: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    device: torch.device
    stats: StatsLogger
    loss_guard: LossExplosionGuard = field(init=False)
    stop: StopRequest = field(default_factory=StopRequest)

    def __post_init__(self) -> None:
        self.loss_guard = LossExplosionGuard(self.cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR)


@dataclass(frozen=True)
class Start:
    """Where training starts: the 0-based ``epoch`` and the ``iteration``s of it already done; for a mid-epoch
    start, ``loop`` holds the loop's state at the stop (``rng``, ``mixup_rng``, ``meter``, ``iterations``)."""

    epoch: int
    iteration: int = 0
    loop: dict[str, Any] | None = None


def build_mixup(cfg, epoch: int) -> Mixup | None:
    """The epoch's Mixup (seeded by RNG_SEED, epoch and rank, so a resumed run draws the same), or None."""
    if not cfg.MIXUP.ENABLE:
        return None
    m = cfg.MIXUP
    return Mixup(m.ALPHA, m.CUTMIX_ALPHA, m.PROB, m.SWITCH_PROB, m.LABEL_SMOOTH_VALUE, cfg.MODEL.NUM_CLASSES,
                 rng=random.Random(epoch_seed(cfg, epoch)))  # fmt: skip


def compute_loss(model: nn.Module, videos: torch.Tensor, labels: torch.Tensor, mixup: Mixup | None,
                 loss_func: str = "cross_entropy"):  # fmt: skip
    """Forward and the ``MODEL.LOSS_FUNC`` loss (``losses.classification_loss``) against the labels, or with
    MIXUP.ENABLE against the mixed soft targets of the mixed clips (smoothing inside the targets), as PySlowFast
    does. Returns (loss, logits); the loss is float32."""
    targets = labels
    if mixup is not None:
        videos, targets = mixup(videos, labels)
    logits = model(videos)
    return classification_loss(loss_func, logits.float(), targets), logits


def masked_loss(model: nn.Module, videos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pre-training loss (``MASK.ENABLE``, ``MODEL.LOSS_FUNC`` multi_mse), float32: MaskFeat's model returns its
    predictions and targets of the masked tokens (their mean squared errors summed over heads), an MAE its loss."""
    out = model(videos, mask)
    if isinstance(out, dict):  # MaskedAutoencoder: {"loss", "pred"}
        return out["loss"].float()
    predictions, targets = out
    return multi_mse(predictions, targets)


def clip_and_measure(cfg, model: nn.Module) -> float:
    """Applies SOLVER.CLIP_GRAD_VAL / CLIP_GRAD_L2NORM (when set); returns the gradient L2 norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.SOLVER.CLIP_GRAD_VAL is not None:
        nn.utils.clip_grad_value_(params, cfg.SOLVER.CLIP_GRAD_VAL)
    max_norm = cfg.SOLVER.CLIP_GRAD_L2NORM if cfg.SOLVER.CLIP_GRAD_L2NORM is not None else float("inf")
    return float(nn.utils.clip_grad_norm_(params, max_norm))


def check_loss(loss: float, cfg, epoch: int, iteration: int, guard: LossExplosionGuard | None = None) -> None:
    """Raises ``TrainingDiverged`` (one line, naming the last good checkpoint) for a NaN or infinite loss, or one that
    exploded (``guard``: TRAIN.KILL_LOSS_EXPLOSION_FACTOR)."""
    previous = guard.exploded(loss, epoch) if guard is not None and math.isfinite(loss) else None
    if math.isfinite(loss) and previous is None:
        return
    problem = f"loss is {loss}" if previous is None else (
        f"loss {loss:.4g} is more than TRAIN.KILL_LOSS_EXPLOSION_FACTOR={guard.factor:g} times the mean of the 5 "
        f"before it ({previous:.4g})")  # fmt: skip
    last = latest_checkpoint(cfg.OUTPUT_DIR)
    where = f"resume from {last}" if last else "no checkpoint was written yet"
    raise TrainingDiverged(
        f"{problem} at epoch {epoch + 1}, iteration {iteration + 1}; {where} "
        "with a lower SOLVER.BASE_LR or SOLVER.CLIP_GRAD_L2NORM set"
    )


@dataclass(frozen=True)
class Accumulation:
    """Where a batch sits in its gradient-accumulation group: zero grads first, step last, loss / size."""

    first: bool
    last: bool
    size: int

    @classmethod
    def of(cls, iteration: int, iters: int, steps: int) -> Accumulation:
        start = iteration - iteration % steps
        end = min(start + steps, iters)
        return cls(iteration == start, iteration + 1 == end, end - start)


def train_step(run: Run, batch: dict, mixup: Mixup | None, epoch: int, it: int, acc: Accumulation) -> dict:
    """Forward/backward of one batch, and an optimizer step when it ends its accumulation group.

    Returns loss and top-1/top-5 error (vs. the true labels) averaged over all processes, and ``grad_norm`` (before
    clipping) on optimizer steps. A NaN/inf loss on any process raises ``TrainingDiverged`` on all of them. The
    same all-reduce counts the processes' stop votes (``run.stop.agreed``).
    """
    videos = batch["video"].to(run.device, non_blocking=True)
    labels = batch["label"].to(run.device, non_blocking=True)
    no_sync = run.model.no_sync if is_dist() and not acc.last else contextlib.nullcontext
    with no_sync():
        with autocast(run.device, run.cfg.TRAIN.PRECISION):
            if run.cfg.MASK.ENABLE:  # pre-training: no labels, no classifier
                loss = masked_loss(run.model, videos, batch["mask"].to(run.device, non_blocking=True))
            else:
                loss, logits = compute_loss(run.model, videos, labels, mixup, run.cfg.MODEL.LOSS_FUNC)
        errors = [] if run.cfg.MASK.ENABLE else topk_errors(logits.detach(), labels)
        reduced = all_reduce_mean([loss.item(), *errors, run.stop.vote()], run.device)
        loss_value, votes = reduced[0], reduced[-1]
        run.stop.count(votes)
        check_loss(loss_value, run.cfg, epoch, it, run.loss_guard)
        if acc.first:
            run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss / acc.size).backward()
    values = {"loss": loss_value}
    if errors:
        values["top1_err"], values["top5_err"] = reduced[1], reduced[2]
    if acc.last:
        run.scaler.unscale_(run.optimizer)
        values["grad_norm"] = clip_and_measure(run.cfg, run.model)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    return values


def sampler_state(cfg, epoch: int, iteration: int = 0, iters: int | None = None) -> dict[str, int]:
    """Where the training sampler stands: ``iteration`` batches of 0-based ``epoch`` used (of ``iters``)."""
    state = {"epoch": epoch, "iteration": iteration, "seed": cfg.RNG_SEED, "world_size": world_size()}
    return state if iters is None else {**state, "iterations": iters}


def save_mid_epoch(run: Run, epoch: int, done: int, iters: int, mixup: Mixup | None, meter: Meter) -> str:
    """Checkpoints the state after ``done`` iterations of ``epoch`` (rank 0 writes); returns its path."""
    cfg = run.cfg
    extra = {"mixup_rng": mixup.rng.getstate() if mixup is not None else None, "meter": meter.state()}
    path = save_checkpoint(cfg.OUTPUT_DIR, epoch, run.model, run.optimizer, cfg, iteration=done, scaler=run.scaler,
                           scheduler_state=asdict(run.schedule), sampler_state=sampler_state(cfg, epoch, done, iters),
                           extra=extra)  # fmt: skip
    barrier()
    return path


def restore_loop(loop: dict[str, Any], mixup: Mixup | None, meter: Meter) -> None:
    """Puts the generators, the Mixup generator and the epoch's running means back as they were at the stop."""
    restore_rng_state(loop["rng"])
    if mixup is not None and loop.get("mixup_rng") is not None:
        version, internal, gauss = loop["mixup_rng"]
        mixup.rng.setstate((version, tuple(internal), gauss))
    meter.load(loop["meter"])


def begin_epoch(loader, epoch: int, skip: int) -> int:
    """Sets the epoch of the training data, skipping its first ``skip`` batches (they are never loaded); returns
    the epoch's number of iterations."""
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    iters = len(loader)
    if skip:
        loader.sampler.set_epoch(epoch, start=skip * loader.batch_size)
    return iters


def log_iteration(run: Run, epoch: int, it: int, iters: int, values: dict, bar: tqdm, skip: int) -> None:
    """The progress bar, and a json_stats record every LOG_PERIOD iterations (and on the first)."""
    cfg = run.cfg
    bar.update(1)
    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
    if (it + 1) % cfg.LOG_PERIOD == 0 or it == 0:
        eta = bar.format_dict["elapsed"] / (it + 1 - skip) * (iters - it - 1)
        run.stats.log({"_type": "train_iter", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                       "iter": f"{it + 1}/{iters}", "eta_s": eta, **values}, step=epoch * iters + it)  # fmt: skip


def train_epoch(run: Run, loader, epoch: int, start: Start | None = None) -> dict[str, float]:
    """Trains one epoch, from ``start`` (a mid-epoch position of this epoch) when given; logs json_stats every
    LOG_PERIOD iterations and returns the epoch means.

    Once a stop is agreed (``run.stop``), ends after the accumulation group and saves a mid-epoch checkpoint,
    whose path goes to ``run.stop.checkpoint``.
    """
    cfg = run.cfg
    run.model.train()
    skip = start.iteration if start is not None else 0
    iters = begin_epoch(loader, epoch, skip)
    torch.manual_seed(epoch_seed(cfg, epoch))
    mixup, meter = build_mixup(cfg, epoch), Meter()
    batches = iter(loader)  # draws the loader's base seed from torch, as the uninterrupted epoch did, before ...
    if skip:
        restore_loop(start.loop, mixup, meter)  # ... the generators continue from the stop
    bar = tqdm(total=iters, initial=skip, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", leave=False,
               dynamic_ncols=True, disable=not is_main_process(), mininterval=1.0)  # fmt: skip
    tick = time.perf_counter()
    for it, batch in enumerate(batches, start=skip):
        data_time = time.perf_counter() - tick
        lr = run.schedule.at(epoch, it, iters)
        set_lr(run.optimizer, lr)
        acc = Accumulation.of(it, iters, cfg.TRAIN.GRAD_ACCUM_STEPS)
        values = train_step(run, batch, mixup, epoch, it, acc)
        values.update(lr=lr, data_time=data_time, net_time=time.perf_counter() - tick - data_time,
                      mem_mb=memory_mb(run.device))  # fmt: skip
        meter.add(values, batch["label"].shape[0])
        log_iteration(run, epoch, it, iters, values, bar, skip)
        if acc.last and run.stop.agreed:
            run.stop.checkpoint = save_mid_epoch(run, epoch, it + 1, iters, mixup, meter)
            run.stop.position = f"in epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH} after iteration {it + 1}/{iters}"
            break
        tick = time.perf_counter()
    bar.close()
    return meter.means()


@torch.no_grad()
def score_views(cfg, model: nn.Module, loader, device: torch.device, num_views: int, desc: str):
    """Scores every view of every video of ``loader`` on this process; (B, V, C, T, H, W) batches run as B*V
    clips. Returns the gathered ``MultiViewAccumulator`` (every video of the split, on every rank)."""
    acc = MultiViewAccumulator(cfg.MODEL.NUM_CLASSES, num_views, cfg.DATA.ENSEMBLE_METHOD, cfg.MODEL.HEAD_ACT,
                               cfg.DATA.MULTI_LABEL)  # fmt: skip
    model.eval()
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not is_main_process()):
        videos = batch["video"]
        if videos.ndim == 5:  # single-view items: (B, C, T, H, W)
            videos = videos.unsqueeze(1)
        b, v = videos.shape[:2]
        with autocast(device, cfg.TRAIN.PRECISION):
            logits = model(videos.flatten(0, 1).to(device, non_blocking=True))
        acc.add(batch["index"], logits.float().view(b, v, -1).cpu(), batch["label"], batch["valid"], batch["error"])
    return gather(acc)


@torch.no_grad()
def masked_val_loss(run: Run, loader) -> tuple[float, int, int]:
    """Pre-training validation: the mean masked loss over the readable val videos of all processes (each with its
    fixed mask), the number of videos scored and of unreadable ones."""
    run.model.eval()
    total, count, failed = torch.zeros((), dtype=torch.float64), 0, 0
    for batch in tqdm(loader, desc="val", leave=False, dynamic_ncols=True, disable=not is_main_process()):
        valid = batch["valid"]
        failed += int((~valid).sum())
        if not valid.any():
            continue
        videos, mask = batch["video"][valid].to(run.device), batch["mask"][valid].to(run.device)
        with autocast(run.device, run.cfg.TRAIN.PRECISION):
            loss = masked_loss(run.model, videos, mask)
        total += float(loss) * int(valid.sum())
        count += int(valid.sum())
    sums = all_reduce_mean([float(total), count, failed], run.device)
    scale = world_size()
    return sums[0] / max(sums[1], 1e-12), round(sums[1] * scale), round(sums[2] * scale)


def validate(run: Run, loader, epoch: int) -> dict[str, Any]:
    """Single-view top-1/top-5 error on the val split over all processes; unreadable videos are counted apart.
    A pre-training run (``MASK.ENABLE``) reports the mean masked loss instead (``masked_val_loss``).

    Runs in a forked torch RNG, so validating or not leaves the training's random stream unchanged.
    """
    devices = [run.device] if run.device.type == "cuda" else []
    if run.cfg.MASK.ENABLE:
        with torch.random.fork_rng(devices=devices):
            loss, num_videos, num_failed = masked_val_loss(run, loader)
        stats = {"_type": "val_epoch", "epoch": f"{epoch + 1}/{run.cfg.SOLVER.MAX_EPOCH}", "loss": loss,
                 "num_videos": num_videos, "num_failed": num_failed}  # fmt: skip
        run.stats.log(stats, step=epoch + 1)
        return stats
    with torch.random.fork_rng(devices=devices):
        metrics = compute_metrics(score_views(run.cfg, run.model, loader, run.device, 1, "val"))
    stats: dict[str, Any] = {"_type": "val_epoch", "epoch": f"{epoch + 1}/{run.cfg.SOLVER.MAX_EPOCH}",
                             "num_videos": metrics["num_videos"], "num_failed": metrics["num_failed"]}  # fmt: skip
    if metrics["top1"] is not None:
        stats["top1_err"], stats["top5_err"] = 100.0 - metrics["top1"], 100.0 - metrics["top5"]
    if metrics["map"] is not None:  # DATA.MULTI_LABEL
        stats["map"] = metrics["map"]
    run.stats.log(stats, step=epoch + 1)
    return stats


def resume_or_init(cfg, model: nn.Module, optimizer, scaler) -> Start:
    """Where training starts: after the newest loadable checkpoint in OUTPUT_DIR (TRAIN.AUTO_RESUME), else from
    TRAIN.CHECKPOINT_FILE_PATH when set (``init_checkpoint.init_from_checkpoint``: a training checkpoint continues
    after its epoch unless TRAIN.CHECKPOINT_EPOCH_RESET), else at epoch 0."""
    start = auto_resume(cfg, model, optimizer, scaler) if cfg.TRAIN.AUTO_RESUME else None
    if start is not None:
        return start
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        return Start(init_from_checkpoint(cfg, model, optimizer, scaler))
    return Start(0)


def auto_resume(cfg, model: nn.Module, optimizer, scaler) -> Start | None:
    """Resumes from the newest checkpoint in OUTPUT_DIR that loads; None when there is none at all.

    A file that cannot be read or does not fit the model is skipped with one warning naming it and why
    (``load_training_state`` leaves everything untouched when it fails). Checkpoint files of which none loads are
    a one-line ``CheckpointError``: the run never starts from scratch beside them.
    """
    candidates = checkpoint_candidates(cfg.OUTPUT_DIR)
    for path in candidates:
        try:
            info = load_training_state(path, model, optimizer, scaler=scaler)
        except CheckpointError as e:
            if is_main_process():
                logger.warning("skipping checkpoint %s", str(e).removeprefix("checkpoint "))
            continue
        loop = None
        if info["iteration"]:
            extra, sampler = info["extra"] or {}, info["sampler_state"] or {}
            loop = {"rng": info["rng_state"], "mixup_rng": extra.get("mixup_rng"), "meter": extra.get("meter"),
                    "iterations": sampler.get("iterations")}  # fmt: skip
        return Start(info["start_epoch"], info["iteration"], loop)
    if candidates:
        raise CheckpointError(
            f"none of the {len(candidates)} checkpoint file(s) in {os.path.dirname(candidates[0])} can be resumed "
            "from (see the warnings above); move them away to start afresh, or resume with the config they were "
            "trained with"
        )
    return None


def check_start(start: Start, iters: int) -> Start:
    """``start``, or the start of its epoch (with a warning) when a mid-epoch position was saved with another
    number of iterations per epoch (another batch size or number of processes): its batches would differ."""
    if not start.iteration or start.loop["iterations"] == iters:
        return start
    logger.warning("the checkpoint stopped epoch %d at iteration %d of %s, this run has %d iterations per epoch: "
                   "epoch %d starts again from its beginning", start.epoch + 1, start.iteration,
                   start.loop["iterations"], iters, start.epoch + 1)  # fmt: skip
    return Start(start.epoch)


def build_schedule(cfg) -> LRSchedule:
    """The LR schedule of cfg.SOLVER; an impossible one is a one-line ``ConfigError``."""
    try:
        return LRSchedule.from_cfg(cfg, num_shards=cfg.NUM_SHARDS)
    except ValueError as e:
        raise ConfigError(f"SOLVER: {e}") from None


def _is_due(epoch: int, period: int, max_epoch: int) -> bool:
    return (epoch + 1) % period == 0 or epoch + 1 == max_epoch


def _tensorboard_dir(cfg) -> str | None:
    if not cfg.TENSORBOARD.ENABLE:
        return None
    return cfg.TENSORBOARD.LOG_DIR or os.path.join(cfg.OUTPUT_DIR, f"runs-{cfg.TRAIN.DATASET}")


def setup_run(cfg) -> tuple[Run, Start]:
    """Builds model, optimizer, scaler and schedule, resumes or initialises; returns (run, where it starts)."""
    schedule = build_schedule(cfg)
    seed_everything(cfg.RNG_SEED)
    device = select_device(cfg)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.TRAIN.PRECISION == "fp16")
    start = resume_or_init(cfg, model, optimizer, scaler)
    if world_size() > 1:
        # CPU depthwise-conv gradients carry arbitrary strides on their size-1 dimension; DDP warns, harmlessly
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = wrap_ddp(model, device, cfg.MODEL.FP16_ALLREDUCE)
    if cfg.MODEL.COMPILE:
        model = torch.compile(model)
    stats = StatsLogger(cfg.OUTPUT_DIR, _tensorboard_dir(cfg))
    return Run(cfg, model, optimizer, scaler, schedule, device, stats), start


def save_epoch_end(run: Run, epoch: int) -> str:
    """Checkpoints the state at the end of ``epoch`` (rank 0 writes); returns its path."""
    cfg = run.cfg
    path = save_checkpoint(cfg.OUTPUT_DIR, epoch, run.model, run.optimizer, cfg, scaler=run.scaler,
                           scheduler_state=asdict(run.schedule),
                           sampler_state=sampler_state(cfg, epoch + 1))  # fmt: skip
    barrier()
    return path


def end_of_epoch(run: Run, epoch: int, val_loader) -> dict[str, Any]:
    """Validation and checkpoint when due (a checkpoint also when a stop is agreed after validation: the stop then
    goes to ``run.stop``), and the training-curves PNG; returns the validation stats if any."""
    cfg, summary = run.cfg, {}
    if val_loader is not None and _is_due(epoch, cfg.TRAIN.EVAL_PERIOD, cfg.SOLVER.MAX_EPOCH):
        summary = validate(run, val_loader, epoch)
    stopping = run.stop.count(all_reduce_mean([run.stop.vote()], run.device)[0])  # a signal during validation
    if _is_due(epoch, cfg.TRAIN.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_EPOCH) or stopping:
        path = save_epoch_end(run, epoch)
        if stopping:
            run.stop.checkpoint, run.stop.position = path, f"after epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}"
    if is_main_process():
        plot_training_curves(os.path.join(cfg.OUTPUT_DIR, STATS_FILE), os.path.join(cfg.OUTPUT_DIR, CURVES_FILE))
    return summary


def train_epochs(run: Run, train_loader, val_loader, start: Start, summary: dict[str, Any]) -> None:
    """The epochs from ``start`` on; a stop (``run.stop``) ends them with its log line and ``summary["stopped"]``."""
    cfg = run.cfg
    for epoch in range(start.epoch, cfg.SOLVER.MAX_EPOCH):
        begin = time.perf_counter()
        summary["train"] = train_epoch(run, train_loader, epoch, start if epoch == start.epoch else None)
        if run.stop.checkpoint is None:
            epoch_time = time.perf_counter() - begin
            run.stats.log({"_type": "train_epoch", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                           "epoch_time_s": epoch_time, **summary["train"]}, step=epoch + 1)  # fmt: skip
            summary["val"] = end_of_epoch(run, epoch, val_loader) or summary.get("val")
        if run.stop.checkpoint is not None:
            logger.info(run.stop.report())
            summary["stopped"] = run.stop.checkpoint
            return


def train(cfg) -> dict[str, Any]:
    """Trains the model ``cfg`` describes (see the module docstring). Returns the last epoch's summaries, and
    ``"stopped"``: the checkpoint written when a stop signal ended training early."""
    run, start = setup_run(cfg)
    train_loader = build_loader(cfg, "train")
    if len(train_loader) == 0:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE={cfg.TRAIN.BATCH_SIZE} is larger than the training split "
            f"({len(train_loader.dataset)} videos): no full batch per epoch; lower TRAIN.BATCH_SIZE"
        )
    val_loader = build_loader(cfg, "val") if cfg.TRAIN.EVAL_PERIOD > 0 else None
    start = check_start(start, len(train_loader))
    log_model_info(cfg, run.model, run.stats)
    at = f" at iteration {start.iteration + 1}/{len(train_loader)}" if start.iteration else ""
    logger.info("start epoch %d/%d%s (%d iterations per epoch, %d process(es), device %s, %s)", start.epoch + 1,
                cfg.SOLVER.MAX_EPOCH, at, len(train_loader), world_size(), run.device, cfg.TRAIN.PRECISION)  # fmt: skip
    summary: dict[str, Any] = {"start_epoch": start.epoch}
    try:
        with stop_signals(run.stop):
            train_epochs(run, train_loader, val_loader, start, summary)
    finally:
        run.stats.close()
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


def load_test_model(cfg, path: str) -> nn.Module:
    """The model of ``cfg`` with the weights of ``path`` (any format ``load_pretrained`` reads, or
    ``weights:<model>[.<tag>]``: published weights, fetched into the cache)."""
    model = build_model(cfg)
    path = resolve_checkpoint(path)
    report = load_pretrained(model, path)
    check_complete(report, path)  # a model partly left at its random initialisation would be a meaningless test
    logger.info("testing %s: %s", path, report.summary())
    return model


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
    path = test_checkpoint(cfg)
    model = load_test_model(cfg, path).to(device)
    if cfg.MODEL.COMPILE:
        model = torch.compile(model)
    num_views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    acc = score_views(cfg, model, build_loader(cfg, "test"), device, num_views, "test")
    metrics = compute_metrics(acc)
    if is_main_process():
        print(format_metrics(metrics, "test"), flush=True)
        write_results(cfg.OUTPUT_DIR, metrics, acc, checkpoint=path, config_path=config_path,
                      class_names=class_names(cfg), save_results_path=cfg.TEST.SAVE_RESULTS_PATH)  # fmt: skip
    barrier()
    return metrics
