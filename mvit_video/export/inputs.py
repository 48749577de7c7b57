"""What an export starts from: a model (a config or a named variant, with weights) and a real clip.

The clip is a window of frames (decoded from a video, or a generated toy video) through the config's single-crop
test preprocessing (``inference.predictor.ClipPreprocess``): float32 (1, 3, NUM_FRAMES, TEST_CROP_SIZE,
TEST_CROP_SIZE), normalised with DATA.MEAN / DATA.STD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import get_cfg, load_config
from ..data.decode import VideoDecodeError, open_video
from ..data.loader import clip_sampling, spatial_views
from ..data.toy import render_frames, sample_video_spec
from ..inference.predictor import ClipPreprocess
from ..models import build_model, create_model, load_pretrained
from ..models.pretrained import check_complete
from .formats import ExportError

_GENERATED_FPS = 30


@dataclass
class ExportSource:
    """A model ready to export and the config its test preprocessing comes from.

    Attributes:
        model: the model, in eval mode on CPU.
        cfg: the root config (a named variant gets the defaults with its clip size).
        name: the config path or the variant's name.
        checkpoint: the weights' path ("" for random weights).
    """

    model: nn.Module
    cfg: object
    name: str
    checkpoint: str


def _checkpoint_of(cfg, checkpoint: str | None) -> str:
    return checkpoint or cfg.TEST.CHECKPOINT_FILE_PATH or cfg.TRAIN.CHECKPOINT_FILE_PATH


def _variant_cfg(model: nn.Module):
    """Default preprocessing at a named variant's clip size: NUM_FRAMES x crop, the short side resized to
    crop * 256 / 224 first (the common 224-of-256 test view)."""
    t, h, _ = model.cfg.input_size
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE = t, h, h
    cfg.DATA.TRAIN_JITTER_SCALES = [math.ceil(h * 256 / 224), math.ceil(h * 320 / 224)]
    return cfg


def load_source(cfg_path: str | None = None, model_name: str | None = None, checkpoint: str | None = None,
                opts: Sequence[str] | None = None, **model_kwargs) -> ExportSource:  # fmt: skip
    """The model to export: from a config (``opts`` are overrides; the weights are ``checkpoint``, else
    TEST.CHECKPOINT_FILE_PATH, else TRAIN.CHECKPOINT_FILE_PATH) or a named variant (``create_model`` with
    ``model_kwargs``). Without weights the model keeps its random initialisation.

    Raises:
        ConfigError, CheckpointError, ExportError: one line (a wrong key, a bad checkpoint, no model named).
    """
    if (cfg_path is None) == (model_name is None):
        raise ExportError("give either a config (--cfg) or a named model (--model)")
    if cfg_path is not None:
        cfg = load_config(cfg_path, list(opts or []))
        weights = _checkpoint_of(cfg, checkpoint)
        model = build_model(cfg)
        if weights:
            check_complete(load_pretrained(model, weights), weights)
        return ExportSource(model.eval(), cfg, cfg_path, weights)
    if opts:
        raise ExportError(f"config overrides {list(opts)[:2]} need a config (--cfg); --model takes none")
    try:
        model = create_model(model_name, checkpoint=checkpoint, **model_kwargs)
    except KeyError as e:
        raise ExportError(str(e.args[0])) from None
    return ExportSource(model.eval(), _variant_cfg(model), model_name, checkpoint or "")


def clip_frames(model: nn.Module, cfg) -> int:
    """Frames of the model's input: DATA.NUM_FRAMES, or 1 for an image model (input_size T = 1)."""
    return 1 if model.cfg.input_size[0] == 1 else cfg.DATA.NUM_FRAMES


def _preprocess(cfg, num_frames: int) -> ClipPreprocess:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATA.NUM_FRAMES = num_frames
    return ClipPreprocess(sampling=clip_sampling(cfg, "test"), spatial=spatial_views(cfg, "test", num_crops=1))


def _video_window(path: str, preprocess: ClipPreprocess) -> tuple[list[np.ndarray], float]:
    """The middle window of a video: its frames and frame rate."""
    try:
        with open_video(path) as reader:
            window = min(preprocess.window(reader.fps), reader.num_frames)
            start = (reader.num_frames - window) // 2
            return list(reader.get_frames(range(start, start + window)).numpy()), reader.fps
    except VideoDecodeError as e:
        raise ExportError(f"--video {path}: {e.reason}; give a readable video file (or no --video)") from None


def _generated_window(preprocess: ClipPreprocess) -> tuple[list[np.ndarray], float]:
    """A toy video (a textured background, a moving shape) one window long, at 30 fps."""
    size = preprocess.spatial.short_side
    window = max(2, preprocess.window(_GENERATED_FPS))
    spec = sample_video_spec(np.random.default_rng(0), 0, "generated.mp4", sizes=[(size, size * 4 // 6 * 2)],
                             fps_choices=[_GENERATED_FPS], num_frames=(window, window))  # fmt: skip
    return list(render_frames(spec)), float(_GENERATED_FPS)


def load_clip(model: nn.Module, cfg, video: str | None = None) -> torch.Tensor:
    """The model's input for a window of ``video`` (its middle; a generated toy video when None) through the
    config's single-crop test preprocessing: float32 (1, 3, T, crop, crop)."""
    preprocess = _preprocess(cfg, clip_frames(model, cfg))
    frames, fps = _video_window(video, preprocess) if video else _generated_window(preprocess)
    return preprocess.clip(frames, fps)
