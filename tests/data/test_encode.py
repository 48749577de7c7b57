"""The one video writer: frame rate kept, odd sizes padded, decoded frames re-encoded, byte-identical reruns."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mvit_video.data import open_video
from mvit_video.data.encode import VideoWriter, write_video
from mvit_video.data.toy import plan_toy_dataset, render_frames


@pytest.mark.parametrize("fps", [30000 / 1001, 25.0, 12.5])
def test_writer_keeps_rate_and_pads_odd_sizes_by_one_pixel(tmp_path, fps):
    frames = [np.full((45, 63, 3), 10 * i, dtype=np.uint8) for i in range(7)]
    frames[0][:, -1] = 250  # the last column is copied into the padding
    writer = VideoWriter(str(tmp_path / "out.mp4"), fps, 45, 63)
    for frame in frames:
        writer.write(frame)
    writer.close()
    writer.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == Fraction(fps).limit_denominator(1001)
    with open_video(tmp_path / "out.mp4") as out:
        decoded = out.get_frames(range(out.num_frames)).numpy().astype(int)
    assert decoded.shape == (7, 46, 64, 3)
    assert np.abs(decoded[3, :45, :63] - 30).max() <= 3 and decoded[0, :, -2:].mean() > 200


def test_same_frames_give_the_same_bytes(tmp_path):
    """x264 with one thread and no macroblock tree: 18 toy videos written twice are byte-identical (with x264's
    default threads, 2 of these 18 differed on a second write)."""
    for spec in plan_toy_dataset(num_per_class=3, seed=0)["train"]:
        paths = [tmp_path / f"{i}.mp4" for i in range(2)]
        for path in paths:
            assert write_video(path, render_frames(spec), spec.fps) == spec.num_frames
        assert paths[0].read_bytes() == paths[1].read_bytes(), spec.path


def test_decoded_frames_are_resized_and_keyframes_follow_gop(tmp_path):
    source = tmp_path / "src.mp4"
    write_video(source, [np.full((48, 64, 3), 8 * i, dtype=np.uint8) for i in range(12)], 25)
    out = tmp_path / "small.mp4"
    with av.open(str(source)) as container, VideoWriter(out, 25, 24, 32, gop=4) as writer:
        for frame in container.decode(video=0):
            writer.write(frame)
    with av.open(str(out)) as container:
        keyframes = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    assert keyframes == [True, False, False, False] * 3
    with open_video(out) as video:
        frames = video.get_frames(range(video.num_frames)).numpy().astype(int)
    assert frames.shape == (12, 24, 32, 3) and np.abs(frames[5] - 40).max() <= 3
