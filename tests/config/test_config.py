"""Tests for mvit_video.config: schema defaults, YAML loading, overrides and validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mvit_video.config import ConfigError, IgnoredConfigKeyWarning, get_cfg, load_config, validate
from tests.conftest import ROOT, SHARED

SLOWFAST_DIR = SHARED / "slowfast_configs"
SLOWFAST_YAMLS = sorted(SLOWFAST_DIR.glob("*.yaml")) if SLOWFAST_DIR.is_dir() else []
needs_shared = pytest.mark.skipif(not SLOWFAST_DIR.is_dir(), reason=f"{SLOWFAST_DIR} is absent")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_quietly(path: Path, opts: list | None = None):
    """load_config, failing on any warning except the ignored-keys one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", IgnoredConfigKeyWarning)
        return load_config(path, opts)


def error_of(path: Path, opts: list | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_quietly(path, opts)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def empty_yaml(tmp_path: Path) -> Path:
    return write(tmp_path, "empty.yaml", "")


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

MVIT_KEYS = (
    "MODE POOL_FIRST CLS_EMBED_ON PATCH_KERNEL PATCH_STRIDE PATCH_PADDING PATCH_2D EMBED_DIM "
    "NUM_HEADS MLP_RATIO QKV_BIAS DROPPATH_RATE LAYER_SCALE_INIT_VALUE DEPTH NORM DIM_MUL "
    "HEAD_MUL POOL_KV_STRIDE POOL_KV_STRIDE_ADAPTIVE POOL_Q_STRIDE POOL_KVQ_KERNEL "
    "ZERO_DECAY_POS_CLS NORM_STEM SEP_POS_EMBED DROPOUT_RATE USE_ABS_POS USE_FIXED_SINCOS_POS "
    "REL_POS_SPATIAL REL_POS_TEMPORAL REL_POS_ZERO_INIT RESIDUAL_POOLING DIM_MUL_IN_ATT "
    "SEPARATE_QKV HEAD_INIT_SCALE USE_MEAN_POOLING REV"
).split()


def test_mvit_section_has_exactly_the_pyslowfast_keys() -> None:
    assert sorted(get_cfg().MVIT.keys()) == sorted(MVIT_KEYS)


@pytest.mark.parametrize(
    "key, expected",
    [
        # PySlowFast defaults (slowfast/config/defaults.py).
        ("MVIT.MODE", "conv"),
        ("MVIT.PATCH_KERNEL", [3, 7, 7]),
        ("MVIT.PATCH_STRIDE", [2, 4, 4]),
        ("MVIT.PATCH_PADDING", [2, 4, 4]),
        ("MVIT.POOL_KVQ_KERNEL", None),
        ("MVIT.POOL_KV_STRIDE_ADAPTIVE", None),
        ("MVIT.POOL_KV_STRIDE", []),
        ("MVIT.ZERO_DECAY_POS_CLS", True),
        ("MVIT.USE_ABS_POS", True),
        ("MVIT.REL_POS_SPATIAL", False),
        ("MVIT.RESIDUAL_POOLING", False),
        ("MVIT.DIM_MUL_IN_ATT", False),
        ("MVIT.DROPPATH_RATE", 0.1),
        ("MVIT.DEPTH", 16),
        ("MVIT.LAYER_SCALE_INIT_VALUE", 0.0),
        ("MVIT.HEAD_INIT_SCALE", 1.0),
        ("MVIT.REV.ENABLE", False),
        ("MVIT.REV.RESPATH_FUSE", "concat"),
        ("MVIT.REV.BUFFER_LAYERS", []),
        ("MVIT.REV.RES_PATH", "conv"),
        ("MVIT.REV.PRE_Q_FUSION", "avg"),
        ("MODEL.ARCH", "mvit"),
        ("MODEL.MODEL_NAME", "MViT"),
        ("MODEL.NUM_CLASSES", 400),
        ("MODEL.DROPOUT_RATE", 0.5),
        ("MODEL.HEAD_ACT", "softmax"),
        ("MODEL.ACT_CHECKPOINT", False),
        ("DATA.NUM_FRAMES", 8),
        ("DATA.SAMPLING_RATE", 8),
        ("DATA.TRAIN_CROP_SIZE", 224),
        ("DATA.TEST_CROP_SIZE", 256),
        ("DATA.INPUT_CHANNEL_NUM", [3, 3]),
        ("DATA.MEAN", [0.45, 0.45, 0.45]),
        ("DATA.STD", [0.225, 0.225, 0.225]),
        ("DATA.TRAIN_JITTER_SCALES", [256, 320]),
        ("DATA.PATH_LABEL_SEPARATOR", " "),
        ("DATA.ENSEMBLE_METHOD", "sum"),
        ("TRAIN.BATCH_SIZE", 64),
        ("TRAIN.CHECKPOINT_PERIOD", 10),
        ("TRAIN.CHECKPOINT_FILE_PATH", ""),
        ("TRAIN.MIXED_PRECISION", False),
        ("TEST.BATCH_SIZE", 8),
        ("TEST.NUM_ENSEMBLE_VIEWS", 10),
        ("TEST.NUM_SPATIAL_CROPS", 3),
        ("TEST.CHECKPOINT_FILE_PATH", ""),
        ("SOLVER.BASE_LR", 0.1),
        ("SOLVER.WEIGHT_DECAY", 1e-4),
        ("SOLVER.WARMUP_START_LR", 0.01),
        ("SOLVER.CLIP_GRAD_L2NORM", None),
        ("SOLVER.OPTIMIZING_METHOD", "sgd"),
        ("AUG.AA_TYPE", "rand-m9-mstd0.5-inc1"),
        ("MIXUP.ALPHA", 0.8),
        ("BN.NUM_BATCHES_PRECISE", 200),
        ("DATA_LOADER.NUM_WORKERS", 8),
        ("DEMO.WEBCAM", -1),
        ("DEMO.OUTPUT_FPS", -1),
        ("DEMO.BUFFER_SIZE", 0),
        ("TENSORBOARD.ENABLE", False),
        ("NUM_GPUS", 1),
        ("RNG_SEED", 1),
        ("OUTPUT_DIR", "."),
        ("DIST_BACKEND", "nccl"),
        # Toolkit keys.
        ("DATA.DECODING_BACKEND", "pyav"),
        ("DATA.MAX_BAD_FRACTION", 0.05),
        ("MODEL.COMPILE", False),
        ("TRAIN.PRECISION", "fp32"),
        ("DEMO.STRIDE", 0),
        ("DEMO.TOPK", 5),
    ],
)
def test_default_values(key: str, expected: object) -> None:
    node = get_cfg()
    for part in key.split("."):
        node = node[part]
    assert node == expected
    assert type(node) is type(expected)


def test_get_cfg_returns_independent_copies() -> None:
    first = get_cfg()
    first.MVIT.DIM_MUL.append([1, 2.0])
    first.MVIT.DEPTH = 3
    second = get_cfg()
    assert second.MVIT.DIM_MUL == []
    assert second.MVIT.DEPTH == 16
    assert not second.is_frozen()


def test_defaults_pass_validation() -> None:
    validate(get_cfg())


# --------------------------------------------------------------------------------------------
# PySlowFast YAMLs
# --------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("path", SLOWFAST_YAMLS, ids=lambda p: p.name)
def test_every_pyslowfast_yaml_loads(path: Path) -> None:
    cfg = load_quietly(path)
    assert cfg.is_frozen()
    assert cfg.MODEL.ARCH == "mvit"
    assert cfg.DATA.DECODING_BACKEND in ("torchvision", "pyav")


REPO_CONFIGS = sorted((ROOT / "configs").glob("**/*.yaml"))


@pytest.mark.skipif(not REPO_CONFIGS, reason="no YAML under configs/")
@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads_without_ignored_keys(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(path)
    family = next(arch for prefix, arch in CONFIG_FAMILIES.items() if path.name.startswith(prefix))
    assert cfg.MODEL.ARCH == family


# a shipped config's file name says its family
CONFIG_FAMILIES = {"MVIT": "mvit", "REV_MVIT": "mvit", **dict.fromkeys(("VIT_", "DEIT_", "CAIT_", "CPVT_", "DEEPVIT_", "VIDEOMAE_",
                                                    "TIMESFORMER_", "VIVIT_"), "vit"),
                   "SHUFFLE": "shuffle", "SWIN": "swin", "LEVIT": "levit", "COAT": "coat", "CEIT": "ceit", "CVT": "cvt", "PVT": "pvt"}  # fmt: skip


@needs_shared
def test_mvit_b_32x3_values() -> None:
    cfg = load_quietly(SLOWFAST_DIR / "Kinetics_MVIT_B_32x3_CONV.yaml")
    assert cfg.MVIT.DEPTH == 24  # the file sets DEPTH twice: the last one wins
    assert cfg.MVIT.SEP_POS_EMBED is True
    assert list(cfg.MVIT.PATCH_KERNEL) == [3, 7, 7]
    assert list(cfg.MVIT.PATCH_STRIDE) == [2, 4, 4]
    assert list(cfg.MVIT.PATCH_PADDING) == [1, 3, 3]
    assert cfg.MVIT.POOL_Q_STRIDE == [[2, 1, 2, 2], [5, 1, 2, 2], [21, 1, 2, 2]]
    assert cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE == [1, 8, 8]
    assert cfg.MVIT.POOL_KVQ_KERNEL is None  # not set: PySlowFast default
    assert cfg.MVIT.ZERO_DECAY_POS_CLS is False
    assert cfg.SOLVER.BASE_LR == 1e-4 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.WEIGHT_DECAY == 0.05 and type(cfg.SOLVER.WEIGHT_DECAY) is float
    assert cfg.SOLVER.COSINE_END_LR == 1e-6
    assert cfg.SOLVER.CLIP_GRAD_L2NORM == 1.0
    assert cfg.DATA.DECODING_BACKEND == "torchvision"
    assert cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE == [0.75, 1.3333]
    assert cfg.MODEL.NUM_CLASSES == 400
    assert cfg.NUM_SHARDS == 1  # not in the file: default


@needs_shared
def test_imagenet_and_large_values() -> None:
    image = load_quietly(SLOWFAST_DIR / "ImageNet_MVITv2_S.yaml")
    assert image.MVIT.PATCH_2D is True
    assert image.MVIT.PATCH_STRIDE == [4, 4]
    assert image.DATA.NUM_FRAMES == 1
    assert image.SOLVER.WARMUP_START_LR == 1e-8
    large = load_quietly(SLOWFAST_DIR / "Kinetics_MVITv2_L_40x3_test.yaml")
    assert large.MVIT.DEPTH == 48
    assert len(large.MVIT.POOL_Q_STRIDE) == 48
    assert large.MVIT.POOL_Q_STRIDE[44] == [44, 1, 2, 2]
    assert large.MODEL.ACT_CHECKPOINT is True
    assert large.TEST.NUM_SPATIAL_CROPS == 3
    assert large.TRAIN.ENABLE is False


@needs_shared
def test_prefetch_section_is_dropped_with_a_warning() -> None:
    path = SLOWFAST_DIR / "SSv2_MVITv2_S_16x4.yaml"
    with pytest.warns(IgnoredConfigKeyWarning) as record:
        cfg = load_config(path)
    messages = [str(w.message) for w in record if w.category is IgnoredConfigKeyWarning]
    assert messages == [
        f"{path}: ignored PySlowFast keys not used by mvit_video: PREFETCH.NUM_LOADERS"
    ]
    assert "PREFETCH" not in cfg
    assert cfg.DATA.REVERSE_INPUT_CHANNEL is True
    assert cfg.TRAIN.CHECKPOINT_EPOCH_RESET is True


# --------------------------------------------------------------------------------------------
# Ignored and unknown keys
# --------------------------------------------------------------------------------------------


def test_ignored_keys_are_listed_in_one_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.yaml",
        "PREFETCH:\n  NUM_LOADERS: 3\nRESNET:\n  DEPTH: 50\nMVIT:\n  REV:\n    ENABLE: False\n"
        "DATA:\n  SSL_COLOR_JITTER: True\n",
    )
    with pytest.warns(IgnoredConfigKeyWarning) as record:
        cfg = load_config(path, ["CONTRASTIVE.T", "0.1"])
    assert len(record) == 1
    assert str(record[0].message) == (
        f"{path}: ignored PySlowFast keys not used by mvit_video: PREFETCH.NUM_LOADERS, "
        "RESNET.DEPTH, DATA.SSL_COLOR_JITTER, CONTRASTIVE.T"
    )
    assert cfg.MVIT.REV.ENABLE is False and "RESNET" not in cfg  # MVIT.REV is a schema section now


@pytest.mark.parametrize(
    "text, message",
    [
        ("DETECTION:\n  ENABLE: True\n", "DETECTION.ENABLE=True asks for action detection (AVA)"),
        ("MULTIGRID:\n  LONG_CYCLE: True\n", "MULTIGRID.LONG_CYCLE=True asks for multigrid"),
    ],
)
def test_ignored_feature_switched_on_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "x.yaml", text)
    assert message in error_of(path)


def test_unknown_key_in_yaml_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "MVIT:\n  DEPHT: 16\n")
    assert error_of(path) == f"{path}: unknown config key MVIT.DEPHT; did you mean MVIT.DEPTH?"


def test_unknown_key_suggests_the_same_name_in_another_section(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "MODEL:\n  DEPTH: 16\n")
    # every section with a DEPTH key (up to three)
    suggested = "MVIT.DEPTH or VIT.DEPTH or CEIT.DEPTH"
    assert error_of(path) == f"{path}: unknown config key MODEL.DEPTH; did you mean {suggested}?"


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "MVITT:\n  DEPTH: 16\n")
    assert error_of(path) == f"{path}: unknown config key MVITT; did you mean MVIT or VIT?"


def test_unknown_key_in_opts(empty_yaml: Path) -> None:
    message = error_of(empty_yaml, ["SOLVER.BASE_LRR", "0.1"])
    assert message == "opts: unknown config key SOLVER.BASE_LRR; did you mean SOLVER.BASE_LR?"


def test_unknown_nested_key_in_opts_is_not_applied_to_its_parent(empty_yaml: Path) -> None:
    message = error_of(empty_yaml, ["MVIT.FOO.DEPTH", "2"])
    assert message.startswith("opts: unknown config key MVIT.FOO.DEPTH")


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "DATA:\n  QQQQQQQQ: 1\n")
    assert error_of(path).startswith(f"{path}: unknown config key DATA.QQQQQQQQ; remove it")


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'MVIT:\n  DEPTH: "sixteen"\n',
            "MVIT.DEPTH='sixteen' has the wrong type (str); expected an int like 16",
        ),
        (
            "MVIT:\n  DEPTH: [1, 2]\n",
            "MVIT.DEPTH=[1, 2] has the wrong type (list); expected an int",
        ),
        ("MVIT:\n  DEPTH: 16.5\n", "MVIT.DEPTH=16.5 has the wrong type (float); expected an int"),
        (
            "SOLVER:\n  BASE_LR: [0.1]\n",
            "SOLVER.BASE_LR=[0.1] has the wrong type (list); expected a number",
        ),
        ("MVIT:\n  QKV_BIAS: 1\n", "MVIT.QKV_BIAS=1 has the wrong type (int); expected a bool"),
        (
            "MVIT:\n  PATCH_KERNEL: 3\n",
            "MVIT.PATCH_KERNEL=3 has the wrong type (int); expected a list of ints",
        ),
        (
            "DATA:\n  TRAIN_JITTER_SCALES: [256.5, 320]\n",
            "DATA.TRAIN_JITTER_SCALES=[256.5, 320] has the wrong type",
        ),
        (
            "MVIT:\n  POOL_KVQ_KERNEL: 3\n",
            "MVIT.POOL_KVQ_KERNEL=3 has the wrong type (int); expected a list",
        ),
        ("TRAIN:\n  DATASET: 3\n", "TRAIN.DATASET=3 has the wrong type (int); expected a string"),
        ("MVIT: 3\n", "MVIT=3 must be a section"),
    ],
)
def test_wrong_type_names_key_value_and_type(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "x.yaml", text)
    assert error_of(path).startswith(f"{path}: {message}")


def test_ints_become_floats_and_strings_become_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.yaml",
        "SOLVER:\n  BASE_LR: 1\n  WARMUP_START_LR: 1e-8\n  CLIP_GRAD_L2NORM: 1\n"
        "MODEL:\n  DROPOUT_RATE: 0\nDATA:\n  MEAN: [0, 1, 1e-1]\n"
        "MVIT:\n  PATCH_KERNEL: (3, 5, 5)\n  DIM_MUL: ((1, 2.0),)\n",
    )
    cfg = load_quietly(path)
    assert cfg.SOLVER.BASE_LR == 1.0 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.WARMUP_START_LR == 1e-8 and type(cfg.SOLVER.WARMUP_START_LR) is float
    assert cfg.SOLVER.CLIP_GRAD_L2NORM == 1.0 and type(cfg.SOLVER.CLIP_GRAD_L2NORM) is float
    assert cfg.MODEL.DROPOUT_RATE == 0.0 and type(cfg.MODEL.DROPOUT_RATE) is float
    assert cfg.DATA.MEAN == [0.0, 1.0, 0.1] and all(type(v) is float for v in cfg.DATA.MEAN)
    assert cfg.MVIT.PATCH_KERNEL == [3, 5, 5]
    assert cfg.MVIT.DIM_MUL == [[1, 2.0]]


def test_empty_values(tmp_path: Path) -> None:
    path = write(
        tmp_path, "x.yaml", "TEST:\n  CHECKPOINT_FILE_PATH:\nTRAIN:\nMVIT:\n  POOL_KVQ_KERNEL:\n"
    )
    cfg = load_quietly(path)
    assert cfg.TEST.CHECKPOINT_FILE_PATH == ""
    assert cfg.MVIT.POOL_KVQ_KERNEL is None
    assert cfg.TRAIN == get_cfg().TRAIN


def test_mixed_precision_flag_means_fp16(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "TRAIN:\n  MIXED_PRECISION: True\n")
    assert load_quietly(path).TRAIN.PRECISION == "fp16"
    assert load_quietly(path, ["TRAIN.PRECISION", "bf16"]).TRAIN.PRECISION == "bf16"


# --------------------------------------------------------------------------------------------
# _BASE_ and overrides
# --------------------------------------------------------------------------------------------


def test_base_chain_is_relative_to_each_file(tmp_path: Path, monkeypatch) -> None:
    write(
        tmp_path, "root/a.yaml", "MVIT:\n  DEPTH: 10\n  EMBED_DIM: 128\nSOLVER:\n  BASE_LR: 0.5\n"
    )
    write(tmp_path, "root/sub/b.yaml", "_BASE_: ../a.yaml\nMVIT:\n  DEPTH: 12\n  NUM_HEADS: 2\n")
    child = write(tmp_path, "root/sub/deeper/c.yaml", "_BASE_: ../b.yaml\nMVIT:\n  NUM_HEADS: 4\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_quietly(child)
    assert (cfg.MVIT.DEPTH, cfg.MVIT.EMBED_DIM, cfg.MVIT.NUM_HEADS) == (12, 128, 4)
    assert cfg.SOLVER.BASE_LR == 0.5


def test_base_file_errors_name_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "a.yaml", "MVIT:\n  DEPHT: 10\n")
    child = write(tmp_path, "b.yaml", "_BASE_: a.yaml\n")
    assert error_of(child).startswith(f"{base}: unknown config key MVIT.DEPHT")


def test_missing_base_file(tmp_path: Path) -> None:
    child = write(tmp_path, "b.yaml", "_BASE_: nowhere.yaml\n")
    assert error_of(child) == (
        f"{child}: _BASE_ file {tmp_path / 'nowhere.yaml'} not found; check the path"
    )


def test_base_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "_BASE_: b.yaml\n")
    path = write(tmp_path, "b.yaml", "_BASE_: a.yaml\n")
    assert "_BASE_ cycle" in error_of(path)


def test_opts_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "MVIT:\n  DEPTH: 10\n")
    opts = [
        "MVIT.DEPTH",
        "24",
        "SOLVER.BASE_LR",
        "1e-3",
        "MVIT.PATCH_KERNEL",
        "[3, 5, 5]",
        "MVIT.CLS_EMBED_ON",
        "False",
        "OUTPUT_DIR",
        "/tmp/run",
        "MODEL.NUM_CLASSES",
        7,
    ]
    cfg = load_quietly(path, opts)
    assert cfg.MVIT.DEPTH == 24
    assert cfg.SOLVER.BASE_LR == 1e-3 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.MVIT.PATCH_KERNEL == [3, 5, 5]
    assert cfg.MVIT.CLS_EMBED_ON is False
    assert cfg.OUTPUT_DIR == "/tmp/run"
    assert cfg.MODEL.NUM_CLASSES == 7


def test_opts_with_odd_length(empty_yaml: Path) -> None:
    assert error_of(empty_yaml, ["MVIT.DEPTH", "24", "SOLVER.BASE_LR"]) == (
        "opts: overrides must be KEY VALUE pairs, got 3 items "
        "['MVIT.DEPTH', '24', 'SOLVER.BASE_LR']; add the missing value"
    )


def test_opts_wrong_type(empty_yaml: Path) -> None:
    assert error_of(empty_yaml, ["MVIT.DEPTH", "deep"]) == (
        "opts: MVIT.DEPTH='deep' has the wrong type (str); expected an int like 16"
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: config file not found; check the path"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "MVIT:\n  DEPTH: 4\n   EMBED_DIM: 3\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3:")
    assert "invalid YAML" in message


def test_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "- 1\n- 2\n")
    assert error_of(path).startswith(f"{path}: the top level must be KEY: VALUE lines")


def test_result_is_frozen(empty_yaml: Path) -> None:
    cfg = load_quietly(empty_yaml)
    with pytest.raises(AttributeError):
        cfg.MVIT.DEPTH = 3


# --------------------------------------------------------------------------------------------
# Validation rules
# --------------------------------------------------------------------------------------------


def test_crop_size_message_is_exact(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "DATA:\n  TRAIN_CROP_SIZE: 225\n")
    assert error_of(path) == (
        f"{path}: DATA.TRAIN_CROP_SIZE=225 is not divisible by the patch stride 4 "
        "(MVIT.PATCH_STRIDE=[2, 4, 4]); use a multiple of 4"
    )


RULE_CASES = [
    (
        ["DATA.TEST_CROP_SIZE", "230"],
        "DATA.TEST_CROP_SIZE=230 is not divisible by the patch stride 4",
    ),
    (
        ["MVIT.PATCH_STRIDE", "[2, 8, 8]", "DATA.TRAIN_CROP_SIZE", "228"],
        "DATA.TRAIN_CROP_SIZE=228 is not divisible by the patch stride 8",
    ),
    (
        ["DATA.NUM_FRAMES", "15"],
        "DATA.NUM_FRAMES=15 is not divisible by the temporal patch stride 2",
    ),
    (["MVIT.DIM_MUL", "[[1]]"], "MVIT.DIM_MUL entry [1] is not [layer, multiplier]"),
    (
        ["MVIT.DIM_MUL", "[[16, 2.0]]"],
        "MVIT.DIM_MUL entry [16, 2.0] has layer index 16; use an int in 0..15 (MVIT.DEPTH=16)",
    ),
    (["MVIT.HEAD_MUL", "[[-1, 2.0]]"], "MVIT.HEAD_MUL entry [-1, 2.0] has layer index -1"),
    (
        ["MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.DEPTH", "1"],
        "MVIT.HEAD_MUL entry [1, 2.0] has layer index 1; use an int in 0..0",
    ),
    (
        ["MVIT.HEAD_MUL", "[[1, 0]]"],
        "MVIT.HEAD_MUL entry [1, 0] has a multiplier that is not a positive number",
    ),
    (
        ["MVIT.POOL_Q_STRIDE", "[[1, 2, 2]]"],
        "MVIT.POOL_Q_STRIDE entry [1, 2, 2] is not [layer, st, sh, sw]",
    ),
    (
        ["MVIT.POOL_Q_STRIDE", "[[16, 1, 2, 2]]"],
        "MVIT.POOL_Q_STRIDE entry [16, 1, 2, 2] has layer index 16",
    ),
    (
        ["MVIT.POOL_KV_STRIDE", "[[0, 1, 8, 8], [3, 1, 0, 4]]"],
        "MVIT.POOL_KV_STRIDE entry [3, 1, 0, 4] has strides that are not ints >= 1",
    ),
    (
        ["MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 8]"],
        "MVIT.POOL_KV_STRIDE_ADAPTIVE=[1, 8] must be a list of 3 ints",
    ),
    (
        ["MVIT.POOL_KVQ_KERNEL", "[3, 3, 3, 3]"],
        "MVIT.POOL_KVQ_KERNEL=[3, 3, 3, 3] must be a list of 3 ints",
    ),
    (["MVIT.PATCH_KERNEL", "[7, 7]"], "MVIT.PATCH_KERNEL=[7, 7] must be a list of 3 ints"),
    (["MVIT.PATCH_PADDING", "[1, 3, -3]"], "MVIT.PATCH_PADDING=[1, 3, -3] must contain ints >= 0"),
    (
        ["MVIT.PATCH_2D", "True"],
        "MVIT.PATCH_KERNEL=[3, 7, 7] must be a list of 2 ints (MVIT.PATCH_2D=True uses [h, w])",
    ),
    (["MVIT.MODE", "pool"], "MVIT.MODE='pool' is not one of conv, conv_unshared, avg, max"),
    (["MVIT.NORM", "batchnorm"], "MVIT.NORM='batchnorm' is not supported by mvit_video: MViT uses LayerNorm"),
    (["MODEL.LOSS_FUNC", "contrastive_loss"], "MODEL.LOSS_FUNC='contrastive_loss' must be one of cross_entropy, "),
    (["MODEL.HEAD_ACT", "relu"], "MODEL.HEAD_ACT='relu' must be one of softmax, sigmoid, none"),
    (["DATA.MULTI_LABEL", "True", "MIXUP.ENABLE", "True"], "DATA.MULTI_LABEL=True cannot be combined with MIXUP"),
    (["DATA.MULTI_LABEL", "True", "DATA.PATH_LABEL_SEPARATOR", ","], "DATA.PATH_LABEL_SEPARATOR=',' cannot separate"),
    (["TRAIN.KILL_LOSS_EXPLOSION_FACTOR", "-1"], "TRAIN.KILL_LOSS_EXPLOSION_FACTOR=-1.0 must be >= 0"),
    (["TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN", "['']"], "TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN=[''] must be a list of "),
    (
        ["MVIT.EMBED_DIM", "100", "MVIT.NUM_HEADS", "3"],
        "MVIT.EMBED_DIM=100 is not divisible by MVIT.NUM_HEADS=3",
    ),
    (["MVIT.NUM_HEADS", "0"], "MVIT.NUM_HEADS=0 must be an int >= 1"),
    (["MODEL.NUM_CLASSES", "0"], "MODEL.NUM_CLASSES=0 must be an int >= 1"),
    (["MVIT.DROPPATH_RATE", "1.0"], "MVIT.DROPPATH_RATE=1.0 must be in [0, 1)"),
    (["MVIT.DROPOUT_RATE", "-0.1"], "MVIT.DROPOUT_RATE=-0.1 must be in [0, 1)"),
    (["MODEL.DROPOUT_RATE", "1.5"], "MODEL.DROPOUT_RATE=1.5 must be in [0, 1)"),
    (["DATA.MEAN", "[0.5, 0.5]"], "DATA.MEAN=[0.5, 0.5] must have 3 values (R, G, B)"),
    (["DATA.STD", "[0.2, 0.2, 0.2, 0.2]"], "DATA.STD=[0.2, 0.2, 0.2, 0.2] must have 3 values"),
    (["DATA.STD", "[0.2, 0.0, 0.2]"], "DATA.STD=[0.2, 0.0, 0.2] must be positive"),
    (["TEST.NUM_SPATIAL_CROPS", "2"], "TEST.NUM_SPATIAL_CROPS=2 must be 1 or 3"),
    (["TEST.NUM_ENSEMBLE_VIEWS", "0"], "TEST.NUM_ENSEMBLE_VIEWS=0 must be >= 1"),
    (["DATA.ENSEMBLE_METHOD", "mean"], "DATA.ENSEMBLE_METHOD='mean' must be sum or max"),
    (["TRAIN.PRECISION", "fp8"], "TRAIN.PRECISION='fp8' must be one of"),
    (["DATA.MAX_BAD_FRACTION", "1.5"], "DATA.MAX_BAD_FRACTION=1.5 must be in [0, 1]"),
    (["DEMO.TOPK", "0"], "DEMO.TOPK=0 must be >= 1"),
]


@pytest.mark.parametrize("opts, message", RULE_CASES, ids=[" ".join(c[0]) for c in RULE_CASES])
def test_validation_rule(empty_yaml: Path, opts: list[str], message: str) -> None:
    assert error_of(empty_yaml, opts).startswith(f"{empty_yaml} + opts: {message}")


def test_two_dimensional_patch_config_is_valid(empty_yaml: Path) -> None:
    opts = [
        "MVIT.PATCH_2D",
        "True",
        "MVIT.PATCH_KERNEL",
        "[7, 7]",
        "MVIT.PATCH_STRIDE",
        "[4, 4]",
        "MVIT.PATCH_PADDING",
        "[3, 3]",
        "DATA.NUM_FRAMES",
        "1",
        "DATA.INPUT_CHANNEL_NUM",
        "[3]",
    ]
    cfg = load_quietly(empty_yaml, opts)
    assert cfg.MVIT.PATCH_STRIDE == [4, 4]


def test_validate_a_config_built_in_python() -> None:
    cfg = get_cfg()
    cfg.DATA.TRAIN_CROP_SIZE = 225
    with pytest.raises(ConfigError, match=r"^config: DATA.TRAIN_CROP_SIZE=225 is not divisible"):
        validate(cfg)
    cfg = get_cfg()
    cfg.MVIT.DEPTH = "16"
    with pytest.raises(ConfigError, match=r"^config: MVIT.DEPTH='16' has the wrong type \(str\)"):
        validate(cfg)
    cfg = get_cfg()
    cfg.MVIT.DEPHT = 16
    with pytest.raises(
        ConfigError, match=r"^model.yaml: unknown config key MVIT.DEPHT; did you mean MVIT.DEPTH\?$"
    ):
        validate(cfg, source="model.yaml")
    cfg = get_cfg()
    cfg.MVIT.DIM_MUL = [(1, 2.0)]
    cfg.freeze()
    assert validate(cfg) is cfg
