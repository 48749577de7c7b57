"""Fake live sources for the camera path: a FIFO that PyAV reads like a camera, and a frame-list source."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def gray_level(index: int) -> int:
    """The luma of frame ``index`` of a fake camera (distinct for indices 0..25)."""
    return 20 + 8 * index


@contextlib.contextmanager
def y4m_camera(path: Path, num_frames: int, fps: int = 10, size: tuple[int, int] = (48, 64)) -> Iterator[Path]:
    """A FIFO that streams ``num_frames`` uniform grey YUV4MPEG frames (frame i has luma ``gray_level(i)``) and
    then stalls, keeping the pipe open, until the context exits. Read it with
    ``LiveSource(str(path), "yuv4mpegpipe")``, PyAV's path for V4L2 cameras with another input format."""
    height, width = size
    os.mkfifo(path)
    release = threading.Event()

    def stream() -> None:
        with contextlib.suppress(BrokenPipeError), open(path, "wb", buffering=0) as pipe:
            pipe.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(num_frames):
                luma = bytes([gray_level(i)]) * (width * height)
                pipe.write(b"FRAME\n" + luma + bytes([128]) * (width * height // 2))
            release.wait()  # the stall: no more frames, the pipe stays open

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        release.set()
        if writer.is_alive():
            with contextlib.suppress(OSError):  # nobody opened the FIFO: open it once so the writer can finish
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            writer.join(5)


class ListSource:
    """A source fed from a list of frames; ``finished`` is set once the last one was handed out.

    Args:
        frames: the frames.
        fps: their rate.
        live: whether the demo treats it as a camera.
        fail_after: raise a RuntimeError after this many frames (None: never).
    """

    def __init__(self, frames: list[np.ndarray], fps: float = 10.0, live: bool = False,
                 fail_after: int | None = None) -> None:  # fmt: skip
        self._frames, self.fps, self.live, self._fail_after = frames, fps, live, fail_after
        self.name = "list source"
        self.height, self.width = frames[0].shape[:2]
        self.num_frames = None if live else len(frames)
        self.finished = threading.Event()

    def frames(self) -> Iterator[np.ndarray]:
        for i, frame in enumerate(self._frames):
            if i == self._fail_after:
                raise RuntimeError(f"lost the stream at frame {i}")
            yield frame
        self.finished.set()

    def close(self) -> None:
        pass


def numbered_frames(count: int, size: tuple[int, int] = (24, 32)) -> list[np.ndarray]:
    """Frames whose pixels all equal their index."""
    return [np.full((*size, 3), i, dtype=np.uint8) for i in range(count)]
