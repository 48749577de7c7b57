"""mvit_video/process.py: data-loader workers outlive a scheduler's stop signals, but not their parent's."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import time

from mvit_video.process import shield_from_stop_signals


def _shielded_worker(ready) -> None:
    shield_from_stop_signals()
    ready.set()
    time.sleep(60)


def test_a_shielded_worker_ignores_others_stop_signals_and_ends_on_its_parents_terminate():
    context = mp.get_context("fork")  # as the data loader starts its workers on Linux
    ready = context.Event()
    worker = context.Process(target=_shielded_worker, args=(ready,), daemon=True)
    worker.start()
    assert ready.wait(10)
    for name in ("TERM", "USR1"):  # from another process, as a scheduler signals every process of a job
        subprocess.run(["kill", f"-{name}", str(worker.pid)], check=True)
    time.sleep(0.3)
    assert worker.is_alive()
    worker.terminate()  # SIGTERM from the parent: what the data loader does when a worker does not stop by itself
    worker.join(10)
    assert worker.exitcode == 0
