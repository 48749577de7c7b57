"""Small synthetic videos whose frames carry their own index, written with PyAV.

Every frame shows its index as a coarse binary code: a grid of 12 cells (4 wide x 3 high on landscape pictures,
3 x 4 on portrait ones), each dark or bright, over a colour tint and gradient that change from frame to frame.
The cells are large enough to survive lossy compression at any size down to 16x12, so ``read_index`` recovers the
index from a decoded frame; a rotated, mirrored or garbled frame reads as another index or fails the code's two
check cells (ValueError). Pixels also differ from frame to frame, so comparing arrays catches off-by-one frames.

Used by the decoder tests and by any test that needs videos with known content.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 10  # frame indices 0..1023
MAX_FRAMES = 1 << INDEX_BITS
_DARK, _BRIGHT = 45, 210
_CONTAINER_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def _grid(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the code grid for an upright picture of this size."""
    return (3, 4) if width >= height else (4, 3)


def _code_bits(index: int) -> list[int]:
    """12 cell values: 10 index bits (LSB first), their parity, and a marker equal to NOT bit 0."""
    bits = [(index >> b) & 1 for b in range(INDEX_BITS)]
    return bits + [sum(bits) & 1, 1 - bits[0]]


def make_frame(index: int, height: int, width: int) -> np.ndarray:
    """The upright RGB picture (height, width, 3) uint8 for frame ``index``."""
    if not 0 <= index < MAX_FRAMES:
        raise ValueError(f"frame index {index} outside 0..{MAX_FRAMES - 1}")
    rows, cols = _grid(height, width)
    cells = np.array(_code_bits(index), dtype=np.float32).reshape(rows, cols)
    row_of = np.minimum(np.arange(height) * rows // height, rows - 1)
    col_of = np.minimum(np.arange(width) * cols // width, cols - 1)
    luma = _DARK + (_BRIGHT - _DARK) * cells[row_of][:, col_of]  # (H, W)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    gradient = 18.0 * np.sin(2 * np.pi * (xx + 0.5 * yy + 0.07 * index))  # frame-dependent background
    tint = 22.0 * np.sin(np.array([0.7, 1.3, 2.1]) * index + np.array([0.0, 1.0, 2.0]))  # frame-dependent colour
    rgb = luma[..., None] + gradient[..., None] + tint
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def read_index(frame_rgb: np.ndarray) -> int:
    """The index coded in an upright decoded frame (H, W, 3) uint8 (numpy array or torch tensor).

    Raises:
        ValueError: when the cells do not form a valid code (wrong orientation, garbage, mixed frames).
    """
    frame = np.asarray(frame_rgb, dtype=np.float32)
    height, width = frame.shape[:2]
    rows, cols = _grid(height, width)
    gray = frame.mean(axis=2)
    bits = []
    for r in range(rows):
        for c in range(cols):
            y0, y1 = (r * height) // rows, ((r + 1) * height) // rows
            x0, x1 = (c * width) // cols, ((c + 1) * width) // cols
            dy, dx = (y1 - y0) // 4, (x1 - x0) // 4  # centre half of the cell, away from blurred edges
            bits.append(int(gray[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > (_DARK + _BRIGHT) / 2))
    index = sum(bit << b for b, bit in enumerate(bits[:INDEX_BITS]))
    if bits != _code_bits(index):
        raise ValueError(f"frame carries no valid index code (cells {bits})")
    return index


def _encoder_options(codec: str, gop: int, bframes: int, open_gop: bool) -> dict[str, str]:
    if codec == "libx264":
        return {
            "preset": "veryfast",
            "crf": "16",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:open-gop={int(open_gop)}",
        }
    if codec == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0", "lag-in-frames": "0"}
    return {"qscale": "3"}


def _add_video_stream(container, codec, size, fps, gop, bframes, open_gop, vfr_pts):
    height, width = size
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000),
                                  options=_encoder_options(codec, gop, bframes, open_gop))
    stream.width, stream.height = width, height
    odd = height % 2 or width % 2
    stream.pix_fmt = "yuv444p" if codec == "libx264" and odd else "yuv420p"  # libx264 refuses odd 4:2:0
    stream.codec_context.gop_size = gop
    if codec == "mpeg4":
        stream.codec_context.max_b_frames = bframes
    if vfr_pts is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
    return stream


def write_video(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] = (48, 64),
    fps: float = 25.0,
    codec: str | None = None,
    gop: int = 12,
    bframes: int = 0,
    open_gop: bool = False,
    vfr_pts: Sequence[int] | None = None,
    rotate: int | None = None,
    faststart: bool = False,
) -> Path:
    """Write a video whose frame i shows ``make_frame(i, ...)`` (upright) and return its path.

    Args:
        path: output file; the container follows the suffix (.mp4, .mov, .mkv, .webm, .avi).
        num_frames: number of frames (at most MAX_FRAMES).
        size: (height, width) of the coded (stored) picture; odd sizes work (libx264 then uses yuv444p).
        fps: nominal frame rate.
        codec: "libx264", "libvpx-vp9" or "mpeg4"; None picks by container (mp4/mov/mkv: x264, webm: VP9,
            avi: mpeg4).
        gop: keyframe interval (scene-cut keyframes are off, so it is exact for libx264).
        bframes: maximum consecutive B-frames (libx264 and mpeg4; VP9 has none).
        open_gop: libx264 only: later keyframes are non-IDR I-frames whose leading B-frames reference the previous
            group (frames shown before the keyframe but decoded after it).
        vfr_pts: per-frame presentation times in milliseconds (strictly increasing) for a variable frame rate.
        rotate: display rotation like a phone's "rotate" tag: the upright picture is the stored one turned this
            many degrees clockwise (90, 180, 270). Upright frames then have size (width, height) for 90/270.
        faststart: mp4 only: put the index (moov) before the frame data, as streaming-ready files do.
    """
    path = Path(path)
    codec = codec or _CONTAINER_CODECS[path.suffix.lower()]
    if vfr_pts is not None and len(vfr_pts) != num_frames:
        raise ValueError(f"vfr_pts has {len(vfr_pts)} entries for {num_frames} frames")
    rotate = (rotate or 0) % 360
    if rotate % 90:
        raise ValueError(f"rotate must be a multiple of 90, got {rotate}")
    options = {"movflags": "faststart"} if faststart else {}
    height, width = size
    upright_hw = (width, height) if rotate in (90, 270) else (height, width)
    with av.open(str(path), "w", options=options) as container:
        stream = _add_video_stream(container, codec, size, fps, gop, bframes, open_gop, vfr_pts)
        if rotate:
            stream.set_display_rotation(-rotate)  # the display matrix counts counter-clockwise
        container.start_encoding()  # writes the header even when num_frames == 0
        for i in range(num_frames):
            stored = np.ascontiguousarray(np.rot90(make_frame(i, *upright_hw), k=rotate // 90))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if vfr_pts is not None:
                frame.pts, frame.time_base = int(vfr_pts[i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def drop_leading_packets(source: str | Path, target: str | Path, count: int) -> Path:
    """Stream-copy ``source`` without its first ``count`` video packets (decode order): a file that starts mid-GOP,
    as a stream copy cut at a non-keyframe does. The frames before the next keyframe cannot be decoded."""
    target = Path(target)
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        copy = writer.add_stream_from_template(stream)
        for k, packet in enumerate(reader.demux(stream)):
            if packet.size and k >= count:
                packet.stream = copy
                writer.mux(packet)
    return target


def write_audio_only(path: str | Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """Write a file with one audio stream and no video (.mp4 with AAC, .mkv/.webm with Opus/Vorbis...)."""
    path = Path(path)
    codec = {".mp4": "aac", ".m4a": "aac", ".webm": "libopus", ".mkv": "libopus"}.get(path.suffix.lower(), "aac")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else rate)
        samples = int(seconds * stream.rate)
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / stream.rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
        frame.rate = stream.rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all_pyav(path: str | Path, upright: bool = True) -> list[np.ndarray]:
    """Every frame of the first video stream, decoded sequentially by PyAV (the reference for decoder tests).

    Packets flagged corrupt (the partial one where a file was cut) are skipped, as a decoder reading the file
    from the start would lose them; with ``upright`` the display rotation is applied (``np.rot90``).
    """
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for packet in container.demux(stream):
            if packet.is_corrupt:
                continue
            try:
                decoded = stream.decode(packet)
            except av.error.InvalidDataError:
                continue
            for frame in decoded:
                array = frame.to_ndarray(format="rgb24", threads=1)
                turns = round((frame.rotation or 0) / 90) % 4 if upright else 0
                frames.append(np.ascontiguousarray(np.rot90(array, turns)))
    return frames
