"""Helpers of the zoo equivalence tests: loading a reference's weights exactly, comparing logits in float64."""

from __future__ import annotations

import torch
from torch import nn

from mvit_video.models import load_pretrained
from tests.conftest import rel_l2


def load_exact(ours: nn.Module, theirs: nn.Module | dict, fmt: str, **kw) -> nn.Module:
    """``ours`` with the reference's weights (a module or its state dict) loaded through ``load_pretrained``: the
    format detected as ``fmt``, nothing missing, nothing unexpected."""
    report = load_pretrained(ours, theirs.state_dict() if isinstance(theirs, nn.Module) else theirs, **kw)
    assert report.source_format == fmt and report.missing == [] and report.unexpected == [], report.summary()
    return ours


def same_logits(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    """Relative L2 distance of both models' outputs on ``x``, in float64 and eval mode."""
    ours, theirs = ours.double().eval(), theirs.double().eval()
    with torch.no_grad():
        return rel_l2(ours(x), theirs(x))


def input64(*shape: int, seed: int = 0) -> torch.Tensor:
    """A seeded float64 standard-normal input of ``shape``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
