"""``build_dataset`` / ``build_loader``: the one place that turns the root config into data objects.

Batches are dicts. Training and validation: ``{"video": (B, 3, T, H, W) float, "label": (B,), "index": (B,)}``
(``"label"`` is (B, K) float multi-hot with ``DATA.MULTI_LABEL``; with ``AUG.GEN_MASK_LOADER`` training and validation
batches also hold ``"mask"``: (B, T', h, w) bool token masks, and unlabelled CSV rows have label -1)
(with ``AUG.NUM_SAMPLE`` = N > 1 a batch holds B*N clips, N per decoded video); validation and test items also
carry ``"valid"`` (False for unreadable videos, to be excluded from metrics) and ``"error"``. Test batches hold all
views of each video: ``"video": (B, V, 3, T, H, W)`` with V = ``TEST.NUM_ENSEMBLE_VIEWS`` x ``TEST.NUM_SPATIAL_CROPS``.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Iterator
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .. import process
from .badfiles import BadVideoLog, TooManyBadVideos
from .imagefolder import ImageDataset, read_image_folder
from .decode import SUPPORTED_BACKENDS, VideoDecodeError, probe_video
from .masking import MaskGenerator
from .kinetics import ClipDataset, ClipSampling, DecodeOptions, FixedClipDataset, MultiViewDataset, SpatialViews
from .pipeline import TrainClipTransform
from .records import DatasetError, VideoRecord, check_labels, find_missing, read_csv_split, read_ssv2_split
from .transforms import RandAugment, RandomErasing

SPLITS = ("train", "val", "test")
VIDEO_DATASETS = ("kinetics", "ssv2")
IMAGE_DATASETS = ("imagenet", "imagefolder")
BAD_VIDEO_LOG = "bad_videos.txt"

logger = logging.getLogger(__name__)


def _dataset_name(cfg, split: str) -> str:
    name = str(cfg.TRAIN.DATASET if split in ("train", "val") else cfg.TEST.DATASET).lower()
    key = "TRAIN.DATASET" if split in ("train", "val") else "TEST.DATASET"
    if name.startswith("kinetics"):
        return "kinetics"
    if name not in VIDEO_DATASETS + IMAGE_DATASETS:
        raise DatasetError(f"{key}={name!r} is not supported; use one of {VIDEO_DATASETS + IMAGE_DATASETS}")
    return name


def read_split(cfg, split: str) -> list[VideoRecord]:
    """The records of a split as the config describes them (CSV for Kinetics, JSON for SSv2, folders for images)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    name, root = _dataset_name(cfg, split), cfg.DATA.PATH_TO_DATA_DIR
    unlabeled = bool(cfg.MASK.ENABLE)  # pre-training reads no labels: rows may be bare paths
    if name == "kinetics":
        records = read_csv_split(
            os.path.join(root, f"{split}.csv"), cfg.DATA.PATH_PREFIX, cfg.DATA.PATH_LABEL_SEPARATOR,
            multi_label=cfg.DATA.MULTI_LABEL, allow_unlabeled=unlabeled,
        )
    elif name == "ssv2":
        annotation = "train" if split == "train" else "validation"
        records = read_ssv2_split(
            os.path.join(root, f"something-something-v2-{annotation}.json"),
            os.path.join(root, "something-something-v2-labels.json"),
            cfg.DATA.PATH_PREFIX or root,
        )
    else:
        records, _ = read_image_folder(os.path.join(root, "train" if split == "train" else "val"))
    if not unlabeled:
        check_labels(records, cfg.MODEL.NUM_CLASSES, f"{cfg.DATA.PATH_TO_DATA_DIR} ({split})")
    return records


def check_split(cfg, split: str) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(records, missing files) of a split; a missing split file, a label outside MODEL.NUM_CLASSES or more missing
    videos than DATA.MAX_BAD_FRACTION (a wrong path prefix) raise with one line. Reads the index and stats the
    files, nothing more: a cheap check before any work."""
    records = read_split(cfg, split)
    missing = find_missing(records)
    if len(missing) > cfg.DATA.MAX_BAD_FRACTION * len(records):
        raise TooManyBadVideos(
            f"{len(missing)} of {len(records)} {split} files do not exist (e.g. {missing[0].path}), more than "
            f"DATA.MAX_BAD_FRACTION={cfg.DATA.MAX_BAD_FRACTION}; check DATA.PATH_TO_DATA_DIR and DATA.PATH_PREFIX"
        )
    return records, missing


def _bad_log(cfg, split: str, records: list[VideoRecord], missing: list[VideoRecord]) -> BadVideoLog:
    """The split's bad-file log, with the missing files already recorded."""
    log = BadVideoLog(os.path.join(cfg.OUTPUT_DIR, BAD_VIDEO_LOG), len(records), cfg.DATA.MAX_BAD_FRACTION, split)
    for record in missing:
        log.record(record.path, "missing file")
    return log


def _decode_options(cfg) -> DecodeOptions:
    backend = str(cfg.DATA.DECODING_BACKEND).lower()
    if backend not in SUPPORTED_BACKENDS:
        raise DatasetError(
            f"DATA.DECODING_BACKEND={cfg.DATA.DECODING_BACKEND!r} is not supported (PySlowFast's 'torchvision' "
            f"reader was removed from torchvision 0.28); use one of {list(SUPPORTED_BACKENDS)}"
        )
    # PySlowFast's ENABLE_MULTI_THREAD_DECODE lets the decoder pick its threads ("AUTO"); else one per reader
    return DecodeOptions(backend=backend, num_threads=0 if cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE else 1)


def clip_sampling(cfg, split: str = "test") -> ClipSampling:
    """How a config picks the frames of a split's clips (SSv2: one frame per equal segment of the video)."""
    name = _dataset_name(cfg, split)
    return ClipSampling(
        num_frames=cfg.DATA.NUM_FRAMES,
        sampling_rate=cfg.DATA.SAMPLING_RATE,
        target_fps=float(cfg.DATA.TARGET_FPS),
        uniform=name == "ssv2",
        use_offset=cfg.DATA.USE_OFFSET_SAMPLING,
    )


def spatial_views(cfg, split: str = "test", num_crops: int | None = None) -> SpatialViews:
    """The spatial side of a split's evaluation views, PySlowFast's test protocol (``datasets/kinetics.py``).

    Test, Kinetics: one crop (``TEST.NUM_SPATIAL_CROPS`` 1) resizes the short side to ``DATA.TRAIN_JITTER_SCALES[0]``
    and centre-crops ``DATA.TEST_CROP_SIZE``; three crops resize to ``TEST_CROP_SIZE`` and slide along the long
    side. Test, SSv2 (``datasets/ssv2.py``): the short side is ``TEST_CROP_SIZE`` either way. Validation (a toolkit
    choice; PySlowFast validates on one random training-style view): one deterministic view, short side
    ``TRAIN_JITTER_SCALES[0]``, centre crop ``DATA.TRAIN_CROP_SIZE``.

    Args:
        cfg: the config.
        split: "val" or "test".
        num_crops: overrides ``TEST.NUM_SPATIAL_CROPS`` (the demo predictor takes the single-crop view).

    Raises:
        DatasetError: a crop larger than the resized short side.
    """
    scale_key = "DATA.TRAIN_JITTER_SCALES[0]"
    if split == "val":
        crops, crop_key, crop_size, short_side = 1, "DATA.TRAIN_CROP_SIZE", cfg.DATA.TRAIN_CROP_SIZE, None
    else:
        crops = cfg.TEST.NUM_SPATIAL_CROPS if num_crops is None else num_crops
        crop_key, crop_size = "DATA.TEST_CROP_SIZE", cfg.DATA.TEST_CROP_SIZE
        short_side = crop_size if crops > 1 or _dataset_name(cfg, split) == "ssv2" else None
    if short_side is None:
        short_side = cfg.DATA.TRAIN_JITTER_SCALES[0]
        if short_side < crop_size:
            raise DatasetError(
                f"{scale_key}={short_side} is smaller than {crop_key}={crop_size}: the single-crop {split} view "
                f"resizes the short side to {scale_key} and centre-crops {crop_key}; make {scale_key} >= {crop_size}"
            )
    return SpatialViews(short_side, crop_size, crops, tuple(cfg.DATA.MEAN), tuple(cfg.DATA.STD),
                        cfg.DATA.REVERSE_INPUT_CHANNEL)  # fmt: skip


_AUG_INTERPOLATIONS = ("bilinear", "bicubic")


def _rand_augment(cfg) -> RandAugment | None:
    aug = cfg.AUG
    if not (aug.ENABLE and aug.AA_TYPE):
        return None
    if aug.INTERPOLATION not in _AUG_INTERPOLATIONS:
        raise DatasetError(f"AUG.INTERPOLATION={aug.INTERPOLATION!r} is not supported for RandAugment's geometric ops; "
                           f"use one of {list(_AUG_INTERPOLATIONS)}")  # fmt: skip
    try:
        return RandAugment.from_string(aug.AA_TYPE, interpolation=aug.INTERPOLATION)
    except ValueError as e:
        raise DatasetError(f"AUG.AA_TYPE: {e}") from None


def augmentation_order(cfg) -> str:
    """The order ``TrainClipTransform`` runs in: ``AUG.ORDER``, where ``"pyslowfast"`` is PySlowFast's order for the
    dataset: RandAugment on the decoded frames, then the crop, for videos (``datasets/kinetics.py``); the crop first
    for images (``datasets/imagenet.py`` trains with timm's crop -> flip -> RandAugment pipeline)."""
    if cfg.AUG.ORDER == "pyslowfast" and _dataset_name(cfg, "train") in IMAGE_DATASETS:
        return "crop_first"
    return cfg.AUG.ORDER


def build_train_transform(cfg) -> TrainClipTransform:
    """The training augmentation of a config (the MViTv2 recipe when ``AUG.ENABLE``), in ``augmentation_order``.

    Raises:
        DatasetError: an unsupported ``AUG.INTERPOLATION`` or ``AUG.AA_TYPE``, or scale jitter whose smallest short
            side is below the crop.
    """
    aug, data = cfg.AUG, cfg.DATA
    relative_scale = tuple(data.TRAIN_JITTER_SCALES_RELATIVE)
    if len(relative_scale) != 2 and data.TRAIN_JITTER_SCALES[0] < data.TRAIN_CROP_SIZE:
        raise DatasetError(
            f"DATA.TRAIN_JITTER_SCALES={list(data.TRAIN_JITTER_SCALES)} starts below DATA.TRAIN_CROP_SIZE="
            f"{data.TRAIN_CROP_SIZE}: the random crop would not fit; raise the scales or set "
            f"DATA.TRAIN_JITTER_SCALES_RELATIVE"
        )
    return TrainClipTransform(
        crop_size=data.TRAIN_CROP_SIZE,
        mean=data.MEAN,
        std=data.STD,
        jitter_scales=tuple(data.TRAIN_JITTER_SCALES),
        relative_scale=relative_scale,
        relative_aspect=tuple(data.TRAIN_JITTER_ASPECT_RELATIVE) or (0.75, 1.3333),
        flip=data.RANDOM_FLIP,
        rand_augment=_rand_augment(cfg),
        color_jitter_strength=aug.COLOR_JITTER if aug.ENABLE else 0.0,
        erasing=RandomErasing(aug.RE_PROB, aug.RE_MODE, aug.RE_COUNT) if aug.ENABLE and aug.RE_PROB > 0 else None,
        reverse_channels=data.REVERSE_INPUT_CHANNEL,
        order=augmentation_order(cfg),
        inverse_uniform=data.INV_UNIFORM_SAMPLE,
    )


def _image_crop_ratio(cfg) -> float:
    ratio = cfg.DATA.IN_VAL_CROP_RATIO
    if not (ratio == 0 or 0 < ratio <= 1):
        raise DatasetError(f"DATA.IN_VAL_CROP_RATIO={ratio} must be in (0, 1] (resize to TEST_CROP_SIZE / ratio, "
                           f"then centre-crop) or 0 (resize to TEST_CROP_SIZE squared, no crop)")  # fmt: skip
    return float(ratio)


def _image_dataset(cfg, split: str) -> ImageDataset:
    transform = build_train_transform(cfg) if split == "train" else None
    crop_ratio = _image_crop_ratio(cfg)
    records, missing = check_split(cfg, split)
    return ImageDataset(records, _bad_log(cfg, split, records, missing), transform, cfg.DATA.TEST_CROP_SIZE,
                        cfg.DATA.MEAN, cfg.DATA.STD, crop_ratio=crop_ratio, seed=cfg.RNG_SEED)  # fmt: skip


def _overfit_refusal(cfg, num_records: int) -> str | None:
    """Why ``TRAIN.OVERFIT_CLIPS`` cannot apply to this config, or None."""
    n = cfg.TRAIN.OVERFIT_CLIPS
    if _dataset_name(cfg, "train") in IMAGE_DATASETS:
        return "it is implemented for video datasets only"
    if cfg.MIXUP.ENABLE:
        return "mixup blends random pairs of clips, so the targets change every step; set MIXUP.ENABLE False"
    if cfg.AUG.NUM_SAMPLE > 1:
        return "repeated augmentation has nothing to repeat on fixed clips; set AUG.NUM_SAMPLE 1"
    if n > num_records:
        return f"the training split has only {num_records} videos; lower it"
    return None


def spread_over_labels(records: list[VideoRecord], n: int) -> list[VideoRecord]:
    """``n`` records taken in turn from each label (labels in order of first appearance, records in split order):
    a class-sorted split still gives a sanity set where one constant prediction cannot reach a zero loss."""
    by_label: dict = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    queues = [iter(group) for group in by_label.values()]
    chosen: list[VideoRecord] = []
    while len(chosen) < n:
        chosen += [r for r in (next(q, None) for q in queues) if r is not None][: n - len(chosen)]
    return chosen


def _overfit_dataset(cfg, records: list[VideoRecord], bad_log: BadVideoLog, decode: DecodeOptions) -> Dataset:
    """``TRAIN.OVERFIT_CLIPS`` = N: N training videos (``spread_over_labels``: the first of each class in turn), one
    fixed, unaugmented clip each (the validation view: centred clip, short side ``TRAIN_JITTER_SCALES[0]``, centre
    crop ``TRAIN_CROP_SIZE``)."""
    n = cfg.TRAIN.OVERFIT_CLIPS
    refusal = _overfit_refusal(cfg, len(records))
    if refusal:
        raise DatasetError(f"TRAIN.OVERFIT_CLIPS={n} cannot apply: {refusal}")
    chosen = spread_over_labels(records, n)
    for record in chosen:  # a bad file among so few would make the check meaningless: say so before training
        try:
            probe_video(record.path)
        except VideoDecodeError as e:
            raise DatasetError(f"TRAIN.OVERFIT_CLIPS={n}: {record.path} cannot be decoded ({e.reason}); remove it "
                               "from the training split") from None  # fmt: skip
    views = MultiViewDataset(chosen, clip_sampling(cfg, "train"), 1, spatial_views(cfg, "val"), bad_log, decode)
    logger.info("TRAIN.OVERFIT_CLIPS=%d: training on the same %d clips every epoch, without augmentation (the loss "
                "should fall to ~0)", n, n)  # fmt: skip
    return FixedClipDataset(views)


def mask_kind(tube: bool, frames: bool, mae: bool = False, mae_random: bool = False, per_frame: bool = False) -> str:
    """The ``masking.MASK_KINDS`` entry of the config's switches. MaskFeat: ``AUG.MASK_FRAMES`` whole time slices,
    ``AUG.MASK_TUBE`` PySlowFast's 2-D blocks repeated over time, else cubes. MAE (``MASK.MAE_ON``):
    ``MASK.MAE_RND_MASK`` random tokens (per time slice with ``MASK.PER_FRAME_MASKING``), else VideoMAE's tubes
    (``AUG.MASK_TUBE``; the config validation asks for one of the two)."""
    if mae:
        if mae_random:
            return "per_frame" if per_frame else "random"
        return "tube"
    if frames:
        return "frames"
    return "block_tube" if tube else "cube"


def mask_generator(cfg) -> MaskGenerator | None:
    """The token-mask generator of ``AUG.GEN_MASK_LOADER`` (None without it): MaskFeat's or an MAE's masks."""
    aug, mask = cfg.AUG, cfg.MASK
    if not aug.GEN_MASK_LOADER:
        return None
    kind = mask_kind(aug.MASK_TUBE, aug.MASK_FRAMES, mask.MAE_ON, mask.MAE_RND_MASK, mask.PER_FRAME_MASKING)
    return MaskGenerator(kind, tuple(aug.MASK_WINDOW_SIZE), float(aug.MASK_RATIO), aug.MAX_MASK_PATCHES_PER_BLOCK)


class MaskedDataset(Dataset):
    """Adds a ``"mask"`` to every item of ``dataset``: drawn from (seed, epoch, index), so any worker draws the same
    and a resumed epoch repeats its masks; an evaluation split (never ``set_epoch``) has fixed masks."""

    def __init__(self, dataset: Dataset, generator: MaskGenerator, seed: int) -> None:
        self.dataset, self.generator, self.seed, self.epoch = dataset, generator, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        rng = random.Random(f"mask-{self.seed}-{self.epoch}-{item['index']}")
        return {**item, "mask": self.generator(rng)}


def build_dataset(cfg, split: str) -> Dataset:
    """The dataset of one split, with token masks (``MaskedDataset``) for training and validation when
    ``AUG.GEN_MASK_LOADER`` (see ``build_split_dataset``)."""
    dataset = build_split_dataset(cfg, split)
    generator = mask_generator(cfg)
    if generator is None or split == "test":
        return dataset
    return MaskedDataset(dataset, generator, cfg.RNG_SEED)


def build_split_dataset(cfg, split: str) -> Dataset:
    """The dataset of one split ("train", "val" or "test") of a config.

    Raises:
        DatasetError: missing/malformed split files, labels outside ``MODEL.NUM_CLASSES``, unsupported backend,
            augmentation or view sizes that cannot work.
        TooManyBadVideos: more than ``DATA.MAX_BAD_FRACTION`` of the listed files are missing.
    """
    if _dataset_name(cfg, split) in IMAGE_DATASETS:
        return _image_dataset(cfg, split)
    decode = _decode_options(cfg)
    transform = build_train_transform(cfg) if split == "train" else None
    spatial = spatial_views(cfg, split) if split != "train" else None
    records, missing = check_split(cfg, split)
    bad_log = _bad_log(cfg, split, records, missing)
    sampling = clip_sampling(cfg, split)
    if split == "train" and cfg.TRAIN.OVERFIT_CLIPS:
        return _overfit_dataset(cfg, records, bad_log, decode)
    if split == "train":
        return ClipDataset(records, sampling, transform, bad_log, decode, num_samples=cfg.AUG.NUM_SAMPLE,
                           seed=cfg.RNG_SEED)  # fmt: skip
    num_clips = 1 if split == "val" else cfg.TEST.NUM_ENSEMBLE_VIEWS
    return MultiViewDataset(records, sampling, num_clips, spatial, bad_log, decode, single_view=split == "val")


class ResumableDistributedSampler(DistributedSampler):
    """The training sampler: ``DistributedSampler`` whose epoch can start after its first ``start`` items, so a run
    stopped mid-epoch continues with the same order without loading the items it already used."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Sets the epoch (its shuffle) and how many of this rank's items of it to skip."""
        super().set_epoch(epoch)
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start must lie in [0, {self.num_samples}], got {start}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank r gets items r, r + world, ...; every item exactly once across ranks (no padding)."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_items, self.rank, self.world_size = num_items, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))


def multi_hot(labels: list, num_classes: int) -> torch.Tensor:
    """(B, K) float rows with 1 at each item's classes (an int or a tuple of ints per item)."""
    rows = torch.zeros(len(labels), num_classes)
    for row, label in zip(rows, labels):
        row[list(label) if isinstance(label, tuple) else label] = 1.0
    return rows


def collate_clips(items: list[dict], num_classes: int | None = None) -> dict:
    """Stacks items into a batch; repeated-augmentation samples (N per item) become N consecutive clips. With
    ``num_classes`` (``DATA.MULTI_LABEL``) labels become (B, K) multi-hot rows."""
    videos = torch.stack([item["video"] for item in items])
    labels = [item["label"] for item in items]
    labels = multi_hot(labels, num_classes) if num_classes is not None else torch.tensor(labels)
    index = torch.tensor([item["index"] for item in items])
    batch = {"video": videos, "label": labels, "index": index}
    if "mask" in items[0]:
        batch["mask"] = torch.stack([item["mask"] for item in items])
    if "valid" in items[0]:
        batch["valid"] = torch.tensor([item["valid"] for item in items])
        batch["error"] = [item["error"] for item in items]
    elif videos.ndim == 6:  # (B, N, C, T, H, W) training samples -> (B*N, C, T, H, W)
        n = videos.shape[1]
        batch.update(video=videos.flatten(0, 1), label=labels.repeat_interleave(n, dim=0),
                     index=index.repeat_interleave(n))
    return batch


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding and augmentation run one thread per worker process
    process.shield_from_stop_signals()


def build_loader(cfg, split: str) -> DataLoader:
    """A DataLoader for one split of a config, sharded across the processes of a distributed run.

    ``TRAIN.BATCH_SIZE`` / ``TEST.BATCH_SIZE`` are per machine, as in PySlowFast: each of the machine's processes
    (``world size / NUM_SHARDS``) loads an equal part; the global batch is ``BATCH_SIZE * NUM_SHARDS``. The
    training sampler is a ``ResumableDistributedSampler`` (also for one process): call ``loader.sampler.set_epoch(e)``
    (``set_epoch(e, start=n)`` to skip the first n items) and ``loader.dataset.set_epoch(e)`` each epoch.
    Evaluation uses ``ShardSampler`` (each video once).
    """
    world, rank = process.world_size(), process.rank()
    dataset = build_dataset(cfg, split)
    batch = cfg.TRAIN.BATCH_SIZE if split in ("train", "val") else cfg.TEST.BATCH_SIZE
    key = "TRAIN.BATCH_SIZE" if split in ("train", "val") else "TEST.BATCH_SIZE"
    per_machine = max(world // max(cfg.NUM_SHARDS, 1), 1)
    if batch % per_machine:
        raise DatasetError(
            f"{key}={batch} is per machine and must be divisible by its number of processes ({per_machine})"
        )
    if split == "train":
        sampler = ResumableDistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.RNG_SEED, drop_last=True)
    else:
        sampler = ShardSampler(len(dataset), rank, world)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    collate = partial(collate_clips, num_classes=cfg.MODEL.NUM_CLASSES) if cfg.DATA.MULTI_LABEL else collate_clips
    return DataLoader(
        dataset,
        batch_size=batch // per_machine,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and torch.cuda.is_available(),
        drop_last=split == "train",
        collate_fn=collate,
        worker_init_fn=_worker_init if workers > 0 else None,
    )
