"""The S3 sink against a real S3-compatible server (SeaweedFS, started by the fixture): Parquet
files of records with schemas read back with pyarrow, JSON lines of schemaless values,
Default/Field/TimeBased partitioner paths, Confluent's file names, offsets committed only past
uploaded files, and a crash before the offset commit: the redelivery writes the same objects with
the same bytes, no row twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from strom.connect.api import ErrantRecordReporter, SinkTaskContext, TopicPartition
from strom.connect.data import (
    INT32_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Decimal,
    SchemaBuilder,
    Struct,
    Timestamp,
)
from strom.connect.discovery import find_connector
from strom.connect.errors import ConfigException, ConnectException
from strom.connect.records import SinkRecord
from strom.connect.s3_sink import (
    S3SinkConnector,
    S3SinkTask,
    TimeBasedPartitioner,
    TimestampExtractor,
    joda_to_java,
)
from tests.integration.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, S3Server

TOPIC = "orders"
TP = TopicPartition(TOPIC, 0)
PARQUET = "io.confluent.connect.s3.format.parquet.ParquetFormat"
JSON = "io.confluent.connect.s3.format.json.JsonFormat"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


_buckets = iter(range(1_000_000))


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"sink-{next(_buckets)}"
    s3.create_bucket(name)
    return name


class Reporter:
    def __init__(self) -> None:
        self.reported: list[tuple[SinkRecord, BaseException]] = []

    def report(self, record: SinkRecord, error: BaseException) -> None:
        self.reported.append((record, error))


class Context(SinkTaskContext):
    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter
        self.resets: dict[TopicPartition, int] = {}

    def offset(self, offsets: Any, offset: int | None = None) -> None:
        if isinstance(offsets, TopicPartition):
            assert offset is not None
            self.resets[offsets] = offset
        else:
            self.resets.update(offsets)

    def timeout(self, timeout_ms: int) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def request_commit(self) -> None:
        pass

    def errant_record_reporter(self) -> ErrantRecordReporter | None:
        return self.reporter


def props(s3: S3Server, bucket: str, **extra: str) -> dict[str, str]:
    return {"s3.bucket.name": bucket, "s3.region": REGION, "store.url": s3.url,
            "aws.access.key.id": ACCESS_KEY, "aws.secret.access.key": SECRET_KEY,
            "format.class": JSON, "flush.size": "3", **extra}


async def started(config: dict[str, str], context: Context | None = None) -> S3SinkTask:
    connector = S3SinkConnector()
    connector.start(config)
    [task_config] = connector.task_configs(1)
    task = S3SinkTask()
    task.initialize(context or Context())
    await task.start(task_config)
    await task.open([TP])
    return task


def record(offset: int, value: Any, schema: Any = None, timestamp: int | None = None,
           partition: int = 0) -> SinkRecord:
    return SinkRecord(topic=TOPIC, kafka_partition=partition, key=None, value=value,
                      value_schema=schema, kafka_offset=offset, timestamp=timestamp)


ADDRESS = SchemaBuilder.struct().name("Address").field("city", STRING_SCHEMA) \
    .field("zip", OPTIONAL_STRING_SCHEMA).optional().build()
ORDER = (SchemaBuilder.struct().name("com.example.Order")
         .field("id", INT32_SCHEMA)
         .field("item", STRING_SCHEMA)
         .field("price", Decimal.schema(2))
         .field("at", Timestamp.SCHEMA)
         .field("tags", SchemaBuilder.array(STRING_SCHEMA).build())
         .field("counts", SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build())
         .field("address", ADDRESS)
         .build())
T0 = dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)


def order(i: int) -> Struct:
    address = None if i % 2 else Struct(ADDRESS).put("city", f"city-{i}")
    return (Struct(ORDER).put("id", i).put("item", f"item-{i}")
            .put("price", decimal.Decimal(f"{i}.25")).put("at", T0 + dt.timedelta(minutes=i))
            .put("tags", [f"t{i}", "x"]).put("counts", {"a": i}).put("address", address))


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def test_parquet_files_of_records_with_schemas(s3: S3Server, bucket: str) -> None:
    async def scenario() -> None:
        task = await started(props(s3, bucket, **{"format.class": PARQUET}))
        try:
            await task.put([record(i, order(i), ORDER) for i in range(7)])
            # two files of 3 uploaded; the 7th record waits: offsets stop before it
            assert await task.pre_commit({TP: 7}) == {TP: 6}
        finally:
            await task.stop()

    asyncio.run(scenario())
    keys = s3.keys(bucket)
    assert keys == ["topics/orders/partition=0/orders+0+0000000000.snappy.parquet",
                    "topics/orders/partition=0/orders+0+0000000003.snappy.parquet"]
    first = read_parquet(s3.get(bucket, keys[0]))
    assert first.column_names == ["id", "item", "price", "at", "tags", "counts", "address"]
    assert first.schema.field("id").type == pa.int32()
    assert first.schema.field("price").type == pa.decimal128(38, 2)
    assert first.schema.field("at").type == pa.timestamp("ms", tz="UTC")
    assert not first.schema.field("id").nullable
    assert first.schema.field("address").nullable
    rows = first.to_pylist()
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert rows[1] == {"id": 1, "item": "item-1", "price": decimal.Decimal("1.25"),
                       "at": T0 + dt.timedelta(minutes=1), "tags": ["t1", "x"],
                       "counts": [("a", 1)], "address": None}
    assert rows[2]["address"] == {"city": "city-2", "zip": None}
    second = read_parquet(s3.get(bucket, keys[1]))
    assert [r["id"] for r in second.to_pylist()] == [3, 4, 5]


def test_json_lines_of_schemaless_values_by_field(s3: S3Server, bucket: str) -> None:
    values = [{"region": "eu", "n": 0}, {"region": "us", "n": 1}, {"region": "eu", "n": 2},
              {"region": "us", "n": 3}, {"region": "eu", "n": 4}]

    async def scenario() -> None:
        task = await started(props(s3, bucket, **{
            "partitioner.class": "io.confluent.connect.storage.partitioner.FieldPartitioner",
            "partition.field.name": "region", "flush.size": "4", "topics.dir": "raw"}))
        try:
            await task.put([record(i, v) for i, v in enumerate(values)])
            assert await task.pre_commit({TP: 5}) == {TP: 4}
        finally:
            await task.stop()

    asyncio.run(scenario())
    # flush.size counts the Kafka partition's records; the commit writes a file per field value
    assert s3.keys(bucket) == ["raw/orders/region=eu/orders+0+0000000000.json",
                               "raw/orders/region=us/orders+0+0000000001.json"]
    eu = s3.get(bucket, "raw/orders/region=eu/orders+0+0000000000.json").decode()
    assert [json.loads(line) for line in eu.splitlines()] == [values[0], values[2]]
    us = s3.get(bucket, "raw/orders/region=us/orders+0+0000000001.json").decode()
    assert us == '{"region":"us","n":1}\n{"region":"us","n":3}\n'


def test_time_based_partitioner_paths(s3: S3Server, bucket: str) -> None:
    stamps = [int(dt.datetime(2024, 5, 1, h, m, s, tzinfo=dt.UTC).timestamp() * 1000)
              for h, m, s in ((10, 30, 0), (11, 0, 0), (11, 59, 59), (12, 0, 1))]

    async def scenario() -> None:
        task = await started(props(s3, bucket, **{
            "partitioner.class": "TimeBasedPartitioner", "flush.size": "4",
            "path.format": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
            "partition.duration.ms": "3600000", "locale": "en-US", "timezone": "UTC",
            "timestamp.extractor": "Record"}))
        try:
            await task.put([record(i, {"n": i}, timestamp=t) for i, t in enumerate(stamps)])
        finally:
            await task.stop()

    asyncio.run(scenario())
    assert s3.keys(bucket) == [
        "topics/orders/year=2024/month=05/day=01/hour=10/orders+0+0000000000.json",
        "topics/orders/year=2024/month=05/day=01/hour=11/orders+0+0000000001.json",
        "topics/orders/year=2024/month=05/day=01/hour=12/orders+0+0000000003.json"]
    hour11 = s3.get(bucket, "topics/orders/year=2024/month=05/day=01/hour=11/"
                            "orders+0+0000000001.json").decode()
    assert hour11 == '{"n":1}\n{"n":2}\n'


def test_time_buckets_in_a_time_zone_and_record_field_timestamps() -> None:
    extractor = TimestampExtractor("RecordField", "meta.at")
    partitioner = TimeBasedPartitioner("YYYY-MM-dd/HH-mm", 3_600_000, "Asia/Kolkata", extractor)
    at = dt.datetime(2024, 5, 1, 23, 10, tzinfo=dt.UTC)  # 04:40 on May 2nd in Kolkata
    value = {"meta": {"at": int(at.timestamp() * 1000)}}
    # hours start on the zone's hours (UTC+5:30), not UTC's
    assert partitioner.encode(record(0, value)) == "2024-05-02/04-00"
    daily = TimeBasedPartitioner("'dt'=YYYYMMdd-HH", 86_400_000, "America/New_York",
                                 TimestampExtractor("RecordField", "at"))
    assert daily.encode(record(0, {"at": "2024-05-02T03:00:00Z"})) == "dt=20240501-00"
    assert joda_to_java("'Year'=YYYY") == "'Year'=yyyy"
    with pytest.raises(ConfigException, match="timezone"):
        TimeBasedPartitioner("HH", 1000, "Mars/Olympus", extractor)


def test_a_crash_before_the_offset_commit_rewrites_the_same_objects(s3: S3Server,
                                                                    bucket: str) -> None:
    schema = SchemaBuilder.struct().field("id", INT32_SCHEMA).build()
    records = [record(i, Struct(schema).put("id", i), schema) for i in range(15)]
    config = props(s3, bucket, **{"format.class": PARQUET, "flush.size": "5"})
    runs: list[dict[str, bytes]] = []

    async def crashed() -> None:
        task = await started(config)
        await task.put(records[:13])  # files at 0 and 5 uploaded, 10..12 in memory
        runs.append({k: s3.get(bucket, k) for k in s3.keys(bucket)})
        # the worker dies here: no pre_commit, so the group's offset is still 0
        await task.stop()
        assert sorted(runs[0]) == s3.keys(bucket)  # no partial file for 10..12

    async def redelivered() -> None:
        task = await started(config)
        try:
            await task.put(records)  # from the committed offset 0 again
            assert await task.pre_commit({TP: 15}) == {TP: 15}
        finally:
            await task.stop()

    asyncio.run(crashed())
    asyncio.run(redelivered())
    keys = s3.keys(bucket)
    prefix = "topics/orders/partition=0/orders+0+"
    assert keys == [f"{prefix}{n:010d}.snappy.parquet" for n in (0, 5, 10)]
    for key, data in runs[0].items():
        assert s3.get(bucket, key) == data  # overwritten with the same bytes
    ids = [row["id"] for key in keys for row in read_parquet(s3.get(bucket, key)).to_pylist()]
    assert ids == list(range(15))


def test_a_redelivery_inside_the_task_replaces_the_buffered_records(s3: S3Server,
                                                                    bucket: str) -> None:
    async def scenario() -> None:
        task = await started(props(s3, bucket, **{"flush.size": "5"}))
        try:
            await task.put([record(i, {"n": i, "try": 1}) for i in range(4)])
            await task.put([record(i, {"n": i, "try": 2}) for i in range(2, 7)])
            assert await task.pre_commit({TP: 7}) == {TP: 5}
        finally:
            await task.stop()

    asyncio.run(scenario())
    [key] = s3.keys(bucket)
    lines = [json.loads(line) for line in s3.get(bucket, key).decode().splitlines()]
    assert lines == [{"n": 0, "try": 1}, {"n": 1, "try": 1}, {"n": 2, "try": 2},
                     {"n": 3, "try": 2}, {"n": 4, "try": 2}]


def test_rotation_on_record_time_and_on_schema_change(s3: S3Server, bucket: str) -> None:
    a = SchemaBuilder.struct().name("A").field("x", INT32_SCHEMA).build()
    b = SchemaBuilder.struct().name("A").field("x", INT32_SCHEMA) \
        .field("y", OPTIONAL_STRING_SCHEMA).build()

    async def scenario() -> None:
        task = await started(props(s3, bucket, **{
            "format.class": PARQUET, "flush.size": "100", "rotate.interval.ms": "2000"}))
        try:
            await task.put([record(0, Struct(a).put("x", 0), a, timestamp=0),
                            record(1, Struct(a).put("x", 1), a, timestamp=1000),
                            # 2.5 s after the first record: the first two are committed
                            record(2, Struct(a).put("x", 2), a, timestamp=2500),
                            # a new schema: a new file
                            record(3, Struct(b).put("x", 3).put("y", "new"), b, timestamp=2600)])
            assert await task.pre_commit({TP: 4}) == {TP: 3}
        finally:
            await task.stop()

    asyncio.run(scenario())
    keys = s3.keys(bucket)
    assert [k.rsplit("+", 1)[1] for k in keys] == ["0000000000.snappy.parquet",
                                                   "0000000002.snappy.parquet"]
    assert [r["x"] for r in read_parquet(s3.get(bucket, keys[0])).to_pylist()] == [0, 1]


def test_bad_records_go_to_the_reporter_or_fail_the_task(s3: S3Server, bucket: str) -> None:
    reporter = Reporter()
    schema = SchemaBuilder.struct().field("id", INT32_SCHEMA).build()

    async def scenario() -> None:
        config = props(s3, bucket, **{"format.class": PARQUET, "flush.size": "2"})
        task = await started(dict(config, **{"errors.tolerance": "all"}), Context(reporter))
        try:
            await task.put([record(0, Struct(schema).put("id", 0), schema),
                            record(1, {"schemaless": True}),
                            record(2, Struct(schema).put("id", 2), schema)])
            assert await task.pre_commit({TP: 3}) == {TP: 3}
        finally:
            await task.stop()
        strict = await started(config, Context(reporter))
        try:
            with pytest.raises(ConnectException, match="value schema"):
                await strict.put([record(5, {"schemaless": True})])
            with pytest.raises(ConnectException, match=r"behavior\.on\.null\.values"):
                await strict.put([record(6, None)])
        finally:
            await strict.stop()

    asyncio.run(scenario())
    assert [r.kafka_offset for r, _ in reporter.reported] == [1]
    [key] = s3.keys(bucket)
    assert key.endswith("orders+0+0000000000.snappy.parquet")
    assert [r["id"] for r in read_parquet(s3.get(bucket, key)).to_pylist()] == [0, 2]


def test_offset_recovery_from_the_bucket(s3: S3Server, bucket: str) -> None:
    config = props(s3, bucket, **{"flush.size": "4", "s3.offset.recovery.enabled": "true"})
    context = Context()

    async def scenario() -> None:
        task = await started(config)
        try:
            await task.put([record(i, {"n": i}) for i in range(10)])
        finally:
            await task.stop()
        again = await started(config, context)  # open() looks at the bucket
        await again.stop()

    asyncio.run(scenario())
    assert context.resets == {TP: 8}


def test_config_and_discovery(s3: S3Server) -> None:
    for name in ("io.confluent.connect.s3.S3SinkConnector", "S3Sink", "S3SinkConnector"):
        assert find_connector(name).cls is S3SinkConnector
    base = props(s3, "b")
    with pytest.raises(ConfigException, match=r"format\.class"):
        S3SinkConnector().start(dict(base, **{"format.class": "AvroFormat"}))
    with pytest.raises(ConfigException, match=r"flush\.size"):
        S3SinkConnector().start({k: v for k, v in base.items() if k != "flush.size"})
    with pytest.raises(ConfigException, match=r"path\.format"):
        S3SinkConnector().start(dict(base, **{"partitioner.class": "TimeBasedPartitioner"}))
    with pytest.raises(ConfigException, match=r"partition\.field\.name"):
        S3SinkConnector().start(dict(base, **{"partitioner.class": "FieldPartitioner"}))
    with pytest.raises(ConfigException, match=r"parquet\.codec"):
        S3SinkConnector().start(dict(base, **{"format.class": PARQUET,
                                              "parquet.codec": "lzo"}))


def test_scheduled_rotation_commits_idle_files_gzipped(s3: S3Server, bucket: str) -> None:
    async def scenario() -> None:
        task = await started(props(s3, bucket, **{
            "flush.size": "100", "rotate.schedule.interval.ms": "200",
            "s3.compression.type": "gzip"}))
        try:
            await task.put([record(0, {"n": 0}), record(1, {"n": 1})])
            await asyncio.sleep(0.45)
            assert await task.pre_commit({TP: 2}) == {TP: 2}  # the schedule passed: uploaded
        finally:
            await task.stop()

    asyncio.run(scenario())
    [key] = s3.keys(bucket)
    assert key == "topics/orders/partition=0/orders+0+0000000000.json.gz"
    assert gzip.decompress(s3.get(bucket, key)) == b'{"n":0}\n{"n":1}\n'


REGIONS = {"partitioner.class": "FieldPartitioner", "partition.field.name": "region",
           "flush.size": "4", "s3.offset.recovery.enabled": "true"}


def regional(offset: int) -> SinkRecord:
    return record(offset, {"region": "eu" if offset % 2 == 0 else "us", "n": offset})


def stored_values(s3: S3Server, bucket: str) -> list[int]:
    return sorted(json.loads(line)["n"] for key in s3.keys(bucket)
                  for line in s3.get(bucket, key).decode().splitlines())


async def redeliver(config: dict[str, str], last: int) -> dict[TopicPartition, int]:
    """A new task: recovery on open(), then the records from where it resumes (the group's
    offset is 0: nothing was committed)."""
    context = Context()
    task = await started(config, context)
    try:
        start = context.resets.get(TP, 0)
        await task.put([regional(i) for i in range(start, last)])
        assert await task.pre_commit({TP: last}) == {TP: last}
    finally:
        await task.stop()
    return context.resets


@pytest.mark.parametrize("lost", ["region=eu/orders+0+0000000004.json",
                                  "region=us/orders+0+0000000005.json"])
def test_offset_recovery_skips_a_commit_missing_a_file(s3: S3Server, bucket: str,
                                                       lost: str) -> None:
    """Two commits of two files each (FieldPartitioner); one file of the newest is gone (its
    upload never happened): recovery trusts only the complete commit before it, so the lost
    file's records are delivered and written again, none lost."""
    config = props(s3, bucket, **REGIONS)

    async def scenario() -> dict[TopicPartition, int]:
        task = await started(config)
        try:
            await task.put([regional(i) for i in range(8)])
        finally:
            await task.stop()
        s3.client().delete_object(Bucket=bucket, Key=f"topics/orders/{lost}")
        return await redeliver(config, 8)

    assert asyncio.run(scenario()) == {TP: 4}
    assert stored_values(s3, bucket) == list(range(8))
    assert len(s3.keys(bucket)) == 4


@pytest.mark.parametrize("failing_commit", [1, 2])
def test_offset_recovery_after_a_failed_upload(s3: S3Server, bucket: str,
                                               failing_commit: int) -> None:
    """The upload of one file of a commit fails (the others of that commit succeed) and the
    task fails: the next task does not trust that commit; it resumes after the commit before
    it (or, with none, from the group's offset)."""
    config = props(s3, bucket, **REGIONS)

    async def scenario() -> dict[TopicPartition, int]:
        task = await started(config)
        put_object = task._client.put_object
        commits = iter(range(1, 100))
        current = {"commit": 0}

        async def flaky_put(**kwargs: Any) -> Any:
            if kwargs["Key"].startswith("topics/orders/region=eu/"):
                current["commit"] = next(commits)
            if "region=us" in kwargs["Key"] and current["commit"] == failing_commit:
                await asyncio.sleep(0.5)  # failing after its retries, the other one done
                raise OSError("injected upload failure")
            return await put_object(**kwargs)

        task._client.put_object = flaky_put
        try:
            with pytest.raises(ConnectException, match="cannot upload"):
                await task.put([regional(i) for i in range(8)])
        finally:
            await task.stop()
        assert any("region=eu" in k and f"{4 * (failing_commit - 1):010d}" in k
                   for k in s3.keys(bucket))  # the other file of the commit is there
        return await redeliver(config, 8)

    resets = asyncio.run(scenario())
    assert resets == ({} if failing_commit == 1 else {TP: 4})
    assert stored_values(s3, bucket) == list(range(8))
