"""The broker's log read as it grows: ERROR records, tracebacks grouped by signature, and the
frame that was on the connection a traceback names (its reproducer candidate).

strom logs `%(asctime)s %(levelname)s %(name)s: %(message)s`; a traceback follows its record
on the next lines. A request that fails in a handler is logged as
`error handling API <key> v<version> from <host>:<port>`, and the port is the fuzzer's local
port, so the frame sent last on that connection is the candidate.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

RECORD: Final = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ([\w.]+): (.*)$")
PEER: Final = re.compile(r" from [\w.:\[\]]+:(\d+)\b")
NUMBERS: Final = re.compile(r"0x[0-9a-fA-F]+|\d+")
QUOTED: Final = re.compile(r"'[^']{40,}'")
HISTORY_PORTS_MAX: Final = 4096
RECENT_S: Final = 5.0  # a handler fails within this long of the frame's arrival
CLOCK_SLACK_S: Final = 1.0  # the log's timestamps have millisecond resolution
FRAMES_PER_PORT: Final = 3
UNRAISABLE: Final = "Exception ignored in"


def normalize(text: str) -> str:
    """Numbers become N and long quoted strings '…', so one bug gives one signature."""
    return QUOTED.sub("'…'", NUMBERS.sub("N", text))[:300]


class FrameHistory:
    """The last frames sent on each local port (bounded) with their wall-clock time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_port: OrderedDict[int, deque[tuple[float, bytes]]] = OrderedDict()

    def sent(self, port: int, frame: bytes) -> None:
        with self._lock:
            frames = self._by_port.pop(port, None)
            if frames is None:
                frames = deque(maxlen=FRAMES_PER_PORT)
            frames.append((time.time(), frame))
            self._by_port[port] = frames
            while len(self._by_port) > HISTORY_PORTS_MAX:
                self._by_port.popitem(last=False)

    def at(self, port: int, when: float) -> bytes | None:
        """The frame sent last on `port` shortly before `when` (a log record's time); None if
        the port's frames are not from then (the port was someone else's)."""
        with self._lock:
            frames = list(self._by_port.get(port, ()))
        for sent_at, frame in reversed(frames):
            if when - RECENT_S <= sent_at <= when + CLOCK_SLACK_S:
                return frame
        return None


@dataclass
class Signature:
    """One kind of traceback: how often, the first record's text and reproducer candidates."""

    key: str
    count: int = 0
    sample: str = ""
    frames: list[bytes] = field(default_factory=list)


@dataclass
class LogCounts:
    lines: int = 0
    warnings: int = 0
    errors: int = 0  # ERROR and CRITICAL records
    tracebacks: int = 0
    auth_failures: int = 0  # "authentication failed" records (SASL, --security)
    error_messages: dict[str, int] = field(default_factory=dict)  # normalized, no traceback
    signatures: dict[str, Signature] = field(default_factory=dict)


class LogWatch:
    """Reads the log file from `offset` on, every `every_s` seconds, on its own thread."""

    def __init__(self, path: Path, history: FrameHistory, every_s: float = 0.5) -> None:
        self.path = path
        self.history = history
        self.every_s = every_s
        self.counts = LogCounts()
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = ""
        self._record: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="logwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.poll()
        with self._lock:
            self._finish_record()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        """Reads what was appended since the last call."""
        if not self.path.exists():
            return
        with self._lock, self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read(64 * 1024 * 1024)
            self._offset += len(chunk)
            text = self._partial + chunk.decode(errors="replace")
            lines = text.split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._line(line)

    def tracebacks_now(self) -> int:
        self.poll()
        with self._lock:
            return self.counts.tracebacks + (1 if self._has_traceback() else 0)

    def _has_traceback(self) -> bool:
        return any(line.startswith("Traceback (most recent call last)") for line in self._record)

    def _line(self, line: str) -> None:
        self.counts.lines += 1
        # Python's report of an exception it could not raise (printed, not logged) starts a
        # record of its own: it has nothing to do with the record before it.
        if RECORD.match(line) or line.startswith(UNRAISABLE):
            self._finish_record()
        self._record.append(line)

    def _finish_record(self) -> None:
        record, self._record = self._record, []
        if not record:
            return
        head = RECORD.match(record[0])
        level = head.group(1) if head else ""
        if level == "WARNING":
            self.counts.warnings += 1
        if level in ("ERROR", "CRITICAL"):
            self.counts.errors += 1
        if head and head.group(3).startswith("authentication failed"):
            self.counts.auth_failures += 1
        if any(line.startswith("Traceback (most recent call last)") for line in record):
            self._traceback(record, head)
        elif level in ("ERROR", "CRITICAL") and head:
            key = normalize(f"{head.group(2)}: {head.group(3)}")
            self.counts.error_messages[key] = self.counts.error_messages.get(key, 0) + 1

    def _traceback(self, record: list[str], head: re.Match[str] | None) -> None:
        self.counts.tracebacks += 1
        message = head.group(3) if head else record[0]
        if message.startswith(UNRAISABLE):  # its object's repr differs every time
            message = UNRAISABLE + " (printed by Python, not logged)"
        where = [line.strip() for line in record if line.strip().startswith("File ")]
        last = next((line for line in reversed(record) if line and not line.startswith(" ")),
                    "")
        key = " | ".join((normalize(message), normalize(where[-1] if where else ""),
                          normalize(last)))
        signature = self.counts.signatures.setdefault(key, Signature(key))
        signature.count += 1
        if not signature.sample:
            signature.sample = "\n".join(record[:1] + record[-6:])[:3000]
        peer = PEER.search(message)
        if peer and head and len(signature.frames) < 3:
            frame = self.history.at(int(peer.group(1)), _epoch(record[0]))
            if frame is not None:
                signature.frames.append(frame)


def _epoch(line: str) -> float:
    """The time of a log record (local time, `YYYY-mm-dd HH:MM:SS,mmm`)."""
    stamp, millis = line[:23].split(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def wait_quiet(watch: LogWatch, settle_s: float = 1.0) -> None:
    """Gives the broker a moment to write what it is writing, then reads it."""
    time.sleep(settle_s)
    watch.poll()
