#!/usr/bin/env python3
"""Peak memory (RSS) and time of the ONNX export of MViTv2-S 16x224: ours and torchvision's mvit_v2_s, each in a
fresh process under a time limit (an export that blows up reports how far it got).

    python tools/benchmark_export.py [--models ours torchvision] [--exporter dynamo|legacy] [--limit 1800]
                                     [--out-dir exports/bench] [--json docs/benchmarks/export_mvitv2_s.json]
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
    parser.add_argument("--models", nargs="+", default=["ours", "torchvision"], help="ours and/or torchvision")
    parser.add_argument("--exporter", default="dynamo", help="dynamo (torch.onnx.export default) or legacy")
    parser.add_argument("--limit", type=float, default=1800, help="seconds per export before it is killed")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime run of our export")
    parser.add_argument("--out-dir", default="exports/bench", help="where the .onnx files go")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    from mvit_video.benchmarks.export import MODELS, format_rows, measure_export
    from mvit_video.errors import UserError

    for name in args.models:
        if name not in MODELS:
            raise UserError(f"--models {name!r}: use ours and/or torchvision")
    if args.exporter not in ("dynamo", "legacy"):
        raise UserError(f"--exporter {args.exporter!r}: use dynamo or legacy")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        rows.append(measure_export(name, args.out_dir, args.limit, args.exporter, check=name == "ours"
                                   and not args.no_check))  # fmt: skip
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
