#!/usr/bin/env python3
"""Stratified train/val/test CSVs and classnames.txt from a folder-per-class tree of videos, bad files left out.

    python tools/make_splits.py --videos my_videos/ --out my_splits/ [--val 0.1 --test 0.1] [--seed 0] \\
        [--workers 8] [--cfg configs/K400/MVITv2_S_16x4.yaml]

my_videos/<class name>/**/<video>: classes are the sub-folders in sorted order (labels 0..K-1). --val and --test are
the fractions of each class's usable videos that go to val.csv and test.csv (rounded, at least one video each when
above zero; 0 writes no such split); train.csv gets the rest. The same tree and --seed give identical files. Every
video is decoded first (as tools/verify_dataset.py does, with --cfg's clip length and crop, else the MViTv2-S 16x4
recipe's); unreadable, zero-frame, truncated and too-short files are left out and listed in splits_report.json.
Train with DATA.PATH_TO_DATA_DIR my_splits/ DATA.PATH_PREFIX my_videos/ MODEL.NUM_CLASSES <number of classes>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="the folder-per-class tree")
    parser.add_argument("--out", required=True, help="folder for {train,val,test}.csv, classnames.txt, the report")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of each class for val.csv (0.1)")
    parser.add_argument("--test", type=float, default=0.1, help="fraction of each class for test.csv (0.1)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (0)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")
    parser.add_argument("--cfg", help="config whose clip length, crop and back-end the check uses")
    parser.add_argument("--absolute", action="store_true", help="absolute paths (default: relative to --videos)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.data.splits import format_splits, make_splits_command

    report = make_splits_command(args.videos, args.out, val=args.val, test=args.test, seed=args.seed,
                                 workers=args.workers, cfg=args.cfg, absolute=args.absolute,
                                 progress=not args.no_progress)  # fmt: skip
    print(format_splits(report), end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
