"""Published checkpoints of the named variants: where each file lives, what input it expects, what it scored.

Plain data, read by ``create_model(name, pretrained=True)`` / ``create_model(name, weights=tag)`` and by
``download.fetch_weights``. Every URL, file name and number below was read in its publisher's own material, named
in each entry's ``source``: torchvision 0.29.1's weight enums (url, metrics, transforms), timm 1.0.31's pretrained
configs (hf_hub_id, crop_pct, interpolation, mean/std) with the accuracies of timm's ``results/results-imagenet.csv``,
PySlowFast's MODEL_ZOO.md and projects/mvitv2/README.md with its Kinetics configs, the official MViTv2 README, and the
Hugging Face hub file listings of the video models. Numbers a publisher does not give are left out (``None``), not
guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # PySlowFast's and torchvision's video default
KINETICS_STD = (0.225, 0.225, 0.225)
HALF = (0.5, 0.5, 0.5)


class WeightsError(UserError, ValueError):
    """An unknown weights name or tag, a failed download or a file that is not the published one (one line)."""


@dataclass(frozen=True)
class Preprocessing:
    """The input a checkpoint was trained and evaluated on.

    Attributes:
        num_frames: frames per clip (1 for image weights).
        sampling_rate: step between sampled frames in the source video (PySlowFast's ``DATA.SAMPLING_RATE``);
            None where the publisher resamples to a frame rate instead, or for images.
        frame_rate: frames per second clips are resampled to (torchvision's video protocol); None otherwise.
        resize_size: the short side frames are resized to before cropping.
        crop_size: the square crop the model sees.
        mean: per-channel mean on [0, 1] pixels.
        std: per-channel standard deviation on [0, 1] pixels.
        interpolation: the resizing filter ("bilinear" or "bicubic").
        test_clips: temporal clips per video at test time (their scores are averaged).
        test_crops: spatial crops per clip at test time.
    """

    num_frames: int
    crop_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    test_clips: int = 1
    test_crops: int = 1
    sampling_rate: Optional[int] = None
    frame_rate: Optional[float] = None

    @property
    def test_views(self) -> int:
        return self.test_clips * self.test_crops


@dataclass(frozen=True)
class Accuracy:
    """What the publisher reports for a checkpoint.

    Attributes:
        dataset: e.g. "Kinetics-400" or "ImageNet-1K" (validation set).
        top1: top-1 accuracy in percent.
        top5: top-5 accuracy in percent, where given.
        source: where the numbers are published.
    """

    dataset: str
    top1: float
    top5: Optional[float]
    source: str


@dataclass(frozen=True)
class Weights:
    """One published checkpoint of a named variant.

    Attributes:
        model: the ``create_model`` name it fits.
        tag: its name among that model's weights (``create_model(model, weights=tag)``); the first entry of a model
            is what ``pretrained=True`` loads.
        url: where the file is published (plain https).
        file_name: its name in the cache folder.
        preprocessing: the input it expects.
        num_classes: the size of its classifier.
        accuracy: what its publisher reports, or None where the publisher reports nothing for this very file.
        source: where the entry's facts were read.
        sha256: the file's full sha256 where its publisher gives one.
        check_url_hash: the file name in the URL ends with ``-<first hex digits of its sha256>.<ext>`` (torchvision
            and torch.hub's convention); the download checks that prefix.
        fallback_url: another published copy (``pytorch_model.bin`` beside ``model.safetensors``), used when the
            ``safetensors`` package is not installed.
        notes: anything else a user should know (one line).
    """

    model: str
    tag: str
    url: str
    file_name: str
    preprocessing: Preprocessing
    num_classes: int
    accuracy: Optional[Accuracy]
    source: str
    sha256: Optional[str] = None
    check_url_hash: bool = False
    fallback_url: Optional[str] = None
    notes: str = ""

    @property
    def name(self) -> str:
        """``model.tag``, the name ``get_weights`` accepts."""
        return f"{self.model}.{self.tag}"


# --- torchvision -------------------------------------------------------------------------------------------------

_TV = "https://download.pytorch.org/models/"
_TV_SOURCE = "torchvision 0.29.1 {enum} (url, _metrics, transforms(), _docs)"
_TV_VIDEO_DOCS = "torchvision {enum} _docs: video-level, frame_rate={fps:g}, clips_per_video={clips}, clip_len={n}"


def _torchvision_video(model, file, enum, top1, top5, frames, fps, clips, mean, std, tag="torchvision_k400"):
    pre = Preprocessing(num_frames=frames, frame_rate=fps, resize_size=256, crop_size=224, mean=mean, std=std,
                        interpolation="bilinear", test_clips=clips, test_crops=1)  # fmt: skip
    docs = _TV_VIDEO_DOCS.format(enum=enum, fps=fps, clips=clips, n=frames)
    return Weights(model, tag, _TV + file, file, pre, 400, Accuracy("Kinetics-400", top1, top5, docs),
                   _TV_SOURCE.format(enum=enum), check_url_hash=True)  # fmt: skip


def _torchvision_image(model, file, enum, top1, top5, resize):
    pre = Preprocessing(num_frames=1, resize_size=resize, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        interpolation="bicubic")  # fmt: skip
    return Weights(model, "torchvision_in1k", _TV + file, file, pre, 1000,
                   Accuracy("ImageNet-1K", top1, top5, f"torchvision {enum} _metrics"), _TV_SOURCE.format(enum=enum),
                   check_url_hash=True)  # fmt: skip


# --- timm (Hugging Face hub files) -------------------------------------------------------------------------------

_HF = "https://huggingface.co/{repo}/resolve/main/{file}"
_TIMM_RESULTS = "timm results/results-imagenet.csv (huggingface/pytorch-image-models, commit 0173a139)"


def _timm(model, hub_id, top1, top5, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.9):
    repo = f"timm/{hub_id}"
    pre = Preprocessing(num_frames=1, resize_size=int(224 / crop_pct), crop_size=224, mean=mean, std=std,
                        interpolation="bicubic")  # fmt: skip
    return Weights(
        model, "timm_" + hub_id.split(".", 1)[1], _HF.format(repo=repo, file="model.safetensors"),
        f"{repo.replace('/', '--')}--model.safetensors", pre, 1000,
        Accuracy("ImageNet-1K", top1, top5, f"{_TIMM_RESULTS}, row {hub_id} (224, crop_pct {crop_pct})"),
        f"timm 1.0.31 get_pretrained_cfg('{hub_id}'): hf_hub_id {repo}, crop_pct {crop_pct}, bicubic, mean/std; "
        "file names as timm/models/_hub.py loads hub files (model.safetensors, else pytorch_model.bin)",
        fallback_url=_HF.format(repo=repo, file="pytorch_model.bin"),
    )  # fmt: skip


# --- PySlowFast and the official MViTv2 --------------------------------------------------------------------------

_PYSF = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/"


def _pyslowfast(model, path, top1, top5, frames, rate, source, size=224, crops=1, mean=KINETICS_MEAN,
                std=KINETICS_STD):  # fmt: skip
    # PySlowFast tests one spatial crop at short side TRAIN_JITTER_SCALES[0] (256), three at TEST_CROP_SIZE
    pre = Preprocessing(num_frames=frames, sampling_rate=rate, resize_size=256 if crops == 1 else size,
                        crop_size=size, mean=mean, std=std, interpolation="bilinear", test_clips=5,
                        test_crops=crops)  # fmt: skip
    file = "pyslowfast--" + path.replace("/", "--")
    return Weights(model, "pyslowfast_k400", _PYSF + path, file, pre, 400,
                   Accuracy("Kinetics-400", top1, top5, source), source)  # fmt: skip


_MVIT_IN1K = "https://dl.fbaipublicfiles.com/mvit/mvitv2_models/"


def _mvit_image(model, file, top1):
    pre = Preprocessing(num_frames=1, resize_size=248, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        interpolation="bicubic")  # fmt: skip
    return Weights(
        model, "official_in1k", _MVIT_IN1K + file, "mvit--" + file, pre, 1000,
        Accuracy("ImageNet-1K", top1, None, "facebookresearch/mvit README (ImageNet-1K trained models, 224x224)"),
        "facebookresearch/mvit README (model link); preprocessing as timm 1.0.31's pretrained cfg of the same file "
        "(mvitv2_*.fb_in1k: crop_pct 0.9, bicubic, ImageNet mean/std)",
    )  # fmt: skip


# --- Hugging Face video models -----------------------------------------------------------------------------------


def _hf(model, repo, file, pre, source, fallback=None, notes=""):
    return Weights(model, "hf_k400", _HF.format(repo=repo, file=file), f"{repo.replace('/', '--')}--{file}", pre,
                   400, None, source, fallback_url=_HF.format(repo=repo, file=fallback) if fallback else None,
                   notes=notes)  # fmt: skip


_ZOO = "SlowFast MODEL_ZOO.md (Kinetics 400 and 600), 1 crop x 5 clips"
_MVITV2_ZOO = "SlowFast projects/mvitv2/README.md (Kinetics-400)"

# fmt: off
_ENTRIES: tuple[Weights, ...] = (
    # MViT v1 / v2 on Kinetics-400
    _torchvision_video("mvitv1_b_16x4", "mvit_v1_b-dbeb1030.pth", "MViT_V1_B_Weights.KINETICS400_V1", 78.477,
                       93.582, 16, 7.5, 5, KINETICS_MEAN, KINETICS_STD),
    _pyslowfast("mvitv1_b_32x3", "mvit/k400.pyth", 80.4, 94.8, 32, 3, f"{_ZOO}, MViTv1 B-Conv 32 x 3"),
    _pyslowfast("mvitv2_s_16x4", "mvitv2/pysf_video_models/MViTv2_S_16x4_k400_f302660347.pyth", 81.0, 94.6, 16, 4,
                f"{_MVITV2_ZOO}, MViTv2-S 16 x 4, 1 x 5 views; configs/Kinetics/MVITv2_S_16x4.yaml"),
    _torchvision_video("mvitv2_s_16x4", "mvit_v2_s-ae3be167.pth", "MViT_V2_S_Weights.KINETICS400_V1", 80.757, 94.665,
                       16, 7.5, 5, KINETICS_MEAN, KINETICS_STD),
    _pyslowfast("mvitv2_b_32x3", "mvitv2/pysf_video_models/MViTv2_B_32x3_k400_f304025456.pyth", 82.9, 95.7, 32, 3,
                f"{_MVITV2_ZOO}, MViTv2-B 32 x 3, 1 x 5 views; configs/Kinetics/MVITv2_B_32x3.yaml"),
    _pyslowfast("mvitv2_l_40x3_312", "mvitv2/pysf_video_models/MViTv2_L_40x3_k400_f306903192.pyth", 86.1, 97.0, 40, 3,
                f"{_MVITV2_ZOO}, MViTv2-L 40 x 3, 3 x 5 views; configs/Kinetics/MVITv2_L_40x3_test.yaml", size=312,
                crops=3, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    # MViTv2 on ImageNet-1K
    _mvit_image("mvitv2_t_in1k", "MViTv2_T_in1k.pyth", 82.3),
    _mvit_image("mvitv2_s_in1k", "MViTv2_S_in1k.pyth", 83.6),
    _mvit_image("mvitv2_b_in1k", "MViTv2_B_in1k.pyth", 84.4),
    # Video Swin (torchvision)
    _torchvision_video("swin3d_t_32x2", "swin3d_t-7615ae03.pth", "Swin3D_T_Weights.KINETICS400_V1", 77.715, 93.519,
                       32, 15, 12, IMAGENET_MEAN, IMAGENET_STD),
    _torchvision_video("swin3d_s_32x2", "swin3d_s-da41c237.pth", "Swin3D_S_Weights.KINETICS400_V1", 79.521, 94.158,
                       32, 15, 12, IMAGENET_MEAN, IMAGENET_STD),
    _torchvision_video("swin3d_b_32x2", "swin3d_b_1k-24f7c7c6.pth", "Swin3D_B_Weights.KINETICS400_V1", 79.427,
                       94.386, 32, 15, 12, IMAGENET_MEAN, IMAGENET_STD),
    _torchvision_video("swin3d_b_32x2", "swin3d_b_22k-7c6ae6fa.pth", "Swin3D_B_Weights.KINETICS400_IMAGENET22K_V1",
                       81.643, 95.574, 32, 15, 12, IMAGENET_MEAN, IMAGENET_STD, tag="torchvision_k400_in22k"),
    # Swin (timm first: the layout the family is written in; torchvision beside it)
    _timm("swin_t_in1k", "swin_tiny_patch4_window7_224.ms_in1k", 81.376, 95.544),
    _torchvision_image("swin_t_in1k", "swin_t-704ceda3.pth", "Swin_T_Weights.IMAGENET1K_V1", 81.474, 95.776, 232),
    _timm("swin_s_in1k", "swin_small_patch4_window7_224.ms_in1k", 83.208, 96.316),
    _torchvision_image("swin_s_in1k", "swin_s-5e29d889.pth", "Swin_S_Weights.IMAGENET1K_V1", 83.196, 96.36, 246),
    _timm("swin_b_in1k", "swin_base_patch4_window7_224.ms_in1k", 83.606, 96.452),
    _timm("swin_b_in1k", "swin_base_patch4_window7_224.ms_in22k_ft_in1k", 85.272, 97.564),
    _torchvision_image("swin_b_in1k", "swin_b-68c6b09e.pth", "Swin_B_Weights.IMAGENET1K_V1", 83.582, 96.64, 238),
    # ViT family (timm)
    _timm("vit_ti16_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k", 75.454, 92.844, HALF, HALF),
    _timm("vit_b16_in1k", "vit_base_patch16_224.augreg2_in21k_ft_in1k", 85.096, 97.530, HALF, HALF),
    _timm("deit_ti16_in1k", "deit_tiny_patch16_224.fb_in1k", 72.172, 91.112),
    _timm("deit_ti16_distilled_in1k", "deit_tiny_distilled_patch16_224.fb_in1k", 74.500, 91.892),
    _timm("cait_xxs24_in1k", "cait_xxs24_224.fb_dist_in1k", 78.384, 94.316, crop_pct=1.0),
    # PVTv2, LeViT, CoaT (timm)
    _timm("pvtv2_b0_in1k", "pvt_v2_b0.in1k", 70.660, 90.196),
    _timm("pvtv2_b2_in1k", "pvt_v2_b2.in1k", 82.086, 95.956),
    _timm("pvtv2_b2_li_in1k", "pvt_v2_b2_li.in1k", 82.194, 96.092),
    _timm("levit_128s_in1k", "levit_128s.fb_dist_in1k", 76.526, 92.872),
    _timm("levit_128_in1k", "levit_128.fb_dist_in1k", 78.490, 94.012),
    _timm("levit_192_in1k", "levit_192.fb_dist_in1k", 79.838, 94.778),
    _timm("levit_256_in1k", "levit_256.fb_dist_in1k", 81.514, 95.492),
    _timm("levit_384_in1k", "levit_384.fb_dist_in1k", 82.596, 96.018),
    _timm("coat_lite_ti_in1k", "coat_lite_tiny.in1k", 77.520, 93.922),
    _timm("coat_lite_mi_in1k", "coat_lite_mini.in1k", 79.102, 94.608),
    _timm("coat_lite_s_in1k", "coat_lite_small.in1k", 82.314, 95.848),
    _timm("coat_ti_in1k", "coat_tiny.in1k", 78.426, 94.048),
    # Video ViTs (Hugging Face hub)
    _hf("videomae_b_16x4", "MCG-NJU/videomae-base-finetuned-kinetics", "model.safetensors",
        Preprocessing(num_frames=16, sampling_rate=4, resize_size=224, crop_size=224, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, interpolation="bilinear", test_clips=5, test_crops=3),
        "HF hub MCG-NJU/videomae-base-finetuned-kinetics (main lists model.safetensors and pytorch_model.bin); test "
        "protocol of MCG-NJU/VideoMAE scripts/kinetics finetune.sh (--num_frames 16 --sampling_rate 4 "
        "--short_side_size 224 --test_num_segment 5 --test_num_crop 3, ImageNet mean/std)",
        fallback="pytorch_model.bin",
        notes="the official VideoMAE MODEL_ZOO.md lists ViT-B K400 at 79.4-80.9 top-1 (16x5x3) by pre-training "
              "length; the hub card does not say which of those checkpoints this is"),
    _hf("timesformer_b_8x32", "facebook/timesformer-base-finetuned-k400", "pytorch_model.bin",
        Preprocessing(num_frames=8, sampling_rate=32, resize_size=224, crop_size=224, mean=KINETICS_MEAN,
                      std=KINETICS_STD, interpolation="bilinear", test_clips=1, test_crops=3),
        "HF hub facebook/timesformer-base-finetuned-k400 (main lists pytorch_model.bin only); test protocol of "
        "facebookresearch/TimeSformer configs/Kinetics/TimeSformer_divST_8x32_224_TEST.yaml",
        notes="the official TimeSformer README reports 77.9 / 93.2 (K400, 8 x 224) for its own "
              "TimeSformer_divST_8x32_224_K400.pyth; the hub file is a port, not re-measured here"),
    _hf("vivit_b_32x2", "google/vivit-b-16x2-kinetics400", "pytorch_model.bin",
        Preprocessing(num_frames=32, sampling_rate=2, resize_size=256, crop_size=224, mean=HALF, std=HALF,
                      interpolation="bilinear", test_clips=4, test_crops=3),
        "HF hub google/vivit-b-16x2-kinetics400 (main lists pytorch_model.bin; safetensors only in an open PR); "
        "test protocol of google-research/scenic projects/vivit/configs/kinetics400/vivit_base_k400.py"),
)
# fmt: on


def _index(entries: tuple[Weights, ...]) -> dict[str, list[Weights]]:
    index: dict[str, list[Weights]] = {}
    for entry in entries:
        index.setdefault(entry.model, []).append(entry)
    return index


WEIGHTS: dict[str, list[Weights]] = _index(_ENTRIES)


def list_weights(model: Optional[str] = None) -> list[str]:
    """``model.tag`` names of the published weights (of one model, or all), each model's default first."""
    models = [model] if model is not None else sorted(WEIGHTS)
    return [w.name for m in models for w in WEIGHTS.get(m, [])]


def get_weights(name: str, tag: Optional[str] = None) -> Weights:
    """One registry entry.

    Args:
        name: a model name ("mvitv2_s_16x4": its default weights) or ``model.tag`` ("mvitv2_s_16x4.torchvision_k400").
        tag: the tag, when ``name`` is a model name; ``None`` picks the model's default (first) entry.

    Raises:
        WeightsError: no such model or tag (one line, listing what exists).
    """
    model, _, dotted = name.partition(".")
    if dotted and tag is not None and dotted != tag:
        raise WeightsError(f"weights {name!r} and tag {tag!r} disagree; give one of them")
    tag = tag or dotted or None
    entries = WEIGHTS.get(model)
    if not entries:
        raise WeightsError(f"no published weights for {model!r} in mvit_video.models.weights; models with weights: "
                           f"{', '.join(sorted(WEIGHTS))}")  # fmt: skip
    if tag is None:
        return entries[0]
    for entry in entries:
        if entry.tag == tag:
            return entry
    raise WeightsError(f"{model!r} has no weights tagged {tag!r}; its tags: {', '.join(e.tag for e in entries)}")
