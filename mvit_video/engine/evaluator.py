"""Multi-view test evaluation: per-video aggregation of view predictions, metrics and result files.

A test batch holds every view of each video (``"video": (B, V, 3, T, H, W)``); the model's logits for it are
``(B, V, K)``. ``MultiViewAccumulator`` keeps those per-view logits per video index, ``gather`` merges the
accumulators of a distributed run (every video once), ``compute_metrics`` scores the aggregated predictions and
``write_results`` writes ``test_results.json``, ``test_predictions.pt`` and ``confusion_matrix.png``.

Aggregation follows PySlowFast's ``TestMeter`` (``DATA.ENSEMBLE_METHOD``): the test-time head activation
(``MODEL.HEAD_ACT``: softmax, sigmoid or none, ``models.layers.head_activation``) scores each view, then ``"sum"`` adds
the view scores and ``"max"`` takes their element-wise maximum. Single-label videos are scored by top-k accuracy;
multi-label ones (``DATA.MULTI_LABEL``: (B, K) multi-hot labels) by mean average precision over the classes, as
PySlowFast's ``get_map`` computes it.

Typical use (one process or one per GPU)::

    acc = MultiViewAccumulator(num_classes, num_views, ensemble=cfg.DATA.ENSEMBLE_METHOD)
    for batch in loader:
        logits = model(batch["video"].flatten(0, 1)).view(B, V, -1)  # (B*V, K) -> (B, V, K)
        acc.add(batch["index"], logits, batch["label"], batch["valid"], batch["error"])
    acc = gather(acc)
    metrics = compute_metrics(acc)
    print(format_metrics(metrics))
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Sequence

import torch
import torch.distributed as dist

from ..errors import UserError
from ..models.layers import ensemble_views, head_activation
from ..models.layers.heads import ENSEMBLE_METHODS
from ..process import world_size

RESULTS_FILE = "test_results.json"
PREDICTIONS_FILE = "test_predictions.pt"
CONFUSION_FILE = "confusion_matrix.png"
MAX_ANNOTATED_CLASSES = 50  # above this the confusion matrix has no per-cell counts and no class-name ticks


class EvaluationError(UserError, ValueError):
    """Inconsistent evaluation inputs (a video seen twice, wrong shapes, labels out of range); one-line message."""


def aggregate_views(view_logits: torch.Tensor, ensemble: str = "sum", head_act: str = "softmax") -> torch.Tensor:
    """Per-video scores from per-view logits, as PySlowFast's ``TestMeter`` ensembles them.

    Args:
        view_logits: (N, V, K) logits of V views of N videos.
        ensemble: "sum" (sum over views of the view scores) or "max" (their element-wise max).
        head_act: the test-time head activation that scores each view (``MODEL.HEAD_ACT``).

    Returns:
        (N, K) float32 scores; with "sum" and softmax they add up to V per video (divide by V for mean
        probabilities).
    """
    if ensemble not in ENSEMBLE_METHODS:
        raise EvaluationError(f"ensemble method {ensemble!r} is not supported; use one of {ENSEMBLE_METHODS}")
    return ensemble_views(view_logits, ensemble, head_act)  # (N, V, K) -> (N, K)


class MultiViewAccumulator:
    """Collects the per-view logits of each test video (by dataset index) and the videos that failed to decode.

    Args:
        num_classes: K, the number of classes.
        num_views: V, views per video (``TEST.NUM_ENSEMBLE_VIEWS * TEST.NUM_SPATIAL_CROPS``).
        ensemble: "sum" or "max" (``DATA.ENSEMBLE_METHOD``), see ``aggregate_views``.
        head_act: "softmax", "sigmoid" or "none" (``MODEL.HEAD_ACT``), see ``aggregate_views``.
        multi_label: labels are (B, K) multi-hot rows instead of (B,) class indices (``DATA.MULTI_LABEL``).

    Each video index may be added once overall; a second time raises ``EvaluationError``. Invalid videos
    (``valid=False``) are recorded with their error strings and excluded from the metrics.
    """

    def __init__(self, num_classes: int, num_views: int, ensemble: str = "sum", head_act: str = "softmax",
                 multi_label: bool = False) -> None:  # fmt: skip
        if num_classes < 1 or num_views < 1:
            raise EvaluationError(f"num_classes and num_views must be >= 1, got {num_classes} and {num_views}")
        if ensemble not in ENSEMBLE_METHODS:
            raise EvaluationError(f"ensemble method {ensemble!r} is not supported; use one of {ENSEMBLE_METHODS}")
        head_activation(torch.zeros(1), head_act)  # an unknown activation fails here, not after the test
        self.num_classes, self.num_views, self.ensemble = num_classes, num_views, ensemble
        self.head_act, self.multi_label = head_act, multi_label
        self._seen: set[int] = set()
        self._indices: list[torch.Tensor] = []
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._failed: dict[int, str] = {}
        self._consolidated = False

    def add(
        self,
        indices: torch.Tensor | Sequence[int],
        view_logits: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        valid: torch.Tensor | Sequence[bool] | None = None,
        errors: Sequence[str] | None = None,
    ) -> None:
        """Adds one batch.

        Args:
            indices: (B,) dataset indices of the videos.
            view_logits: (B, V, K) logits (any device and float dtype; kept as float32 on the CPU).
            labels: (B,) true classes, or (B, K) multi-hot rows with ``multi_label``.
            valid: (B,) bool, False for videos that could not be read (default: all valid).
            errors: B error strings (the loader's ``batch["error"]``), kept for the failed videos.
        """
        indices = torch.as_tensor(indices).detach().cpu().long().view(-1)
        labels = torch.as_tensor(labels).detach().cpu()
        labels = labels.float() if self.multi_label else labels.long().view(-1)
        b = indices.numel()
        valid = torch.ones(b, dtype=torch.bool) if valid is None else torch.as_tensor(valid).cpu().bool().view(-1)
        self._check_batch(indices, view_logits, labels, valid, errors)
        self._claim(indices.tolist())
        for i in (~valid).nonzero().view(-1).tolist():
            self._failed[int(indices[i])] = (errors[i] if errors is not None else "") or "unreadable video"
        self._indices.append(indices[valid])
        self._logits.append(view_logits.detach()[valid.to(view_logits.device)].float().cpu())
        self._labels.append(labels[valid])
        self._consolidated = False

    def _check_batch(self, indices, view_logits, labels, valid, errors) -> None:
        b, shape = indices.numel(), (indices.numel(), self.num_views, self.num_classes)
        if tuple(view_logits.shape) != shape:
            raise EvaluationError(f"view_logits must have shape (B, V, K) = {shape}, got {tuple(view_logits.shape)}")
        if len(labels) != b or valid.numel() != b or (errors is not None and len(errors) != b):
            raise EvaluationError(f"indices, labels, valid and errors must all have {b} entries")
        if self.multi_label:
            if tuple(labels.shape) != (b, self.num_classes) or not ((labels == 0) | (labels == 1)).all():
                raise EvaluationError(f"multi-label labels must be (B, K) = {(b, self.num_classes)} rows of 0 and 1, "
                                      f"got shape {tuple(labels.shape)}")  # fmt: skip
            return
        bad = labels[valid & ((labels < 0) | (labels >= self.num_classes))]
        if bad.numel():
            raise EvaluationError(f"label {int(bad[0])} is outside 0..{self.num_classes - 1} (MODEL.NUM_CLASSES)")

    def _claim(self, indices: list[int]) -> None:
        seen = set()
        for index in indices:
            if index in self._seen or index in seen:
                raise EvaluationError(f"video index {index} was added twice; each test video must be evaluated once")
            seen.add(index)
        self._seen |= seen

    @property
    def num_videos(self) -> int:
        """Number of valid (scored) videos."""
        return sum(t.numel() for t in self._indices)

    @property
    def num_failed(self) -> int:
        return len(self._failed)

    @property
    def failed(self) -> list[dict]:
        """The failed videos as ``[{"index": i, "error": message}]``, by index."""
        return [{"index": i, "error": self._failed[i]} for i in sorted(self._failed)]

    def missing_indices(self, num_items: int) -> list[int]:
        """Indices in ``range(num_items)`` that were never added (neither scored nor failed)."""
        return [i for i in range(num_items) if i not in self._seen]

    def state(self) -> dict:
        """The collected data, sorted by index: ``indices`` (N,), ``labels`` (N,) (or (N, K) multi-hot),
        ``view_logits`` (N, V, K) float32, ``failed`` (list of dicts) plus ``num_classes``, ``num_views``,
        ``ensemble``, ``head_act`` and ``multi_label``."""
        if not self._consolidated:  # one sorted tensor each instead of the batches
            indices = torch.cat(self._indices) if self._indices else torch.zeros(0, dtype=torch.long)
            order = indices.argsort()
            empty = torch.zeros(0, self.num_views, self.num_classes)
            no_labels = torch.zeros(0, self.num_classes) if self.multi_label else torch.zeros(0, dtype=torch.long)
            labels = torch.cat(self._labels)[order] if self._labels else no_labels
            logits = torch.cat(self._logits)[order] if self._logits else empty
            self._indices, self._labels, self._logits = [indices[order]], [labels], [logits]
            self._consolidated = True
        return {
            "indices": self._indices[0],
            "labels": self._labels[0],
            "view_logits": self._logits[0],
            "failed": self.failed,
            "num_classes": self.num_classes,
            "num_views": self.num_views,
            "ensemble": self.ensemble,
            "head_act": self.head_act,
            "multi_label": self.multi_label,
        }

    def merge_state(self, state: dict) -> None:
        """Adds another accumulator's ``state()`` (e.g. another rank's); a video present in both raises."""
        theirs = tuple(state[k] for k in ("num_classes", "num_views", "ensemble", "head_act", "multi_label"))
        ours = (self.num_classes, self.num_views, self.ensemble, self.head_act, self.multi_label)
        if theirs != ours:
            raise EvaluationError(
                f"cannot merge (num_classes, num_views, ensemble, head_act, multi_label)={theirs} into {ours}"
            )
        failed = state["failed"]
        self._claim(state["indices"].tolist() + [f["index"] for f in failed])
        self._failed.update({f["index"]: f["error"] for f in failed})
        self._indices.append(state["indices"])
        self._logits.append(state["view_logits"])
        self._labels.append(state["labels"])
        self._consolidated = False

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (N,), aggregated scores (N, K), labels (N,) or (N, K)) of the valid videos, sorted by index."""
        state = self.state()
        return state["indices"], aggregate_views(state["view_logits"], self.ensemble, self.head_act), state["labels"]


def gather(accumulator: MultiViewAccumulator) -> MultiViewAccumulator:
    """Merges the accumulators of all ranks (``all_gather_object``) so every rank holds every video once.

    Without an initialised process group this returns ``accumulator`` unchanged. The test sampler never pads, so
    a video index found on two ranks raises ``EvaluationError``.
    """
    if world_size() == 1:
        return accumulator
    states: list[dict | None] = [None] * world_size()
    dist.all_gather_object(states, accumulator.state())
    merged = MultiViewAccumulator(accumulator.num_classes, accumulator.num_views, accumulator.ensemble,
                                  accumulator.head_act, accumulator.multi_label)  # fmt: skip
    for rank, state in enumerate(states):
        try:
            merged.merge_state(state)
        except EvaluationError as e:
            raise EvaluationError(f"rank {rank}: {e} (the test sampler must not pad or repeat videos)") from None
    return merged


def _percent(correct: torch.Tensor) -> float | None:
    return 100.0 * correct.float().mean().item() if correct.numel() else None


def topk_ranked(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> tuple[torch.Tensor, list]:
    """Classes ranked by score (N, max k) and the top-k accuracy in percent for each k (capped at the class count;
    None when there are no labels). With (N, K) multi-hot labels a hit is a top-k class among the true ones."""
    num_classes = scores.shape[1] if scores.ndim == 2 else 1
    if not labels.numel():
        return torch.zeros(0, 1, dtype=torch.long), [None for _ in ks]
    ranked = scores.topk(min(max(ks), num_classes), dim=1).indices  # (N, k)
    hits = labels.gather(1, ranked) > 0 if labels.ndim == 2 else ranked == labels[:, None]
    return ranked, [_percent(hits[:, : min(k, num_classes)].any(dim=1)) for k in ks]


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts; rows are true classes, columns predicted classes."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one class as scikit-learn's ``average_precision_score`` defines it (PySlowFast's
    ``get_map`` calls it): the sum over score thresholds, highest first, of precision times the step in recall;
    videos with equal scores enter at the same threshold.

    Args:
        scores: (N,) scores of the class.
        positives: (N,) bool, the videos that have the class; at least one.

    Returns:
        AP in [0, 1].
    """
    order = scores.argsort(descending=True, stable=True)
    sorted_scores, hits = scores[order], positives[order].double()
    true_pos, ranked = hits.cumsum(0), torch.arange(1, len(hits) + 1, dtype=torch.float64)
    last_of_tie = torch.ones(len(hits), dtype=torch.bool)
    last_of_tie[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    true_pos, ranked = true_pos[last_of_tie], ranked[last_of_tie]
    recall = true_pos / true_pos[-1]
    return float((torch.diff(recall, prepend=recall.new_zeros(1)) * true_pos / ranked).sum())


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """mAP in percent of (N, K) scores against (N, K) multi-hot labels over the classes that have at least one
    positive video (PySlowFast's ``get_map`` drops the others); None without any."""
    present = (labels > 0).any(dim=0).nonzero().view(-1).tolist()
    if not present:
        return None
    return 100.0 * sum(average_precision(scores[:, k], labels[:, k] > 0) for k in present) / len(present)


def compute_metrics(accumulator: MultiViewAccumulator, topk: tuple[int, int] = (1, 5)) -> dict:
    """Video-level metrics of the aggregated multi-view predictions.

    Args:
        accumulator: the (gathered) accumulator.
        topk: the two k of "top1"/"top5"; each is capped at ``num_classes``.

    Returns:
        ``{"top1", "top5", "mean_class_acc", "map"}`` in percent (None when not computed or no video was scored),
        ``"multi_label"``, ``"num_videos"`` (valid videos), ``"num_views"``, ``"num_failed"`` and
        ``"confusion_matrix"`` ((K, K) int64, rows = true class; None for multi-label). Single-label videos get the
        top-k accuracies and ``mean_class_acc`` (the mean top-1 recall over the classes with at least one video),
        multi-label ones only ``map`` (``mean_average_precision``).
    """
    _, scores, labels = accumulator.scores()
    counts = {"multi_label": accumulator.multi_label, "num_videos": accumulator.num_videos,
              "num_views": accumulator.num_views, "num_failed": accumulator.num_failed}  # fmt: skip
    if accumulator.multi_label:
        return {"top1": None, "top5": None, "mean_class_acc": None, "map": mean_average_precision(scores, labels),
                **counts, "confusion_matrix": None}  # fmt: skip
    k = accumulator.num_classes
    ranked, (top1, top5) = topk_ranked(scores, labels, topk)
    confusion = confusion_matrix(ranked[:, 0], labels, k)
    per_class, present = confusion.diag(), confusion.sum(dim=1) > 0
    recall = per_class[present].float() / confusion.sum(dim=1)[present].float()
    mean_class_acc = 100.0 * recall.mean().item() if recall.numel() else None
    return {"top1": top1, "top5": top5, "mean_class_acc": mean_class_acc, "map": None, **counts,
            "confusion_matrix": confusion}  # fmt: skip


def format_metrics(metrics: dict, split: str = "test") -> str:
    """One line: ``test: top-1 71.23% top-5 90.10% mean-class 70.52% | 19796 videos x 5 views | 8 failed (excluded)``
    (multi-label: ``test: mAP 45.10% | ...``)."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.2f}%"

    if metrics.get("multi_label"):
        scores = f"mAP {pct(metrics['map'])}"
    else:
        top1, top5, mean_class = (pct(metrics[k]) for k in ("top1", "top5", "mean_class_acc"))
        scores = f"top-1 {top1} top-5 {top5} mean-class {mean_class}"
    return (
        f"{split}: {scores} | {metrics['num_videos']} videos x {metrics['num_views']} views | "
        f"{metrics['num_failed']} failed (excluded)"
    )


def load_predictions(path: str | os.PathLike) -> dict:
    """Reads ``test_predictions.pt`` (plain tensors, strings and lists: safe with ``weights_only=True``).

    Re-aggregate offline with ``aggregate_views(p["view_logits"], "max", p["head_act"])``; ``p["video_scores"]``
    holds the scores of ``p["ensemble"]`` and row i belongs to dataset index ``p["indices"][i]``.
    """
    return torch.load(path, map_location="cpu", weights_only=True)


def write_results(
    output_dir: str | os.PathLike,
    metrics: dict,
    accumulator: MultiViewAccumulator,
    checkpoint: str | os.PathLike | None,
    config_path: str | os.PathLike | None,
    class_names: Sequence[str] | None = None,
    save_results_path: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Writes the test outputs into ``output_dir`` (call on rank 0 after ``gather``).

    - ``test_results.json``: top1, top5, mean_class_acc, map (percent, or null when not computed: ``map`` for
      multi-label tests, the others for single-label ones), num_videos, num_views, num_failed, checkpoint, config,
      and ``failed`` = ``[{"index", "error"}]``.
    - ``test_predictions.pt``: ``torch.save`` of ``{"indices" (N,), "labels" (N,) or (N, K), "view_logits"
      (N, V, K) float32, "video_scores" (N, K), "ensemble", "head_act", "multi_label", "num_views", "class_names",
      "failed"}``, valid videos sorted by index; reload with ``load_predictions`` (or ``torch.load(path,
      weights_only=True)``).
    - ``confusion_matrix.png`` (single-label only): rows = true class; counts in the cells and class-name ticks
      when K <= 50.
    - ``save_results_path`` (``TEST.SAVE_RESULTS_PATH``, relative to ``output_dir``): see ``save_pyslowfast_results``.

    Returns:
        The paths written, by kind ("results", "predictions", "confusion_matrix", "pyslowfast_results").
    """
    if class_names is not None and len(class_names) != accumulator.num_classes:
        raise EvaluationError(
            f"{len(class_names)} class names given for {accumulator.num_classes} classes (MODEL.NUM_CLASSES)"
        )
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, f) for name, f in
             (("results", RESULTS_FILE), ("predictions", PREDICTIONS_FILE), ("confusion_matrix", CONFUSION_FILE))}  # fmt: skip
    results = {key: metrics[key] for key in ("top1", "top5", "mean_class_acc", "map", "num_videos", "num_views",
                                             "num_failed")}  # fmt: skip
    results.update(
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        config=None if config_path is None else os.fspath(config_path),
        failed=accumulator.failed,
    )
    with open(paths["results"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    state = accumulator.state()
    state["video_scores"] = aggregate_views(state["view_logits"], accumulator.ensemble, accumulator.head_act)
    state["class_names"] = None if class_names is None else list(class_names)
    torch.save(state, paths["predictions"])
    if metrics["confusion_matrix"] is None:
        del paths["confusion_matrix"]
    else:
        plot_confusion_matrix(metrics["confusion_matrix"], paths["confusion_matrix"], class_names)
    if save_results_path:
        paths["pyslowfast_results"] = os.path.join(output_dir, save_results_path)
        save_pyslowfast_results(paths["pyslowfast_results"], state["video_scores"], state["labels"])
    return paths


def save_pyslowfast_results(path: str | os.PathLike, video_scores: torch.Tensor, labels: torch.Tensor) -> None:
    """Writes ``TEST.SAVE_RESULTS_PATH`` as PySlowFast does: ``pickle.dump([video_scores, labels])`` of the (N, K)
    aggregated scores and the (N,) labels ((N, K) multi-hot with ``DATA.MULTI_LABEL``). Rows are the scored
    videos in dataset order; unlike PySlowFast's, videos that failed to decode have no row (their indices are in
    ``test_results.json``). Reading it needs torch (the tensors are pickled as torch tensors)."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump([video_scores.clone(), labels.clone()], f)


def plot_confusion_matrix(
    confusion: torch.Tensor, path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> None:
    """Saves a confusion-matrix PNG (Agg canvas, no pyplot state); colours are row-normalised recall."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the confusion-matrix plot needs matplotlib: pip install matplotlib") from None
    k = confusion.shape[0]
    counts = confusion.cpu().long()
    rows = counts.sum(dim=1, keepdim=True).clamp(min=1)
    recall = (counts.float() / rows).numpy()
    annotate = k <= MAX_ANNOTATED_CLASSES
    side = min(max(6.0, 0.3 * k + 3.0), 20.0) if annotate else 12.0
    fig = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({int(counts.sum())} videos, {k} classes)")
    if annotate:
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        fontsize = 10 if k <= 20 else 7
        ax.set_xticks(range(k), names, rotation=90, fontsize=fontsize + 1)
        ax.set_yticks(range(k), names, fontsize=fontsize + 1)
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    color = "white" if recall[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=fontsize, color=color)
    fig.tight_layout()
    fig.savefig(path)
