"""Features of sliding windows: every window of a video through the test preprocessing and the model, to a point.

Windows: a clip spans ``NUM_FRAMES x SAMPLING_RATE`` frames at ``TARGET_FPS`` (``span`` source frames); window k
starts at source frame ``k * stride`` while it ends inside the video (a shorter video gets one window at 0). Its
clip is the test view that starts there (``sampling.clip_indices_at``: the indices ``test_clip_indices`` gives a
view with that start), cut into ``crops`` spatial views as the test loader cuts them (``views_from_frames`` with
``loader.spatial_views(cfg, "test", num_crops=crops)``). SSv2-style configs (one frame per segment of the whole
video) have one window, the whole video.

Each video is opened once and its frames decoded in order, once each: a batch of windows asks only for frames not
decoded yet, and frames later windows still need are kept.

Points (``FeatureSpec``): ``pre_logits`` (``model.forward_features``: the classifier's input, pooled as the model
pools), ``logits``, ``stage:N`` / ``block:N`` (``models.intermediates``) pooled by ``mean`` over the token grid,
``cls`` (the class token there) or ``none`` (the grid, T' x H' x W' x C).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..data.kinetics import ClipSampling, SpatialViews, frames_to_clip, views_from_frames
from ..data.sampling import clip_indices_at, window_starts
from ..errors import UserError
from ..models.intermediates import check_point, stage_output

LAYERS = ("pre_logits", "logits", "stage:N", "block:N")
POOLS = ("mean", "cls", "none")


class FeatureSpecError(UserError, ValueError):
    """A ``--layer`` / ``--pool`` / ``--stride`` that cannot work; one line."""


@dataclass(frozen=True)
class FeatureSpec:
    """Where features are taken and how they are pooled.

    Attributes:
        layer: "pre_logits", "logits", "stage" or "block".
        index: the stage (1-based, -1 the last) or block (0-based); None otherwise.
        pool: "model" (pre_logits and logits: as the model computes them), "mean", "cls" or "none".
    """

    layer: str = "pre_logits"
    index: int | None = None
    pool: str = "model"

    @classmethod
    def parse(cls, layer: str, pool: str | None = None) -> FeatureSpec:
        """``--layer pre_logits | logits | stage:N | stage:last | block:N`` and ``--pool mean | cls | none``."""
        name, _, number = layer.partition(":")
        if name in ("pre_logits", "logits") and not number:
            if pool is not None:
                raise FeatureSpecError(
                    f"--pool {pool}: {name} is already pooled by the model; --pool applies to "
                    "--layer stage:N and block:N (stage:last --pool none gives the last grid)"
                )
            return cls(name, None, "model")
        if name in ("stage", "block") and (number.lstrip("-").isdigit() or (name, number) == ("stage", "last")):
            index = -1 if number == "last" else int(number)
            pool = pool or "mean"
            if pool not in POOLS:
                raise FeatureSpecError(f"--pool {pool}: use one of {', '.join(POOLS)}")
            return cls(name, index, pool)
        raise FeatureSpecError(f"--layer {layer}: use one of {', '.join(LAYERS)} (stage:last for the last stage)")

    def describe(self) -> str:
        point = self.layer if self.index is None else f"{self.layer}:{self.index}"
        return point if self.pool == "model" else f"{point} ({self.pool})"


def parse_stride(text: str) -> tuple[float, str]:
    """``--stride``: ``2s`` / ``0.5s`` (seconds) or ``16`` / ``16f`` (frames at DATA.TARGET_FPS) -> (value, unit)."""
    value = text.strip().lower()
    unit = "s" if value.endswith("s") else "f"
    try:
        number = float(value.rstrip("sf"))
    except ValueError:
        number = -1.0
    if not number > 0 or not math.isfinite(number):
        raise FeatureSpecError(f"--stride {text}: give seconds (2s, 0.5s) or frames at DATA.TARGET_FPS (16, 16f)")
    return number, unit


@dataclass(frozen=True)
class Window:
    """One window: its (possibly fractional) first source frame and its clip's frame indices."""

    start: float
    indices: tuple[int, ...]

    def as_dict(self, fps: float, span: float, num_frames: int) -> dict:
        end = min(self.start + span, num_frames)
        return {"start_frame": self.indices[0], "end_frame": self.indices[-1], "start_sec": round(self.start / fps, 6),
                "end_sec": round(end / fps, 6)}  # fmt: skip


def source_fps(sampling: ClipSampling, fps: float) -> float:
    """A file without a frame rate is taken to run at DATA.TARGET_FPS (as test sampling takes it)."""
    return fps if fps > 0 else sampling.target_fps


def plan_windows(sampling: ClipSampling, num_frames: int, fps: float, stride: tuple[float, str] | None) -> list[Window]:
    """The windows of a video of ``num_frames`` frames at ``fps`` every ``stride`` (None: one clip span, so the
    windows tile the video); one whole-video window for SSv2-style sampling."""
    fps = source_fps(sampling, fps)
    if sampling.uniform:
        indices = sampling.test_indices(num_frames, fps, 1)[0]
        return [Window(float(indices[0]), tuple(indices))]
    span = sampling.span(fps)
    if stride is None:
        step = span
    else:
        value, unit = stride
        step = value * fps if unit == "s" else value * fps / sampling.target_fps
    starts = window_starts(num_frames, span, step)
    args = (num_frames, sampling.num_frames, sampling.sampling_rate, fps, sampling.target_fps)
    return [Window(start, tuple(clip_indices_at(start, *args))) for start in starts]


def window_batches(reader, windows: Sequence[Window], batch: int) -> Iterator[tuple[list[Window], torch.Tensor, list]]:
    """Batches of ``batch`` windows with their frames: (windows, (N, C, H, W) uint8 frames, their indices).

    Frames are asked for in increasing order only, each once: a batch decodes every needed frame up to its last one
    and keeps those later batches need.
    """
    needed = sorted({i for w in windows for i in w.indices})
    done, cache = 0, {}
    for first in range(0, len(windows), batch):
        chunk = list(windows[first : first + batch])
        wanted = sorted({i for w in chunk for i in w.indices})
        end = bisect.bisect_right(needed, wanted[-1])
        new = needed[done:end]
        if new:
            cache.update(zip(new, frames_to_clip(reader.get_frames(new))))
        done = end
        yield chunk, torch.stack([cache[i] for i in wanted]), wanted
        if first + batch < len(windows):
            keep = windows[first + batch].indices[0]
            cache = {i: f for i, f in cache.items() if i >= keep}


class FeatureExtractor:
    """Features of windows of frames: test preprocessing, then the model to the spec's point.

    Args:
        model: any family's model (put in eval mode and moved to ``device`` here).
        sampling: the test clip sampling (``loader.clip_sampling(cfg, "test")``).
        spatial: the test views (``loader.spatial_views(cfg, "test", num_crops)``).
        spec: where to take features and how to pool them.
        device: where the model runs.
        batch: windows per forward pass (each with ``spatial.num_crops`` clips).
    """

    def __init__(self, model: nn.Module, sampling: ClipSampling, spatial: SpatialViews, spec: FeatureSpec,
                 device: torch.device | str = "cpu", batch: int = 8) -> None:  # fmt: skip
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.sampling, self.spatial, self.spec, self.batch = sampling, spatial, spec, max(1, batch)
        if spec.layer in ("stage", "block"):
            try:
                self.spec = FeatureSpec(spec.layer, check_point(model, (spec.layer, spec.index))[1], spec.pool)
            except ValueError as e:
                raise FeatureSpecError(f"--layer: {e}") from None

    @torch.inference_mode()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, ...) float32 features on the CPU."""
        x = clips.to(self.device)
        spec = self.spec
        if spec.layer == "logits":
            out = self.model(x)
        elif spec.layer == "pre_logits":
            out = self.model.forward_features(x)
        else:
            tokens = stage_output(self.model, x, (spec.layer, spec.index))
            if spec.pool == "cls":
                if tokens.cls is None:
                    raise FeatureSpecError(f"--pool cls: {type(self.model).__name__} has no class token at "
                                           f"{spec.describe()}; use --pool mean or none")  # fmt: skip
                out = tokens.cls
            else:
                out = tokens.grid.mean(dim=(1, 2, 3)) if spec.pool == "mean" else tokens.grid
        return out.float().cpu()

    def clips(self, frames: torch.Tensor, wanted: list, windows: Sequence[Window]) -> torch.Tensor:
        """The test views of windows: (len(windows) * crops, C, T, H, W), window-major."""
        return views_from_frames(frames, wanted, [w.indices for w in windows], self.spatial)

    def extract(self, reader, windows: Sequence[Window]) -> np.ndarray:
        """Features of every window of an open video: (N, ...), or (N, crops, ...) with several crops."""
        parts = []
        for chunk, frames, wanted in window_batches(reader, windows, self.batch):
            parts.append(self.forward(self.clips(frames, wanted, chunk)))
        out = torch.cat(parts)
        crops = self.spatial.num_crops
        return (out if crops == 1 else out.view(len(windows), crops, *out.shape[1:])).numpy()

    def preprocessing(self) -> dict:
        """What makes the clips, for the index."""
        return {"sampling": asdict(self.sampling), "spatial": asdict(self.spatial)}
