"""MODEL.LOSS_FUNC (PySlowFast's classification losses) and TRAIN.KILL_LOSS_EXPLOSION_FACTOR."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest
import torch

from mvit_video.config.defaults import CLASSIFICATION_LOSS_FUNCS
from mvit_video.data.mixup import Mixup
from mvit_video.engine.losses import LossExplosionGuard, classification_loss
from mvit_video.engine.trainer import Accumulation, TrainingDiverged, compute_loss, train_step
from tests.engine.test_train_step import batch, make_run, params

LOGITS = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 1.5, -0.7, 2.2], [-1.0, 0.0, 1.0, 0.5]])
HARD = torch.tensor([0, 3, 2])
SOFT = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.0, 0.5, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25]])
MULTI_HOT = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]])


def _by_hand(name: str, logits: torch.Tensor, targets: torch.Tensor) -> float:
    """PySlowFast's loss formulas, element by element; class indices are one-hot rows."""
    rows = logits.tolist()
    if targets.ndim == 1:
        targets = torch.eye(logits.shape[1])[targets]
    total = 0.0
    for row, target in zip(rows, targets.tolist()):
        if name in ("cross_entropy", "soft_cross_entropy"):
            log_norm = math.log(sum(math.exp(v) for v in row))
            total += sum(-y * (v - log_norm) for v, y in zip(row, target))
        else:  # bce, bce_logit: mean over the classes of the binary cross entropy of sigmoid(x)
            probs = [1 / (1 + math.exp(-v)) for v in row]
            total += sum(-(y * math.log(p) + (1 - y) * math.log(1 - p)) for p, y in zip(probs, target)) / len(row)
    return total / len(rows)


@pytest.mark.parametrize("targets", [HARD, SOFT, MULTI_HOT], ids=["class indices", "mixup soft", "multi-hot"])
@pytest.mark.parametrize("name", CLASSIFICATION_LOSS_FUNCS)
def test_every_loss_func_against_its_formula(name, targets):
    assert classification_loss(name, LOGITS, targets).item() == pytest.approx(_by_hand(name, LOGITS, targets), rel=1e-5)


def test_unknown_loss_func_is_refused():
    with pytest.raises(ValueError, match="'contrastive_loss'"):
        classification_loss("contrastive_loss", LOGITS, HARD)


@pytest.mark.parametrize("name", CLASSIFICATION_LOSS_FUNCS)
def test_compute_loss_uses_the_mixed_targets(name):
    """With mixup the loss sees the mixed clips and their soft targets, whatever MODEL.LOSS_FUNC is."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 4 * 4, 4))
    videos = torch.randn(4, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    mixed, targets = Mixup(1.0, 0.0, 1.0, 0.0, 0.1, 4, rng=random.Random(7))(videos, labels)
    loss, logits = compute_loss(model, videos, labels, Mixup(1.0, 0.0, 1.0, 0.0, 0.1, 4, rng=random.Random(7)), name)
    torch.testing.assert_close(logits, model(mixed))
    assert loss.item() == pytest.approx(_by_hand(name, model(mixed).detach(), targets), rel=1e-5)


def test_train_step_trains_with_the_configured_loss(tmp_path):
    run = make_run(tmp_path, "MODEL.LOSS_FUNC", "bce_logit")
    data = batch(4, seed=3)
    torch.manual_seed(11)  # the same head-dropout mask in both forward passes
    with torch.no_grad():
        expected = _by_hand("bce_logit", run.model(data["video"]), data["label"])
    torch.manual_seed(11)
    out = train_step(run, data, None, 0, 0, Accumulation.of(0, 1, 1))
    assert out["loss"] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------------------ loss explosion


def _pyslowfast_kills(losses: list[float], factor: float, window: int = 10) -> int | None:
    """PySlowFast's TrainMeter.update_stats: the first iteration whose loss exceeds factor x the mean of the 5
    losses before it, once its LOG_PERIOD deque holds more than 6 values."""
    recent: deque[float] = deque(maxlen=window)
    for i, loss in enumerate(losses):
        recent.append(loss)
        if factor > 0.0 and len(recent) > 6:
            previous = sum(recent[len(recent) - j] for j in range(2, 7))
            if loss > factor * previous / 5.0:
                return i
    return None


def _guard_kills(losses: list[float], factor: float) -> int | None:
    guard = LossExplosionGuard(factor)
    return next((i for i, loss in enumerate(losses) if guard.exploded(loss, epoch=0) is not None), None)


@pytest.mark.parametrize(
    ("losses", "killed_at"),
    [
        ([2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 4.6], None),  # 3 x mean(1.9 .. 1.5) = 5.1: kept
        ([2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 5.2], 6),
        ([9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.5], 6),  # the first loss is not among the 5 before the 7th
        ([9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.5, 20.0], 8),  # once the 9s left the 5 before
        ([5.0, 50.0, 500.0, 5000.0, 50000.0, 6.0], None),  # too early: fewer than 6 losses before
    ],
)
def test_explosion_check_is_pyslowfast_trainmeter(losses, killed_at):
    assert _pyslowfast_kills(losses, 3.0) == killed_at
    assert _guard_kills(losses, 3.0) == killed_at
    assert _guard_kills(losses, 0.0) is None


def test_explosion_history_restarts_each_epoch():
    guard = LossExplosionGuard(2.0)
    for loss in [1.0] * 6:
        assert guard.exploded(loss, epoch=0) is None
    assert guard.exploded(5.0, epoch=1) is None  # a new epoch: no history yet
    assert guard.exploded(2.5, epoch=0) is None and guard.exploded(1.0, epoch=0) is None


def test_exploding_loss_stops_training_before_the_update(tmp_path):
    run = make_run(tmp_path, "TRAIN.KILL_LOSS_EXPLOSION_FACTOR", "10")
    for loss in [0.01] * 6:  # six tiny losses of this epoch so far
        run.loss_guard.exploded(loss, epoch=0)
    before = params(run)
    message = (r"^loss \S+ is more than TRAIN.KILL_LOSS_EXPLOSION_FACTOR=10 times the mean of the 5 before it "
               r"\(0.01\) at epoch 1, iteration 7; ")
    with pytest.raises(TrainingDiverged, match=message):
        train_step(run, batch(4), None, 0, 6, Accumulation.of(6, 7, 1))
    assert all(torch.equal(before[k], v) for k, v in params(run).items())
