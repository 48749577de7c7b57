"""Shared test fixtures: the ../shared folder beside the project root and small models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when that folder (or the file) is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is optional)")
    return path


def load_reference(name: str) -> dict:
    """One of PySlowFast's reference descriptions in ../shared/ref (see its README)."""
    return json.loads(shared_path("ref", f"{name}.json").read_text())


def reference_weights(ref: dict) -> dict:
    """The weights PySlowFast's reference outputs were computed with, drawn as its README says."""
    g = torch.Generator().manual_seed(ref["weight_seed"])
    state = {}
    for name, shape in ref["keys"]:
        t = torch.randn(shape, generator=g, dtype=torch.float32)
        state[name] = 1.0 + 0.1 * t if len(shape) == 1 and name.endswith("weight") else 0.05 * t
    return state


def reference_input(ref: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(ref["input_seed"])
    return torch.randn(ref["input_shape"], generator=g, dtype=torch.float32)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
