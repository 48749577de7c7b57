"""Config keys of the data layer: DATA.MULTI_LABEL (CSV label lists, multi-hot batches), DATA.INV_UNIFORM_SAMPLE,
DATA_LOADER.ENABLE_MULTI_THREAD_DECODE."""

from __future__ import annotations

import random

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.loader import build_dataset, build_loader, build_train_transform
from mvit_video.data.records import DatasetError, VideoRecord, check_labels, read_csv_split
from mvit_video.data.toy import make_toy_dataset
from mvit_video.data.transforms import jitter_crop_float, normalize, random_short_side_scale_crop
from tests.conftest import TOY_CONFIG


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_toy_dataset(out, num_per_class=2, seed=0, val_per_class=1, test_per_class=1)
    return out


def toy_cfg(toy_dir, tmp_path, *opts):
    return load_config(TOY_CONFIG, [
        "DATA.PATH_TO_DATA_DIR", str(toy_dir), "DATA.PATH_PREFIX", str(toy_dir), "OUTPUT_DIR", str(tmp_path),
        "DATA_LOADER.NUM_WORKERS", "0", *opts,
    ])  # fmt: skip


def test_multi_label_csv_rows(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("a/x.mp4 3,17,42\nb/with space.mp4 5\n")
    assert read_csv_split(str(csv), "/d", multi_label=True) == [
        VideoRecord("/d/a/x.mp4", (3, 17, 42)), VideoRecord("/d/b/with space.mp4", (5,))
    ]
    csv.write_text("a.mp4 3,,4\n")
    with pytest.raises(DatasetError, match=r"train.csv:1: malformed row 'a.mp4 3,,4'; expected .*comma-separated"):
        read_csv_split(str(csv), multi_label=True)
    with pytest.raises(DatasetError, match="malformed row"):  # without DATA.MULTI_LABEL a list is an error
        read_csv_split(str(tmp_path / "train.csv"))
    with pytest.raises(DatasetError, match="label 400 of b.mp4 is outside 0..399"):
        check_labels([VideoRecord("a.mp4", (0, 399)), VideoRecord("b.mp4", (2, 400))], 400, "train.csv")


def test_multi_label_batches_are_multi_hot(toy_dir, tmp_path):
    """Each video gets its toy class and the next one: the batch's rows have 1 at exactly those two columns."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [line.rsplit(" ", 1) for line in (toy_dir / "train.csv").read_text().splitlines()]
    (data / "train.csv").write_text("".join(f"{path} {label},{(int(label) + 1) % 6}\n" for path, label in rows))
    cfg = load_config(TOY_CONFIG, ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(toy_dir),
                                   "OUTPUT_DIR", str(tmp_path), "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.BATCH_SIZE", "4",
                                   "DATA.MULTI_LABEL", "True", "AUG.NUM_SAMPLE", "2"])  # fmt: skip
    batch = next(iter(build_loader(cfg, "train")))
    assert batch["label"].dtype == torch.float32 and batch["label"].shape == (8, 6)
    for index, row in zip(batch["index"].tolist(), batch["label"]):
        first = int(rows[index][1])
        assert row.nonzero().view(-1).tolist() == sorted({first, (first + 1) % 6})


@pytest.mark.parametrize("order", ["pyslowfast", "crop_first"])
def test_inverse_uniform_short_side_reaches_the_training_crop(toy_dir, tmp_path, order):
    """DATA.INV_UNIFORM_SAMPLE: the clip is the crop of a short side drawn as 1 / uniform(1/max, 1/min), in both
    augmentation orders (float crop of the normalised frames, or uint8 crop then normalisation)."""
    opts = ["DATA.TRAIN_JITTER_SCALES", "[40, 96]", "DATA.TRAIN_CROP_SIZE", "32", "AUG.ENABLE", "False",
            "DATA.MEAN", "[0.0, 0.0, 0.0]", "DATA.STD", "[1.0, 1.0, 1.0]", "AUG.ORDER", order]  # fmt: skip
    inverse = build_train_transform(toy_cfg(toy_dir, tmp_path, *opts, "DATA.INV_UNIFORM_SAMPLE", "True"))
    plain = build_train_transform(toy_cfg(toy_dir, tmp_path, *opts))
    clip = torch.randint(0, 256, (2, 3, 60, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    differs = 0
    for seed in range(8):
        if order == "crop_first":
            cropped = random_short_side_scale_crop(clip, 40, 96, 32, random.Random(seed), inverse_uniform=True)
            expected = normalize(cropped, [0.0] * 3, [1.0] * 3)
        else:
            expected = jitter_crop_float(normalize(clip, [0.0] * 3, [1.0] * 3), 40, 96, 32, random.Random(seed), True)
        out = inverse(clip, random.Random(seed))
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        differs += not torch.equal(out, plain(clip, random.Random(seed)))
    assert differs >= 6


def test_multi_thread_decode_lets_the_decoder_choose_and_gives_the_same_frames(toy_dir, tmp_path):
    one = build_dataset(toy_cfg(toy_dir, tmp_path), "val")
    auto = build_dataset(toy_cfg(toy_dir, tmp_path, "DATA_LOADER.ENABLE_MULTI_THREAD_DECODE", "True"), "val")
    assert (one.decode.num_threads, auto.decode.num_threads) == (1, 0)
    torch.testing.assert_close(auto[0]["video"], one[0]["video"], rtol=0, atol=0)
