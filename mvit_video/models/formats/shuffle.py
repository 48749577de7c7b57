"""Checkpoint formats of the Shuffle Transformer family, mapped onto its names: pure functions.

- ``shuffle``: the official files (mulinmeng/Shuffle-Transformer, ``ShuffleTransformer.state_dict()``, usually
  under ``"model"``) and this toolkit's own Shuffle checkpoints. The names are already ours; the official
  ``relative_position_index`` buffers are dropped (the model recomputes them for its window) and 2-D conv kernels
  (O, I, k, k) get a time axis of 1, so ``load_pretrained`` inflates only those whose 3-D kernel is longer in time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

SHUFFLE_FORMATS = ("shuffle",)


def detect_shuffle_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which of ``SHUFFLE_FORMATS`` a (bare) state dict is in; ``ValueError`` naming some keys otherwise."""
    keys = list(state_dict)
    if any(k.startswith("to_token.conv1.") for k in keys) and any(k.startswith("stage1.layers.") for k in keys):
        return "shuffle"
    raise ValueError(f"not a Shuffle Transformer checkpoint of a known layout (keys {', '.join(keys[:6])}, ...); "
                     "supported: the official Shuffle-Transformer files and mvit_video's own")  # fmt: skip


def official_to_shuffle(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An official (or own) state dict under our names: index buffers dropped, 2-D kernels made (O, I, 1, k, k)."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.endswith("relative_position_index"):
            continue
        out[key] = value.unsqueeze(2) if value.ndim == 4 else value  # every 4-D tensor is a conv kernel
    return out


def convert_to_shuffle(state_dict: Mapping[str, Any], source: str | None = None) -> tuple[StateDict, str]:
    """A bare Shuffle state dict of any supported layout, under our names, and the detected format."""
    fmt = source or detect_shuffle_format(state_dict)
    if fmt not in SHUFFLE_FORMATS:
        raise ValueError(f"unknown Shuffle checkpoint format {fmt!r}; choose one of {', '.join(SHUFFLE_FORMATS)}")
    return official_to_shuffle(state_dict), fmt
