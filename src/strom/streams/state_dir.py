"""The state directory: `<state.dir>/<application.id>/<task id>/`, one per task this process
runs, each locked (an exclusive `flock` on its `.lock` file) while a task uses it, so that two
instances (or two threads) never share a store; and `.checkpoint`, the changelog offsets the
task's persistent stores hold up to, written on a clean close (and on commits under
at-least-once), so that a restart restores only what came after.

A checkpoint is written only when the task's last commit succeeded. Under exactly-once it is
removed when the task starts (a crash leaves none, and the stores, which may hold uncommitted
writes, are wiped and restored from the changelog); a clean close writes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

LOCK_FILE: Final = ".lock"
CHECKPOINT_FILE: Final = ".checkpoint"
PROCESS_FILE: Final = "kafka-streams-process-metadata"


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
    """An instance's directory for one application: locked as a whole while the instance
    runs (two instances never share one), holding the instance's process id (kept across
    restarts, as Kafka Streams keeps it: the transactional ids made from it fence what a
    crashed run left open at once, instead of after the transaction timeout) and one
    directory per task."""

    def __init__(self, state_dir: str, application_id: str) -> None:
        self.root = Path(state_dir) / application_id
        self._own = TaskDirectory(self.root)

    def lock(self) -> None:
        self._own.lock()

    def unlock(self) -> None:
        self._own.unlock()

    def process_id(self) -> str:
        """The instance's id, made on the first run (Kafka Streams' process metadata)."""
        path = self.root / PROCESS_FILE
        try:
            found = json.loads(path.read_text()).get("processId")
            if isinstance(found, str) and found:
                return found
        except (OSError, ValueError, AttributeError):
            pass
        made = uuid.uuid4().hex[:12]
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"processId": made}))
        os.replace(temporary, path)
        return made

    def task(self, task_id: str) -> TaskDirectory:
        return TaskDirectory(self.root / task_id)
