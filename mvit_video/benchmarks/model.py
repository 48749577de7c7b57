"""Model speed side by side with torchvision: inference and training-step clips/s, peak memory and MFU.

Both implementations run with the same weights (torchvision's random initialisation, loaded into ours through
``load_pretrained``), the same input and the same dtype. Training steps are forward + backward + AdamW step on a
cross-entropy loss. MFU is achieved model FLOPs per second (2 x fvcore's multiply-adds per clip; x3 for a
training step) over the device's bf16 matmul rate, measured in the same run.

On a GPU, peak memory is ``torch.cuda.max_memory_allocated``; on a CPU each measurement runs in a fresh process
and peak memory is its largest resident set size sampled during the timed steps (model, input and activations).
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.registry import create_model
from .timing import seconds_per_call

# our registry name -> torchvision builder with the same architecture
TORCHVISION_TWINS = {"mvitv2_s_16x4": "mvit_v2_s", "mvitv1_b_16x4": "mvit_v1_b"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
IMPLS = ("mvit_video", "torchvision")
MODES = ("inference", "train")


class BenchmarkError(UserError, ValueError):
    """Arguments the benchmark cannot run with; the message is one line."""


@dataclass(frozen=True)
class BenchSpec:
    """One measurement: which implementation, mode, device, dtype, batch and iterations."""

    model: str
    impl: str
    mode: str
    device: str
    dtype: str
    batch: int
    iters: int
    warmup: int
    compile: bool = False
    attention: str = "auto"
    act_checkpoint: bool = False


def check_spec(model: str, device: str, dtype: str) -> None:
    """One-line errors for a model without a torchvision twin, a missing device or an unknown dtype."""
    if model not in TORCHVISION_TWINS:
        raise BenchmarkError(f"--model {model}: no torchvision twin; use one of {sorted(TORCHVISION_TWINS)}")
    if dtype not in DTYPES:
        raise BenchmarkError(f"--dtype {dtype}: use one of {sorted(DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {device}: CUDA is not available on this machine; use --device cpu")


def build_pair(model: str, attention: str = "auto", act_checkpoint: bool = False) -> tuple[nn.Module, nn.Module]:
    """(ours, torchvision's) with identical weights; ``act_checkpoint`` recomputes our blocks in backward."""
    import torchvision.models.video as tvv

    from ..models.pretrained import load_pretrained

    torch.manual_seed(0)
    theirs = getattr(tvv, TORCHVISION_TWINS[model])()
    ours = create_model(model, drop_path_rate=0.0, attention=attention, act_checkpoint=act_checkpoint)
    report = load_pretrained(ours, theirs.state_dict())
    if report.missing or report.unexpected:
        raise RuntimeError(f"weights did not transfer: {report.summary()}")
    theirs.eval()
    ours.eval()
    return ours, theirs


def model_gflops(model: str) -> float:
    """fvcore's multiply-adds of one clip, in G (as PySlowFast reports 'GFLOPs')."""
    from ..models.stats import count_flops

    return count_flops(create_model(model, drop_path_rate=0.0)) / 1e9


def matmul_tflops(device: torch.device, dtype: torch.dtype = torch.bfloat16, size: int = 4096, iters: int = 10) -> float:
    """Measured dense matmul rate (TFLOP/s) of ``size`` x ``size`` matrices (smaller on CPUs)."""
    size = size if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / seconds_per_call(lambda: a @ b, iters, warmup=2) / 1e12


class PeakRSS:
    """Samples this process's resident set size every millisecond while active; ``peak_mb`` is the largest seen
    (Linux ``/proc/self/statm``; elsewhere the lifetime peak ``ru_maxrss``)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb())
            self._stop.wait(0.001)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def _step_fn(model: nn.Module, spec: BenchSpec, device: torch.device):
    dtype = DTYPES[spec.dtype]
    shape = (spec.batch, 3, 16, 224, 224)
    clips = torch.randn(shape, device=device)
    labels = torch.randint(0, 400, (spec.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if spec.mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                model(clips)

        return step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        with autocast:
            loss = F.cross_entropy(model(clips).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def measure(spec: BenchSpec) -> dict[str, Any]:
    """Runs one measurement in this process: ``{"impl", "mode", "clips_per_s", "peak_mem_mb"}``."""
    device = torch.device(spec.device)
    ours, theirs = build_pair(spec.model, spec.attention, spec.act_checkpoint)
    model = (ours if spec.impl == "mvit_video" else theirs).to(device)
    del ours, theirs
    gc.collect()
    if spec.compile:
        model = torch.compile(model)
    step = _step_fn(model, spec, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        seconds = seconds_per_call(step, spec.iters, spec.warmup)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        with PeakRSS() as rss:
            seconds = seconds_per_call(step, spec.iters, spec.warmup)
        peak = rss.peak_mb
    return {"impl": spec.impl, "mode": spec.mode, "clips_per_s": spec.batch / seconds, "peak_mem_mb": peak}


def _child(spec: BenchSpec, queue) -> None:
    queue.put(measure(spec))


def measure_isolated(spec: BenchSpec) -> dict[str, Any]:
    """``measure`` in a fresh process on CPUs (so each peak RSS is its own), in this one on GPUs."""
    if spec.device.startswith("cuda"):
        return measure(spec)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware, recorded with the numbers."""
    import torchvision

    info = {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(model: str, device: str, dtype: str, batch: int, iters: int, warmup: int, compile: bool,
                  modes: tuple[str, ...] = MODES, attention: str = "auto",
                  act_checkpoint: bool = False) -> dict[str, Any]:  # fmt: skip
    """Both implementations in every mode; returns the JSON document (see the module docstring).

    With ``act_checkpoint`` our training step also runs a second time with activation checkpointing
    (``impl`` "mvit_video+ckpt")."""
    check_spec(model, device, dtype)
    dev = torch.device(device)
    gflops = model_gflops(model)
    peak = matmul_tflops(dev)
    results = []
    runs = [(mode, impl, False) for mode in modes for impl in IMPLS]
    if act_checkpoint and "train" in modes:
        runs.append(("train", "mvit_video", True))
    for mode, impl, ckpt in runs:
        spec = BenchSpec(model, impl, mode, device, dtype, batch, iters, warmup, compile, attention, ckpt)
        result = measure_isolated(spec)
        if ckpt:
            result["impl"] = "mvit_video+ckpt"
        flops_per_clip = 2 * gflops * 1e9 * (3 if mode == "train" else 1)  # backward ~ twice the forward
        result["mfu"] = result["clips_per_s"] * flops_per_clip / (peak * 1e12)
        results.append(result)
    return {"model": model, "device": device, "dtype": dtype, "batch": batch, "iters": iters, "compile": compile,
            "attention": attention, "act_checkpoint": act_checkpoint, "gflops_per_clip": gflops, "bf16_matmul_tflops": peak,
            "env": environment(dev), "date": time.strftime("%Y-%m-%d"), "results": results}  # fmt: skip


def format_table(doc: dict[str, Any]) -> str:
    """The results as a text table with the speed-up over torchvision per mode."""
    lines = [f"{doc['model']} on {doc['device']} ({doc['env'].get('gpu', doc['env']['cpu'])}), {doc['dtype']}, "
             f"batch {doc['batch']}, compile={doc['compile']}, bf16 matmul {doc['bf16_matmul_tflops']:.2f} TFLOP/s",
             f"{'impl':<12} {'mode':<10} {'clips/s':>9} {'vs tv':>6} {'peak MB':>9} {'MFU':>7}"]  # fmt: skip
    by_key = {(r["impl"], r["mode"]): r for r in doc["results"]}
    for r in doc["results"]:
        base = by_key.get(("torchvision", r["mode"]))
        ratio = r["clips_per_s"] / base["clips_per_s"] if base else float("nan")
        lines.append(f"{r['impl']:<12} {r['mode']:<10} {r['clips_per_s']:>9.3f} {ratio:>5.2f}x "
                     f"{r['peak_mem_mb']:>9.0f} {100 * r['mfu']:>6.2f}%")  # fmt: skip
    return "\n".join(lines)


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


