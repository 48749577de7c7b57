"""load_pretrained: formats, safe loading, head handling, interpolation and 2-D -> 3-D inflation."""

from __future__ import annotations

import argparse

import pytest
import torch

from mvit_video.models import CheckpointError, MViT, create_model, load_pretrained
from tests.models.test_mvit import tiny_v1, tiny_v2


def _clip(frames: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def test_pyslowfast_pyth_round_trip(tmp_path):
    torch.manual_seed(0)
    source = MViT(tiny_v2()).eval()
    path = tmp_path / "checkpoint_epoch_00010.pyth"
    torch.save({"epoch": 10, "model_state": source.state_dict(), "cfg": "MVIT:\n  DEPTH: 3\n"}, path)
    torch.manual_seed(1)
    target = MViT(tiny_v2()).eval()
    report = load_pretrained(target, path)
    assert report.source_format == "slowfast"
    assert report.missing == [] and report.unexpected == [] and report.adapted == []
    torch.testing.assert_close(target(_clip()), source(_clip()), rtol=0, atol=0)


def test_own_checkpoint_and_ddp_prefix():
    source = MViT(tiny_v2())
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    target = MViT(tiny_v2())
    report = load_pretrained(target, {"model_state": state, "mvit_video_version": "0.1.0"})
    assert report.source_format == "mvit_video" and report.missing == []
    assert torch.equal(target.blocks[1].attn.rel_pos_t, source.blocks[1].attn.rel_pos_t)


def test_layer_scale_and_norm_stem_round_trip():
    source = MViT(tiny_v2(layer_scale_init_value=0.1, norm_stem=True))
    target = MViT(tiny_v2(layer_scale_init_value=0.5, norm_stem=True))
    report = load_pretrained(target, {"model_state": source.state_dict(), "mvit_video_version": "0.1.0"})
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(target.blocks[0].gamma_1, torch.full((16,), 0.1))


def test_weights_only_refuses_pickled_objects_with_one_clear_line(tmp_path):
    path = tmp_path / "deit_style.pth"
    torch.save({"model": MViT(tiny_v2()).state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="trust_checkpoint=True") as info:
        load_pretrained(MViT(tiny_v2()), path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    report = load_pretrained(MViT(tiny_v2()), path, trust_checkpoint=True)
    assert report.missing == []


def _not_checkpoints(tmp_path) -> dict:
    """Files users pass by mistake, each with a phrase the one-line error must contain."""
    good = tmp_path / "good.pyth"
    torch.save({"model_state": MViT(tiny_v2()).state_dict()}, good)
    data = good.read_bytes()
    files = {
        "train.csv": (b"videos/a.mp4 0\nvideos/b.mp4 1\n", "starts with the text 'videos/a.mp4 0'"),
        "empty.pyth": (b"", "empty (0 bytes)"),
        "half.pyth": (data[: len(data) // 2], "truncated"),
        "noise.bin": (bytes(range(256)) * 4, "not a PyTorch checkpoint"),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "a_folder").mkdir()
    cases = {tmp_path / name: phrase for name, (_, phrase) in files.items()}
    cases[tmp_path / "a_folder"] = "a folder, not a checkpoint"
    cases[tmp_path / "nope.pyth"] = "not found"
    return cases


def test_files_that_are_not_checkpoints_are_one_line(tmp_path):
    for path, phrase in _not_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_pretrained(MViT(tiny_v2()), path)
        message = str(info.value)
        assert str(path) in message and phrase in message and "\n" not in message, message


def test_safetensors_files_load(tmp_path):
    from safetensors.torch import save_file

    source = MViT(tiny_v2())
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = MViT(tiny_v2())
    report = load_pretrained(target, path)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(target.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)


def test_class_count_mismatch_errors_or_reinitialises():
    source = MViT(tiny_v2(num_classes=5))
    target = MViT(tiny_v2(num_classes=9))
    head_before = target.head.projection.weight.clone()
    with pytest.raises(CheckpointError, match="5 classes, the model 9"):
        load_pretrained(target, source.state_dict())
    report = load_pretrained(target, source.state_dict(), num_classes_mismatch="reinit")
    assert report.head_reinitialized and report.missing == []
    assert torch.equal(target.head.projection.weight, head_before)
    assert torch.equal(target.blocks[2].mlp.fc1.weight, source.blocks[2].mlp.fc1.weight)


def test_create_model_with_checkpoint_and_new_class_count(tmp_path):
    path = tmp_path / "ckpt.pyth"
    torch.save({"model_state": create_model("mvitv2_t_in1k").state_dict()}, path)
    model = create_model("mvitv2_t_in1k", num_classes=10, checkpoint=str(path))
    assert model.head.projection.out_features == 10


def test_another_architecture_is_one_clear_line():
    with pytest.raises(CheckpointError, match="another architecture") as info:
        load_pretrained(MViT(tiny_v2(embed_dim=24)), MViT(tiny_v2()).state_dict())
    assert "\n" not in str(info.value)


def test_unknown_format_names_keys():
    with pytest.raises(CheckpointError, match="layer1.conv.weight"):
        load_pretrained(MViT(tiny_v2()), {"layer1.conv.weight": torch.zeros(3)})


def test_rel_pos_tables_interpolated_to_new_input_size():
    source = MViT(tiny_v2())  # 4x32x32 -> spatial tables sized for 16x16 tokens
    target = MViT(tiny_v2(input_size=(8, 64, 64)))
    report = load_pretrained(target, source.state_dict())
    # 8x8 query tokens at 32 px -> 16x16 at 64 px: 2 * 16 - 1 entries
    assert "blocks.0.attn.rel_pos_h: [15, 16] -> [31, 16]" in report.adapted
    assert "blocks.0.attn.rel_pos_t: [3, 16] -> [7, 16]" in report.adapted
    assert report.missing == []
    assert torch.isfinite(target(_clip(8, 64))).all()


def test_absolute_position_embeddings_interpolated():
    source = MViT(tiny_v1())
    with torch.no_grad():
        source.pos_embed_spatial.fill_(0.3)
        source.pos_embed_temporal.copy_(torch.tensor([[[1.0] * 16, [3.0] * 16]]))
    target = MViT(tiny_v1(input_size=(8, 48, 48)))
    report = load_pretrained(target, source.state_dict())
    assert "pos_embed_spatial: [1, 64, 16] -> [1, 144, 16]" in report.adapted
    torch.testing.assert_close(target.pos_embed_spatial, torch.full((1, 144, 16), 0.3))
    # 2 -> 4 time steps, linear with half-pixel centres: 1, 1.5, 2.5, 3
    torch.testing.assert_close(target.pos_embed_temporal[0, :, 0], torch.tensor([1.0, 1.5, 2.5, 3.0]))


def _joint_pos_model(frames: int, size: int, cls_embed: bool = True) -> MViT:
    return MViT(tiny_v2(input_size=(frames, size, size), use_abs_pos=True, rel_pos_spatial=False,
                        rel_pos_temporal=False, cls_embed=cls_embed))  # fmt: skip


def _per_frame_means(model: MViT) -> list[float]:
    t, h, w = model.patch_dims
    grid = model.pos_embed[0, int(model.cls_token is not None) :].reshape(t, h * w, -1)
    return grid.mean(dim=(1, 2)).tolist()


def test_joint_position_embedding_resized_on_its_real_grid():
    """A (4, 2, 2) joint embedding (16 positions: a perfect square) whose value is the frame index, into a model
    with (4, 3, 3) tokens: each frame keeps its index (it is not taken for a 4x4 image)."""
    source = _joint_pos_model(8, 8)  # tokens (4, 2, 2)
    with torch.no_grad():
        source.pos_embed[0, 1:] = torch.arange(4.0).repeat_interleave(4)[:, None]
    target = _joint_pos_model(8, 12)  # tokens (4, 3, 3)
    report = load_pretrained(target, source.state_dict())
    assert "pos_embed: [1, 17, 16] -> [1, 37, 16]" in report.adapted
    assert _per_frame_means(target) == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-6)


def test_joint_position_embedding_grid_read_from_the_checkpoint_config():
    """The same 16 positions saved by an image model (1 x 4 x 4 grid, recorded in the checkpoint's config) are
    one frame: every frame of the video model gets the same embedding."""
    from mvit_video.config import get_cfg

    image = MViT(tiny_v2(input_size=(1, 16, 16), patch_2d=True, patch_kernel=(7, 7), patch_stride=(4, 4),
                         patch_padding=(3, 3), pool_kvq_kernel=(1, 3, 3), use_abs_pos=True, rel_pos_spatial=False,
                         rel_pos_temporal=False))  # fmt: skip
    with torch.no_grad():
        image.pos_embed[0, 1:] = torch.arange(16.0)[:, None]
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = 1, 16
    cfg.MVIT.PATCH_2D, cfg.MVIT.PATCH_STRIDE = True, [4, 4]
    target = _joint_pos_model(8, 12)  # tokens (4, 3, 3)
    load_pretrained(target, {"model_state": image.state_dict(), "cfg": cfg.dump(), "epoch": 1})
    means = _per_frame_means(target)
    assert means == pytest.approx([means[0]] * 4, abs=1e-6) and means[0] == pytest.approx(7.5, abs=0.5)


def test_infer_grid_prefers_the_models_frames_then_its_clip_length():
    from mvit_video.models.adapt import infer_grid

    assert infer_grid(8 * 56 * 56, (16, 56, 56)) == (8, 56, 56)  # a 16-frame checkpoint in a 32-frame model
    assert infer_grid(4 * 2 * 2, (4, 3, 3)) == (4, 2, 2)
    assert infer_grid(14 * 14, (8, 16, 16)) == (1, 14, 14)  # an image checkpoint
    with pytest.raises(ValueError, match="cannot tell"):
        infer_grid(7 * 5, (4, 3, 3))


def test_pytorchvideo_numerics_are_reported_in_the_load_line(caplog):
    """Loading pytorchvideo weights changes the model's pooling-norm epsilon: the report and the log say so."""
    from tests.models.test_convert import pytorchvideo_mvit_b_16x4

    theirs = pytorchvideo_mvit_b_16x4(spatial_size=32, temporal_size=4)
    ours = create_model("mvitv1_b_16x4", input_size=(4, 32, 32))
    with caplog.at_level("INFO", logger="mvit_video.models.pretrained"):
        report = load_pretrained(ours, theirs.state_dict())
    assert report.model_changes == ["pooling LayerNorm eps 1e-06 -> 1e-05, as pytorchvideo computes"]
    assert any("model changed: pooling LayerNorm eps 1e-06 -> 1e-05" in r.getMessage() for r in caplog.records)


def _image_and_video_pair():
    image = tiny_v2(
        patch_2d=True, patch_kernel=(7, 7), patch_stride=(4, 4), patch_padding=(3, 3), input_size=(1, 32, 32),
        pool_kvq_kernel=(1, 3, 3), rel_pos_temporal=False, cls_embed=False,
    )  # fmt: skip
    video = tiny_v2(cls_embed=False)
    return image, video


def test_centre_inflation_keeps_static_clip_outputs_identical():
    image_cfg, video_cfg = _image_and_video_pair()
    torch.manual_seed(0)
    image_model = MViT(image_cfg).double().eval()
    video_model = MViT(video_cfg).double().eval()
    report = load_pretrained(video_model, image_model.state_dict(), inflate="centre")
    assert "patch_embed.proj.weight: [16, 3, 7, 7] -> [16, 3, 3, 7, 7]" in report.adapted
    assert "blocks.1.attn.pool_q.weight: [16, 1, 1, 3, 3] -> [16, 1, 3, 3, 3]" in report.adapted
    assert report.missing == []
    assert [n for n in report.adapted if "zeros" in n] == [f"blocks.{i}.attn.rel_pos_t: zeros (not in the checkpoint)" for i in range(3)]
    frame = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    static_clip = frame.unsqueeze(2).repeat(1, 1, 4, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(video_model(static_clip), image_model(frame), rtol=1e-10, atol=1e-10)


def test_average_inflation_spreads_kernel_over_time():
    image_cfg, video_cfg = _image_and_video_pair()
    image_model, video_model = MViT(image_cfg), MViT(video_cfg)
    load_pretrained(video_model, image_model.state_dict())
    inflated = video_model.patch_embed.proj.weight
    torch.testing.assert_close(inflated.sum(2), image_model.patch_embed.proj.weight)
    torch.testing.assert_close(inflated[:, :, 0], inflated[:, :, 2])
