#!/usr/bin/env python3
"""A zoo model's speed side by side with its reference implementation (same weights, input and dtype): inference
and training-step clips/s, peak memory and MFU against the device's measured bf16 matmul rate. References: torchvision
for the video MViTs (mvitv2_s_16x4, mvitv1_b_16x4), timm for the image MViTv2-T (mvitv2_t_in1k), the image ViT
variants (vit_ti16_in1k, vit_b16_in1k, deit_ti16_in1k, deit_ti16_distilled_in1k, cait_xxs24_in1k, cpvt_ti_in1k),
Swin-T (swin_t_in1k), PVTv2-B0 (pvtv2_b0_in1k), LeViT-128S (levit_128s_in1k) and CoaT (coat_lite_ti_in1k,
coat_ti_in1k), HF transformers for the video ViTs (videomae_b_16x4, timesformer_b_8x32, vivit_b_32x2), PVT-Tiny
(pvt_t_in1k) and CvT-13 (cvt_13_in1k), torchvision for Video Swin-T (swin3d_t_32x2).

    python tools/benchmark.py --model mvitv2_s_16x4 [--device cuda|cpu] [--dtype bf16|fp16|fp32] [--batch N]
                              [--iters N] [--repeat N] [--rounds N] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mvitv2_s_16x4", help="a zoo model with a reference twin (see above)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: 16 on GPU, 2 on CPU)")
    parser.add_argument("--iters", type=int, default=None, help="timed steps (default: 20 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 / 1)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="blocks of --iters steps per implementation, alternating with the reference's; the "
                             "fastest counts")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh processes that each time both implementations (which starts alternates)")
    parser.add_argument("--modes", default="inference,train", help="comma-separated: inference,train")
    parser.add_argument("--attention", default="auto", help="our attention path: auto, sdpa or math")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--act-checkpoint", action="store_true",
                        help="also time our training step with activation checkpointing")  # fmt: skip
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mvit_video.benchmarks.model import format_table, run_benchmark, write_json

    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    doc = run_benchmark(
        model=args.model,
        device=args.device or ("cuda" if gpu else "cpu"),
        dtype=args.dtype or ("bf16" if gpu else "fp32"),
        batch=args.batch or (16 if gpu else 2),
        iters=args.iters or (20 if gpu else 3),
        warmup=args.warmup if args.warmup is not None else (5 if gpu else 1),
        compile=args.compile,
        modes=tuple(m for m in args.modes.split(",") if m),
        attention=args.attention,
        act_checkpoint=args.act_checkpoint,
        repeat=args.repeat,
        rounds=args.rounds,
    )
    print(format_table(doc))
    if args.json:
        write_json(doc, args.json)
    return 0


if __name__ == "__main__":
    run_cli(main)
