"""The base class of every mistake a user can fix: a config, a path, a data folder, a checkpoint, an input.

Command-line tools print a ``UserError`` as one ``error: ...`` line and exit with its ``exit_code`` (2, or 1 for a
run that started and then failed, such as a diverged training); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A user mistake; the message is one line (what, where, what to do).

    Attributes:
        exit_code: the status a command-line tool exits with.
    """

    exit_code = 2

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).splitlines()))
