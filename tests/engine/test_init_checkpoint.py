"""TRAIN.CHECKPOINT_FILE_PATH with PySlowFast's TRAIN.CHECKPOINT_EPOCH_RESET / CLEAR_NAME_PATTERN / INFLATE."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.checkpoint import save_checkpoint
from mvit_video.engine.trainer import Accumulation, setup_run, train_step
from mvit_video.models.pretrained import CheckpointError, clear_name_patterns
from tests.engine.runs import CONFIG
from tests.engine.test_train_step import SMALL, batch, make_run, params


def start(tmp_path, checkpoint, *opts: str):
    """setup_run of the toy config initialised from ``checkpoint``; returns (run, 0-based start epoch)."""
    cfg = load_config(CONFIG, ["OUTPUT_DIR", str(tmp_path / "new"), *SMALL, "TRAIN.CHECKPOINT_FILE_PATH",
                               str(checkpoint), *opts])  # fmt: skip
    run, begin = setup_run(cfg)
    return run, begin.epoch


def trained_checkpoint(tmp_path, epoch: int, *opts: str, optimizer: bool = True) -> tuple:
    """A run after one optimizer step, saved as the checkpoint of 0-based ``epoch``; (run, path)."""
    run = make_run(tmp_path / "source", *opts)
    train_step(run, batch(4), None, 0, 0, Accumulation.of(0, 1, 1))
    path = save_checkpoint(tmp_path / "source", epoch, run.model, run.optimizer if optimizer else None, run.cfg,
                           scaler=run.scaler)  # fmt: skip
    return run, path


def _optimizer_tensors(optimizer) -> list[torch.Tensor]:
    state = optimizer.state_dict()["state"]
    return [value for index in sorted(state) for _, value in sorted(state[index].items())]


def test_training_checkpoint_continues_after_its_epoch_with_its_optimizer(tmp_path):
    source, path = trained_checkpoint(tmp_path, epoch=4)
    run, start_epoch = start(tmp_path, path)
    assert start_epoch == 5  # PySlowFast: checkpoint_epoch + 1
    assert all(torch.equal(params(source)[k], v) for k, v in params(run).items())
    ours, theirs = _optimizer_tensors(run.optimizer), _optimizer_tensors(source.optimizer)
    assert len(ours) == len(theirs) > 0 and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_epoch_reset_starts_at_epoch_1_with_a_fresh_optimizer(tmp_path):
    source, path = trained_checkpoint(tmp_path, epoch=4)
    run, start_epoch = start(tmp_path, path, "TRAIN.CHECKPOINT_EPOCH_RESET", "True")
    assert start_epoch == 0 and run.optimizer.state_dict()["state"] == {}
    assert all(torch.equal(params(source)[k], v) for k, v in params(run).items())


def test_weights_only_file_starts_at_epoch_1(tmp_path):
    source, _ = trained_checkpoint(tmp_path, epoch=4)
    torch.save(source.model.state_dict(), tmp_path / "weights.pth")
    run, start_epoch = start(tmp_path, tmp_path / "weights.pth")
    assert start_epoch == 0 and all(torch.equal(params(source)[k], v) for k, v in params(run).items())


@pytest.mark.parametrize(
    ("source_opts", "epoch", "optimizer", "opts", "message"),
    [
        ((), 2, False, (), "stores epoch 3 and continues with its optimizer state, but it holds none"),
        ((), 11, True, (), "finished epoch 12, SOLVER.MAX_EPOCH=12 leaves nothing to train: raise SOLVER.MAX_EPOCH"),
        (("SOLVER.OPTIMIZING_METHOD", "sgd"), 2, True, (), "of another optimizer than SOLVER.OPTIMIZING_METHOD=adamw"),
        (("MODEL.NUM_CLASSES", "9"), 2, True, ("TRAIN.CHECKPOINT_REINIT_HEAD", "True"),
         "which fits only the same model, but its classifier was re-initialised"),
    ],
    ids=["no optimizer state", "finished", "other optimizer", "new classifier"],
)  # fmt: skip
def test_continuing_what_cannot_continue_is_one_line(tmp_path, source_opts, epoch, optimizer, opts, message):
    _, path = trained_checkpoint(tmp_path, epoch, *source_opts, optimizer=optimizer)
    with pytest.raises(CheckpointError) as info:
        start(tmp_path, path, *opts)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"TRAIN.CHECKPOINT_FILE_PATH={path} ") and message in line
    assert line.endswith("set TRAIN.CHECKPOINT_EPOCH_RESET True to start at epoch 1 from its weights (fine-tuning)")
    _, start_epoch = start(tmp_path, path, *opts, "TRAIN.CHECKPOINT_EPOCH_RESET", "True")
    assert start_epoch == 0


# ------------------------------------------------------------------------------------------------ name patterns


def test_clear_name_patterns_removes_the_first_occurrence_pattern_by_pattern():
    t = torch.zeros(1)
    cleared = clear_name_patterns({"epoch": 3, "model_state": {"m.backbone.x.backbone.y": t, "enc.z": t}},
                                  ["backbone.", "enc."])  # fmt: skip
    assert set(cleared["model_state"]) == {"m.x.backbone.y", "z"} and cleared["epoch"] == 3
    with pytest.raises(CheckpointError, match="removing 'a.' .* gives two tensors the name 'x'"):
        clear_name_patterns({"a.x": t, "x": t}, ["a."], "f.pyth")


def test_clear_name_pattern_makes_a_wrapped_checkpoint_load(tmp_path):
    source, _ = trained_checkpoint(tmp_path, epoch=0)
    torch.save({"model_state": {f"backbone.{k}": v for k, v in source.model.state_dict().items()}},
               tmp_path / "wrapped.pyth")  # fmt: skip
    with pytest.raises(CheckpointError, match="unrecognised checkpoint format"):
        start(tmp_path, tmp_path / "wrapped.pyth")
    run, start_epoch = start(tmp_path, tmp_path / "wrapped.pyth", "TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN",
                             "['backbone.']")  # fmt: skip
    assert start_epoch == 0 and all(torch.equal(params(source)[k], v) for k, v in params(run).items())


# ---------------------------------------------------------------------------------------------------- inflation


def test_2d_kernels_are_inflated_only_when_asked(tmp_path):
    source, _ = trained_checkpoint(tmp_path, epoch=0)
    state = dict(source.model.state_dict())
    kernel_2d = torch.randn(state["patch_embed.proj.weight"].shape[:2] + (7, 7))
    state["patch_embed.proj.weight"] = kernel_2d  # an image model's patch embedding
    torch.save(state, tmp_path / "image.pth")
    with pytest.raises(CheckpointError) as info:
        start(tmp_path, tmp_path / "image.pth")
    assert "patch_embed.proj.weight is a 2-D kernel" in str(info.value)
    assert "set TRAIN.CHECKPOINT_INFLATE True" in str(info.value)
    run, _ = start(tmp_path, tmp_path / "image.pth", "TRAIN.CHECKPOINT_INFLATE", "True")
    inflated = run.model.patch_embed.proj.weight.detach()
    time = inflated.shape[2]
    for t in range(time):  # PySlowFast's inflate_weight: the 2-D kernel / T on every temporal tap
        torch.testing.assert_close(inflated[:, :, t], kernel_2d / time)
