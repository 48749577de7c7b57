"""Frame sources for the demo: video files, cameras and other live FFmpeg inputs, read in a background thread.

A source yields upright RGB uint8 (H, W, 3) arrays in order and knows its frame rate and size before the first
frame is consumed. Opening one checks the input (missing or unreadable file, camera not available) and raises a
one-line ``InputError`` before any work starts.

- ``VideoFileSource``: any file ``open_video`` reads, with its exact frames (rotated phone videos come upright).
- ``LiveSource``: a live FFmpeg input read with PyAV (a V4L2 camera, a pipe, a stream URL); ``open_camera`` opens
  camera N (``/dev/videoN`` through V4L2 on Linux, AVFoundation device N on macOS).
- ``FrameReader``: runs a source in a thread. File frames wait in a bounded queue (decoding pauses while the
  consumer is busy); live frames are never waited for: when the consumer falls behind, new ones are dropped and
  counted. Iteration ends at the end of the stream, after a read error (kept in ``error``) or when no frame came
  for ``stall_seconds`` (``stalled``).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Protocol, Self

import av
import numpy as np

from ..errors import UserError
from ..data.decode import VideoDecodeError, open_video

_END = object()  # queued after the last frame


class InputError(UserError, ValueError):
    """An input the demo cannot read (missing or unreadable video, camera not available); one line."""


class FrameSource(Protocol):
    """What the demo reads frames from."""

    name: str
    fps: float  # 0 when the source does not say
    height: int
    width: int
    live: bool  # frames arrive in real time (a camera): the newest clip matters, old ones may be skipped
    num_frames: int | None  # None for live sources

    def frames(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class VideoFileSource:
    """The frames of a video file in order, decoded in chunks with ``open_video`` (exact frames, upright).

    Args:
        path: the video.
        backend: ``open_video`` backend ("pyav", "decord" or "torchcodec").
        chunk: frames decoded per request.
    """

    live = False

    def __init__(self, path: str, backend: str = "pyav", chunk: int = 16) -> None:
        try:
            self._reader = open_video(path, backend)
        except VideoDecodeError as e:
            raise InputError(f"input video {path}: {e.reason}; give a readable video file or a camera index") from None
        except (ImportError, ValueError) as e:  # a backend that is not installed or not supported
            raise InputError(f"DATA.DECODING_BACKEND: {e}") from None
        self.name, self._chunk = path, chunk
        self.fps, self.num_frames = self._reader.fps, self._reader.num_frames
        self.height, self.width = self._reader.height, self._reader.width

    def frames(self) -> Iterator[np.ndarray]:
        for start in range(0, self.num_frames, self._chunk):
            indices = range(start, min(start + self._chunk, self.num_frames))
            yield from self._reader.get_frames(indices).numpy()

    def close(self) -> None:
        self._reader.close()


class LiveSource:
    """Frames of a live FFmpeg input read with PyAV, as they arrive.

    ``close`` may be called while another thread waits for a frame (a stalled camera): the container is then closed
    by that thread once its read returns, never under it.

    Args:
        url: what FFmpeg opens: ``/dev/video0``, a FIFO, ``rtsp://...``.
        format: FFmpeg input format (``v4l2``, ``avfoundation``, ``yuv4mpegpipe``, ...); None guesses.
        options: input options, e.g. ``{"video_size": "640x480"}``.
        name: how messages call it.
    """

    live = True
    num_frames = None

    def __init__(self, url: str, format: str | None = None, options: dict[str, str] | None = None,
                 name: str | None = None) -> None:  # fmt: skip
        self.name = name or url
        self._lock, self._reading, self._closing = threading.Lock(), False, False
        try:
            self._container = av.open(url, format=format, options=options or {})
        except (av.error.FFmpegError, OSError) as e:
            raise InputError(f"{self.name} is not available ({_short(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.name} has no video stream")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = float(rate) if rate else 0.0
        self._decoded = self._container.decode(self._stream)
        try:
            self._first = self._next_frame()
            if self._first is None:
                raise InputError(f"{self.name} gave no frame")
        except InputError:
            self.close()
            raise
        self.height, self.width = self._first.shape[:2]

    def _next_frame(self) -> np.ndarray | None:
        with self._lock:
            if self._closing:
                return None
            self._reading = True
        try:
            return next(self._decoded).to_ndarray(format="rgb24")
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise InputError(f"{self.name}: reading failed ({_short(e)})") from None
        finally:
            with self._lock:
                self._reading = False
                if self._closing:
                    self._container.close()

    def frames(self) -> Iterator[np.ndarray]:
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            frame = self._next_frame()

    def close(self) -> None:
        with self._lock:
            if not self._closing and not self._reading:
                self._container.close()
            self._closing = True


def _short(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[-1][:160]


def open_camera(index: int, size: tuple[int, int] | None = None) -> LiveSource:
    """Camera ``index`` through PyAV: ``/dev/video<index>`` (V4L2) on Linux, AVFoundation on macOS.

    Args:
        index: camera number.
        size: (width, height) to ask the camera for, or None for its default.
    """
    options = {"video_size": f"{size[0]}x{size[1]}"} if size else {}
    name = f"camera {index}"
    if sys.platform.startswith("linux"):
        device = f"/dev/video{index}"
        if not os.path.exists(device):
            cameras = sorted(d for d in os.listdir("/dev") if d.startswith("video"))
            found = f"cameras here: {', '.join(cameras)}" if cameras else "no /dev/video* device here"
            raise InputError(f"{name} is not available: {device} does not exist ({found})")
        return LiveSource(device, "v4l2", options, name=f"{name} ({device})")
    if sys.platform == "darwin":
        return LiveSource(str(index), "avfoundation", {"framerate": "30", **options}, name=name)
    raise InputError(f"{name}: camera input needs Linux (V4L2) or macOS (AVFoundation); give a video file instead")


class FrameReader:
    """Reads a source's frames in a background thread; iterate it to get them in order (see the module docs).

    Args:
        source: what to read.
        stall_seconds: iteration ends when no frame came for this long.
        max_queued: frames held between the reader and the consumer.
    """

    def __init__(self, source: FrameSource, stall_seconds: float = 5.0, max_queued: int = 32) -> None:
        self.source, self.stall_seconds = source, stall_seconds
        self.stalled, self.error, self.dropped = False, None, 0
        self._queue: queue.Queue = queue.Queue(max_queued)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"read {source.name}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if not self.source.live:  # a live read may block in the driver; the daemon thread ends with the process
            self._drain()
            self._thread.join()

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                if self._stop.is_set() or not self._put(frame):
                    return
        except Exception as e:  # noqa: BLE001 - kept in self.error and reported by the consumer
            self.error = e
        self._put(_END, force=True)

    def _put(self, item, force: bool = False) -> bool:
        """Queues an item; False when reading should stop. Live frames that do not fit are dropped."""
        if self.source.live and not force:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
            return True
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                item = self._queue.get(timeout=self.stall_seconds)
            except queue.Empty:
                self.stalled = True
                return
            if item is _END:
                return
            yield item
