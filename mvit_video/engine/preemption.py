"""Stopping training cleanly on a cluster's stop signal (SIGTERM, SIGUSR1), at the same iteration on every rank.

While ``stop_signals(request)`` is active, SIGTERM and SIGUSR1 only record themselves in ``request``; the training
loop shares the record across processes in its per-step all-reduce (``StopRequest.vote`` / ``StopRequest.count``)
so every rank sees the same verdict after the same step, stops at the end of that accumulation group, and the
main process writes the checkpoint. A launcher that spawns the training processes itself forwards the signals to
them (``forward_stop_signals``). A stopped run exits with ``EXIT_STOPPED``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..process import STOP_SIGNALS

logger = logging.getLogger(__name__)

# sysexits.h EX_TEMPFAIL, "try again later": nonzero, so schedulers do not mark the job done, and apart from
# 1 (a crash), 2 (a user mistake) and 128 + n (killed by signal n before any state was saved)
EXIT_STOPPED = 75


@dataclass
class StopRequest:
    """A stop asked for by a signal: ``signal`` is what this process received (set by the handler), ``agreed``
    whether any process received one (from the all-reduce); once stopped, ``checkpoint`` holds the state and
    ``position`` says where in training that is."""

    signal: int | None = None
    agreed: bool = False
    checkpoint: str | None = None
    position: str | None = None

    def vote(self) -> float:
        """This process's vote for the per-step all-reduce: 1.0 after a signal, else 0.0."""
        return 0.0 if self.signal is None else 1.0

    def count(self, mean_vote: float) -> bool:
        """Records the all-reduced mean of the votes (any vote > 0: some rank was signalled); returns ``agreed``,
        which stays True once set, identically on every rank."""
        self.agreed = self.agreed or mean_vote > 0
        return self.agreed

    def report(self) -> str:
        """The log line of a stopped run: why, where, which file holds the state, how to continue."""
        cause = signal.Signals(self.signal).name if self.signal is not None else "a stop signal to another process"
        return (f"stopped by {cause} {self.position}; the training state is in {self.checkpoint}; to continue, run "
                "the same command again with TRAIN.AUTO_RESUME True")  # fmt: skip


def _install(handler, signals: Sequence[int]) -> dict[int, object] | None:
    """Installs ``handler`` for ``signals``; returns the previous handlers, or None off the main thread (where
    Python cannot install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        logger.warning("training runs outside the main thread: SIGTERM / SIGUSR1 will not stop it cleanly")
        return None
    return {s: signal.signal(s, handler) for s in signals}


def _restore(previous: dict[int, object] | None) -> None:
    for s, handler in (previous or {}).items():
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python


@contextlib.contextmanager
def stop_signals(request: StopRequest) -> Iterator[StopRequest]:
    """While active, SIGTERM and SIGUSR1 set ``request.signal`` instead of ending the process; the previous
    handlers are restored on exit."""

    def record(signum: int, frame) -> None:
        request.signal = signum

    previous = _install(record, STOP_SIGNALS)
    try:
        yield request
    finally:
        _restore(previous)


@contextlib.contextmanager
def forward_stop_signals(pids: Sequence[int]) -> Iterator[StopRequest]:
    """While active, SIGTERM and SIGUSR1 to this (launcher) process are passed on to ``pids``, the training
    processes, instead of ending it; the yielded request records whether one came."""
    request = StopRequest()

    def forward(signum: int, frame) -> None:
        request.signal = signum
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a process that has already exited
                os.kill(pid, signum)

    previous = _install(forward, STOP_SIGNALS)
    try:
        yield request
    finally:
        _restore(previous)
