"""Outputs: the JSON timeline and display detection (the video writer: tests/data/test_encode.py)."""

from __future__ import annotations

import json


from mvit_video.inference.outputs import Timeline, display_problem
from mvit_video.inference.predictor import Prediction


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
