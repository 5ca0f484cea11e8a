"""Kafka Connect's records (org.apache.kafka.connect.connector.ConnectRecord, SourceRecord,
SinkRecord) as frozen dataclasses; `new_record` keeps a subclass's own fields, as Kafka's."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from strom.connect.data import Headers, Schema

NO_TIMESTAMP_TYPE = "NoTimestampType"
CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"


@dataclass(frozen=True)
class ConnectRecord:
    """A record between a connector and Kafka: topic, partition, key and value with their
    schemas, timestamp (ms) and headers."""

    topic: str
    kafka_partition: int | None = None
    key_schema: Schema | None = None
    key: Any = None
    value_schema: Schema | None = None
    value: Any = None
    timestamp: int | None = None
    headers: Headers = field(default_factory=Headers)

    def __post_init__(self) -> None:
        if self.headers is None:
            object.__setattr__(self, "headers", Headers())  # type: ignore[unreachable]
        if self.timestamp is not None and self.timestamp < 0:
            raise ValueError(f"Invalid negative timestamp: {self.timestamp}")

    def new_record(self, topic: str, kafka_partition: int | None, key_schema: Schema | None,
                   key: Any, value_schema: Schema | None, value: Any, timestamp: int | None,
                   headers: Headers | None = None) -> Self:
        """A record of the same class with these fields (the headers copied when None)."""
        return dataclasses.replace(
            self, topic=topic, kafka_partition=kafka_partition, key_schema=key_schema, key=key,
            value_schema=value_schema, value=value, timestamp=timestamp,
            headers=self.headers.copy() if headers is None else headers)


@dataclass(frozen=True)
class SourceRecord(ConnectRecord):
    """A record a source task produced, with where it came from (partition and offset in the
    source system)."""

    source_partition: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    source_offset: Mapping[str, Any] = field(default_factory=dict, kw_only=True)


@dataclass(frozen=True)
class SinkRecord(ConnectRecord):
    """A record consumed from Kafka for a sink task; the original_* fields (KIP-793) keep the
    topic/partition/offset it was consumed from, whatever transforms do to topic and
    partition."""

    kafka_offset: int = field(default=-1, kw_only=True)
    timestamp_type: str = field(default=NO_TIMESTAMP_TYPE, kw_only=True)
    original_topic: str | None = field(default=None, kw_only=True)
    original_kafka_partition: int | None = field(default=None, kw_only=True)
    original_kafka_offset: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.original_topic is None:
            object.__setattr__(self, "original_topic", self.topic)
        if self.original_kafka_partition is None:
            object.__setattr__(self, "original_kafka_partition", self.kafka_partition)
        if self.original_kafka_offset is None:
            object.__setattr__(self, "original_kafka_offset", self.kafka_offset)
