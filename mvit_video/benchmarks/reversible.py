"""Training memory and step time vs depth: reversible MViT (recomputing backward) against the plain MViT of the same
widths, at equal batch, on CPU.

Each measurement runs in a fresh process (``spawn``), so its peak resident memory (``ru_maxrss``) is its own: the
reported RSS delta is the process's peak resident size (reached during the training steps) minus its resident size
once the model and the batch were built (Linux). Saved-activation bytes are the tensors autograd keeps from one training forward (counted through
``torch.autograd.graph.saved_tensors_hooks``; parameters saved by ops count too).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass

import torch

from ..models.mvit import MViT, MViTConfig


@dataclass
class MemoryRow:
    """One (kind, depth) measurement."""

    kind: str  # "reversible" or "plain"
    depth: int
    batch: int
    input_size: tuple[int, int, int]
    params_m: float
    saved_mb: float
    rss_delta_mb: float
    step_s: float


def bench_config(depth: int, reversible: bool, input_size: tuple[int, int, int]) -> MViTConfig:
    """Rev-MViT-B's first two stages (96 -> 192 channels, one transition at layer 1), ``depth`` layers; the plain
    model is the same network with stored activations (MViTv1 blocks, no cls token)."""
    return MViTConfig(
        num_classes=400, input_size=input_size, embed_dim=96, num_heads=1, depth=depth, dim_mul=[[1, 2.0]],
        head_mul=[[1, 2.0]], pool_q_stride=[[1, 1, 2, 2]], pool_kv_stride_adaptive=(1, 8, 8), pool_kvq_kernel=(3, 3, 3),
        sep_pos_embed=True, cls_embed=False, qkv_bias=False, drop_path_rate=0.0, rev_enable=reversible,
        rev_buffer_layers=(1,) if reversible else (),
    )  # fmt: skip


def saved_bytes(model: MViT, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward from one training step's forward (the tensors passed to its pack hook);
    the backward runs outside the hooks, so the one-block graphs a reversible model builds while recomputing are not
    counted."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).logsumexp(-1).mean()
    loss.backward()
    return total


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(kind: str, depth: int, batch: int, input_size: tuple, steps: int, queue) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = MViT(bench_config(depth, kind == "reversible", input_size)).train()
    x = torch.randn(batch, 3, *input_size)
    before = _current_rss_mb()
    saved = saved_bytes(model, x)  # also the warm-up step
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for _ in range(steps):
        model(x).logsumexp(-1).mean().backward()
    step = (time.perf_counter() - start) / steps
    params = sum(p.numel() for p in model.parameters()) / 1e6
    queue.put(MemoryRow(kind, depth, batch, tuple(input_size), params, saved / 2**20, _peak_rss_mb() - before, step))


def measure(kind: str, depth: int, batch: int, input_size: tuple[int, int, int], steps: int = 2) -> MemoryRow:
    """One row, measured in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, depth, batch, input_size, steps, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def run_benchmark(depths: list[int], batch: int, input_size: tuple[int, int, int], steps: int = 2) -> list[MemoryRow]:
    return [measure(kind, d, batch, input_size, steps) for d in depths for kind in ("plain", "reversible")]


def format_table(rows: list[MemoryRow]) -> str:
    lines = ["| model | depth | batch | input | params (M) | saved for backward (MiB) | peak RSS delta (MiB) | step (s) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        size = "x".join(map(str, r.input_size))
        lines.append(f"| {r.kind} | {r.depth} | {r.batch} | {size} | {r.params_m:.2f} | {r.saved_mb:.1f} | "
                     f"{r.rss_delta_mb:.1f} | {r.step_s:.2f} |")  # fmt: skip
    return "\n".join(lines)


def to_json(rows: list[MemoryRow]) -> dict:
    return {"device": "cpu", "threads": 1, "rows": [asdict(r) for r in rows]}
