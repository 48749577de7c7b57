"""Writing a model in one of three deployable formats, and loading it back as a callable.

- ``onnx``: ``torch.onnx.export`` (the torch.export-based exporter), run with onnxruntime on CPU. Attention set to
  "auto" takes the plain matmul path while exporting to ONNX (``resolve_attention``).
- ``exported``: a ``torch.export`` ExportedProgram, saved with ``torch.export.save`` (attention keeps the SDPA op).
- ``torchscript``: ``torch.jit.trace`` (attention takes the plain path while tracing).

Every format gets a dynamic batch dimension. The graphs are traced on a batch of two copies of the example clip:
``torch.export`` specialises a dimension of size 1 to a constant, so a batch-1 example would fix the batch.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

FORMATS = {"onnx": ".onnx", "exported": ".pt2", "torchscript": ".pt"}
DEFAULT_OPSET = 18
TRACE_BATCH = 2
MAX_BATCH = 4096
INPUT_NAME, OUTPUT_NAME = "clip", "logits"


class ExportError(UserError):
    """An export that cannot be made or does not match the eager model (exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class ExportInfo:
    """What ``export_model`` wrote.

    Attributes:
        format: one of ``FORMATS``.
        path: the file.
        seconds: time the export took.
        attention: what attention set to "auto" became in the graph: "math" (plain matmuls; ONNX, TorchScript)
            or "auto" (the eager rule: SDPA where the family's kernel choice takes it; ExportedProgram).
        opset: the ONNX opset (None for the other formats).
    """

    format: str
    path: str
    seconds: float
    attention: str
    opset: int | None = None


def check_format(fmt: str) -> str:
    """``fmt`` if it is a known format, else a one-line ``ExportError`` (raised before any work starts)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}")
    return fmt


def check_output(fmt: str, path: str | Path) -> Path:
    """``path`` if format ``fmt`` can be written there (an ExportedProgram needs a .pt2 file), else a one-line
    ``ExportError``."""
    path = Path(path)
    if fmt == "exported" and path.suffix != ".pt2":
        raise ExportError(f"--output {path}: torch.export.load reads ExportedPrograms from .pt2 files; end it in .pt2")
    return path


def _trace_example(clip: torch.Tensor) -> torch.Tensor:
    # (1, C, T, H, W) -> (TRACE_BATCH, C, T, H, W)
    return clip[:1].expand(TRACE_BATCH, *clip.shape[1:]).contiguous()


def _batch_dim() -> dict:
    return {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    log = io.StringIO()  # the exporter's progress lines; shown only when it fails
    try:
        with contextlib.redirect_stdout(log):
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=(_batch_dim(),),
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                                        external_data=False)  # fmt: skip
            program.save(str(path), external_data=False)
    except Exception:
        print(log.getvalue())
        raise


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dim(),))
    torch.export.save(program, str(path))


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)
    torch.jit.save(traced, str(path))


def export_model(model: nn.Module, clip: torch.Tensor, fmt: str, path: str | Path,
                 opset: int = DEFAULT_OPSET) -> ExportInfo:  # fmt: skip
    """Writes ``model`` (put in eval mode) in format ``fmt`` with a dynamic batch dimension.

    Args:
        model: a classifier taking (B, C, T, H, W) clips.
        clip: an example input (its batch size does not matter: the graph is traced at ``TRACE_BATCH``).
        fmt: one of ``FORMATS``.
        path: the output file.
        opset: the ONNX opset (``onnx`` only).

    Returns:
        What was written.

    Raises:
        ExportError: the model cannot be exported in this format (one line naming the cause).
    """
    check_format(fmt)
    path = check_output(fmt, path)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _trace_example(clip)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notes; the parity check is what counts
            if fmt == "onnx":
                _export_onnx(model, example, path, opset)
            elif fmt == "exported":
                _export_program(model, example, path)
            else:
                _export_torchscript(model, example, path)
    except Exception as e:  # any exporter failure becomes one line naming the model and the format
        cause = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"{type(model).__name__} cannot be exported as {fmt}: {type(e).__name__}: {cause}") from e
    attention = "auto" if fmt == "exported" else "math"
    return ExportInfo(fmt, str(path), time.perf_counter() - start, attention, opset if fmt == "onnx" else None)


def _onnx_runner(path: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(clip: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: clip.numpy()})[0])

    return run


def load_exported(path: str | Path, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported model at ``path`` as a function clip (B, C, T, H, W) -> logits, on CPU: an onnxruntime
    session (``onnx``), the loaded ExportedProgram's module (``exported``) or the loaded TorchScript module."""
    check_format(fmt)
    if fmt == "onnx":
        return _onnx_runner(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation note
        module = torch.export.load(str(path)).module() if fmt == "exported" else torch.jit.load(str(path))

    def run(clip: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(clip)

    return run
