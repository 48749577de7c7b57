#!/usr/bin/env python3
"""Train and/or test a model from a config (PySlowFast's tools/run_net.py command line).

    python tools/run_net.py --cfg configs/Toy/MVITv2_XS_8x2.yaml [KEY VALUE ...]
    python tools/run_net.py --cfg FILE --opts SOLVER.MAX_EPOCH 5 OUTPUT_DIR out/run1

TRAIN.ENABLE runs training, TEST.ENABLE then runs the multi-view test. With the toy config's default data folder
(data/toy) the toy dataset is generated on first use.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvit_video.cli import run_cli

TOY_DATA_DIR = "data/toy"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", "--cfg_file", dest="cfg", required=True, help="config YAML")
    parser.add_argument("--num_shards", type=int, default=None, help="machines taking part (sets NUM_SHARDS)")
    parser.add_argument("--shard_id", type=int, default=None, help="this machine's index (sets SHARD_ID)")
    parser.add_argument("--init_method", default=None, help="torch.distributed init method (multi-process only)")
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


def ensure_toy_dataset(cfg) -> None:
    """Generates the toy dataset when the config points at the default toy folder and it is not there yet."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    is_toy_default = os.path.normpath(data_dir) == os.path.normpath(TOY_DATA_DIR)
    if not is_toy_default or os.path.exists(os.path.join(data_dir, "train.csv")):
        return
    from mvit_video.data.toy import make_toy_dataset

    logging.getLogger("run_net").info("%s/train.csv not found: generating the toy dataset there", data_dir)
    make_toy_dataset(data_dir)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mvit_video.config import load_config

    cfg = load_config(args.cfg, config_opts(args))
    from mvit_video.engine.trainer import TrainingDiverged, test, train

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout, force=True)  # fmt: skip
    if args.init_method is not None and cfg.NUM_SHARDS * max(cfg.NUM_GPUS, 1) > 1:
        logging.getLogger("run_net").warning("--init_method %s ignored: multi-process training is not implemented",
                                             args.init_method)  # fmt: skip
    ensure_toy_dataset(cfg)
    try:
        if cfg.TRAIN.ENABLE:
            train(cfg)
        if cfg.TEST.ENABLE:
            test(cfg, config_path=args.cfg)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
