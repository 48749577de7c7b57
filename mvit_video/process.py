"""Process helpers every layer may use: distributed queries, CPU cores and threads, console logging, stop signals.

This module imports nothing from the package, so models, data, engine and inference can all depend on it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import torch
import torch.distributed as dist

# what clusters send to stop a job (SLURM, Kubernetes); training stops cleanly on them (engine/preemption.py)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def is_dist() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the job (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def is_main_process() -> bool:
    """Rank 0 of the default process group, or the only process when none is initialised."""
    return rank() == 0


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share_cpu(processes_per_machine: int, loader_workers: int) -> int:
    """Sets and returns the torch threads of a CPU run: the machine's cores split between its processes, less one
    per data-loader worker. More threads than free cores makes every parallel kernel wait for a descheduled
    thread (measured on a busy 2-core machine with one loader worker: a small toy epoch took 16.6 s with 2
    compute threads, 0.3 s with 1).

    Args:
        processes_per_machine: training processes on this machine.
        loader_workers: data-loader worker processes of each of them.
    """
    per_process = cpu_cores() // max(processes_per_machine, 1)
    threads = max(1, per_process - loader_workers)
    torch.set_num_threads(threads)
    return threads


def setup_logging() -> None:
    """Console logging of this process: INFO on the main process, warnings only on the others."""
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(level=level, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stdout,
                        force=True)  # fmt: skip


def shield_from_stop_signals() -> None:
    """Keeps a data-loader worker alive through SIGTERM / SIGUSR1 sent by anyone but its parent.

    Schedulers signal every process of a job (SLURM), but a worker must keep serving the training process while
    that one finishes its step; the training process ends its workers itself. SIGUSR1 is ignored. SIGTERM is
    blocked and taken by a watcher thread that exits only for one from the parent, as torch's worker handler does
    (the parent's ``terminate()`` at shutdown); any other SIGTERM is dropped.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit the mask

    def watch() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=watch, name="sigterm-watcher", daemon=True).start()
