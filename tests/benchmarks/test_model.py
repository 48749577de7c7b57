"""tools/benchmark.py's pieces: argument checks, the memory sampler, the table; one full run under -m slow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mvit_video.benchmarks.model import BenchmarkError, PeakRSS, check_spec, format_table, run_benchmark
from tests.conftest import ROOT


def test_wrong_arguments_are_one_line_errors():
    with pytest.raises(BenchmarkError, match="no torchvision twin"):
        check_spec("mvitv2_b_32x3", "cpu", "fp32")
    with pytest.raises(BenchmarkError, match="use one of"):
        check_spec("mvitv2_s_16x4", "cpu", "int8")
    if not torch.cuda.is_available():
        with pytest.raises(BenchmarkError, match="CUDA is not available"):
            check_spec("mvitv2_s_16x4", "cuda", "bf16")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), "--model", "nope"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --model nope")


def test_peak_rss_sees_a_temporary_allocation():
    with PeakRSS() as idle:
        pass
    with PeakRSS() as busy:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert busy.peak_mb >= idle.peak_mb + 60


def test_table_shows_speedup_over_torchvision():
    doc = {"model": "mvitv2_s_16x4", "device": "cpu", "dtype": "fp32", "batch": 2, "compile": False,
           "bf16_matmul_tflops": 0.5, "env": {"cpu": "x86_64"},
           "results": [{"impl": "mvit_video", "mode": "inference", "clips_per_s": 3.0, "peak_mem_mb": 900, "mfu": 0.2},
                       {"impl": "torchvision", "mode": "inference", "clips_per_s": 2.0, "peak_mem_mb": 1000,
                        "mfu": 0.1}]}  # fmt: skip
    table = format_table(doc).splitlines()
    assert "1.50x" in table[2] and "20.00%" in table[2] and "1.00x" in table[3]


@pytest.mark.slow
def test_full_benchmark_run_on_cpu(tmp_path):
    doc = run_benchmark("mvitv2_s_16x4", "cpu", "fp32", batch=1, iters=1, warmup=0, compile=False)
    assert [(r["impl"], r["mode"]) for r in doc["results"]] == [
        ("mvit_video", "inference"), ("torchvision", "inference"), ("mvit_video", "train"), ("torchvision", "train")]
    assert all(r["clips_per_s"] > 0 and r["peak_mem_mb"] > 100 and 0 < r["mfu"] < 1 for r in doc["results"])
    assert doc["gflops_per_clip"] == pytest.approx(64.5, abs=0.05)
    json.dumps(doc)
