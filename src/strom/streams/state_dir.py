"""The state directory: `<state.dir>/<application.id>/<task id>/`, one per task this process
runs, each locked (an exclusive `flock` on its `.lock` file) while a task uses it, so that two
instances (or two threads) never share a store; and `.checkpoint`, the changelog offsets the
task's persistent stores hold up to, written on a clean close (and on commits under
at-least-once), so that a restart restores only what came after.

Under exactly-once a checkpoint is removed while the task runs (a crash leaves none, and the
stores, which may hold uncommitted writes, are wiped and restored from the changelog).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

LOCK_FILE: Final = ".lock"
CHECKPOINT_FILE: Final = ".checkpoint"


class StateDirectoryLocked(RuntimeError):
    """Another instance (or thread) holds a task's state directory."""


class TaskDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirectoryLocked(
                f"{self.path} is in use by another instance of this application (two "
                "instances on one machine need their own state.dir)") from None
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def read_checkpoint(self) -> dict[tuple[str, int], int]:
        """(changelog topic, partition) -> the next offset to restore from."""
        path = self.path / CHECKPOINT_FILE
        try:
            data = json.loads(path.read_text())
            return {(str(t), int(p)): int(o) for t, p, o in data}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring the unreadable checkpoint %s (%s): restoring from the "
                        "changelog's start", path, exc)
            return {}

    def write_checkpoint(self, offsets: dict[tuple[str, int], int]) -> None:
        path = self.path / CHECKPOINT_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps([[t, p, o] for (t, p), o in sorted(offsets.items())]))
        os.replace(temporary, path)

    def remove_checkpoint(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / CHECKPOINT_FILE).unlink()

    def wipe_stores(self) -> None:
        """Removes everything but the lock (stores restored from scratch)."""
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


class StateDirectory:
    def __init__(self, state_dir: str, application_id: str) -> None:
        self.root = Path(state_dir) / application_id

    def task(self, task_id: str) -> TaskDirectory:
        return TaskDirectory(self.root / task_id)
