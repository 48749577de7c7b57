"""Process-group helpers shared by the engine: rank checks and unwrapping wrapped models."""

from __future__ import annotations

import torch.distributed as dist
from torch import nn


def is_main_process() -> bool:
    """Rank 0 of the default process group, or the only process when none is initialised."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
