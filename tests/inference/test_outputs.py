"""Outputs: H.264 files at the source's rate with even sizes, the JSON timeline, display detection."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from mvit_video.data import open_video
from mvit_video.inference.outputs import Timeline, VideoWriter, display_problem
from mvit_video.inference.predictor import Prediction


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


def test_timeline_json_has_segments_in_seconds(tmp_path):
    timeline = Timeline(str(tmp_path / "t.json"), 25.0, {"input": "v.mp4"})
    timeline.add(0, 49, Prediction((2, 1), ("a", "b"), (0.75, 0.125), 0.2, 5.0))
    timeline.add(50, 59, Prediction((1, 2), ("b", "a"), (0.5, 0.25), 0.1, 6.0))
    timeline.close({"num_frames": 60})
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["input"] == "v.mp4" and data["num_frames"] == 60
    assert [(s["start"], s["end"], s["start_frame"], s["end_frame"]) for s in data["segments"]] == [
        (0.0, 2.0, 0, 49), (2.0, 2.4, 50, 59)]  # fmt: skip
    assert data["segments"][0]["top"] == [{"id": 2, "label": "a", "prob": 0.75}, {"id": 1, "label": "b", "prob": 0.125}]
    assert not (tmp_path / "t.json.tmp").exists()


def test_display_problem_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert display_problem() == "no display ($DISPLAY is not set)"
