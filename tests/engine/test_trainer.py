"""tools/run_net.py and engine/trainer.py: a tiny toy run end to end, exact resume and one-line config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvit_video.data.toy import make_toy_dataset
from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"
# Small clips (4 x 32 x 32): larger inputs cost seconds of one-time CPU kernel warm-up per run.
TINY = [
    "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.5", "TRAIN.BATCH_SIZE", "4", "DATA_LOADER.NUM_WORKERS", "0",
    "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.BATCH_SIZE", "4", "LOG_PERIOD", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "data"
    make_toy_dataset(out, num_per_class=2, val_per_class=1, test_per_class=1)  # 12 / 6 / 6 videos
    return out


def run_net(data: Path, output: Path, *opts: str, flag_opts: bool = False) -> subprocess.CompletedProcess:
    base = ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output), *TINY]
    overrides = base + list(opts)
    args = ["--opts", *overrides] if flag_opts else overrides
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(CONFIG), *args],
        check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def json_stats(stdout: str) -> list[dict]:
    return [json.loads(line.split("json_stats: ", 1)[1]) for line in stdout.splitlines() if "json_stats: " in line]


def iter_losses(stats: list[dict], epoch: int, max_epoch: int) -> list[float]:
    return [s["loss"] for s in stats if s["_type"] == "train_iter" and s["epoch"] == f"{epoch}/{max_epoch}"]


def test_toy_run_trains_checkpoints_and_tests(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "TRAIN.CHECKPOINT_PERIOD", "1", flag_opts=True)
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    stats = json_stats(result.stdout)
    kinds = {s["_type"] for s in stats}
    assert kinds == {"train_iter", "train_epoch", "val_epoch"}
    assert len(iter_losses(stats, 1, 2)) == 3 and len(iter_losses(stats, 2, 2)) == 3  # 12 videos / batch 4
    epoch = next(s for s in stats if s["_type"] == "train_epoch")
    for key in ("loss", "lr", "grad_norm", "data_time", "net_time", "top1_err", "top5_err"):
        assert isinstance(epoch[key], float), key
    val = next(s for s in stats if s["_type"] == "val_epoch")
    assert val["num_videos"] == 6 and 0.0 <= val["top1_err"] <= 100.0
    results = json.loads((tmp_path / "test_results.json").read_text())
    for key in ("top1", "top5", "mean_class_acc", "num_videos", "num_views", "num_failed", "checkpoint", "failed"):
        assert key in results
    assert results["num_videos"] == 6 and results["num_views"] == 2 and results["num_failed"] == 0
    assert results["checkpoint"].endswith("checkpoint_epoch_00002.pyth")
    assert "test: top-1" in result.stdout


CONSTANT_LR = ["SOLVER.LR_POLICY", "constant", "SOLVER.WARMUP_EPOCHS", "0.0", "TEST.ENABLE", "False"]


def test_resume_continues_exactly(toy_data, tmp_path):
    """Epoch 2 after a stop at epoch 1 repeats the uninterrupted run's losses (constant LR: MAX_EPOCH may grow)."""
    full = run_net(toy_data, tmp_path / "full", *CONSTANT_LR)
    assert full.returncode == 0, full.stderr[-2000:]
    first = run_net(toy_data, tmp_path / "split", *CONSTANT_LR, "SOLVER.MAX_EPOCH", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "split" / "checkpoints" / "checkpoint_epoch_00001.pyth").exists()
    second = run_net(toy_data, tmp_path / "split", *CONSTANT_LR)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "start epoch 2/2" in second.stdout
    assert iter_losses(json_stats(second.stdout), 1, 2) == []
    full_stats = json_stats(full.stdout)
    assert iter_losses(json_stats(first.stdout), 1, 1) == iter_losses(full_stats, 1, 2)
    assert iter_losses(json_stats(second.stdout), 2, 2) == iter_losses(full_stats, 2, 2)


def test_resume_mid_cosine_schedule(toy_data, tmp_path):
    """Deleting the last checkpoint and rerunning repeats epoch 2 exactly (cosine schedule, validation each epoch)."""
    opts = ["TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.EVAL_PERIOD", "1", "TEST.ENABLE", "False"]
    full = run_net(toy_data, tmp_path, *opts)
    assert full.returncode == 0, full.stderr[-2000:]
    (tmp_path / "checkpoints" / "checkpoint_epoch_00002.pyth").unlink()
    again = run_net(toy_data, tmp_path, *opts)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "start epoch 2/2" in again.stdout
    assert iter_losses(json_stats(again.stdout), 2, 2) == iter_losses(json_stats(full.stdout), 2, 2)


def test_wrong_config_key_is_one_line(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "SOLVER.MAX_EPOHC", "3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "SOLVER.MAX_EPOCH" in lines[0]
    assert not (tmp_path / "checkpoints").exists()


def test_impossible_schedule_is_one_line(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "SOLVER.WARMUP_EPOCHS", "2.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SOLVER" in result.stderr


def test_nan_loss_stops_with_last_checkpoint(tmp_path):
    import torch

    from mvit_video.config import load_config
    from mvit_video.engine.checkpoint import save_checkpoint
    from mvit_video.engine.trainer import TrainingDiverged, check_loss

    cfg = load_config(CONFIG, ["OUTPUT_DIR", str(tmp_path)])
    check_loss(torch.tensor(1.5), cfg, 0, 0)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        check_loss(torch.tensor(float("nan")), cfg, 0, 3)
    path = save_checkpoint(tmp_path, 0, torch.nn.Linear(2, 2), None, None)
    with pytest.raises(TrainingDiverged) as info:
        check_loss(torch.tensor(float("inf")), cfg, 1, 0)
    message = str(info.value)
    assert "\n" not in message and path in message and "epoch 2, iteration 1" in message
