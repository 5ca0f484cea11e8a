"""Running out of disk space: a recoverable failure of a partition, unlike other I/O errors.

A write that fails with ENOSPC or EDQUOT leaves nothing behind that the partition relies on:
a segment append truncates its partly written bytes away before the in-memory state (offsets,
indexes, producer state) changes, and an index or checkpoint save writes a temporary file that
is removed. So the partition only refuses appends (LogDirFull, KAFKA_STORAGE_ERROR) while
reads of committed records go on, and it retries by itself: at most every
`RETRY_INTERVAL_S`, an append first re-validates the tail and saves what a roll could not,
then writes. The episode ends at the first write that succeeds. It is logged once when it
starts and once when it ends, never per refused request.

Other errors (EIO, and any failed fsync of segment data, whose dirty pages the kernel may have
dropped) still take the partition offline until restart (flush.py).
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Final

from strom.storage.api import LogDirFull

log = logging.getLogger(__name__)

NO_SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
RETRY_INTERVAL_S: Final = 0.5  # between a full partition's attempts to take writes again


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed for lack of space (or quota)."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


class NoSpaceEpisode:
    """The stretch of time during which a partition's writes fail for lack of space."""

    def __init__(self, name: str, what: str, exc: BaseException, recovery_point: int) -> None:
        self.name = name
        self.error = LogDirFull(f"{what} failed: {exc!r}; appends are refused until space "
                                "is freed")
        self.started = time.monotonic()
        self.refused = 0  # appends refused or failed during the episode
        self.repaired = False  # the tail was re-validated since the last failed write
        self._next_attempt = self.started + RETRY_INTERVAL_S
        log.error("%s: %s failed (%s): no space left; appends are refused "
                  "(KAFKA_STORAGE_ERROR) until space is freed, committed records stay "
                  "readable (recovery point %d)", name, what, exc, recovery_point)

    def due(self) -> bool:
        """Whether it is time to try taking writes again."""
        return time.monotonic() >= self._next_attempt

    def refuse(self) -> LogDirFull:
        """Counts a refused append; returns the error to raise."""
        self.refused += 1
        return self.error

    def write_failed(self) -> None:
        """A write failed again for lack of space: the next attempt waits its turn."""
        self.refused += 1
        self.repaired = False
        self._next_attempt = time.monotonic() + RETRY_INTERVAL_S

    def attempt_started(self) -> None:
        self._next_attempt = time.monotonic() + RETRY_INTERVAL_S

    def ended(self) -> None:
        log.warning("%s: space is available again after %.1f s (%d appends refused "
                    "meanwhile); the partition takes writes again", self.name,
                    time.monotonic() - self.started, self.refused)
