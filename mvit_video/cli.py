"""Shared command-line plumbing: user mistakes become one line on stderr and the error's exit status."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import UserError


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs ``main`` and exits with its status; a ``UserError`` (or a missing file) is printed as
    ``error: <one line>`` and exits with its ``exit_code`` (2 for a missing file)."""
    try:
        status = main()
    except (UserError, FileNotFoundError) as e:
        message = str(e.args[0]) if isinstance(e, FileNotFoundError) and e.args else str(e)
        print(f"error: {message}".splitlines()[0], file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(status or 0)
