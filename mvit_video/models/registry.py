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
    name: str,
    num_classes: Optional[int] = None,
    checkpoint: Optional[str] = None,
    pretrained: bool = False,
    weights: Optional[str] = None,
    **overrides,
) -> nn.Module:
    """Builds a named variant, optionally with another class count, other fields, and weights.

    Args:
        name: one of ``list_models()``, e.g. "mvitv2_s_16x4", "mvitv2_t_in1k" or "vit_b16_in1k".
        num_classes: classifier size (default: the variant's dataset).
        checkpoint: a checkpoint path in any format ``load_pretrained`` understands. With ``num_classes`` that
            differs from the checkpoint's, the head is re-initialised.
        pretrained: load the variant's default published weights (``mvit_video.models.weights``), downloaded
            into the cache on first use.
        weights: load the published weights with this tag instead (e.g. "torchvision_k400"; see
            ``list_weights(name)``). The entry is kept as ``model.pretrained_weights`` (its ``preprocessing`` is the
            input the weights expect).
        **overrides: other fields of the variant's config (e.g. ``drop_path_rate=0.0``, ``act_checkpoint=True``).

    Returns:
        The model, on CPU.
    """
    from .families import family_of

    cfg = model_config(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    entry = _published_weights(name, checkpoint, pretrained, weights)
    if entry is not None:
        from .download import fetch_weights

        checkpoint = str(fetch_weights(entry))
    model = family_of(cfg).build(cfg.replace(**overrides))
    if checkpoint is not None:
        from .pretrained import load_pretrained

        mismatch = "reinit" if num_classes is not None else "error"
        load_pretrained(model, checkpoint, num_classes_mismatch=mismatch)
    if entry is not None:
        model.pretrained_weights = entry
    return model


def _published_weights(name: str, checkpoint: Optional[str], pretrained: bool, weights: Optional[str]):
    """The registry entry ``pretrained`` / ``weights`` ask for (None when neither), checked before any work."""
    if not pretrained and weights is None:
        return None
    from .weights import WeightsError, get_weights

    if checkpoint is not None:
        raise WeightsError(f"create_model({name!r}): give checkpoint or pretrained/weights, not both")
    return get_weights(name, weights)
