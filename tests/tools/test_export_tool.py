"""tools/export.py: a table and a JSON report for a real export, one-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

VIT = str(ROOT / "configs" / "IN1K" / "VIT_TI16.yaml")


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "export.py"), *args], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_torchscript_export_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "vit.pt"
    result = _tool("--cfg", VIT, "--format", "torchscript", "--output", str(out), "VIT.DEPTH", "1")
    assert result.returncode == 0, result.stderr
    assert "max |diff|" in result.stdout and "ok" in result.stdout
    report = json.loads((tmp_path / "vit.pt.json").read_text())
    assert report["ok"] and report["family"] == "vit" and report["input"] == ["B", 3, 1, 224, 224]
    assert [r["batch"] for r in report["parity"]] == [1, 2] and report["video"] == "generated"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cfg", VIT, "--format", "tensorrt"], "is not an export format"),
        (["--cfg", VIT, "VIT.NOT_A_KEY", "1"], "NOT_A_KEY"),
    ],
)
def test_user_mistakes_are_one_line(args, message, tmp_path):
    result = _tool(*args, "--output", str(tmp_path / "m.onnx"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_unknown_model_and_unreadable_video_are_export_errors(tmp_path):
    from mvit_video.export import ExportError, load_clip, load_source

    with pytest.raises(ExportError, match="unknown model 'mvitv2_q'"):
        load_source(model_name="mvitv2_q")
    source = load_source(model_name="vit_ti16_in1k", depth=1)
    with pytest.raises(ExportError, match="--video .*missing.mp4"):
        load_clip(source.model, source.cfg, str(tmp_path / "missing.mp4"))
