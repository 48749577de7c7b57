"""Model speed side by side with a reference implementation: inference and training-step clips/s, peak memory and
MFU.

The references (``references.py``): torchvision for MViT, timm for the image ViT variants, HF transformers for the
video ones. Both implementations run with the same weights (the reference's random initialisation, loaded into ours
through ``load_pretrained``), the same input values (HF video models get them as a contiguous (B, T, C, H, W) copy,
the layout they take) and the same dtype. Training steps are forward + backward + AdamW step on a cross-entropy
loss. MFU is achieved model FLOPs per second (2 x fvcore's multiply-adds per clip; x3 for a
training step) over the device's bf16 matmul rate, measured in the same run.

Speed is timed with both models in one process, in alternating blocks of steps, so load from other jobs on a
shared machine falls on both alike; the fastest block of each counts. Each block of ours and the reference's block
next to it in time also make a pair: the median of the pairs' speed ratios (and its quartiles) is the ratio that
load varying from block to block moves least (``paired_ratio``). On a GPU, peak memory is
``torch.cuda.max_memory_allocated``; on a CPU, it is the largest resident set size sampled during the steps of a
fresh process that holds only that model (model, input and activations).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import multiprocessing as mp
import queue as queue_module
import os
import platform
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.registry import create_model, model_config
from .references import CLIP, HF_CLIP, IMAGE, TWINS, attention_kernel
from .timing import seconds_per_call

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OURS = "mvit_video"
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
    repeat: int = 1


def check_spec(model: str, device: str, dtype: str) -> None:
    """One-line errors for a model without a reference twin, a missing device or an unknown dtype."""
    if model not in TWINS:
        raise BenchmarkError(f"--model {model}: no reference twin (torchvision, timm or HF transformers); use one of "
                             f"{sorted(TWINS)}")  # fmt: skip
    if dtype not in DTYPES:
        raise BenchmarkError(f"--dtype {dtype}: use one of {sorted(DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {device}: CUDA is not available on this machine; use --device cpu")


def build_pair(model: str, attention: str = "auto", act_checkpoint: bool = False) -> tuple[nn.Module, nn.Module]:
    """(ours, the reference) with identical weights; ``act_checkpoint`` recomputes our blocks in backward."""
    from ..models.pretrained import load_pretrained

    torch.manual_seed(0)
    theirs, state = TWINS[model].build()
    kernel = {"attention": attention} if hasattr(model_config(model), "attention") else {}
    if not kernel and attention != "auto":  # CoaT's factorised attention has no kernel to choose
        raise BenchmarkError(f"--attention {attention}: {model} has no attention kernel to choose")
    ours = create_model(model, drop_path_rate=0.0, act_checkpoint=act_checkpoint, **kernel, **TWINS[model].ours)
    report = load_pretrained(ours, state)
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


def example_batch(model: str, batch: int, layout: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random input of the zoo model's configured size in ``layout`` (the same values in every layout for the
    same generator state): (B, C, H, W) for image models, (B, C, T, H, W) or HF's (B, T, C, H, W) for clips."""
    cfg = model_config(model)
    t, h, w = cfg.input_size
    clips = torch.randn(batch, cfg.in_chans, t, h, w, generator=generator)
    if layout == IMAGE:
        return clips[:, :, 0].contiguous()
    return clips.transpose(1, 2).contiguous() if layout == HF_CLIP else clips


def _step_fn(model: nn.Module, spec: BenchSpec, device: torch.device):
    dtype = DTYPES[spec.dtype]
    layout = TWINS[spec.model].layout if spec.impl != OURS else (IMAGE if TWINS[spec.model].layout == IMAGE else CLIP)
    clips = example_batch(spec.model, spec.batch, layout, torch.Generator().manual_seed(0)).to(device)
    labels = torch.randint(0, model_config(spec.model).num_classes, (spec.batch,), device=device)
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
    model = (ours if spec.impl == OURS else theirs).to(device)
    del ours, theirs
    gc.collect()
    if spec.compile:
        model = torch.compile(model)
    step = _step_fn(model, spec, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        seconds = seconds_per_call(step, spec.iters, spec.warmup, spec.repeat)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        with PeakRSS() as rss:
            seconds = seconds_per_call(step, spec.iters, spec.warmup, spec.repeat)
        peak = rss.peak_mb
    return {"impl": spec.impl, "mode": spec.mode, "clips_per_s": spec.batch / seconds, "peak_mem_mb": peak}


def measure_speeds(spec: BenchSpec) -> dict[str, list[float]]:
    """Seconds per step of both implementations in this process, timed in alternating blocks of ``spec.iters``
    steps (``spec.repeat`` blocks each, ours first when ``spec.impl`` is ours): whatever load other jobs put on the
    machine falls on both alike. Returns ``{impl: [seconds per step of each block]}``."""
    device = torch.device(spec.device)
    ours, theirs = build_pair(spec.model, spec.attention, spec.act_checkpoint)
    reference = TWINS[spec.model].library
    steps = {}
    for impl, model in ((OURS, ours), (reference, theirs)):
        model = model.to(device)
        steps[impl] = _step_fn(torch.compile(model) if spec.compile else model, dataclasses.replace(spec, impl=impl),
                               device)  # fmt: skip
    for step in steps.values():
        for _ in range(spec.warmup):
            step()
    order = [OURS, reference] if spec.impl == OURS else [reference, OURS]
    seconds: dict[str, list[float]] = {OURS: [], reference: []}
    for block in range(spec.repeat):
        for impl in order if block % 2 == 0 else order[::-1]:
            seconds[impl].append(seconds_per_call(steps[impl], spec.iters))
    return seconds


def _child(fn, spec: BenchSpec, queue) -> None:
    queue.put(fn(spec))


def _isolated(fn, spec: BenchSpec):
    """``fn(spec)`` in a fresh process on CPUs (so each peak RSS is its own), in this one on GPUs."""
    if spec.device.startswith("cuda"):
        return fn(spec)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, spec, queue))
    proc.start()
    while True:  # a child that dies (out of memory, an import error) must not leave us waiting forever
        try:
            result = queue.get(timeout=5.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the benchmark process of {spec.model} ({spec.impl}, {spec.mode}) exited with "
                                   f"code {proc.exitcode} before reporting; its error is printed above") from None  # fmt: skip
    proc.join()
    return result


def measure_isolated(spec: BenchSpec) -> dict[str, Any]:
    """``measure`` in a fresh process on CPUs, in this one on GPUs."""
    return _isolated(measure, spec)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, library: str) -> dict[str, Any]:
    """Versions and hardware, recorded with the numbers."""
    import importlib.metadata

    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()}  # fmt: skip
    info[library] = importlib.metadata.version(library)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def reference_attention(model: str) -> str:
    """The reference's attention kernel ("sdpa" or "eager"), from a copy built on the meta device."""
    twin = TWINS[model]
    with torch.device("meta"):
        reference, _ = twin.build()
    return attention_kernel(reference, twin)


def _loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _measure_mode(spec: BenchSpec, rounds: int) -> list[dict[str, Any]]:
    """Both implementations in one mode: speed from ``rounds`` fresh processes that each time both in alternating
    blocks (which goes first alternates too), the fastest block counting; peak memory from one process per
    implementation that holds only that model (one warm-up and one timed step)."""
    reference = TWINS[spec.model].library
    blocks: dict[str, list[float]] = {OURS: [], reference: []}
    loads = []
    for r in range(rounds):
        seconds = _isolated(measure_speeds, dataclasses.replace(spec, impl=OURS if r % 2 == 0 else reference))
        loads.append(_loadavg())
        for impl, values in seconds.items():
            blocks[impl] += values
    results = []
    for impl in (OURS, reference):
        alone = measure_isolated(dataclasses.replace(spec, impl=impl, iters=1, warmup=1, repeat=1))
        results.append({"impl": impl, "mode": spec.mode, "clips_per_s": spec.batch / min(blocks[impl]),
                        "peak_mem_mb": alone["peak_mem_mb"],
                        "blocks_clips_per_s": [spec.batch / t for t in blocks[impl]], "rounds_loadavg": loads})  # fmt: skip
    results[0]["paired_ratio"] = paired_ratio(blocks[OURS], blocks[reference])
    return results


def paired_ratio(ours: list[float], reference: list[float]) -> dict[str, float]:
    """Median and quartiles of the reference's seconds over ours in blocks timed next to each other (block i of
    each list; ``measure_speeds`` alternates them): > 1 where ours is faster."""
    ratios = sorted(r / o for o, r in zip(ours, reference))
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"median": median, "q1": q1, "q3": q3, "pairs": len(ratios)}


def run_benchmark(model: str, device: str, dtype: str, batch: int, iters: int, warmup: int, compile: bool,
                  modes: tuple[str, ...] = MODES, attention: str = "auto", act_checkpoint: bool = False,
                  repeat: int = 1, rounds: int = 1) -> dict[str, Any]:  # fmt: skip
    """Both implementations in every mode; returns the JSON document (see the module docstring).

    Speed: ``rounds`` fresh processes per mode (on CPUs), each timing ours and the reference in ``repeat``
    alternating blocks of ``iters`` steps after ``warmup`` steps each; the fastest block counts (every block's
    clips/s and the 1-minute load average after each round are in the JSON). Peak memory: one process per
    implementation. With ``act_checkpoint`` our training step also runs with activation checkpointing (``impl``
    "mvit_video+ckpt", its own process)."""
    check_spec(model, device, dtype)
    dev = torch.device(device)
    twin = TWINS[model]
    gflops = model_gflops(model)
    peak = matmul_tflops(dev)
    results = []
    for mode in modes:
        spec = BenchSpec(model, OURS, mode, device, dtype, batch, iters, warmup, compile, attention, False, repeat)
        measured = _measure_mode(spec, rounds)
        if act_checkpoint and mode == "train":
            ckpt = measure_isolated(dataclasses.replace(spec, act_checkpoint=True))
            measured.append({**ckpt, "impl": f"{OURS}+ckpt"})
        for result in measured:
            flops_per_clip = 2 * gflops * 1e9 * (3 if mode == "train" else 1)  # backward ~ twice the forward
            result["mfu"] = result["clips_per_s"] * flops_per_clip / (peak * 1e12)
            results.append(result)
    return {"model": model, "reference": twin.library, "reference_model": twin.name,
            "reference_attention": reference_attention(model), "device": device, "dtype": dtype, "batch": batch,
            "iters": iters, "warmup": warmup, "repeat": repeat, "rounds": rounds, "compile": compile,
            "attention": attention, "act_checkpoint": act_checkpoint, "gflops_per_clip": gflops,
            "bf16_matmul_tflops": peak, "env": environment(dev, twin.library), "date": time.strftime("%Y-%m-%d"),
            "results": results}  # fmt: skip


def format_table(doc: dict[str, Any]) -> str:
    """The results as a text table with the speed-up over the reference per mode."""
    reference = doc.get("reference", "torchvision")
    lines = [f"{doc['model']} vs {reference} {doc.get('reference_model', '')} on {doc['device']} "
             f"({doc['env'].get('gpu', doc['env']['cpu'])}), {doc['dtype']}, batch {doc['batch']}, "
             f"compile={doc['compile']}, bf16 matmul {doc['bf16_matmul_tflops']:.2f} TFLOP/s",
             f"{'impl':<16} {'mode':<10} {'clips/s':>9} {'vs ref':>7} {'peak MB':>9} {'MFU':>7}  paired (median [q1, q3])"]  # fmt: skip
    by_key = {(r["impl"], r["mode"]): r for r in doc["results"]}
    for r in doc["results"]:
        base = by_key.get((reference, r["mode"]))
        ratio = r["clips_per_s"] / base["clips_per_s"] if base else float("nan")
        pair = r.get("paired_ratio")
        paired = f"  {pair['median']:.2f}x [{pair['q1']:.2f}, {pair['q3']:.2f}]" if pair else ""
        lines.append(f"{r['impl']:<16} {r['mode']:<10} {r['clips_per_s']:>9.3f} {ratio:>6.2f}x "
                     f"{r['peak_mem_mb']:>9.0f} {100 * r['mfu']:>6.2f}%{paired}")  # fmt: skip
    return "\n".join(lines)


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


