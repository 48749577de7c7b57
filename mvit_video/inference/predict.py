"""Top-k classes of videos: per video with the config's multi-view test, or per window (a timeline).

Per video: the views run_net's test builds (``MultiViewDataset``: ``TEST.NUM_ENSEMBLE_VIEWS`` temporal clips x
``TEST.NUM_SPATIAL_CROPS`` crops, decoded once), scored by ``MODEL.HEAD_ACT`` and ensembled by
``DATA.ENSEMBLE_METHOD`` (``models.layers.ensemble_views``, the evaluator's rule); the reported score is the
ensembled one divided by the number of views for "sum" (the mean probability), as is for "max".

Per window (``timeline``): the windows of ``features.plan_windows`` (the test view that starts at each), their
logits through ``FeatureExtractor`` and, with several crops, ensembled over the crops by the same rule.

Class names are the demo's (``predictor.resolve_class_names``). Unreadable videos are listed, not fatal.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from ..data.badfiles import BadVideoLog
from ..data.decode import SUPPORTED_BACKENDS, VideoDecodeError, open_video
from ..data.kinetics import DecodeOptions, MultiViewDataset
from ..data.loader import clip_sampling, spatial_views
from ..data.records import VideoRecord
from ..models.layers import ensemble_views
from .features import FeatureExtractor, FeatureSpec, FeatureSpecError, parse_stride, plan_windows, source_fps
from .inputs import VideoItem, list_videos
from .predictor import load_model, resolve_class_names, top_k


@dataclass
class VideoPrediction:
    """The prediction of one video.

    Attributes:
        video, id: the input.
        scores: (K,) ensembled scores as the evaluator computes them (``video_scores`` of ``test_predictions.pt``);
            per-window mode: (N, K), one row per window.
        top: per video (or per window) the top-k ``{"id", "label", "score"}``.
        windows: per-window mode: each window's frames and seconds.
        error: why the video could not be read ("" when it could).
    """

    video: str
    id: str
    scores: torch.Tensor | None = None
    top: list = field(default_factory=list)
    windows: list | None = None
    error: str = ""


def _top(scores: torch.Tensor, divide: float, names: Sequence[str], k: int) -> list[dict]:
    ids, values = top_k(scores, k)
    return [{"id": i, "label": names[i], "score": round(v / divide, 6)} for i, v in zip(ids, values)]


class VideoPredictor:
    """Multi-view or per-window top-k of a model with a config's test preprocessing.

    Args:
        cfg: the checkpoint's config (test views, ``MODEL.HEAD_ACT``, ``DATA.ENSEMBLE_METHOD``, backend).
        model: the classifier.
        class_names: one name per class.
        device: where the model runs.
        topk: classes reported.
        batch: views (per video) or windows (timeline) per forward pass.
    """

    def __init__(self, cfg, model: nn.Module, class_names: Sequence[str], device: str = "cpu", topk: int = 5,
                 batch: int = 8) -> None:  # fmt: skip
        self.cfg, self.device = cfg, torch.device(device)
        self.model = model.eval().to(self.device)
        self.names, self.topk, self.batch = list(class_names), topk, max(1, batch)
        self.head_act, self.ensemble = str(cfg.MODEL.HEAD_ACT).lower(), str(cfg.DATA.ENSEMBLE_METHOD)
        self.backend = str(cfg.DATA.DECODING_BACKEND).lower()
        if self.backend not in SUPPORTED_BACKENDS:
            raise FeatureSpecError(f"DATA.DECODING_BACKEND={self.backend!r}: use one of {list(SUPPORTED_BACKENDS)}")
        ensemble_views(torch.zeros(1, 1), self.ensemble, self.head_act)  # an unknown rule fails before any video

    def _divide(self, views: int) -> float:
        return float(views) if self.ensemble == "sum" and self.head_act != "none" else 1.0

    @torch.inference_mode()
    def _logits(self, clips: torch.Tensor) -> torch.Tensor:
        parts = [self.model(clips[i : i + self.batch].to(self.device)).float().cpu()
                 for i in range(0, len(clips), self.batch)]  # fmt: skip
        return torch.cat(parts)

    def multi_view(self, items: Sequence[VideoItem], progress: bool = False) -> list[VideoPrediction]:
        """Per video: the test's views, ensembled (see the module docs)."""
        cfg = self.cfg
        records = [VideoRecord(item.path, 0) for item in items]
        log = BadVideoLog(None, len(records), 1.0, "predict")
        dataset = MultiViewDataset(records, clip_sampling(cfg, "test"), cfg.TEST.NUM_ENSEMBLE_VIEWS,
                                   spatial_views(cfg, "test"), log, DecodeOptions(self.backend))  # fmt: skip
        out = []
        for i in tqdm(range(len(dataset)), desc="predict", unit="video", disable=not progress, dynamic_ncols=True):
            item, prediction = dataset[i], VideoPrediction(items[i].path, items[i].id)
            if not item["valid"]:
                prediction.error = item["error"]
            else:
                prediction.scores = ensemble_views(self._logits(item["video"]), self.ensemble, self.head_act)
                prediction.top = _top(prediction.scores, self._divide(dataset.num_views), self.names, self.topk)
            out.append(prediction)
        return out

    def timeline(self, items: Sequence[VideoItem], stride=None, crops: int = 1,
                 progress: bool = False) -> list[VideoPrediction]:  # fmt: skip
        """Per window: top-k of the window's test view (``crops`` spatial views ensembled)."""
        sampling = clip_sampling(self.cfg, "test")
        extractor = FeatureExtractor(self.model, sampling, spatial_views(self.cfg, "test", num_crops=crops),
                                     FeatureSpec("logits"), self.device, self.batch)  # fmt: skip
        out = []
        for item in tqdm(items, desc="predict", unit="video", disable=not progress, dynamic_ncols=True):
            prediction = VideoPrediction(item.path, item.id)
            try:
                with open_video(item.path, self.backend) as reader:
                    fps = source_fps(sampling, reader.fps)
                    windows = plan_windows(sampling, reader.num_frames, fps, stride)
                    logits = torch.from_numpy(extractor.extract(reader, windows))
            except VideoDecodeError as e:
                prediction.error = e.reason
                out.append(prediction)
                continue
            logits = logits if crops > 1 else logits[:, None]  # (N, crops, K)
            prediction.scores = ensemble_views(logits, self.ensemble, self.head_act)
            span = sampling.span(fps)
            prediction.windows = [w.as_dict(fps, span, reader.num_frames) for w in windows]
            prediction.top = [_top(s, self._divide(crops), self.names, self.topk) for s in prediction.scores]
            out.append(prediction)
        return out


def write_predictions(path: str, predictions: Sequence[VideoPrediction], header: dict) -> tuple[str, str]:
    """Writes ``<path>.json`` (header, per video its top-k or windows, the unreadable videos) and ``<path>.csv``
    (one row per video or window and rank); returns both paths."""
    stem = os.path.splitext(path)[0] if path.lower().endswith((".json", ".csv")) else path
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    videos = []
    for p in predictions:
        if p.error:
            continue
        entry = {"video": p.video, "id": p.id}
        entry.update(
            {"top": p.top} if p.windows is None else {"windows": [{**w, "top": t} for w, t in zip(p.windows, p.top)]}
        )
        videos.append(entry)
    bad = [{"video": p.video, "reason": p.error} for p in predictions if p.error]
    with open(f"{stem}.json", "w", encoding="utf-8") as f:
        json.dump({**header, "num_videos": len(videos), "num_bad": len(bad), "videos": videos, "bad": bad}, f,
                  indent=1)  # fmt: skip
        f.write("\n")
    with open(f"{stem}.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        window_fields = ["window", "start_sec", "end_sec", "start_frame", "end_frame"]
        timeline = any(p.windows is not None for p in predictions)
        writer.writerow(["video", *(window_fields if timeline else []), "rank", "class_id", "class_name", "score"])
        for v in videos:
            rows = [(None, v["top"])] if "top" in v else [(w, w["top"]) for w in v["windows"]]
            for n, (w, top) in enumerate(rows):
                where = [n, w["start_sec"], w["end_sec"], w["start_frame"], w["end_frame"]] if w else []
                for rank, t in enumerate(top, start=1):
                    writer.writerow([v["video"], *where, rank, t["id"], t["label"], t["score"]])
    return f"{stem}.json", f"{stem}.csv"


def run_predict(cfg, checkpoint: str, source: str, output: str, timeline: bool = False, stride: str | None = None,
                crops: int = 1, topk: int | None = None, batch: int = 8, device: str = "cpu",
                path_prefix: str | None = None, config_path: str | None = None,
                progress: bool = True) -> tuple[list[VideoPrediction], tuple[str, str]]:  # fmt: skip
    """``tools/predict.py``: user mistakes fail in one line before the first video; returns the predictions and the
    JSON and CSV paths."""
    parsed_stride = parse_stride(stride) if stride else None
    if not timeline and (stride or crops != 1):
        raise FeatureSpecError("--stride and --crops are for --timeline; per video the config's test views are used "
                               "(TEST.NUM_ENSEMBLE_VIEWS, TEST.NUM_SPATIAL_CROPS)")  # fmt: skip
    items = list_videos(source, path_prefix)
    names, names_source = resolve_class_names(cfg)
    predictor = VideoPredictor(cfg, load_model(cfg, checkpoint), names, device, topk or cfg.DEMO.TOPK, batch)
    started = time.perf_counter()
    if timeline:
        predictions = predictor.timeline(items, parsed_stride, crops, progress)
        views = f"one window every {stride or 'clip span'}, {crops} crop(s) each"
    else:
        predictions = predictor.multi_view(items, progress)
        views = f"{cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x {cfg.TEST.NUM_SPATIAL_CROPS} crops per video"
    header = {"model": str(cfg.MODEL.ARCH), "checkpoint": os.path.abspath(checkpoint), "config": config_path,
              "class_names": names_source, "views": views, "head_act": predictor.head_act,
              "ensemble": predictor.ensemble, "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    return predictions, write_predictions(output, predictions, header)
