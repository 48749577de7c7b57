"""Training feedback: ``json_stats`` lines, the stats file, TensorBoard scalars and the training-curves PNG.

Every record is logged as PySlowFast's ``json_stats: {...}`` line (floats rounded to 6 significant digits) and, on
the main process, appended at full precision to ``OUTPUT_DIR/json_stats.log`` (one JSON object per line). A resumed
run appends to the same file; readers keep the last record per (type, epoch, iteration).
"""

from __future__ import annotations

import logging
import math
import os
import resource
from collections.abc import Mapping
from typing import Any

import simplejson
import torch

from ..process import is_main_process

logger = logging.getLogger(__name__)

STATS_FILE = "json_stats.log"
CURVES_FILE = "training_curves.png"
_TB_SCALARS = ("loss", "lr", "grad_norm", "top1_err", "top5_err", "map", "data_time", "net_time", "mem_mb")


def _rounded(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(f"{v:.6g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in stats.items()}


def memory_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB: allocated CUDA memory on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Meter:
    """Sample-weighted running means of per-iteration numbers (for the epoch summary); a key may be missing from
    some iterations (``grad_norm`` exists only on optimizer steps)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float], n: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
            self.counts[k] = self.counts.get(k, 0) + n

    def means(self) -> dict[str, float]:
        return {k: v / self.counts[k] for k, v in self.sums.items()}

    def state(self) -> dict[str, dict]:
        """The sums and counts so far, as plain data (a mid-epoch checkpoint keeps them)."""
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load(self, state: Mapping[str, Mapping]) -> None:
        """Continues from ``state()``'s result."""
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])


class StatsLogger:
    """Writes every stats record to the log, ``json_stats.log`` and (optionally) TensorBoard.

    Args:
        output_dir: the run's folder; None logs to the console only.
        tensorboard_dir: where TensorBoard event files go; None disables TensorBoard.
    """

    def __init__(self, output_dir: str | None, tensorboard_dir: str | None = None) -> None:
        self.main = is_main_process()
        self.path = os.path.join(output_dir, STATS_FILE) if output_dir and self.main else None
        self.writer = None
        if tensorboard_dir and self.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=tensorboard_dir)

    def log(self, stats: Mapping[str, Any], step: int | None = None) -> None:
        """Logs one record; ``step`` (global iteration or epoch) is TensorBoard's x axis."""
        if not self.main:
            return
        logger.info("json_stats: %s", simplejson.dumps(_rounded(stats), sort_keys=True, ignore_nan=True))
        if self.path:
            with open(self.path, "a") as f:
                f.write(simplejson.dumps(dict(stats), sort_keys=True, ignore_nan=True) + "\n")
        if self.writer is not None and step is not None:
            kind = str(stats.get("_type", "stats"))
            for key in _TB_SCALARS:
                if isinstance(stats.get(key), (int, float)) and math.isfinite(stats[key]):
                    self.writer.add_scalar(f"{kind}/{key}", stats[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_stats(path: str | os.PathLike) -> list[dict]:
    """The records of a ``json_stats.log``; of repeated (type, epoch, iter) records (a resumed run) the last."""
    records: dict[tuple, dict] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = simplejson.loads(line)
                records[(record.get("_type"), record.get("epoch"), record.get("iter"))] = record
    return list(records.values())


def _epoch_number(record: Mapping) -> int:
    return int(str(record["epoch"]).split("/")[0])


def plot_training_curves(stats_path: str | os.PathLike, out_path: str | os.PathLike) -> str | None:
    """Draws loss, learning rate and top-1 error per epoch from ``json_stats.log``; returns the PNG path, or None
    when there is no epoch record yet."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not os.path.exists(stats_path):
        return None
    records = read_stats(stats_path)
    train = sorted((r for r in records if r.get("_type") == "train_epoch"), key=_epoch_number)
    val = sorted((r for r in records if r.get("_type") == "val_epoch" and "top1_err" in r), key=_epoch_number)
    if not train:
        return None
    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    panels = fig.subplots(1, 3)
    epochs = [_epoch_number(r) for r in train]
    panels[0].plot(epochs, [r["loss"] for r in train], marker="o", label="train")
    val_loss = sorted((r for r in records if r.get("_type") == "val_epoch" and "loss" in r), key=_epoch_number)
    if val_loss:  # pre-training validates its masked loss
        panels[0].plot([_epoch_number(r) for r in val_loss], [r["loss"] for r in val_loss], marker="s", label="val")
    panels[0].set(title="loss", xlabel="epoch")
    panels[1].plot(epochs, [r["lr"] for r in train], marker="o")
    panels[1].set(title="learning rate (epoch mean)", xlabel="epoch")
    if "top1_err" in train[0]:
        panels[2].plot(epochs, [r["top1_err"] for r in train], marker="o", label="train")
    if val:
        panels[2].plot([_epoch_number(r) for r in val], [r["top1_err"] for r in val], marker="s", label="val")
    panels[2].set(title="top-1 error (%)", xlabel="epoch", ylim=(0, 100))
    for ax in (panels[0], panels[2]):
        if ax.get_lines():
            ax.legend()
    for ax in panels:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    return str(out_path)
