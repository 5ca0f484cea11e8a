"""Small file-system helpers: durable atomic writes, directory fsync, reading a FileRegion."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from strom.storage.api import FileRegion

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs)


def tmp_path(path: Path) -> Path:
    """`path` with TMP_SUFFIX, the name shortened first if it would not fit NAME_MAX. Callers
    keep their names ASCII; two names may share a temp file only if they share their first
    251 characters (a topic's `<name>.json` fits whole: names have at most 249)."""
    return path.with_name(path.name[:NAME_MAX - len(TMP_SUFFIX)] + TMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    """Makes a directory's entries (creates, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Writes `data` to `path` so that a crash leaves either the old or the new content. If
    the write fails (a full disk), the temporary file is removed: it would hold the space."""
    tmp = tmp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly(tmp)
        raise
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def read_file(path: Path) -> bytes | None:
    """The whole file, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def pread_exact(fd: int, size: int, position: int) -> bytes:
    """Exactly `size` bytes at `position`; fewer only if the file ends first."""
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_region(region: FileRegion) -> bytes:
    """The bytes a FileRegion stands for (for callers that cannot os.sendfile)."""
    data = pread_exact(region.fd, region.size, region.position)
    if len(data) != region.size:
        raise OSError(f"short read: {len(data)} of {region.size} bytes at {region.position}")
    return data


class FdGraveyard:
    """File descriptors of deleted segments, closed only after a grace period so that a
    FileRegion handed to a fetch a moment earlier can still be sent or read."""

    def __init__(self) -> None:
        self._fds: list[tuple[float, int]] = []  # (monotonic deadline, fd)

    def __len__(self) -> int:
        return len(self._fds)

    def retire(self, fd: int, delay_s: float) -> None:
        self._fds.append((time.monotonic() + delay_s, fd))

    def reap(self) -> None:
        """Closes the fds whose grace period is over; each leaves the list before its close,
        so none is closed twice (its number may be reused), whatever a close raises."""
        now = time.monotonic()
        due = [entry for entry in self._fds if entry[0] <= now]
        self._fds = [entry for entry in self._fds if entry[0] > now]
        for _, fd in due:
            _close_quietly(fd)

    def close_all(self) -> None:
        fds, self._fds = self._fds, []
        for _, fd in fds:
            _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:  # the fd is released even so (Linux, POSIX.1-2024)
        log.warning("closing a retired fd %d failed: %s", fd, exc)
