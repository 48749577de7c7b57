"""One training step: gradient accumulation, mixed precision, loss scaling and their checkpointed state."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine.checkpoint import latest_checkpoint, load_training_state
from mvit_video.engine.trainer import Accumulation, Start, end_of_epoch, setup_run, train_step
from tests.engine.runs import CONFIG

SMALL = ["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "MVIT.DROPPATH_RATE", "0.0",
         "SOLVER.CLIP_GRAD_L2NORM", "None", "LOG_MODEL_INFO", "False", "TRAIN.EVAL_PERIOD", "0"]  # fmt: skip


def make_run(tmp_path, *opts: str):
    cfg = load_config(CONFIG, ["OUTPUT_DIR", str(tmp_path), *SMALL, *opts])
    run, start = setup_run(cfg)
    assert start == Start(0)
    return run


def batch(n: int, seed: int = 0, frames: int = 4, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(n, 3, frames, size, size, generator=g)
    return {"video": video, "label": torch.randint(0, 6, (n,), generator=g)}


def params(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.named_parameters()}


@pytest.mark.parametrize(
    ("iteration", "iters", "steps", "expected"),
    [(0, 5, 2, (True, False, 2)), (1, 5, 2, (False, True, 2)), (4, 5, 2, (True, True, 1)), (3, 7, 1, (True, True, 1)),
     (4, 7, 3, (False, False, 3)), (5, 7, 3, (False, True, 3)), (6, 7, 3, (True, True, 1))],
)  # fmt: skip
def test_accumulation_groups(iteration, iters, steps, expected):
    """(zero grads, optimizer step, group size): the last group of an epoch may be shorter."""
    acc = Accumulation.of(iteration, iters, steps)
    assert (acc.first, acc.last, acc.size) == expected


def test_two_accumulated_halves_equal_one_full_batch(tmp_path):
    """4 + 4 clips accumulated into one step give the parameters of one 8-clip step (same initial weights).

    SGD, because Adam's first step moves every parameter by about +-lr whatever its gradient's size, which turns
    the rounding noise of gradients that are zero in exact arithmetic (the key-norm biases: softmax ignores a
    shift shared by all keys) into differences of lr."""
    sgd = ["SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.BASE_LR", "0.5", "SOLVER.WARMUP_EPOCHS", "0.0"]
    full = make_run(tmp_path / "full", *sgd)
    accumulated = make_run(tmp_path / "acc", *sgd, "TRAIN.GRAD_ACCUM_STEPS", "2")
    before = params(full)
    assert all(torch.equal(before[k], v) for k, v in params(accumulated).items())
    data = batch(8)
    for run in (full, accumulated):
        run.optimizer.param_groups[0]["lr"] = run.optimizer.param_groups[1]["lr"] = 0.5
    out = train_step(full, data, None, 0, 0, Accumulation.of(0, 1, 1))
    halves = [{k: v[:4] for k, v in data.items()}, {k: v[4:] for k, v in data.items()}]
    first = train_step(accumulated, halves[0], None, 0, 0, Accumulation.of(0, 2, 2))
    assert "grad_norm" not in first  # no optimizer step yet
    assert all(torch.equal(before[k], v) for k, v in params(accumulated).items())
    second = train_step(accumulated, halves[1], None, 0, 1, Accumulation.of(1, 2, 2))
    assert second["grad_norm"] == pytest.approx(out["grad_norm"], rel=1e-5)
    assert (first["loss"] + second["loss"]) / 2 == pytest.approx(out["loss"], rel=1e-6)
    after_full, after_acc = params(full), params(accumulated)
    changed = [k for k in before if not torch.equal(before[k], after_full[k])]
    assert len(changed) > 0.9 * len(before)
    for k in changed:
        torch.testing.assert_close(after_acc[k], after_full[k], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_changes_the_numerics_not_the_result(tmp_path):
    fp32, bf16 = make_run(tmp_path / "fp32"), make_run(tmp_path / "bf16", "TRAIN.PRECISION", "bf16")
    data = batch(4, seed=1)
    loss32 = train_step(fp32, data, None, 0, 0, Accumulation.of(0, 1, 1))["loss"]
    loss16 = train_step(bf16, data, None, 0, 0, Accumulation.of(0, 1, 1))["loss"]
    assert loss16 != loss32  # autocast ran the matmuls in bfloat16
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    assert not bf16.scaler.is_enabled()  # bf16 needs no loss scaling


# float16 kernels are slow on CPUs: a 2 x 16 x 16 clip keeps this test short
FP16 = ["TRAIN.PRECISION", "fp16", "TRAIN.CHECKPOINT_PERIOD", "1", "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "16"]


def test_fp16_scales_the_loss_and_checkpoints_the_scaler(tmp_path):
    run = make_run(tmp_path, *FP16)
    assert run.scaler.is_enabled() and run.scaler.get_scale() == 65536.0
    before = params(run)
    out = train_step(run, batch(2, seed=2, frames=2, size=16), None, 0, 0, Accumulation.of(0, 1, 1))
    if torch.isfinite(torch.tensor(out["grad_norm"])):
        assert any(not torch.equal(before[k], v) for k, v in params(run).items())
    else:  # an overflowing first step is skipped and the scale halves
        assert run.scaler.get_scale() == 32768.0
    run.scaler.update(1234.0)
    end_of_epoch(run, 0, None)
    restored = make_run(tmp_path / "other", *FP16)
    load_training_state(latest_checkpoint(tmp_path), restored.model, restored.optimizer, scaler=restored.scaler)
    assert restored.scaler.get_scale() == 1234.0
    assert all(torch.equal(params(run)[k], v) for k, v in params(restored).items())


def test_nan_loss_stops_before_the_update(tmp_path):
    from mvit_video.engine.trainer import TrainingDiverged

    run = make_run(tmp_path)
    before = params(run)
    data = batch(4)
    data["video"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1, iteration 1; no checkpoint was written"):
        train_step(run, data, None, 0, 0, Accumulation.of(0, 1, 1))
    assert all(torch.equal(before[k], v) for k, v in params(run).items())
