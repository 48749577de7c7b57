"""Running tools/run_net.py on a small toy dataset, as a user would, and reading what it wrote."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"
# Small clips (4 x 32 x 32): larger inputs cost seconds of one-time CPU kernel warm-up per run.
TINY = [
    "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.5", "TRAIN.BATCH_SIZE", "4", "DATA_LOADER.NUM_WORKERS", "0",
    "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.BATCH_SIZE", "4", "LOG_PERIOD", "1",
]  # fmt: skip


def run_net_args(data: Path, output: Path, *opts: str, flag_opts: bool = False) -> list[str]:
    """tools/run_net.py's arguments for the toy config on ``data``, writing to ``output``."""
    overrides = ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output),
                 *TINY, *opts]  # fmt: skip
    return [str(ROOT / "tools" / "run_net.py"), "--cfg", str(CONFIG), *(["--opts"] if flag_opts else []), *overrides]


def run_net(data: Path, output: Path, *opts: str, flag_opts: bool = False, launcher: list[str] | None = None,
            timeout: int = 180) -> subprocess.CompletedProcess:  # fmt: skip
    """Runs tools/run_net.py (under ``launcher``, e.g. torchrun, when given) and returns the finished process."""
    command = (launcher or [sys.executable]) + run_net_args(data, output, *opts, flag_opts=flag_opts)
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_stats(stdout: str) -> list[dict]:
    """The ``json_stats:`` records printed on the console."""
    return [json.loads(line.split("json_stats: ", 1)[1]) for line in stdout.splitlines() if "json_stats: " in line]


def iter_losses(stats: list[dict], epoch: int, max_epoch: int) -> list[float]:
    return [s["loss"] for s in stats if s["_type"] == "train_iter" and s["epoch"] == f"{epoch}/{max_epoch}"]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line a user mistake must produce (exit status 2, nothing else on stderr)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def train_toy_short(root: Path, config: Path, short_run: list[str]) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One scaled-down training run of a toy ``config`` (half-size videos: 240 for training, 30 for validation, 60
    for the test) under ``root``: (dataset folder, run folder, the finished process, asserted successful)."""
    import os

    from mvit_video.data.toy import make_toy_dataset
    from tests.engine.test_toy_end_to_end import HALF_SIZES

    data, output = root / "toy", root / "run"
    make_toy_dataset(data, num_per_class=40, val_per_class=5, test_per_class=10, sizes=HALF_SIZES)
    overrides = ["DATA.PATH_TO_DATA_DIR", str(data), "DATA.PATH_PREFIX", str(data), "OUTPUT_DIR", str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_net.py"), "--cfg", str(config), *overrides, *short_run],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return data, output, result
