"""MViT v1/v2 models, named variants, the config adapter and checkpoint loading."""

from .build import build_model, mvit_config_from_cfg
from .mvit import MViT, MViTConfig, block_specs
from .pretrained import CheckpointError, LoadReport, load_pretrained, read_checkpoint
from .registry import create_model, list_models, model_config, register_model

__all__ = [
    "MViT",
    "MViTConfig",
    "CheckpointError",
    "LoadReport",
    "block_specs",
    "build_model",
    "create_model",
    "list_models",
    "load_pretrained",
    "model_config",
    "mvit_config_from_cfg",
    "read_checkpoint",
    "register_model",
]
