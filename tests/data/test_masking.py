"""Token masks for masked pre-training (mvit_video/data/masking.py), the loader's masked items, unlabelled split
rows and label fractions: exact counts and shapes, seeded reproducibility."""

from __future__ import annotations

import random

import pytest
import torch

from mvit_video.data.loader import MaskedDataset, collate_clips
from mvit_video.data.masking import MaskGenerator, cube_masking, per_frame_mask, random_mask, tube_mask
from mvit_video.data.records import read_csv_split
from mvit_video.data.splits import SplitError, label_fraction, write_label_fraction

WINDOW = (8, 7, 7)  # PySlowFast's MaskFeat MViTv2-S window


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    where = mask.nonzero()
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0).values, where.max(0).values))


def test_cube_masking_reaches_the_ratio_and_never_exceeds_it():
    """As PySlowFast's generator: cubes are added while one fits the remaining count, so the count ends within one
    smallest block (9 tokens) below round(0.4 * 392) = 157, never above it."""
    target = round(8 * 7 * 7 * 0.4)
    counts = [int(MaskGenerator("cube", WINDOW, 0.4)(random.Random(seed)).sum()) for seed in range(20)]
    assert all(target - 9 < c <= target for c in counts), counts
    assert target in counts


def test_one_cube_block_is_a_cuboid_within_the_size_limits():
    rule = cube_masking(WINDOW, 0.4)
    assert (rule.num_masked, rule.min_block, rule.max_block) == (157, 9, 49)
    for seed in range(10):
        mask = torch.zeros(WINDOW, dtype=torch.bool)
        added = rule.add_block(mask, 157, random.Random(seed))
        box = mask[_bounding_box(mask)]
        assert added == int(mask.sum()) == box.numel() and bool(box.all())
        t, h, w = box.shape
        assert h < 7 and w < 7 and 1 <= t <= 8


def test_cube_masks_are_reproducible_per_seed():
    gen = MaskGenerator("cube", WINDOW, 0.4)
    assert torch.equal(gen(random.Random(3)), gen(random.Random(3)))
    assert not torch.equal(gen(random.Random(3)), gen(random.Random(4)))


def test_tube_mask_is_constant_over_time_at_the_exact_count():
    mask = tube_mask((8, 14, 14), 0.9, random.Random(0))
    per_slice = int(0.9 * 14 * 14)  # VideoMAE: int(ratio * H * W) = 176
    assert mask.shape == (8, 14, 14) and int(mask.sum()) == 8 * per_slice
    assert all(torch.equal(mask[t], mask[0]) for t in range(8))
    assert torch.equal(mask, tube_mask((8, 14, 14), 0.9, random.Random(0)))
    assert not torch.equal(mask, tube_mask((8, 14, 14), 0.9, random.Random(1)))


def test_random_masks_mask_an_exact_count_anywhere_or_per_slice():
    mask = random_mask((8, 14, 14), 0.9, random.Random(0))
    assert mask.shape == (8, 14, 14) and int(mask.sum()) == int(0.9 * 8 * 14 * 14)  # 1411 of 1568
    per_slice = mask.flatten(1).sum(1)
    assert len(set(per_slice.tolist())) > 1  # drawn over the whole window: slices differ in count
    assert torch.equal(mask, random_mask((8, 14, 14), 0.9, random.Random(0)))
    frames = per_frame_mask((8, 14, 14), 0.9, random.Random(0))
    assert frames.flatten(1).sum(1).tolist() == [int(0.9 * 14 * 14)] * 8  # 176 in every slice ...
    assert not all(torch.equal(frames[t], frames[0]) for t in range(8))  # ... at other positions (not a tube)
    generated = MaskGenerator("per_frame", (8, 14, 14), 0.9)(random.Random(0))
    assert torch.equal(generated, frames)


def test_block_tube_and_frame_masks():
    block = MaskGenerator("block_tube", WINDOW, 0.4)(random.Random(0))
    assert all(torch.equal(block[t], block[0]) for t in range(8))
    assert 0 < int(block[0].sum()) <= round(49 * 0.4)
    frames = MaskGenerator("frames", WINDOW, 0.5)(random.Random(0))
    full = [bool(frames[t].all()) for t in range(8)]
    assert sum(full) == 4 and all(full[t] or not frames[t].any() for t in range(8))


def test_generator_refuses_unknown_kind_and_ratio():
    with pytest.raises(ValueError, match="mask kind"):
        MaskGenerator("blocks", WINDOW, 0.4)
    with pytest.raises(ValueError, match="ratio"):
        MaskGenerator("cube", WINDOW, 0.0)


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"video": torch.zeros(3, 2, 4, 4), "label": -1, "index": index}


def test_masked_dataset_draws_per_epoch_and_item_and_collates():
    data = MaskedDataset(_Items(), MaskGenerator("cube", (2, 4, 4), 0.5), seed=0)
    first = [data[i]["mask"] for i in range(4)]
    assert all(torch.equal(a, data[i]["mask"]) for i, a in enumerate(first))  # any worker draws the same
    assert not all(torch.equal(first[0], m) for m in first[1:])
    data.set_epoch(1)
    assert not all(torch.equal(a, data[i]["mask"]) for i, a in enumerate(first))
    batch = collate_clips([data[0], data[1]])
    assert batch["mask"].shape == (2, 2, 4, 4) and batch["mask"].dtype == torch.bool
    assert batch["label"].tolist() == [-1, -1]


def test_unlabelled_rows_are_read_for_pretraining(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("a/x.mp4 3\nb/my video.mp4\n")
    records = read_csv_split(str(csv), "/root", allow_unlabeled=True)
    assert [(r.path, r.label) for r in records] == [("/root/a/x.mp4", 3), ("/root/b/my video.mp4", -1)]
    with pytest.raises(ValueError, match="malformed row"):
        read_csv_split(str(csv), "/root")


def test_label_fraction_is_stratified_and_seeded(tmp_path):
    rows = [(f"v{i}.mp4", i % 3) for i in range(60)]  # 20 per class
    subset = label_fraction(rows, 0.1, seed=0)
    assert sorted(label for _, label in subset) == [0, 0, 1, 1, 2, 2]
    assert subset == label_fraction(rows, 0.1, seed=0) and subset != label_fraction(rows, 0.1, seed=1)
    assert [r for r in rows if r in subset] == subset  # input order kept
    assert len(label_fraction(rows[:3], 0.1)) == 3  # at least one per class
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_text("".join(f"{p} {c}\n" for p, c in rows))
    (tmp_path / "d" / "test.csv").write_text("t.mp4 0\n")
    counts = write_label_fraction(tmp_path / "d", tmp_path / "o", 0.1)
    assert counts == {"train": 6, "train_all": 60, "test": 1}
    assert (tmp_path / "o" / "test.csv").read_text() == "t.mp4 0\n"
    with pytest.raises(SplitError, match=r"\(0, 1\]"):
        label_fraction(rows, 1.5)


def test_mask_kind_follows_the_aug_switches():
    from mvit_video.data.loader import mask_kind

    assert mask_kind(False, False) == "cube" and mask_kind(False, True) == "frames"
    assert mask_kind(True, False) == "block_tube" and mask_kind(True, False, mae=True) == "tube"
    assert mask_kind(False, False, mae=True, mae_random=True) == "random"
    assert mask_kind(False, False, mae=True, mae_random=True, per_frame=True) == "per_frame"
