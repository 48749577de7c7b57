"""The demo loop: file segments, short / odd-size / rotated videos, the live path (newest clip, stall, read errors)."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from mvit_video.config import ConfigError, load_config
from mvit_video.data import open_video
from mvit_video.data.toy import TOY_CLASSES
from mvit_video.data.toy import write_video as write_toy_video
from mvit_video.inference.demo import DemoSettings, NewestWindow, classify_newest, run_demo, settings_from_cfg
from mvit_video.inference.predictor import Prediction
from mvit_video.inference.sources import LiveSource
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG
from tests.data.synthetic_videos import write_video
from tests.inference.fake_camera import ListSource, gray_level, numbered_frames, y4m_camera


def tiny_cfg(*opts: str):
    return load_config(TOY_CONFIG, [*TINY_CLIP, *opts])


def demo(tmp_path, checkpoint, video: str = "", source=None, *opts: str, **settings) -> tuple[dict, dict]:
    """Runs the demo writing tmp_path/out.mp4 and out.json, without a window unless asked; returns (summary,
    timeline)."""
    settings.setdefault("display", False)
    cfg = tiny_cfg(*opts)
    settings = dataclasses.replace(settings_from_cfg(cfg, str(checkpoint)), video=video,
                                   output=str(tmp_path / "out.mp4"), timeline=str(tmp_path / "out.json"), **settings)
    summary = run_demo(cfg, settings, source)
    return summary, json.loads((tmp_path / "out.json").read_text())


def assert_tiles(timeline: dict, num_frames: int) -> None:
    """Segments follow each other without gap or overlap from frame 0 to the last frame."""
    starts = [s["start_frame"] for s in timeline["segments"]]
    ends = [s["end_frame"] for s in timeline["segments"]]
    assert starts[0] == 0 and ends[-1] == num_frames - 1
    assert starts[1:] == [e + 1 for e in ends[:-1]] and all(e >= s for s, e in zip(starts, ends))


def test_video_shorter_than_one_clip_gets_one_padded_prediction(tmp_path, tiny_checkpoint):
    video = write_video(tmp_path / "short.mp4", 5, size=(48, 64), fps=30)
    summary, timeline = demo(tmp_path, tiny_checkpoint, str(video))
    assert (summary["num_frames"], summary["num_predictions"], timeline["clip"]["window"]) == (5, 1, 16)
    assert_tiles(timeline, 5)
    assert timeline["segments"][0]["end"] == pytest.approx(5 / 30, abs=1e-6)
    with open_video(tmp_path / "out.mp4") as out:
        assert (out.num_frames, out.height, out.width) == (5, 48, 64)


@pytest.mark.parametrize("size,rotate,expected", [((45, 63), None, (46, 64)), ((48, 64), 90, (64, 48))])
def test_odd_and_rotated_videos_give_even_upright_outputs(tmp_path, tiny_checkpoint, size, rotate, expected):
    video = write_video(tmp_path / "in.mp4", 20, size=size, fps=25, rotate=rotate)
    _, timeline = demo(tmp_path, tiny_checkpoint, str(video), None, "DEMO.STRIDE", "8", "DEMO.TOPK", "1")
    assert [s["end_frame"] for s in timeline["segments"]] == [7, 15, 19]
    with open_video(video) as source, open_video(tmp_path / "out.mp4") as out:
        assert (out.num_frames, out.fps, (out.height, out.width)) == (20, 25.0, expected)
        original, annotated = source.get_frames([12])[0].numpy(), out.get_frames([12])[0].numpy()
    # below the text box the picture is the input's, upright (compression noise only)
    h, w = original.shape[:2]
    diff = np.abs(original[h * 3 // 4 :].astype(int) - annotated[h * 3 // 4 : h, :w].astype(int))
    assert diff.mean() < 4


def test_read_error_mid_file_finishes_with_the_frames_read(tmp_path, tiny_checkpoint):
    source = ListSource(numbered_frames(30, (32, 40)), fps=15, fail_after=21)
    summary, timeline = demo(tmp_path, tiny_checkpoint, "", source)
    assert summary["read_error"] == "lost the stream at frame 21" and summary["num_frames"] == 21
    assert_tiles(timeline, 21)
    with open_video(tmp_path / "out.mp4") as out:
        assert out.num_frames == 21


def test_ctrl_c_finishes_playable_outputs(tmp_path, tiny_checkpoint, monkeypatch):
    written = []

    def frame_then_interrupt(self, frame, prediction):
        if len(written) == 11:
            raise KeyboardInterrupt
        written.append(frame)
        self.writer.write(frame)
        return True

    monkeypatch.setattr("mvit_video.inference.outputs.DemoOutputs.frame", frame_then_interrupt)
    summary, timeline = demo(tmp_path, tiny_checkpoint, "", ListSource(numbered_frames(40), fps=15), "DEMO.STRIDE", "4")
    assert summary["stopped_by_user"] and summary["num_frames"] == 12
    assert_tiles(timeline, 12)
    with open_video(tmp_path / "out.mp4") as out:
        assert out.num_frames == 11


FAKE_PREDICTION = Prediction((0,), ("class 0",), (1.0,), 0.01, 100.0)


def test_live_clips_are_always_the_newest():
    """Frames that arrive while the model is busy move the next clip forward; the clips in between are skipped."""
    window, seen = NewestWindow(4), []
    for frame in numbered_frames(10):
        window.push(frame)

    def predict(frames):
        seen.append([int(f[0, 0, 0]) for f in frames])
        if len(seen) < 3:
            for frame in numbered_frames(10 + 7 * len(seen))[-7:]:  # 7 frames arrive during this prediction
                window.push(frame)
        else:
            window.close()
        return FAKE_PREDICTION

    published = []
    classify_newest(window, predict, lambda last, prediction: published.append(last))
    assert seen == [[6, 7, 8, 9], [13, 14, 15, 16], [20, 21, 22, 23]]
    assert published == [9, 16, 23]


def test_live_stream_that_stalls_finishes_with_complete_outputs(tmp_path, tiny_checkpoint):
    with y4m_camera(tmp_path / "camera.y4m", num_frames=25, fps=10) as pipe:
        source = LiveSource(str(pipe), "yuv4mpegpipe", name="fake camera")
        summary, timeline = demo(tmp_path, tiny_checkpoint, "", source, "DEMO.TOPK", "1", stall_seconds=2.0)
    assert summary["stalled"] and summary["num_frames"] == 25 and summary["dropped_frames"] == 0
    assert timeline["live"] and timeline["stride"] is None
    assert_tiles(timeline, 25)
    assert all(len(s["top"]) == 1 and 0 < s["top"][0]["prob"] <= 1 for s in timeline["segments"])
    with open_video(tmp_path / "out.mp4") as out:
        assert (out.num_frames, out.fps, out.height, out.width) == (25, 10.0, 48, 64)
        corner = out.get_frames(range(25)).numpy()[:, -4:, -4:, 0].mean(axis=(1, 2))  # below the text box
    expected = [(gray_level(i) - 16) * 255 / 219 for i in range(25)]
    assert np.abs(corner - expected).max() < 4  # every frame, in order


def test_no_display_is_one_warning_and_the_run_goes_on(tmp_path, tiny_checkpoint, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = write_video(tmp_path / "in.mp4", 6, fps=30)
    with caplog.at_level(logging.WARNING):
        summary, _ = demo(tmp_path, tiny_checkpoint, str(video), display=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["no display ($DISPLAY is not set): showing no window, writing the output files only"]
    assert summary["num_frames"] == 6


@pytest.mark.parametrize("settings,message", [
    ({"output": "out.avi"}, "use a .mp4, .mkv, .mov file name"),
    ({"output": None, "timeline": None}, "nothing to write"),
    ({"device": "cuda"}, "CUDA is not available"),
    ({"video": ""}, "no input"),
])  # fmt: skip
def test_settings_that_cannot_work_fail_before_reading(tmp_path, tiny_checkpoint, settings, message):
    import torch

    if settings.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    base = {"checkpoint": str(tiny_checkpoint), "video": "in.mp4", "output": str(tmp_path / "out.mp4")}
    with pytest.raises(ConfigError, match=message):
        run_demo(tiny_cfg(), DemoSettings(**{**base, **settings}))
    assert not (tmp_path / "out.mp4").exists()


def test_segments_of_concatenated_toy_clips_get_their_clips_classes(tmp_path, toy_classifier):
    """Six toy clips of different classes, one after the other in one video: each STRIDE segment is one clip, and
    the timeline's top-1 label of each segment is that clip's class (names from the dataset's classnames.txt)."""
    order = [3, 0, 5, 1, 4, 2]
    video_of = {label: path for path, label in toy_classifier.clips}
    frames, lengths = [], []
    for label in order:
        with open_video(video_of[label]) as reader:
            frames += list(reader.get_frames(range(reader.num_frames)).numpy())
            lengths.append(reader.num_frames)
    assert len(set(lengths)) == 1
    write_toy_video(tmp_path / "six_clips.mp4", frames, fps=15)
    command = [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--cfg", str(toy_classifier.config),
               "--checkpoint", str(toy_classifier.checkpoint), "--input", str(tmp_path / "six_clips.mp4"),
               "--output", str(tmp_path / "out.mp4"), "--stride", str(lengths[0]), "--device", "cpu",
               *toy_classifier.opts, "DATA.PATH_TO_DATA_DIR", str(toy_classifier.data_dir)]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    segments = json.loads((tmp_path / "out.json").read_text())["segments"]
    assert [s["end_frame"] + 1 for s in segments] == [lengths[0] * (k + 1) for k in range(len(order))]
    assert [s["top"][0]["label"] for s in segments] == [TOY_CLASSES[label] for label in order]
