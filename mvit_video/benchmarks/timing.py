"""Timing through ``torch.utils.benchmark``: it synchronises CUDA around the timed block and warms up the timer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch


def _timer_class():
    # torch.utils.benchmark imports cpp_extension, which warns about CUDA_HOME on machines without a CUDA runtime;
    # no extension is built here, so that warning is noise (and it would precede one-line error messages)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    return Timer


def seconds_per_call(fn: Callable[[], object], iters: int, warmup: int = 0, repeat: int = 1) -> float:
    """Seconds one call of ``fn`` takes: ``warmup`` untimed calls, then the fastest of ``repeat`` blocks of ``iters``
    calls, divided by ``iters``. Runs with the current number of torch threads (``Timer`` would use one)."""
    for _ in range(warmup):
        fn()
    timer = _timer_class()(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return min(timer.timeit(iters).mean for _ in range(repeat))
