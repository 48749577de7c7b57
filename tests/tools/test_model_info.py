"""tools/model_info.py: the published parameter and FLOP counts, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mvit_video.config import load_config
from mvit_video.models import build_model
from mvit_video.models.info import describe
from mvit_video.models.stats import count_params
from tests.conftest import ROOT

# (config, params in millions, GFLOPs) as PySlowFast's fvcore counting reports them
PUBLISHED = {
    "K400/MVITv2_S_16x4.yaml": (34.5, 64.5),
    "K400/MVITv1_B_16x4.yaml": (36.6, 70.8),
    "IN1K/MVITv2_T.yaml": (24.2, 4.7),
}
PUBLISHED_SLOW = {
    "K400/MVITv2_B_32x3.yaml": (51.2, 225.0),
    "IN1K/MVITv2_S.yaml": (34.9, 7.0),
    "IN1K/MVITv2_B.yaml": (51.5, 10.2),
}


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "model_info.py"), *args], capture_output=True, text=True, timeout=300
    )


def _check(path: str, params_m: float, gflops: float) -> None:
    report = describe(cfg_path=str(ROOT / "configs" / path))
    assert round(report["params"] / 1e6, 1) == params_m
    assert round(report["gflops"], 1) == pytest.approx(gflops, abs=0.05)


@pytest.mark.parametrize("path,params_m,gflops", [(k, *v) for k, v in PUBLISHED.items()])
def test_published_params_and_gflops(path, params_m, gflops):
    _check(path, params_m, gflops)


@pytest.mark.slow
@pytest.mark.parametrize("path,params_m,gflops", [(k, *v) for k, v in PUBLISHED_SLOW.items()])
def test_published_params_and_gflops_large(path, params_m, gflops):
    _check(path, params_m, gflops)


@pytest.mark.slow
def test_mvitv2_l_params():
    model = build_model(load_config(ROOT / "configs" / "K400/MVITv2_L_40x3_312.yaml"))
    assert count_params(model) == 213_390_112  # what PySlowFast's code builds (its README says 217.6M)


def test_cli_table_and_json(tmp_path):
    out = tmp_path / "info.json"
    result = _tool("--cfg", str(ROOT / "configs" / "K400/MVITv2_S_16x4.yaml"), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "params: 34.5M (34,537,744)" in result.stdout
    assert "GFLOPs: 64.5" in result.stdout
    assert "8 x 7 x 7" in result.stdout  # last stage's token grid
    report = json.loads(out.read_text())
    assert [s["grid"] for s in report["stages"]] == [[8, 56, 56], [8, 28, 28], [8, 14, 14], [8, 7, 7]]
    assert [s["blocks"] for s in report["stages"]] == [[0, 0], [1, 2], [3, 13], [14, 15]]


def test_cli_image_model_by_name():
    result = _tool("--model", "mvitv2_t_in1k", "--no-flops")
    assert result.returncode == 0, result.stderr
    assert "params: 24.2M" in result.stdout and "GFLOPs: skipped" in result.stdout
    assert "1 x 7 x 7" in result.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["MVIT.DEPHT", "3"], "unknown config key MVIT.DEPHT; did you mean MVIT.DEPTH?"),
        (["DATA.TRAIN_CROP_SIZE", "225"], "DATA.TRAIN_CROP_SIZE=225"),
        (["MVIT.DIM_MUL", "[[16, 2.0]]"], "MVIT.DIM_MUL"),
    ],
)
def test_cli_user_mistakes_are_one_line(args, expected):
    result = _tool("--cfg", str(ROOT / "configs" / "IN1K/MVITv2_T.yaml"), "--no-flops", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_cli_missing_config_file():
    result = _tool("--cfg", "configs/nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "nope.yaml" in result.stderr
