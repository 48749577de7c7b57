"""Export a model and check the exported file against eager PyTorch on a real clip, at several batch sizes.

Tolerance: an export passes when, at every batch size, the largest absolute logit difference from the eager model
is at most ``atol * max(1, max |eager logit|)`` (absolute for logits within +-1, relative to the logit scale
beyond).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .formats import DEFAULT_OPSET, ExportError, export_model, load_exported

DEFAULT_ATOL = 1e-4
DEFAULT_BATCHES = (1, 2)


def tolerance(atol: float, logits: torch.Tensor) -> float:
    """The largest difference allowed for eager ``logits``: ``atol`` scaled by the logit scale when it is > 1."""
    return atol * max(1.0, float(logits.abs().max()))


def _batch_of(clip: torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` different clips from one: the clip, then copies with their frames flipped left-right."""
    views = [clip[:1] if i % 2 == 0 else clip[:1].flip(-1) for i in range(batch)]
    return torch.cat([v * (1.0 + 0.05 * i) for i, v in enumerate(views)])


def parity(model: nn.Module, run, clip: torch.Tensor, batches: Sequence[int] = DEFAULT_BATCHES,
           atol: float = DEFAULT_ATOL) -> list[dict]:  # fmt: skip
    """The exported model ``run`` against the eager ``model`` on batches made from ``clip``.

    Returns:
        One row per batch size: {"batch", "max_abs_diff", "logit_scale", "tolerance", "ok", "seconds"} (seconds:
        the exported model's run).
    """
    rows = []
    for batch in batches:
        x = _batch_of(clip, batch)
        with torch.no_grad():
            expected = model(x).float()
        start = time.perf_counter()
        got = run(x).float()
        seconds = time.perf_counter() - start
        if got.shape != expected.shape:
            raise ExportError(f"the exported model returned {tuple(got.shape)} at batch {batch}, the eager model "
                              f"{tuple(expected.shape)}")  # fmt: skip
        diff, limit = float((got - expected).abs().max()), tolerance(atol, expected)
        rows.append({"batch": batch, "max_abs_diff": diff, "logit_scale": float(expected.abs().max()),
                     "tolerance": limit, "ok": diff <= limit, "seconds": round(seconds, 4)})  # fmt: skip
    return rows


def export_and_check(model: nn.Module, clip: torch.Tensor, fmt: str, path: str | Path,
                     batches: Sequence[int] = DEFAULT_BATCHES, atol: float = DEFAULT_ATOL,
                     opset: int = DEFAULT_OPSET) -> dict:  # fmt: skip
    """Exports ``model`` to ``path``, loads the file back and compares it with the eager model.

    Returns:
        The report: {"format", "path", "export_seconds", "attention", "opset", "input", "atol", "ok",
        "file_mb", "parity": [rows of ``parity``]}.
    """
    model.eval()
    info = export_model(model, clip, fmt, path, opset=opset)
    rows = parity(model, load_exported(info.path, fmt), clip, batches, atol)
    return {
        "format": fmt,
        "path": info.path,
        "export_seconds": round(info.seconds, 2),
        "attention": info.attention,
        "opset": info.opset,
        "input": ["B", *clip.shape[1:]],
        "file_mb": round(Path(info.path).stat().st_size / 2**20, 2),
        "atol": atol,
        "ok": all(r["ok"] for r in rows),
        "parity": rows,
    }


def failure_line(report: dict) -> str | None:
    """One line describing a parity failure, or None when the export passed."""
    bad = [r for r in report["parity"] if not r["ok"]]
    if not bad:
        return None
    worst = max(bad, key=lambda r: r["max_abs_diff"] / r["tolerance"])
    return (f"{report['format']} export of {report.get('model', 'the model')} differs from eager PyTorch by "
            f"{worst['max_abs_diff']:.3g} at batch {worst['batch']} (tolerance {worst['tolerance']:.3g}, "
            f"--atol {report['atol']:g}); the exported file is {report['path']}")  # fmt: skip


def format_table(report: dict) -> str:
    """The report as a few lines and a table, one row per batch size."""
    shape = " x ".join(str(d) for d in report["input"])
    opset = f", opset {report['opset']}" if report["opset"] else ""
    lines = [
        f"model:   {report.get('model', '?')} ({report.get('family', '?')})",
        f"export:  {report['format']}{opset} -> {report['path']} ({report['file_mb']} MB, "
        f"{report['export_seconds']:.1f} s, attention {report['attention']})",
        f"input:   {shape} (dynamic batch), clip of {report.get('video', '?')}",
        f"weights: {report.get('checkpoint') or 'none (random initialisation)'}",
        "",
        f"{'batch':>5}  {'max |diff|':>10}  {'logit scale':>11}  {'tolerance':>9}  {'run s':>7}  result",
    ]
    for r in report["parity"]:
        lines.append(f"{r['batch']:>5}  {r['max_abs_diff']:>10.2e}  {r['logit_scale']:>11.3g}  {r['tolerance']:>9.2e}"
                     f"  {r['seconds']:>7.3f}  {'ok' if r['ok'] else 'FAIL'}")  # fmt: skip
    return "\n".join(lines)
