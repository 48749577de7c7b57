"""Model families (MViT v1/v2, the plain-ViT family, Swin and Video Swin, Shuffle Transformer, PVT v1 /
PVTv2, LeViT, CoaT, CeiT, CvT), named variants, the config adapter and checkpoint loading."""

from .build import build_mae, build_model, mae_config_from_cfg, model_config_from_cfg, mvit_config_from_cfg
from .ceit import CeiT, CeiTConfig
from .coat import CoaT, CoaTConfig
from .cvt import ConvolutionalVisionTransformer, CvTConfig
from .families import FAMILIES, Family, family_of, get_family
from .levit import LeViT, LeViTConfig
from .mae import MAEConfig, MaskedAutoencoder, tube_mask
from .mvit import MViT, MViTConfig, block_specs
from .pretrained import CheckpointError, LoadReport, load_pretrained, read_checkpoint
from .pvt import PVTConfig, PyramidVisionTransformer
from .registry import create_model, list_models, model_config, register_model
from .shuffle import ShuffleConfig, ShuffleTransformer
from .swin import SwinConfig, SwinTransformer
from .vit import ViTConfig, VisionTransformer
from .weights import Preprocessing, Weights, WeightsError, get_weights, list_weights

__all__ = [
    "FAMILIES",
    "CeiT",
    "CeiTConfig",
    "CheckpointError",
    "CoaT",
    "CoaTConfig",
    "ConvolutionalVisionTransformer",
    "CvTConfig",
    "Family",
    "LeViT",
    "LeViTConfig",
    "LoadReport",
    "MAEConfig",
    "MaskedAutoencoder",
    "MViT",
    "MViTConfig",
    "PVTConfig",
    "Preprocessing",
    "PyramidVisionTransformer",
    "ShuffleConfig",
    "ShuffleTransformer",
    "SwinConfig",
    "SwinTransformer",
    "ViTConfig",
    "VisionTransformer",
    "Weights",
    "WeightsError",
    "block_specs",
    "build_mae",
    "build_model",
    "create_model",
    "family_of",
    "get_family",
    "get_weights",
    "list_models",
    "list_weights",
    "load_pretrained",
    "mae_config_from_cfg",
    "model_config",
    "model_config_from_cfg",
    "mvit_config_from_cfg",
    "read_checkpoint",
    "register_model",
    "tube_mask",
]
