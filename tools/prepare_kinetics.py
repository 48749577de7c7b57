#!/usr/bin/env python3
"""Write PySlowFast split CSVs (train/val/test.csv) for downloaded Kinetics clips, with a report of missing and broken
files; optionally re-encode every clip (H.264, short side, keyframe interval) first.

    python tools/prepare_kinetics.py --annotations kinetics400/train.csv kinetics400/validate.csv \\
        --videos /data/k400/videos --out /data/k400/csv [--classes kinetics400] \\
        [--reencode /data/k400/videos_320 --short-side 320 --gop 30] [--workers 16] [--path-prefix DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", nargs="+", required=True, help="official annotation CSVs")
    parser.add_argument("--videos", required=True, help="folder of downloaded clips (searched recursively)")
    parser.add_argument("--out", required=True, help="folder for train.csv / val.csv / test.csv and report.txt")
    parser.add_argument(
        "--classes", default="auto", help="kinetics400 | kinetics600 | kinetics700 | a class-name file | auto (default)"
    )
    parser.add_argument("--reencode", metavar="DIR", help="re-encode usable clips into DIR/<split>/ and list those")
    parser.add_argument("--short-side", type=int, default=320, help="re-encoded short side in pixels (even)")
    parser.add_argument("--gop", type=int, default=30, help="re-encoded keyframe interval in frames")
    parser.add_argument("--workers", type=int, default=None, help="processes for probing and re-encoding (all CPUs)")
    parser.add_argument(
        "--path-prefix", help="write paths relative to this folder (DATA.PATH_PREFIX); default absolute"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.data.prepare import format_report, prepare_kinetics

    report = prepare_kinetics(
        args.annotations,
        args.videos,
        args.out,
        classes=args.classes,
        reencode_dir=args.reencode,
        short_side=args.short_side,
        gop=args.gop,
        workers=args.workers,
        path_prefix=args.path_prefix,
        progress=not args.no_progress,
    )
    print(format_report(report), end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
