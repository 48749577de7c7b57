"""TRAIN.OVERFIT_CLIPS: a tiny model drives the loss on 4 fixed clips to ~0; refused in one line where it cannot."""

from __future__ import annotations

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.loader import build_dataset, build_loader, spread_over_labels
from mvit_video.data.records import DatasetError, VideoRecord
from mvit_video.engine.trainer import setup_run, train_epoch
from tests.conftest import TINY_CLIP, TOY_CONFIG

STEPS = 30


def _cfg(toy_data, tmp_path, *opts):
    return load_config(TOY_CONFIG, [
        "DATA.PATH_TO_DATA_DIR", str(toy_data), "DATA.PATH_PREFIX", str(toy_data), "OUTPUT_DIR", str(tmp_path),
        *TINY_CLIP, "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.OVERFIT_CLIPS", "4",
        "TRAIN.BATCH_SIZE", "4", *opts,
    ])  # fmt: skip


def test_clips_are_taken_from_each_class_in_turn():
    records = [VideoRecord(f"{label}_{k}.mp4", label) for label in (2, 0, 1) for k in range(3)]
    assert [r.path for r in spread_over_labels(records, 5)] == ["2_0.mp4", "0_0.mp4", "1_0.mp4", "2_1.mp4", "0_1.mp4"]
    assert spread_over_labels(records[:4], 4) == [records[0], records[3], records[1], records[2]]


def test_the_same_clips_every_epoch_without_augmentation(toy_data, tmp_path):
    dataset = build_dataset(_cfg(toy_data, tmp_path), "train")
    assert len(dataset) == 4
    first = [dataset[i]["video"] for i in range(4)]
    dataset.set_epoch(7)
    assert all(torch.equal(a, dataset[i]["video"]) for i, a in enumerate(first))
    assert first[0].shape == (3, 4, 32, 32)


def test_tiny_model_overfits_four_clips(toy_data, tmp_path):
    # the training loop's own epochs (train_epoch: the loader, LR schedule, optimizer steps), without the per-epoch
    # validation, checkpoint and curve plotting of train(), which would cost seconds per 4-clip epoch
    cfg = _cfg(toy_data, tmp_path, "SOLVER.MAX_EPOCH", str(STEPS), "SOLVER.BASE_LR", "0.003", "SOLVER.WARMUP_EPOCHS",
               "2", "SOLVER.COSINE_END_LR", "0.0003", "SOLVER.WEIGHT_DECAY", "0.0", "LOG_PERIOD", "1",
               "AUG.COLOR_JITTER", "0.0")  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    threads = torch.get_num_threads()
    run, start = setup_run(cfg)
    torch.set_num_threads(1)  # steady on a shared 2-core machine: a second thread waits on busy cores
    try:
        loader = build_loader(cfg, "train")
        losses = [train_epoch(run, loader, epoch)["loss"] for epoch in range(start.epoch, STEPS)]
    finally:
        run.stats.close()
        torch.set_num_threads(threads)
    assert len(loader) == 1  # one batch of the 4 clips per epoch
    assert losses[0] > 1.0 and losses[-1] < 0.05, losses


@pytest.mark.parametrize("opts, message", [
    (["MIXUP.ENABLE", "True"], "set MIXUP.ENABLE False"),
    (["AUG.NUM_SAMPLE", "2"], "set AUG.NUM_SAMPLE 1"),
    (["TRAIN.OVERFIT_CLIPS", "500"], "only 12 videos"),
])  # fmt: skip
def test_refused_in_one_line_where_it_cannot_apply(toy_data, tmp_path, opts, message):
    with pytest.raises(DatasetError, match=message) as caught:
        build_dataset(_cfg(toy_data, tmp_path, *opts), "train")
    assert str(caught.value).startswith("TRAIN.OVERFIT_CLIPS=") and "\n" not in str(caught.value)


def test_bad_file_among_the_clips_is_named_before_training(toy_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.mp4").write_bytes(b"not a video")
    rows = (toy_data / "train.csv").read_text().splitlines()
    (data / "train.csv").write_text("broken.mp4 0\n" + "\n".join(f"{toy_data}/{row}" for row in rows) + "\n")
    cfg = _cfg(toy_data, tmp_path, "DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data))
    with pytest.raises(DatasetError, match="broken.mp4 cannot be decoded"):
        build_dataset(cfg, "train")
