"""The action-recognition demo: a video file or a camera, classified clip by clip.

Files: frames are split into segments of ``stride`` frames; each segment is classified with the clip that ends at
its last frame (the window of ``Predictor.window(fps)`` frames before it, fewer at the start) and every frame of the
segment is written with that prediction, so the timeline and the video agree and tile the whole file.

Live sources: one thread receives frames and writes them at once with the latest prediction; another classifies
the newest clip again and again, as fast as the model allows, so clips that went stale while the model was busy are
never classified. Each prediction describes the frames since the previous one.

Everything a user can get wrong (input, checkpoint, config, output path, device) fails in one line before the first
frame is classified; a stream that ends, stalls or fails to decode finishes with complete, playable outputs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..process import cpu_cores
from .outputs import DemoOutputs, display_problem
from .predictor import Prediction, Predictor, build_predictor
from .sources import FrameReader, FrameSource, VideoFileSource, open_camera

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov")


@dataclass(frozen=True)
class DemoSettings:
    """What one demo run reads and writes (``settings_from_cfg`` maps PySlowFast's DEMO keys onto it).

    Attributes:
        checkpoint: model weights (any format ``load_pretrained`` detects).
        video: input video file ("" when ``camera`` is used).
        camera: camera index, or -1 to read ``video``.
        output: annotated video to write (.mp4, .mkv or .mov), or None.
        timeline: JSON timeline to write, or None.
        display: show a window (ignored with one warning where there is no display).
        device: "cpu", "cuda", "cuda:1", ...
        stride: frames per prediction on files; 0: the clip window minus ``buffer_size``.
        buffer_size: frames consecutive file clips share when ``stride`` is 0 (``DEMO.BUFFER_SIZE``).
        stall_seconds: a source that gives no frame for this long is finished.
        output_fps: frame rate of the written video; <= 0 keeps the source's.
        camera_size: (width, height) to ask the camera for, or None.
        backend: video file decoder (``DATA.DECODING_BACKEND``).
    """

    checkpoint: str
    video: str = ""
    camera: int = -1
    output: str | None = None
    timeline: str | None = None
    display: bool = False
    device: str = "cpu"
    stride: int = 0
    buffer_size: int = 0
    stall_seconds: float = 5.0
    output_fps: float = -1.0
    camera_size: tuple[int, int] | None = None
    backend: str = "pyav"

    @property
    def input_name(self) -> str:
        return f"camera {self.camera}" if self.camera >= 0 else self.video


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def settings_from_cfg(cfg, checkpoint: str) -> DemoSettings:
    """PySlowFast's demo keys: ``DEMO.INPUT_VIDEO`` or ``DEMO.WEBCAM``, ``DEMO.OUTPUT_FILE`` (empty: show a
    window), ``DEMO.OUTPUT_FPS``, ``DEMO.BUFFER_SIZE``, ``DEMO.DISPLAY_WIDTH/HEIGHT`` (camera size); toolkit keys
    ``DEMO.STRIDE``, ``DEMO.TIMELINE_FILE`` (empty: next to the output video), ``DEMO.STALL_SECONDS``. The model
    runs on CUDA when ``NUM_GPUS > 0`` and a GPU is there."""
    demo = cfg.DEMO
    output = demo.OUTPUT_FILE or None
    size = (demo.DISPLAY_WIDTH, demo.DISPLAY_HEIGHT) if demo.DISPLAY_WIDTH > 0 and demo.DISPLAY_HEIGHT > 0 else None
    return DemoSettings(
        checkpoint=checkpoint,
        video=demo.INPUT_VIDEO,
        camera=demo.WEBCAM,
        output=output,
        timeline=demo.TIMELINE_FILE or (timeline_beside(output) if output else None),
        display=output is None,
        device="cuda" if cfg.NUM_GPUS > 0 and torch.cuda.is_available() else "cpu",
        stride=demo.STRIDE,
        buffer_size=demo.BUFFER_SIZE,
        stall_seconds=demo.STALL_SECONDS,
        output_fps=float(demo.OUTPUT_FPS),
        camera_size=size,
        backend=str(cfg.DATA.DECODING_BACKEND).lower(),
    )


def timeline_beside(video: str) -> str:
    """``out/annotated.mp4`` -> ``out/annotated.json``."""
    return os.path.splitext(video)[0] + ".json"


def _check_writable(path: str, what: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot create {folder} ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise ConfigError(f"{what} {path}: cannot write there; choose another path")


def check_settings(settings: DemoSettings, need_input: bool = True) -> None:
    """One-line ``ConfigError`` for settings that cannot work, before anything is opened."""
    if need_input and settings.camera < 0 and not settings.video:
        raise ConfigError("no input: give a video file or a camera index (DEMO.INPUT_VIDEO or DEMO.WEBCAM)")
    if not settings.checkpoint:
        raise ConfigError("no checkpoint: give one (--checkpoint, TEST.CHECKPOINT_FILE_PATH)")
    if not (settings.output or settings.timeline or settings.display):
        raise ConfigError("nothing to write: give an output video, a timeline file or ask for a window (--display)")
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {settings.device!r}: CUDA is not available on this machine; use --device cpu")
    if settings.output:
        if not settings.output.lower().endswith(VIDEO_EXTENSIONS):
            raise ConfigError(f"output video {settings.output}: use a {', '.join(VIDEO_EXTENSIONS)} file name")
        if settings.video and os.path.abspath(settings.output) == os.path.abspath(settings.video):
            raise ConfigError(f"output video {settings.output} is the input video; choose another output path")
        _check_writable(settings.output, "output video")
    if settings.timeline:
        _check_writable(settings.timeline, "timeline")


def open_input(settings: DemoSettings) -> FrameSource:
    """The settings' camera or video file (a one-line ``InputError`` when it cannot be read)."""
    if settings.camera >= 0:
        return open_camera(settings.camera, settings.camera_size)
    return VideoFileSource(settings.video, settings.backend)


@dataclass
class RunState:
    """What a run has done so far."""

    frames: int = 0  # frames taken from the source
    stopped_by_user: bool = False
    predictions: list[tuple[int, Prediction]] = field(default_factory=list)  # (last frame described, prediction)


def _classify_segment(predictor: Predictor, window: deque, pending: list, fps: float, outputs: DemoOutputs,
                      state: RunState) -> bool:  # fmt: skip
    """Classifies the clip ending at the last pending frame and writes the pending frames with it; False when the
    user closed the window."""
    prediction = predictor.predict(list(window), fps)
    state.predictions.append((state.frames - 1, prediction))
    for frame in pending:
        if not outputs.frame(frame, prediction):
            state.stopped_by_user = True
            return False
    pending.clear()
    return True


def run_file(reader: FrameReader, predictor: Predictor, outputs: DemoOutputs, fps: float, stride: int,
             state: RunState) -> None:  # fmt: skip
    """A prediction every ``stride`` frames (and one for the last, shorter segment); see the module docs."""
    window: deque = deque(maxlen=predictor.window(fps))
    pending: list[np.ndarray] = []
    for frame in reader:
        window.append(frame)
        pending.append(frame)
        state.frames += 1
        if len(pending) == stride and not _classify_segment(predictor, window, pending, fps, outputs, state):
            return
    if pending:
        _classify_segment(predictor, window, pending, fps, outputs, state)


class NewestWindow:
    """The last ``size`` frames of a live stream, shared by the thread that receives them and the one that
    classifies them.

    Args:
        size: frames in a clip window.
    """

    def __init__(self, size: int) -> None:
        self._frames: deque = deque(maxlen=size)
        self._count, self._closed = 0, False
        self._changed = threading.Condition()

    def push(self, frame: np.ndarray) -> None:
        with self._changed:
            self._frames.append(frame)
            self._count += 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def latest(self) -> tuple[int, list[np.ndarray]]:
        """(index of the newest frame, the window ending there); index -1 before the first frame."""
        with self._changed:
            return self._count - 1, list(self._frames)

    def newer_than(self, index: int) -> tuple[int, list[np.ndarray]] | None:
        """Waits for a frame newer than ``index``, then returns ``latest()``; None once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._count - 1 > index)
            return None if self._closed else (self._count - 1, list(self._frames))


def classify_newest(window: NewestWindow, predict: Callable[[list[np.ndarray]], Prediction],
                    publish: Callable[[int, Prediction], None]) -> None:  # fmt: skip
    """Classifies the newest clip of ``window``, again and again until it closes: frames that arrive while the
    model is busy only move the next clip forward, so no stale clip is ever classified."""
    last = -1
    while (item := window.newer_than(last)) is not None:
        last, frames = item
        publish(last, predict(frames))


class _Latest:
    """The newest prediction of the classifying thread, read by the writing one."""

    def __init__(self, state: RunState) -> None:
        self._state, self._lock = state, threading.Lock()
        self.prediction: Prediction | None = None
        self.error: BaseException | None = None

    def publish(self, last_frame: int, prediction: Prediction) -> None:
        with self._lock:
            self._state.predictions.append((last_frame, prediction))
            self.prediction = prediction


def _classify_in_thread(window: NewestWindow, predictor: Predictor, fps: float, latest: _Latest) -> None:
    try:
        classify_newest(window, lambda frames: predictor.predict(frames, fps), latest.publish)
    except BaseException as e:  # noqa: BLE001 - re-raised by run_live after join
        latest.error = e
        window.close()


def run_live(reader: FrameReader, predictor: Predictor, outputs: DemoOutputs, fps: float, state: RunState) -> None:
    """Writes every frame as it comes with the latest prediction while another thread classifies the newest clip;
    a last prediction covers the frames after the thread's last one."""
    window, latest = NewestWindow(predictor.window(fps)), _Latest(state)
    worker = threading.Thread(target=_classify_in_thread, args=(window, predictor, fps, latest), daemon=True)
    worker.start()
    try:
        for frame in reader:
            window.push(frame)
            state.frames += 1
            if latest.error is not None or not outputs.frame(frame, latest.prediction):
                state.stopped_by_user = latest.error is None
                break
    finally:
        window.close()
        worker.join()
    if latest.error is not None:
        raise latest.error
    last, frames = window.latest()
    if frames and (not state.predictions or state.predictions[-1][0] < last):
        state.predictions.append((last, predictor.predict(frames, fps)))


def _source_fps(source: FrameSource, predictor: Predictor) -> float:
    if source.fps > 0:
        return source.fps
    fps = predictor.preprocess.sampling.target_fps
    logger.warning("%s does not say its frame rate: taking DATA.TARGET_FPS=%g", source.name, fps)
    return fps


def _display(settings: DemoSettings) -> bool:
    if not settings.display:
        return False
    problem = display_problem()
    if problem:
        logger.warning("%s: showing no window, writing the output files only", problem)
    return problem is None


def _summary(state: RunState, reader: FrameReader, fps: float, stride: int | None, started: float) -> dict[str, Any]:
    seconds = [p.seconds for _, p in state.predictions]
    wall = time.perf_counter() - started
    return {
        "num_frames": state.frames, "duration": round(state.frames / fps, 6), "num_predictions": len(seconds),
        "stride": stride, "model_fps": round(len(seconds) / sum(seconds), 3) if seconds else None,
        "wall_seconds": round(wall, 3), "frames_per_second": round(state.frames / wall, 3), "stalled": reader.stalled,
        "dropped_frames": reader.dropped, "stopped_by_user": state.stopped_by_user,
        "read_error": str(reader.error) if reader.error else None,
    }  # fmt: skip


def _report(summary: dict[str, Any], source: FrameSource, settings: DemoSettings) -> None:
    if summary["stalled"]:
        logger.warning("%s gave no frame for %g s: finished", source.name, settings.stall_seconds)
    if summary["read_error"]:
        logger.warning("reading %s stopped after %d frames (%s): finished with those", source.name,
                       summary["num_frames"], summary["read_error"])  # fmt: skip
    if summary["dropped_frames"]:
        logger.warning("%d frames of %s were dropped: writing fell behind the source", summary["dropped_frames"],
                       source.name)  # fmt: skip
    written = ", ".join(p for p in (settings.output, settings.timeline) if p) or "nothing"
    logger.info("%d frames, %d predictions, model %.1f clips/s, %.1f s in all (%.1f frames/s); wrote %s",
                summary["num_frames"], summary["num_predictions"], summary["model_fps"] or 0, summary["wall_seconds"],
                summary["frames_per_second"], written)  # fmt: skip


def run_demo(cfg, settings: DemoSettings, source: FrameSource | None = None) -> dict[str, Any]:
    """Runs the demo on a config (the checkpoint's) and settings; returns the run summary.

    Args:
        cfg: the checkpoint's config.
        settings: input, outputs, device, ...
        source: frames to classify instead of the settings' video or camera (closed here).

    Raises (before any frame is classified, one line each): ``ConfigError`` (settings, config), ``InputError``
    (input), ``CheckpointError`` (weights that do not fit the config), ``ClassNamesError`` (label file).
    """
    check_settings(settings, need_input=source is None)
    source = source or open_input(settings)
    threads = torch.get_num_threads()
    try:
        device = set_model_threads(torch.device(settings.device))
        predictor = build_predictor(cfg, settings.checkpoint, settings.device)
        return _run(cfg, settings, source, predictor, device)
    finally:
        source.close()
        torch.set_num_threads(threads)


def set_model_threads(device: torch.device) -> str:
    """On the CPU the model gets every core but one (torch threads), which decoding and encoding use: more threads
    than free cores make each parallel kernel wait for a descheduled thread (measured on a busy 2-core machine:
    the tiny toy model took 71 ms a clip with 2 threads, 5 ms with 1). Returns the device's description."""
    if device.type != "cpu":
        return str(device)
    threads = max(1, cpu_cores() - 1)
    torch.set_num_threads(threads)
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def _run(cfg, settings: DemoSettings, source: FrameSource, predictor: Predictor, device: str) -> dict[str, Any]:
    fps = _source_fps(source, predictor)
    window = predictor.window(fps)
    stride = None if source.live else settings.stride or max(1, window - settings.buffer_size)
    name = settings.input_name or source.name
    info = {"input": name, "live": source.live, "fps": fps, "height": source.height,
            "width": source.width, "checkpoint": settings.checkpoint, "device": device,
            "clip": {"num_frames": cfg.DATA.NUM_FRAMES, "sampling_rate": cfg.DATA.SAMPLING_RATE,
                     "target_fps": cfg.DATA.TARGET_FPS, "crop_size": cfg.DATA.TEST_CROP_SIZE, "window": window}}  # fmt: skip
    video_fps = settings.output_fps if settings.output_fps > 0 else fps
    outputs = DemoOutputs(settings.output, settings.timeline, _display(settings), fps, source.height, source.width,
                          info, video_fps)  # fmt: skip
    logger.info("%s: %dx%d at %.3g fps; clips of %d frames every %s on %s", name, source.width,
                source.height, fps, window, stride or "newest clip", device)  # fmt: skip
    state, started = RunState(), time.perf_counter()
    reader = FrameReader(source, settings.stall_seconds)
    try:
        with reader:
            if source.live:
                run_live(reader, predictor, outputs, fps, state)
            else:
                run_file(reader, predictor, outputs, fps, stride, state)
    except KeyboardInterrupt:
        state.stopped_by_user = True
        logger.warning("interrupted: finishing the output files")
    finally:
        first = 0
        for last, prediction in state.predictions:  # each prediction describes the frames since the previous one
            outputs.segment(first, last, prediction)
            first = last + 1
        summary = _summary(state, reader, fps, stride, started)
        outputs.close(summary)
    _report(summary, source, settings)
    return summary
