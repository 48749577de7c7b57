"""The report behind ``tools/model_info.py``: a model's size, cost and token grids as data and as a table."""

from __future__ import annotations

from typing import Optional, Sequence

from .build import build_model
from .registry import create_model
from .stats import count_flops, count_params, is_image_model, stage_table


def describe(
    cfg_path: Optional[str] = None,
    model_name: Optional[str] = None,
    opts: Optional[Sequence[str]] = None,
    flops: bool = True,
) -> dict:
    """Builds the model of a config file or a named variant and measures it.

    Returns:
        {"source", "params", "gflops" (None when skipped), "input": [C, T, H, W], "stages": [...]}.
    """
    if cfg_path is not None:
        from ..config import load_config

        model, source = build_model(load_config(cfg_path, opts or [])), cfg_path
    else:
        model, source = create_model(model_name), model_name
    cfg = model.cfg
    stages = [
        {"blocks": list(s.blocks), "dim": s.dim, "heads": s.heads, "grid": list(s.grid), "tokens": s.tokens}
        for s in stage_table(model)
    ]
    return {
        "source": source,
        "params": count_params(model),
        "gflops": count_flops(model) / 1e9 if flops else None,
        "input": [cfg.in_chans, *cfg.input_size],
        "image_model": is_image_model(model),
        "stages": stages,
    }


def format_report(report: dict) -> str:
    """The report as a few lines of text with a per-stage table."""
    c, t, h, w = report["input"]
    shape = f"{c}x{h}x{w} image" if report["image_model"] else f"{c}x{t}x{h}x{w} clip"
    gflops = "skipped" if report["gflops"] is None else f"{report['gflops']:.1f}"
    lines = [
        f"model:  {report['source']}",
        f"params: {report['params'] / 1e6:.1f}M ({report['params']:,})",
        f"GFLOPs: {gflops} (fvcore, batch 1, one {shape})",
        "",
        f"{'stage':<6}{'blocks':<9}{'dim':>6}{'heads':>7}  {'tokens T x H x W':<18}{'tokens':>8}",
    ]
    for i, s in enumerate(report["stages"]):
        blocks = f"{s['blocks'][0]}-{s['blocks'][1]}"
        grid = " x ".join(str(g) for g in s["grid"])
        lines.append(f"{i + 1:<6}{blocks:<9}{s['dim']:>6}{s['heads']:>7}  {grid:<18}{s['tokens']:>8}")
    return "\n".join(lines)
