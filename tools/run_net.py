#!/usr/bin/env python3
"""Train and/or test a model from a config, or run the demo (PySlowFast's tools/run_net.py command line).

    python tools/run_net.py --cfg configs/Toy/MVITv2_XS_8x2.yaml [KEY VALUE ...]
    python tools/run_net.py --cfg FILE --opts SOLVER.MAX_EPOCH 5 OUTPUT_DIR out/run1
    torchrun --nproc_per_node 8 tools/run_net.py --cfg FILE
    python tools/run_net.py --cfg FILE --num_shards 2 --shard_id 0 --init_method tcp://host0:9999 NUM_GPUS 8

    python tools/run_net.py --cfg FILE DEMO.ENABLE True DEMO.INPUT_VIDEO in.mp4 DEMO.OUTPUT_FILE out.mp4 \
        TEST.CHECKPOINT_FILE_PATH model.pyth        # or DEMO.WEBCAM 0

TRAIN.ENABLE runs training, TEST.ENABLE then runs the multi-view test; DEMO.ENABLE runs only the demo (see
demo/run_demo.py). With the toy config's default data folder (data/toy) the toy dataset is generated on first use.

SIGTERM or SIGUSR1 during training checkpoints the current iteration and exits with status 75 (EX_TEMPFAIL: run
the same command again to continue, with TRAIN.AUTO_RESUME True).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", "--cfg_file", dest="cfg", required=True, help="config YAML")
    parser.add_argument("--num_shards", type=int, default=None, help="machines taking part (sets NUM_SHARDS)")
    parser.add_argument("--shard_id", type=int, default=None, help="this machine's index (sets SHARD_ID)")
    parser.add_argument("--init_method", default=None, help="where the processes meet, e.g. tcp://host0:9999")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, PySlowFast style: --opts KEY VALUE ...")  # fmt: skip
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def config_opts(args: argparse.Namespace) -> list[str]:
    """The overrides of the command line: positional and --opts pairs, then --num_shards / --shard_id."""
    opts = list(args.opts) + list(args.flag_opts)
    if args.num_shards is not None:
        opts += ["NUM_SHARDS", str(args.num_shards)]
    if args.shard_id is not None:
        opts += ["SHARD_ID", str(args.shard_id)]
    return opts


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config
    from mvit_video.process import setup_logging

    cfg = load_config(args.cfg, config_opts(args))
    setup_logging()
    if cfg.DEMO.ENABLE:  # as in PySlowFast: the demo instead of training and testing
        from mvit_video.engine.trainer import test_checkpoint
        from mvit_video.inference.demo import run_demo, settings_from_cfg

        run_demo(cfg, settings_from_cfg(cfg, test_checkpoint(cfg)))
        return 0
    from mvit_video.engine.job import run_job, was_stopped
    from mvit_video.engine.preemption import EXIT_STOPPED

    results = run_job(cfg, init_method=args.init_method, config_path=args.cfg)
    return EXIT_STOPPED if was_stopped(results) else 0


if __name__ == "__main__":
    run_cli(main)
