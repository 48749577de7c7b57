"""Split files and the bad-video log."""

from __future__ import annotations

import json

import pytest

from mvit_video.data.badfiles import BadVideoLog, TooManyBadVideos, load_or_replace
from mvit_video.data.records import DatasetError, VideoRecord, check_labels, read_csv_split, read_ssv2_split


def test_csv_split_with_prefix_and_spaces_in_paths(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("a/x.mp4 3\n\nb/with space.mp4 0\n")
    records = read_csv_split(str(csv), "/data/k400")
    assert records == [VideoRecord("/data/k400/a/x.mp4", 3), VideoRecord("/data/k400/b/with space.mp4", 0)]


def test_csv_custom_separator(tmp_path):
    csv = tmp_path / "val.csv"
    csv.write_text("a.mp4,7\n")
    assert read_csv_split(str(csv), "", ",") == [VideoRecord("a.mp4", 7)]


@pytest.mark.parametrize("row", ["only_a_path.mp4", "a.mp4 seven", "a.mp4 1.5"])
def test_malformed_row_names_file_line_and_row(tmp_path, row):
    csv = tmp_path / "train.csv"
    csv.write_text(f"good.mp4 1\n{row}\n")
    with pytest.raises(DatasetError) as info:
        read_csv_split(str(csv))
    message = str(info.value)
    assert f"{csv}:2: malformed row {row!r}" in message and "\n" not in message


def test_missing_or_empty_split(tmp_path):
    with pytest.raises(DatasetError, match="split file not found: .*test.csv; check DATA.PATH_TO_DATA_DIR"):
        read_csv_split(str(tmp_path / "test.csv"))
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DatasetError, match="lists no videos"):
        read_csv_split(str(tmp_path / "empty.csv"))


def test_labels_must_fit_the_model():
    with pytest.raises(DatasetError, match="label 400 of b.mp4 is outside 0..399"):
        check_labels([VideoRecord("a.mp4", 0), VideoRecord("b.mp4", 400)], 400, "train.csv")


def test_ssv2_annotations(tmp_path):
    labels = {"Holding something next to something": "0", "Pushing something from left to right": "1"}
    entries = [
        {"id": "78687", "label": "holding potato next to bottle", "template": "Holding [something] next to [something]"},
        {"id": "42326", "label": "pushing cup", "template": "Pushing [something] from left to right"},
    ]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps(entries))
    records = read_ssv2_split(str(tmp_path / "train.json"), str(tmp_path / "labels.json"), "/videos")
    assert records == [VideoRecord("/videos/78687.webm", 0), VideoRecord("/videos/42326.webm", 1)]
    entries.append({"id": "1", "template": "Juggling [something]"})
    (tmp_path / "train.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="entry 2 .*'Juggling \\[something\\]'"):
        read_ssv2_split(str(tmp_path / "train.json"), str(tmp_path / "labels.json"), "/videos")


def test_bad_video_log_is_shared_through_the_file(tmp_path):
    path = str(tmp_path / "out" / "bad_videos.txt")
    a = BadVideoLog(path, num_videos=10, max_fraction=0.25, split="train")
    b = BadVideoLog(path, num_videos=10, max_fraction=0.25, split="train")  # another worker process
    a.record("/v/1.mp4", "corrupt: invalid data\nfound")
    b.record("/v/2.mp4", "missing file")
    a.record("/v/1.mp4", "corrupt again")  # same file: counted once
    BadVideoLog(path, 10, 0.25, split="test").record("/v/9.mp4", "truncated")
    assert a.bad_videos() == {"/v/1.mp4": "corrupt: invalid data found", "/v/2.mp4": "missing file"}
    lines = open(path).read().splitlines()
    assert lines == ["train\t/v/1.mp4\tcorrupt: invalid data found", "train\t/v/2.mp4\tmissing file",
                     "test\t/v/9.mp4\ttruncated"]  # fmt: skip
    with pytest.raises(TooManyBadVideos, match=r"3 of 10 train videos are unreadable, more than DATA.MAX_BAD_FRACTION"):
        b.record("/v/3.mp4", "zero frames")


def test_load_or_replace_replaces_bad_items_deterministically():
    bad = {0, 3}
    seen = []

    def load(index, rng):
        if index in bad:
            raise OSError(f"bad {index}")
        return index * 10

    got = load_or_replace(0, 5, load, lambda i, e: seen.append(i), (OSError,), "7-0")
    again = load_or_replace(0, 5, load, lambda i, e: None, (OSError,), "7-0")
    assert got == again and got[0] not in bad and got[1] == got[0] * 10
    assert seen[0] == 0
    with pytest.raises(RuntimeError, match="3 files in a row"):
        load_or_replace(0, 1, load, lambda i, e: None, (OSError,), "s", max_retries=2)
