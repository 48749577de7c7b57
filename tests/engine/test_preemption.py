"""Preemption: SIGTERM / SIGUSR1 checkpoint the current iteration and exit 75; resuming repeats the uninterrupted
run exactly; unloadable latest checkpoints are skipped for the previous one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.engine import trainer
from mvit_video.engine.preemption import EXIT_STOPPED, StopRequest, forward_stop_signals, stop_signals
from mvit_video.engine.stats import STATS_FILE, read_stats
from mvit_video.models import CheckpointError
from tests.conftest import ROOT
from tests.engine.runs import CONFIG, TINY, free_port, iter_losses, json_stats, run_net, run_net_args

# 6 iterations per epoch; drop path and Mixup draw random numbers every step, so a resumed run that did not put
# back the generators (torch's and Mixup's) as they were at the stop would see other losses
OPTS = ["SOLVER.MAX_EPOCH", "2", "TRAIN.BATCH_SIZE", "2", "TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.EVAL_PERIOD", "1",
        "MVIT.DROPPATH_RATE", "0.2", "MIXUP.ENABLE", "True", "DATA_LOADER.NUM_WORKERS", "1"]  # fmt: skip
COMPARED = ("loss", "top1_err", "top5_err", "grad_norm", "lr")


@pytest.fixture(scope="module")
def uninterrupted(toy_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("uninterrupted")
    result = run_net(toy_data, output, *OPTS)
    assert result.returncode == 0, result.stderr[-2000:]
    return output, result


def _records(output) -> dict[tuple, dict]:
    """(type, epoch, iter) -> the compared numbers of every record of ``json_stats.log``."""
    return {(r["_type"], r.get("epoch"), r.get("iter")): {k: r[k] for k in COMPARED if k in r}
            for r in read_stats(output / STATS_FILE) if r["_type"] != "model_info"}  # fmt: skip


def _stop_when(proc: subprocess.Popen, seen, send) -> str:
    """Reads ``proc``'s stdout to the end, calling ``send()`` once at the first json_stats record ``seen`` accepts."""
    watchdog = threading.Timer(150, os.killpg, (proc.pid, signal.SIGKILL))  # never hang the suite
    watchdog.start()
    lines, sent = [], False
    try:
        for line in proc.stdout:
            lines.append(line)
            if not sent and any(seen(r) for r in json_stats(line)):
                send()
                sent = True
        proc.wait()
    finally:
        watchdog.cancel()
    assert sent, "".join(lines)[-2000:]
    return "".join(lines)


def _in_epoch(epoch: str, iteration: str):
    return lambda r: r["_type"] == "train_iter" and r["epoch"] == epoch and r["iter"] == iteration


def test_sigterm_mid_epoch_then_resume_repeats_the_uninterrupted_run(toy_data, tmp_path, uninterrupted):
    expected_dir, expected_run = uninterrupted
    out = tmp_path / "stopped"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, *run_net_args(toy_data, out, *OPTS)], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)  # fmt: skip
        # to every process of the job (the trainer and its loader worker), as SLURM signals a job
        stdout = _stop_when(proc, _in_epoch("2/2", "1/6"), lambda: os.killpg(proc.pid, signal.SIGTERM))
    assert proc.returncode == EXIT_STOPPED, (tmp_path / "stderr.txt").read_text()[-2000:]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(names) == 2 and names[0] == "checkpoint_epoch_00001.pyth", names
    k = int(re.fullmatch(r"checkpoint_epoch_00001_iter_(\d{5})\.pyth", names[1])[1])
    assert 1 <= k < 6, "stopped too late: epoch 2 had already finished"
    state = torch.load(out / "checkpoints" / names[1], weights_only=True)
    assert (state["epoch"], state["iteration"]) == (0, k)
    assert len(iter_losses(json_stats(stdout), 2, 2)) == k  # iterations 1..k ran, no more
    assert (f"stopped by SIGTERM in epoch 2/2 after iteration {k}/6; the training state is in "
            f"{out / 'checkpoints' / names[1]}; to continue, run the same command again with TRAIN.AUTO_RESUME "
            "True") in stdout  # fmt: skip
    assert not (out / "test_results.json").exists()  # the test is not run

    again = run_net(toy_data, out, *OPTS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"start epoch 2/2 at iteration {k + 1}/6" in again.stdout
    resumed = json_stats(again.stdout)
    assert iter_losses(resumed, 1, 2) == [] and len(iter_losses(resumed, 2, 2)) == 6 - k
    expected = _records(expected_dir)
    assert len(expected) == 12 + 2 + 2  # iterations, epoch means (over the whole epoch), validations
    assert _records(out) == expected  # full-precision floats, exactly
    ours = torch.load(out / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)["model_state"]
    reference = torch.load(expected_dir / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)
    assert all(torch.equal(ours[key], value) for key, value in reference["model_state"].items())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [names[0], "checkpoint_epoch_00002.pyth"]
    assert (out / "test_results.json").read_text().count('"top1"') == 1
    assert "test: top-1" in again.stdout and "test: top-1" in expected_run.stdout


def test_a_signal_to_one_process_stops_both_at_the_same_iteration(toy_data, tmp_path):
    """Two 'machines' (one CPU process each); only the second gets SIGTERM, both stop after the same step and
    the first (rank 0) writes the checkpoint."""
    port = free_port()
    opts = [*OPTS, "TRAIN.BATCH_SIZE", "1", "MIXUP.ENABLE", "False", "TEST.ENABLE", "False"]  # 1 thread each
    logs = [open(tmp_path / f"shard{i}.txt", "w") for i in range(2)]  # noqa: SIM115 (never a full pipe)
    procs = [
        subprocess.Popen(
            [sys.executable, *run_net_args(toy_data, tmp_path, *opts), "--num_shards", "2", "--shard_id", str(i),
             "--init_method", f"tcp://127.0.0.1:{port}"],
            cwd=ROOT, stdout=subprocess.PIPE if i == 0 else logs[i], stderr=logs[i], text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]  # fmt: skip
    stdout = _stop_when(procs[0], _in_epoch("1/2", "2/6"), lambda: procs[1].send_signal(signal.SIGTERM))
    procs[1].wait(60)
    for log in logs:
        log.close()
    assert [p.returncode for p in procs] == [EXIT_STOPPED, EXIT_STOPPED], (tmp_path / "shard1.txt").read_text()
    (name,) = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    k = int(re.fullmatch(r"checkpoint_epoch_00000_iter_(\d{5})\.pyth", name)[1])
    assert f"stopped by a stop signal to another process in epoch 1/2 after iteration {k}/6" in stdout
    assert len(iter_losses(json_stats(stdout), 1, 2)) == k


# ------------------------------------------------------------------------------------------------------ in-process


def _train_in_process(toy_data, tmp_path, *opts: str):
    paths = ["DATA.PATH_TO_DATA_DIR", str(toy_data), "DATA.PATH_PREFIX", str(toy_data), "OUTPUT_DIR", str(tmp_path)]
    cfg = load_config(CONFIG, [*paths, *TINY, *OPTS, "LOG_MODEL_INFO", "False", *opts])
    return trainer.train(cfg)


def test_unloadable_latest_checkpoints_are_skipped_for_the_previous_one(toy_data, tmp_path, uninterrupted, caplog):
    """A truncated latest file, then a mid-epoch file of another architecture: both skipped, one warning each;
    the run continues from the end of epoch 1 exactly as the uninterrupted run did."""
    expected_dir, _ = uninterrupted
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(expected_dir / "checkpoints" / "checkpoint_epoch_00001.pyth", folder)
    last = (expected_dir / "checkpoints" / "checkpoint_epoch_00002.pyth").read_bytes()
    (folder / "checkpoint_epoch_00002.pyth").write_bytes(last[: len(last) // 2])
    other = torch.load(folder / "checkpoint_epoch_00001.pyth", weights_only=True)
    other["model_state"]["head.projection.weight"] = other["model_state"]["head.projection.weight"][:5]
    torch.save(other, folder / "checkpoint_epoch_00001_iter_00004.pyth")
    caplog.set_level("INFO")
    _train_in_process(toy_data, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"skipping checkpoint {folder / 'checkpoint_epoch_00002.pyth'}: truncated")
    other_warning = f"skipping checkpoint {folder / 'checkpoint_epoch_00001_iter_00004.pyth'}: architecture mismatch"
    assert warnings[1].startswith(other_warning) and "head.projection.weight is [5, " in warnings[1]
    assert f"resumed from {folder / 'checkpoint_epoch_00001.pyth'} (epoch 1 done)" in caplog.text
    assert "start epoch 2/2 (6 iterations per epoch" in caplog.text
    assert _records(tmp_path) == {k: v for k, v in _records(expected_dir).items() if k[1] == "2/2"}


def test_checkpoints_of_which_none_loads_are_one_error(toy_data, tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "checkpoint_epoch_00001.pyth").write_bytes(b"")
    (folder / "checkpoint_epoch_00002_iter_00003.pyth").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CheckpointError) as info:
        _train_in_process(toy_data, tmp_path)
    assert str(info.value) == (
        f"none of the 2 checkpoint file(s) in {folder} can be resumed from (see the warnings above); move "
        "them away to start afresh, or resume with the config they were trained with"
    )
    assert info.value.exit_code == 2  # tools/run_net.py prints it as one "error: ..." line and exits with it
    assert caplog.text.count("skipping checkpoint") == 2
    assert not (tmp_path / STATS_FILE).exists()


def _signal_before_step(monkeypatch, signum: int, at: tuple[int, int]) -> None:
    """Sends ``signum`` to this process just before training step ``at`` = (epoch, iteration), 0-based."""
    original = trainer.train_step

    def step(run, batch, mixup, epoch, it, acc):
        if (epoch, it) == at:
            os.kill(os.getpid(), signum)
        return original(run, batch, mixup, epoch, it, acc)

    monkeypatch.setattr(trainer, "train_step", step)


def _keep_handlers():
    """Sentinel handlers for the stop signals, which training must put back."""
    sentinels = {s: (lambda signum, frame: None) for s in (signal.SIGTERM, signal.SIGUSR1)}
    previous = {s: signal.signal(s, h) for s, h in sentinels.items()}
    return sentinels, previous


def test_sigusr1_stops_after_the_step_and_restores_the_handlers(toy_data, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO")
    _signal_before_step(monkeypatch, signal.SIGUSR1, (1, 2))
    sentinels, previous = _keep_handlers()
    try:
        summary = _train_in_process(toy_data, tmp_path)
        assert {s: signal.getsignal(s) for s in sentinels} == sentinels
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    path = tmp_path / "checkpoints" / "checkpoint_epoch_00001_iter_00003.pyth"
    assert summary["stopped"] == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint_epoch_00001.pyth", path.name]
    assert f"stopped by SIGUSR1 in epoch 2/2 after iteration 3/6; the training state is in {path}" in caplog.text
    assert len([r for r in read_stats(tmp_path / STATS_FILE) if r["_type"] == "train_iter"]) == 6 + 3


def test_with_gradient_accumulation_the_stop_waits_for_the_optimizer_step(toy_data, tmp_path, monkeypatch):
    """A signal before the first batch of an accumulation group of 2 stops after the second: nothing accumulated
    is dropped. 6 + 4 batches make 5 optimizer steps."""
    _signal_before_step(monkeypatch, signal.SIGTERM, (1, 2))
    summary = _train_in_process(toy_data, tmp_path, "TRAIN.GRAD_ACCUM_STEPS", "2")
    path = tmp_path / "checkpoints" / "checkpoint_epoch_00001_iter_00004.pyth"
    assert summary["stopped"] == str(path)
    optimizer_state = torch.load(path, weights_only=True)["optimizer_state"]["state"]
    assert {float(s["step"]) for s in optimizer_state.values()} == {5.0}


def test_a_signal_during_validation_stops_at_the_end_of_the_epoch(toy_data, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO")
    original = trainer.validate

    def validate(run, loader, epoch):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(run, loader, epoch)

    monkeypatch.setattr(trainer, "validate", validate)
    summary = _train_in_process(toy_data, tmp_path, "TRAIN.CHECKPOINT_PERIOD", "5")
    path = tmp_path / "checkpoints" / "checkpoint_epoch_00001.pyth"  # written for the stop: not due by the period
    assert summary["stopped"] == str(path) and sorted(path.parent.iterdir()) == [path]
    assert f"stopped by SIGTERM after epoch 1/2; the training state is in {path}" in caplog.text
    assert {r["epoch"] for r in read_stats(tmp_path / STATS_FILE) if r["_type"] == "train_iter"} == {"1/2"}


def test_stop_signals_record_and_restore():
    request = StopRequest()
    before = signal.getsignal(signal.SIGUSR1)
    with stop_signals(request):
        assert request.vote() == 0.0
        os.kill(os.getpid(), signal.SIGUSR1)
        assert request.signal == signal.SIGUSR1 and request.vote() == 1.0
    assert signal.getsignal(signal.SIGUSR1) is before
    assert not request.count(0.0) and request.count(0.5) and request.count(0.0)  # once agreed, stays agreed


def test_the_launcher_passes_stop_signals_on_to_its_processes():
    child = subprocess.Popen(
        [sys.executable, "-c", ("import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\nprint('ready', flush=True)\ntime.sleep(30)")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout.readline() == "ready\n"
    before = signal.getsignal(signal.SIGTERM)
    with forward_stop_signals([child.pid]) as forwarded:
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process without the forwarding handler
        assert child.wait(10) == 42
    assert forwarded.signal == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
