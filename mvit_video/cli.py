"""Shared command-line plumbing: user mistakes become one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable

from .config import ConfigError
from .models.pretrained import CheckpointError

USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError)


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs ``main`` and exits with its status; a user error is printed as ``error: <one line>``."""
    try:
        status = main()
    except USER_ERRORS as e:
        message = str(e.args[0]) if isinstance(e, FileNotFoundError) and e.args else str(e)
        print(f"error: {message}".splitlines()[0], file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
