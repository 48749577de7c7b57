#!/usr/bin/env python3
"""Training memory and step time vs depth, reversible MViT against plain MViT of the same widths, at equal batch (CPU).

    PYTHONPATH=. OMP_NUM_THREADS=1 python tools/benchmark_reversible.py --depths 4 8 16 --batch 2 \
        --json docs/benchmarks/reversible_cpu.json

Prints a Markdown table and writes the rows as JSON (library code: mvit_video/benchmarks/reversible.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mvit_video.benchmarks.reversible import format_table, run_benchmark, to_json  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16], help="model depths (>= 3)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step (the same for both models)")
    parser.add_argument("--input", type=int, nargs=3, default=[8, 112, 112], metavar=("T", "H", "W"),
                        help="clip size")  # fmt: skip
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per row (after one warm-up)")
    parser.add_argument("--json", help="write the rows to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if min(args.depths) < 3:
        sys.exit("error: --depths must be >= 3 (layer 1 is the stage transition; the last layer is reversible)")
    rows = run_benchmark(args.depths, args.batch, tuple(args.input), args.steps)
    print(format_table(rows))
    if args.json:
        record = {**to_json(rows), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                  "command": " ".join(sys.argv)}  # fmt: skip
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
