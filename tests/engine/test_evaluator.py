"""Multi-view evaluation: aggregation, metrics on hand-made predictions, distributed gather and result files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mvit_video.config.defaults import HEAD_ACTS
from mvit_video.engine.evaluator import (
    EvaluationError,
    MultiViewAccumulator,
    aggregate_views,
    average_precision,
    compute_metrics,
    format_metrics,
    gather,
    load_predictions,
    topk_ranked,
    write_results,
)

# 4 videos x 2 views x 3 classes, given as view probabilities (the logits are their logs, so softmax gives them back).
VIEW_PROBS = torch.tensor(
    [
        [[0.70, 0.20, 0.10], [0.60, 0.30, 0.10]],  # label 0: both ensembles -> 0 (right)
        [[0.20, 0.70, 0.10], [0.10, 0.80, 0.10]],  # label 1: both -> 1 (right)
        [[0.60, 0.10, 0.30], [0.50, 0.20, 0.30]],  # label 2: both -> 0 (wrong), class 2 second
        [[0.60, 0.35, 0.05], [0.05, 0.45, 0.50]],  # label 1: sum [.65 .80 .55] -> 1 (right); max [.60 .45 .50] -> 0
    ]
)
LOGITS = VIEW_PROBS.log()
LABELS = torch.tensor([0, 1, 2, 1])
INDICES = torch.tensor([10, 11, 12, 13])


def _filled(ensemble: str = "sum") -> MultiViewAccumulator:
    acc = MultiViewAccumulator(num_classes=3, num_views=2, ensemble=ensemble)
    acc.add(INDICES[:3], LOGITS[:3], LABELS[:3], torch.ones(3, dtype=torch.bool), ["", "", ""])
    acc.add(INDICES[3:], LOGITS[3:], LABELS[3:], torch.ones(1, dtype=torch.bool), [""])
    return acc


def test_aggregate_views_follows_pyslowfast_sum_and_max():
    sums = aggregate_views(LOGITS, "sum")
    maxes = aggregate_views(LOGITS, "max")
    torch.testing.assert_close(sums[3], torch.tensor([0.65, 0.80, 0.55]))
    torch.testing.assert_close(maxes[3], torch.tensor([0.60, 0.45, 0.50]))
    assert sums.argmax(1).tolist() == [0, 1, 0, 1]
    assert maxes.argmax(1).tolist() == [0, 1, 0, 0]
    with pytest.raises(EvaluationError, match="'mean'"):
        aggregate_views(LOGITS, "mean")


def test_sum_ensemble_metrics_exact():
    m = compute_metrics(_filled("sum"))
    assert m["top1"] == pytest.approx(75.0)
    assert m["top5"] == pytest.approx(100.0)  # k capped at 3 classes
    assert m["mean_class_acc"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    assert (m["num_videos"], m["num_views"], m["num_failed"]) == (4, 2, 0)
    assert m["confusion_matrix"].tolist() == [[1, 0, 0], [0, 2, 0], [1, 0, 0]]
    assert m["confusion_matrix"].dtype == torch.int64


def test_max_ensemble_metrics_exact():
    m = compute_metrics(_filled("max"))
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(100.0)
    assert m["mean_class_acc"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert m["confusion_matrix"].tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 0]]


def test_topk_capped_and_second_choice_counts():
    acc = MultiViewAccumulator(num_classes=3, num_views=2)
    acc.add(INDICES, LOGITS, LABELS)
    m = compute_metrics(acc, topk=(1, 2))
    assert m["top5"] == pytest.approx(100.0)  # video 12's class 2 is second
    acc = MultiViewAccumulator(num_classes=3, num_views=2)
    acc.add(INDICES, LOGITS, torch.tensor([0, 1, 1, 1]))  # video 12 labelled 1: last place for both ensembles
    assert compute_metrics(acc, topk=(1, 2))["top5"] == pytest.approx(75.0)
    assert compute_metrics(acc)["top5"] == pytest.approx(100.0)


def test_mean_class_accuracy_by_hand_skips_absent_classes():
    # 4 classes; labels 0,0,0,1; predictions 0,0,1,1; classes 2 and 3 have no video.
    logits = torch.full((4, 1, 4), -5.0)
    for i, pred in enumerate([0, 0, 1, 1]):
        logits[i, 0, pred] = 5.0
    acc = MultiViewAccumulator(num_classes=4, num_views=1)
    acc.add(torch.arange(4), logits, torch.tensor([0, 0, 0, 1]))
    m = compute_metrics(acc)
    assert m["top1"] == pytest.approx(75.0)
    assert m["mean_class_acc"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert m["confusion_matrix"].sum(1).tolist() == [3, 1, 0, 0]


def test_failed_videos_excluded_and_counted():
    acc = MultiViewAccumulator(num_classes=3, num_views=2)
    garbage = torch.tensor([[[0.0, 0.0, 9.0], [0.0, 0.0, 9.0]]])
    acc.add(
        torch.tensor([10, 99, 11]),
        torch.cat([LOGITS[:1], garbage, LOGITS[1:2]]),
        torch.tensor([0, 0, 1]),
        torch.tensor([True, False, True]),
        ["", "corrupt moov atom", ""],
    )
    acc.add(torch.tensor([98]), garbage, torch.tensor([1]), torch.tensor([False]), [""])
    acc.add(INDICES[2:], LOGITS[2:], LABELS[2:], torch.ones(2, dtype=torch.bool), ["", ""])
    m = compute_metrics(acc)
    expected = compute_metrics(_filled())
    assert (m["num_videos"], m["num_failed"]) == (4, 2)
    for key in ("top1", "top5", "mean_class_acc"):
        assert m[key] == pytest.approx(expected[key])
    assert torch.equal(m["confusion_matrix"], expected["confusion_matrix"])
    assert acc.failed == [{"index": 98, "error": "unreadable video"}, {"index": 99, "error": "corrupt moov atom"}]
    assert acc.missing_indices(14)[:3] == [0, 1, 2] and 98 not in acc.missing_indices(100)
    line = format_metrics(m)
    assert line == "test: top-1 75.00% top-5 100.00% mean-class 66.67% | 4 videos x 2 views | 2 failed (excluded)"


def test_all_failed_gives_no_accuracy():
    acc = MultiViewAccumulator(num_classes=3, num_views=2)
    acc.add([5], LOGITS[:1], [0], [False], ["decode error"])
    m = compute_metrics(acc)
    assert (m["top1"], m["top5"], m["mean_class_acc"], m["num_videos"], m["num_failed"]) == (None, None, None, 0, 1)
    assert "top-1 n/a" in format_metrics(m)


def test_duplicate_index_is_an_error_naming_it():
    acc = _filled()
    with pytest.raises(EvaluationError, match="video index 12 was added twice"):
        acc.add([12], LOGITS[:1], [0])
    with pytest.raises(EvaluationError, match="video index 7 was added twice"):
        MultiViewAccumulator(3, 2).add([7, 7], LOGITS[:2], [0, 1])
    acc = MultiViewAccumulator(3, 2)
    acc.add([4], LOGITS[:1], [0], [False], ["bad"])
    with pytest.raises(EvaluationError, match="video index 4"):
        acc.add([4], LOGITS[:1], [0])
    assert acc.num_videos == 0  # the rejected batch left nothing behind


def test_bad_inputs_are_rejected_before_anything_is_stored():
    acc = MultiViewAccumulator(3, 2)
    with pytest.raises(EvaluationError, match=r"\(B, V, K\) = \(4, 2, 3\)"):
        acc.add(INDICES, LOGITS[:, :1], LABELS)
    with pytest.raises(EvaluationError, match="label 3 is outside 0..2"):
        acc.add(INDICES, LOGITS, torch.tensor([0, 1, 3, 1]))
    with pytest.raises(EvaluationError, match="not supported"):
        MultiViewAccumulator(3, 2, ensemble="avg")
    acc.add(INDICES, LOGITS, LABELS)  # the indices were not claimed by the failed calls
    assert acc.num_videos == 4


def test_state_is_sorted_by_index_whatever_the_batch_order():
    acc = MultiViewAccumulator(3, 2)
    order = [3, 0, 2, 1]
    acc.add(INDICES[order], LOGITS[order], LABELS[order])
    state = acc.state()
    assert state["indices"].tolist() == INDICES.tolist() and state["labels"].tolist() == LABELS.tolist()
    torch.testing.assert_close(state["view_logits"], LOGITS)
    acc.add([5], LOGITS[:1], [0])  # more after a state(): still sorted
    assert acc.state()["indices"].tolist() == [5] + INDICES.tolist()


def test_gather_without_process_group_is_a_no_op():
    acc = _filled()
    assert gather(acc) is acc


def _gather_worker(rank: int, init_file: str, out_dir: str, duplicate: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        acc = MultiViewAccumulator(num_classes=3, num_views=2, ensemble="max")
        mine = [0, 2] if rank == 0 else [1, 3]  # ShardSampler order: rank r gets r, r + 2, ...
        if duplicate and rank == 1:
            mine = [1, 2]
        acc.add(INDICES[mine], LOGITS[mine], LABELS[mine])
        acc.add([100 + rank], LOGITS[:1], [0], [False], [f"broken on rank {rank}"])
        try:
            merged = gather(acc)
        except EvaluationError as e:
            torch.save({"error": str(e)}, f"{out_dir}/rank{rank}.pt")
            return
        metrics = compute_metrics(merged)
        torch.save({"metrics": metrics, "state": merged.state()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn_gather(tmp_path, duplicate: bool) -> list[dict]:
    mp.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path), duplicate), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_gather_two_gloo_processes_equals_single_process(tmp_path):
    single = MultiViewAccumulator(num_classes=3, num_views=2, ensemble="max")
    single.add(INDICES, LOGITS, LABELS)
    single.add([100, 101], LOGITS[:2], [0, 0], [False, False], ["broken on rank 0", "broken on rank 1"])
    expected = compute_metrics(single)
    for out in _spawn_gather(tmp_path, duplicate=False):
        m = out["metrics"]
        for key in ("top1", "top5", "mean_class_acc", "num_videos", "num_views", "num_failed"):
            assert m[key] == pytest.approx(expected[key])
        assert torch.equal(m["confusion_matrix"], expected["confusion_matrix"])
        assert torch.equal(out["state"]["indices"], INDICES)
        torch.testing.assert_close(out["state"]["view_logits"], LOGITS)
        assert out["state"]["failed"] == single.failed


def test_gather_rejects_a_video_on_two_ranks(tmp_path):
    for out in _spawn_gather(tmp_path, duplicate=True):
        assert "rank 1: video index 12 was added twice" in out["error"]


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_write_results_files(tmp_path):
    acc = _filled("sum")
    acc.add([99], LOGITS[:1], [0], [False], ["corrupt moov atom"])
    metrics = compute_metrics(acc)
    paths = write_results(tmp_path / "out", metrics, acc, "ckpt/best.pyth", "configs/k400.yaml", ["a", "b", "c"])

    results = json.loads((tmp_path / "out" / "test_results.json").read_text())
    keys = {"top1", "top5", "mean_class_acc", "map", "num_videos", "num_views", "num_failed", "checkpoint", "config"}
    assert set(results) == keys | {"failed"}
    assert results["top1"] == pytest.approx(75.0) and results["top5"] == pytest.approx(100.0)
    assert results["map"] is None  # single-label: no mAP
    assert results["mean_class_acc"] == pytest.approx(200 / 3)
    assert (results["num_videos"], results["num_views"], results["num_failed"]) == (4, 2, 1)
    assert (results["checkpoint"], results["config"]) == ("ckpt/best.pyth", "configs/k400.yaml")
    assert results["failed"] == [{"index": 99, "error": "corrupt moov atom"}]

    preds = load_predictions(paths["predictions"])
    assert preds["indices"].tolist() == INDICES.tolist() and preds["labels"].tolist() == LABELS.tolist()
    assert preds["view_logits"].shape == (4, 2, 3) and preds["class_names"] == ["a", "b", "c"]
    assert preds["ensemble"] == "sum" and preds["head_act"] == "softmax" and preds["num_views"] == 2
    torch.testing.assert_close(preds["video_scores"], aggregate_views(LOGITS, "sum"))
    top1 = (aggregate_views(preds["view_logits"], preds["ensemble"]).argmax(1) == preds["labels"]).float().mean()
    assert 100 * top1.item() == pytest.approx(results["top1"])
    top1_max = (aggregate_views(preds["view_logits"], "max").argmax(1) == preds["labels"]).float().mean()
    assert 100 * top1_max.item() == pytest.approx(50.0)  # offline re-aggregation with the other method

    width, height = _png_size(tmp_path / "out" / "confusion_matrix.png")
    assert 400 <= width <= 2500 and 400 <= height <= 2500
    assert "pyslowfast_results" not in paths  # TEST.SAVE_RESULTS_PATH empty


def test_confusion_png_many_classes_without_names(tmp_path):
    k = 60
    acc = MultiViewAccumulator(num_classes=k, num_views=1)
    labels = torch.arange(120) % k
    logits = torch.nn.functional.one_hot((labels + (torch.arange(120) % 7 == 0).long()) % k, k).float()[:, None] * 4
    acc.add(torch.arange(120), logits, labels)
    metrics = compute_metrics(acc)
    assert metrics["top1"] == pytest.approx(100 * (120 - 18) / 120)
    write_results(tmp_path, metrics, acc, None, None)
    width, height = _png_size(tmp_path / "confusion_matrix.png")
    assert 800 <= width <= 2500 and 800 <= height <= 2500
    assert json.loads((tmp_path / "test_results.json").read_text())["checkpoint"] is None
    with pytest.raises(EvaluationError, match="2 class names given for 60 classes"):
        write_results(tmp_path, metrics, acc, None, None, ["a", "b"])


def test_format_metrics_line():
    metrics = {"top1": 71.234, "top5": 90.1, "mean_class_acc": 70.52, "num_videos": 19796, "num_views": 5,
               "num_failed": 8}  # fmt: skip
    assert format_metrics(metrics) == (
        "test: top-1 71.23% top-5 90.10% mean-class 70.52% | 19796 videos x 5 views | 8 failed (excluded)"
    )
    multi = {**metrics, "multi_label": True, "map": 45.104}
    assert format_metrics(multi, "val") == "val: mAP 45.10% | 19796 videos x 5 views | 8 failed (excluded)"


# --------------------------------------------------------------------------------- head activation and multi-label


def _act_by_hand(logits: torch.Tensor, act: str) -> torch.Tensor:
    if act == "softmax":
        return logits.exp() / logits.exp().sum(dim=-1, keepdim=True)
    if act == "sigmoid":
        return 1.0 / (1.0 + (-logits).exp())
    assert act == "none"
    return logits


@pytest.mark.parametrize("act", HEAD_ACTS)
def test_every_head_act_is_the_test_time_rule(act):
    """Each MODEL.HEAD_ACT value scores the views before the ensemble (PySlowFast's head in eval mode)."""
    logits = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    by_hand = _act_by_hand(logits, act)
    torch.testing.assert_close(aggregate_views(logits, "sum", act), by_hand.sum(1))
    torch.testing.assert_close(aggregate_views(logits, "max", act), by_hand.max(1).values)
    acc = MultiViewAccumulator(4, 3, "sum", head_act=act)
    acc.add(torch.arange(5), logits, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(acc.scores()[1], by_hand.sum(1))
    with pytest.raises(ValueError, match="'relu'"):
        MultiViewAccumulator(4, 3, head_act="relu")


def _ap_without_ties(scores: list[float], positives: list[bool]) -> float:
    """AP of distinct scores: the mean over positives of the precision at their rank."""
    ranked = [hit for _, hit in sorted(zip(scores, positives), key=lambda pair: -pair[0])]
    precisions, found = [], 0
    for rank, hit in enumerate(ranked, start=1):
        if hit:
            found += 1
            precisions.append(found / rank)
    return sum(precisions) / len(precisions)


def test_average_precision_against_its_definition():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        scores, positives = torch.rand(40, generator=g), torch.rand(40, generator=g) < 0.3
        positives[0] = True
        expected = _ap_without_ties(scores.tolist(), positives.tolist())
        assert average_precision(scores, positives) == pytest.approx(expected)
    # tied videos enter together (scikit-learn's thresholds): 0.9 -> P 1, R 1/2; 0.8 -> P 2/3, R 1
    tied = average_precision(torch.tensor([0.9, 0.8, 0.8, 0.1]), torch.tensor([True, False, True, False]))
    assert tied == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


MULTI_LOGITS = torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(5))
MULTI_LABELS = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0]])


def test_multi_label_map_over_classes_with_positives():
    """mAP of sigmoid-summed views, over classes 0-2 only (class 3 has no positive video: PySlowFast drops it)."""
    acc = MultiViewAccumulator(4, 2, "sum", head_act="sigmoid", multi_label=True)
    acc.add(torch.arange(3), MULTI_LOGITS[:3], MULTI_LABELS[:3])
    acc.add(torch.arange(3, 6), MULTI_LOGITS[3:], MULTI_LABELS[3:].float())
    metrics = compute_metrics(acc)
    video_scores = _act_by_hand(MULTI_LOGITS, "sigmoid").sum(1)
    expected = [_ap_without_ties(video_scores[:, k].tolist(), (MULTI_LABELS[:, k] > 0).tolist()) for k in range(3)]
    assert metrics["map"] == pytest.approx(100 * sum(expected) / 3)
    assert metrics["multi_label"] and metrics["top1"] is None and metrics["confusion_matrix"] is None
    with pytest.raises(EvaluationError, match="rows of 0 and 1"):
        acc.add([9], MULTI_LOGITS[:1], torch.tensor([[2, 0, 0, 0]]))
    with pytest.raises(EvaluationError, match=r"\(B, K\) = \(1, 4\)"):
        acc.add([9], MULTI_LOGITS[:1], torch.tensor([1]))


def test_multi_label_results_files_and_pyslowfast_pickle(tmp_path):
    acc = MultiViewAccumulator(4, 2, "max", head_act="sigmoid", multi_label=True)
    acc.add(torch.arange(6), MULTI_LOGITS, MULTI_LABELS)
    metrics = compute_metrics(acc)
    paths = write_results(tmp_path, metrics, acc, None, None, save_results_path="preds/results.pkl")
    results = json.loads((tmp_path / "test_results.json").read_text())
    assert results["map"] == pytest.approx(metrics["map"]) and results["top1"] is None
    assert "confusion_matrix" not in paths and not (tmp_path / "confusion_matrix.png").exists()
    assert paths["pyslowfast_results"] == str(tmp_path / "preds" / "results.pkl")
    with open(paths["pyslowfast_results"], "rb") as f:
        scores, labels = pickle.load(f)  # PySlowFast's layout: [video scores (N, K), labels]
    torch.testing.assert_close(scores, _act_by_hand(MULTI_LOGITS, "sigmoid").max(1).values)
    assert labels.tolist() == MULTI_LABELS.float().tolist()


def test_single_label_pyslowfast_pickle(tmp_path):
    acc = _filled("sum")
    paths = write_results(tmp_path, compute_metrics(acc), acc, None, None, save_results_path=str(tmp_path / "r.pkl"))
    with open(tmp_path / "r.pkl", "rb") as f:
        scores, labels = pickle.load(f)
    torch.testing.assert_close(scores, VIEW_PROBS.sum(1))
    assert labels.tolist() == LABELS.tolist() and paths["pyslowfast_results"] == str(tmp_path / "r.pkl")


def test_multi_hot_top_k_hit_is_a_true_class_in_the_top_k():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.3, 0.9], [0.1, 0.8, 0.7]])
    labels = torch.tensor([[0, 1, 1], [0, 0, 1], [1, 0, 1]])
    _, (top1, top2) = topk_ranked(scores, labels, (1, 2))
    assert top1 == pytest.approx(100 / 3) and top2 == pytest.approx(100.0)
