"""The config schema: PySlowFast section/key names and default values, plus a few toolkit keys.

Every key a PySlowFast MViT YAML may set has PySlowFast's default value here, so a PySlowFast YAML
builds the same model. Keys marked "toolkit" are mvit_video additions. PySlowFast keys that this
toolkit does not implement (other model families, detection, contrastive self-supervision, ...)
are listed in ``IGNORED_SLOWFAST_KEYS``: the loader accepts them and drops them with a warning.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode

from .sections import derived_sections, nullable_types, section_node

# PySlowFast sections / keys that mvit_video accepts in a YAML but drops with one warning.
# An entry is a full key or a section prefix (every key under it is ignored).
IGNORED_SLOWFAST_KEYS: frozenset[str] = frozenset(
    {
        # Whole sections: other model families, tasks and tooling.
        "PREFETCH",  # SSv2_MVITv2_S_16x4.yaml has it; current PySlowFast itself rejects it
        "TASK",
        "RESNET",
        "X3D",
        "NONLOCAL",
        "SLOWFAST",
        "DETECTION",
        "AVA",
        "MULTIGRID",
        "CONTRASTIVE",
        "VIS_MASK",
        "BENCHMARK",
        # SSL / chunked-CSV data options.
        "DATA.PATH_TO_PRELOAD_IMDB",
        "DATA.TRAIN_PCA_EIGVAL",
        "DATA.TRAIN_PCA_EIGVEC",
        "DATA.COLOR_RND_GRAYSCALE",
        "DATA.LOADER_CHUNK_SIZE",
        "DATA.LOADER_CHUNK_OVERALL_SIZE",
        "DATA.SKIP_ROWS",
        "DATA.TIME_DIFF_PROB",
        "DATA.SSL_COLOR_JITTER",
        "DATA.SSL_COLOR_BRI_CON_SAT",
        "DATA.SSL_COLOR_HUE",
        "DATA.SSL_MOCOV2_AUG",
        "DATA.SSL_BLUR_SIGMA_MIN",
        "DATA.SSL_BLUR_SIGMA_MAX",
        "DATA.IN22K_TRAINVAL",
        "DATA.IN22k_VAL_IN1K",
        "DATA.DUMMY_LOAD",
        # CNN-only model options.
        "MODEL.SINGLE_PATHWAY_ARCH",
        "MODEL.MULTI_PATHWAY_ARCH",
        "MODEL.DROPCONNECT_RATE",
        "MODEL.FROZEN_BN",
        "TRAIN.CHECKPOINT_IN_INIT",
        "TEST.NUM_TEMPORAL_CLIPS",
        # AVA / detection demo options.
        "DEMO.DETECTRON2_CFG",
        "DEMO.DETECTRON2_WEIGHTS",
        "DEMO.DETECTRON2_THRESH",
        "DEMO.PREDS_BOXES",
        "DEMO.GT_BOXES",
        "DEMO.STARTING_SECOND",
        "DEMO.CLIP_VIS_SIZE",
        "DEMO.NUM_VIS_INSTANCES",
        "DEMO.VIS_MODE",
        "DEMO.COMMON_CLASS_THRES",
        "DEMO.UNCOMMON_CLASS_THRES",
        "DEMO.COMMON_CLASS_NAMES",
        # TensorBoard visualisations beyond scalar logging.
        "TENSORBOARD.CONFUSION_MATRIX",
        "TENSORBOARD.HISTOGRAM",
        "TENSORBOARD.MODEL_VIS",
        "TENSORBOARD.WRONG_PRED_VIS",
    }
)

# Ignored keys that switch on a feature mvit_video does not have: a truthy value is an error,
# because dropping it would silently run a different experiment.
UNSUPPORTED_WHEN_SET: dict[str, str] = {
    "DETECTION.ENABLE": "action detection (AVA)",
    "MULTIGRID.LONG_CYCLE": "multigrid training",
    "MULTIGRID.SHORT_CYCLE": "multigrid training",
}

# Schema keys mvit_video does not implement: a value other than the default is a one-line ConfigError naming the
# key and saying what to do instead (every other key is read by the code; tests/config/test_schema_coverage.py
# fails for a key that is neither, or both).
REFUSED_KEYS: dict[str, str] = {
    **{
        f"BN.{name}": "MViT has no batch norm (it uses LayerNorm); remove the key"
        for name in (
            "USE_PRECISE_STATS", "NUM_BATCHES_PRECISE", "WEIGHT_DECAY", "NORM_TYPE", "NUM_SPLITS", "NUM_SYNC_DEVICES",
            "GLOBAL_SYNC",
        )
    },
    **{
        f"{split}.CHECKPOINT_TYPE": "only PyTorch checkpoints are read (caffe2 .pkl files hold ResNet/SlowFast "
        "weights, no MViT); set it to 'pytorch'"
        for split in ("TRAIN", "TEST")
    },
    "AUG.RE_SPLIT": "random erasing applies to every clip (PySlowFast does not read this key either); remove it",
    "MODEL.FC_INIT_STD": "the MViT classifier starts at trunc-normal std 0.02 (PySlowFast's MViT ignores this key "
    "too); scale it with MVIT.HEAD_INIT_SCALE instead",
    "MVIT.NORM": "MViT uses LayerNorm; set it to 'layernorm'",
    "DATA.TRAIN_JITTER_FPS": "frame-rate jitter in training is not implemented; remove the key",
    "DATA.TRAIN_CROP_NUM_TEMPORAL": "several crops per training video (PySlowFast's self-supervised recipe) are "
    "not implemented; use AUG.NUM_SAMPLE for repeated augmentation",
    "DATA.TRAIN_CROP_NUM_SPATIAL": "several crops per training video (PySlowFast's self-supervised recipe) are "
    "not implemented; use AUG.NUM_SAMPLE for repeated augmentation",
    "DATA.DECODING_SHORT_SIZE": "videos are decoded at their own size and resized by the transforms; remove the key",
    "DATA.TRAIN_JITTER_MOTION_SHIFT": "motion-shift crops (PySlowFast's self-supervised recipe) are not "
    "implemented; remove the key",
    "SOLVER.GAMMA": "no LR policy uses it (PySlowFast's neither); for step decay use SOLVER.LR_POLICY "
    "steps_with_relative_lrs with SOLVER.STEPS and SOLVER.LRS",
    "SOLVER.STEP_SIZE": "no LR policy uses it (PySlowFast's neither); for step decay use SOLVER.LR_POLICY "
    "steps_with_relative_lrs with SOLVER.STEPS and SOLVER.LRS",
    "SOLVER.WARMUP_FACTOR": "warmup starts at SOLVER.WARMUP_START_LR (PySlowFast does not read this key either); "
    "set SOLVER.WARMUP_START_LR",
    "SOLVER.LARS_ON": "LARS is not implemented; set it to False",
    "TENSORBOARD.PREDICTIONS_PATH": "visualising saved predictions is not implemented (TEST.SAVE_RESULTS_PATH "
    "saves them); remove the key",
    "TENSORBOARD.CATEGORIES_PATH": "per-category-group plots are not implemented; remove the key",
    "DEMO.INPUT_FORMAT": "the demo's frame sources deliver RGB frames themselves; remove the key",
    "DEMO.THREAD_ENABLE": "the demo reads, predicts and draws in one loop; remove the key",
    "DEMO.NUM_CLIPS_SKIP": "the demo predicts on every clip; use DEMO.STRIDE to predict less often",
    "DEMO.FPS": "the demo uses the source's frame rate; set DEMO.OUTPUT_FPS for the written video",
    "DEMO.SLOWMO": "slow-motion output is not implemented; remove the key",
    "MASK.DECODER_SEP_POS_EMBED": "the MAE decoder's positions are VideoMAE's fixed sin-cos table over the whole "
    "grid (separate space and time embeddings are not implemented); remove the key",
    **{
        f"MASK.{name}": "the transformer prediction head ('separate_xformer') is not implemented; MaskFeat uses "
        "MASK.HEAD_TYPE 'separate' (LayerNorm + Linear); remove the key"
        for name in ("HEAD_TYPE", "DEC_KV_KERNEL", "DEC_KV_STRIDE")
    },
}

# Values of MODEL.LOSS_FUNC (PySlowFast's classification losses) and MODEL.HEAD_ACT (its test-time head).
CLASSIFICATION_LOSS_FUNCS: tuple[str, ...] = ("cross_entropy", "soft_cross_entropy", "bce", "bce_logit")
LOSS_FUNCS: tuple[str, ...] = (*CLASSIFICATION_LOSS_FUNCS, "multi_mse")  # multi_mse: masked pre-training
HEAD_ACTS: tuple[str, ...] = ("softmax", "sigmoid", "none")

# Expected type of keys whose default is None (None stays allowed).
NULLABLE_TYPES: dict[str, type] = {
    "MVIT.POOL_KV_STRIDE_ADAPTIVE": list,
    "MVIT.POOL_KVQ_KERNEL": list,
    "SOLVER.CLIP_GRAD_VAL": float,
    "SOLVER.CLIP_GRAD_L2NORM": float,
    "AUG.MAX_MASK_PATCHES_PER_BLOCK": int,
}


def _add_misc(cfg: CfgNode) -> None:
    """Top-level keys: devices, seeds, output and logging."""
    cfg.NUM_GPUS = 1
    cfg.NUM_SHARDS = 1  # machines
    cfg.SHARD_ID = 0  # index of this machine
    cfg.RNG_SEED = 1
    cfg.OUTPUT_DIR = "."
    cfg.LOG_PERIOD = 10  # iterations between log lines
    cfg.LOG_MODEL_INFO = True
    cfg.DIST_BACKEND = "nccl"


def _add_bn(cfg: CfgNode) -> None:
    """BN: batch-norm options (MViT has no BN; kept so PySlowFast YAMLs load unchanged)."""
    cfg.BN = CfgNode()
    cfg.BN.USE_PRECISE_STATS = False
    cfg.BN.NUM_BATCHES_PRECISE = 200
    cfg.BN.WEIGHT_DECAY = 0.0
    cfg.BN.NORM_TYPE = "batchnorm"
    cfg.BN.NUM_SPLITS = 1
    cfg.BN.NUM_SYNC_DEVICES = 1
    cfg.BN.GLOBAL_SYNC = False


def _add_train(cfg: CfgNode) -> None:
    """TRAIN: training loop, checkpointing and numeric precision."""
    cfg.TRAIN = CfgNode()
    cfg.TRAIN.ENABLE = True
    cfg.TRAIN.DATASET = "kinetics"
    cfg.TRAIN.BATCH_SIZE = 64  # total over all GPUs
    cfg.TRAIN.EVAL_PERIOD = 10  # epochs
    cfg.TRAIN.CHECKPOINT_PERIOD = 10  # epochs
    cfg.TRAIN.AUTO_RESUME = True  # resume from the last checkpoint in OUTPUT_DIR
    cfg.TRAIN.CHECKPOINT_FILE_PATH = ""  # initial weights
    cfg.TRAIN.CHECKPOINT_TYPE = "pytorch"
    cfg.TRAIN.CHECKPOINT_INFLATE = False  # inflate 2D kernels of CHECKPOINT_FILE_PATH to 3D (else they are an error)
    cfg.TRAIN.CHECKPOINT_EPOCH_RESET = False  # False: a training checkpoint continues from its epoch and optimizer
    cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = []  # substrings removed (first occurrence) from checkpoint keys
    cfg.TRAIN.CHECKPOINT_REINIT_HEAD = False  # toolkit: fine-tune CHECKPOINT_FILE_PATH with a new classifier
    cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR = 0.0  # stop when a loss exceeds this x the mean of the 5 before; 0: off
    cfg.TRAIN.MIXED_PRECISION = False  # PySlowFast: True means fp16 autocast
    cfg.TRAIN.PRECISION = "fp32"  # toolkit: "fp32", "fp16" or "bf16" autocast dtype
    cfg.TRAIN.GRAD_ACCUM_STEPS = 1  # toolkit: batches per optimizer step (effective batch = BATCH_SIZE * steps)
    cfg.TRAIN.OVERFIT_CLIPS = 0  # toolkit: sanity check: train on N clips (classes in turn), fixed views


def _add_aug(cfg: CfgNode) -> None:
    """AUG: RandAugment, colour jitter and random erasing."""
    cfg.AUG = CfgNode()
    cfg.AUG.ENABLE = False
    cfg.AUG.NUM_SAMPLE = 1  # repeated augmentation: clips per decoded video
    cfg.AUG.COLOR_JITTER = 0.4
    cfg.AUG.AA_TYPE = "rand-m9-mstd0.5-inc1"
    cfg.AUG.INTERPOLATION = "bicubic"  # PIL filter of RandAugment's rotate/shear/translate: bilinear or bicubic
    # toolkit: "pyslowfast" = PySlowFast's order for the dataset: for Kinetics/SSv2 RandAugment on the decoded frames,
    # normalise, then crop + flip, then erasing; for images (its imagenet.py, timm's pipeline) the crop first.
    # "crop_first" = crop + flip first, RandAugment on the crop (for videos cheaper, but its geometric ops then fill
    # the crop's corners; costs in docs/benchmarks.md)
    cfg.AUG.ORDER = "pyslowfast"
    cfg.AUG.RE_PROB = 0.25
    cfg.AUG.RE_MODE = "pixel"
    cfg.AUG.RE_COUNT = 1
    cfg.AUG.RE_SPLIT = False
    # Masked pre-training (PySlowFast's MaskFeat keys): each training clip carries a token mask
    cfg.AUG.GEN_MASK_LOADER = False
    cfg.AUG.MASK_TUBE = False  # MaskFeat: 2-D blocks repeated over time (MAE: VideoMAE's random tubes)
    cfg.AUG.MASK_FRAMES = False  # whole time slices
    cfg.AUG.MASK_WINDOW_SIZE = [8, 7, 7]  # (T, H, W) of the mask; T = token grid T, H and W divide the token grid
    cfg.AUG.MASK_RATIO = 0.0
    cfg.AUG.MAX_MASK_PATCHES_PER_BLOCK = None  # largest cube area; None: one (H, W) slice of the window


def _add_mask(cfg: CfgNode) -> None:
    """MASK: masked pre-training (MaskFeat on MViT; PySlowFast's keys and defaults)."""
    cfg.MASK = CfgNode()
    cfg.MASK.ENABLE = False  # masked pre-training with MODEL.LOSS_FUNC multi_mse, no labels: MaskMViT (mvit) ...
    cfg.MASK.MAE_ON = False  # ... or, with MAE_ON, the ViT family's MaskedAutoencoder (vit)
    cfg.MASK.MAE_RND_MASK = False  # MAE: random token masks (else VideoMAE's tubes, AUG.MASK_TUBE)
    cfg.MASK.PER_FRAME_MASKING = False  # MAE random masks: the same count in every time slice
    cfg.MASK.TIME_STRIDE_LOSS = True  # pixel targets: only every temporal-stride-th frame
    cfg.MASK.NORM_PRED_PIXEL = True  # pixel targets normalised per token
    cfg.MASK.SCALE_INIT_BY_DEPTH = False
    cfg.MASK.DECODER_EMBED_DIM = 512  # MAE decoder width (heads: one per 64 channels)
    cfg.MASK.DECODER_SEP_POS_EMBED = False
    cfg.MASK.DEC_KV_KERNEL = []
    cfg.MASK.DEC_KV_STRIDE = []
    cfg.MASK.PRETRAIN_DEPTH = [15]  # blocks feeding a prediction head; later blocks are dropped
    cfg.MASK.HEAD_TYPE = "separate"
    cfg.MASK.DECODER_DEPTH = 0  # MAE decoder blocks
    cfg.MASK.PRED_HOG = False  # True: HOG targets (MaskFeat); False: pixels


def _add_mixup(cfg: CfgNode) -> None:
    """MIXUP: mixup / cutmix and label smoothing."""
    cfg.MIXUP = CfgNode()
    cfg.MIXUP.ENABLE = False
    cfg.MIXUP.ALPHA = 0.8
    cfg.MIXUP.CUTMIX_ALPHA = 1.0
    cfg.MIXUP.PROB = 1.0
    cfg.MIXUP.SWITCH_PROB = 0.5
    cfg.MIXUP.LABEL_SMOOTH_VALUE = 0.1


def _add_test(cfg: CfgNode) -> None:
    """TEST: evaluation and multi-view testing."""
    cfg.TEST = CfgNode()
    cfg.TEST.ENABLE = True
    cfg.TEST.DATASET = "kinetics"
    cfg.TEST.BATCH_SIZE = 8
    cfg.TEST.CHECKPOINT_FILE_PATH = ""  # weights to evaluate
    cfg.TEST.CHECKPOINT_TYPE = "pytorch"
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 10  # temporal clips per video
    cfg.TEST.NUM_SPATIAL_CROPS = 3
    cfg.TEST.SAVE_RESULTS_PATH = ""  # pickle of [video scores, labels] in OUTPUT_DIR, as PySlowFast


def _add_model(cfg: CfgNode) -> None:
    """MODEL: architecture name, classifier head and memory/speed switches."""
    cfg.MODEL = CfgNode()
    cfg.MODEL.ARCH = "mvit"  # toolkit: PySlowFast defaults to "slowfast"; its MViT YAMLs set "mvit"
    cfg.MODEL.MODEL_NAME = "MViT"  # toolkit: PySlowFast defaults to "SlowFast"
    cfg.MODEL.NUM_CLASSES = 400
    cfg.MODEL.LOSS_FUNC = "cross_entropy"  # one of LOSS_FUNCS
    cfg.MODEL.DROPOUT_RATE = 0.5  # before the classifier
    cfg.MODEL.FC_INIT_STD = 0.01
    cfg.MODEL.HEAD_ACT = "softmax"  # applied at test time: one of HEAD_ACTS
    cfg.MODEL.ACT_CHECKPOINT = False  # activation checkpointing per block
    cfg.MODEL.COMPILE = False  # toolkit: torch.compile the model for training and test
    cfg.MODEL.ATTN_IMPL = "auto"  # toolkit: "auto", "sdpa" (fused, rel-pos folded into q/k) or "math" (reference)
    cfg.MODEL.DETACH_FINAL_FC = False  # train the classifier only
    cfg.MODEL.FP16_ALLREDUCE = False  # DDP gradients all-reduced in float16
    cfg.MODEL.COMPILE = False  # toolkit: wrap the model in torch.compile


def _add_mvit_embedding(cfg: CfgNode) -> None:
    """MVIT: patch embedding, width and positional embeddings."""
    cfg.MVIT.MODE = "conv"  # pooling operator: conv, conv_unshared, avg, max
    cfg.MVIT.POOL_FIRST = False
    cfg.MVIT.CLS_EMBED_ON = True
    cfg.MVIT.PATCH_KERNEL = [3, 7, 7]
    cfg.MVIT.PATCH_STRIDE = [2, 4, 4]
    cfg.MVIT.PATCH_PADDING = [2, 4, 4]  # PySlowFast default; its YAMLs use [1, 3, 3]
    cfg.MVIT.PATCH_2D = False  # 2-element patch lists, image model
    cfg.MVIT.EMBED_DIM = 96
    cfg.MVIT.NUM_HEADS = 1
    cfg.MVIT.NORM_STEM = False
    cfg.MVIT.SEP_POS_EMBED = False  # MViTv1: separate space/time absolute embeddings
    cfg.MVIT.USE_ABS_POS = True
    cfg.MVIT.USE_FIXED_SINCOS_POS = False
    cfg.MVIT.REL_POS_SPATIAL = False  # MViTv2 decomposed relative positions
    cfg.MVIT.REL_POS_TEMPORAL = False
    cfg.MVIT.REL_POS_ZERO_INIT = False
    cfg.MVIT.ZERO_DECAY_POS_CLS = True  # no weight decay on pos/cls embeddings


def _add_mvit_blocks(cfg: CfgNode) -> None:
    """MVIT: depth, per-layer schedules ([layer, ...] lists) and block options."""
    cfg.MVIT.DEPTH = 16
    cfg.MVIT.MLP_RATIO = 4.0
    cfg.MVIT.QKV_BIAS = True
    cfg.MVIT.DROPPATH_RATE = 0.1
    cfg.MVIT.DROPOUT_RATE = 0.0
    cfg.MVIT.LAYER_SCALE_INIT_VALUE = 0.0  # 0 disables layer scale
    cfg.MVIT.NORM = "layernorm"
    cfg.MVIT.DIM_MUL = []  # [[layer, multiplier], ...]
    cfg.MVIT.HEAD_MUL = []  # [[layer, multiplier], ...]
    cfg.MVIT.POOL_KV_STRIDE = []  # [[layer, st, sh, sw], ...]
    cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE = None  # [st, sh, sw] at layer 0, shrunk at Q pooling
    cfg.MVIT.POOL_Q_STRIDE = []  # [[layer, st, sh, sw], ...]
    cfg.MVIT.POOL_KVQ_KERNEL = None  # [kt, kh, kw]; None: stride + 1 where stride > 1
    cfg.MVIT.RESIDUAL_POOLING = False  # MViTv2
    cfg.MVIT.DIM_MUL_IN_ATT = False  # MViTv2: widen in attention, not in the MLP
    cfg.MVIT.SEPARATE_QKV = False
    cfg.MVIT.HEAD_INIT_SCALE = 1.0
    cfg.MVIT.USE_MEAN_POOLING = False  # classify the mean token instead of cls


def _add_mvit_reversible(cfg: CfgNode) -> None:
    """MVIT.REV: reversible MViT (Rev-MViT), PySlowFast's keys and defaults."""
    cfg.MVIT.REV = CfgNode()
    cfg.MVIT.REV.ENABLE = False
    cfg.MVIT.REV.RESPATH_FUSE = "concat"  # fusing the two streams after the last block: concat, avg, add, max, min
    cfg.MVIT.REV.BUFFER_LAYERS = []  # stage-transition layers (width change / query pooling), stored activations
    cfg.MVIT.REV.RES_PATH = "conv"  # a transition pools its skip with the query's pooling conv
    cfg.MVIT.REV.PRE_Q_FUSION = "avg"  # fusing the two streams before a transition: avg, add, max, min, concat


def _add_mvit(cfg: CfgNode) -> None:
    """MVIT: the MViT / MViTv2 architecture."""
    cfg.MVIT = CfgNode()
    _add_mvit_embedding(cfg)
    _add_mvit_blocks(cfg)
    _add_mvit_reversible(cfg)


def _add_data_sampling(cfg: CfgNode) -> None:
    """DATA: dataset location, clip sampling and decoding."""
    cfg.DATA.PATH_TO_DATA_DIR = ""
    cfg.DATA.PATH_PREFIX = ""
    cfg.DATA.PATH_LABEL_SEPARATOR = " "  # between path and label in the CSV files
    cfg.DATA.NUM_FRAMES = 8
    cfg.DATA.SAMPLING_RATE = 8
    cfg.DATA.TARGET_FPS = 30
    cfg.DATA.TRAIN_JITTER_FPS = 0.0
    cfg.DATA.USE_OFFSET_SAMPLING = False
    cfg.DATA.INV_UNIFORM_SAMPLE = False
    cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = 1
    cfg.DATA.TRAIN_CROP_NUM_SPATIAL = 1
    cfg.DATA.DECODING_BACKEND = "pyav"  # toolkit default, the fastest exact reader measured (docs/benchmarks.md); PySlowFast: "torchvision"
    cfg.DATA.DECODING_SHORT_SIZE = 256
    cfg.DATA.MAX_BAD_FRACTION = 0.05  # toolkit: abort when more videos than this fail to decode
    cfg.DATA.MULTI_LABEL = False  # "path 3,7" CSV labels, multi-hot targets, mAP in evaluation
    cfg.DATA.ENSEMBLE_METHOD = "sum"  # multi-view aggregation: sum or max


def _add_data_transforms(cfg: CfgNode) -> None:
    """DATA: spatial augmentation, crops and normalisation."""
    cfg.DATA.INPUT_CHANNEL_NUM = [3, 3]  # PySlowFast default (two pathways); MViT uses [3]
    cfg.DATA.MEAN = [0.45, 0.45, 0.45]
    cfg.DATA.STD = [0.225, 0.225, 0.225]
    cfg.DATA.TRAIN_JITTER_SCALES = [256, 320]
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE = []  # Inception-style area range; overrides scales
    cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []
    cfg.DATA.TRAIN_JITTER_MOTION_SHIFT = False
    cfg.DATA.TRAIN_CROP_SIZE = 224
    cfg.DATA.TEST_CROP_SIZE = 256
    cfg.DATA.IN_VAL_CROP_RATIO = 0.875  # image test: short side to int(TEST_CROP_SIZE / ratio), centre crop; 0: no crop
    cfg.DATA.RANDOM_FLIP = True
    cfg.DATA.REVERSE_INPUT_CHANNEL = False  # RGB <-> BGR


def _add_data(cfg: CfgNode) -> None:
    """DATA: everything about reading and transforming clips."""
    cfg.DATA = CfgNode()
    _add_data_sampling(cfg)
    _add_data_transforms(cfg)


def _add_solver(cfg: CfgNode) -> None:
    """SOLVER: optimiser and learning-rate schedule."""
    cfg.SOLVER = CfgNode()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    cfg.SOLVER.LR_POLICY = "cosine"
    cfg.SOLVER.COSINE_END_LR = 0.0
    cfg.SOLVER.COSINE_AFTER_WARMUP = False
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.STEP_SIZE = 1
    cfg.SOLVER.STEPS = []
    cfg.SOLVER.LRS = []
    cfg.SOLVER.MAX_EPOCH = 300
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.DAMPENING = 0.0
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.ZERO_WD_1D_PARAM = False  # no decay on biases and norm weights
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    cfg.SOLVER.WARMUP_START_LR = 0.01
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"
    cfg.SOLVER.CLIP_GRAD_VAL = None
    cfg.SOLVER.CLIP_GRAD_L2NORM = None
    cfg.SOLVER.LARS_ON = False
    cfg.SOLVER.LAYER_DECAY = 1.0  # 1.0 disables layer-wise lr decay
    cfg.SOLVER.BACKBONE_LR_MULT = 1.0  # lr of everything but the classifier, relative to BASE_LR (Video Swin: 0.1)
    cfg.SOLVER.BETAS = [0.9, 0.999]  # Adam(W)


def _add_data_loader(cfg: CfgNode) -> None:
    """DATA_LOADER: worker processes."""
    cfg.DATA_LOADER = CfgNode()
    cfg.DATA_LOADER.NUM_WORKERS = 8
    cfg.DATA_LOADER.PIN_MEMORY = True
    cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False  # decoder threads chosen by the library (else 1)


def _add_tensorboard(cfg: CfgNode) -> None:
    """TENSORBOARD: scalar logging."""
    cfg.TENSORBOARD = CfgNode()
    cfg.TENSORBOARD.ENABLE = False
    cfg.TENSORBOARD.LOG_DIR = ""  # empty: OUTPUT_DIR/runs-<dataset>
    cfg.TENSORBOARD.PREDICTIONS_PATH = ""
    cfg.TENSORBOARD.CLASS_NAMES_PATH = ""
    cfg.TENSORBOARD.CATEGORIES_PATH = ""


def _add_demo(cfg: CfgNode) -> None:
    """DEMO: live / file classification demo."""
    cfg.DEMO = CfgNode()
    cfg.DEMO.ENABLE = False
    cfg.DEMO.LABEL_FILE_PATH = ""  # json {"class name": id}
    cfg.DEMO.WEBCAM = -1  # camera index; -1 reads DEMO.INPUT_VIDEO
    cfg.DEMO.INPUT_VIDEO = ""
    cfg.DEMO.OUTPUT_FILE = ""  # empty: show a window
    cfg.DEMO.OUTPUT_FPS = -1  # -1: the input's fps
    cfg.DEMO.INPUT_FORMAT = "BGR"
    cfg.DEMO.DISPLAY_WIDTH = 0
    cfg.DEMO.DISPLAY_HEIGHT = 0
    cfg.DEMO.BUFFER_SIZE = 0  # frames shared by consecutive clips
    cfg.DEMO.THREAD_ENABLE = False
    cfg.DEMO.NUM_CLIPS_SKIP = 0
    cfg.DEMO.FPS = 30
    cfg.DEMO.SLOWMO = 1
    cfg.DEMO.STRIDE = 0  # toolkit: new frames between predictions; 0 = clip length - BUFFER_SIZE
    cfg.DEMO.TOPK = 5  # toolkit: classes shown per prediction
    cfg.DEMO.TIMELINE_FILE = ""  # toolkit: JSON timeline; empty: OUTPUT_FILE with .json (none without OUTPUT_FILE)
    cfg.DEMO.STALL_SECONDS = 5.0  # toolkit: a stream that gives no frame for this long is finished


def get_cfg() -> CfgNode:
    """Build a fresh default config.

    Returns:
        A new, unfrozen fvcore ``CfgNode`` with PySlowFast's section and key names and default
        values (plus the toolkit keys, and one section per model family derived from its config
        dataclass); changing it never affects later calls.
    """
    cfg = CfgNode()
    for add_section in (
        _add_misc,
        _add_bn,
        _add_train,
        _add_aug,
        _add_mixup,
        _add_test,
        _add_model,
        _add_mvit,
        _add_mask,
        _add_data,
        _add_solver,
        _add_data_loader,
        _add_tensorboard,
        _add_demo,
    ):
        add_section(cfg)
    _add_family_sections(cfg)
    return cfg


def _add_family_sections(cfg: CfgNode) -> None:
    """One section per model family other than MViT, derived from its config dataclass (``sections.py``)."""
    for name, section in derived_sections().items():
        cfg[name] = section_node(section)


def nullable_type(key: str) -> type | None:
    """The expected type of a key whose default is None (``NULLABLE_TYPES`` and the derived sections' ones)."""
    return NULLABLE_TYPES.get(key) or nullable_types().get(key)
