"""Topic-level configs: their names, types, defaults and validation.

Kafka's dotted names (``retention.ms``) appear only here, at the config boundary; the rest of
strom reads a typed ``LogConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

MIB: Final = 1024 * 1024


class ConfigError(ValueError):
    """A config name or value that Kafka would reject (INVALID_CONFIG)."""


def _int(lo: int, hi: int = 2**63 - 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{value} is outside [{lo}, {hi}]")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in allowed:
            raise ConfigError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return parse


def _cleanup_policy(text: str) -> str:
    parts = sorted({p.strip() for p in text.split(",") if p.strip()})
    if not parts or any(p not in ("compact", "delete") for p in parts):
        raise ConfigError(f"{text!r} must be a list of 'compact' and 'delete'")
    return ",".join(parts)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{text!r} is not true or false")
    return value == "true"


def _throttled_replicas(text: str) -> str:
    """Kafka's ThrottledReplicaListValidator: empty, `*`, or PARTITION:BROKER,..."""
    value = text.strip()
    if value in ("", "*"):
        return value
    for item in value.split(","):
        partition, colon, broker = item.strip().partition(":")
        if not (colon and partition.isdigit() and broker.isdigit()):
            raise ConfigError(f"{text!r} must be empty, '*', or a list of PARTITION:BROKER")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{value} is outside [0, 1]")
    return value


# Confluent's subject name strategies (value.subject.name.strategy and the like), by their
# short names; the topic configs take the class name or the short name.
STRATEGY_PACKAGE: Final = "io.confluent.kafka.serializers.subject."
SUBJECT_NAME_STRATEGIES: Final = ("TopicNameStrategy", "RecordNameStrategy",
                                  "TopicRecordNameStrategy")


def _subject_name_strategy(text: str) -> str:
    """The strategy's short name, from its class name or short name."""
    value = text.strip()
    short = value.removeprefix(STRATEGY_PACKAGE)
    if short not in SUBJECT_NAME_STRATEGIES:
        raise ConfigError(f"{value!r} is not one of "
                          + ", ".join(STRATEGY_PACKAGE + s for s in SUBJECT_NAME_STRATEGIES)
                          + " (or their short names)")
    return short


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One topic config: its Kafka name, default, the broker setting that overrides the default."""

    name: str
    default: str
    kind: str  # Kafka's ConfigType name: INT, LONG, STRING, LIST, DOUBLE, BOOLEAN, CLASS
    parse: Callable[[str], object]
    broker_name: str | None = None
    doc: str = ""


_DAY_MS: Final = 24 * 3600 * 1000

TOPIC_CONFIGS: Final[Mapping[str, ConfigKey]] = {
    k.name: k
    for k in (
        ConfigKey("cleanup.policy", "delete", "LIST", _cleanup_policy, "log.cleanup.policy",
                  doc="'delete' drops segments past retention; 'compact' keeps each key's last."),
        ConfigKey("compression.type", "producer", "STRING",
                  _choice("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
                  "compression.type",
                  doc="The codec of stored batches; 'producer' keeps the producer's."),
        ConfigKey("confluent.key.schema.validation", "false", "BOOLEAN", _boolean,
                  doc="Validation on produce (Confluent's name): every record key must carry "
                      "the schema registry's wire format with a schema id registered under "
                      "the key's subject, else the batch is refused with INVALID_RECORD "
                      "(docs/registry.md). Null keys pass."),
        ConfigKey("confluent.key.subject.name.strategy", STRATEGY_PACKAGE + "TopicNameStrategy",
                  "STRING", _subject_name_strategy,
                  doc="The key's subject for validation: TopicNameStrategy (<topic>-key), "
                      "RecordNameStrategy (the schema's record name) or "
                      "TopicRecordNameStrategy (<topic>-<record name>)."),
        ConfigKey("confluent.value.schema.validation", "false", "BOOLEAN", _boolean,
                  doc="Validation on produce (Confluent's name): every record value must carry "
                      "the schema registry's wire format with a schema id registered under "
                      "the value's subject, else the batch is refused with INVALID_RECORD "
                      "(docs/registry.md). Null values (tombstones) pass."),
        ConfigKey("confluent.value.subject.name.strategy",
                  STRATEGY_PACKAGE + "TopicNameStrategy", "STRING", _subject_name_strategy,
                  doc="The value's subject for validation: TopicNameStrategy "
                      "(<topic>-value), RecordNameStrategy (the schema's record name) or "
                      "TopicRecordNameStrategy (<topic>-<record name>)."),
        ConfigKey("delete.retention.ms", str(_DAY_MS), "LONG", _int(0),
                  "log.cleaner.delete.retention.ms",
                  doc="How long tombstones stay in a compacted topic, in milliseconds."),
        ConfigKey("file.delete.delay.ms", "60000", "LONG", _int(0), "log.segment.delete.delay.ms",
                  doc="How long a deleted segment's files wait before removal, in ms."),
        ConfigKey("follower.replication.throttled.replicas", "", "LIST", _throttled_replicas,
                  doc="Replicas whose follower fetches are throttled. strom keeps one copy of "
                      "each partition (on disk, or in PostgreSQL), so there is no follower "
                      "traffic: accepted for tools, no effect."),
        ConfigKey("flush.messages", str(2**63 - 1), "LONG", _int(1), "log.flush.interval.messages",
                  doc="fsync a partition after this many appended messages."),
        ConfigKey("flush.ms", str(2**63 - 1), "LONG", _int(0), "log.flush.interval.ms",
                  doc="fsync a partition once its oldest unflushed data is this old, in ms."),
        ConfigKey("index.interval.bytes", "4096", "INT", _int(0, 2**31 - 1),
                  "log.index.interval.bytes",
                  doc="Bytes of batches between two offset index entries."),
        ConfigKey("leader.replication.throttled.replicas", "", "LIST", _throttled_replicas,
                  doc="Replicas whose leader-side replication is throttled. No replication "
                      "traffic in strom: accepted for tools, no effect."),
        ConfigKey("max.compaction.lag.ms", str(2**63 - 1), "LONG", _int(1),
                  "log.cleaner.max.compaction.lag.ms",
                  doc="The longest a record may stay ineligible for compaction, in ms."),
        ConfigKey("max.message.bytes", str(MIB + 12), "INT", _int(0, 2**31 - 1),
                  "message.max.bytes",
                  doc="The largest record batch the topic accepts, in bytes."),
        ConfigKey("message.timestamp.after.max.ms", str(2**63 - 1), "LONG", _int(0),
                  "log.message.timestamp.after.max.ms",
                  doc="How far ahead of the broker's clock a CreateTime may be."),
        ConfigKey("message.timestamp.before.max.ms", str(2**63 - 1), "LONG", _int(0),
                  "log.message.timestamp.before.max.ms",
                  doc="How far behind the broker's clock a CreateTime may be."),
        ConfigKey("message.timestamp.type", "CreateTime", "STRING",
                  _choice("CreateTime", "LogAppendTime"), "log.message.timestamp.type",
                  doc="CreateTime keeps producers' timestamps; LogAppendTime uses the broker's."),
        ConfigKey("min.cleanable.dirty.ratio", "0.5", "DOUBLE", _ratio,
                  "log.cleaner.min.cleanable.ratio",
                  doc="The uncompacted share of a log that makes it due for compaction."),
        ConfigKey("min.compaction.lag.ms", "0", "LONG", _int(0),
                  "log.cleaner.min.compaction.lag.ms",
                  doc="The shortest a record stays uncompacted, in milliseconds."),
        ConfigKey("min.insync.replicas", "1", "INT", _int(1, 2**31 - 1), "min.insync.replicas",
                  doc="In-sync replicas an acks=all write needs: with fewer, it is refused "
                      "with NOT_ENOUGH_REPLICAS (retriable). A partition's in-sync replicas "
                      "are its leader and the live brokers next in line, as many as the "
                      "replication factor."),
        ConfigKey("preallocate", "false", "BOOLEAN", _boolean, "log.preallocate",
                  doc="Whether new segment files are preallocated. strom's segments grow as "
                      "written: accepted, no effect."),
        ConfigKey("retention.bytes", "-1", "LONG", _int(-1), "log.retention.bytes",
                  doc="The bytes a partition keeps before old segments go; -1 for no limit."),
        ConfigKey("retention.ms", str(7 * _DAY_MS), "LONG", _int(-1), "log.retention.ms",
                  doc="How long segments are kept, in milliseconds; -1 for no limit."),
        ConfigKey("segment.bytes", str(1024 * MIB), "INT", _int(14, 2**31 - 1),
                  "log.segment.bytes",
                  doc="The size at which a partition's active segment is rolled."),
        ConfigKey("segment.index.bytes", str(10 * MIB), "INT", _int(4, 2**31 - 1),
                  "log.index.size.max.bytes",
                  doc="The size of a segment's offset and time index files."),
        ConfigKey("segment.jitter.ms", "0", "LONG", _int(0), "log.roll.jitter.ms",
                  doc="Kafka's random reduction of segment.ms, against many segments rolling "
                      "at once. strom rolls at segment.ms exactly: accepted, no effect."),
        ConfigKey("segment.ms", str(7 * _DAY_MS), "LONG", _int(1), "log.roll.ms",
                  doc="The age at which a partition's active segment is rolled."),
        ConfigKey("strom.schema.validation.decode", "false", "BOOLEAN", _boolean,
                  doc="strom's own: with confluent.key/value.schema.validation on, also "
                      "decode each validated key or value with its schema (Avro, JSON Schema, "
                      "Protobuf) and refuse the batch if one does not decode."),
        ConfigKey("unclean.leader.election.enable", "false", "BOOLEAN", _boolean,
                  "unclean.leader.election.enable",
                  doc="Whether an out-of-sync replica may become leader. strom's partitions "
                      "have one copy, so no election can lose data: accepted, no effect."),
    )
}


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The typed view of one topic's effective configs that the storage engines read."""

    cleanup_policy: str
    compression_type: str
    delete_retention_ms: int
    flush_messages: int
    flush_ms: int
    index_interval_bytes: int
    max_compaction_lag_ms: int
    max_message_bytes: int
    message_timestamp_type: str
    message_timestamp_before_max_ms: int
    message_timestamp_after_max_ms: int
    min_cleanable_dirty_ratio: float
    min_compaction_lag_ms: int
    min_insync_replicas: int
    retention_bytes: int
    retention_ms: int
    segment_bytes: int
    segment_index_bytes: int
    segment_ms: int
    confluent_key_schema_validation: bool = False
    confluent_value_schema_validation: bool = False
    confluent_key_subject_name_strategy: str = "TopicNameStrategy"
    confluent_value_subject_name_strategy: str = "TopicNameStrategy"
    strom_schema_validation_decode: bool = False
    # Whether produce checks the records against the schema registry at all: the one
    # attribute the produce path reads when validation is off.
    schema_validation: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema_validation", self.confluent_key_schema_validation
                           or self.confluent_value_schema_validation)

    @classmethod
    def from_effective(cls, values: Mapping[str, str]) -> LogConfig:
        def get(name: str) -> object:
            return TOPIC_CONFIGS[name].parse(values[name])

        kwargs = {
            name.replace(".", "_"): get(name)
            for name in TOPIC_CONFIGS
            if name.replace(".", "_") in cls.__dataclass_fields__
        }
        return cls(**kwargs)  # type: ignore[arg-type]


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Checks names and values; returns the normalised overrides. Raises ConfigError."""
    out: dict[str, str] = {}
    for name, value in configs.items():
        key = TOPIC_CONFIGS.get(name)
        if key is None:
            raise ConfigError(f"Unknown topic config name: {name}")
        if value is None:
            raise ConfigError(f"Null value not supported for topic config {name}")
        try:
            key.parse(value)
        except ConfigError as exc:
            raise ConfigError(f"Invalid value {value!r} for configuration {name}: {exc}") from None
        out[name] = value.strip()
    return out
