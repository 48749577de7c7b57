"""The one video writer of the toolkit: frames -> an H.264 (or other) file through PyAV, at a constant frame rate.

Used by the toy dataset (``toy.py``), the Kinetics re-encoder (``prepare.py``), the benchmark material and the
demo's annotated output. Defaults are H.264 in yuv420p with one encoder thread and x264's macroblock tree off:
x264 then writes byte-identical files for identical frames (with several threads and the macroblock tree about
one toy video in five decoded differently on a second run). An odd height or width gets one more row or column
(a copy of the last one), as yuv420p needs even sizes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fractions import Fraction

import av
import numpy as np

# x264 settings that make the output depend on the frames only (not on thread timing)
DETERMINISTIC_X264 = {"threads": "1", "x264-params": "mbtree=0"}


def _x264_options(options: Mapping[str, str] | None, deterministic: bool, gop: int | None) -> dict[str, str]:
    """libx264 options: ``crf 20, preset veryfast`` unless given; ``x264-params`` entries are merged."""
    merged = {"crf": "20", "preset": "veryfast", **(options or {})}
    params = [p for p in merged.pop("x264-params", "").split(":") if p]
    if deterministic:
        merged["threads"] = DETERMINISTIC_X264["threads"]
        params.append(DETERMINISTIC_X264["x264-params"])
    if gop is not None:
        params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
    if params:
        merged["x264-params"] = ":".join(params)
    return merged


class VideoWriter:
    """Encodes RGB frames (or decoded ``av.VideoFrame``s) into a video file at a constant frame rate.

    Args:
        path: output file; the container follows its extension (.mp4, .mkv, .mov, .webm, ...).
        fps: frame rate (NTSC rates such as 30000/1001 are kept exactly).
        height, width: frame size; odd sides are padded by one pixel.
        codec: encoder name, e.g. ``libx264`` (H.264) or ``libvpx-vp9``.
        options: encoder options (libx264 defaults: ``crf 20, preset veryfast``).
        deterministic: libx264 with one thread and no macroblock tree, so the same frames give the same bytes.
        gop: keyframe every ``gop`` frames (libx264), or the encoder's default.
    """

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int, codec: str = "libx264",
                 options: Mapping[str, str] | None = None, deterministic: bool = True,
                 gop: int | None = None) -> None:  # fmt: skip
        self.path, self.frames = os.fspath(path), 0
        self._pad = (height % 2, width % 2)
        if codec == "libx264":
            options = _x264_options(options, deterministic, gop)
        self._container = av.open(self.path, mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self._time_base = 1 / rate
        self._stream = self._container.add_stream(codec, rate=rate, options=dict(options or {}))
        self._stream.pix_fmt = "yuv420p"
        self._stream.height, self._stream.width = height + self._pad[0], width + self._pad[1]
        if gop is not None:
            self._stream.codec_context.gop_size = gop

    def _picture(self, frame: np.ndarray | av.VideoFrame) -> av.VideoFrame:
        if isinstance(frame, av.VideoFrame):
            return frame.reformat(width=self._stream.width, height=self._stream.height, format="yuv420p")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")

    def write(self, frame: np.ndarray | av.VideoFrame) -> None:
        """Appends one frame: RGB uint8 (H, W, 3), or a decoded frame (resized to the writer's size)."""
        picture = self._picture(frame)
        picture.pts, picture.time_base = self.frames, self._time_base
        self._container.mux(self._stream.encode(picture))
        self.frames += 1

    def close(self) -> None:
        """Flushes the encoder and finishes the file (idempotent)."""
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264",
                options: Mapping[str, str] | None = None, gop: int | None = None) -> int:  # fmt: skip
    """Encodes RGB frames (H, W, 3) uint8, all the same size, into ``path``; returns the frame count.

    See ``VideoWriter`` for the arguments (deterministic libx264 settings are always used).
    """
    writer = None
    try:
        for rgb in frames:
            if writer is None:
                writer = VideoWriter(path, fps, rgb.shape[0], rgb.shape[1], codec, options, gop=gop)
            writer.write(rgb)
    finally:
        if writer is not None:
            writer.close()
    return writer.frames if writer is not None else 0
