#!/usr/bin/env python3
"""Write the toy motion dataset: small H.264 videos whose 6 classes differ only in motion, with PySlowFast CSVs.

    python tools/make_toy_dataset.py --out data/toy [--per-class 100] [--seed 0]

Then train with DATA.PATH_TO_DATA_DIR data/toy DATA.PATH_PREFIX data/toy MODEL.NUM_CLASSES 6.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder (created)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="training videos per class (default: the library's, 100)")
    parser.add_argument("--val-per-class", type=int, default=None, help="default: (per-class + 2) // 3")
    parser.add_argument("--test-per-class", type=int, default=None, help="default: (per-class + 2) // 3")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same videos")
    parser.add_argument("--workers", type=int, default=1, help="processes that render and encode")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.data.toy import DEFAULT_NUM_PER_CLASS, format_summary, make_toy_dataset

    summary = make_toy_dataset(
        args.out,
        num_per_class=DEFAULT_NUM_PER_CLASS if args.per_class is None else args.per_class,
        seed=args.seed,
        val_per_class=args.val_per_class,
        test_per_class=args.test_per_class,
        workers=args.workers,
    )
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    run_cli(main)
