"""build_dataset / build_loader: items and batches against PySlowFast's protocols (re-derived in
``pyslowfast_reference.py`` from frames decoded here with PyAV), test views decoded once, bad files, config mistakes."""

from __future__ import annotations

import json
import random

import av
import numpy as np
import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.badfiles import BadVideoLog, TooManyBadVideos
from mvit_video.data.decode import VideoReader
from mvit_video.data.kinetics import ClipSampling, MultiViewDataset, SpatialViews
from mvit_video.data.loader import build_dataset, build_loader, build_train_transform
from mvit_video.data.records import DatasetError, VideoRecord
from mvit_video.data.sampling import test_clip_indices
from mvit_video.data.toy import make_toy_dataset
from mvit_video.data.transforms import RandAugment
from tests.conftest import ROOT
from tests.data import pyslowfast_reference as ref
from tests.data.synthetic_videos import read_index, write_video

TOY_CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_toy_dataset(out, num_per_class=2, seed=0, val_per_class=1, test_per_class=1)
    return out


TOY_MEAN, TOY_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# toy videos are 64x80, 80x64, 64x64 or 72x72: these sizes make every view resize (down and up)
TOY_SIZES = ["DATA.TRAIN_JITTER_SCALES", "[56, 72]", "DATA.TRAIN_CROP_SIZE", "48", "DATA.TEST_CROP_SIZE", "48"]


def decode_all(path) -> tuple[np.ndarray, float]:
    """Every frame of a video in decode order, (N, H, W, 3) uint8, and its average frame rate (PySlowFast's)."""
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]), fps


def item_rng(cfg, index: int, epoch: int = 0) -> random.Random:
    """The random stream of a training item's first attempt (badfiles.load_or_replace)."""
    return random.Random(f"{cfg.RNG_SEED}-{epoch}-{index}-0")


def toy_cfg(toy_dir, tmp_path, *opts):
    return load_config(TOY_CONFIG, [
        "DATA.PATH_TO_DATA_DIR", str(toy_dir), "DATA.PATH_PREFIX", str(toy_dir), "OUTPUT_DIR", str(tmp_path),
        "DATA_LOADER.NUM_WORKERS", "0", *opts,
    ])  # fmt: skip


def test_train_items_equal_pyslowfast_spatial_sampling(toy_dir, tmp_path):
    """Without AUG (the toy config has no flip): PySlowFast's training clip, a random start (decode_indices),
    normalised, short side round(uniform(56, 72)), random 48 crop; the draws from the item's stream in that order."""
    cfg = toy_cfg(toy_dir, tmp_path, "AUG.ENABLE", "False", *TOY_SIZES)
    dataset = build_dataset(cfg, "train")
    for index in (0, 5, 9):
        frames, fps = decode_all(dataset.records[index].path)
        rng = item_rng(cfg, index)
        indices = ref.decode_indices(len(frames), 8, 2, fps, 15, -1, 1, False, rng)
        video = ref.tensor_normalize(torch.from_numpy(frames[indices]), TOY_MEAN, TOY_STD).permute(3, 0, 1, 2)
        video = ref.short_side_scale(video, round(rng.uniform(56, 72)))
        height, width = video.shape[2:]
        y0 = rng.randrange(0, height - 48) if height > 48 else 0  # np.random.randint(0, height - size)
        x0 = rng.randrange(0, width - 48) if width > 48 else 0
        expected = video[:, :, y0 : y0 + 48, x0 : x0 + 48]
        torch.testing.assert_close(dataset[index]["video"], expected, rtol=0, atol=1e-6)


def test_train_batches_stack_the_sampled_items(toy_dir, tmp_path):
    cfg = toy_cfg(toy_dir, tmp_path, "TRAIN.BATCH_SIZE", "4")
    loader, dataset = build_loader(cfg, "train"), build_dataset(cfg, "train")
    batch = next(iter(loader))
    indices = batch["index"].tolist()
    assert indices == list(loader.sampler)[:4]
    assert torch.equal(batch["video"], torch.stack([dataset[i]["video"] for i in indices]))
    assert batch["label"].tolist() == [dataset.records[i].label for i in indices]
    assert len(loader) == 12 // 4  # 6 classes x 2 videos, drop_last


def test_train_items_are_reproducible_per_epoch(toy_dir, tmp_path):
    dataset = build_dataset(toy_cfg(toy_dir, tmp_path), "train")
    a, b = dataset[3]["video"], dataset[3]["video"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["video"], a)


def test_repeated_augmentation_flattens(toy_dir, tmp_path):
    cfg = toy_cfg(toy_dir, tmp_path, "TRAIN.BATCH_SIZE", "2", "AUG.NUM_SAMPLE", "3")
    batch, dataset = next(iter(build_loader(cfg, "train"))), build_dataset(cfg, "train")
    first, second = batch["index"][0].item(), batch["index"][3].item()
    assert batch["index"].tolist() == [first] * 3 + [second] * 3
    # the 3 samples of a video are its item's 3 augmentations, in order
    assert torch.equal(batch["video"][:3], dataset[first]["video"])
    assert torch.equal(batch["video"][3:], dataset[second]["video"])
    assert batch["label"].tolist() == [dataset.records[first].label] * 3 + [dataset.records[second].label] * 3
    assert not torch.equal(batch["video"][0], batch["video"][1])  # same video, different augmentation


def test_val_and_test_batches_equal_pyslowfast_views(toy_dir, tmp_path):
    """Validation: one view, the clip at USE_OFFSET_SAMPLING's centre, short side TRAIN_JITTER_SCALES[0] = 56,
    centre crop 48. Test with 3 crops: PySlowFast's 3 temporal x 3 spatial views (short side TEST_CROP_SIZE = 48)."""
    cfg = toy_cfg(toy_dir, tmp_path, "TEST.BATCH_SIZE", "3", "TEST.NUM_SPATIAL_CROPS", "3", *TOY_SIZES)
    val = next(iter(build_loader(cfg, "val")))  # TRAIN.BATCH_SIZE 8 > 6 videos: all of them
    test = next(iter(build_loader(cfg, "test")))
    val_records, test_records = build_dataset(cfg, "val").records, build_dataset(cfg, "test").records
    assert val["valid"].all() and test["valid"].all() and test["error"] == ["", "", ""]
    for row, index in enumerate(val["index"].tolist()):
        frames, fps = decode_all(val_records[index].path)
        clip = ref.decode_indices(len(frames), 8, 2, fps, 15, 0, 1, True)
        expected = ref.kinetics_view(torch.from_numpy(frames[clip]), 56, 48, 1, TOY_MEAN, TOY_STD)
        torch.testing.assert_close(val["video"][row], expected, rtol=0, atol=1e-6)
    for row, index in enumerate(test["index"].tolist()):
        frames, fps = decode_all(test_records[index].path)
        clips = [ref.decode_indices(len(frames), 8, 2, fps, 15, k, 3, True) for k in range(3)]
        expected = [ref.kinetics_view(torch.from_numpy(frames[c]), 48, 48, s, TOY_MEAN, TOY_STD) for c in clips
                    for s in range(3)]  # fmt: skip
        torch.testing.assert_close(test["video"][row], torch.stack(expected), rtol=0, atol=1e-6)


def test_multiview_decodes_each_video_once_and_returns_exact_frames(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", num_frames=90, size=(48, 64), fps=30, gop=250, bframes=2)
    calls = []
    original = VideoReader.get_frames

    def counting(self, indices):
        calls.append(list(indices))
        return original(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames", counting)
    sampling = ClipSampling(num_frames=4, sampling_rate=5, target_fps=30, use_offset=True)
    spatial = SpatialViews(48, 48, 1, (0, 0, 0), (1, 1, 1))
    dataset = MultiViewDataset([VideoRecord(str(path), 0)], sampling, 3, spatial, BadVideoLog(None, 1, 0.5))
    views = dataset[0]["video"]
    assert len(calls) == 1  # one decode for all views
    expected = test_clip_indices(90, 4, 5, 30.0, 30.0, 3, True)
    # span 20 frames, delta 70, starts 0/35/70; linspace(start, start + 19, 4) truncated
    assert expected == [[0, 6, 12, 19], [35, 41, 47, 54], [70, 76, 82, 89]]
    assert calls[0] == sorted({i for clip in expected for i in clip})
    # un-normalise the centre 48x48 crop and read the frame index coded in each picture
    for view, clip in zip(views, expected):
        frames = (view.permute(1, 2, 3, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        assert [read_index(np.pad(f, ((0, 0), (8, 8), (0, 0)), mode="edge")) for f in frames] == clip


def test_bad_files_are_replaced_logged_and_excluded(toy_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = sorted(toy_dir.glob("train/*.mp4"))
    (data / "garbage.mp4").write_bytes(b"\x00\x01 not a video" * 100)
    (data / "empty.mp4").write_bytes(b"")
    rows = [f"{p} {i % 6}" for i, p in enumerate(good)] + [f"{data}/garbage.mp4 0", f"{data}/empty.mp4 1",
                                                         f"{data}/missing.mp4 2"]  # fmt: skip
    for split in ("train", "test"):
        (data / f"{split}.csv").write_text("\n".join(rows) + "\n")
    cfg = toy_cfg(toy_dir, tmp_path, "DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", "",
                  "DATA.MAX_BAD_FRACTION", "0.3")  # fmt: skip
    train = build_dataset(cfg, "train")
    items = [train[i] for i in range(len(train))]
    assert all(item["video"].shape == (3, 8, 64, 64) for item in items)
    assert all(item["index"] < len(good) for item in items)  # bad ones replaced by good ones
    log = (tmp_path / "bad_videos.txt").read_text().splitlines()
    reasons = {line.split("\t")[1].rsplit("/", 1)[-1]: line.split("\t")[2] for line in log}
    assert set(reasons) == {"garbage.mp4", "empty.mp4", "missing.mp4"}
    assert reasons["missing.mp4"] == "missing file" and "empty" in reasons["empty.mp4"]
    test = build_dataset(cfg, "test")
    results = [test[i] for i in range(len(test))]
    assert [r["valid"] for r in results] == [True] * len(good) + [False] * 3
    assert all(r["error"] for r in results[len(good):])


def test_wrong_path_prefix_stops_before_any_work(toy_dir, tmp_path):
    cfg = toy_cfg(toy_dir, tmp_path, "DATA.PATH_PREFIX", "/wrong/prefix")
    with pytest.raises(TooManyBadVideos, match=r"12 of 12 train files do not exist \(e.g. /wrong/prefix/"):
        build_dataset(cfg, "train")


@pytest.mark.parametrize(
    "opts,match",
    [
        (["DATA.DECODING_BACKEND", "torchvision"], "'torchvision' is not supported .*decord.*pyav.*torchcodec"),
        (["MODEL.NUM_CLASSES", "3"], "label [345] of .* is outside 0..2"),
        (["TRAIN.DATASET", "charades"], "TRAIN.DATASET='charades' is not supported"),
    ],
)
def test_config_mistakes_are_one_line(toy_dir, tmp_path, opts, match):
    with pytest.raises(DatasetError, match=match) as info:
        build_dataset(toy_cfg(toy_dir, tmp_path, *opts), "train")
    assert "\n" not in str(info.value)


def test_missing_split_file(tmp_path):
    with pytest.raises(DatasetError, match="split file not found: .*train.csv"):
        build_dataset(toy_cfg(tmp_path, tmp_path), "train")


def test_worker_processes_give_the_same_batches(toy_dir, tmp_path):
    cfg0 = toy_cfg(toy_dir, tmp_path, "TRAIN.BATCH_SIZE", "4")
    cfg2 = toy_cfg(toy_dir, tmp_path, "TRAIN.BATCH_SIZE", "4", "DATA_LOADER.NUM_WORKERS", "2")
    a, b = next(iter(build_loader(cfg0, "train"))), next(iter(build_loader(cfg2, "train")))
    assert torch.equal(a["index"], b["index"])
    torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=0)


def test_k400_recipe_items_are_the_recipe_on_pyslowfast_clips(tmp_path):
    """configs/K400/MVITv2_S_16x4.yaml's recipe: PySlowFast's order, RandAugment with AUG.INTERPOLATION (bicubic),
    random resized crop, erasing; AUG.NUM_SAMPLE = 2 augmentations of one clip at PySlowFast's random indices."""
    path = write_video(tmp_path / "clip.mp4", num_frames=80, size=(128, 170), fps=30)
    (tmp_path / "train.csv").write_text(f"{path} 5\n{path} 7\n")
    cfg = load_config(ROOT / "configs/K400/MVITv2_S_16x4.yaml", [
        "DATA.PATH_TO_DATA_DIR", str(tmp_path), "OUTPUT_DIR", str(tmp_path), "DATA.TRAIN_CROP_SIZE", "96",
        "DATA.TEST_CROP_SIZE", "96",
    ])  # fmt: skip
    transform = build_train_transform(cfg)
    assert transform.order == "pyslowfast" and transform.flip and transform.crop_size == 96
    assert transform.rand_augment == RandAugment(7, 4, 0.5, increasing=True, interpolation="bicubic")
    assert (transform.erasing.prob, transform.erasing.mode, transform.erasing.count) == (0.25, "pixel", 1)
    assert (tuple(transform.relative_scale), tuple(transform.relative_aspect)) == ((0.08, 1.0), (0.75, 1.3333))
    item = build_dataset(cfg, "train")[1]
    frames, fps = decode_all(path)
    rng = item_rng(cfg, 1)
    clip = torch.from_numpy(frames[ref.decode_indices(len(frames), 16, 4, fps, 30, -1, 1, False, rng)])
    clip = clip.permute(0, 3, 1, 2)  # (T, C, H, W)
    assert item["label"] == 7
    torch.testing.assert_close(item["video"], torch.stack([transform(clip, rng), transform(clip, rng)]), rtol=0, atol=0)


def test_aug_order_key_selects_the_order_and_refuses_others():
    from mvit_video.config import ConfigError
    from mvit_video.config.validation import _AUG_ORDERS
    from mvit_video.data.pipeline import AUG_ORDERS

    assert _AUG_ORDERS == AUG_ORDERS  # the config layer keeps its own copy (it does not import data)
    for order in AUG_ORDERS:
        cfg = load_config(ROOT / "configs/K400/MVITv2_S_16x4.yaml", ["AUG.ORDER", order])
        assert build_train_transform(cfg).order == order
    with pytest.raises(ConfigError, match=r"AUG.ORDER='augment_last' must be pyslowfast or crop_first$"):
        load_config(ROOT / "configs/K400/MVITv2_S_16x4.yaml", ["AUG.ORDER", "augment_last"])
    # PySlowFast trains images with timm's pipeline: the crop first
    image = load_config(ROOT / "configs/IN1K/MVITv2_T.yaml")
    assert image.AUG.ORDER == "pyslowfast" and build_train_transform(image).order == "crop_first"


def test_augmentation_config_mistakes_are_one_line(tmp_path):
    for opts, match in [
        (["AUG.INTERPOLATION", "lanczos"], r"AUG.INTERPOLATION='lanczos' is not supported .*bilinear.*bicubic"),
        (["AUG.AA_TYPE", "rand-m7-x4"], r"AUG.AA_TYPE: RandAugment string 'rand-m7-x4': unknown section"),
        (["DATA.TRAIN_JITTER_SCALES_RELATIVE", "[]", "DATA.TRAIN_JITTER_SCALES", "[200, 320]"],
         r"DATA.TRAIN_JITTER_SCALES=\[200, 320\] starts below DATA.TRAIN_CROP_SIZE=224"),
    ]:  # fmt: skip
        cfg = load_config(ROOT / "configs/K400/MVITv2_S_16x4.yaml", ["OUTPUT_DIR", str(tmp_path), *opts])
        with pytest.raises(DatasetError, match=match) as info:
            build_dataset(cfg, "train")
        assert "\n" not in str(info.value)


def test_ssv2_layout_with_webm_and_uniform_sampling(tmp_path):
    labels = {"Pushing something from left to right": "0", "Moving something up": "1"}
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = [{"id": "11", "template": "Pushing [something] from left to right"},
               {"id": "12", "template": "Moving [something] up"}]  # fmt: skip
    for name in ("train", "validation"):
        (tmp_path / f"something-something-v2-{name}.json").write_text(json.dumps(entries))
    for entry in entries:
        write_video(tmp_path / f"{entry['id']}.webm", num_frames=48, size=(64, 64), fps=12)
    cfg = load_config(ROOT / "configs/SSv2/MVITv2_S_16x4.yaml", [
        "DATA.PATH_TO_DATA_DIR", str(tmp_path), "OUTPUT_DIR", str(tmp_path), "DATA.NUM_FRAMES", "4",
        "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64", "DATA.MEAN", "[0.0, 0.0, 0.0]",
        "DATA.STD", "[1.0, 1.0, 1.0]", "DATA.REVERSE_INPUT_CHANNEL", "False",
    ])  # fmt: skip
    test = build_dataset(cfg, "test")
    item = test[1]
    assert item["label"] == 1 and item["video"].shape == (3, 3, 4, 64, 64)  # 1 clip x 3 crops
    # SSv2 recipe (PySlowFast get_seq_frames): segments of 47 / 4 = 11.75 frames with rounded bounds
    # 0, 12, 24, 35, 47; the test view takes the middle of each: (0+12)//2, (12+24)//2, (24+35)//2, (35+47)//2
    frames = (item["video"][1].permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
    assert [read_index(f) for f in frames] == [6, 18, 29, 41]
    assert build_dataset(cfg, "train")[0]["video"].shape == (3, 4, 64, 64)


def _write_image_folder(root, classes=("cat", "dog"), per_class=3):
    from PIL import Image

    rng = np.random.default_rng(len(str(root)))
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (40 + 8 * k, 56, 3), dtype=np.uint8)  # landscape, then square
            Image.fromarray(pixels).save(root / name / f"{k}.png")


def test_image_folders_are_one_frame_clips(tmp_path):
    """Training items are one-frame clips; evaluation items are PySlowFast's ImageNet test view (torchvision's
    Resize(int(32 / 0.875), bicubic), CenterCrop(32), ToTensor, Normalize on the PIL image)."""
    from PIL import Image

    _write_image_folder(tmp_path / "train")
    _write_image_folder(tmp_path / "val", per_class=2)
    (tmp_path / "val" / "dog" / "broken.png").write_bytes(b"not a png")
    cfg = load_config(ROOT / "configs/IN1K/MVITv2_T.yaml", [
        "DATA.PATH_TO_DATA_DIR", str(tmp_path), "OUTPUT_DIR", str(tmp_path), "MODEL.NUM_CLASSES", "2",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA_LOADER.NUM_WORKERS", "0",
        "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "5", "DATA.MAX_BAD_FRACTION", "0.5",
    ])  # fmt: skip
    batch = next(iter(build_loader(cfg, "train")))
    assert batch["video"].shape == (2, 3, 1, 32, 32)
    test = next(iter(build_loader(cfg, "test")))
    assert test["label"].tolist() == [0, 0, 1, 1, 1] and test["valid"].tolist() == [True, True, True, True, False]
    files = [tmp_path / "val" / "cat" / "0.png", tmp_path / "val" / "cat" / "1.png", tmp_path / "val" / "dog" / "0.png",
             tmp_path / "val" / "dog" / "1.png"]  # fmt: skip
    mean, std = cfg.DATA.MEAN, cfg.DATA.STD
    ratio = cfg.DATA.IN_VAL_CROP_RATIO
    expected = [ref.image_test_view(Image.open(f).convert("RGB"), 32, ratio, mean, std) for f in files]
    torch.testing.assert_close(test["video"][:4, :, 0], torch.stack(expected), rtol=0, atol=1e-6)
    assert torch.equal(test["video"][4], torch.zeros(3, 1, 32, 32))  # the broken file: an empty, invalid item
    assert "broken.png" in (tmp_path / "bad_videos.txt").read_text()


def test_missing_frame_rate_falls_back_to_target_fps():
    sampling = ClipSampling(num_frames=4, sampling_rate=2, target_fps=15.0, use_offset=True)
    # no fps metadata (0): the stride applies to the video's own frames: span 8, start floor((20 - 8) / 2) = 6,
    # linspace(6, 13, 4) truncated
    assert sampling.test_indices(20, 0.0, 1) == sampling.test_indices(20, 15.0, 1) == [[6, 8, 10, 13]]


@pytest.mark.parametrize("rank", [0, 1])
def test_training_sampler_starts_after_the_items_already_used(rank):
    """With start=n, an epoch yields torch's DistributedSampler order without its first n items of this rank."""
    from torch.utils.data import DistributedSampler

    from mvit_video.data.loader import ResumableDistributedSampler

    items = list(range(13))
    sampler = ResumableDistributedSampler(items, 2, rank, shuffle=True, seed=5, drop_last=True)
    reference = DistributedSampler(items, 2, rank, shuffle=True, seed=5, drop_last=True)
    reference.set_epoch(3)
    full = list(reference)
    assert len(full) == 6
    sampler.set_epoch(3, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 2
    sampler.set_epoch(4)  # the next epoch starts at its beginning again
    reference.set_epoch(4)
    assert list(sampler) == list(reference) and len(sampler) == 6
    with pytest.raises(ValueError, match=r"start must lie in \[0, 6\]"):
        sampler.set_epoch(4, start=7)


def test_skipped_batches_are_never_loaded(toy_dir, tmp_path, monkeypatch):
    loader = build_loader(toy_cfg(toy_dir, tmp_path, "TRAIN.BATCH_SIZE", "2", "DATA.NUM_FRAMES", "4"), "train")
    loader.sampler.set_epoch(1)
    loader.dataset.set_epoch(1)
    order = list(loader.sampler)
    loaded = []
    dataset_type = type(loader.dataset)
    original = dataset_type.__getitem__
    monkeypatch.setattr(dataset_type, "__getitem__", lambda self, i: loaded.append(i) or original(self, i))
    loader.sampler.set_epoch(1, start=4)
    assert len(loader) == 4
    assert [i for batch in loader for i in batch["index"].tolist()] == order[4:]
    assert loaded == order[4:]
