"""A toy checkpoint that classifies toy clips, for the demo's end-to-end accuracy test."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mvit_video.data.toy import make_toy_dataset
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG

# fits 6 toy videos of 4 x 32 x 32 clips in 30 epochs (one step each; PySlowFast's initialisation: loss 1.7 -> 0.15,
# training error 0 from epoch 21 at BASE_LR 1e-3, while 3e-3 still had 17-33% error after 20): ~25 s.
# One loader worker leaves one compute thread (process.share_cpu): the first epochs took 5 s instead of
# 0.2 s each with two threads on a busy 2-core machine.
_FIT_OPTS = [
    *TINY_CLIP, "DATA.TRAIN_JITTER_SCALES", "[32, 36]", "SOLVER.MAX_EPOCH", "30", "SOLVER.WARMUP_EPOCHS", "1",
    "SOLVER.BASE_LR", "0.001", "TRAIN.BATCH_SIZE", "6", "TRAIN.EVAL_PERIOD", "0", "TRAIN.CHECKPOINT_PERIOD", "30",
    "TEST.ENABLE", "False", "AUG.ENABLE", "False", "MVIT.DROPPATH_RATE", "0.0", "DATA_LOADER.NUM_WORKERS", "1",
    "LOG_MODEL_INFO", "False",
]  # fmt: skip


@dataclass(frozen=True)
class ToyClassifier:
    """A toy checkpoint and clips it classifies.

    Attributes:
        config, opts: the checkpoint's config and overrides (the demo needs the same).
        checkpoint: the weights.
        data_dir: its toy dataset (``classnames.txt`` names the classes).
        clips: (video, label) pairs it is known to classify right, all of one size and frame rate.
    """

    config: Path
    opts: list[str]
    checkpoint: Path
    data_dir: Path
    clips: list[tuple[Path, int]]


@pytest.fixture(scope="session")
def toy_classifier(tmp_path_factory) -> ToyClassifier:
    """For now the toy MViT trained by tools/run_net.py until it fits one 64x80 15 fps toy video per class: it
    memorises those six clips and does not generalise (the toy recipe that learns is being re-tuned). Once a
    shared learned toy checkpoint exists, return it here with held-out test clips instead."""
    root = tmp_path_factory.mktemp("toy_classifier")
    data = root / "data"
    make_toy_dataset(data, num_per_class=1, val_per_class=1, test_per_class=1, sizes=((64, 80),),
                     fps_choices=(15,), num_frames=(24, 24))  # fmt: skip
    output = root / "run"
    command = [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(TOY_CONFIG), "DATA.PATH_TO_DATA_DIR",
               str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output), *_FIT_OPTS]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = [json.loads(line) for line in (output / "json_stats.log").read_text().splitlines()]
    last_epoch = [s for s in stats if s["_type"] == "train_epoch"][-1]
    assert last_epoch["top1_err"] == 0, f"the toy model did not fit its training clips: {last_epoch}"
    rows = (data / "train.csv").read_text().splitlines()
    clips = [(data / path, int(label)) for path, label in (row.split() for row in rows)]
    return ToyClassifier(TOY_CONFIG, _FIT_OPTS, output / "checkpoints" / "checkpoint_epoch_00030.pyth", data, clips)
