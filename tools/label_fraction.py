#!/usr/bin/env python3
"""A split folder whose train.csv keeps a stratified, seeded fraction of each class's labelled videos.

    python tools/label_fraction.py --data data/toy --out data/toy_10pct --fraction 0.1 [--seed 0]

Keeps round(fraction * n) of each class's n training rows (at least one), drawn with --seed; val.csv, test.csv and
classnames.txt are copied unchanged. Fine-tune on it with DATA.PATH_TO_DATA_DIR <out> (DATA.PATH_PREFIX unchanged):
the semi-supervised protocol of pre-training on every video without labels, then fine-tuning on a few labels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.csv (and val.csv, test.csv)")
    parser.add_argument("--out", required=True, help="folder for the reduced train.csv and the copied splits")
    parser.add_argument("--fraction", type=float, required=True, help="share of each class to keep, in (0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="draw seed (0)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.data.splits import write_label_fraction

    counts = write_label_fraction(args.data, args.out, args.fraction, args.seed)
    print(f"{args.out}/train.csv: {counts['train']} of {counts['train_all']} training videos "
          f"({args.fraction:g} of each class, seed {args.seed})")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_cli(main)
