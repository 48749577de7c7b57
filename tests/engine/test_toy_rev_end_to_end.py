"""tools/run_net.py trains the toy Rev-MViT (configs/Toy/REV_MVIT_XS_8x2.yaml) through the recomputing backward, writes
checkpoints, and a test-only run reloads the last one (TEST.CHECKPOINT_FILE_PATH) and scores exactly as the training
run's own test did."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.models import build_model
from tests.conftest import ROOT
from tests.engine.runs import TINY, iter_losses, json_stats

CONFIG = ROOT / "configs" / "Toy" / "REV_MVIT_XS_8x2.yaml"
EPOCHS = 3
SHORT = [*TINY, "SOLVER.MAX_EPOCH", str(EPOCHS), "SOLVER.LR_POLICY", "constant", "SOLVER.WARMUP_EPOCHS", "0.0",
         "TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.EVAL_PERIOD", str(EPOCHS), "AUG.ENABLE", "False",
         "SOLVER.BASE_LR", "0.002"]  # fmt: skip


def run(data, output, *opts: str) -> subprocess.CompletedProcess:
    overrides = ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output)]
    command = [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(CONFIG), *overrides, *SHORT, *opts]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow  # two run_net processes, about 1-2 minutes on a shared 2-core CPU
def test_toy_rev_mvit_trains_checkpoints_and_reloads(toy_data, tmp_path):
    train = run(toy_data, tmp_path / "train")
    assert train.returncode == 0, train.stderr[-2000:]
    stats = json_stats(train.stdout)
    losses = [iter_losses(stats, e, EPOCHS) for e in range(1, EPOCHS + 1)]
    assert all(len(epoch) == 3 for epoch in losses)  # 12 videos, batch 4
    assert all(math.isfinite(v) for epoch in losses for v in epoch)
    assert sum(losses[-1]) < sum(losses[0])  # the same 12 videos, three epochs later

    folder = tmp_path / "train" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [f"checkpoint_epoch_{e:05d}.pyth" for e in range(1, 4)]
    last = folder / f"checkpoint_epoch_{EPOCHS:05d}.pyth"
    state = torch.load(last, map_location="cpu", weights_only=False)["model_state"]
    model = build_model(load_config(CONFIG, ["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32"]))
    assert list(state) == list(model.state_dict())  # PySlowFast's names and order
    assert any(k.startswith("rev_backbone.layers.2.res_proj") for k in state)

    test = run(toy_data, tmp_path / "test", "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", str(last))
    assert test.returncode == 0, test.stderr[-2000:]
    trained = json.loads((tmp_path / "train" / "test_results.json").read_text())
    reloaded = json.loads((tmp_path / "test" / "test_results.json").read_text())
    assert reloaded["checkpoint"] == str(last) and reloaded["num_videos"] == 6
    for key in ("top1", "top5", "mean_class_acc"):
        assert reloaded[key] == trained[key], key
