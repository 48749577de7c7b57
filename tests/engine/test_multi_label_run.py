"""A multi-label run end to end: DATA.MULTI_LABEL with bce_logit and a sigmoid head, scored by mAP."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from tests.engine.runs import json_stats, run_net
from tests.engine.test_evaluator import _ap_without_ties


def test_multi_label_training_validation_and_test(toy_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):  # each toy video gets its class and the opposite motion's
        rows = [line.rsplit(" ", 1) for line in (toy_data / f"{split}.csv").read_text().splitlines()]
        (data / f"{split}.csv").write_text("".join(f"{p} {label},{(int(label) + 3) % 6}\n" for p, label in rows))
    out = tmp_path / "out"
    result = run_net(data, out, "DATA.PATH_PREFIX", str(toy_data), "DATA.MULTI_LABEL", "True", "MODEL.LOSS_FUNC",
                     "bce_logit", "MODEL.HEAD_ACT", "sigmoid", "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1",
                     "TEST.SAVE_RESULTS_PATH", "results.pkl")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    val = [s for s in json_stats(result.stdout) if s["_type"] == "val_epoch"]
    assert len(val) == 1 and 0 <= val[0]["map"] <= 100 and "top1_err" not in val[0]
    results = json.loads((out / "test_results.json").read_text())
    assert results["top1"] is None and f"test: mAP {results['map']:.2f}% | 6 videos x 2 views" in result.stdout
    predictions = torch.load(out / "test_predictions.pt", weights_only=True)
    scores, labels = predictions["video_scores"], predictions["labels"]
    expected = torch.sigmoid(predictions["view_logits"]).sum(1)  # MODEL.HEAD_ACT sigmoid, DATA.ENSEMBLE_METHOD sum
    torch.testing.assert_close(scores, expected)
    present = [k for k in range(6) if labels[:, k].any()]
    aps = [_ap_without_ties(scores[:, k].tolist(), (labels[:, k] > 0).tolist()) for k in present]
    assert results["map"] == pytest.approx(100 * sum(aps) / len(aps))
    with open(out / "results.pkl", "rb") as f:
        saved_scores, saved_labels = pickle.load(f)
    assert torch.equal(saved_scores, scores) and torch.equal(saved_labels, labels)
