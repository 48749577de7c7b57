#!/usr/bin/env python3
"""Export a model to ONNX, torch.export (ExportedProgram) or TorchScript and check it against eager PyTorch.

    python tools/export.py --cfg configs/K400/MVITv2_S_16x4.yaml --checkpoint k400.pyth --format onnx [--video v.mp4]
    python tools/export.py --model mvitv2_s_16x4 --format exported --output exports/mvitv2_s.pt2
    python tools/export.py --cfg CFG --format torchscript TEST.CHECKPOINT_FILE_PATH ckpt.pyth [KEY VALUE ...]

The exported model takes float32 (B, 3, NUM_FRAMES, TEST_CROP_SIZE, TEST_CROP_SIZE) clips, normalised with
DATA.MEAN / DATA.STD, any batch size B, and returns (B, NUM_CLASSES) logits. After exporting, the file is run (ONNX:
onnxruntime on CPU) on a clip of --video (default: a generated toy video) at batch 1 and 2; the tool fails when
a logit differs from eager PyTorch by more than --atol x max(1, largest |logit|).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cfg", help="config YAML")
    source.add_argument("--model", help="named variant (see mvit_video.models.list_models())")
    parser.add_argument("--checkpoint", help="weights (default: TEST.CHECKPOINT_FILE_PATH, then TRAIN.*)")
    parser.add_argument("--format", default="onnx", help="onnx (default), exported or torchscript")
    parser.add_argument("--output", help="exported file (default: exports/<config or model name>.<suffix>)")
    parser.add_argument("--video", help="video to take the check clip from (default: a generated toy video)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance, times max(1, largest |logit|)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--json", help="report file (default: the exported file + .json)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    from mvit_video.export import ExportError, export, failure_line, format_table

    report = export(args.format, cfg_path=args.cfg, model_name=args.model, checkpoint=args.checkpoint,
                    opts=args.opts, video=args.video, output=args.output, atol=args.atol, opset=args.opset)  # fmt: skip
    print(format_table(report))
    json_path = Path(args.json or report["path"] + ".json")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report:  {json_path}")
    failure = failure_line(report)
    if failure:
        raise ExportError(failure)
    return 0


if __name__ == "__main__":
    run_cli(main)
