"""Bad videos are named, counted and bounded, never silently dropped.

Every worker process appends ``split<TAB>path<TAB>reason`` lines to one log file (``OUTPUT_DIR/bad_videos.txt``); appends of
one short line are atomic, so the file is the shared count across DataLoader workers and ranks.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Optional, TypeVar

from ..errors import UserError

T = TypeVar("T")


class TooManyBadVideos(UserError, RuntimeError):
    """More than the allowed fraction of a split's videos could not be read."""


class BadVideoLog:
    """Records unreadable videos and stops the run when too many are bad.

    Args:
        path: the log file, or None to keep the records in memory only (tests, tools).
        num_videos: size of the split, for the fraction.
        max_fraction: ``DATA.MAX_BAD_FRACTION``; exceeding it raises ``TooManyBadVideos``.
        split: name used in messages.
    """

    def __init__(self, path: Optional[str], num_videos: int, max_fraction: float, split: str = "train") -> None:
        self.path = path
        self.num_videos = max(num_videos, 1)
        self.max_fraction = max_fraction
        self.split = split
        self._seen: dict[str, str] = {}

    def record(self, video_path: str, reason: str) -> None:
        """Logs one bad video (once per path and process) and checks the bound."""
        reason = " ".join(str(reason).split())
        if video_path not in self._seen:
            self._seen[video_path] = reason
            if self.path is not None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(f"{self.split}\t{video_path}\t{reason}\n")
        self.check()

    def bad_videos(self) -> dict[str, str]:
        """All bad videos of this split recorded so far by any process: {path: reason}."""
        found = dict(self._seen)
        if self.path is not None and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    fields = line.rstrip("\n").split("\t", 2)
                    if len(fields) == 3 and fields[0] == self.split:
                        found.setdefault(fields[1], fields[2])
        return found

    def check(self) -> None:
        """Raises ``TooManyBadVideos`` when more than ``max_fraction`` of the split is bad."""
        bad = self.bad_videos()
        if len(bad) > self.max_fraction * self.num_videos:
            example, reason = next(iter(bad.items()))
            where = f" (all listed in {self.path})" if self.path else ""
            raise TooManyBadVideos(
                f"{len(bad)} of {self.num_videos} {self.split} videos are unreadable, more than "
                f"DATA.MAX_BAD_FRACTION={self.max_fraction}{where}; e.g. {example}: {reason}. "
                "Check DATA.PATH_TO_DATA_DIR / DATA.PATH_PREFIX, or raise DATA.MAX_BAD_FRACTION"
            )


def load_or_replace(
    index: int,
    num_items: int,
    load: Callable[[int, random.Random], T],
    on_bad: Callable[[int, Exception], None],
    errors: tuple[type[Exception], ...],
    seed_prefix: str,
    max_retries: int = 10,
) -> tuple[int, T]:
    """Loads item ``index``; when it is unreadable, reports it and tries other random items instead.

    Each attempt gets its own random stream seeded from ``seed_prefix``, the index and the attempt number, so
    any worker process draws the same samples and augmentations for the same item.

    Args:
        index: the requested item.
        num_items: size of the dataset (replacements are drawn from it).
        load: ``load(index, rng)`` returns the item or raises one of ``errors``.
        on_bad: called with the failing index and error (records it).
        errors: the exceptions that mean "this file is bad".
        seed_prefix: e.g. "<seed>-<epoch>".
        max_retries: replacements tried before giving up.

    Returns:
        (the index actually loaded, its item).
    """
    for attempt in range(max_retries + 1):
        rng = random.Random(f"{seed_prefix}-{index}-{attempt}")
        try:
            return index, load(index, rng)
        except errors as e:
            on_bad(index, e)
            index = rng.randrange(num_items)
    raise RuntimeError(f"{max_retries + 1} files in a row could not be read; see the bad-file log")
