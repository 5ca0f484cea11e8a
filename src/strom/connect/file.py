"""FileStreamSource and FileStreamSink, answering to Kafka's class names and configs.

The source reads lines of `file` (or stdin when unset) into `topic`, `batch.size` lines per poll
at most, its offsets Kafka's: partition ``{"filename": file}``, offset ``{"position": n}`` (the
byte position after the last line sent). Unlike Kafka's it tails through rotation: when the file
is replaced (another inode) or truncated (shorter than the position), it reopens it from the
start. The sink writes each record's value, one line per record, to `file` (stdout when unset).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from strom import __version__
from strom.connect.api import (
    SinkConnector,
    SinkTask,
    SourceConnector,
    SourceTask,
    Task,
    TopicPartition,
)

if TYPE_CHECKING:
    from strom.connect.config import ConfigDef
    from strom.connect.records import SinkRecord, SourceRecord

log = logging.getLogger(__name__)

FILE_CONFIG = "file"
TOPIC_CONFIG = "topic"
BATCH_SIZE_CONFIG = "batch.size"
DEFAULT_BATCH_SIZE = 2000
FILENAME_FIELD = "filename"
POSITION_FIELD = "position"
# How long poll() waits for new lines before returning none (Kafka's task sleeps 1 s).
POLL_WAIT_S = 0.2


def _source_config_def() -> ConfigDef:
    from strom.connect.config import NO_DEFAULT, ConfigDef, ConfigType, Importance, NonEmptyString
    d = ConfigDef()
    d.define(FILE_CONFIG, ConfigType.STRING, None, Importance.HIGH,
             "Source filename. If not specified, the standard input will be used")
    d.define(TOPIC_CONFIG, ConfigType.STRING, NO_DEFAULT, Importance.HIGH,
             "The topic to publish data to", validator=NonEmptyString())
    d.define(BATCH_SIZE_CONFIG, ConfigType.INT, DEFAULT_BATCH_SIZE, Importance.LOW,
             "The maximum number of records the source task can read from the file each time "
             "it is polled")
    return d


def _sink_config_def() -> ConfigDef:
    from strom.connect.config import ConfigDef, ConfigType, Importance
    d = ConfigDef()
    d.define(FILE_CONFIG, ConfigType.STRING, None, Importance.HIGH,
             "Destination filename. If not specified, the standard output will be used")
    return d


class FileStreamSourceConnector(SourceConnector):
    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return _source_config_def()

    def start(self, props: Mapping[str, str]) -> None:
        topic = props.get(TOPIC_CONFIG, "").strip()
        if not topic or "," in topic:
            from strom.connect.errors import ConnectException
            raise ConnectException("'topic' in FileStreamSourceConnector configuration requires "
                                   "definition of a single topic")
        self._props = dict(props)

    def task_class(self) -> type[Task]:
        return FileStreamSourceTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        # Only one input stream makes sense.
        return [dict(self._props)]

    def stop(self) -> None:
        pass

    def exactly_once_support(self) -> str | None:
        return "SUPPORTED" if self._props.get(FILE_CONFIG) else "UNSUPPORTED"


class FileStreamSourceTask(SourceTask):
    def __init__(self) -> None:
        self.filename: str | None = None
        self.topic = ""
        self.batch_size = DEFAULT_BATCH_SIZE
        self._stream: IO[bytes] | None = None
        self._inode: int | None = None
        self._position = 0
        self._pending = b""
        self._stopping = False
        self._source_partition: dict[str, Any] = {}

    def version(self) -> str:
        return __version__

    def start(self, props: Mapping[str, str]) -> None:
        self.filename = props.get(FILE_CONFIG) or None
        self.topic = props[TOPIC_CONFIG]
        self.batch_size = int(props.get(BATCH_SIZE_CONFIG, DEFAULT_BATCH_SIZE))
        self._stopping = False

    def _partition(self) -> dict[str, Any] | None:
        """The source partition, one object for all the records of a file (the worker
        remembers the offset key of the last partition object it saw)."""
        if not self.filename:
            return None
        if self._source_partition.get(FILENAME_FIELD) != self.filename:
            self._source_partition = {FILENAME_FIELD: self.filename}
        return self._source_partition

    def _open(self) -> bool:
        """Open the file (at the committed position the first time); False if it is missing."""
        if self.filename is None:
            self._stream = sys.stdin.buffer
            return True
        try:
            stream = open(self.filename, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            log.warning("couldn't find file %s for FileStreamSourceTask, sleeping to wait for "
                        "it to be created", self.filename)
            return False
        st = os.fstat(stream.fileno())
        if self._inode is None:
            # First open: resume from the committed offset, if any.
            position = 0
            if self.context is not None:
                offset = self.context.offset_storage_reader().offset(
                    {FILENAME_FIELD: self.filename})
                if offset is not None:
                    value = offset.get(POSITION_FIELD)
                    if not isinstance(value, int):
                        from strom.connect.errors import ConnectException
                        raise ConnectException("Offset position is the incorrect type")
                    position = value
            if position > st.st_size:  # rotated or truncated while we were down
                position = 0
            stream.seek(position)
            self._position = position
        else:
            self._position = 0
        self._inode = st.st_ino
        self._stream = stream
        self._pending = b""
        return True

    def _rotated(self) -> bool:
        if self.filename is None or self._stream is None:
            return False
        try:
            st = os.stat(self.filename)
        except FileNotFoundError:
            return False  # being rotated: keep reading the old one until the new one appears
        own = os.fstat(self._stream.fileno())
        if st.st_ino != self._inode:
            # Replaced: finish the old file first (lines written before the rename).
            return self._stream.tell() >= own.st_size
        return st.st_size < self._position + len(self._pending)

    def poll(self) -> list[SourceRecord] | None:
        if self._stream is None and not self._open():
            time.sleep(POLL_WAIT_S)
            return None
        if self._rotated():
            log.info("file %s was rotated or truncated: reading it from the start", self.filename)
            if self._stream is not None and self._stream is not sys.stdin.buffer:
                self._stream.close()
            self._stream = None
            if not self._open():
                return None
        records = self._read_lines()
        if not records:
            time.sleep(POLL_WAIT_S)
            return None
        return records

    def _read_lines(self) -> list[SourceRecord]:
        assert self._stream is not None
        records: list[SourceRecord] = []
        if self.filename is None:
            line = self._stream.readline()
            if line:
                self._pending += line
        else:
            chunk = self._stream.read(1 << 16)
            if chunk:
                self._pending += chunk
        pending, start = self._pending, 0  # cut once at the end, not after every line
        while len(records) < self.batch_size:
            newline = pending.find(b"\n", start)
            if newline < 0:
                break
            raw = pending[start:newline]
            self._position += newline + 1 - start
            start = newline + 1
            records.append(self._record(raw.rstrip(b"\r").decode("utf-8", "replace")))
        self._pending = pending[start:]
        return records

    def _record(self, line: str) -> SourceRecord:
        from strom.connect.data import STRING_SCHEMA, Headers
        from strom.connect.records import SourceRecord
        partition = self._partition()
        offset = {POSITION_FIELD: self._position} if partition is not None else None
        return SourceRecord(topic=self.topic, kafka_partition=None, key_schema=None, key=None,
                            value_schema=STRING_SCHEMA, value=line, timestamp=None,
                            headers=Headers(), source_partition=partition or {},
                            source_offset=offset or {})

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None and self._stream is not sys.stdin.buffer:
            self._stream.close()
        self._stream = None


class FileStreamSinkConnector(SinkConnector):
    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return _sink_config_def()

    def start(self, props: Mapping[str, str]) -> None:
        self._props = dict(props)

    def task_class(self) -> type[Task]:
        return FileStreamSinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self._props) for _ in range(max_tasks)]

    def stop(self) -> None:
        pass


class FileStreamSinkTask(SinkTask):
    def __init__(self) -> None:
        self.filename: str | None = None
        self._out: IO[str] | None = None

    def version(self) -> str:
        return __version__

    def start(self, props: Mapping[str, str]) -> None:
        self.filename = props.get(FILE_CONFIG) or None
        if self.filename is None:
            self._out = sys.stdout
        else:
            self._out = open(self.filename, "a", encoding="utf-8")  # noqa: SIM115

    def put(self, records: Sequence[SinkRecord]) -> None:
        assert self._out is not None
        for record in records:
            self._out.write(_text(record.value) + "\n")
        # Visible at once (Kafka's only at the next offset flush); durable at flush().
        self._out.flush()

    def flush(self, current_offsets: Mapping[TopicPartition, int]) -> None:
        if self._out is not None:
            self._out.flush()
            if self._out is not sys.stdout:
                os.fsync(self._out.fileno())

    def stop(self) -> None:
        if self._out is not None and self._out is not sys.stdout:
            self._out.close()
        self._out = None


def _text(value: Any) -> str:
    """The line a record value is written as (Java's String.valueOf: null, maps as {a=1}...)."""
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)
