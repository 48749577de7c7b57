"""A toy video dataset whose classes can only be told apart by motion.

Every video shows one shape (disc, square or triangle with a checkerboard of a dark and a light grey) over a static
grey background of smooth noise with fine grain. The shape either translates (left, right, up, down) or spins in
place (clockwise, counter-clockwise). Nothing in a single frame depends on the class:

- size, frame count, frame rate, grey levels, shape, texture and orientation are drawn the same way for every class;
- the picture is a torus: the shape wraps around the edges, so its position is uniform over the frame at every
  time step for translating and spinning shapes alike (a translating shape never "starts on the left").

Designed to be learnt from scratch in minutes on a CPU: small pictures (64-80 pixels, near the toy config's 64-pixel
crops), a large shape (radius 20-28% of the short side), motion of a few pixels per sampled frame but under half
the checkerboard's period (so the texture's motion never aliases to the opposite direction), and grey levels only:
with random colours for the shape and the background, small video models stayed at chance for far longer.

The videos are real H.264 files (PyAV, libx264, yuv420p) listed in PySlowFast CSVs (``train.csv``, ``val.csv``,
``test.csv``: ``relative/path label`` per line), so ``DATA.PATH_TO_DATA_DIR`` and ``DATA.PATH_PREFIX`` can both be the
output folder.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .encode import write_video

TOY_CLASSES = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counterclockwise",
)
SPLITS = ("train", "val", "test")
# (height, width): close to the toy config's 64-pixel crops, so decoding and resizing are cheap
DEFAULT_SIZES = ((64, 80), (80, 64), (64, 64), (72, 72))
DEFAULT_FPS = (15, 24, 25, 30)
# inclusive range; 40 frames cover the toy config's clip span (8 frames x stride 2 at 15 fps = 32 frames at 30 fps)
DEFAULT_NUM_FRAMES = (40, 72)
DEFAULT_NUM_PER_CLASS = 100  # training videos per class: 600 in all, generated in about 20 s
# Bumped whenever rendering or encoding changes what a seed produces; recorded in toy_meta.json, so a folder written
# by another version is regenerated rather than reused (3: deterministic x264, byte-identical videos per seed).
GENERATOR_VERSION = 3
META_FILE = "toy_meta.json"
SHAPES = ("disc", "square", "triangle")

# (vy, vx) unit directions of the translating classes, in picture coordinates (y points down)
_DIRECTIONS = {0: (0.0, -1.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (1.0, 0.0)}
# spin sign of the rotating classes: a positive angle turns clockwise on screen
_SPINS = {4: 1.0, 5: -1.0}
# Speeds are per second, so what a clip shows does not depend on the frame rate. At the toy config's sampling
# (a frame every 2/15 s) and 64-pixel short side a shape moves 2.6-5.1 pixels or turns 12-24 degrees per sampled frame,
# less than half the checkerboard's period (2 cells): the texture's motion cannot alias to the opposite direction.
_SPEED_RANGE = (0.3, 0.6)  # short sides per second
_SPIN_RANGE = (90.0, 180.0)  # degrees per second
_RADIUS_RANGE = (0.2, 0.28)  # of the short side
_CELL_RANGE = (0.5, 0.75)  # of the radius
_DARK_LEVEL, _LIGHT_LEVEL = (0, 60), (195, 255)  # grey levels of the checkerboard (inclusive)
_BACKGROUND_LEVEL = (112.0, 144.0)  # mean grey level of the background


class ToyDatasetError(UserError, ValueError):
    """Arguments or an output folder that cannot make a toy dataset; the message is one line."""


@dataclass(frozen=True)
class ToyVideoSpec:
    """Everything needed to render one toy video (JSON-serialisable).

    Args:
        path: file path relative to the dataset folder.
        label: index into ``TOY_CLASSES``.
        height, width: picture size in pixels (even).
        num_frames, fps: length and frame rate.
        shape: one of ``SHAPES``; radius: its circumradius in pixels.
        cell: checkerboard cell size in pixels.
        colors: two RGB colours of the checkerboard (grey levels).
        center: (y, x) position at frame 0; velocity: (vy, vx) pixels per frame (0 for spinning classes).
        angle: orientation at frame 0 in degrees; spin: degrees per frame (0 for translating classes).
        texture_seed: seed of the background noise.
    """

    path: str
    label: int
    height: int
    width: int
    num_frames: int
    fps: int
    shape: str
    radius: float
    cell: float
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    center: tuple[float, float]
    velocity: tuple[float, float]
    angle: float
    spin: float
    texture_seed: int


def sample_video_spec(
    rng: np.random.Generator,
    label: int,
    path: str,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    fps_choices: Sequence[int] = DEFAULT_FPS,
    num_frames: tuple[int, int] = DEFAULT_NUM_FRAMES,
) -> ToyVideoSpec:
    """Draws one video's parameters; only ``velocity`` and ``spin`` depend on ``label``."""
    height, width = (int(v) for v in sizes[rng.integers(len(sizes))])
    radius = float(rng.uniform(*_RADIUS_RANGE) * min(height, width))
    colors = _checker_colors(rng)
    center = (float(rng.uniform(0, height)), float(rng.uniform(0, width)))
    fps = int(fps_choices[rng.integers(len(fps_choices))])
    speed = float(rng.uniform(*_SPEED_RANGE)) * min(height, width) / fps  # pixels per frame
    spin = float(rng.uniform(*_SPIN_RANGE)) / fps  # degrees per frame
    direction = _DIRECTIONS.get(label, (0.0, 0.0))
    return ToyVideoSpec(
        path=path,
        label=label,
        height=height,
        width=width,
        num_frames=int(rng.integers(num_frames[0], num_frames[1] + 1)),
        fps=fps,
        shape=SHAPES[rng.integers(len(SHAPES))],
        radius=round(radius, 3),
        cell=round(float(rng.uniform(*_CELL_RANGE) * radius), 3),
        colors=colors,
        center=(round(center[0], 3), round(center[1], 3)),
        velocity=(round(direction[0] * speed, 4), round(direction[1] * speed, 4)),
        angle=round(float(rng.uniform(0, 360)), 3),
        spin=round(_SPINS.get(label, 0.0) * spin, 4),
        texture_seed=int(rng.integers(2**31)),
    )


def _checker_colors(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A dark and a light grey level (as RGB), in random order: the texture (and its motion) is always visible."""
    dark, light = (int(rng.integers(*levels, endpoint=True)) for levels in (_DARK_LEVEL, _LIGHT_LEVEL))
    first, second = (dark, light) if rng.random() < 0.5 else (light, dark)
    return (first,) * 3, (second,) * 3


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Bilinearly interpolated random grid: (height, width, 1) floats in [0, 1]."""
    grid = rng.random((int(height / scale) + 2, int(width / scale) + 2, 1))
    y, x = np.arange(height) / scale, np.arange(width) / scale
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_background(spec: ToyVideoSpec) -> np.ndarray:
    """The static background of a video: (H, W, 3) uint8 grey smooth noise with fine grain."""
    rng = np.random.default_rng(spec.texture_seed)
    base = rng.uniform(*_BACKGROUND_LEVEL)
    contrast = rng.uniform(40, 90)
    noise = _smooth_noise(rng, spec.height, spec.width, scale=float(rng.uniform(6, 14)))
    grain = rng.normal(0, 8, (spec.height, spec.width, 1))
    grey = np.clip(base + contrast * (noise - 0.5) * 2 + grain, 0, 255).astype(np.uint8)
    return np.repeat(grey, 3, axis=2)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Inside-test in object coordinates (u right, v down, origin at the centre)."""
    if shape == "disc":
        return u * u + v * v <= radius * radius
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= radius * 0.75
    inside = np.ones(u.shape, dtype=bool)
    for deg in (-90.0, 30.0, 150.0):  # outward normals of an equilateral triangle (inradius = radius / 2)
        inside &= u * math.cos(math.radians(deg)) + v * math.sin(math.radians(deg)) <= radius / 2
    return inside


def _object_pixels(spec: ToyVideoSpec, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels the shape covers at frame ``t`` (rows, cols, wrapped around the edges) and each one's checkerboard
    cell parity (0 or 1)."""
    cy, cx = spec.center[0] + spec.velocity[0] * t, spec.center[1] + spec.velocity[1] * t
    theta = math.radians(spec.angle + spec.spin * t)
    reach = math.ceil(spec.radius) + 1
    iy, ix = round(cy), round(cx)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1].astype(np.float64)
    py, px = dy + iy - cy, dx + ix - cx
    # picture offset -> object coordinates: rotate by -theta
    u = math.cos(theta) * px + math.sin(theta) * py
    v = -math.sin(theta) * px + math.cos(theta) * py
    inside = _shape_mask(spec.shape, u, v, spec.radius)
    checker = (np.floor(u / spec.cell) + np.floor(v / spec.cell)).astype(int) % 2
    rows = (dy[inside].astype(int) + iy) % spec.height
    cols = (dx[inside].astype(int) + ix) % spec.width
    return rows, cols, checker[inside]


def _draw_object(frame: np.ndarray, spec: ToyVideoSpec, t: int) -> None:
    """Paints the shape at its frame-``t`` pose onto ``frame`` in place, wrapping around the edges."""
    rows, cols, checker = _object_pixels(spec, t)
    frame[rows, cols] = np.asarray(spec.colors, dtype=np.uint8)[checker]


def shape_mask(spec: ToyVideoSpec, t: int) -> np.ndarray:
    """Where the shape is at frame ``t``: (height, width) bool, True on the pixels ``render_frames`` paints with
    the shape (wrapping around the edges as the shape does)."""
    mask = np.zeros((spec.height, spec.width), dtype=bool)
    rows, cols, _ = _object_pixels(spec, t)
    mask[rows, cols] = True
    return mask


def render_frames(spec: ToyVideoSpec) -> Iterator[np.ndarray]:
    """Yields the video's RGB frames, (H, W, 3) uint8, in order."""
    background = render_background(spec)
    for t in range(spec.num_frames):
        frame = background.copy()
        _draw_object(frame, spec, t)
        yield frame


def write_toy_video(spec: ToyVideoSpec, root: str | os.PathLike) -> int:
    """Renders and encodes one video under ``root``; returns its frame count."""
    path = Path(root) / spec.path
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, render_frames(spec), spec.fps)


def plan_toy_dataset(
    num_per_class: int = DEFAULT_NUM_PER_CLASS,
    seed: int = 0,
    val_per_class: int | None = None,
    test_per_class: int | None = None,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    fps_choices: Sequence[int] = DEFAULT_FPS,
    num_frames: tuple[int, int] = DEFAULT_NUM_FRAMES,
) -> dict[str, list[ToyVideoSpec]]:
    """The specs of every video per split; deterministic in ``seed`` (each video has its own random stream)."""
    per_split = _per_split_counts(num_per_class, val_per_class, test_per_class)
    _check_choices(sizes, fps_choices, num_frames)
    plan = {}
    for split_index, split in enumerate(SPLITS):
        specs = []
        for i in range(per_split[split] * len(TOY_CLASSES)):
            rng = np.random.default_rng([seed, split_index, i])
            specs.append(
                sample_video_spec(
                    rng, i % len(TOY_CLASSES), f"{split}/{split}_{i:04d}.mp4", sizes, fps_choices, num_frames
                )
            )
        plan[split] = specs
    return plan


def _per_split_counts(num_per_class: int, val_per_class: int | None, test_per_class: int | None) -> dict[str, int]:
    default_eval = max(1, (num_per_class + 2) // 3)
    counts = {
        "train": num_per_class,
        "val": default_eval if val_per_class is None else val_per_class,
        "test": default_eval if test_per_class is None else test_per_class,
    }
    for split, n in counts.items():
        if not isinstance(n, int) or n < 1:
            raise ToyDatasetError(f"toy dataset needs at least 1 {split} video per class, got {n!r}")
    return counts


def _check_choices(sizes: Sequence[tuple[int, int]], fps_choices: Sequence[int], num_frames: tuple[int, int]) -> None:
    if not sizes or any(h < 16 or w < 16 or h % 2 or w % 2 for h, w in sizes):
        raise ToyDatasetError(f"toy video sizes must be even (height, width) pairs of at least 16, got {list(sizes)}")
    if not fps_choices or any(f <= 0 for f in fps_choices):
        raise ToyDatasetError(f"toy frame rates must be positive, got {list(fps_choices)}")
    if not 2 <= num_frames[0] <= num_frames[1]:
        raise ToyDatasetError(f"toy frame-count range must satisfy 2 <= min <= max, got {tuple(num_frames)}")


def _prepare_out_dir(out_dir: Path) -> None:
    """Creates the folder and proves it writable before any video is rendered."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ToyDatasetError(f"cannot write the toy dataset to {out_dir}: {e.strerror or e}; choose a writable folder")


def _write_index_files(out_dir: Path, plan: dict[str, list[ToyVideoSpec]], seed: int) -> dict[str, str]:
    csvs = {}
    for split, specs in plan.items():
        csvs[split] = str(out_dir / f"{split}.csv")
        Path(csvs[split]).write_text("".join(f"{s.path} {s.label}\n" for s in specs))
    (out_dir / "classnames.txt").write_text("".join(f"{name}\n" for name in TOY_CLASSES))
    meta = {"generator": GENERATOR_VERSION, "seed": seed, "classes": list(TOY_CLASSES),
            "videos": {k: [asdict(s) for s in v] for k, v in plan.items()}}  # fmt: skip
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return csvs


def make_toy_dataset(
    out_dir: str | os.PathLike,
    num_per_class: int = DEFAULT_NUM_PER_CLASS,
    seed: int = 0,
    *,
    val_per_class: int | None = None,
    test_per_class: int | None = None,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    fps_choices: Sequence[int] = DEFAULT_FPS,
    num_frames: tuple[int, int] = DEFAULT_NUM_FRAMES,
    workers: int = 1,
) -> dict:
    """Writes the toy dataset: H.264 videos, ``{train,val,test}.csv``, ``classnames.txt`` and ``toy_meta.json``.

    Args:
        out_dir: dataset folder (created); CSV paths are relative to it.
        num_per_class: training videos per class.
        seed: the same seed gives the same videos, byte for byte (parameters in ``toy_meta.json``).
        val_per_class, test_per_class: videos per class of the other splits; default
            ``max(1, (num_per_class + 2) // 3)``.
        sizes: (height, width) choices, even; fps_choices: frame-rate choices; num_frames: (min, max) frame count.
        workers: processes that render and encode in parallel (1: in this process).

    Returns:
        Summary: ``out_dir``, ``classes``, ``counts`` (videos per split), ``csv`` (split -> path), ``classnames``,
        ``meta``, ``num_videos``, ``num_frames`` and ``seconds``.
    """
    start = time.perf_counter()
    plan = plan_toy_dataset(num_per_class, seed, val_per_class, test_per_class, sizes, fps_choices, num_frames)
    out = Path(out_dir)
    _prepare_out_dir(out)
    specs = [s for split in SPLITS for s in plan[split]]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            frame_counts = list(pool.map(write_toy_video, specs, [out] * len(specs), chunksize=4))
    else:
        frame_counts = [write_toy_video(s, out) for s in specs]
    csvs = _write_index_files(out, plan, seed)
    return {
        "out_dir": str(out),
        "classes": list(TOY_CLASSES),
        "counts": {split: len(plan[split]) for split in SPLITS},
        "csv": csvs,
        "classnames": str(out / "classnames.txt"),
        "meta": str(out / META_FILE),
        "num_videos": len(specs),
        "num_frames": sum(frame_counts),
        "seconds": round(time.perf_counter() - start, 2),
    }


def stale_reason(out_dir: str | os.PathLike) -> str | None:
    """Why the toy dataset in ``out_dir`` cannot be reused as it is (missing, or written by another generator
    version), or None when it is current."""
    out = Path(out_dir)
    if not (out / "train.csv").exists():
        return "train.csv not found"
    try:
        version = json.loads((out / META_FILE).read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        return f"{META_FILE} is missing or unreadable"
    if version != GENERATOR_VERSION:
        return f"it was written by toy generator version {version}, this is version {GENERATOR_VERSION}"
    return None


def format_summary(summary: dict) -> str:
    """One line describing a ``make_toy_dataset`` result."""
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    return (
        f"toy dataset: {len(summary['classes'])} classes, {summary['num_videos']} videos ({counts}), "
        f"{summary['num_frames']} frames in {summary['seconds']:.1f} s -> {summary['out_dir']}"
    )
