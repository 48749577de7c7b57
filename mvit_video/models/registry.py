"""Named model variants of every family: ``list_models(pattern)`` and ``create_model(name, ...)``.

Each family module registers its published variants with ``@register_model`` (a function returning the variant's
config dataclass); the matching YAML under configs/ builds the same config (a test checks that).
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Optional

from torch import nn

_REGISTRY: dict[str, Callable[[], Any]] = {}


def register_model(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Registers a function returning a family's config dataclass under the function's name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models(pattern: Optional[str] = None) -> list[str]:
    """Names accepted by ``create_model``, sorted; with ``pattern`` (shell-style, e.g. ``"vit*"``) only those."""
    names = sorted(_REGISTRY)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_config(name: str) -> Any:
    """The config dataclass of a named variant."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]()


def create_model(
    name: str, num_classes: Optional[int] = None, checkpoint: Optional[str] = None, **overrides
) -> nn.Module:
    """Builds a named variant, optionally with another class count, other fields, and weights.

    Args:
        name: one of ``list_models()``, e.g. "mvitv2_s_16x4", "mvitv2_t_in1k" or "vit_b16_in1k".
        num_classes: classifier size (default: the variant's dataset).
        checkpoint: a checkpoint path in any format ``load_pretrained`` understands. With ``num_classes`` that
            differs from the checkpoint's, the head is re-initialised.
        **overrides: other fields of the variant's config (e.g. ``drop_path_rate=0.0``, ``act_checkpoint=True``).

    Returns:
        The model, on CPU.
    """
    from .families import family_of

    cfg = model_config(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = family_of(cfg).build(cfg.replace(**overrides))
    if checkpoint is not None:
        from .pretrained import load_pretrained

        mismatch = "reinit" if num_classes is not None else "error"
        load_pretrained(model, checkpoint, num_classes_mismatch=mismatch)
    return model
