"""MaskFeat pre-training through tools/run_net.py on a few toy videos, without labels: the loss falls, validation
reports the masked loss, checkpoints are written, a longer run resumes after the last epoch, and fine-tuning a
classifier from the checkpoint reports the dropped pre-training tensors. The pre-training run (about 13 s on 2 quiet
CPU cores) is in the default suite; resuming and fine-tuning (another 30 s) are marked slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import ROOT
from mvit_video.config import ConfigError, load_config
from tests.engine.runs import iter_losses, json_stats

PT_CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2_MaskFeat_PT.yaml"
FT_CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"
# 4 x 32 x 32 clips: patch grid 2 x 8 x 8, block 3's grid 2 x 4 x 4 -> a 2 x 2 x 2 mask window (2 x 2 tokens a cell)
TINY = [
    "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES",
    "[32, 40]", "TRAIN.BATCH_SIZE", "4", "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1", "SOLVER.WARMUP_EPOCHS",
    "0.3", "SOLVER.BASE_LR", "0.002",
]  # fmt: skip
PT_TINY = [*TINY, "AUG.MASK_WINDOW_SIZE", "[2, 2, 2]", "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1"]


def _run(config: Path, data: Path, output: Path, *opts: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(config), "DATA.PATH_TO_DATA_DIR",
            str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output), *opts]  # fmt: skip
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _unlabelled(toy_data: Path, data: Path) -> Path:
    """The toy train and val splits as bare paths: "<path> <label>" rows lose their label."""
    data.mkdir()
    for split in ("train", "val"):
        rows = (toy_data / f"{split}.csv").read_text().splitlines()
        (data / f"{split}.csv").write_text("".join(f"{toy_data / row.rsplit(' ', 1)[0]}\n" for row in rows))
    return data


@pytest.fixture(scope="module")
def pretrained(toy_data, tmp_path_factory) -> SimpleNamespace:
    """Two pre-training epochs on the 12 toy training videos, their labels removed from train.csv."""
    root = tmp_path_factory.mktemp("maskfeat")
    data = _unlabelled(toy_data, root / "unlabelled")
    output = root / "pt"
    result = _run(PT_CONFIG, data, output, *PT_TINY, "SOLVER.MAX_EPOCH", "2")
    return SimpleNamespace(data=data, output=output, result=result, root=root)


def test_pretraining_without_labels_lowers_the_masked_loss(pretrained):
    result = pretrained.result
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json_stats(result.stdout)
    losses = iter_losses(stats, 1, 2) + iter_losses(stats, 2, 2)
    assert len(losses) == 6 and all(0 < loss < 1 for loss in losses)
    assert sum(losses[-2:]) / 2 < 0.8 * losses[0], losses
    assert all("top1_err" not in s for s in stats if s["_type"] == "train_iter")
    val = [s for s in stats if s["_type"] == "val_epoch"]
    assert [s["num_videos"] for s in val] == [6, 6] and all(0 < s["loss"] < 1 for s in val)
    saved = torch.load(pretrained.output / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=False)
    assert saved["epoch"] == 1 and "mask_token" in saved["model_state"]
    assert "hogs.0.weight_x" in saved["model_state"] and "head.projection.weight" not in saved["model_state"]


@pytest.mark.slow
def test_a_longer_pretraining_run_resumes_after_the_last_epoch(pretrained):
    result = _run(PT_CONFIG, pretrained.data, pretrained.output, *PT_TINY, "SOLVER.MAX_EPOCH", "3",
                  "TRAIN.EVAL_PERIOD", "10")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "start epoch 3/3" in result.stderr + result.stdout
    assert len(iter_losses(json_stats(result.stdout), 3, 3)) == 3
    assert (pretrained.output / "checkpoints" / "checkpoint_epoch_00003.pyth").exists()


@pytest.mark.slow
def test_fine_tuning_from_the_pretraining_checkpoint_reports_the_drops(pretrained, toy_data):
    checkpoint = pretrained.output / "checkpoints" / "checkpoint_epoch_00002.pyth"
    result = _run(FT_CONFIG, toy_data, pretrained.root / "ft", *TINY, "SOLVER.MAX_EPOCH", "1",
                  "TEST.NUM_ENSEMBLE_VIEWS", "1", "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stderr + result.stdout
    assert (
        f"initialised from {checkpoint}: format=mvit_video, missing=2, unexpected=0, adapted=0, dropped 7 "
        "pre-training tensors (mask_token, hogs, pred_head), head re-initialised; training starts at epoch 1" in log
    )
    assert (pretrained.root / "ft" / "test_results.json").exists()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("AUG.GEN_MASK_LOADER", "False", "MASK.ENABLE needs the loader's masks"),
        ("AUG.MASK_WINDOW_SIZE", "[2, 3, 3]", "does not match the patch-token grid 8x8"),
        ("AUG.MASK_WINDOW_SIZE", "[4, 2, 2]", "must have T = 2"),
        ("MODEL.LOSS_FUNC", "cross_entropy", "set multi_mse"),
        ("MASK.MAE_ON", "True", "MAE pre-training is built for MODEL.ARCH vit"),
        ("MODEL.ARCH", "maskmvit", "set MODEL.ARCH mvit with MASK.ENABLE True"),
        ("MASK.PRETRAIN_DEPTH", "[4]", "below MVIT.DEPTH=4"),
        ("TEST.ENABLE", "True", "no classifier to test"),
        ("MIXUP.ENABLE", "True", "mixup needs labels"),
    ],
)  # fmt: skip
def test_inconsistent_masking_settings_are_one_line(key, value, expected):
    with pytest.raises(ConfigError) as info:
        load_config(PT_CONFIG, [*PT_TINY, key, value])
    message = str(info.value)
    assert "\n" not in message and f"{key}=" in message and expected in message, message


def test_masking_keys_without_mask_enable_are_refused():
    for key, value in (("AUG.MASK_RATIO", "0.5"), ("MODEL.LOSS_FUNC", "multi_mse"), ("MASK.PRED_HOG", "True")):
        with pytest.raises(ConfigError, match=rf"{key}=.*(MASK.ENABLE is False|set MASK.ENABLE True)"):
            load_config(FT_CONFIG, [key, value])
