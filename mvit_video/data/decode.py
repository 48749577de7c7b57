"""Video decoding behind one reader: exact frames by index from decord, PyAV or torchcodec.

Frames are numbered in decode order: the order in which a decoder outputs them when it reads the file from the
start (presentation order for well-formed files). ``get_frames([i, ...])`` returns exactly those frames with every
backend; all three convert YUV to RGB with FFmpeg's swscale and return identical pixels at the stored size.

Opening a file always starts with a PyAV probe: it demuxes the video packets (no decoding except the first frame),
so every backend sees the same frame count, rotation, fps and duration, and bad files fail with
``VideoDecodeError`` before decord or torchcodec touch them (those raise bare errors or print FFmpeg logs). It costs
about 3 ms for a 10 s 340x256 clip (decord's own open: 1.5 ms; decoding a 16x4 training clip: 30-50 ms).

Decisions:
    * ``num_frames`` counts the frames that can be decoded, computed at open from the packets: MKV/WebM carry no
      frame count (``stream.frames == 0``), and a truncated file lists frames whose data is gone (the partial packet
      at the cut is flagged corrupt by the demuxer and is not counted; nor are packets an edit list discards, or
      packets before the first keyframe of a stream cut mid-GOP, which decoders drop). A frame that still fails to
      decode raises ``VideoDecodeError(path, "truncated or corrupt: ...")`` from ``get_frames``.
    * Rotation (display matrix / phone "rotate" tag): frames come back upright in every backend, and ``height`` /
      ``width`` are those of the returned frames. decord2 and torchcodec rotate themselves (decord2 mislabels the
      rows of frames narrower than 192 pixels, un-padded here); PyAV rotates here; dmlc decord 0.x ignores
      rotation, so rotated files go to PyAV with it. Mirroring in the display matrix is ignored.
    * Files a backend gets wrong or cannot read go to the PyAV decoder, with a ``RuntimeWarning``
      (``VideoReader.fallback_reason`` says why): AVI files with B-frames for decord and torchcodec (AVI stores no
      presentation times; both return wrong frames), open-GOP files for decord (it returns the next frame around
      non-IDR keyframes), and any file where the backend's frame count differs from the probe's (truncated MP4s)
      or where it raises while reading.
    * ``short_side`` resizes at decode time with each library's own scaler (swscale bicubic for decord and PyAV,
      antialiased bilinear for torchcodec), so resized pixels differ slightly between backends.
"""

from __future__ import annotations

import bisect
import importlib
import math
import operator
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Self

import av
import numpy as np
import torch

SUPPORTED_BACKENDS = ("decord", "pyav", "torchcodec")
DEFAULT_BACKEND = "pyav"  # fastest exact reader in docs/benchmarks.md
_UNTIMED = "its frame timestamps are missing, repeated or made up (AVI with B-frames): only counting frames is exact"
_FIRST_FRAME_PACKETS = 256  # the probe gives up finding a decodable first frame after this many packets


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or read.

    Attributes:
        path: the file.
        reason: short text: "missing file", "empty file", "not a file", "unreadable: ...", "no video stream",
            "zero frames ...", "corrupt: <detail>" or "truncated or corrupt: <detail>".
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode video {path}: {reason}")
        self.path = path
        self.reason = reason


class _LostSync(Exception):
    """Decoded timestamps do not match the probe's: frames must be counted from the start instead."""


class _BackendFailure(Exception):
    """decord or torchcodec cannot read this file (exactly); the PyAV decoder takes over."""


@dataclass(frozen=True)
class VideoProbe:
    """What a demux pass over a file tells (see ``probe_video``).

    Attributes:
        num_frames: decodable frames (complete, non-discarded video packets).
        frame_pts: their presentation timestamps, sorted; None when timestamps cannot identify frames (missing,
            repeated, or made up by the AVI demuxer), in which case frames are found by counting from the start.
        keyframe_pts: timestamps of the keyframes among them (empty when frame_pts is None).
        time_base: unit of the timestamps.
        fps: average frame rate.
        duration: seconds.
        coded_hw: (height, width) of the stored pictures.
        quarter_turns: counter-clockwise quarter turns (``np.rot90``'s k) that make stored pictures upright.
        open_gop: frames shown before a keyframe are decoded after it (leading B-frames of open GOPs).
    """

    num_frames: int
    frame_pts: tuple[int, ...] | None
    keyframe_pts: tuple[int, ...]
    time_base: Fraction
    fps: float
    duration: float
    coded_hw: tuple[int, int]
    quarter_turns: int
    open_gop: bool = False

    @property
    def upright_hw(self) -> tuple[int, int]:
        """(height, width) of upright frames."""
        height, width = self.coded_hw
        return (width, height) if self.quarter_turns % 2 else (height, width)


def _ffmpeg_detail(error: Exception) -> str:
    """One short line from an av / decord / torchcodec exception."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[-1][:160]


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "missing file")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file")


def _open_container(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.PermissionError as error:
        raise VideoDecodeError(path, "unreadable: permission denied") from error
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"corrupt: {_ffmpeg_detail(error)}") from error


def _first_decoded(stream, packet) -> av.VideoFrame | None:
    """The first frame the decoder outputs for ``packet`` (None: flush), or None (errors count as none)."""
    try:
        frames = stream.decode(packet)
    except av.error.FFmpegError:
        return None
    return frames[0] if frames else None


def _scan_packets(container, stream) -> tuple[list, av.VideoFrame | None, int]:
    """Packets of decodable frames as (pts, is_keyframe, duration), the first decoded frame, and skipped packets.

    Not counted: partial packets (a cut file), packets an edit list discards, and frames before the first keyframe
    in decode or presentation order (a stream copy cut mid-GOP), which decoders drop for lack of references.
    """
    packets, leading, first, skipped, first_key_pts = [], [], None, 0, None
    demuxed = container.demux(stream)
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            break
        except av.error.FFmpegError:  # unreadable tail: keep what came before
            skipped += 1
            break
        if packet.size == 0:
            continue
        if packet.is_corrupt:  # the partial packet where a file was cut
            skipped += 1
            continue
        if packet.is_keyframe and first_key_pts is None:
            first_key_pts = packet.pts if packet.pts is not None else -math.inf
        if not packet.is_discard:  # discarded (edit list) packets are decoded but output no frame
            keyed = first_key_pts is not None and (packet.pts is None or packet.pts >= first_key_pts)
            (packets if keyed else leading).append((packet.pts, packet.is_keyframe, packet.duration or 0))
        if first is None and len(packets) + len(leading) <= _FIRST_FRAME_PACKETS:
            first = _first_decoded(stream, packet)
    if not packets:  # no keyframe flags at all: count every packet
        packets, leading = leading, []
    if first is None and packets:
        first = _first_decoded(stream, None)
    return packets, first, skipped + len(leading)


def _trusted_pts(container, stream, pts: list) -> tuple[int, ...] | None:
    """Sorted frame timestamps, or None where they cannot identify frames: missing or repeated, or made up by
    the AVI demuxer (AVI stores no presentation times; with B-frames decoded frames carry the wrong ones)."""
    if None in pts or len(set(pts)) != len(pts):
        return None
    if container.format.name == "avi" and stream.codec_context.has_b_frames:
        return None
    return tuple(sorted(pts))


def _has_open_gop(packets: list) -> bool:
    """Whether a packet after a keyframe (in decode order) is shown before it: a leading frame of an open GOP."""
    keyframe_pts = None
    for pts, is_keyframe, _ in packets:
        if is_keyframe:
            keyframe_pts = pts
        elif keyframe_pts is not None and pts < keyframe_pts:
            return True
    return False


def _timing(stream, container, packets, pts_sorted) -> tuple[float, float]:
    """(fps, duration) from the timestamps, falling back to container metadata."""
    count, duration = len(packets), 0.0
    if pts_sorted is not None and count > 1:
        last = max(packets, key=lambda p: p[0])[2] or (pts_sorted[-1] - pts_sorted[0]) / (count - 1)
        duration = float((pts_sorted[-1] - pts_sorted[0] + last) * stream.time_base)
    elif stream.duration:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else (count / duration if duration > 0 else 0.0)
    if duration <= 0 and fps > 0:
        duration = count / fps
    return fps, duration


def probe_video(path: str | os.PathLike) -> VideoProbe:
    """Demux a file's first video stream (decoding only its first frame) and describe it.

    Raises:
        VideoDecodeError: missing / empty / unreadable file, no video stream, or no decodable frame.
    """
    path = os.fspath(path)
    _check_file(path)
    with _open_container(path) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        packets, first, skipped = _scan_packets(container, stream)
        if not packets:
            raise VideoDecodeError(path, "zero frames" + (f" ({skipped} unreadable packets)" if skipped else ""))
        if first is None:
            raise VideoDecodeError(path, f"zero frames (none of {len(packets)} packets decodes)")
        pts_sorted = _trusted_pts(container, stream, [p[0] for p in packets])
        keyframes = tuple(sorted(p[0] for p in packets if p[1])) if pts_sorted else ()
        fps, duration = _timing(stream, container, packets, pts_sorted)
        return VideoProbe(
            num_frames=len(packets),
            frame_pts=pts_sorted,
            keyframe_pts=keyframes,
            time_base=stream.time_base or Fraction(1, 1),
            fps=fps,
            duration=duration,
            coded_hw=(first.height, first.width),
            quarter_turns=round((first.rotation or 0) / 90) % 4,
            open_gop=pts_sorted is not None and _has_open_gop(packets),
        )


class _PyAVDecoder:
    """Exact frames with PyAV: seek to the keyframe at or before a frame, then identify frames by timestamp.

    Every decoded frame's timestamp is checked against the probe's sorted list; on any mismatch (AVI files with
    B-frames carry made-up timestamps) the decoder stops seeking and counts frames from the start instead.
    """

    def __init__(self, path: str, probe: VideoProbe, num_threads: int, out_hw: tuple[int, int]):
        self._path, self._num_threads = path, num_threads
        self._turns = probe.quarter_turns
        self._coded_out = (out_hw[1], out_hw[0]) if self._turns % 2 else out_hw
        self._pts = probe.frame_pts
        self._keys = [0]
        if self._pts is not None:
            index_of = {p: i for i, p in enumerate(self._pts)}
            self._keys = sorted({0} | {index_of[p] for p in probe.keyframe_pts})
        self._container = self._stream = self._frames = None
        self._pos = -1  # index of the last frame self._frames produced
        self.decode_errors = 0

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = self._frames = None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self._to_rgb(self._frame_at(t)) for t in indices])

    def _frame_at(self, index: int) -> av.VideoFrame:
        try:
            return self._next_frame(index)
        except _LostSync:
            self._pts, self._keys, self._frames = None, [0], None
            return self._next_frame(index)

    def _next_frame(self, index: int) -> av.VideoFrame:
        start = self._keys[bisect.bisect_right(self._keys, index) - 1]
        if self._frames is None or index <= self._pos or start > self._pos + 1:
            self._restart(start)
        for position, frame in self._frames:
            self._pos = position
            if position == index:
                return frame
        self._frames = None
        raise VideoDecodeError(self._path, f"truncated or corrupt: frame {index} does not decode (decoding "
                                           f"ended after frame {self._pos}, {self.decode_errors} decode errors)")

    def _restart(self, start: int) -> None:
        """Position the decoder so that the next frame out is ``start`` (a keyframe, or 0)."""
        if start == 0 or self._container is None:
            self._reopen()
        if start > 0:
            try:
                self._container.seek(self._pts[start], stream=self._stream, backward=True)
            except av.error.FFmpegError:
                self._reopen()
                start = 0
        self._pos = start - 1
        self._frames = self._timed_frames(start) if self._pts is not None else enumerate(self._decoded())

    def _reopen(self) -> None:
        self.close()
        self._container = _open_container(self._path)
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = self._num_threads
        self._stream.thread_type = "SLICE" if self._num_threads == 1 else "AUTO"

    def _timed_frames(self, start: int) -> Iterator[tuple[int, av.VideoFrame]]:
        index = start
        for frame in self._decoded():
            if index == start and frame.pts is not None and frame.pts < self._pts[start]:
                continue  # before the keyframe: leading frames of an open GOP, or an earlier seek point
            if index >= len(self._pts) or frame.pts != self._pts[index]:
                raise _LostSync()
            yield index, frame
            index += 1

    def _decoded(self) -> Iterator[av.VideoFrame]:
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:  # unreadable tail: flush what the decoder holds
                self.decode_errors += 1
                packet = None
            if packet is not None and packet.is_corrupt:
                self.decode_errors += 1
                continue
            try:
                yield from self._stream.decode(packet)
            except av.error.FFmpegError:
                self.decode_errors += 1
            if packet is None:
                return

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        height, width = self._coded_out
        # PyAV's swscale defaults to automatic threads: ~10x slower than one thread for a single frame
        options = {"format": "rgb24", "threads": self._num_threads}
        if (frame.height, frame.width) != (height, width):
            options.update(width=width, height=height, interpolation="BICUBIC")
        array = frame.to_ndarray(**options)
        return np.rot90(array, self._turns) if self._turns else array


def _decord_pads_rows(width: int) -> bool:
    """Whether decord2 3.4 mislabels RGB frames of this width (rows padded to 64 pixels, a multiple of width)."""
    padded = -(-width // 64) * 64
    return padded != width and (3 * padded) % width == 0


class _DecordDecoder:
    """decord.VideoReader with its index checked against the probe and its padded-row bug worked around."""

    def __init__(self, decord, path: str, probe: VideoProbe, num_threads: int, out_hw: tuple[int, int]):
        if probe.frame_pts is None:
            raise _BackendFailure(_UNTIMED)
        if probe.open_gop:  # measured: decord returns the next frame for the ones around such keyframes
            raise _BackendFailure("decord misnumbers frames after seeking in open-GOP files")
        if probe.quarter_turns and int(decord.__version__.split(".")[0]) < 1:
            raise _BackendFailure(f"decord {decord.__version__} ignores rotation (decord2 applies it)")
        self._decord, self._out_hw = decord, out_hw
        size = {} if out_hw == probe.upright_hw else {"height": out_hw[0], "width": out_hw[1]}
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads, **size)
        except (decord.DECORDError, RuntimeError) as error:
            raise _BackendFailure(f"decord cannot open it ({_ffmpeg_detail(error)})") from error
        if len(self._reader) != probe.num_frames:
            raise _BackendFailure(f"decord counts {len(self._reader)} frames where {probe.num_frames} decode")
        self._padded_rows = _decord_pads_rows(out_hw[1])

    def close(self) -> None:
        self._reader = None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        try:
            frames = self._read(list(indices))
        except self._decord.DECORDError as error:
            raise _BackendFailure(f"decord failed ({_ffmpeg_detail(error)})") from error
        if frames.shape != (len(indices), *self._out_hw, 3):
            raise _BackendFailure(f"decord returned shape {tuple(frames.shape)}")
        return frames

    def _read(self, indices: list[int]) -> np.ndarray:
        if not self._padded_rows:
            try:
                return self._reader.get_batch(indices).asnumpy()
            except self._decord.DECORDError as error:
                if "size must exactly match" not in str(error):
                    raise
                self._padded_rows = True
        return np.stack([self._unpad(self._reader[i].asnumpy()) for i in indices])

    def _unpad(self, frame: np.ndarray) -> np.ndarray:
        # (H, padded_W * 3 / C, C) mislabelled buffer -> (H, W, 3)
        height, width = self._out_hw
        rows = frame.reshape(height, -1)
        if rows.shape[1] < 3 * width:
            raise _BackendFailure(f"decord returned a frame of shape {frame.shape}")
        return rows[:, : 3 * width].reshape(height, width, 3)


class _TorchCodecDecoder:
    """torchcodec.decoders.VideoDecoder in exact seek mode, frames as (N, H, W, 3)."""

    def __init__(self, torchcodec, path: str, probe: VideoProbe, num_threads: int, out_hw: tuple[int, int]):
        from torchcodec.decoders import VideoDecoder

        if probe.frame_pts is None:
            raise _BackendFailure(_UNTIMED)
        transforms = None
        if out_hw != probe.upright_hw:
            transforms = [importlib.import_module("torchcodec.transforms").Resize(size=out_hw)]
        try:
            self._decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC",
                                         num_ffmpeg_threads=num_threads, transforms=transforms)
        except (RuntimeError, ValueError) as error:
            raise _BackendFailure(f"torchcodec cannot open it ({_ffmpeg_detail(error)})") from error
        metadata = self._decoder.metadata
        if metadata.num_frames != probe.num_frames:
            raise _BackendFailure(f"torchcodec counts {metadata.num_frames} frames where {probe.num_frames} decode")
        # torchcodec rotates frames itself from the version whose metadata reports rotation
        self._turns = 0 if hasattr(metadata, "rotation") else probe.quarter_turns
        self._out_hw = out_hw

    def close(self) -> None:
        self._decoder = None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        try:
            frames = self._decoder.get_frames_at(list(indices)).data.numpy()
        except (RuntimeError, IndexError, ValueError) as error:
            raise _BackendFailure(f"torchcodec failed ({_ffmpeg_detail(error)})") from error
        if self._turns:
            frames = np.rot90(frames, self._turns, axes=(1, 2))
        if frames.shape != (len(indices), *self._out_hw, 3):
            raise _BackendFailure(f"torchcodec returned shape {tuple(frames.shape)}")
        return frames


class VideoReader:
    """Exact random access to the frames of one video; returned by ``open_video``. A context manager.

    Attributes:
        path: the file.
        backend: the backend asked for ("decord", "pyav" or "torchcodec").
        num_frames: frames that can be returned, in decode order.
        fps: average frame rate.
        duration: seconds.
        height, width: of the returned frames (upright, after the optional resize).
        rotation: clockwise degrees applied to the stored pictures to make them upright (0, 90, 180, 270).
        fallback_reason: why the PyAV decoder serves this file instead of ``backend`` (None when it does not).
    """

    def __init__(self, path: str, backend: str, probe: VideoProbe, out_hw: tuple[int, int], decoder,
                 num_threads: int, fallback_reason: str | None = None):
        self.path, self.backend = path, backend
        self.num_frames, self.fps, self.duration = probe.num_frames, probe.fps, probe.duration
        self.height, self.width = out_hw
        self.rotation = (-90 * probe.quarter_turns) % 360
        self.fallback_reason = fallback_reason
        self._probe, self._num_threads, self._decoder = probe, num_threads, decoder

    def __len__(self) -> int:
        return self.num_frames

    @property
    def probe(self) -> VideoProbe:
        """What the opening probe found (timestamps of every decodable frame, coded size, rotation)."""
        return self._probe

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VideoReader({self.path!r}, backend={self.backend!r}, num_frames={self.num_frames}, "
                f"fps={self.fps:.3f}, size={self.height}x{self.width})")

    def close(self) -> None:
        """Release the decoder (idempotent)."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """The frames at these decode-order indices, in the order asked (repeats allowed).

        Args:
            indices: frame indices in ``[0, num_frames)``.

        Returns:
            uint8 tensor (N, H, W, 3), RGB.

        Raises:
            IndexError: an index outside ``[0, num_frames)``.
            VideoDecodeError: a frame that cannot be decoded.
        """
        wanted = [operator.index(i) for i in indices]
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"frame indices {bad[:5]} outside [0, {self.num_frames}) for {self.path}")
        if self._decoder is None:
            raise ValueError(f"VideoReader for {self.path} is closed; open the video again")
        if not wanted:
            return torch.empty((0, self.height, self.width, 3), dtype=torch.uint8)
        unique = sorted(set(wanted))
        frames = self._read_unique(unique)
        if unique != wanted:  # re-expand to the order asked (a copy only when it differs)
            slot = {index: k for k, index in enumerate(unique)}
            frames = frames[[slot[i] for i in wanted]]
        return torch.from_numpy(np.ascontiguousarray(frames))

    def _read_unique(self, unique: list[int]) -> np.ndarray:
        try:
            return self._decoder.read(unique)
        except _BackendFailure as failure:
            self._decoder.close()
            self._decoder = _fall_back_to_pyav(self.path, self._probe, self._num_threads,
                                               (self.height, self.width), str(failure))
            self.fallback_reason = str(failure)
            return self._decoder.read(unique)


def _fall_back_to_pyav(path, probe, num_threads, out_hw, reason: str) -> _PyAVDecoder:
    warnings.warn(f"{path}: {reason}; decoding it with PyAV instead", RuntimeWarning, stacklevel=4)
    return _PyAVDecoder(path, probe, num_threads, out_hw)


def _import_backend(backend: str | None):
    """The library module for a backend name (None for PyAV), checked before any work starts."""
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; supported backends: {', '.join(SUPPORTED_BACKENDS)}")
    if backend == "pyav":
        return None
    try:
        return importlib.import_module(backend)
    except (ImportError, OSError, RuntimeError) as error:  # torchcodec raises RuntimeError when FFmpeg is missing
        package = "decord2" if backend == "decord" else "torchcodec (plus FFmpeg shared libraries)"
        raise ImportError(f"video backend {backend!r} is not installed or cannot load ({_ffmpeg_detail(error)}); "
                          f"pip install {package}, or use backend='pyav'") from error


def _output_size(upright_hw: tuple[int, int], short_side: int | None) -> tuple[int, int]:
    """(height, width) of returned frames: the short side scaled to ``short_side``, aspect kept (rounded down)."""
    height, width = upright_hw
    if short_side is None or short_side == min(height, width):
        return upright_hw
    if height <= width:
        return short_side, max(1, math.floor(width * short_side / height))
    return max(1, math.floor(height * short_side / width)), short_side


def open_video(path: str | os.PathLike, backend: str | None = None, num_threads: int = 1,
               short_side: int | None = None) -> VideoReader:
    """Open a video for exact random frame access.

    Args:
        path: video file (any container FFmpeg reads: mp4, mkv, webm, avi, ...).
        backend: "pyav" (default), "decord" or "torchcodec".
        num_threads: decoder threads (1 inside DataLoader workers; 0 lets the library choose).
        short_side: resize frames at decode time so that their short side has this length (aspect kept).

    Returns:
        A VideoReader (close it, or use it as a context manager).

    Raises:
        ValueError: unknown backend (PySlowFast's "torchvision" included) or bad arguments.
        ImportError: the backend's library is not installed.
        VideoDecodeError: the file cannot be decoded (missing, empty, corrupt, no video, zero frames).
    """
    backend = DEFAULT_BACKEND if backend is None else backend
    module = _import_backend(backend)
    if not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
    if short_side is not None and (not isinstance(short_side, int) or short_side < 1):
        raise ValueError(f"short_side must be a positive int or None, got {short_side!r}")
    path = os.fspath(path)
    probe = probe_video(path)
    out_hw = _output_size(probe.upright_hw, short_side)
    decoder_class = {"decord": _DecordDecoder, "torchcodec": _TorchCodecDecoder}.get(backend)
    if decoder_class is None:
        return VideoReader(path, backend, probe, out_hw, _PyAVDecoder(path, probe, num_threads, out_hw), num_threads)
    try:
        decoder = decoder_class(module, path, probe, num_threads, out_hw)
    except _BackendFailure as failure:
        decoder = _fall_back_to_pyav(path, probe, num_threads, out_hw, str(failure))
        return VideoReader(path, backend, probe, out_hw, decoder, num_threads, fallback_reason=str(failure))
    return VideoReader(path, backend, probe, out_hw, decoder, num_threads)
