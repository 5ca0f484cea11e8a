"""The console's Kafka side: blocking confluent-kafka calls, run in a thread pool by the app.

Every function takes the AdminClient (or builds a Consumer/Producer) from the user's
ClientOptions, so a SASL login's credentials are the credentials of its clients. Failures are
raised as strom.cli.common.CliError with the CLI's messages.

What confluent-kafka's AdminClient cannot do (client quotas: DescribeClientQuotas and
AlterClientQuotas; sizes on storage: DescribeLogDirs) goes through strom.cli.wire_admin, the
code `strom quota` uses: strom's own Kafka protocol client, secured from the same ClientOptions
(-X security.protocol, ssl.*, sasl.*, and the SASL login's username and password).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import (
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from strom.cli import wire_admin
from strom.cli.common import (
    ClientOptions,
    CliError,
    admin_client,
    cluster_metadata,
    fail,
    make_client,
    outcome,
    timeouts,
    topic_partitions,
    wait,
)
from strom.cli.group_offsets import (
    Partition,
    Reset,
    Target,
    commit,
    committed_offsets,
    group_state,
    log_offsets,
    plan,
    state_name,
)

__all__ = ["Partition", "Reset", "Target", "committed_offsets", "group_state", "state_name"]

QUOTA_KEYS: Final = wire_admin.QUOTA_KEYS
UNKNOWN_SOFTWARE: Final = "unknown (not strom)"


MAX_MESSAGES: Final = 500
FORMATS: Final = ("auto", "text", "json", "hex")
MODES: Final = ("newest", "oldest", "offset", "timestamp")


# --- topics -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TopicRow:
    name: str
    partitions: int
    messages: int
    retention_ms: str
    internal: bool
    size: int | None = None  # bytes on storage; None: unknown


def sizes_on_storage(client: ClientOptions, topics: Iterable[str] | None = None
                     ) -> dict[Partition, int]:
    """Each partition's size in bytes on storage (DescribeLogDirs of every broker); empty when
    the cluster does not tell (no DescribeLogDirs, or no DESCRIBE on the cluster)."""
    try:
        return wire_admin.partition_sizes(client, None if topics is None else list(topics))
    except CliError:
        return {}


def total_size(sizes: dict[Partition, int], topic: str, partitions: Iterable[int]
               ) -> int | None:
    """The topic's size: the sum over its partitions, None if no partition's size is known."""
    known = [sizes[(topic, p)] for p in partitions if (topic, p) in sizes]
    return sum(known) if known else None


def offsets(admin: AdminClient, client: ClientOptions, partitions: Iterable[Partition],
            ) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """Each partition's log start and log end offset (partitions that fail are left out)."""
    wanted = list(partitions)
    start, _ = log_offsets(admin, client, wanted, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    end, _ = log_offsets(admin, client, wanted, OffsetSpec.latest())  # type: ignore[no-untyped-call]
    return start, end


def topic_configs(admin: AdminClient, client: ClientOptions,
                  names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each topic's ConfigEntry objects by name (topics that fail are left out)."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for resource, future in admin.describe_configs(resources, **timeouts(client)).items():
        try:
            found[resource.name] = dict(outcome(future, client))
        except KafkaException:
            continue
    return found


def list_topics(admin: AdminClient, client: ClientOptions) -> list[TopicRow]:
    metadata = cluster_metadata(admin, client)
    names = sorted(t for t, info in metadata.topics.items() if info.error is None)
    partitions = [(t, p) for t in names for p in metadata.topics[t].partitions]
    start, end = offsets(admin, client, partitions)
    configs = topic_configs(admin, client, names)
    sizes = sizes_on_storage(client)
    rows = []
    for name in names:
        ids = metadata.topics[name].partitions
        messages = sum(max(0, end.get((name, p), 0) - start.get((name, p), 0)) for p in ids)
        entry = configs.get(name, {}).get("retention.ms")
        rows.append(TopicRow(name, len(ids), messages, entry.value if entry else "",
                             name.startswith("__"), total_size(sizes, name, ids)))
    return rows


def create_topic(admin: AdminClient, client: ClientOptions, name: str, partitions: int,
                 replication: int, config: dict[str, str]) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                            replication_factor=replication, config=config)],
                                  operation_timeout=client.request_timeout,
                                  **timeouts(client))
    wait(futures[name], client, name, f"creating topic {name}")


def delete_topic(admin: AdminClient, client: ClientOptions, name: str) -> None:
    futures = admin.delete_topics([name], operation_timeout=client.request_timeout,
                                  **timeouts(client))
    wait(futures[name], client, name, f"deleting topic {name}")


@dataclass(frozen=True, slots=True)
class PartitionRow:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start: int | None
    end: int | None
    size: int | None = None  # bytes on storage; None: unknown


@dataclass(frozen=True, slots=True)
class ConfigRow:
    name: str
    value: str
    source: str
    default: bool
    read_only: bool
    sensitive: bool


@dataclass(frozen=True, slots=True)
class TopicDetail:
    name: str
    partitions: list[PartitionRow]
    configs: list[ConfigRow]

    @property
    def messages(self) -> int:
        return sum(max(0, (p.end or 0) - (p.start or 0)) for p in self.partitions)

    @property
    def size(self) -> int | None:
        known = [p.size for p in self.partitions if p.size is not None]
        return sum(known) if known else None


def topic_detail(admin: AdminClient, client: ClientOptions, name: str) -> TopicDetail:
    metadata = cluster_metadata(admin, client)
    ids = topic_partitions(metadata, name)
    start, end = offsets(admin, client, [(name, p) for p in ids])
    info = metadata.topics[name].partitions
    sizes = sizes_on_storage(client, [name])
    rows = [PartitionRow(p, info[p].leader, tuple(info[p].replicas), tuple(info[p].isrs),
                         start.get((name, p)), end.get((name, p)), sizes.get((name, p)))
            for p in ids]
    entries = topic_configs(admin, client, [name]).get(name, {})
    configs = [ConfigRow(e.name, "" if e.value is None else str(e.value),
                         str(getattr(e.source, "name", e.source)), bool(e.is_default),
                         bool(e.is_read_only), bool(e.is_sensitive))
               for e in sorted(entries.values(), key=lambda e: e.name)]
    return TopicDetail(name, rows, configs)


def alter_config(admin: AdminClient, client: ClientOptions, topic: str, key: str,
                 value: str | None) -> None:
    """Sets (or with None, deletes: back to the default) one topic config."""
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=op)])
    futures = admin.incremental_alter_configs([resource], **timeouts(client))
    wait(futures[resource], client, topic, f"changing {key} of topic {topic}")


# --- messages -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Browse:
    """What the message browser reads."""

    mode: str = "newest"
    partition: int | None = None
    offset: int = 0
    timestamp_ms: int = 0
    limit: int = 50
    filter: str = ""


def start_offsets(consumer: KafkaConsumer, client: ClientOptions, topic: str,
                  ids: list[int], start: dict[Partition, int], end: dict[Partition, int],
                  browse: Browse) -> dict[int, int]:
    """Where to start reading each partition."""
    if browse.mode == "oldest":
        return {p: start[(topic, p)] for p in ids}
    if browse.mode == "offset":
        return {p: min(max(browse.offset, start[(topic, p)]), end[(topic, p)]) for p in ids}
    if browse.mode == "timestamp":
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, browse.timestamp_ms) for p in ids],
            timeout=client.request_timeout)
        return {tp.partition: tp.offset if tp.offset >= 0 else end[(topic, tp.partition)]
                for tp in found}
    # newest: the last `limit` of each partition (filtered later, so read at most the limit)
    return {p: max(start[(topic, p)], end[(topic, p)] - browse.limit) for p in ids}


def matches(message: Message, needle: str) -> bool:
    if not needle:
        return True
    needle = needle.lower()
    return any(needle in data.decode("utf-8", "replace").lower()
               for data in (message.key, message.value) if data is not None)


def read_messages(admin: AdminClient, client: ClientOptions, topic: str,
                  browse: Browse) -> list[Message]:
    """Up to browse.limit messages; newest first for `newest`, else in offset order."""
    metadata = cluster_metadata(admin, client)
    ids = topic_partitions(metadata, topic)
    if browse.partition is not None:
        if browse.partition not in ids:
            raise CliError(f"topic {topic} has no partition {browse.partition}")
        ids = [browse.partition]
    start, end = offsets(admin, client, [(topic, p) for p in ids])
    ids = [p for p in ids if (topic, p) in start and (topic, p) in end]
    consumer = make_client(KafkaConsumer, client.config(**{
        "group.id": f"strom-console-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, "fetch.wait.max.ms": 100}))
    try:
        begin = start_offsets(consumer, client, topic, ids, start, end, browse)
        todo = {p: o for p, o in begin.items() if o < end[(topic, p)]}
        found = poll_until(consumer, client, topic, todo, end, browse)
    finally:
        consumer.close()
    if browse.mode == "newest":
        found.sort(key=lambda m: (m.timestamp, m.offset), reverse=True)
    else:
        found.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
    return found[:browse.limit]


def poll_until(consumer: KafkaConsumer, client: ClientOptions, topic: str,
               todo: dict[int, int], end: dict[Partition, int], browse: Browse,
               ) -> list[Message]:
    """Reads from `todo` (partition: first offset) up to each partition's end offset."""
    if not todo:
        return []
    consumer.assign([TopicPartition(topic, p, o) for p, o in todo.items()])
    found: list[Message] = []
    pending = set(todo)
    per_partition: dict[int, int] = {}
    deadline = time.monotonic() + max(3.0, client.request_timeout * 2)
    while pending and time.monotonic() < deadline:
        for record in consumer.consume(num_messages=500, timeout=0.2):
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # the end, even where the end offset is no record (a transaction marker)
                    pending.discard(int(record.partition() or 0))
                    continue
                raise fail(KafkaException(error), client, topic, f"reading topic {topic}")
            p = int(record.partition() or 0)
            offset = int(record.offset() or 0)
            if offset + 1 >= end[(topic, p)]:
                pending.discard(p)
            if p not in pending and offset >= end[(topic, p)]:
                continue
            message = Message(p, offset, record.timestamp()[1], record.key(), record.value(),
                              [(str(k), v if not isinstance(v, str) else v.encode())
                               for k, v in list(record.headers() or [])])
            if matches(message, browse.filter):
                found.append(message)
                per_partition[p] = per_partition.get(p, 0) + 1
                if browse.mode != "newest" and per_partition[p] >= browse.limit:
                    pending.discard(p)
    return found


def render(data: bytes | None, fmt: str) -> str:
    """Bytes shown as text, JSON pretty-printed, or hex (auto: JSON if it parses, else text)."""
    if data is None:
        return ""
    if fmt == "hex":
        return data.hex(" ")
    text = data.decode("utf-8", errors="backslashreplace")
    if fmt in ("json", "auto"):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    return text


def produce(client: ClientOptions, topic: str, partition: int | None, key: str | None,
            value: str, headers: list[tuple[str, str]]) -> tuple[int, int]:
    """Produces one message and waits for it; its (partition, offset)."""
    producer = make_client(KafkaProducer, client.config(**{"linger.ms": 0}))
    delivered: list[Any] = []

    def report(error: KafkaError | None, message: Any) -> None:
        delivered.append(error if error is not None else message)

    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    producer.produce(topic, value.encode("utf-8"),
                     key.encode("utf-8") if key is not None else None,
                     headers=[(k, v.encode("utf-8")) for k, v in headers] or None,
                     on_delivery=report, **extra)
    producer.flush(client.request_timeout * 3)
    if not delivered:
        raise CliError(f"producing to topic {topic} timed out")
    if isinstance(delivered[0], KafkaError):
        raise fail(KafkaException(delivered[0]), client, topic, f"producing to topic {topic}")
    return delivered[0].partition(), delivered[0].offset()


# --- groups -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GroupRow:
    group_id: str
    state: str
    type: str


def list_groups(admin: AdminClient, client: ClientOptions) -> list[GroupRow]:
    result = wait(admin.list_consumer_groups(**timeouts(client)), client, None,
                  "listing groups")
    rows = [GroupRow(str(g.group_id), state_name(g.state),
                     str(getattr(getattr(g, "type", None), "name", "")).lower() or "classic")
            for g in result.valid or []]
    return sorted(rows, key=lambda g: g.group_id)


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assignment: list[Partition]


@dataclass(frozen=True, slots=True)
class LagRow:
    topic: str
    partition: int
    committed: int | None
    end: int | None
    owner: str

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return self.end - (self.committed if self.committed is not None else 0)


@dataclass(slots=True)
class GroupDetail:
    group_id: str
    state: str
    members: list[Member] = field(default_factory=list)
    lags: list[LagRow] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(r.lag or 0 for r in self.lags)

    @property
    def empty(self) -> bool:
        return self.state in ("Empty", "Dead")


def describe_members(admin: AdminClient, client: ClientOptions,
                     group: str) -> tuple[str, list[Member]]:
    futures = admin.describe_consumer_groups([group], **timeouts(client))
    try:
        description = outcome(futures[group], client)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return "Dead", []
        raise fail(exc, client, action=f"describing group {group}") from None
    members = []
    for m in description.members or []:
        tps = getattr(getattr(m, "assignment", None), "topic_partitions", None) or []
        members.append(Member(str(m.member_id), str(m.client_id), str(m.host),
                              sorted((tp.topic, tp.partition) for tp in tps)))
    return state_name(description.state), members


def group_detail(admin: AdminClient, client: ClientOptions, group: str) -> GroupDetail:
    state, members = describe_members(admin, client, group)
    committed = committed_offsets(admin, client, group)
    owners = {tp: m.client_id or m.member_id for m in members for tp in m.assignment}
    partitions = sorted(set(committed) | set(owners))
    end, _ = log_offsets(admin, client, partitions,
                         OffsetSpec.latest())  # type: ignore[no-untyped-call]
    lags = [LagRow(t, p, committed.get((t, p)), end.get((t, p)), owners.get((t, p), ""))
            for t, p in partitions]
    return GroupDetail(group, state, members, lags)


def reset_plan(admin: AdminClient, client: ClientOptions, group: str, target: Target,
               topic: str | None) -> list[Reset]:
    committed = committed_offsets(admin, client, group)
    if topic:
        metadata = cluster_metadata(admin, client)
        partitions = [(topic, p) for p in topic_partitions(metadata, topic)]
    else:
        partitions = sorted(committed)
    if not partitions:
        raise CliError(f"group {group} has no committed offsets (choose a topic)")
    return plan(admin, client, target, partitions, committed)


def reset_apply(admin: AdminClient, client: ClientOptions, group: str,
                resets: list[Reset]) -> None:
    state = group_state(admin, client, group)
    if state not in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD):
        raise CliError(f"group {group} has active members (state {state_name(state)}); "
                       "stop its consumers before resetting offsets")
    commit(admin, client, group, resets)


# --- cluster ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str
    controller: int
    brokers: list[tuple[int, str, int]]
    topics: int
    partitions: int


def cluster_info(admin: AdminClient, client: ClientOptions) -> ClusterInfo:
    metadata = cluster_metadata(admin, client)
    brokers = sorted((b.id, str(b.host), int(b.port)) for b in metadata.brokers.values())
    return ClusterInfo(str(metadata.cluster_id or ""), int(metadata.controller_id), brokers,
                       len(metadata.topics),
                       sum(len(t.partitions) for t in metadata.topics.values()))


@dataclass(frozen=True, slots=True)
class Software:
    """What a broker runs, as its read-only broker configs `strom.version` and
    `strom.storage.engine` say (UNKNOWN_SOFTWARE for a broker that is not strom: the Kafka
    protocol names no broker software)."""

    version: str = UNKNOWN_SOFTWARE
    engine: str = UNKNOWN_SOFTWARE


def broker_software(admin: AdminClient, client: ClientOptions,
                    brokers: Iterable[int]) -> dict[int, Software]:
    """Each broker's Software, from DescribeConfigs of its BROKER resource."""
    resources = [ConfigResource(ResourceType.BROKER, str(node)) for node in brokers]
    if not resources:
        return {}
    found: dict[int, Software] = {}
    for resource, future in admin.describe_configs(resources, **timeouts(client)).items():
        try:
            entries = dict(outcome(future, client))
        except KafkaException:
            entries = {}
        version, engine = entries.get("strom.version"), entries.get("strom.storage.engine")
        found[int(resource.name)] = Software(
            str(version.value) if version is not None and version.value else UNKNOWN_SOFTWARE,
            str(engine.value) if engine is not None and engine.value else UNKNOWN_SOFTWARE)
    return found


# --- client quotas (strom.cli.wire_admin: confluent-kafka has no call for them) -----------

@dataclass(frozen=True, slots=True)
class QuotaRow:
    entity: tuple[tuple[str, str | None], ...]  # (type, name; None: the default), sorted
    values: dict[str, float]

    @property
    def label(self) -> str:
        return wire_admin.entity_label(self.entity)


def list_quotas(client: ClientOptions) -> list[QuotaRow]:
    """Every client quota the cluster has (DescribeClientQuotas, no filter)."""
    found = wire_admin.list_quotas(client)
    return sorted((QuotaRow(entity_in_order(entity), values)
                   for entity, values in found.items()), key=lambda row: row.label)


def entity_in_order(entity: Iterable[tuple[str, str | None]]
                    ) -> tuple[tuple[str, str | None], ...]:
    """user, then client-id, then ip (Kafka's order of precedence in its tools' output)."""
    order = ("user", "client-id", "ip")
    return tuple(sorted(entity, key=lambda part: (
        order.index(part[0]) if part[0] in order else len(order), part[0])))


def set_quotas(client: ClientOptions, entity: wire_admin.Entity,
               values: dict[str, float]) -> None:
    wire_admin.set_quotas(client, entity, dict(values))


def delete_quotas(client: ClientOptions, entity: wire_admin.Entity) -> list[str]:
    """Removes every quota of the entity; the keys removed."""
    return wire_admin.delete_quotas(client, entity)


def quota_entity(user: str, user_default: bool, client_id: str, client_default: bool
                 ) -> tuple[tuple[str, str | None], ...]:
    """The entity of a user, a client id or both, each named or the default. CliError for
    none, or for a name and the default at once."""
    entity: list[tuple[str, str | None]] = []
    for kind, name, default in (("user", user.strip(), user_default),
                                ("client-id", client_id.strip(), client_default)):
        if name and default:
            raise CliError(f"give a {kind} or choose the default {kind}, not both")
        if name or default:
            entity.append((kind, name or None))
    if not entity:
        raise CliError("a quota needs a user, a client id or both (or their defaults)")
    return tuple(entity)


def end_offsets_all(admin: AdminClient, client: ClientOptions) -> dict[Partition, int]:
    """Every partition's log end offset (for the throughput chart)."""
    metadata = cluster_metadata(admin, client)
    partitions = [(t, p) for t, info in metadata.topics.items() if info.error is None
                  for p in info.partitions]
    end, _ = log_offsets(admin, client, partitions,
                         OffsetSpec.latest())  # type: ignore[no-untyped-call]
    return end


def quote_text(text: str) -> str:
    """`text` for a URL's query string."""
    from urllib.parse import quote_plus

    return quote_plus(text)


_ADMINS: dict[tuple[Any, ...], AdminClient] = {}
_ADMINS_LOCK = threading.Lock()
MAX_ADMINS: Final = 32


def admin_for(client: ClientOptions) -> AdminClient:
    """One AdminClient per set of client settings (a SASL login's, or the console's), kept:
    librdkafka handles are thread-safe, and pages refresh every few seconds."""
    key = (client.bootstrap, tuple(sorted(client.settings.items())), client.request_timeout)
    with _ADMINS_LOCK:
        admin = _ADMINS.get(key)
        if admin is None:
            if len(_ADMINS) >= MAX_ADMINS:
                _ADMINS.pop(next(iter(_ADMINS)))
            admin = _ADMINS[key] = admin_client(client)
        return admin
