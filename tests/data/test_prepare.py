"""mvit_video.data.prepare and tools/prepare_kinetics.py on a tiny fake Kinetics download."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mvit_video.data.classnames import load_classnames
from mvit_video.data.prepare import (
    PrepareError,
    prepare_kinetics,
    check_video,
    read_annotations,
    scaled_size,
)
from mvit_video.data.toy import render_frames, sample_video_spec, write_video
from tests.conftest import ROOT

K400 = load_classnames("kinetics400")
HEADER = "label,youtube_id,time_start,time_end,split\n"


def _clip(path: Path, height: int = 96, width: int = 128, frames: int = 24, codec: str = "libx264") -> None:
    spec = sample_video_spec(
        np.random.default_rng(len(str(path))), 0, path.name, [(height, width)], (25,), (frames, frames)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"deadline": "realtime", "cpu-used": "8"} if codec == "libvpx-vp9" else None
    write_video(path, render_frames(spec), spec.fps, codec=codec, options=options)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> dict:
    """Annotations of 3 classes over train/val/test; one clip missing, one broken, several file-name styles."""
    root = tmp_path_factory.mktemp("kinetics")
    ann = root / "annotations"
    ann.mkdir()
    (ann / "train.csv").write_text(
        HEADER
        + "abseiling,aaaaaaaaaa1,10,20,train\n"  # videos/abseiling/aaaaaaaaaa1_000010_000020.mp4
        + "zumba,bbbbbbbbbb2,0,10,train\n"  # videos/bbbbbbbbbb2.mkv (plain id)
        + '"air drumming",cccccccccc3,5,15,train\n'  # missing
        + "zumba,hhhhhhhhhh8,3,13,train\n"  # portrait clip
    )
    (ann / "validate.csv").write_text(
        HEADER
        + "zumba,dddddddddd4,30,40,val\n"  # videos/dddddddddd4_30_40.webm (VP9, unpadded times)
        + "abseiling,eeeeeeeeee5,1,11,val\n"  # broken: garbage bytes
        + "air drumming,ffffffffff6,2,12,val\n"
    )
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\ngggggggggg7,0,10,test\n")  # unlabelled
    videos = root / "videos"
    _clip(videos / "abseiling" / "aaaaaaaaaa1_000010_000020.mp4")
    _clip(videos / "zumba" / "bbbbbbbbbb2.mkv")
    _clip(videos / "zumba" / "hhhhhhhhhh8_000003_000013.mp4", height=128, width=96)
    _clip(videos / "dddddddddd4_30_40.webm", codec="libvpx-vp9")
    (videos / "eeeeeeeeee5_000001_000011.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    _clip(videos / "air drumming" / "ffffffffff6_000002_000012.mp4")
    (videos / "notes.txt").write_text("not a video")
    annotations = [str(ann / n) for n in ("train.csv", "validate.csv", "test.csv")]
    return {"root": root, "annotations": annotations, "videos": videos}


def _rows(csv_path: str) -> list[tuple[str, int]]:
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in Path(csv_path).read_text().splitlines()]


def test_rows_labels_and_report(kinetics, tmp_path):
    report = prepare_kinetics(kinetics["annotations"], kinetics["videos"], tmp_path / "csv", workers=2, progress=False)
    assert report.classnames == "kinetics400" and report.num_classes == 400
    train, val = _rows(report.csv["train"]), _rows(report.csv["val"])
    by_name = {Path(p).name: label for p, label in train + val}
    assert by_name == {
        "aaaaaaaaaa1_000010_000020.mp4": K400.index("abseiling"),
        "bbbbbbbbbb2.mkv": K400.index("zumba"),
        "hhhhhhhhhh8_000003_000013.mp4": K400.index("zumba"),
        "dddddddddd4_30_40.webm": K400.index("zumba"),
        "ffffffffff6_000002_000012.mp4": K400.index("air drumming"),
    }
    assert K400.index("air drumming") == 1 and K400.index("zumba") == 399
    assert all(Path(p).is_absolute() and Path(p).is_file() for p, _ in train + val)
    assert _rows(report.csv["test"]) == []
    counts = {s: (c.clips, c.unlabelled, c.found, c.missing, c.broken, c.written) for s, c in report.counts.items()}
    assert counts == {"train": (4, 0, 3, 1, 0, 3), "val": (3, 0, 3, 0, 1, 2), "test": (1, 1, 0, 0, 0, 0)}
    assert report.missing == [("train", "cccccccccc3_000005_000015")]
    assert [(s, Path(p).name) for s, p, _ in report.broken] == [("val", "eeeeeeeeee5_000001_000011.mp4")]
    text = Path(report.report_path).read_text()
    assert "cccccccccc3_000005_000015" in text and "eeeeeeeeee5_000001_000011.mp4: corrupt: " in text


def test_relative_paths_and_explicit_class_list(kinetics, tmp_path):
    report = prepare_kinetics(
        kinetics["annotations"][:1],
        kinetics["videos"],
        tmp_path,
        classes="k700",
        path_prefix=kinetics["videos"],
        workers=1,
        progress=False,
    )
    assert report.classnames == "kinetics700" and set(report.csv) == {"train"}
    rows = dict(_rows(report.csv["train"]))
    assert rows["abseiling/aaaaaaaaaa1_000010_000020.mp4"] == 0 and rows["zumba/bbbbbbbbbb2.mkv"] == 699


def test_reencode_short_side_and_keyframe_interval(kinetics, tmp_path):
    out = tmp_path / "reenc"
    report = prepare_kinetics(
        kinetics["annotations"],
        kinetics["videos"],
        tmp_path / "csv",
        reencode_dir=out,
        short_side=64,
        gop=5,
        workers=2,
        progress=False,
    )
    assert report.reencoded == 5 and report.reencode_failed == []
    rows = _rows(report.csv["train"]) + _rows(report.csv["val"])
    assert sorted(Path(p).relative_to(out).as_posix() for p, _ in rows) == [
        "train/aaaaaaaaaa1_000010_000020.mp4",
        "train/bbbbbbbbbb2_000000_000010.mp4",
        "train/hhhhhhhhhh8_000003_000013.mp4",
        "val/dddddddddd4_000030_000040.mp4",
        "val/ffffffffff6_000002_000012.mp4",
    ]
    for path, _ in rows:
        with av.open(path) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            size = (stream.codec_context.height, stream.codec_context.width)
            assert size == ((86, 64) if "hhhhhhhhhh8" in path else (64, 86))
            frame_ticks = 1 / (stream.average_rate * stream.time_base)
            packets = [p for p in container.demux(stream) if p.size]
            keyframes = sorted(round(p.pts / frame_ticks) for p in packets if p.is_keyframe)
        assert len(packets) == 24 and keyframes == [0, 5, 10, 15, 20]
    again = prepare_kinetics(
        kinetics["annotations"],
        kinetics["videos"],
        tmp_path / "csv2",
        reencode_dir=out,
        short_side=64,
        gop=5,
        workers=1,
        progress=False,
    )
    assert again.reused == 5 and again.reencoded == 0


def test_reencode_failures_are_reported_not_fatal(kinetics, tmp_path, monkeypatch):
    from mvit_video.data import prepare

    def fail_on_zumba(src, dst, short_side, gop, crf=23):
        if "bbbbbbbbbb2" in src:
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
        return 1

    monkeypatch.setattr(prepare, "reencode_video", fail_on_zumba)
    report = prepare_kinetics(
        kinetics["annotations"][:1],
        kinetics["videos"],
        tmp_path,
        reencode_dir=tmp_path / "r",
        workers=1,
        progress=False,
    )
    assert [(s, Path(p).name) for s, p, _ in report.reencode_failed] == [("train", "bbbbbbbbbb2.mkv")]
    assert report.counts["train"].written == 2 and "Invalid data" in Path(report.report_path).read_text()


def _garbage_packets(path: Path) -> None:
    """A valid MP4 with an H.264 track whose packets hold random bytes."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.open()
        for i in range(5):
            packet = av.Packet(b"\x00\x00\x00\x01\x09" + rng.bytes(200))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
            container.mux(packet)


def test_check_reasons_are_the_loaders(tmp_path, kinetics):
    assert check_video(str(kinetics["videos"] / "dddddddddd4_30_40.webm")) is None
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert check_video(str(empty)) == "empty file"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((kinetics["videos"] / "abseiling" / "aaaaaaaaaa1_000010_000020.mp4").read_bytes()[:2000])
    assert check_video(str(truncated)).startswith("corrupt: ")
    audio_only = tmp_path / "audio.mp4"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert check_video(str(audio_only)) == "no video stream"
    _garbage_packets(tmp_path / "garbage_packets.mp4")
    assert check_video(str(tmp_path / "garbage_packets.mp4")).startswith("zero frames")


def test_scaled_size():
    assert scaled_size(240, 320, 160) == (160, 214) and scaled_size(320, 240, 160) == (214, 160)
    assert scaled_size(720, 1280, 320) == (320, 568)


@pytest.mark.parametrize(
    "content,message",
    [
        ("label,youtube_id,split\nabseiling,x,train\n", "header lacks time_start, time_end"),
        (HEADER + "abseiling,x,1,2,holdout\n", "unknown split 'holdout'"),
        (HEADER + "abseiling,x,a,2,train\n", "time_start/time_end must be numbers"),
    ],
)
def test_bad_annotations_fail_in_one_line(tmp_path, content, message):
    path = tmp_path / "ann.csv"
    path.write_text(content)
    with pytest.raises(PrepareError, match=message):
        read_annotations([path])


def test_unknown_labels_are_named_before_any_work(kinetics, tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text(HEADER + "abseiling,x,1,2,train\nflying carpet,y,1,2,train\nmoon dancing,z,1,2,val\n")
    with pytest.raises(PrepareError, match="2 label name\\(s\\) not in kinetics400: 'flying carpet', 'moon dancing'"):
        prepare_kinetics([path], kinetics["videos"], tmp_path / "out", classes="kinetics400", progress=False)
    with pytest.raises(PrepareError, match="not in any of kinetics400, kinetics600, kinetics700"):
        prepare_kinetics([path], kinetics["videos"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrepareError, match="short-side must be a positive even number"):
        prepare_kinetics([path], kinetics["videos"], tmp_path / "out", reencode_dir=tmp_path / "r", short_side=321)


def test_label_names_match_ignoring_case_and_underscores(kinetics, tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text(HEADER + "Air_Drumming,ffffffffff6,2,12,train\n")
    report = prepare_kinetics([path], kinetics["videos"], tmp_path / "out", workers=1, progress=False)
    assert [label for _, label in _rows(report.csv["train"])] == [K400.index("air drumming")]


def test_cli(kinetics, tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "prepare_kinetics.py")]
    args = ["--annotations", *kinetics["annotations"], "--videos", str(kinetics["videos"]), "--workers", "2"]
    done = subprocess.run(
        [*tool, *args, "--out", str(tmp_path / "csv")], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "class list: kinetics400 (400 classes)" in done.stdout and "report.txt" in done.stdout
    assert (tmp_path / "csv" / "train.csv").is_file() and (tmp_path / "csv" / "report.txt").is_file()
    bad = subprocess.run(
        [*tool, *args, "--out", str(tmp_path / "x"), "--classes", "kinetics900"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: class-name list")
