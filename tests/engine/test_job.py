"""User mistakes stop tools/run_net.py with one line before any work: paths, checkpoints, class counts."""

from __future__ import annotations

import shutil

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.checkpoint import save_checkpoint
from mvit_video.models import build_model
from tests.engine.runs import CONFIG, TINY, one_error_line, run_net


def started(result) -> bool:
    return "start epoch" in result.stdout or "json_stats" in result.stdout


def toy_weights(tmp_path, *opts: str) -> str:
    """A checkpoint of the toy model (TINY input) built with ``opts``."""
    model = build_model(load_config(CONFIG, [*TINY, *opts]))
    return save_checkpoint(tmp_path, 0, model, None, None)


def test_unwritable_output_dir(toy_data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = one_error_line(run_net(toy_data, blocker / "run"))
    assert "OUTPUT_DIR=" in line and "not writable" in line and str(blocker / "run") in line


def test_missing_data_dir(tmp_path):
    result = run_net(tmp_path / "nowhere", tmp_path / "out")
    line = one_error_line(result)
    assert str(tmp_path / "nowhere" / "train.csv") in line and not started(result)


def test_missing_test_split_fails_before_training(toy_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    (data / "test.csv").unlink()
    result = run_net(data, tmp_path / "out")
    assert "test.csv" in one_error_line(result) and not started(result)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_wrong_path_prefix_names_a_missing_file(toy_data, tmp_path):
    result = run_net(toy_data, tmp_path, "DATA.PATH_PREFIX", str(tmp_path / "elsewhere"))
    line = one_error_line(result)
    assert "do not exist" in line and "DATA.PATH_PREFIX" in line and not started(result)


def test_checkpoint_of_another_architecture(toy_data, tmp_path):
    path = toy_weights(tmp_path / "deeper", "MVIT.EMBED_DIM", "48")
    result = run_net(toy_data, tmp_path / "out", "TRAIN.CHECKPOINT_FILE_PATH", path)
    line = one_error_line(result)
    assert path in line and "another architecture" in line and not started(result)


def test_checkpoint_with_fewer_blocks_is_another_architecture(toy_data, tmp_path):
    """Every checkpoint tensor fits, but the model's 5th block is not in the 4-block checkpoint."""
    path = toy_weights(tmp_path / "four_blocks")
    result = run_net(toy_data, tmp_path / "out", "TRAIN.CHECKPOINT_FILE_PATH", path, "MVIT.DEPTH", "5")
    line = one_error_line(result)
    assert "another architecture" in line and "blocks.4." in line and not started(result)


def test_num_classes_mismatch_needs_the_reinit_flag(toy_data, tmp_path):
    path = toy_weights(tmp_path / "k400", "MODEL.NUM_CLASSES", "400")
    refused = run_net(toy_data, tmp_path / "refused", "TRAIN.CHECKPOINT_FILE_PATH", path)
    line = one_error_line(refused)
    assert "400 classes" in line and "TRAIN.CHECKPOINT_REINIT_HEAD" in line and not started(refused)
    tuned = run_net(toy_data, tmp_path / "tuned", "TRAIN.CHECKPOINT_FILE_PATH", path, "TRAIN.CHECKPOINT_REINIT_HEAD",
                    "True", "TRAIN.CHECKPOINT_EPOCH_RESET", "True", "SOLVER.MAX_EPOCH", "1",
                    "TEST.ENABLE", "False")  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert "head re-initialised" in tuned.stdout
    source = torch.load(path, weights_only=True)["model_state"]
    # training moved the weights, but they started from the checkpoint: the position tables barely changed
    result = torch.load(tmp_path / "tuned" / "checkpoints" / "checkpoint_epoch_00001.pyth", weights_only=True)
    table = "blocks.0.attn.rel_pos_h"
    assert torch.allclose(result["model_state"][table], source[table], atol=5e-3)
    fresh = build_model(load_config(CONFIG, TINY)).state_dict()[table]
    assert not torch.allclose(fresh, source[table], atol=5e-3)


def test_test_checkpoint_lacking_blocks_is_refused(toy_data, tmp_path):
    path = toy_weights(tmp_path / "four_blocks")
    result = run_net(toy_data, tmp_path / "out", "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", path,
                     "MVIT.DEPTH", "5")  # fmt: skip
    line = one_error_line(result)
    assert "another architecture" in line and "blocks.4." in line and "test:" not in result.stdout


def test_test_checkpoint_mismatch_fails_before_training(toy_data, tmp_path):
    path = toy_weights(tmp_path / "k400", "MODEL.NUM_CLASSES", "400")
    result = run_net(toy_data, tmp_path / "out", "TEST.CHECKPOINT_FILE_PATH", path)
    assert "400 classes" in one_error_line(result) and not started(result)


@pytest.mark.parametrize("key", ["TRAIN.CHECKPOINT_FILE_PATH", "TEST.CHECKPOINT_FILE_PATH"])
def test_missing_checkpoint_file(toy_data, tmp_path, key):
    result = run_net(toy_data, tmp_path, key, str(tmp_path / "missing.pyth"))
    assert "missing.pyth" in one_error_line(result) and not started(result)


@pytest.mark.parametrize("key", ["TRAIN.CHECKPOINT_FILE_PATH", "TEST.CHECKPOINT_FILE_PATH"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(toy_data, tmp_path, key):
    """A CSV given as a checkpoint (it used to end in an IndexError traceback from torch's unpickler)."""
    result = run_net(toy_data, tmp_path / "out", key, str(toy_data / "train.csv"))
    line = one_error_line(result)
    assert line.startswith(f"error: {key}: {toy_data / 'train.csv'}: not a PyTorch checkpoint (it starts with")
    assert not started(result)
