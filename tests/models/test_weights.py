"""Published weights: the registry's entries, and download + cache + load against a local HTTP server.

The server (127.0.0.1, a random port, a thread) serves generated checkpoints at the registry's URL paths;
``$MVIT_VIDEO_WEIGHTS_MIRROR`` points the same production code at it, ``$MVIT_VIDEO_HOME`` at a temporary cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from mvit_video.models import create_model, list_models, load_pretrained, model_config
from mvit_video.models import download, weights
from mvit_video.models.weights import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, Weights, WeightsError


class _Server:
    """Serves ``files`` (URL path -> bytes) and counts the requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = _Server()
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(download.MIRROR_ENV, srv.url)
    yield srv
    srv.close()


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _entry(file: str, **changes) -> Weights:
    pre = Preprocessing(num_frames=1, crop_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        interpolation="bilinear")  # fmt: skip
    fields = dict(model="mvitv2_s_16x4", tag="test", url=f"https://publisher.example/models/{file}", file_name=file,
                  preprocessing=pre, num_classes=400, accuracy=None, source="test")  # fmt: skip
    return Weights(**{**fields, **changes})


def _cached_files(tmp_path) -> list[str]:
    folder = tmp_path / "cache"
    return sorted(os.listdir(folder)) if folder.exists() else []


# ------------------------------------------------------------------------------------------------------ registry


def test_every_entry_is_a_registered_model_with_complete_preprocessing():
    names = set(list_models())
    entries = [w for ws in weights.WEIGHTS.values() for w in ws]
    assert len(entries) >= 30
    assert len({w.file_name for w in entries}) == len(entries), "two entries share a cache file"
    for w in entries:
        assert w.model in names, w.name
        cfg = model_config(w.model)
        p = w.preprocessing
        assert w.num_classes == cfg.num_classes, w.name
        assert (p.num_frames, p.crop_size, p.crop_size) == tuple(cfg.input_size), w.name
        assert p.resize_size >= p.crop_size and p.test_clips >= 1 and p.test_crops >= 1, w.name
        assert len(p.mean) == len(p.std) == 3 and all(0 < v < 1 for v in p.mean + p.std), w.name
        assert p.interpolation in ("bilinear", "bicubic"), w.name
        if p.num_frames > 1:  # a video protocol says how frames are sampled, one way or the other
            assert (p.sampling_rate is None) != (p.frame_rate is None), w.name
        assert w.url.startswith("https://") and w.source, w.name
        assert w.accuracy is None or (0 < w.accuracy.top1 < 100 and w.accuracy.source), w.name
        if w.check_url_hash:
            assert download.expected_hash_prefix(w.url), w.name
    for model, ws in weights.WEIGHTS.items():
        assert len({w.tag for w in ws}) == len(ws), model


def test_lookup_by_model_tag_and_one_line_errors():
    assert weights.get_weights("mvitv2_s_16x4").tag == "pyslowfast_k400"
    entry = weights.get_weights("mvitv2_s_16x4.torchvision_k400")
    assert entry.url.endswith("mvit_v2_s-ae3be167.pth") and entry.preprocessing.frame_rate == 7.5
    assert weights.list_weights("swin3d_b_32x2") == ["swin3d_b_32x2.torchvision_k400",
                                                     "swin3d_b_32x2.torchvision_k400_in22k"]  # fmt: skip
    with pytest.raises(WeightsError, match="its tags: pyslowfast_k400, torchvision_k400"):
        weights.get_weights("mvitv2_s_16x4", "nope")
    with pytest.raises(WeightsError, match="no published weights for 'ceit_t_in1k'"):
        create_model("ceit_t_in1k", pretrained=True)
    with pytest.raises(WeightsError, match="not both"):
        create_model("deit_ti16_in1k", checkpoint="x.pth", pretrained=True)


# ------------------------------------------------------------------------------------------------------ download


def test_timm_hub_file_downloads_caches_and_loads(server, tmp_path):
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2)
    published = safetensors_torch.save(reference.state_dict())  # the hub's model.safetensors
    entry = weights.get_weights("deit_ti16_in1k")
    server.files[_path(entry.url)] = published

    model = create_model("deit_ti16_in1k", pretrained=True, depth=2)
    assert server.hits == {_path(entry.url): 1}
    cached = download.weights_path(entry)
    assert cached.read_bytes() == published and _cached_files(tmp_path) == [cached.name]
    expected = create_model("deit_ti16_in1k", depth=2)
    load_pretrained(expected, reference.state_dict())
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.pretrained_weights.preprocessing.mean == IMAGENET_MEAN

    create_model("deit_ti16_in1k", weights="timm_fb_in1k", depth=2)  # the cache, no second request
    assert server.hits == {_path(entry.url): 1}


def test_torchvision_hash_prefix_is_checked(server, tmp_path):
    body = _torch_bytes({"w": torch.arange(6.0)})
    digest = hashlib.sha256(body).hexdigest()
    good = _entry(f"tiny-{digest[:8]}.pth", check_url_hash=True)
    server.files[_path(good.url)] = body
    path = download.fetch_weights(good, progress=False)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(6.0))

    bad = _entry("tiny-deadbeef.pth", check_url_hash=True)
    server.files[_path(bad.url)] = body
    with pytest.raises(WeightsError) as info:
        download.fetch_weights(bad, progress=False)
    message = str(info.value)
    assert "\n" not in message and "tiny-deadbeef.pth" in message and "deadbeef" in message and digest in message
    assert _cached_files(tmp_path) == [path.name]  # nothing of the bad download is left


def test_wrong_sha256_errors_in_one_line_and_leaves_no_file(server, tmp_path):
    body = _torch_bytes({"w": torch.zeros(3)})
    entry = _entry("model.pth", sha256="0" * 64)
    server.files[_path(entry.url)] = body
    with pytest.raises(WeightsError) as info:
        download.fetch_weights(entry, progress=False)
    message = str(info.value)
    assert "\n" not in message and "model.pth" in message and "0" * 64 in message
    assert hashlib.sha256(body).hexdigest() in message
    assert _cached_files(tmp_path) == []


def test_unreachable_server_names_url_and_where_to_place_the_file(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}")
    entry = weights.get_weights("mvitv2_s_16x4")
    with pytest.raises(WeightsError) as info:
        download.fetch_weights(entry, progress=False)
    message = str(info.value)
    url = f"http://127.0.0.1:{port}/pyslowfast/model_zoo/mvitv2/pysf_video_models/{entry.url.rsplit('/', 1)[1]}"
    assert "\n" not in message and url in message and str(download.weights_path(entry)) in message
    assert _cached_files(tmp_path) == []

    download.weights_path(entry).write_bytes(b"placed by hand")  # offline use: the cached file, no network
    assert download.fetch_weights(entry).read_bytes() == b"placed by hand"


def test_missing_file_is_one_line_with_the_http_status(server, tmp_path):
    with pytest.raises(WeightsError, match="HTTP 404") as info:
        download.fetch_weights(_entry("gone.pth"), progress=False)
    assert "\n" not in str(info.value) and _cached_files(tmp_path) == []


def test_without_safetensors_the_bin_copy_is_fetched(server, monkeypatch):
    monkeypatch.setattr(download, "has_safetensors", lambda: False)
    entry = weights.get_weights("videomae_b_16x4")
    body = _torch_bytes({"w": torch.ones(2)})
    server.files[_path(entry.fallback_url)] = body
    path = download.fetch_weights(entry, progress=False)
    assert path.name.endswith("--pytorch_model.bin") and path.read_bytes() == body
    assert list(server.hits) == [_path(entry.fallback_url)]
    only_safetensors = _entry("x.safetensors", url="https://publisher.example/x.safetensors")
    with pytest.raises(WeightsError, match="pip install safetensors"):
        download.fetch_weights(only_safetensors)


def test_a_hub_repo_without_safetensors_falls_back_to_the_bin_file(server, tmp_path):
    entry = weights.get_weights("levit_128s_in1k")
    body = _torch_bytes({"w": torch.ones(1)})
    server.files[_path(entry.fallback_url)] = body  # model.safetensors is a 404
    path = download.fetch_weights(entry, progress=False)
    assert path.read_bytes() == body and _cached_files(tmp_path) == [path.name]
    assert server.hits == {_path(entry.url): 1, _path(entry.fallback_url): 1}
    assert download.fetch_weights(entry) == path and download.weights_path(entry) == path


def test_config_checkpoint_path_accepts_published_weights(server):
    timm = pytest.importorskip("timm")
    from mvit_video.config import load_config
    from mvit_video.engine.init_checkpoint import init_from_checkpoint
    from mvit_video.engine.trainer import load_test_model
    from mvit_video.models import build_model
    from tests.conftest import ROOT

    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2)
    entry = weights.get_weights("deit_ti16_in1k")
    server.files[_path(entry.url)] = pytest.importorskip("safetensors.torch").save(reference.state_dict())
    opts = ["VIT.DEPTH", "2", "TRAIN.CHECKPOINT_FILE_PATH", "weights:deit_ti16_in1k.timm_fb_in1k"]
    cfg = load_config(str(ROOT / "configs/IN1K/DEIT_TI16.yaml"), opts)
    model = build_model(cfg)
    assert init_from_checkpoint(cfg, model, None, None) == 0
    torch.testing.assert_close(model.cls_token, reference.cls_token, rtol=0, atol=0)
    tested = load_test_model(cfg, "weights:deit_ti16_in1k")  # TEST.CHECKPOINT_FILE_PATH: the cached file
    torch.testing.assert_close(tested.cls_token, reference.cls_token, rtol=0, atol=0)
    assert server.hits == {_path(entry.url): 1}
