"""Checkpoints: round trip of the training state, weights-only loading, atomic writes, finding the latest."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mvit_video.config import get_cfg
from mvit_video.engine import checkpoint as ckpt
from mvit_video.engine.checkpoint import (
    checkpoint_path,
    has_checkpoint,
    latest_checkpoint,
    load_training_state,
    save_checkpoint,
)
from mvit_video.models import CheckpointError, MViT, load_pretrained
from tests.models.test_mvit import tiny_v2


def _setup(seed: int, **changes) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """A tiny model after one AdamW step (so the optimizer has moments) and a CPU GradScaler."""
    torch.manual_seed(seed)
    model = MViT(tiny_v2(**changes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    _train_step(model, optimizer, scaler)
    return model, optimizer, scaler


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    loss = model(x).square().mean()
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3), float(np.random.randn())


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_checkpoint_path_uses_pyslowfast_naming(tmp_path):
    assert checkpoint_path(tmp_path, 10) == os.path.join(str(tmp_path), "checkpoints", "checkpoint_epoch_00010.pyth")


def test_round_trip_restores_weights_optimizer_scaler_and_rng(tmp_path):
    model, optimizer, scaler = _setup(seed=0)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state, which must survive too
    path = save_checkpoint(
        tmp_path, 4, model, optimizer, get_cfg(), scaler=scaler,
        scheduler_state={"last_lr": 0.5}, sampler_state={"epoch": 4, "offset": 12}, extra={"best_top1": 71.5},
    )  # fmt: skip
    expected = _draws()
    assert path == checkpoint_path(tmp_path, 5)

    random.seed(1)  # move every generator on (_setup reseeds torch)
    np.random.seed(1)
    _draws()
    restored, restored_opt, _ = _setup(seed=1)
    restored_scaler = torch.amp.GradScaler("cpu")
    info = load_training_state(path, restored, restored_opt, restored_scaler)

    got = _draws()
    assert got[:2] == expected[:2] and got[3] == expected[3]
    assert torch.equal(got[2], expected[2])
    assert info["epoch"] == 4 and info["start_epoch"] == 5
    assert info["sampler_state"] == {"epoch": 4, "offset": 12} and info["scheduler_state"] == {"last_lr": 0.5}
    assert info["extra"] == {"best_top1": 71.5} and info["cfg"] == get_cfg().dump()
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    first = next(iter(model.parameters()))
    moments = optimizer.state[first], restored_opt.state[next(iter(restored.parameters()))]
    assert torch.equal(moments[0]["exp_avg"], moments[1]["exp_avg"])
    assert torch.equal(moments[0]["exp_avg_sq"], moments[1]["exp_avg_sq"])
    assert restored_scaler.state_dict() == scaler.state_dict() and restored_scaler.get_scale() == 2.0**11

    _train_step(model, optimizer, scaler)
    _train_step(restored, restored_opt, restored_scaler)
    assert torch.equal(first, next(iter(restored.parameters())))  # training continues identically


def test_file_loads_weights_only_with_pyslowfast_keys(tmp_path, monkeypatch):
    model, optimizer, scaler = _setup(seed=0)
    # Pretend CUDA is there so its RNG states (a list of uint8 tensors) are saved too.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.get_rng_state(), torch.get_rng_state()])
    path = save_checkpoint(tmp_path, 9, model, optimizer, get_cfg(), scaler=scaler)

    data = torch.load(path, map_location="cpu", weights_only=True)
    assert {"epoch", "model_state", "optimizer_state", "cfg", "scaler_state"} <= set(data)
    assert data["mvit_video_version"] == "0.1.0" and data["epoch"] == 9
    assert "sampler_state" not in data and "extra" not in data
    assert data["cfg"] == get_cfg().dump() and isinstance(data["cfg"], str)
    assert set(data["model_state"]) == set(model.state_dict())
    assert all(v.device.type == "cpu" for v in data["model_state"].values())
    rng = data["rng_state"]
    assert set(rng) == {"python", "numpy", "torch", "cuda"} and len(rng["cuda"]) == 2
    assert rng["numpy"]["keys"].dtype == torch.int64 and rng["numpy"]["keys"].shape == (624,)

    report = load_pretrained(MViT(tiny_v2()), path)
    assert report.source_format == "mvit_video" and report.missing == [] and report.unexpected == []


def test_wrapped_models_are_saved_and_loaded_unwrapped(tmp_path):
    model, optimizer, _ = _setup(seed=0)
    path = save_checkpoint(tmp_path, 0, nn.DataParallel(model), optimizer, None)
    assert not any(k.startswith("module.") for k in torch.load(path, weights_only=True)["model_state"])
    target = nn.DataParallel(MViT(tiny_v2()))
    load_training_state(path, target)
    assert torch.equal(target.module.head.projection.weight, model.head.projection.weight)


def test_resumes_a_pyslowfast_checkpoint_without_rng_or_scaler(tmp_path, caplog):
    model, optimizer, _ = _setup(seed=0)
    path = tmp_path / "checkpoint_epoch_00005.pyth"
    state = {"epoch": 4, "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(), "cfg": "X: 1\n"}
    torch.save(state, path)
    target, target_opt, _ = _setup(seed=1)
    info = load_training_state(path, target, target_opt, torch.amp.GradScaler("cpu"))
    assert info == {"epoch": 4, "start_epoch": 5, "iteration": 0, "rng_state": None, "sampler_state": None,
                    "scheduler_state": None, "extra": None, "cfg": "X: 1\n"}  # fmt: skip
    assert "no GradScaler state" in caplog.text
    assert torch.equal(target.head.projection.bias, model.head.projection.bias)


@pytest.mark.parametrize("fail_in", ["torch.save", "os.replace"])
def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_in):
    model, optimizer, scaler = _setup(seed=0)
    previous = save_checkpoint(tmp_path, 0, model, optimizer, None, scaler=scaler)
    before = Path(previous).read_bytes()
    real_save = torch.save

    def crash_mid_write(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # a half-written file, then the crash
        raise KeyboardInterrupt

    def crash_on_rename(src, dst):
        raise OSError("disk full")

    if fail_in == "torch.save":
        monkeypatch.setattr(torch, "save", crash_mid_write)
    else:
        monkeypatch.setattr(os, "replace", crash_on_rename)
    with pytest.raises((KeyboardInterrupt, OSError)):
        save_checkpoint(tmp_path, 1, model, optimizer, None, scaler=scaler)
    monkeypatch.undo()

    folder = tmp_path / "checkpoints"
    assert _files(folder) == ["checkpoint_epoch_00001.pyth"]  # no final file 2, no stray temp file
    assert Path(previous).read_bytes() == before
    assert latest_checkpoint(tmp_path) == previous
    load_training_state(previous, MViT(tiny_v2()))


def test_latest_picks_highest_complete_checkpoint(tmp_path, caplog):
    assert latest_checkpoint(tmp_path) is None and not has_checkpoint(tmp_path)
    model, _, _ = _setup(seed=0)
    for epoch in (8, 9):  # files 9 and 10
        save_checkpoint(tmp_path, epoch, model, None, None)
    folder = tmp_path / "checkpoints"
    good = (folder / "checkpoint_epoch_00010.pyth").read_bytes()
    (folder / "checkpoint_epoch_00011.pyth.tmp.123.abcdef01").write_bytes(good)
    (folder / "checkpoint_epoch_00012.pyth").write_bytes(good[: len(good) // 2])  # truncated by a foreign writer
    (folder / "checkpoint_epoch_00013.pyth").write_bytes(b"")
    (folder / "checkpoint_epoch_00014.pyth.bak").write_bytes(good)
    (folder / "last.pyth").write_bytes(good)

    assert latest_checkpoint(tmp_path) == str(folder / "checkpoint_epoch_00010.pyth")
    assert has_checkpoint(tmp_path)
    assert "checkpoint_epoch_00012.pyth" in caplog.text and "checkpoint_epoch_00013.pyth" in caplog.text


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    model, optimizer, _ = _setup(seed=0)
    monkeypatch.setattr(ckpt, "is_main_process", lambda: False)
    path = save_checkpoint(tmp_path, 2, model, optimizer, get_cfg())
    assert path == checkpoint_path(tmp_path, 3)
    assert not os.path.exists(tmp_path / "checkpoints")


def test_unsafe_extra_is_refused_before_writing(tmp_path):
    model, optimizer, _ = _setup(seed=0)
    with pytest.raises(TypeError, match="extra holds a value that weights-only loading refuses"):
        save_checkpoint(tmp_path, 0, model, optimizer, None, extra={"best_top1": np.float64(71.5)})
    assert not os.path.exists(tmp_path / "checkpoints")


def _one_line_error(path, model, optimizer=None) -> str:
    with pytest.raises(CheckpointError) as info:
        load_training_state(path, model, optimizer)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_errors_are_one_line(tmp_path):
    model, optimizer, _ = _setup(seed=0)
    assert "not found" in _one_line_error(tmp_path / "nope.pyth", model)

    bare = tmp_path / "bare.pyth"
    torch.save(model.state_dict(), bare)
    assert "not a training checkpoint" in _one_line_error(bare, model)
    empty = tmp_path / "empty.pyth"
    empty.write_bytes(b"")
    assert _one_line_error(empty, model).startswith(f"{empty}: empty (0 bytes), not a checkpoint")

    path = save_checkpoint(tmp_path, 0, model, optimizer, None)
    message = _one_line_error(path, MViT(tiny_v2(num_classes=7)))
    assert (
        "architecture mismatch" in message
        and "head.projection.weight is [5, 32] in the checkpoint but [7, 32]" in message
    )
    assert "not in the checkpoint" in _one_line_error(path, MViT(tiny_v2(depth=4)))

    other_groups = torch.optim.AdamW([{"params": [p]} for p in MViT(tiny_v2()).parameters()])
    assert "optimizer state does not fit" in _one_line_error(path, MViT(tiny_v2()), other_groups)


def test_mid_epoch_files_sort_between_the_epoch_ends(tmp_path):
    """A stop in epoch e (0-based) after k iterations is newer than the end of epoch e - 1 (file e) and older than
    the end of epoch e (file e + 1), by name and in latest_checkpoint; iterations compare as numbers."""
    model, _, _ = _setup(seed=0)
    folder = tmp_path / "checkpoints"
    mid = save_checkpoint(tmp_path, 2, model, None, None, iteration=7)  # epoch 3 of PySlowFast's numbering
    assert mid == str(folder / "checkpoint_epoch_00002_iter_00007.pyth")
    data = torch.load(mid, weights_only=True)
    assert data["epoch"] == 1 and data["iteration"] == 7  # PySlowFast would restart epoch 2 (0-based)
    info = load_training_state(mid, MViT(tiny_v2()))
    assert (info["epoch"], info["start_epoch"], info["iteration"]) == (1, 2, 7)
    good = Path(mid).read_bytes()
    names = ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00002_iter_00010.pyth",
             "checkpoint_epoch_00002_iter_100000.pyth", "checkpoint_epoch_00002_iter_99999.pyth"]  # fmt: skip
    for name in names:
        (folder / name).write_bytes(good)
    expected = ["checkpoint_epoch_00002_iter_100000.pyth", "checkpoint_epoch_00002_iter_99999.pyth",
                "checkpoint_epoch_00002_iter_00010.pyth", "checkpoint_epoch_00002_iter_00007.pyth",
                "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00001.pyth"]  # fmt: skip
    assert [Path(p).name for p in ckpt.checkpoint_candidates(tmp_path)] == expected
    assert latest_checkpoint(tmp_path) == str(folder / "checkpoint_epoch_00002_iter_100000.pyth")
    assert checkpoint_path(tmp_path, 3) > str(folder / "checkpoint_epoch_00002_iter_00007.pyth") > checkpoint_path(
        tmp_path, 2
    )  # plain name order agrees for 5-digit iterations


def test_an_epoch_end_checkpoint_removes_the_mid_epoch_files_it_supersedes(tmp_path):
    model, _, _ = _setup(seed=0)
    save_checkpoint(tmp_path, 0, model, None, None)
    save_checkpoint(tmp_path, 1, model, None, None, iteration=2)
    assert _files(tmp_path / "checkpoints") == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00001_iter_00002.pyth"]
    save_checkpoint(tmp_path, 1, model, None, None, iteration=5)  # stopped again, later in the same epoch
    assert _files(tmp_path / "checkpoints") == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00001_iter_00005.pyth"]
    save_checkpoint(tmp_path, 1, model, None, None)
    assert _files(tmp_path / "checkpoints") == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    with pytest.raises(ValueError, match="iteration must be >= 1"):
        save_checkpoint(tmp_path, 1, model, None, None, iteration=0)


def test_a_failed_load_changes_nothing(tmp_path):
    """A checkpoint whose optimizer state does not fit leaves model, optimizer and generators as they were."""
    model, optimizer, _ = _setup(seed=0)
    path = save_checkpoint(tmp_path, 0, model, optimizer, None)
    target = MViT(tiny_v2())
    other_groups = torch.optim.AdamW([{"params": [p]} for p in target.parameters()])
    weights = {k: v.clone() for k, v in target.state_dict().items()}
    optimizer_state = str(other_groups.state_dict())
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        load_training_state(path, target, other_groups)
    assert all(torch.equal(weights[k], v) for k, v in target.state_dict().items())
    assert str(other_groups.state_dict()) == optimizer_state
    assert torch.equal(torch.rand(3), expected_draw)
