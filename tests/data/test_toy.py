"""mvit_video.data.toy: real H.264 files, PySlowFast CSVs, determinism, and classes that differ only in motion."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

from mvit_video.data.toy import (
    DEFAULT_NUM_PER_CLASS,
    TOY_CLASSES,
    ToyDatasetError,
    ToyVideoSpec,
    make_toy_dataset,
    plan_toy_dataset,
    render_background,
    render_frames,
    shape_mask,
)

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    """A small dataset (8 train, 3 val, 3 test videos per class) with the default video parameters, written once."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_per_class=8, seed=0)


def _rows(summary: dict, split: str) -> list[tuple[str, int]]:
    rows = []
    for line in Path(summary["csv"][split]).read_text().splitlines():
        path, label = line.rsplit(" ", 1)
        rows.append((path, int(label)))
    return rows


def _specs(summary: dict) -> dict[str, dict]:
    meta = json.loads(Path(summary["meta"]).read_text())
    return {spec["path"]: spec for split in SPLITS for spec in meta["videos"][split]}


def _gray_frames(path: Path) -> np.ndarray:
    """(T, H, W) float32 luma (the Y plane) of every decoded frame."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray()[: f.height].astype(np.float32) for f in container.decode(video=0)])


def _rgb_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    """The RGB frames at ``indices`` (decode order), in one pass."""
    wanted, found = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                found[i] = frame.to_ndarray(format="rgb24")
    return [found[i] for i in indices]


def _circular_mean(weights: np.ndarray, axis: int, period: int) -> float:
    """Weighted mean position along one axis of a torus of the given period."""
    angle = 2 * np.pi * np.arange(period) / period
    profile = weights.sum(axis=1 - axis)
    mean = math.atan2(float((profile * np.sin(angle)).sum()), float((profile * np.cos(angle)).sum()))
    return mean * period / (2 * np.pi) % period


def _wrapped(delta: float, period: int) -> float:
    return (delta + period / 2) % period - period / 2


def _moving_masks(frames: np.ndarray) -> np.ndarray:
    """(T-1, H, W) where consecutive frames differ beyond compression noise."""
    return np.abs(np.diff(frames, axis=0)) > 20


def _drift(masks: np.ndarray) -> tuple[float, float]:
    """Velocity (dy, dx) in pixels per frame of the changing region's centroid: the slope of its unwrapped track."""
    height, width = masks.shape[1:]
    times = [t for t, m in enumerate(masks) if m.sum() > 4]
    centers = np.array([(_circular_mean(masks[t], 0, height), _circular_mean(masks[t], 1, width)) for t in times])
    steps = [(_wrapped(b[0] - a[0], height), _wrapped(b[1] - a[1], width)) for a, b in itertools.pairwise(centers)]
    track = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    slope = np.polyfit(np.asarray(times, dtype=np.float64), track, 1)[0]
    return float(slope[0]), float(slope[1])


def _rotation_maps(size: int, degrees: list[float]) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Nearest-neighbour source pixels that rotate a (size, size) patch about its centre; positive is clockwise
    on screen (y down): output pixel p samples the input at R(-a) (p - c) + c."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    maps = {}
    for deg in degrees:
        a = math.radians(deg)
        sx = math.cos(a) * xx + math.sin(a) * yy + (size - 1) / 2
        sy = -math.sin(a) * xx + math.cos(a) * yy + (size - 1) / 2
        maps[deg] = (np.clip(np.rint(sy), 0, size - 1).astype(int), np.clip(np.rint(sx), 0, size - 1).astype(int))
    return maps


def _spin_direction(frames: np.ndarray, masks: np.ndarray) -> int:
    """+1 when the changing region turns clockwise, -1 counter-clockwise (votes over frame pairs)."""
    height, width = frames.shape[1:]
    union = masks.any(axis=0)
    cy, cx = _circular_mean(union, 0, height), _circular_mean(union, 1, width)
    radius = math.sqrt(union.sum() / math.pi)
    half = min(int(radius) + 3, min(height, width) // 2 - 1)
    rows = np.arange(round(cy) - half, round(cy) + half + 1) % height  # the shape, unwrapped around its centre
    cols = np.arange(round(cx) - half, round(cx) + half + 1) % width
    patches = frames[:, rows][:, :, cols]
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    disk = yy**2 + xx**2 <= radius**2
    maps = _rotation_maps(2 * half + 1, [sign * step for sign in (1, -1) for step in range(3, 12, 2)])
    votes = 0
    for before, after in itertools.pairwise(patches):
        errors = {deg: np.abs(before[iy, ix] - after)[disk].mean() for deg, (iy, ix) in maps.items()}
        votes += 1 if min(errors, key=errors.get) > 0 else -1
    return 1 if votes > 0 else -1


def motion_class(path: Path) -> int:
    """The toy class read from the frames' motion alone: drift direction, else spin direction."""
    frames = _gray_frames(path)
    masks = _moving_masks(frames)
    dy, dx = _drift(masks)
    if max(abs(dy), abs(dx)) > 0.5:
        if abs(dx) >= abs(dy):
            return TOY_CLASSES.index("moving right" if dx > 0 else "moving left")
        return TOY_CLASSES.index("moving down" if dy > 0 else "moving up")
    spin = _spin_direction(frames, masks)
    return TOY_CLASSES.index("rotating clockwise" if spin > 0 else "rotating counterclockwise")


def appearance_features(frame: np.ndarray) -> np.ndarray:
    """What one frame shows: a 6x6 grid of mean colours plus 8-bin histograms per colour channel."""
    rgb = frame.astype(np.float64)
    grid = [
        cell.mean(axis=(0, 1)) for band in np.array_split(rgb, 6, axis=0) for cell in np.array_split(band, 6, axis=1)
    ]
    hist = [np.histogram(rgb[..., c], bins=8, range=(0, 256))[0] / rgb[..., c].size for c in range(3)]
    return np.concatenate([np.ravel(grid) / 255.0, np.ravel(hist)])


def object_features(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """What one frame shows of the shape: area, position on the torus, mean colour and contrast.

    The shape is found by subtracting the video's background, which is drawn the same way for every class.
    """
    rgb = frame.astype(np.float64)
    mask = np.abs(rgb - background).max(axis=2) > 40
    height, width = mask.shape
    y = 2 * np.pi * _circular_mean(mask, 0, height) / height
    x = 2 * np.pi * _circular_mean(mask, 1, width) / width
    pixels = rgb[mask] / 255.0
    return np.array([mask.mean(), np.sin(y), np.cos(y), np.sin(x), np.cos(x), *pixels.mean(0), pixels.std()])


def leave_one_out_nearest_centroid(features: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a nearest-class-mean classifier on standardised features, each sample left out of its mean."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-9)
    correct = 0
    for i in range(len(z)):
        keep = np.arange(len(z)) != i
        means = np.stack([z[keep & (labels == k)].mean(0) for k in range(len(TOY_CLASSES))])
        correct += int(np.argmin(((means - z[i]) ** 2).sum(1)) == labels[i])
    return correct / len(z)


def test_summary_and_files(toy):
    assert toy["classes"] == list(TOY_CLASSES) and 4 <= len(TOY_CLASSES) <= 6
    assert toy["counts"] == {"train": 48, "val": 18, "test": 18} and toy["num_videos"] == 84
    assert Path(toy["classnames"]).read_text().splitlines() == list(TOY_CLASSES)
    root = Path(toy["out_dir"])
    for split in SPLITS:
        rows = _rows(toy, split)
        assert len(rows) == toy["counts"][split]
        assert all(not Path(p).is_absolute() and (root / p).is_file() for p, _ in rows)
        assert sorted({label for _, label in rows}) == list(range(len(TOY_CLASSES)))  # every class in every split


def test_videos_are_h264_with_the_planned_sizes_and_lengths(toy):
    root = Path(toy["out_dir"])
    specs = _specs(toy)
    assert len({(s["height"], s["width"]) for s in specs.values()}) >= 3  # landscape, portrait and square sizes
    assert len({s["num_frames"] for s in specs.values()}) > 10 and len({s["fps"] for s in specs.values()}) > 1
    for path, spec in specs.items():
        with av.open(str(root / path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            assert (stream.codec_context.height, stream.codec_context.width) == (spec["height"], spec["width"])
            assert stream.average_rate == spec["fps"]
            assert sum(1 for _ in container.decode(video=0)) == spec["num_frames"]
        assert 40 <= spec["num_frames"] <= 72  # at least the toy config's clip span: 8 x 2 frames at 15 fps = 32 at 30


def test_same_seed_same_content_parameters(toy, tmp_path):
    again = make_toy_dataset(tmp_path / "again", num_per_class=8, seed=0)
    assert json.loads(Path(again["meta"]).read_text()) == json.loads(Path(toy["meta"]).read_text())
    for split in SPLITS:
        assert Path(again["csv"][split]).read_text() == Path(toy["csv"][split]).read_text()
    other = plan_toy_dataset(num_per_class=8, seed=1)
    assert [s.center for s in other["train"]] != [
        tuple(s["center"]) for s in json.loads(Path(toy["meta"]).read_text())["videos"]["train"]
    ]


def test_motion_alone_identifies_every_video(toy):
    root = Path(toy["out_dir"])
    for split in SPLITS:
        for path, label in _rows(toy, split):
            found = motion_class(root / path)
            assert found == label, f"{path}: motion says {TOY_CLASSES[found]!r}, label {TOY_CLASSES[label]!r}"


def test_single_frames_carry_no_class_information(toy):
    root = Path(toy["out_dir"])
    specs = _specs(toy)
    rows = _rows(toy, "train") + _rows(toy, "val") + _rows(toy, "test")
    labels = np.array([label for _, label in rows])
    appearance, shapes = [], []  # per video: features of its first, middle and last frame
    for path, _ in rows:
        last = specs[path]["num_frames"] - 1
        frames = _rgb_frames(root / path, [0, last // 2, last])
        background = render_background(ToyVideoSpec(**specs[path])).astype(np.float64)
        appearance.append([appearance_features(f) for f in frames])
        shapes.append([object_features(f, background) for f in frames])
    appearance, shapes = np.array(appearance), np.array(shapes)
    chance = 1 / len(TOY_CLASSES)
    for moment in range(3):
        assert leave_one_out_nearest_centroid(appearance[:, moment], labels) < chance + 0.15
        assert leave_one_out_nearest_centroid(shapes[:, moment], labels) < chance + 0.15
    # the mean middle frame (6x6 colour grid) of each class is the overall mean within the classes' standard error
    grid = appearance[:, 1, :108]
    class_means = np.stack([grid[labels == k].mean(0) for k in range(len(TOY_CLASSES))])
    standard_error = grid.std(0) / math.sqrt(len(rows) / len(TOY_CLASSES))
    assert np.mean(np.abs(class_means - grid.mean(0)) / standard_error) < 1.5


def test_every_class_has_the_same_appearance_parameters():
    plan = plan_toy_dataset(num_per_class=60, seed=3)["train"]
    for key in ("height", "num_frames", "radius", "cell"):
        per_class = [np.mean([getattr(s, key) for s in plan if s.label == k]) for k in range(len(TOY_CLASSES))]
        overall = np.mean([getattr(s, key) for s in plan])
        assert np.allclose(per_class, overall, rtol=0.15), key
    speeds = {k: {math.hypot(*s.velocity) > 0 for s in plan if s.label == k} for k in range(len(TOY_CLASSES))}
    assert [speeds[k] for k in range(len(TOY_CLASSES))] == [{True}] * 4 + [{False}] * 2


def test_default_plan_sizes_and_counts():
    plan = plan_toy_dataset()
    assert DEFAULT_NUM_PER_CLASS == 100
    assert {split: len(specs) for split, specs in plan.items()} == {"train": 600, "val": 204, "test": 204}
    specs = [s for split in SPLITS for s in plan[split]]
    assert {(s.height, s.width) for s in specs} == {(64, 80), (80, 64), (64, 64), (72, 72)}
    assert {s.fps for s in specs} == {15, 24, 25, 30} and min(s.num_frames for s in specs) >= 40


def test_shapes_are_grey_and_move_a_few_pixels_per_sampled_frame():
    """At the toy config's sampling (a frame every 2/15 s) and 64-pixel short side, a shape moves 2.6-5.1 pixels or
    turns 12-24 degrees per sampled frame: visible, and under half the checkerboard's period (one cell), so the
    texture's motion cannot alias to the opposite direction."""
    plan = plan_toy_dataset(num_per_class=60, seed=3)["train"]
    for s in plan:
        dark, light = sorted(c[0] for c in s.colors)
        assert all(len(set(c)) == 1 for c in s.colors) and dark <= 60 and light >= 195
        to_crop = 64 / min(s.height, s.width)
        step = math.hypot(*s.velocity) * s.fps * 2 / 15 * to_crop
        turn = abs(s.spin) * s.fps * 2 / 15
        if s.label < 4:
            assert 2.5 <= step <= 5.2 and step < s.cell * to_crop and turn == 0, s
        else:
            assert 11.9 <= turn <= 24.1 and step == 0, s
        assert 0.2 <= s.radius / min(s.height, s.width) <= 0.28


def test_bad_arguments_fail_before_writing(tmp_path):
    with pytest.raises(ToyDatasetError, match="at least 1 train video"):
        make_toy_dataset(tmp_path / "a", num_per_class=0)
    with pytest.raises(ToyDatasetError, match="even"):
        make_toy_dataset(tmp_path / "b", num_per_class=1, sizes=[(95, 128)])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ToyDatasetError, match="cannot write"):
        make_toy_dataset(blocker / "sub", num_per_class=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_same_seed_gives_byte_identical_videos_in_parallel_and_serial_runs(tmp_path):
    """Two generations of the same seed (2 worker processes, then 1) write the same bytes for every file, so two
    from-scratch runs of the README's first command train on the same data."""
    summary = make_toy_dataset(tmp_path / "par", num_per_class=1, seed=5, workers=2)
    serial = make_toy_dataset(tmp_path / "ser", num_per_class=1, seed=5)
    assert summary["num_frames"] == serial["num_frames"]
    files = sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == 18
    for name in files:
        assert (tmp_path / "par" / name).read_bytes() == (tmp_path / "ser" / name).read_bytes(), name


def test_stale_toy_folders_are_regenerated(tmp_path, monkeypatch):
    """ensure_toy_dataset (run_net with the toy config's data/toy) regenerates a folder written by another generator
    version or without toy_meta.json, and reuses a current one."""
    import mvit_video.data.toy as toy_module
    from mvit_video.config import get_cfg
    from mvit_video.engine.job import ensure_toy_dataset

    monkeypatch.chdir(tmp_path)
    made = make_toy_dataset(tmp_path / "data" / "toy", num_per_class=1, seed=0)
    calls = []
    monkeypatch.setattr(toy_module, "make_toy_dataset", lambda out, **kw: calls.append(out) or made)
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = "data/toy"
    ensure_toy_dataset(cfg)
    assert calls == [] and toy_module.stale_reason("data/toy") is None
    meta_path = Path(made["meta"])
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "generator": toy_module.GENERATOR_VERSION - 1}))
    assert "toy generator version" in toy_module.stale_reason("data/toy")
    ensure_toy_dataset(cfg)
    meta_path.unlink()
    assert "toy_meta.json is missing" in toy_module.stale_reason("data/toy")
    ensure_toy_dataset(cfg)
    assert calls == ["data/toy", "data/toy"]


def test_shape_mask_marks_the_painted_pixels():
    spec = plan_toy_dataset(num_per_class=1)["test"][0]
    background = render_background(spec)
    for t, frame in zip((0, spec.num_frames - 1), (next(render_frames(spec)), list(render_frames(spec))[-1])):
        mask = shape_mask(spec, t)
        changed = (frame != background).any(axis=2)
        assert mask.shape == (spec.height, spec.width)
        assert not (changed & ~mask).any()  # nothing is painted outside the mask
        assert changed[mask].mean() > 0.8  # and the shape's pixels differ from the background almost everywhere
