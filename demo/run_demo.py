#!/usr/bin/env python3
"""Action recognition on a video file or a camera: top-k labels drawn on every frame, and a JSON timeline.

    python demo/run_demo.py --cfg configs/K400/MVITv2_S_16x4.yaml --checkpoint MViTv2_S_16x4_k400.pyth \\
        --input video.mp4 --output annotated.mp4          # also writes annotated.json
    python demo/run_demo.py --cfg CFG --checkpoint MODEL --input 0 --display --output webcam.mp4

--input is a video file or a camera index (/dev/videoN). The config is the checkpoint's: its test preprocessing
(DATA.NUM_FRAMES, SAMPLING_RATE, TARGET_FPS, TEST_CROP_SIZE, MEAN/STD) makes the clips. Trailing KEY VALUE pairs
override the config (e.g. DEMO.LABEL_FILE_PATH labels.json, DEMO.STRIDE 32).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="the checkpoint's config YAML")
    parser.add_argument("--checkpoint", required=True, help="model weights (PySlowFast, torchvision or own)")
    parser.add_argument("--input", required=True, help="video file, or camera index (0 = /dev/video0)")
    parser.add_argument("--output", help="annotated video to write (.mp4, .mkv or .mov)")
    parser.add_argument("--timeline", help="JSON timeline to write (default: beside --output, with .json)")
    parser.add_argument("--display", action="store_true", help="show the annotated frames in a window")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--stride", type=int, help="frames between predictions on files (DEMO.STRIDE)")
    parser.add_argument("--topk", type=int, help="labels shown per prediction (DEMO.TOPK)")
    parser.add_argument("--stall-seconds", type=float, help="finish when no frame came for this long")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def config_opts(args: argparse.Namespace) -> list[str]:
    """The config overrides of the command line: flags first, then trailing KEY VALUE pairs."""
    opts = []
    for key, value in (("DEMO.STRIDE", args.stride), ("DEMO.TOPK", args.topk),
                       ("DEMO.STALL_SECONDS", args.stall_seconds)):  # fmt: skip
        if value is not None:
            opts += [key, str(value)]
    return opts + list(args.opts)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config
    from mvit_video.process import setup_logging
    from mvit_video.inference.demo import default_device, run_demo, settings_from_cfg, timeline_beside

    cfg = load_config(args.cfg, config_opts(args))
    camera = int(args.input) if args.input.isdigit() and not Path(args.input).exists() else -1
    settings = dataclasses.replace(
        settings_from_cfg(cfg, args.checkpoint),
        video="" if camera >= 0 else args.input,
        camera=camera,
        output=args.output,
        timeline=args.timeline or (timeline_beside(args.output) if args.output else None),
        display=args.display,
        device=args.device or default_device(),
    )
    setup_logging()
    run_demo(cfg, settings)
    return 0


if __name__ == "__main__":
    run_cli(main)
