"""tools/benchmark_data.py: the table and JSON rows, and the benchmark-material writer."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import pytest

from mvit_video.data.toy import make_toy_dataset
from tests.conftest import ROOT
from tests.data.synthetic_videos import write_video

TOOL = ROOT / "tools" / "benchmark_data.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a benchmark run over decoders and datasets (about 15 s); the tool's errors stay in the default suite
def test_rows_and_json(tmp_path):
    data = tmp_path / "toy"
    make_toy_dataset(data, num_per_class=1, seed=1, val_per_class=1, test_per_class=1)
    out = tmp_path / "bench.json"
    result = _run("--cfg", str(ROOT / "configs/Toy/MVITv2_XS_8x2.yaml"), "--backend", "pyav", "--videos", "3",
                  "--json", str(out), "DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data),
                  "OUTPUT_DIR", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["train decode"]["clips"] == 3 and rows["train item"]["clips"] == 3
    assert rows["test decode, once"]["clips"] == 9  # 3 videos x 3 views (TEST.NUM_ENSEMBLE_VIEWS)
    assert rows["pyslowfast test decode"]["clips"] == 9 and rows["pyslowfast train item"]["backend"] == "pyav"
    assert all(r["clips_per_s"] > 0 for r in rows.values())
    assert "test decode, per view" in result.stdout and "clips/s" in result.stdout.splitlines()[0]


def test_make_videos_with_keyframe_interval(tmp_path):
    source = write_video(tmp_path / "src.mp4", num_frames=20, size=(96, 128), fps=30)
    result = _run("--make-videos", str(tmp_path / "bench"), "--sources", str(source), "--videos", "2", "--gop", "25")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "bench" / "clip_001.mp4")) as container:
        stream = container.streams.video[0]
        keyframes = [i for i, p in enumerate(container.demux(stream)) if p.is_keyframe]
        assert (stream.height, stream.width, stream.frames) == (256, 340, 300)
    assert keyframes[:4] == [0, 25, 50, 75]
    assert (tmp_path / "bench" / "test.csv").read_text().splitlines() == ["clip_000.mp4 0", "clip_001.mp4 0"]


def test_user_mistakes_are_one_line(tmp_path):
    result = _run("--cfg", str(ROOT / "configs/Toy/MVITv2_XS_8x2.yaml"), "DATA.PATH_TO_DATA_DIR", str(tmp_path),
                  "OUTPUT_DIR", str(tmp_path))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: split file not found") and len(result.stderr.strip().splitlines()) == 1
