"""Multi-process runs on the CPU (gloo): torchrun training + test, PySlowFast's --num_shards/--init_method test."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mvit_video.config import ConfigError, load_config
from mvit_video.engine.distributed import ProcessPlan, cfg_for_plan, slowfast_plans, torchrun_plan
from tests.conftest import ROOT
from tests.engine.runs import CONFIG, free_port, iter_losses, json_stats, run_net, run_net_args

# No randomness inside the model and plain SGD: one process with batch 4 and two with 2 each must then take the
# same steps (DDP averages the two halves' gradients into the full batch's mean gradient).
SAME_STEPS = ["MVIT.DROPPATH_RATE", "0.0", "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.BASE_LR", "0.05",
              "SOLVER.WARMUP_START_LR", "0.005", "SOLVER.COSINE_END_LR", "0.0", "TRAIN.EVAL_PERIOD", "1"]  # fmt: skip


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip


def model_state(output, epoch: int) -> dict:
    path = output / "checkpoints" / f"checkpoint_epoch_{epoch:05d}.pyth"
    return torch.load(path, weights_only=True)["model_state"]


@pytest.fixture(scope="module")
def one_process(toy_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("one")
    result = run_net(toy_data, output, *SAME_STEPS)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_torchrun_two_processes_train_and_test_like_one(toy_data, tmp_path, one_process):
    one, one_result = one_process
    result = run_net(toy_data, tmp_path, *SAME_STEPS, launcher=torchrun(2), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    stats, one_stats = json_stats(result.stdout), json_stats(one_result.stdout)
    for epoch in (1, 2):  # the logged loss is the mean over both processes: the full batch's loss
        assert iter_losses(stats, epoch, 2) == pytest.approx(iter_losses(one_stats, epoch, 2), rel=1e-4)
    val = [s for s in stats if s["_type"] == "val_epoch"]
    assert [v["num_videos"] for v in val] == [6, 6]  # gathered from both ranks, each video once
    ours, reference = model_state(tmp_path, 2), model_state(one, 2)
    for key, value in reference.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=1e-6, msg=key)
    two, single = (torch.load(p / "test_predictions.pt", weights_only=True) for p in (tmp_path, one))
    assert two["indices"].tolist() == single["indices"].tolist() == list(range(6))
    torch.testing.assert_close(two["view_logits"], single["view_logits"], rtol=1e-4, atol=1e-4)
    assert (tmp_path / "test_results.json").exists() and sorted(p.name for p in (tmp_path / "checkpoints").iterdir())


def test_slowfast_flags_two_shards_test_every_video_once(toy_data, tmp_path, one_process):
    """Two 'machines' (one CPU process each) meeting at --init_method score a checkpoint's test split."""
    one, _ = one_process
    checkpoint = one / "checkpoints" / "checkpoint_epoch_00002.pyth"
    port = free_port()
    opts = ["TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", str(checkpoint), "TEST.NUM_ENSEMBLE_VIEWS", "3"]
    procs = [
        subprocess.Popen(
            [sys.executable, *run_net_args(toy_data, tmp_path, *opts), "--num_shards", "2", "--shard_id", str(i),
             "--init_method", f"tcp://127.0.0.1:{port}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "test: top-1" in outputs[0][0] and "test: top-1" not in outputs[1][0]  # rank 0 reports
    predictions = torch.load(tmp_path / "test_predictions.pt", weights_only=True)
    assert predictions["indices"].tolist() == list(range(6)) and predictions["view_logits"].shape == (6, 3, 6)


def test_torchrun_environment_sets_shards_and_devices():
    cfg = load_config(CONFIG, ["NUM_GPUS", "0"])
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    plan = torchrun_plan(cfg, env)
    assert plan == ProcessPlan(world=8, rank=5, local_world=4, local_rank=1, init_method="env://", backend="gloo")
    seen = cfg_for_plan(cfg, plan)
    assert (seen.NUM_SHARDS, seen.SHARD_ID, seen.NUM_GPUS) == (2, 1, 0)
    assert torchrun_plan(cfg, {}) is None


def test_slowfast_flags_plan_and_their_mistakes():
    cfg = load_config(CONFIG, ["NUM_GPUS", "0", "NUM_SHARDS", "3", "SHARD_ID", "2"])
    (plan,) = slowfast_plans(cfg, "tcp://10.0.0.1:9999")
    assert (plan.world, plan.rank, plan.backend, plan.init_method) == (3, 2, "gloo", "tcp://10.0.0.1:9999")
    with pytest.raises(ConfigError, match="NUM_SHARDS=3 needs --init_method"):
        slowfast_plans(cfg, None)
    single = load_config(CONFIG, ["NUM_GPUS", "0"])
    assert [p.world for p in slowfast_plans(single, None)] == [1]


def test_pyslowfast_checkpoint_is_tested_directly(toy_data, tmp_path, one_process):
    """TEST.CHECKPOINT_FILE_PATH takes a PySlowFast .pyth (its keys only) and scores exactly like our own file."""
    one, _ = one_process
    ours = torch.load(one / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)
    pyslowfast = {"epoch": 2, "model_state": ours["model_state"], "optimizer_state": ours["optimizer_state"],
                  "cfg": ours["cfg"]}  # fmt: skip
    path = tmp_path / "slowfast.pyth"
    torch.save(pyslowfast, path)
    result = run_net(toy_data, tmp_path / "out", "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "format=slowfast" in result.stdout
    scored, reference = (torch.load(p / "test_predictions.pt", weights_only=True) for p in (tmp_path / "out", one))
    assert torch.equal(scored["view_logits"], reference["view_logits"])
