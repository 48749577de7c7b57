"""tools/model_info.py on every ViT-family config: the parameter and FLOP counts of the README's model table."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mvit_video.models.info import describe
from tests.conftest import ROOT

timm = pytest.importorskip("timm")

# config -> (parameters, GFLOPs as fvcore counts them: batch 1, one image or view), measured with the tool
IMAGE_CONFIGS = {
    "IN1K/VIT_TI16.yaml": (5_717_416, 1.26),
    "IN1K/VIT_B16.yaml": (86_567_656, 17.58),
    "IN1K/DEIT_TI16.yaml": (5_717_416, 1.26),
    "IN1K/DEIT_TI16_DISTILLED.yaml": (5_910_800, 1.27),
    "IN1K/CAIT_XXS24.yaml": (11_956_264, 2.53),
    "IN1K/CPVT_TI.yaml": (5_681_512, 1.26),
    "IN1K/DEEPVIT_S.yaml": (27_312_632, 6.38),
}
VIDEO_CONFIGS = {
    "K400/VIT_TI16_16x4.yaml": (6_012_496, 20.17),
    "K400/VIT_B16_16x4.yaml": (87_749_776, 180.64),
    "K400/DEIT_TI16_16x4.yaml": (6_012_496, 20.17),
    "K400/DEIT_TI16_DISTILLED_16x4.yaml": (6_090_080, 20.19),
    "K400/CAIT_XXS24_16x4.yaml": (12_251_344, 41.97),
    "K400/CPVT_TI_16x4.yaml": (5_716_624, 20.18),
    "K400/DEEPVIT_S_16x4.yaml": (29_239_760, 87.16),
    "K400/VIDEOMAE_B_16x4.yaml": (86_534_800, 180.49),
    "K400/TIMESFORMER_B_8x32.yaml": (121_566_352, 196.05),
    "K400/VIVIT_B_32x2.yaml": (88_954_000, 451.83),
}
# the image references' counts (timm, meta device): ours equal them
TIMM_PARAMS = {
    "IN1K/VIT_TI16.yaml": "vit_tiny_patch16_224",
    "IN1K/VIT_B16.yaml": "vit_base_patch16_224",
    "IN1K/DEIT_TI16.yaml": "deit_tiny_patch16_224",
    "IN1K/DEIT_TI16_DISTILLED.yaml": "deit_tiny_distilled_patch16_224",
    "IN1K/CAIT_XXS24.yaml": "cait_xxs24_224",
}


@pytest.mark.parametrize("path,params", [(k, v[0]) for k, v in {**IMAGE_CONFIGS, **VIDEO_CONFIGS}.items()])
def test_every_vit_config_reports_its_parameters(path, params):
    report = describe(cfg_path=str(ROOT / "configs" / path), flops=False)
    assert report["params"] == params
    assert len(report["stages"]) == 1 and report["gflops"] is None


@pytest.mark.parametrize("path,timm_name", TIMM_PARAMS.items())
def test_image_parameters_equal_timm(path, timm_name):
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
    assert sum(p.numel() for p in reference.parameters()) == IMAGE_CONFIGS[path][0]


@pytest.mark.parametrize("path,counts", IMAGE_CONFIGS.items())
def test_image_config_gflops(path, counts):
    report = describe(cfg_path=str(ROOT / "configs" / path))
    assert report["gflops"] == pytest.approx(counts[1], abs=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("path,counts", VIDEO_CONFIGS.items())
def test_video_config_gflops(path, counts):
    report = describe(cfg_path=str(ROOT / "configs" / path))
    assert report["gflops"] == pytest.approx(counts[1], abs=0.005)


def test_cli_on_a_video_vit_config():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "model_info.py"), "--cfg",
                             str(ROOT / "configs" / "K400/VIDEOMAE_B_16x4.yaml"), "--no-flops"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "params: 86.5M (86,534,800)" in result.stdout
    assert "8 x 14 x 14" in result.stdout and "1568" in result.stdout  # 16 frames in tubelets of 2
