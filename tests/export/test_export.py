"""Export: every family to ONNX (onnxruntime CPU) matches eager PyTorch at batch 1 and 3 (a dynamic batch), the
torch.export and TorchScript paths for a few families, and the pieces behind tools/export.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mvit_video.export import (
    FORMATS,
    ExportError,
    check_format,
    export_and_check,
    failure_line,
    format_table,
    load_clip,
    load_source,
    tolerance,
)
from mvit_video.models import create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

IMAGE = {"num_classes": 5, "input_size": (1, 32, 32)}
# the smallest models of each family that still have every kind of block (pooling, shifted windows, ...)
TINY = {
    "mvit": ("mvitv2_s_16x4", {"num_classes": 5, "input_size": (4, 32, 32), "embed_dim": 16, "depth": 2,
                               "dim_mul": [[1, 2.0]], "head_mul": [[1, 2.0]], "pool_q_stride": [[1, 1, 2, 2]],
                               "pool_kv_stride_adaptive": (1, 4, 4)}),
    "vit": ("vit_ti16_in1k", {**IMAGE, "depth": 1, "embed_dim": 16, "num_heads": 2}),
    "swin": ("swin_t_in1k", {"num_classes": 5, "input_size": (1, 64, 64), "embed_dim": 16, "num_heads": (1, 2, 2, 2),
                             "depths": (2, 1, 1, 1)}),
    "shuffle": ("shuffle_t_in1k", {"num_classes": 5, "input_size": (1, 112, 112), "token_dim": 8, "embed_dim": 16,
                                   "depths": (2, 2, 2, 2), "dims": (16, 16, 16, 16), "num_heads": (1, 1, 1, 1)}),
    "pvt": ("pvtv2_b0_in1k", {**IMAGE, "embed_dims": (8, 16, 16, 16), "depths": (1, 1, 1, 1),
                              "num_heads": (1, 1, 1, 1)}),
    "levit": ("levit_128s_in1k", {**IMAGE, "input_size": (1, 64, 64), "embed_dim": (16, 24, 32), "key_dim": 8,
                                  "depths": (1, 1, 1), "num_heads": (2, 3, 4)}),
    "coat": ("coat_lite_ti_in1k", {**IMAGE, "embed_dims": (16, 16, 16, 16), "serial_depths": (1, 1, 1, 1),
                                   "num_heads": 8}),
    "ceit": ("ceit_t_in1k", {**IMAGE, "input_size": (1, 64, 64), "depth": 1, "embed_dim": 16, "num_heads": 2}),
    "cvt": ("cvt_13_in1k", {**IMAGE, "embed_dims": (16, 32, 48), "depths": (1, 1, 1), "num_heads": (1, 2, 3)}),
}  # fmt: skip


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded noise in every float tensor (norm scales and running variances near 1), so that no zero-initialised
    head or bias table makes every export look exact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=g)
                near_one = t.ndim == 1 and (name.endswith("weight") or name.endswith("running_var"))
                t.copy_(1.0 + 0.1 * noise if near_one else 0.1 * noise)
    return model.eval()


def tiny(family: str) -> nn.Module:
    name, kwargs = TINY[family]
    return randomize_(create_model(name, **kwargs))


def clip_of(model: nn.Module) -> torch.Tensor:
    t, h, w = model.cfg.input_size
    return torch.randn(1, 3, t, h, w, generator=torch.Generator().manual_seed(1))


def _check(family: str, fmt: str, tmp_path) -> dict:
    model = tiny(family)
    report = export_and_check(model, clip_of(model), fmt, tmp_path / f"{family}{FORMATS[fmt]}", batches=(1, 3))
    assert [r["batch"] for r in report["parity"]] == [1, 3]
    assert report["ok"], format_table(report)
    assert all(r["logit_scale"] > 0.1 for r in report["parity"])  # real logits, not a zero head
    return report


# ONNX export costs tens of seconds per family even for these models (tracing, then translating and optimising
# the graph): MViT (pooling, rel-pos; the model) in the default suite, every family under -m slow
DEFAULT_ONNX = ("mvit",)


@pytest.mark.parametrize("family", [f if f in DEFAULT_ONNX else pytest.param(f, marks=pytest.mark.slow) for f in TINY])
def test_onnx_matches_eager_at_a_dynamic_batch(family, tmp_path):
    report = _check(family, "onnx", tmp_path)
    assert report["attention"] == "math" and report["opset"] == 18


@pytest.mark.parametrize("family", ["mvit", "swin"])
def test_exported_program_matches_eager(family, tmp_path):
    _check(family, "exported", tmp_path)  # swin: the shift-mask cache keeps no tensor of the trace


@pytest.mark.parametrize("family", ["swin", pytest.param("mvit", marks=pytest.mark.slow)])
def test_torchscript_trace_matches_eager_at_another_batch(family, tmp_path):
    _check(family, "torchscript", tmp_path)  # swin: the in-place batch-1 bias add is not traced


def test_every_family_has_a_tiny_model():
    from mvit_video.models import FAMILIES

    assert set(TINY) == set(FAMILIES)


def test_tolerance_scales_with_large_logits():
    assert tolerance(1e-4, torch.tensor([0.5, -0.2])) == 1e-4
    assert tolerance(1e-4, torch.tensor([3.0, -40.0])) == pytest.approx(4e-3)


def test_failure_is_one_line():
    report = {"format": "onnx", "model": "m", "atol": 1e-4, "path": "m.onnx",
              "parity": [{"batch": 2, "max_abs_diff": 0.5, "tolerance": 1e-4, "ok": False}]}  # fmt: skip
    line = failure_line(report)
    assert "\n" not in line and "batch 2" in line and "0.5" in line
    assert failure_line({**report, "parity": [{**report["parity"][0], "ok": True}]}) is None


def test_unknown_format_is_one_line():
    with pytest.raises(ExportError, match="use one of onnx, exported, torchscript"):
        check_format("tensorrt")


def test_clip_comes_from_the_test_preprocessing():
    source = load_source(model_name="vit_ti16_in1k", depth=1)
    clip = load_clip(source.model, source.cfg)
    assert clip.shape == (1, 3, 1, 224, 224) and clip.dtype == torch.float32
    assert 0.2 < float(clip.std()) < 5  # normalised pixels of a textured frame


def test_clip_of_a_real_video_is_its_middle_window(tmp_path):
    from mvit_video.data.encode import write_video
    from mvit_video.data.toy import render_frames, sample_video_spec

    spec = sample_video_spec(np.random.default_rng(3), 1, "v.mp4", sizes=[(96, 128)], fps_choices=[30],
                             num_frames=(60, 60))  # fmt: skip
    path = tmp_path / "v.mp4"
    write_video(path, render_frames(spec), spec.fps)
    source = load_source(model_name=TINY["mvit"][0], **TINY["mvit"][1])
    clip = load_clip(source.model, source.cfg, str(path))
    assert clip.shape == (1, 3, 4, 32, 32)
    assert not torch.equal(clip, load_clip(source.model, source.cfg))  # not the generated clip


def test_an_exported_program_goes_to_a_pt2_file(tmp_path):
    model = tiny("vit")
    with pytest.raises(ExportError, match="end it in .pt2"):
        export_and_check(model, clip_of(model), "exported", tmp_path / "vit.pt")
