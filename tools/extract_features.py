#!/usr/bin/env python3
"""Features of sliding windows of videos: one .npy per video and an index (JSON and CSV).

    python tools/extract_features.py --cfg configs/K400/MVITv2_S_16x4.yaml --checkpoint MViTv2_S_16x4_k400.pyth \\
        --input videos/ --output features/ --stride 1s
    python tools/extract_features.py --cfg CFG --checkpoint MODEL --input list.csv --output out \\
        --layer stage:3 --pool none --crops 3 --batch 4
    torchrun --nproc_per_node 4 tools/extract_features.py ...      # each rank takes its share, rank 0 merges

A window spans one clip (DATA.NUM_FRAMES x SAMPLING_RATE frames at DATA.TARGET_FPS) and is preprocessed as the test
loader's view that starts there. --input is a video, a folder (searched recursively) or a CSV/TXT list (PySlowFast's
"path label" rows or one path a row; labels are ignored). A rerun skips finished videos. Unreadable videos are
listed in bad_files.txt and the index. Trailing KEY VALUE pairs override the config. See docs/features.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="the checkpoint's config YAML")
    parser.add_argument("--checkpoint", required=True, help="model weights (PySlowFast, torchvision, timm or own)")
    parser.add_argument("--input", required=True, help="a video, a folder of videos, or a CSV/TXT list")
    parser.add_argument("--output", required=True, help="output folder (features/, records/, index.json, ...)")
    parser.add_argument("--layer", default="pre_logits", help="pre_logits (default), logits, stage:N, stage:last, "
                        "block:N")  # fmt: skip
    parser.add_argument("--pool", choices=("mean", "cls", "none"), help="for stage:N / block:N (default mean)")
    parser.add_argument("--stride", help="between window starts: 2s, 0.5s, or frames at DATA.TARGET_FPS (default: "
                        "one clip span)")  # fmt: skip
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1, help="spatial views per window")
    parser.add_argument("--batch", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available; torchrun: LOCAL_RANK)")
    parser.add_argument("--path-prefix", help="joined in front of a list's relative paths (default: its folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config
    from mvit_video.inference.extraction import run_extraction
    from mvit_video.process import setup_logging

    cfg = load_config(args.cfg, list(args.opts))
    setup_logging()
    index = run_extraction(
        cfg,
        args.checkpoint,
        args.input,
        args.output,
        layer=args.layer,
        pool=args.pool,
        stride=args.stride,
        crops=args.crops,
        batch=args.batch,
        device=args.device,
        path_prefix=args.path_prefix,
        config_path=args.cfg,
        progress=not args.no_progress,
    )
    if index is not None:
        print(f"{index['num_videos']} videos, {sum(len(v['windows']) for v in index['videos'])} windows, "
              f"{index['num_bad']} unreadable, {index['num_pending']} pending -> {args.output}/index.json")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_cli(main)
