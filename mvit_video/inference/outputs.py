"""What the demo writes: the annotated video (H.264 via PyAV), the JSON timeline and an optional window.

The video is written by ``data.encode.VideoWriter`` at the source's frame rate and size (an odd height or width
gets one more row or column). ``Timeline`` collects one segment per prediction
(start/end time and frame, top-k labels with probabilities) and writes them as JSON when closed. ``Display`` shows
frames in a matplotlib window; ``display_problem`` says why none can open (no display, a non-interactive backend).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from ..data.encode import VideoWriter
from .overlay import Overlay
from .predictor import Prediction

_NON_INTERACTIVE = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


class Timeline:
    """The predictions of a run as time segments, written as JSON.

    Args:
        path: where ``close`` writes the JSON (None: kept in memory only).
        fps: the source's frame rate, to turn frame numbers into seconds.
        info: fields written at the top of the JSON (input, config, checkpoint, ...).
    """

    def __init__(self, path: str | None, fps: float, info: dict[str, Any]) -> None:
        self.path, self.fps, self.info = path, fps, dict(info)
        self.segments: list[dict[str, Any]] = []

    def add(self, first: int, last: int, prediction: Prediction) -> None:
        """Frames ``first..last`` (inclusive) are described by ``prediction``."""
        self.segments.append({
            "start": round(first / self.fps, 6), "end": round((last + 1) / self.fps, 6),
            "start_frame": first, "end_frame": last, "top": prediction.as_dict(),
            "clip_seconds": round(prediction.seconds, 6),
        })  # fmt: skip

    def close(self, summary: dict[str, Any]) -> None:
        if self.path is None:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**self.info, **summary, "segments": self.segments}, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)


def display_problem() -> str | None:
    """Why no window can be shown here (no display, a non-interactive matplotlib backend), or None."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    import matplotlib.pyplot as plt

    backend = plt.get_backend()
    if backend.lower() in _NON_INTERACTIVE or "inline" in backend.lower():
        return f"matplotlib's {backend} backend cannot open a window"
    return None


class Display:
    """Frames in a matplotlib window; closing it or pressing q stops the demo."""

    def __init__(self, title: str) -> None:
        import matplotlib.pyplot as plt

        self._plt = plt
        plt.ion()
        self._figure, axes = plt.subplots()
        axes.axis("off")
        self._axes, self._image, self.closed = axes, None, False
        self._figure.canvas.manager.set_window_title(title)
        self._figure.canvas.mpl_connect("close_event", self._on_close)
        self._figure.canvas.mpl_connect("key_press_event", lambda e: e.key == "q" and self._on_close(e))

    def _on_close(self, _event) -> None:
        self.closed = True

    def show(self, frame: np.ndarray) -> bool:
        """Shows a frame; False once the window was closed."""
        if self._image is None:
            self._image = self._axes.imshow(frame)
            self._figure.tight_layout()
        else:
            self._image.set_data(frame)
        self._plt.pause(0.001)
        return not self.closed

    def close(self) -> None:
        self._plt.close(self._figure)


class DemoOutputs:
    """Per frame: draw the current prediction, encode, show; per prediction: a timeline segment.

    Args:
        video: annotated video path, or None.
        timeline: JSON timeline path, or None.
        display: show a window.
        fps: frame rate of the source (the timeline's seconds are the source's).
        height, width: frame size.
        info: fields for the timeline's header.
        video_fps: frame rate of the video written (None: ``fps``).
    """

    def __init__(self, video: str | None, timeline: str | None, display: bool, fps: float, height: int, width: int,
                 info: dict[str, Any], video_fps: float | None = None) -> None:  # fmt: skip
        self.timeline = Timeline(timeline, fps, info)
        self.writer = VideoWriter(video, video_fps or fps, height, width, deterministic=False) if video else None
        self.display = Display(str(info.get("input", "mvit_video demo"))) if display else None
        self.overlay = Overlay(height, width)

    def frame(self, frame: np.ndarray, prediction: Prediction | None) -> bool:
        """Writes / shows one frame with ``prediction`` drawn on it; False when the user closed the window."""
        if self.writer is None and self.display is None:
            return True
        annotated = self.overlay.draw(frame, prediction)
        if self.writer is not None:
            self.writer.write(annotated)
        return self.display.show(annotated) if self.display is not None else True

    def segment(self, first: int, last: int, prediction: Prediction) -> None:
        self.timeline.add(first, last, prediction)

    def close(self, summary: dict[str, Any]) -> None:
        """Finishes the video and writes the timeline (also after an error, so both stay readable)."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            self.timeline.close(summary)
            if self.display is not None:
                self.display.close()
