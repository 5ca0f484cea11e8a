"""S3Sink: records written to an S3-compatible object store as Parquet or JSON lines files,
answering to Confluent's class name `io.confluent.connect.s3.S3SinkConnector` and its main
configs.

Files are named as Confluent's:
``<topics.dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start offset>.<ext>``,
the start offset zero-padded to `filename.offset.zero.pad.width` digits. The encoded partition
comes from the partitioner: `partition=<n>` (DefaultPartitioner), `<field>=<value>`
(FieldPartitioner), or a time bucket formatted with `path.format` (TimeBasedPartitioner,
Daily, Hourly).

Exactly-once file commits: a Kafka partition's records are held in memory until a rotation
(`flush.size` records, `rotate.interval.ms` of record time, `rotate.schedule.interval.ms` of
wall-clock time, or a new value schema); then every file open for the partition is uploaded
whole under a name derived from its first offset, and only then may the consumer offset move
past them (`pre_commit` returns, per partition, the offset of the first record not uploaded).
A task that stops or crashes before committing has its records redelivered from the committed
offset; the same records cut at the same places give the same object names with the same
bytes, so the objects are overwritten, not duplicated (this needs deterministic rotation: record
or record-field timestamps, not Wallclock or the rotation schedule).

Every file of a commit carries the commit's first and last offsets and its number of files in
its metadata. With `s3.offset.recovery.enabled` a newly assigned partition resumes after the
newest commit whose files are all in the bucket: a commit cut short (an upload failed, the
worker died while uploading) is not trusted, the previous complete one (or the group offset)
is, so the missing file's records are delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import re
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strom import __version__
from strom.connect.api import SinkConnector, SinkTask, Task, TopicPartition
from strom.connect.data import Schema, Struct, datetime_to_millis
from strom.connect.errors import ConfigException, ConnectException, DataException
from strom.connect.s3_formats import Format, make_format

if TYPE_CHECKING:
    from strom.connect.config import ConfigDef
    from strom.connect.records import SinkRecord

log = logging.getLogger(__name__)

BUCKET = "s3.bucket.name"
REGION = "s3.region"
STORE_URL = "store.url"
ACCESS_KEY = "aws.access.key.id"
SECRET_KEY = "aws.secret.access.key"
PATH_STYLE = "s3.path.style.access.enabled"
PART_RETRIES = "s3.part.retries"
TOPICS_DIR = "topics.dir"
DIRECTORY_DELIM = "directory.delim"
FILE_DELIM = "file.delim"
ZERO_PAD = "filename.offset.zero.pad.width"
FORMAT_CLASS = "format.class"
COMPRESSION = "s3.compression.type"
PARQUET_CODEC = "parquet.codec"
FLUSH_SIZE = "flush.size"
ROTATE_INTERVAL = "rotate.interval.ms"
ROTATE_SCHEDULE = "rotate.schedule.interval.ms"
PARTITIONER = "partitioner.class"
PARTITION_FIELDS = "partition.field.name"
PATH_FORMAT = "path.format"
PARTITION_DURATION = "partition.duration.ms"
LOCALE = "locale"
TIMEZONE = "timezone"
TIMESTAMP_EXTRACTOR = "timestamp.extractor"
TIMESTAMP_FIELD = "timestamp.field"
NULL_VALUES = "behavior.on.null.values"
OFFSET_RECOVERY = "s3.offset.recovery.enabled"

_PARTITIONERS = "io.confluent.connect.storage.partitioner."
DEFAULT_PARTITIONER = _PARTITIONERS + "DefaultPartitioner"
HOURLY = ("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", 3_600_000)
DAILY = ("'year'=YYYY/'month'=MM/'day'=dd", 86_400_000)
COMMIT_END_METADATA = "kafka-commit-end-offset"
COMMIT_START_METADATA = "kafka-commit-start-offset"
COMMIT_FILES_METADATA = "kafka-commit-files"
RECOVERY_HEADS = 16  # object metadata read at a time during recovery


def config_def() -> ConfigDef:
    from strom.connect.config import (
        NO_DEFAULT,
        CaseInsensitiveValidString,
        ConfigDef,
        ConfigType,
        Importance,
        NonEmptyString,
        Range,
    )
    d = ConfigDef()
    d.define(BUCKET, ConfigType.STRING, NO_DEFAULT, Importance.HIGH, "The S3 bucket",
             validator=NonEmptyString())
    d.define(REGION, ConfigType.STRING, "us-west-2", Importance.MEDIUM, "The AWS region")
    d.define(STORE_URL, ConfigType.STRING, None, Importance.HIGH,
             "The S3 endpoint URL of an S3-compatible store (AWS when unset)")
    d.define(ACCESS_KEY, ConfigType.STRING, None, Importance.HIGH,
             "The access key (the default AWS credentials chain when unset)")
    d.define(SECRET_KEY, ConfigType.PASSWORD, None, Importance.HIGH, "The secret key")
    d.define(PATH_STYLE, ConfigType.BOOLEAN, True, Importance.LOW,
             "Path-style bucket addressing (most S3-compatible stores need it)")
    d.define(PART_RETRIES, ConfigType.INT, 3, Importance.MEDIUM,
             "Retries of a failed upload", validator=Range.at_least(0))
    d.define(TOPICS_DIR, ConfigType.STRING, "topics", Importance.HIGH,
             "The top directory of the files")
    d.define(DIRECTORY_DELIM, ConfigType.STRING, "/", Importance.MEDIUM, "Directory delimiter")
    d.define(FILE_DELIM, ConfigType.STRING, "+", Importance.MEDIUM,
             "Delimiter of topic, partition and offset in file names")
    d.define(ZERO_PAD, ConfigType.INT, 10, Importance.LOW,
             "Width of the zero-padded start offset in file names", validator=Range.at_least(0))
    d.define(FORMAT_CLASS, ConfigType.STRING, NO_DEFAULT, Importance.HIGH,
             "io.confluent.connect.s3.format.parquet.ParquetFormat or "
             "io.confluent.connect.s3.format.json.JsonFormat", validator=NonEmptyString())
    d.define(COMPRESSION, ConfigType.STRING, "none", Importance.LOW,
             "Compression of JSON files: none or gzip",
             validator=CaseInsensitiveValidString.in_("none", "gzip"))
    d.define(PARQUET_CODEC, ConfigType.STRING, "snappy", Importance.LOW,
             "Parquet compression: none, snappy, gzip, lz4, zstd, brotli")
    d.define(FLUSH_SIZE, ConfigType.INT, NO_DEFAULT, Importance.HIGH,
             "Records of a Kafka partition per commit of files", validator=Range.at_least(1))
    d.define(ROTATE_INTERVAL, ConfigType.LONG, -1, Importance.HIGH,
             "Commit when a record's timestamp is this far (ms) from the first one's (-1: off)")
    d.define(ROTATE_SCHEDULE, ConfigType.LONG, -1, Importance.MEDIUM,
             "Commit open files at wall-clock multiples of this interval (ms; -1: off)")
    d.define(PARTITIONER, ConfigType.STRING, DEFAULT_PARTITIONER, Importance.HIGH,
             "DefaultPartitioner, FieldPartitioner, TimeBasedPartitioner, DailyPartitioner or "
             "HourlyPartitioner (io.confluent.connect.storage.partitioner.*)")
    d.define(PARTITION_FIELDS, ConfigType.LIST, "", Importance.MEDIUM,
             "FieldPartitioner: the value fields to partition by")
    d.define(PATH_FORMAT, ConfigType.STRING, "", Importance.MEDIUM,
             "TimeBasedPartitioner: a Joda-Time pattern, e.g. 'year'=YYYY/'month'=MM/'day'=dd")
    d.define(PARTITION_DURATION, ConfigType.LONG, -1, Importance.MEDIUM,
             "TimeBasedPartitioner: the duration of a partition (ms)")
    d.define(LOCALE, ConfigType.STRING, "", Importance.LOW,
             "TimeBasedPartitioner: the locale (English names only)")
    d.define(TIMEZONE, ConfigType.STRING, "", Importance.MEDIUM,
             "TimeBasedPartitioner: the time zone of the paths (e.g. UTC, Europe/Paris)")
    d.define(TIMESTAMP_EXTRACTOR, ConfigType.STRING, "Wallclock", Importance.MEDIUM,
             "Wallclock, Record or RecordField")
    d.define(TIMESTAMP_FIELD, ConfigType.STRING, "timestamp", Importance.MEDIUM,
             "RecordField: the value field holding the time (dotted for nested fields)")
    d.define(NULL_VALUES, ConfigType.STRING, "fail", Importance.LOW,
             "Null values (tombstones): fail or ignore",
             validator=CaseInsensitiveValidString.in_("fail", "ignore"))
    d.define(OFFSET_RECOVERY, ConfigType.BOOLEAN, False, Importance.LOW,
             "On partition assignment, resume after the newest complete commit in the bucket")
    return d


# ---------------------------------------------------------------------------------------------
# Timestamps and partitioners


def _millis(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise DataException(f"{what}: a boolean is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, _dt.datetime):
        return datetime_to_millis(value)
    if isinstance(value, _dt.date):
        return datetime_to_millis(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        try:
            return _millis(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")), what)
        except ValueError:
            pass
    raise DataException(f"{what}: cannot read {value!r} as a timestamp")


def field_value(value: Any, path: str) -> Any:
    """A (dotted) field of a Struct or map value."""
    for name in path.split("."):
        if isinstance(value, Struct):
            if value.schema.field(name) is None:
                raise DataException(f"field {path} not in the value's schema")
            value = value.get(name)
        elif isinstance(value, Mapping):
            if name not in value:
                raise DataException(f"field {path} not in the value")
            value = value[name]
        else:
            raise DataException(f"field {path}: the value is not a struct or a map")
    return value


class TimestampExtractor:
    def __init__(self, kind: str, field_name: str) -> None:
        simple = re.split(r"[.$]", kind.strip())[-1]
        if simple not in ("Wallclock", "Record", "RecordField"):
            raise ConfigException(TIMESTAMP_EXTRACTOR, kind,
                                  "Supported: Wallclock, Record, RecordField")
        self.kind = simple
        self.field = field_name

    @property
    def deterministic(self) -> bool:
        return self.kind != "Wallclock"

    def extract(self, record: SinkRecord) -> int:
        if self.kind == "Wallclock":
            return int(time.time() * 1000)
        if self.kind == "Record":
            if record.timestamp is None:
                raise DataException(f"record {record.topic}-{record.kafka_partition}@"
                                    f"{record.kafka_offset} has no timestamp")
            return record.timestamp
        return _millis(field_value(record.value, self.field), f"field {self.field}")


def joda_to_java(pattern: str) -> str:
    """A Joda-Time pattern as the SimpleDateFormat one our formatter reads (Y, year of era,
    is y for positive years)."""
    out = []
    for match in re.finditer(r"'(?:[^']|'')*'|[^']+", pattern):
        token = match.group(0)
        out.append(token if token.startswith("'") else token.replace("Y", "y"))
    return "".join(out)


class Partitioner:
    time_based = False

    def encode(self, record: SinkRecord) -> str:
        raise NotImplementedError


class DefaultPartitioner(Partitioner):
    def encode(self, record: SinkRecord) -> str:
        return f"partition={record.kafka_partition}"


class FieldPartitioner(Partitioner):
    def __init__(self, fields: Sequence[str], delim: str) -> None:
        if not fields:
            raise ConfigException(PARTITION_FIELDS, "", "FieldPartitioner needs fields")
        self.fields = list(fields)
        self.delim = delim

    def encode(self, record: SinkRecord) -> str:
        parts = []
        for name in self.fields:
            value = field_value(record.value, name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | str):
                text = str(value)
            else:
                raise DataException(f"FieldPartitioner: field {name} is a "
                                    f"{type(value).__name__}, not an integer, string or "
                                    "boolean")
            parts.append(f"{name}={text}")
        return self.delim.join(parts)


class TimeBasedPartitioner(Partitioner):
    time_based = True

    def __init__(self, path_format: str, duration_ms: int, timezone: str,
                 extractor: TimestampExtractor) -> None:
        from strom.connect.transforms.dateformat import JavaDateFormat
        if not path_format:
            raise ConfigException(PATH_FORMAT, path_format, "TimeBasedPartitioner needs it")
        if duration_ms <= 0:
            raise ConfigException(PARTITION_DURATION, duration_ms,
                                  "TimeBasedPartitioner needs a positive duration")
        if not timezone:
            raise ConfigException(TIMEZONE, timezone, "TimeBasedPartitioner needs a timezone")
        try:
            self.zone: _dt.tzinfo = (_dt.UTC if timezone.upper() == "UTC"
                                     else zoneinfo.ZoneInfo(timezone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigException(TIMEZONE, timezone, "Unknown time zone") from None
        try:
            self.format = JavaDateFormat(joda_to_java(path_format))
        except ValueError as error:
            raise ConfigException(PATH_FORMAT, path_format, str(error)) from None
        self.duration_ms = duration_ms
        self.extractor = extractor

    def bucket(self, timestamp_ms: int) -> int:
        """The start of the partition holding `timestamp_ms`, buckets aligned in the zone (as
        Confluent's TimeBasedPartitioner.getPartition)."""
        moment = _dt.datetime.fromtimestamp(timestamp_ms / 1000, _dt.UTC)
        offset = self.zone.utcoffset(moment.astimezone(self.zone))
        offset_ms = int(offset.total_seconds() * 1000) if offset is not None else 0
        adjusted = timestamp_ms + offset_ms
        return (adjusted // self.duration_ms) * self.duration_ms - offset_ms

    def encode_time(self, timestamp_ms: int) -> str:
        start = _dt.datetime.fromtimestamp(self.bucket(timestamp_ms) / 1000, _dt.UTC)
        local = start.astimezone(self.zone).replace(tzinfo=None)
        return self.format.format(local)

    def encode(self, record: SinkRecord) -> str:
        return self.encode_time(self.extractor.extract(record))


def make_partitioner(c: Mapping[str, Any]) -> Partitioner:
    name = str(c[PARTITIONER]).strip()
    simple = name.rsplit(".", 1)[-1]
    extractor = TimestampExtractor(c[TIMESTAMP_EXTRACTOR], c[TIMESTAMP_FIELD])
    if simple == "DefaultPartitioner":
        return DefaultPartitioner()
    if simple == "FieldPartitioner":
        return FieldPartitioner(c[PARTITION_FIELDS], c[DIRECTORY_DELIM])
    if simple == "TimeBasedPartitioner":
        return TimeBasedPartitioner(c[PATH_FORMAT], int(c[PARTITION_DURATION]), c[TIMEZONE],
                                    extractor)
    if simple in ("DailyPartitioner", "HourlyPartitioner"):
        path_format, duration = DAILY if simple == "DailyPartitioner" else HOURLY
        return TimeBasedPartitioner(path_format, duration, c[TIMEZONE], extractor)
    raise ConfigException(PARTITIONER, name, "Supported: DefaultPartitioner, FieldPartitioner, "
                          "TimeBasedPartitioner, DailyPartitioner, HourlyPartitioner")


# ---------------------------------------------------------------------------------------------
# The connector


class S3SinkConnector(SinkConnector):
    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return config_def()

    def start(self, props: Mapping[str, str]) -> None:
        c = config_def().parse(props)
        make_partitioner(c)
        make_format(c[FORMAT_CLASS], c[PARQUET_CODEC], c[COMPRESSION])
        self._props = dict(props)

    def task_class(self) -> type[Task]:
        return S3SinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self._props) for _ in range(max_tasks)]

    def stop(self) -> None:
        pass


@dataclass
class _File:
    """An open file: its topic (after transforms), encoded partition, first offset and rows."""
    topic: str
    encoded: str
    start_offset: int
    rows: list[Any] = field(default_factory=list)


@dataclass
class _PartitionWriter:
    """The open files of one consumed Kafka partition, committed together."""
    tp: TopicPartition
    files: dict[tuple[str, str], _File] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)  # of the buffered records, in order
    keys: list[tuple[str, str]] = field(default_factory=list)  # their files
    schema: Schema | None = None
    base_timestamp: int | None = None
    encoded: str | None = None
    schedule_deadline: float | None = None

    @property
    def count(self) -> int:
        return len(self.offsets)

    def reset(self) -> None:
        self.files.clear()
        self.offsets.clear()
        self.keys.clear()
        self.schema = None
        self.base_timestamp = None
        self.encoded = None
        self.schedule_deadline = None


class S3SinkTask(SinkTask):
    def __init__(self) -> None:
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self.writers: dict[TopicPartition, _PartitionWriter] = {}
        # s3.offset.recovery.enabled: the first offset not in the bucket, per partition
        self.resume: dict[TopicPartition, int] = {}
        self.uploaded: list[str] = []  # object keys, in upload order (for tests and logs)

    def version(self) -> str:
        return __version__

    async def start(self, props: Mapping[str, str]) -> None:
        c = config_def().parse(props)
        self.bucket: str = c[BUCKET]
        self.topics_dir: str = c[TOPICS_DIR]
        self.dir_delim: str = c[DIRECTORY_DELIM]
        self.file_delim: str = c[FILE_DELIM]
        self.zero_pad = int(c[ZERO_PAD])
        self.format: Format = make_format(c[FORMAT_CLASS], c[PARQUET_CODEC], c[COMPRESSION])
        self.partitioner = make_partitioner(c)
        self.flush_size = int(c[FLUSH_SIZE])
        self.rotate_interval = int(c[ROTATE_INTERVAL])
        self.rotate_schedule = int(c[ROTATE_SCHEDULE])
        self.extractor = TimestampExtractor(c[TIMESTAMP_EXTRACTOR], c[TIMESTAMP_FIELD])
        self.ignore_nulls = str(c[NULL_VALUES]).lower() == "ignore"
        self.offset_recovery = bool(c[OFFSET_RECOVERY])
        self.tolerate = props.get("errors.tolerance", "none").strip().lower() == "all"
        self._client = await self._stack.enter_async_context(self._create_client(c))

    @staticmethod
    def _create_client(c: Mapping[str, Any]) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session
        secret = c[SECRET_KEY]
        config = AioConfig(
            s3={"addressing_style": "path" if c[PATH_STYLE] else "auto"},
            retries={"max_attempts": int(c[PART_RETRIES]) + 1, "mode": "standard"},
            # S3-compatible stores may not know the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        return get_session().create_client(
            "s3", region_name=c[REGION], endpoint_url=c[STORE_URL] or None,
            aws_access_key_id=c[ACCESS_KEY] or None,
            aws_secret_access_key=secret.value if secret is not None else None, config=config)

    # -- naming

    def object_key(self, file: _File, kafka_partition: int) -> str:
        name = (f"{file.topic}{self.file_delim}{kafka_partition}{self.file_delim}"
                f"{file.start_offset:0{self.zero_pad}d}{self.format.extension}")
        return self.dir_delim.join(
            p for p in (self.topics_dir, file.topic, file.encoded, name) if p)

    # -- SinkTask

    async def open(self, partitions: Sequence[TopicPartition]) -> None:
        if self.offset_recovery:
            for tp in partitions:
                await self._recover(tp)

    async def put(self, records: Sequence[SinkRecord]) -> None:
        for record in records:
            await self._write(record)
        await self._rotate_scheduled()

    async def _write(self, record: SinkRecord) -> None:
        tp = TopicPartition(record.original_topic or record.topic,
                            record.original_kafka_partition or 0)
        offset = (record.original_kafka_offset if record.original_kafka_offset is not None
                  else record.kafka_offset)
        if offset < self.resume.get(tp, -1):
            return  # in the bucket already (the worker seeks past it after this batch)
        writer = self.writers.setdefault(tp, _PartitionWriter(tp))
        if writer.offsets and offset <= writer.offsets[-1]:
            self._truncate(writer, offset)
        if record.value is None:
            self._null(tp, offset)
            return
        try:
            row = self.format.row(record.topic, record.value_schema, record.value)
            encoded = self.partitioner.encode(record)
            timestamp = self._rotation_timestamp(record)
        except DataException as error:
            await self._errant(record, error)
            return
        if writer.count and self._must_rotate(writer, record, encoded, timestamp):
            await self._commit(writer)
        key = (record.topic, encoded)
        file = writer.files.get(key)
        if file is None:
            file = writer.files[key] = _File(record.topic, encoded, offset)
        file.rows.append(row)
        writer.offsets.append(offset)
        writer.keys.append(key)
        writer.schema = record.value_schema
        writer.encoded = encoded
        if writer.base_timestamp is None:
            writer.base_timestamp = timestamp
        if writer.schedule_deadline is None and self.rotate_schedule > 0:
            now_ms = time.time() * 1000
            writer.schedule_deadline = (now_ms // self.rotate_schedule + 1) * self.rotate_schedule
        if writer.count >= self.flush_size:
            await self._commit(writer)

    def _null(self, tp: TopicPartition, offset: int) -> None:
        if not self.ignore_nulls:
            raise ConnectException(
                f"Null valued records are not writeable with current behavior.on.null.values "
                f"'fail' setting (record {tp.topic}-{tp.partition}@{offset})")

    def _rotation_timestamp(self, record: SinkRecord) -> int | None:
        if self.rotate_interval <= 0:
            return None
        if isinstance(self.partitioner, TimeBasedPartitioner):
            return self.partitioner.extractor.extract(record)
        return record.timestamp if record.timestamp is not None else int(time.time() * 1000)

    def _must_rotate(self, writer: _PartitionWriter, record: SinkRecord, encoded: str,
                     timestamp: int | None) -> bool:
        if record.value_schema != writer.schema:
            return True  # schema.compatibility NONE: a new schema starts new files
        if self.rotate_interval > 0 and timestamp is not None:
            assert writer.base_timestamp is not None
            if timestamp - writer.base_timestamp >= self.rotate_interval:
                return True
            if self.partitioner.time_based and encoded != writer.encoded:
                return True
        return False

    def _truncate(self, writer: _PartitionWriter, offset: int) -> None:
        """Drop the buffered records from `offset` on (they are being redelivered)."""
        kept = [(o, key) for o, key in zip(writer.offsets, writer.keys, strict=True)
                if o < offset]
        if not kept:
            writer.reset()
            return
        per_file: dict[tuple[str, str], int] = {}
        for _, key in kept:
            per_file[key] = per_file.get(key, 0) + 1
        for key in list(writer.files):
            if key in per_file:
                del writer.files[key].rows[per_file[key]:]  # rows are in offset order
            else:
                del writer.files[key]
        writer.offsets = [o for o, _ in kept]
        writer.keys = [key for _, key in kept]
        writer.encoded = kept[-1][1][1]

    async def _errant(self, record: SinkRecord, error: Exception) -> None:
        reporter = self.context.errant_record_reporter() if self.context is not None else None
        if not self.tolerate or reporter is None:
            raise ConnectException(f"cannot write record {record.topic}-"
                                   f"{record.kafka_partition}@{record.kafka_offset}: {error}"
                                   ) from error
        from strom.connect.http_sink import await_report
        await await_report(reporter.report(record, error))

    async def _rotate_scheduled(self) -> None:
        if self.rotate_schedule <= 0:
            return
        now_ms = time.time() * 1000
        for writer in list(self.writers.values()):
            if writer.count and writer.schedule_deadline is not None \
                    and now_ms >= writer.schedule_deadline:
                await self._commit(writer)

    async def _commit(self, writer: _PartitionWriter) -> None:
        """Upload every open file of the partition, whole, then forget them."""
        if not writer.count:
            return
        files = sorted(writer.files.values(), key=lambda f: (f.start_offset, f.encoded))
        # Each file names its commit (first and last offsets) and the commit's file count:
        # recovery trusts a commit only when all its files are there.
        metadata = {COMMIT_START_METADATA: str(writer.offsets[0]),
                    COMMIT_END_METADATA: str(writer.offsets[-1]),
                    COMMIT_FILES_METADATA: str(len(files))}
        uploads = []
        for file in files:
            key = self.object_key(file, writer.tp.partition)
            body = self.format.render(writer.schema, file.rows)
            uploads.append(self._upload(key, body, metadata))
        await asyncio.gather(*uploads)
        log.debug("S3 sink: committed %d files of %s up to offset %d", len(uploads), writer.tp,
                  writer.offsets[-1])
        writer.reset()

    async def _upload(self, key: str, body: bytes, metadata: Mapping[str, str]) -> None:
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=self.format.content_type,
                Metadata=dict(metadata))
        except Exception as error:
            raise ConnectException(f"cannot upload s3://{self.bucket}/{key}: {error}") from error
        self.uploaded.append(key)

    async def pre_commit(self, current_offsets: Mapping[TopicPartition, int]
                         ) -> Mapping[TopicPartition, int]:
        await self._rotate_scheduled()
        offsets = {}
        for tp, offset in current_offsets.items():
            writer = self.writers.get(tp)
            offsets[tp] = writer.offsets[0] if writer is not None and writer.offsets else offset
        return offsets

    def close(self, partitions: Sequence[TopicPartition]) -> None:
        # Uncommitted records are redelivered to the partitions' next owner.
        for tp in partitions:
            self.writers.pop(tp, None)
            self.resume.pop(tp, None)

    async def stop(self) -> None:
        self.writers.clear()
        await self._stack.aclose()
        self._client = None

    # -- recovery from the bucket

    async def _recover(self, tp: TopicPartition) -> None:
        """Resume after the newest complete commit found in the bucket. The file of `tp` with
        the highest start offset names its commit (first and last offsets, file count); the
        commit is complete when that many files of its offset range carry the same commit. An
        incomplete one (an upload failed or the worker died mid-commit) is skipped: the commit
        before it is looked at, and without a complete commit the group offset stands."""
        assert self._client is not None and self.context is not None
        files = await self._files_of(tp)
        heads = asyncio.Semaphore(RECOVERY_HEADS)

        async def metadata(key: str) -> Mapping[str, str]:
            async with heads:
                head = await self._client.head_object(Bucket=self.bucket, Key=key)
            return dict(head.get("Metadata", {}))

        bound: int | None = None  # only files starting below it are left to look at
        for start_offset, key in files:
            if bound is not None and start_offset >= bound:
                continue
            meta = await metadata(key)
            commit = _commit_of(meta)
            if commit is None:
                bound = start_offset  # not a file of this sink's: look below it
                continue
            first, end, count = commit
            if count is None:  # written by an older version: its end offset only
                self._resume_at(tp, end + 1, key)
                return
            members = [k for offset, k in files if first <= offset <= end and k != key]
            if len(members) + 1 >= count:
                others = await asyncio.gather(*(metadata(k) for k in members))
                found = 1 + sum(1 for m in others if _commit_of(m) == commit)
                if found == count:
                    self._resume_at(tp, end + 1, key)
                    return
            log.warning("S3 sink: the commit of %s offsets %d..%d is incomplete (%s has "
                        "%d files, fewer found): not trusted, looking at the one before",
                        tp, first, end, key, count)
            bound = min(first, start_offset)
        log.info("S3 sink: no complete commit of %s in the bucket: the group offset stands", tp)

    async def _files_of(self, tp: TopicPartition) -> list[tuple[int, str]]:
        """(start offset, object key) of the partition's files in the bucket, highest first."""
        prefix = self.dir_delim.join(p for p in (self.topics_dir, tp.topic) if p) + self.dir_delim
        pattern = re.compile(re.escape(f"{tp.topic}{self.file_delim}{tp.partition}"
                                       f"{self.file_delim}") + r"(\d+)\.")
        files: list[tuple[int, str]] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit(self.dir_delim, 1)[-1]
                match = pattern.match(name)
                if match:
                    files.append((int(match.group(1)), item["Key"]))
        files.sort(reverse=True)
        return files

    def _resume_at(self, tp: TopicPartition, offset: int, key: str) -> None:
        assert self.context is not None
        log.info("S3 sink: %s resumes at offset %d after %s", tp, offset, key)
        self.resume[tp] = offset
        self.context.offset(tp, offset)


def _commit_of(meta: Mapping[str, str]) -> tuple[int, int, int | None] | None:
    """(first offset, last offset, file count) of the commit an object's metadata names; the
    first offset and count are unknown (-1, None) for files of older versions, None for
    objects without the end offset."""
    try:
        end = int(meta[COMMIT_END_METADATA])
    except (KeyError, ValueError):
        return None
    try:
        return int(meta[COMMIT_START_METADATA]), end, int(meta[COMMIT_FILES_METADATA])
    except (KeyError, ValueError):
        return -1, end, None
