"""mvit_video.data.classnames: the official label orders of Kinetics-400/600/700 and Something-Something v2."""

from __future__ import annotations

import json

import pytest

from mvit_video.data.classnames import BUILTIN_CLASSNAMES, ClassNamesError, load_classnames


@pytest.mark.parametrize(
    "name,count", [("kinetics400", 400), ("kinetics600", 600), ("kinetics700", 700), ("ssv2", 174)]
)
def test_counts_unique_and_alphabetical(name, count):
    names = load_classnames(name)
    assert len(names) == count == len(set(names))
    assert names == sorted(names)  # the official orders are the sorted official names
    assert all(n == n.strip() and n for n in names)


def test_kinetics400_is_torchvisions_order():
    meta = pytest.importorskip("torchvision.models._meta")
    assert load_classnames("kinetics400") == list(meta._KINETICS400_CATEGORIES)


@pytest.mark.parametrize(
    "name,index,expected",
    [
        ("k400", 0, "abseiling"),
        ("k400", 6, "arm wrestling"),
        ("k400", 208, "passing American football (in game)"),
        ("k400", 399, "zumba"),
        ("k600", 4, "alligator wrestling"),
        ("k600", 58, "bull fighting"),
        ("k600", 309, "passing american football (not in game)"),  # lower-case "american" as in the K600 CSVs
        ("k600", 475, "smashing"),
        ("k600", 599, "zumba"),
        ("k700", 13, "arresting"),
        ("k700", 699, "zumba"),
        ("ssv2", 0, "Approaching something with your camera"),
        ("ssv2", 5, "Closing something"),
        ("ssv2", 41, "Moving something away from the camera"),
        ("ssv2", 93, "Pushing something from left to right"),
        ("ssv2", 135, "Something falling like a rock"),
        ("ssv2", 160, "Touching (without moving) part of something"),
        ("ssv2", 173, "Wiping something off of something"),
    ],
)
def test_spot_checks(name, index, expected):
    assert load_classnames(name)[index] == expected


def test_kinetics_versions_overlap_as_published():
    k400, k600, k700 = (set(load_classnames(n)) for n in ("k400", "k600", "k700"))
    assert len(k600 - k700) == 4 and "bull fighting" in k600 - k700
    assert "balloon blowing" in k400 - k600 and len(k400 & k600) == 368


def test_aliases_and_case():
    assert load_classnames("K700") == load_classnames("kinetics-700") == load_classnames("kinetics700_2020")
    assert load_classnames("sthv2") == load_classnames("ssv2")
    assert set(BUILTIN_CLASSNAMES) == {"kinetics400", "kinetics600", "kinetics700", "ssv2"}


def test_text_and_json_files(tmp_path):
    txt = tmp_path / "names.txt"
    txt.write_text("b class\r\na class\n\n")
    assert load_classnames(txt) == ["b class", "a class"]
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({name: str(i) for i, name in enumerate(load_classnames("ssv2"))}))
    assert load_classnames(str(labels)) == load_classnames("ssv2")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["x", "y"]))
    assert load_classnames(listed) == ["x", "y"]


@pytest.mark.parametrize(
    "content,suffix,message",
    [
        ("", ".txt", "empty"),
        ("a\n\nb\n", ".txt", "blank line at line 2"),
        ("a\na\n", ".txt", "twice"),
        ('{"a": 0, "b": 2}', ".json", "indices must be 0..1"),
        ('{"a": "x"}', ".json", "integer index"),
        ("{", ".json", "not valid JSON"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ClassNamesError, match=message) as info:
        load_classnames(path)
    assert "\n" not in str(info.value)


def test_unknown_name():
    with pytest.raises(ClassNamesError, match="neither a file nor one of kinetics400"):
        load_classnames("kinetics900")
