"""The toy recipe learns: tools/run_net.py trains the toy config from scratch and its multi-view test beats chance.

A scaled-down run of the README's first command (configs/Toy/MVITv2_XS_8x2.yaml): the videos are drawn with the
default parameters at half size (so the same motion per sampled frame relative to the picture) and the clips are
32 x 32 instead of 64 x 64; 240 training videos, batch 16, 30 epochs. About 70 s on 2 CPU cores (4 s of them
writing the videos).

Measured with this setting, test top-1 on 60 videos x 3 views: 80.0% (RNG_SEED 0, the config's), and 73.3%, 80.0%,
76.7% with RNG_SEED 1, 2, 3; the last epoch's training loss 0.36-0.57 (the first: 1.80-1.84, about ln 6).
Chance is 16.7%: a chance-level classifier reaches 40% (24 of 60) with probability 1.5e-5.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from mvit_video.data.toy import TOY_CLASSES, make_toy_dataset
from tests.conftest import ROOT
from tests.engine.runs import CONFIG, json_stats

HALF_SIZES = ((32, 40), (40, 32), (32, 32), (36, 36))  # the default sizes, halved
SHORT_RUN = [
    "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
    "TRAIN.BATCH_SIZE", "16", "SOLVER.MAX_EPOCH", "30", "SOLVER.WARMUP_EPOCHS", "2.0",
    "TRAIN.EVAL_PERIOD", "30", "TRAIN.CHECKPOINT_PERIOD", "30",
]  # fmt: skip
MIN_TOP1 = 40.0


def test_toy_recipe_learns_motion(tmp_path):
    data, output = tmp_path / "toy", tmp_path / "run"
    make_toy_dataset(data, num_per_class=40, val_per_class=5, test_per_class=10, sizes=HALF_SIZES)
    overrides = ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(CONFIG), *overrides, *SHORT_RUN],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]

    epochs = [s for s in json_stats(result.stdout) if s["_type"] == "train_epoch"]
    assert len(epochs) == 30
    assert epochs[0]["loss"] > 0.95 * math.log(len(TOY_CLASSES)) and epochs[-1]["loss"] < 1.2  # ln 6 = 1.79

    results = json.loads((output / "test_results.json").read_text())
    num_test = len((data / "test.csv").read_text().splitlines())
    assert results["num_videos"] == num_test == 10 * len(TOY_CLASSES)
    assert results["num_views"] == 3 and results["num_failed"] == 0
    assert results["top1"] >= MIN_TOP1, f"test top-1 {results['top1']:.1f}% (chance {100 / len(TOY_CLASSES):.1f}%)"
