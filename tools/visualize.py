#!/usr/bin/env python3
"""Explain a model's prediction on one clip of a video: Grad-CAM or attention rollout as a heat map, written as an
H.264 overlay video and a PNG grid (frames above, heat below). See docs/visualize.md.

    python tools/visualize.py --cfg configs/Toy/MVITv2_XS_8x2.yaml --checkpoint output/toy/checkpoints/... \
        --video data/toy/test/test_0000.mp4 [--method gradcam|rollout] [--block N] [--class NAME|INDEX] \
        [--start SECONDS] [--output-dir output/visualize] [KEY VALUE ...]
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
    parser.add_argument("--cfg", required=True, help="the checkpoint's config YAML (its test preprocessing is used)")
    parser.add_argument("--checkpoint", required=True, help="model weights (any format load_pretrained detects)")
    parser.add_argument("--video", required=True, help="input video file")
    parser.add_argument("--method", default="gradcam", help="gradcam (every family) or rollout (MViT, ViT, CeiT)")
    parser.add_argument("--block", type=int, default=None, help="block to explain, from 0 (default: the last)")
    parser.add_argument("--class", dest="target", default=None, help="class name or index (default: the top-1)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds into the video where the clip starts")
    parser.add_argument("--output-dir", default="output/visualize", help="folder for the .mp4 and .png")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config
    from mvit_video.inference.visualize import VisualizeRequest, run_visualize

    cfg = load_config(args.cfg, args.opts)
    request = VisualizeRequest(checkpoint=args.checkpoint, video=args.video, output_dir=args.output_dir,
                               method=args.method, block=args.block, target=args.target, start=args.start,
                               device=args.device)  # fmt: skip
    print(json.dumps(run_visualize(cfg, request)))
    return 0


if __name__ == "__main__":
    run_cli(main)
