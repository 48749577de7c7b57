"""tools/make_toy_dataset.py: one summary line, files on disk, one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

from mvit_video.data.toy import TOY_CLASSES
from tests.conftest import ROOT


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_toy_dataset.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_writes_dataset_and_prints_one_line(tmp_path):
    out = tmp_path / "toy"
    done = _tool("--out", str(out), "--per-class", "1", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(
        f"toy dataset: {len(TOY_CLASSES)} classes, 18 videos"
    )
    assert str(out) in done.stdout
    for split in ("train", "val", "test"):
        rows = (out / f"{split}.csv").read_text().splitlines()
        assert len(rows) == len(TOY_CLASSES) and all((out / row.split(" ")[0]).is_file() for row in rows)
    assert (out / "classnames.txt").read_text().splitlines() == list(TOY_CLASSES)


def test_unwritable_out_is_one_line_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = _tool("--out", str(blocker / "toy"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot write the toy dataset to")


def test_bad_count_is_one_line_error(tmp_path):
    done = _tool("--out", str(tmp_path / "toy"), "--per-class", "0")
    assert done.returncode == 2 and done.stderr == "error: toy dataset needs at least 1 train video per class, got 0\n"
