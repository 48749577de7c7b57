"""Export to ONNX, ``torch.export`` (ExportedProgram) or TorchScript, with a parity check against eager PyTorch.

``export(...)`` is what ``tools/export.py`` runs: load the model (config or named variant, with weights), build a
real clip (a video through the test preprocessing), export with a dynamic batch dimension, run the exported file
at batch 1 and 2 and compare it with the eager model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..models.families import family_of
from .check import DEFAULT_ATOL, DEFAULT_BATCHES, export_and_check, failure_line, format_table, parity, tolerance
from .formats import (
    DEFAULT_OPSET,
    FORMATS,
    ExportError,
    ExportInfo,
    check_format,
    check_output,
    export_model,
    load_exported,
)
from .inputs import ExportSource, load_clip, load_source

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_BATCHES",
    "DEFAULT_OPSET",
    "FORMATS",
    "ExportError",
    "ExportInfo",
    "ExportSource",
    "check_format",
    "check_output",
    "default_output",
    "export",
    "export_and_check",
    "export_model",
    "failure_line",
    "format_table",
    "load_clip",
    "load_exported",
    "load_source",
    "parity",
    "tolerance",
]


def default_output(name: str, fmt: str) -> Path:
    """``exports/<config stem or model name><suffix of the format>``."""
    return Path("exports") / f"{Path(name).stem if name.endswith(('.yaml', '.yml')) else name}{FORMATS[fmt]}"


def export(fmt: str, cfg_path: str | None = None, model_name: str | None = None, checkpoint: str | None = None,
           opts: Sequence[str] | None = None, video: str | None = None, output: str | None = None,
           atol: float = DEFAULT_ATOL, batches: Sequence[int] = DEFAULT_BATCHES,
           opset: int = DEFAULT_OPSET) -> dict:  # fmt: skip
    """Exports a config's model (or a named variant) and checks it; returns the report (see ``export_and_check``)
    with "model", "family", "checkpoint" and "video" added. A failed check is reported, not raised: see
    ``failure_line``.

    Raises:
        ExportError, ConfigError, CheckpointError: one line, before any export work for a wrong format or key.
    """
    check_format(fmt)
    if atol <= 0:
        raise ExportError(f"--atol must be positive, got {atol}")
    if output:
        check_output(fmt, output)
    source = load_source(cfg_path, model_name, checkpoint, opts)
    clip = load_clip(source.model, source.cfg, video)
    path = Path(output) if output else default_output(source.name, fmt)
    report = export_and_check(source.model, clip, fmt, path, batches, atol, opset)
    family = family_of(source.model.cfg).arch
    return {"model": source.name, "family": family, "checkpoint": source.checkpoint or None,
            "video": video or "generated", **report}  # fmt: skip
