#!/usr/bin/env python3
"""Print a model's parameters, GFLOPs (fvcore, batch 1, the config's input) and token grid per stage.

    python tools/model_info.py --cfg configs/K400/MVITv2_S_16x4.yaml [KEY VALUE ...]
    python tools/model_info.py --model mvitv2_t_in1k [--json out.json]
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
    parser.add_argument("--no-flops", action="store_true", help="skip the (slow for large models) FLOP count")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    from mvit_video.models.info import describe, format_report

    report = describe(cfg_path=args.cfg, model_name=args.model, opts=args.opts, flops=not args.no_flops)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
