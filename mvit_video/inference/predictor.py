"""Clip -> top-k: a window of frames through the checkpoint config's test preprocessing and the model.

The clip of a window is the one the single-crop test loader (``MultiViewDataset`` with one temporal view and
``TEST.NUM_SPATIAL_CROPS`` 1) takes from a video made of exactly those frames: the same index math
(``ClipSampling.test_indices``: NUM_FRAMES frames SAMPLING_RATE apart at TARGET_FPS, rescaled to the source's frame
rate; indices past the end repeat the last frame) and the same pixels (``views_from_frames`` with
``loader.spatial_views(cfg, "test", num_crops=1)``: PySlowFast's single-crop view, short side resized to
DATA.TRAIN_JITTER_SCALES[0] (SSv2: TEST_CROP_SIZE), centre TEST_CROP_SIZE crop, DATA.MEAN / DATA.STD). A window
holds ``window(fps)`` frames: the span of one clip.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import ConfigError
from ..data.classnames import ClassNamesError, load_classnames
from ..data.kinetics import ClipSampling, SpatialViews, frames_to_clip, views_from_frames
from ..data.loader import clip_sampling, spatial_views
from ..models import build_model, load_pretrained
from ..models.layers import head_activation
from ..models.pretrained import check_complete

logger = logging.getLogger(__name__)

# built-in class lists by (dataset family, number of classes)
_BUILTIN_LISTS = {("kinetics", 400): "kinetics400", ("kinetics", 600): "kinetics600",
                  ("kinetics", 700): "kinetics700", ("ssv2", 174): "ssv2"}  # fmt: skip
_SPEED_WINDOW = 10  # predictions averaged in Prediction.model_fps


@dataclass(frozen=True)
class ClipPreprocess:
    """How a window of frames becomes the model's input: the single-crop test loader's recipe.

    Attributes:
        sampling: which frames of the window make the clip (``DATA.NUM_FRAMES`` / ``SAMPLING_RATE`` /
            ``TARGET_FPS``, SSv2's segment sampling).
        spatial: resize, centre crop and normalisation (``loader.spatial_views(cfg, "test", num_crops=1)``).
    """

    sampling: ClipSampling
    spatial: SpatialViews

    def __post_init__(self) -> None:
        if self.spatial.num_crops != 1:
            raise ValueError(f"ClipPreprocess: one centre crop per clip, got num_crops={self.spatial.num_crops}")

    @property
    def crop_size(self) -> int:
        return self.spatial.crop_size

    def window(self, fps: float) -> int:
        """Frames one clip spans in a source of this frame rate (at least 1)."""
        return max(1, math.ceil(self.sampling.span(fps)))

    def clip(self, frames: Sequence[np.ndarray], fps: float) -> torch.Tensor:
        """The model input for a window of frames.

        Args:
            frames: the window, oldest first: RGB uint8 (H, W, 3) arrays; fewer than ``window(fps)`` frames (the
                start of a short video) are padded by repeating the last one, as test sampling does.
            fps: the source's frame rate.

        Returns:
            float32 (1, 3, NUM_FRAMES, crop_size, crop_size).
        """
        if not frames:
            raise ValueError("ClipPreprocess.clip: no frames")
        indices = self.sampling.test_indices(len(frames), fps, 1)[0]
        wanted = sorted(set(indices))
        picked = torch.from_numpy(np.stack([frames[i] for i in wanted]))  # (N, H, W, 3)
        return views_from_frames(frames_to_clip(picked), wanted, [indices], self.spatial)


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one clip.

    Attributes:
        ids: class indices, most probable first.
        labels: their names.
        probs: their probabilities.
        seconds: preprocessing + forward time of this clip.
        model_fps: clips per second over the last few predictions (the model's speed).
    """

    ids: tuple[int, ...]
    labels: tuple[str, ...]
    probs: tuple[float, ...]
    seconds: float
    model_fps: float

    def as_dict(self) -> list[dict]:
        return [{"id": i, "label": name, "prob": round(p, 6)} for i, name, p in zip(self.ids, self.labels, self.probs)]


class Predictor:
    """Classifies windows of frames with a model and its config's test preprocessing.

    Args:
        model: the classifier (put in eval mode and moved to ``device`` here).
        preprocess: window -> model input.
        class_names: one name per class.
        device: where the model runs.
        topk: classes reported per clip.
        activation: ``MODEL.HEAD_ACT``: "softmax" (PySlowFast's default test head), "sigmoid" or "none"
            (``head_activation``, the rule the evaluator follows too).
    """

    def __init__(self, model: nn.Module, preprocess: ClipPreprocess, class_names: Sequence[str],
                 device: torch.device | str = "cpu", topk: int = 5, activation: str = "softmax") -> None:  # fmt: skip
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.preprocess, self.class_names = preprocess, list(class_names)
        self.topk, self.activation = min(topk, len(self.class_names)), activation
        self._seconds: deque[float] = deque(maxlen=_SPEED_WINDOW)

    def window(self, fps: float) -> int:
        return self.preprocess.window(fps)

    def warm_up(self) -> None:
        """One forward pass on a blank clip: first-call set-up costs stay out of the measured speed, and a model
        that cannot run on the device fails before any frame is read."""
        size, frames = self.preprocess.crop_size, self.preprocess.sampling.num_frames
        with torch.inference_mode():
            self.model(torch.zeros(1, 3, frames, size, size, device=self.device)).cpu()

    def predict(self, frames: Sequence[np.ndarray], fps: float) -> Prediction:
        """Top-k of the clip of a window (see ``ClipPreprocess.clip``)."""
        start = time.perf_counter()
        clip = self.preprocess.clip(frames, fps).to(self.device)
        with torch.inference_mode():
            logits = self.model(clip)[0].float()
        ids, probs = top_k(head_activation(logits, self.activation), self.topk)  # waits for the device
        seconds = time.perf_counter() - start
        self._seconds.append(seconds)
        return Prediction(tuple(ids), tuple(self.class_names[i] for i in ids), tuple(probs), seconds,
                          len(self._seconds) / sum(self._seconds))  # fmt: skip


def top_k(scores: torch.Tensor, k: int) -> tuple[list[int], list[float]]:
    """The ``k`` best classes of (K,) scores and their scores, best first: the one ranking of the demo and
    ``tools/predict.py`` (per video and per window)."""
    values, ids = scores.float().topk(min(k, scores.numel()))
    return ids.tolist(), values.tolist()


def _builtin_list(cfg) -> str | None:
    dataset = str(cfg.TEST.DATASET).lower()
    family = "kinetics" if dataset.startswith("kinetics") else "ssv2" if dataset in ("ssv2", "sthv2") else dataset
    return _BUILTIN_LISTS.get((family, cfg.MODEL.NUM_CLASSES))


def resolve_class_names(cfg) -> tuple[list[str], str]:
    """Class names for a config and where they come from: ``DEMO.LABEL_FILE_PATH`` (PySlowFast's JSON
    ``{name: id}`` or one name per line), else ``classnames.txt`` in ``DATA.PATH_TO_DATA_DIR``, else the built-in
    Kinetics-400/600/700 or SSv2 list matching ``TEST.DATASET`` and ``MODEL.NUM_CLASSES``, else "class N".

    Raises:
        ClassNamesError: a label file that cannot be read or lists another number of classes.
    """
    count = cfg.MODEL.NUM_CLASSES
    if cfg.DEMO.LABEL_FILE_PATH:
        names = load_classnames(cfg.DEMO.LABEL_FILE_PATH)
        if len(names) != count:
            raise ClassNamesError(f"DEMO.LABEL_FILE_PATH={cfg.DEMO.LABEL_FILE_PATH!r} lists {len(names)} classes, the "
                                  f"model has MODEL.NUM_CLASSES={count}; give the label file of this checkpoint")  # fmt: skip
        return names, cfg.DEMO.LABEL_FILE_PATH
    local = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, "classnames.txt")
    if cfg.DATA.PATH_TO_DATA_DIR and os.path.isfile(local):
        names = load_classnames(local)
        if len(names) == count:
            return names, local
        logger.warning("%s lists %d classes, the model %d: not using it", local, len(names), count)
    builtin = _builtin_list(cfg)
    if builtin is not None:
        return load_classnames(builtin), builtin
    return [f"class {i}" for i in range(count)], "class indices (no label file)"


def load_model(cfg, checkpoint: str) -> nn.Module:
    """The config's model with a checkpoint's weights (any format ``load_pretrained`` detects); a checkpoint of
    another architecture or class count is a one-line ``CheckpointError``."""
    if cfg.MVIT.PATCH_2D:
        raise ConfigError("MVIT.PATCH_2D builds an image model, and the demo and tools/predict.py classify video "
                          "clips; use a video config such as configs/K400/MVITv2_S_16x4.yaml")  # fmt: skip
    model = build_model(cfg)
    check_complete(load_pretrained(model, checkpoint), checkpoint)
    return model


def build_predictor(cfg, checkpoint: str, device: torch.device | str = "cpu", topk: int | None = None) -> Predictor:
    """A warmed-up ``Predictor`` for a config and checkpoint: the single-crop test preprocessing (also when the
    config tests with three crops), class names, ``DEMO.TOPK``."""
    preprocess = ClipPreprocess(sampling=clip_sampling(cfg, "test"), spatial=spatial_views(cfg, "test", num_crops=1))
    names, source = resolve_class_names(cfg)
    model = load_model(cfg, checkpoint)
    logger.info("class names: %s", source)
    predictor = Predictor(model, preprocess, names, device, topk or cfg.DEMO.TOPK, str(cfg.MODEL.HEAD_ACT).lower())
    predictor.warm_up()
    return predictor
