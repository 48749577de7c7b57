#!/usr/bin/env python3
"""Decode every video of a split CSV with the loader's reader; write a cleaned CSV and a JSON report of bad files.

    python tools/verify_dataset.py --cfg configs/K400/MVITv2_S_16x4.yaml --split train --out checked/ \\
        [--workers 8] [KEY VALUE ...]                 # the config's CSV, prefix, back-end, clip and crop
    python tools/verify_dataset.py --csv data/train.csv --prefix data/ --out checked/ \\
        [--num-frames 16 --sampling-rate 4 --target-fps 30 --crop 224] [--backend pyav]

Kinds reported: unreadable, zero_frames, truncated, too_short (fewer frames than one clip spans), odd_resolution
(odd sizes, short side below the crop, long side above --max-side), rotated, vfr (variable frame rate). Rows of the
--drop kinds (default: unreadable zero_frames truncated too_short) are left out of OUT/<csv name>; the report is
OUT/verify_report.json. Finished files go to OUT/verify_journal.jsonl as they finish: run the same command again
after an interruption and only the remaining files are decoded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cfg", help="config YAML: its DATA.PATH_TO_DATA_DIR/<split>.csv and loader settings")
    source.add_argument("--csv", help="a split CSV ('path label' rows)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="with --cfg (train)")
    parser.add_argument("--prefix", default="", help="with --csv: folder joined in front of relative paths")
    parser.add_argument("--separator", default=" ", help="with --csv: between path and label (a space)")
    parser.add_argument("--out", required=True, help="folder for the cleaned CSV, the report and the journal")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")
    parser.add_argument("--backend", default=None, help="pyav | decord | torchcodec (default: the config's, or pyav)")
    parser.add_argument("--num-frames", type=int, default=16, help="with --csv: frames per clip (16)")
    parser.add_argument("--sampling-rate", type=int, default=4, help="with --csv: stride at --target-fps (4)")
    parser.add_argument("--target-fps", type=float, default=30.0, help="with --csv: fps of the stride (30)")
    parser.add_argument("--crop", type=int, default=None, help="crop size: a shorter short side is flagged (224)")
    parser.add_argument("--max-side", type=int, default=1920, help="a longer long side is flagged (1920)")
    parser.add_argument("--drop", nargs="+", default=None, help="kinds left out of the cleaned CSV")
    parser.add_argument("--quick", action="store_true", help="decode the first, middle and last frames only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs="*", help="with --cfg: config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.data.verify import format_summary, verify_dataset

    report = verify_dataset(
        args.out, cfg=args.cfg, opts=args.opts, split=args.split, csv=args.csv, prefix=args.prefix,
        separator=args.separator, workers=args.workers, backend=args.backend, num_frames=args.num_frames,
        sampling_rate=args.sampling_rate, target_fps=args.target_fps, crop=args.crop, max_side=args.max_side,
        drop=args.drop, quick=args.quick, progress=not args.no_progress,
    )  # fmt: skip
    print(format_summary(report), end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
