"""tools/benchmark.py's pieces: argument checks, the memory sampler, the table, the references (same weights, same
logits as ours); one full run under -m slow."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time

import pytest
import torch

from mvit_video.benchmarks.model import (BenchmarkError, BenchSpec, PeakRSS, _isolated, build_pair, check_spec,
                                         example_batch, format_table, paired_ratio, run_benchmark)  # fmt: skip
from mvit_video.benchmarks.references import CLIP, IMAGE, TWINS
from tests.conftest import ROOT, rel_l2


def test_wrong_arguments_are_one_line_errors():
    with pytest.raises(BenchmarkError, match="no reference twin"):
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
    # Fresh pages from an anonymous mapping (malloc could hand back freed pages that are already resident, or keep
    # them resident after free); the baseline is read inside the sampler's window, just before the allocation; the
    # pages live 0.2 s, 200 sampling periods, so a loaded 2-core machine that delays the sampler thread a few
    # milliseconds still sees them (a 64 MiB fill takes ~10 ms: too short to rely on).
    size = 64 * 2**20
    with PeakRSS() as busy:
        before = PeakRSS._rss_mb()
        pages = mmap.mmap(-1, size)
        view = torch.frombuffer(pages, dtype=torch.uint8)
        view.fill_(1)  # touched: resident
        time.sleep(0.2)
        del view
        pages.close()  # unmapped: no longer resident
        after = PeakRSS._rss_mb()
    assert busy.peak_mb >= before + 60
    assert after < busy.peak_mb - 60  # the peak was a temporary, not the final RSS


def _dies(spec):  # a measurement process that ends without reporting (as one killed for memory does)
    os._exit(3)


def test_a_measurement_process_that_dies_is_an_error_not_a_hang():
    spec = BenchSpec("vit_ti16_in1k", "mvit_video", "inference", "cpu", "fp32", 1, 1, 0, False, "auto", False, 1)
    with pytest.raises(RuntimeError, match="exited with code 3 before reporting"):
        _isolated(_dies, spec)


def test_table_shows_speedup_over_torchvision():
    doc = {"model": "mvitv2_s_16x4", "device": "cpu", "dtype": "fp32", "batch": 2, "compile": False,
           "bf16_matmul_tflops": 0.5, "env": {"cpu": "x86_64"},
           "results": [{"impl": "mvit_video", "mode": "inference", "clips_per_s": 3.0, "peak_mem_mb": 900, "mfu": 0.2},
                       {"impl": "torchvision", "mode": "inference", "clips_per_s": 2.0, "peak_mem_mb": 1000,
                        "mfu": 0.1}]}  # fmt: skip
    table = format_table(doc).splitlines()
    assert "1.50x" in table[2] and "20.00%" in table[2] and "1.00x" in table[3]
    doc["results"][0]["paired_ratio"] = paired_ratio([1.0, 2.0, 1.0], [1.5, 2.0, 1.2])
    assert format_table(doc).splitlines()[2].endswith("1.20x [1.10, 1.35]")


def test_paired_ratio_is_the_median_of_neighbouring_blocks():
    # ours took 1, 1, 2, 1 s in its blocks, the reference 1.1, 0.9, 2.6, 1.3 s in the blocks next to them: ratios
    # 1.1, 0.9, 1.3, 1.3 -> median 1.2, quartiles (inclusive) 1.05 and 1.3; the fastest blocks alone give 0.9
    got = paired_ratio([1.0, 1.0, 2.0, 1.0], [1.1, 0.9, 2.6, 1.3])
    assert got["pairs"] == 4 and got["median"] == pytest.approx(1.2)
    assert (got["q1"], got["q3"]) == (pytest.approx(1.05), pytest.approx(1.3))


@pytest.mark.slow
def test_full_benchmark_run_on_cpu(tmp_path):
    doc = run_benchmark("mvitv2_s_16x4", "cpu", "fp32", batch=1, iters=1, warmup=0, compile=False)
    assert [(r["impl"], r["mode"]) for r in doc["results"]] == [
        ("mvit_video", "inference"), ("torchvision", "inference"), ("mvit_video", "train"), ("torchvision", "train")]
    assert all(r["clips_per_s"] > 0 and r["peak_mem_mb"] > 100 and 0 < r["mfu"] < 1 for r in doc["results"])
    assert doc["gflops_per_clip"] == pytest.approx(64.5, abs=0.05)
    json.dumps(doc)


def test_table_compares_with_the_named_reference():
    doc = {"model": "vit_ti16_in1k", "reference": "timm", "reference_model": "vit_tiny_patch16_224", "device": "cpu",
           "dtype": "fp32", "batch": 2, "compile": False, "bf16_matmul_tflops": 0.5, "env": {"cpu": "x86_64"},
           "results": [{"impl": "mvit_video", "mode": "train", "clips_per_s": 9.0, "peak_mem_mb": 900, "mfu": 0.1},
                       {"impl": "timm", "mode": "train", "clips_per_s": 10.0, "peak_mem_mb": 900, "mfu": 0.1}]}  # fmt: skip
    table = format_table(doc).splitlines()
    assert "vs timm vit_tiny_patch16_224" in table[0] and "0.90x" in table[2] and "1.00x" in table[3]


IMAGE_TWINS = [name for name, twin in TWINS.items() if twin.layout == IMAGE]
VIDEO_TWINS = [name for name, twin in TWINS.items() if twin.layout != IMAGE and not name.startswith("mvit")]
TORCHVISION_MVIT = {"mvitv2_s_16x4", "mvitv1_b_16x4"}  # their logits: tests/models/test_convert.py


def _same_input_logits(name: str, batch: int) -> float:
    ours, theirs = build_pair(name)
    layout = TWINS[name].layout
    ours_input = example_batch(name, batch, IMAGE if layout == IMAGE else CLIP, torch.Generator().manual_seed(0))
    their_input = example_batch(name, batch, layout, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return rel_l2(ours(ours_input), theirs(their_input))


def test_every_vit_variant_has_a_reference():
    assert set(TWINS) - set(IMAGE_TWINS + VIDEO_TWINS) == TORCHVISION_MVIT
    assert "mvitv2_t_in1k" in IMAGE_TWINS and TWINS["mvitv2_t_in1k"].name == "mvitv2_tiny"
    assert {"swin_t_in1k", "swin3d_t_32x2"} <= set(TWINS)
    assert {TWINS[n].library for n in IMAGE_TWINS} == {"timm", "transformers"}  # HF: CvT-13, PVT v1
    assert [n for n in IMAGE_TWINS if TWINS[n].library == "transformers"] == ["cvt_13_in1k", "pvt_t_in1k"]


# ViT-B: ViT-Ti's code path at 15x the cost; CvT-13: tests/models/test_cvt.py checks HF's model at a reduced size
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("vit_b16_in1k", "cvt_13_in1k")
                                  else n for n in IMAGE_TWINS])  # fmt: skip
def test_image_reference_computes_our_logits(name):
    """The benchmark times the same function on both sides: timm's model with its weights loaded into ours."""
    assert _same_input_logits(name, batch=2) < 1e-5


def test_hf_reference_gets_the_same_clip_in_its_layout():
    a = example_batch("videomae_b_16x4", 1, CLIP, torch.Generator().manual_seed(0))
    b = example_batch("videomae_b_16x4", 1, "B,T,C,H,W", torch.Generator().manual_seed(0))
    assert b.is_contiguous() and torch.equal(a.transpose(1, 2), b)


@pytest.mark.slow
@pytest.mark.parametrize("name", VIDEO_TWINS)
def test_video_reference_computes_our_logits(name):
    assert _same_input_logits(name, batch=1) < 1e-5


def test_the_help_names_every_model_with_a_reference():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0
    missing = [name for name in TWINS if name not in result.stdout]
    assert not missing, f"tools/benchmark.py --help does not name {missing}"
