"""tools/run_net.py and engine/trainer.py: a tiny toy run end to end, exact resume and one-line config errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.engine.runs import CONFIG, iter_losses, json_stats, one_error_line, run_net


def test_toy_run_trains_checkpoints_and_tests(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "TRAIN.CHECKPOINT_PERIOD", "1", "TENSORBOARD.ENABLE", "True", flag_opts=True)
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    stats = json_stats(result.stdout)
    kinds = {s["_type"] for s in stats}
    assert kinds == {"model_info", "train_iter", "train_epoch", "val_epoch"}
    assert len(iter_losses(stats, 1, 2)) == 3 and len(iter_losses(stats, 2, 2)) == 3  # 12 videos / batch 4
    epoch = next(s for s in stats if s["_type"] == "train_epoch")
    for key in ("loss", "lr", "grad_norm", "data_time", "net_time", "mem_mb", "top1_err", "top5_err"):
        assert isinstance(epoch[key], float), key
    val = next(s for s in stats if s["_type"] == "val_epoch")
    assert val["num_videos"] == 6 and 0.0 <= val["top1_err"] <= 100.0
    results = json.loads((tmp_path / "test_results.json").read_text())
    for key in ("top1", "top5", "mean_class_acc", "num_videos", "num_views", "num_failed", "checkpoint", "failed"):
        assert key in results
    assert results["num_videos"] == 6 and results["num_views"] == 2 and results["num_failed"] == 0
    assert results["checkpoint"].endswith("checkpoint_epoch_00002.pyth")
    assert "test: top-1" in result.stdout
    assert torch.load(tmp_path / "test_predictions.pt", weights_only=True)["class_names"][0] == "moving left"


def test_run_logs_model_size_stats_file_curves_and_tensorboard(toy_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mvit_video.config import load_config
    from mvit_video.engine.stats import read_stats
    from mvit_video.models import build_model
    from mvit_video.models.stats import count_flops, count_params

    result = run_net(toy_data, tmp_path, "TENSORBOARD.ENABLE", "True", "TEST.ENABLE", "False")
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_stats(tmp_path / "json_stats.log")
    assert [r["_type"] for r in records].count("train_iter") == 6
    info = next(r for r in records if r["_type"] == "model_info")
    cfg = load_config(CONFIG, ["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32"])
    model = build_model(cfg)
    assert info["params_m"] == pytest.approx(count_params(model) / 1e6)
    assert info["gflops"] == pytest.approx(count_flops(model) / 1e9) and info["input_size"] == [4, 32, 32]
    console = [r for r in json_stats(result.stdout) if r["_type"] == "train_iter"]
    file_losses = [r["loss"] for r in records if r["_type"] == "train_iter"]
    assert [r["loss"] for r in console] == [float(f"{v:.6g}") for v in file_losses]
    png = (tmp_path / "training_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    events = EventAccumulator(str(tmp_path / "runs-kinetics"))
    events.Reload()
    scalars = events.Scalars("train_iter/loss")
    assert [e.step for e in scalars] == list(range(6))
    assert [e.value for e in scalars] == pytest.approx(file_losses, rel=1e-6)
    assert len(events.Scalars("val_epoch/top1_err")) == 1


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


@pytest.mark.slow  # two runs (about 16 s); test_resume_continues_exactly and the preemption tests cover resume by default
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
    assert "SOLVER.MAX_EPOCH" in one_error_line(result)
    assert not (tmp_path / "checkpoints").exists()


def test_impossible_schedule_is_one_line(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "SOLVER.WARMUP_EPOCHS", "2.0")
    assert "SOLVER" in one_error_line(result)


def test_nan_loss_stops_with_last_checkpoint(tmp_path):
    from mvit_video.config import load_config
    from mvit_video.engine.checkpoint import save_checkpoint
    from mvit_video.engine.trainer import TrainingDiverged, check_loss

    cfg = load_config(CONFIG, ["OUTPUT_DIR", str(tmp_path)])
    check_loss(1.5, cfg, 0, 0)
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1, iteration 4; no checkpoint was written yet"):
        check_loss(float("nan"), cfg, 0, 3)
    path = save_checkpoint(tmp_path, 0, torch.nn.Linear(2, 2), None, None)
    with pytest.raises(TrainingDiverged) as info:
        check_loss(float("inf"), cfg, 1, 0)
    message = str(info.value)
    assert "\n" not in message and path in message and "epoch 2, iteration 1" in message


def test_sigkill_then_restart_continues_the_same_run(toy_data, tmp_path):
    """A run killed with SIGKILL in the middle of epoch 2 and started again repeats the uninterrupted run's
    per-iteration losses from epoch 2 on (cosine schedule, validation, 6 iterations per epoch)."""
    import signal
    import subprocess
    import sys
    import time

    from mvit_video.engine.stats import read_stats
    from tests.conftest import ROOT
    from tests.engine.runs import run_net_args

    opts = ["SOLVER.MAX_EPOCH", "3", "TRAIN.BATCH_SIZE", "2", "TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.EVAL_PERIOD", "1",
            "TEST.ENABLE", "False", "DATA_LOADER.NUM_WORKERS", "1"]  # fmt: skip
    full = run_net(toy_data, tmp_path / "full", *opts)
    assert full.returncode == 0, full.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *run_net_args(toy_data, killed_dir, *opts)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    stats_file, deadline = killed_dir / "json_stats.log", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if stats_file.exists() and '"epoch": "2/3", "eta_s"' in stats_file.read_text():
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its data-loader worker
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    names = sorted(p.name for p in (killed_dir / "checkpoints").iterdir())
    assert names == ["checkpoint_epoch_00001.pyth"], "killed too late: epoch 2 had already finished"
    partial = [r for r in read_stats(stats_file) if r["_type"] == "train_iter" and r["epoch"] == "2/3"]
    assert 1 <= len(partial) < 6
    again = run_net(toy_data, killed_dir, *opts)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "start epoch 2/3" in again.stdout
    expected, resumed = read_stats(tmp_path / "full" / "json_stats.log"), read_stats(stats_file)

    def losses(records, epoch):
        return [r["loss"] for r in records if r["_type"] == "train_iter" and r["epoch"] == f"{epoch}/3"]

    assert len(losses(expected, 2)) == 6
    for epoch in (1, 2, 3):
        assert losses(resumed, epoch) == losses(expected, epoch)  # full-precision floats, exactly
    val = [(r["epoch"], r["top1_err"]) for r in resumed if r["_type"] == "val_epoch"]
    assert val == [(r["epoch"], r["top1_err"]) for r in expected if r["_type"] == "val_epoch"]


@pytest.mark.slow
def test_compiled_training_and_test_run(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "MODEL.COMPILE", "True", "SOLVER.MAX_EPOCH", "1", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(tmp_path / "checkpoints" / "checkpoint_epoch_00001.pyth", weights_only=True)["model_state"]
    assert not any(k.startswith("_orig_mod") for k in state)  # saved without the compile wrapper
    assert json.loads((tmp_path / "test_results.json").read_text())["num_videos"] == 6
