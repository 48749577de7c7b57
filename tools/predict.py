#!/usr/bin/env python3
"""Top-k classes of videos: per video with the config's multi-view test, or per window (--timeline).

    python tools/predict.py --cfg configs/K400/MVITv2_S_16x4.yaml --checkpoint MViTv2_S_16x4_k400.pyth \\
        --input videos/ --output predictions           # writes predictions.json and predictions.csv
    python tools/predict.py --cfg CFG --checkpoint MODEL --input long.mp4 --output timeline --timeline --stride 1s

Per video the views are run_net's test views (TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS), scored by
MODEL.HEAD_ACT and ensembled by DATA.ENSEMBLE_METHOD as the evaluator does; per window, the test view that starts
at each window. --input is a video, a folder or a CSV/TXT list (labels ignored). Class names as the demo resolves
them (DEMO.LABEL_FILE_PATH, DATA_DIR/classnames.txt, the built-in lists). See docs/features.md.
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
    parser.add_argument("--output", required=True, help="output path without extension (.json and .csv written)")
    parser.add_argument("--timeline", action="store_true", help="top-k per window instead of per video")
    parser.add_argument("--stride", help="timeline: between window starts, 2s or frames at DATA.TARGET_FPS")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1, help="timeline: spatial views per window")
    parser.add_argument("--topk", type=int, help="classes per prediction (default DEMO.TOPK)")
    parser.add_argument("--batch", type=int, default=8, help="clips per forward pass")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--path-prefix", help="joined in front of a list's relative paths (default: its folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config
    from mvit_video.inference.extraction import default_device
    from mvit_video.inference.predict import run_predict
    from mvit_video.process import setup_logging

    cfg = load_config(args.cfg, list(args.opts))
    setup_logging()
    predictions, paths = run_predict(cfg, args.checkpoint, args.input, args.output, timeline=args.timeline,
                                     stride=args.stride, crops=args.crops, topk=args.topk, batch=args.batch,
                                     device=args.device or default_device(), path_prefix=args.path_prefix,
                                     config_path=args.cfg, progress=not args.no_progress)  # fmt: skip
    for p in predictions:
        if p.error:
            print(f"{p.video}: unreadable ({p.error})")
        elif p.windows is None:
            print(f"{p.video}: " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in p.top))
        else:
            print(f"{p.video}: {len(p.windows)} windows")
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    run_cli(main)
