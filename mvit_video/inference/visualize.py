"""Explanation outputs: one clip of a video, its heat map (``explain.py``) blended on the frames the model saw, as an
H.264 overlay video and a PNG grid (frames above, heat over frames below).

The frames shown are the clip itself (sampled, resized and centre-cropped by the checkpoint config's single-crop
test preprocessing, then un-normalised), so every heat value sits on the pixel it was computed for; small clips
are enlarged by pixel repetition (no smoothing that would blur where the heat is).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.decode import open_video
from ..data.encode import write_video
from ..data.kinetics import SpatialViews
from ..data.loader import clip_sampling, spatial_views
from .explain import METHODS, ExplainError, Explanation, check_request, explain_clip
from .predictor import ClipPreprocess, load_model, resolve_class_names

_MIN_SHORT_SIDE = 256  # overlay video frames are enlarged to at least this
_ALPHA = 0.5  # opacity of the heat colours at full heat
_COLORMAP = "jet"


def clip_frames(clip: torch.Tensor, spatial: SpatialViews) -> np.ndarray:
    """A normalised model input (1, 3, T, H, W) back to RGB frames (T, H, W, 3) uint8."""
    x = clip[0].flip(0) if spatial.reverse_channels else clip[0]
    mean, std = (torch.tensor(v, dtype=x.dtype).view(3, 1, 1, 1) for v in (spatial.mean, spatial.std))
    rgb = (x * std + mean).clamp(0, 1) * 255
    return rgb.permute(1, 2, 3, 0).round().to(torch.uint8).numpy()


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """Heat (..., H, W) in [0, 1] -> colours (..., H, W, 3) float32 in [0, 1]."""
    from matplotlib import colormaps

    return colormaps[_COLORMAP](np.clip(heat, 0, 1))[..., :3].astype(np.float32)


def blend(frames: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 with the heat's colours laid over them, more opaque where the heat is higher."""
    alpha = (_ALPHA * (0.3 + 0.7 * np.clip(heat, 0, 1)))[..., None]
    out = frames.astype(np.float32) * (1 - alpha) + heat_colors(heat) * 255 * alpha
    return np.rint(out).astype(np.uint8)


def enlarge(frames: np.ndarray, short_side: int = _MIN_SHORT_SIDE) -> np.ndarray:
    """Frames (T, H, W, 3) repeated pixel by pixel until their short side reaches ``short_side``."""
    factor = max(1, math.ceil(short_side / min(frames.shape[1:3])))
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def save_grid_png(path: str | os.PathLike, frames: np.ndarray, heat: np.ndarray, title: str) -> None:
    """A PNG of the clip's frames (top row) and the heat over them (bottom row), one column per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = frames.shape[0]
    fig, axes = plt.subplots(2, t, figsize=(1.3 * t, 3.0), squeeze=False)
    for i in range(t):
        axes[0, i].imshow(frames[i], interpolation="nearest")
        axes[1, i].imshow(blend(frames[i : i + 1], heat[i : i + 1])[0], interpolation="nearest")
        axes[0, i].set_title(f"frame {i}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class VisualizeRequest:
    """What one ``tools/visualize.py`` run explains and writes.

    Attributes:
        checkpoint: model weights; video: the input file; output_dir: where the outputs go.
        method: "gradcam" or "rollout"; block: block index (None: the last); target: class index or name (None:
            the top-1).
        start: seconds into the video where the clip's window starts.
        device: where the model runs.
    """

    checkpoint: str
    video: str
    output_dir: str
    method: str = "gradcam"
    block: int | None = None
    target: str | None = None
    start: float = 0.0
    device: str = "cpu"


def _target_index(target: str | None, names: list[str]) -> int | None:
    if target is None:
        return None
    if target.lstrip("-").isdigit():
        index = int(target)
        if not 0 <= index < len(names):
            raise ExplainError(f"--class {index} is out of range: the model has {len(names)} classes")
        return index
    if target not in names:
        raise ExplainError(f"--class {target!r} is not one of the model's class names (e.g. {names[0]!r}); "
                           "give a name or an index")  # fmt: skip
    return names.index(target)


def _read_window(path: str, preprocess: ClipPreprocess, start: float) -> tuple[list[np.ndarray], float]:
    with open_video(path) as reader:
        first = min(max(0, round(start * reader.fps)), reader.num_frames - 1)
        last = min(reader.num_frames, first + preprocess.window(reader.fps))
        frames = reader.get_frames(range(first, last)).numpy()
        return list(frames), reader.fps


def _check_paths(request: VisualizeRequest) -> None:
    if request.method not in METHODS:
        raise ExplainError(f"--method {request.method!r} is not one of {', '.join(METHODS)}")
    if not os.path.isfile(request.video):
        raise ExplainError(f"--video {request.video}: no such file")
    if request.start < 0:
        raise ExplainError(f"--start {request.start} must be >= 0 seconds")
    try:
        Path(request.output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExplainError(f"cannot create --output-dir {request.output_dir}: {e.strerror or e}")


def run_visualize(cfg, request: VisualizeRequest) -> dict:
    """Explains one clip of ``request.video`` and writes ``<video stem>_<method>.mp4`` and ``.png``.

    Every user mistake (paths, method, block, family, class) is a one-line error before the video is read.

    Returns:
        A summary: the outputs' paths, the method, block, target class and its probability.
    """
    _check_paths(request)
    model = load_model(cfg, request.checkpoint).to(request.device).eval()
    block = check_request(model, request.method, request.block)
    names, _ = resolve_class_names(cfg)
    target = _target_index(request.target, names)
    preprocess = ClipPreprocess(sampling=clip_sampling(cfg, "test"), spatial=spatial_views(cfg, "test", num_crops=1))
    frames, fps = _read_window(request.video, preprocess, request.start)
    clip = preprocess.clip(frames, fps).to(request.device)
    result = explain_clip(model, clip, request.method, block, target)
    return _write_outputs(request, preprocess, clip.cpu(), result, names, len(frames) / fps)


def _write_outputs(request: VisualizeRequest, preprocess: ClipPreprocess, clip: torch.Tensor, result: Explanation,
                   names: list[str], seconds: float) -> dict:  # fmt: skip
    frames, heat = clip_frames(clip, preprocess.spatial), result.heat.cpu().numpy()
    stem = Path(request.output_dir) / f"{Path(request.video).stem}_{request.method}"
    label, prob = names[result.target], float(result.probs[result.target])
    title = f"{request.method} at block {result.block}: {label} ({prob * 100:.1f}%)"
    save_grid_png(f"{stem}.png", frames, heat, title)
    fps = max(1.0, frames.shape[0] / max(seconds, 1e-6))  # the clip in real time
    write_video(f"{stem}.mp4", enlarge(blend(frames, heat)), fps)
    return {"video": f"{stem}.mp4", "png": f"{stem}.png", "method": request.method, "block": result.block,
            "target": result.target, "label": label, "prob": round(prob, 6)}  # fmt: skip
