"""Histories as JSON lines: one event an object a line, `{"type": "produce_acked", ...}`, so a
long soak can append to a file as it goes and the checker can read it afterwards.

`HistoryRecorder` is what a workload holds: `record(event)` from any thread (confluent-kafka
calls delivery reports from whichever thread polls), stamping `time_ms` when the event has none.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from strom.testing.history import EVENT_TYPES, TYPE_NAMES, Event

LINE_CHARS_MAX: Final = 1 << 20  # a line longer than this is not an event of ours


class HistoryFormatError(ValueError):
    """A line of a history file that is not an event; says which line and why."""


def encode_event(event: Event) -> str:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return json.dumps({"type": TYPE_NAMES[type(event)], **fields}, separators=(",", ":"))


def decode_event(line: str) -> Event:
    if len(line) > LINE_CHARS_MAX:
        raise HistoryFormatError(f"line of {len(line)} characters")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise HistoryFormatError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise HistoryFormatError("not a JSON object")
    cls = EVENT_TYPES.get(obj.pop("type", None))
    if cls is None:
        raise HistoryFormatError("no known 'type'")
    _check_fields(cls, obj)
    return cls(**obj)


def _check_fields(cls: type[Event], obj: dict[str, Any]) -> None:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = obj.keys() - names.keys()
    if unknown:
        raise HistoryFormatError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    for name, field in names.items():
        required = field.default is dataclasses.MISSING
        if name not in obj:
            if required:
                raise HistoryFormatError(f"{cls.__name__}: missing {name!r}")
            continue
        if not _type_ok(str(field.type), obj[name]):
            raise HistoryFormatError(f"{cls.__name__}.{name}: {obj[name]!r} is not {field.type}")


def _type_ok(annotation: str, value: object) -> bool:
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "str | None":
        return value is None or isinstance(value, str)
    if annotation == "Isolation":
        return value in ("read_committed", "read_uncommitted")
    raise AssertionError(f"no JSON check for field type {annotation}")


def iter_history(lines: Iterable[str]) -> Iterator[Event]:
    """Events of JSON lines, skipping blank lines; a bad line raises `HistoryFormatError`
    naming its number."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield decode_event(line)
        except HistoryFormatError as e:
            raise HistoryFormatError(f"line {number}: {e}") from None


def read_history(path: str | Path) -> list[Event]:
    with open(path, encoding="utf-8") as f:
        return list(iter_history(f))


def write_history(path: str | Path, events: Iterable[Event]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for event in events:
            f.write(encode_event(event) + "\n")


class HistoryRecorder:
    """Collects events in order, in memory and, with `path`, appended to a JSON-lines file
    (flushed every `flush_every` events and on close). Thread-safe."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = True,
                 flush_every: int = 1000) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._keep = keep
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._flush_every = max(1, flush_every)
        self._unflushed = 0

    def record(self, event: Event) -> Event:
        if event.time_ms == 0:
            event = dataclasses.replace(event, time_ms=int(time.time() * 1000))
        with self._lock:
            if self._keep:
                self._events.append(event)
            if self._file is not None:
                self._file.write(encode_event(event) + "\n")
                self._unflushed += 1
                if self._unflushed >= self._flush_every:
                    self._file.flush()
                    self._unflushed = 0
        return event

    @property
    def events(self) -> list[Event]:
        """A copy of the events kept so far (empty with keep=False)."""
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
