"""Peak memory and time of an ONNX export of MViTv2-S 16x224: ours against torchvision's ``mvit_v2_s``.

Each export runs in a fresh child process (``python -m mvit_video.benchmarks.export --child ...``) so that its peak
resident memory is its own. The parent samples the child's RSS (``/proc/<pid>/status``) every 0.2 s, enforces a time
limit and keeps the exporter's progress lines, so an export that blows up or hangs still reports its peak and how
far it got. The child reports its own ``ru_maxrss`` when it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

MODELS = ("ours", "torchvision")
_SAMPLE_S = 0.2


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def measure_export(which: str, out_dir: str | Path, limit_s: float = 1800, exporter: str = "dynamo",
                   check: bool = True) -> dict:  # fmt: skip
    """Exports one model in a child process under a time limit; returns its peak RSS, time and progress.

    Args:
        which: "ours" (``mvitv2_s_16x4``) or "torchvision" (``mvit_v2_s``), both 16 x 224 x 224, random weights.
        out_dir: where the .onnx file goes.
        limit_s: the child is killed after this many seconds.
        exporter: "dynamo" (``torch.onnx.export(dynamo=True)``, the default) or "legacy" (TorchScript-based).
        check: also run the file in onnxruntime at batch 1 and compare with eager PyTorch (ours only).

    Returns:
        {"model", "exporter", "finished", "seconds", "peak_rss_mb" (sampled), "baseline_rss_mb" (after building
        the model), "ru_maxrss_mb" (the child's own, when it finished), "last_stage", "file_mb", "max_abs_diff"}.
    """
    out = Path(out_dir) / f"mvitv2_s_{which}_{exporter}.onnx"
    cmd = [sys.executable, "-m", "mvit_video.benchmarks.export", "--child", which, "--out", str(out),
           "--exporter", exporter] + (["--check"] if check else [])  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, lines = [0.0], []

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _rss_mb(proc.pid) or 0.0)
            time.sleep(_SAMPLE_S)

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip())

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    seconds = time.perf_counter() - start
    for t in threads:
        t.join(timeout=5)
    result = next((json.loads(line[7:]) for line in reversed(lines) if line.startswith("RESULT ")), {})
    stages = [line for line in lines if line.startswith(("[torch.onnx]", "STAGE "))]
    return {"model": which, "exporter": exporter, "finished": bool(result), "seconds": round(seconds, 1),
            "limit_s": limit_s, "peak_rss_mb": round(peak[0], 1), "last_stage": stages[-1] if stages else None,
            "exit_code": proc.returncode, **result}  # fmt: skip


def _build(which: str):
    import torch

    torch.manual_seed(0)
    if which == "ours":
        from mvit_video.models import create_model

        return create_model("mvitv2_s_16x4").eval()
    from torchvision.models.video import mvit_v2_s

    return mvit_v2_s().eval()


def _child(which: str, out: str, exporter: str, check: bool) -> None:
    """Runs in the child: build, export (batch 2 example, dynamic batch), optionally check; prints RESULT json."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    model = _build(which)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("STAGE model built", flush=True)
    x = torch.randn(2, 3, 16, 224, 224)
    start = time.perf_counter()
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},), opset_version=18,
                                    input_names=["clip"], output_names=["logits"], external_data=False)  # fmt: skip
        program.save(out, external_data=False)
    else:
        torch.onnx.export(model, (x,), out, dynamo=False, opset_version=17, input_names=["clip"],
                          output_names=["logits"], dynamic_axes={"clip": {0: "batch"}})  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("STAGE exported", flush=True)
    result = {"export_seconds": round(seconds, 1), "baseline_rss_mb": round(baseline, 1),
              "ru_maxrss_mb": round(peak, 1), "file_mb": round(Path(out).stat().st_size / 2**20, 1)}  # fmt: skip
    if check:
        import onnxruntime as ort

        session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        clip = x[:1]
        with torch.no_grad():
            expected = model(clip)
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: clip.numpy()})[0])
        result["max_abs_diff"] = float((got - expected).abs().max())
        result["logit_scale"] = float(expected.abs().max())
    print("RESULT " + json.dumps(result), flush=True)


def format_rows(rows: list[dict]) -> str:
    """A table: one row per export."""
    lines = [f"{'model':<12}{'exporter':<9}{'finished':<9}{'seconds':>8}{'peak RSS MB':>12}{'baseline MB':>12}"
             f"{'file MB':>8}{'max |diff|':>11}  last stage"]  # fmt: skip
    for r in rows:
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
        lines.append(f"{r['model']:<12}{r['exporter']:<9}{str(r['finished']):<9}{r['seconds']:>8.1f}"
                     f"{r['peak_rss_mb']:>12.0f}{r.get('baseline_rss_mb', 0):>12.0f}{r.get('file_mb', 0):>8.1f}"
                     f"{diff:>11}  {r['last_stage']}")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=MODELS, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    _child(args.child, args.out, args.exporter, args.check)
