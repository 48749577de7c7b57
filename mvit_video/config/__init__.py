"""Configuration: the PySlowFast-compatible schema, YAML loading and validation."""

from .defaults import get_cfg
from .loader import IgnoredConfigKeyWarning, load_config
from .validation import ConfigError, validate

__all__ = ["ConfigError", "IgnoredConfigKeyWarning", "get_cfg", "load_config", "validate"]
