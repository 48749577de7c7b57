"""MViT v1/v2 models, named variants, the config adapter and checkpoint loading."""

from .mvit import MViT, MViTConfig, block_specs
from .registry import create_model, list_models, model_config, register_model

__all__ = ["MViT", "MViTConfig", "block_specs", "create_model", "list_models", "model_config", "register_model"]
