"""Shared command-line plumbing: user mistakes become one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable


def user_errors() -> tuple[type[Exception], ...]:
    """Exception types that mean "the user gave something wrong" (config, paths, data, checkpoints, inputs)."""
    from .config import ConfigError
    from .data.badfiles import TooManyBadVideos
    from .data.classnames import ClassNamesError
    from .data.prepare import PrepareError
    from .data.records import DatasetError
    from .data.toy import ToyDatasetError
    from .inference.sources import InputError
    from .models.benchmark import BenchmarkError
    from .models.pretrained import CheckpointError

    return (ConfigError, CheckpointError, DatasetError, TooManyBadVideos, ClassNamesError, PrepareError,
            ToyDatasetError, InputError, BenchmarkError, FileNotFoundError)  # fmt: skip


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs ``main`` and exits with its status; a user error is printed as ``error: <one line>``."""
    try:
        status = main()
    except Exception as e:  # noqa: BLE001 - re-raised below unless it is a user error
        if not isinstance(e, user_errors()):
            raise
        message = str(e.args[0]) if isinstance(e, FileNotFoundError) and e.args else str(e)
        print(f"error: {message}".splitlines()[0], file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
