"""Admin requests the command line and the web console send with strom's own Kafka protocol
client, where confluent-kafka's AdminClient has no call for them (AlterPartitionReassignments,
ListPartitionReassignments, DescribeClientQuotas, AlterClientQuotas, DescribeLogDirs) or leaves
fields out (Metadata's leader epochs).

They speak the Kafka protocol only, so they work against any Kafka cluster (2.4 or later for
reassignments), over any listener: `-X security.protocol=SSL|SASL_PLAINTEXT|SASL_SSL` with
librdkafka's TLS and SASL settings (PLAIN, SCRAM-SHA-256/512; strom.security.client_security).
Reassignments go to the controller Metadata names, as Kafka's admin client sends them (a
KRaft broker forwards them to the active controller).

The blocking helpers (list_quotas, set_quotas, delete_quotas, partition_sizes) run their
requests on an event loop of their own (`run`): the console calls them from its thread pool.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from kio.static.primitive import i32Timedelta

from strom.cli.common import ClientOptions, CliError, unreachable_message
from strom.config.topic import ConfigError
from strom.protocol.client import KafkaConnection, PeerUnavailable
from strom.protocol.messages import ErrorCode, RequestBuilder
from strom.security.client_security import ClientSecurity, from_client_settings
from strom.security.sasl_client import SaslError

METADATA, ALTER_REASSIGNMENTS, LIST_REASSIGNMENTS = 3, 45, 46
METADATA_MIN_VERSION: Final = 7  # the first with leader epochs
CLIENT_ID: Final = "strom-cli"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BrokerNode:
    node_id: int
    host: str
    port: int
    rack: str | None


@dataclass(frozen=True, slots=True)
class PartitionLeader:
    topic: str
    partition: int
    leader: int  # -1: none
    epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClusterLeaders:
    controller: int
    brokers: tuple[BrokerNode, ...]
    partitions: tuple[PartitionLeader, ...]
    topic_errors: dict[str, ErrorCode]


@dataclass(frozen=True, slots=True)
class Reassignment:
    """An ongoing reassignment, with Kafka's fields."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...]
    removing: tuple[int, ...]


Session = Callable[[KafkaConnection], Awaitable[T]]


def security(client: ClientOptions) -> ClientSecurity:
    try:
        return from_client_settings(client.settings)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def bootstrap_addresses(client: ClientOptions) -> list[tuple[str, int]]:
    addresses = []
    for item in client.bootstrap.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not port.isdigit():
            raise CliError(f"bootstrap server {item.strip()!r} is not HOST:PORT")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


async def _connect(host: str, port: int, client: ClientOptions) -> KafkaConnection:
    try:
        return await security(client).open(host, port, CLIENT_ID,
                                           connect_timeout_s=client.request_timeout,
                                           request_timeout_s=client.request_timeout)
    except SaslError as exc:
        raise CliError(f"{exc}: check -X sasl.mechanism, sasl.username and sasl.password"
                       ) from None


def run(client: ClientOptions, session: Session[T]) -> T:
    """`session(connection)` on a connection to the first bootstrap server that answers;
    a CliError if none does."""
    security(client)  # settings checked before any connection
    addresses = bootstrap_addresses(client)

    async def main() -> T:
        last = ""
        for host, port in addresses:
            try:
                connection = await _connect(host, port, client)
            except PeerUnavailable as exc:
                last = str(exc)
                continue
            try:
                return await session(connection)
            finally:
                await connection.close()
        raise CliError(f"{unreachable_message(client)}; last error: {last}")

    try:
        return asyncio.run(main())
    except PeerUnavailable as exc:
        raise CliError(f"the cluster stopped answering: {exc}") from None


def _version(connection: KafkaConnection, api_key: int, max_version: int,
             min_version: int = 0) -> int:
    try:
        return connection.version_for(api_key, max_version, min_version)
    except PeerUnavailable as exc:
        raise CliError(f"the cluster does not serve what this command needs: {exc}") from None


async def leaders(connection: KafkaConnection, topics: Sequence[str] | None) -> ClusterLeaders:
    """Metadata (v7+, for leader epochs) of `topics`, or of every topic for None."""
    b = RequestBuilder(METADATA, _version(connection, METADATA, 12, METADATA_MIN_VERSION))
    wanted = None if topics is None else tuple(
        b.make("MetadataRequestTopic", name=name, topic_id=None) for name in topics)
    answer = await connection.request(b.make(
        "MetadataRequest", topics=wanted, allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False))
    partitions = tuple(
        PartitionLeader(str(t.name), int(p.partition_index), int(p.leader_id),
                        int(p.leader_epoch), tuple(int(n) for n in p.replica_nodes),
                        tuple(int(n) for n in p.isr_nodes))
        for t in answer.topics if t.error_code == ErrorCode.none
        for p in sorted(t.partitions, key=lambda p: int(p.partition_index)))
    return ClusterLeaders(
        int(answer.controller_id),
        tuple(sorted((BrokerNode(int(n.node_id), str(n.host), int(n.port), n.rack)
                      for n in answer.brokers), key=lambda n: n.node_id)),
        partitions,
        {str(t.name): ErrorCode(t.error_code) for t in answer.topics
         if t.error_code != ErrorCode.none})


async def to_controller(connection: KafkaConnection, client: ClientOptions,
                        session: Session[T]) -> T:
    """`session` on a connection to the controller Metadata names (this one if it is)."""
    cluster = await leaders(connection, ())
    controller = next((n for n in cluster.brokers if n.node_id == cluster.controller), None)
    if controller is None:
        return await session(connection)  # no controller named: any broker forwards
    if connection.peer == f"{controller.host}:{controller.port}":
        return await session(connection)
    other = await _connect(controller.host, controller.port, client)
    try:
        return await session(other)
    finally:
        await other.close()


def _timeout(client: ClientOptions) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(seconds=client.request_timeout))


async def alter_reassignment(connection: KafkaConnection, client: ClientOptions, topic: str,
                             partition: int, replicas: Sequence[int] | None
                             ) -> tuple[ErrorCode, str | None]:
    """AlterPartitionReassignments for one partition (None replicas: cancel); the error of
    the request if it failed as a whole, else the partition's."""
    b = RequestBuilder(ALTER_REASSIGNMENTS, _version(connection, ALTER_REASSIGNMENTS, 0))
    answer = await connection.request(b.make(
        "AlterPartitionReassignmentsRequest", timeout=_timeout(client), topics=(
            b.make("ReassignableTopic", name=topic, partitions=(b.make(
                "ReassignablePartition", partition_index=partition,
                replicas=None if replicas is None else tuple(replicas)),)),)))
    if answer.error_code != ErrorCode.none:
        return ErrorCode(answer.error_code), answer.error_message
    for t in answer.responses:
        for p in t.partitions:
            return ErrorCode(p.error_code), p.error_message
    return ErrorCode.unknown_server_error, "the answer names no partition"


async def list_reassignments(connection: KafkaConnection, client: ClientOptions,
                             topics: Sequence[PartitionLeader] | None = None
                             ) -> dict[tuple[str, int], Reassignment]:
    """The reassignments in progress (of `topics`' partitions, or all for None)."""
    b = RequestBuilder(LIST_REASSIGNMENTS, _version(connection, LIST_REASSIGNMENTS, 0))
    wanted: Any = None
    if topics is not None:
        by_topic: dict[str, list[int]] = {}
        for p in topics:
            by_topic.setdefault(p.topic, []).append(p.partition)
        wanted = tuple(b.make("ListPartitionReassignmentsTopics", name=name,
                              partition_indexes=tuple(parts))
                       for name, parts in by_topic.items())
    answer = await connection.request(b.make(
        "ListPartitionReassignmentsRequest", timeout=_timeout(client), topics=wanted))
    if answer.error_code != ErrorCode.none:
        raise CliError(f"listing reassignments failed: {ErrorCode(answer.error_code).name}"
                       + (f" ({answer.error_message})" if answer.error_message else ""))
    return {(str(t.name), int(p.partition_index)): Reassignment(
                tuple(int(n) for n in p.replicas), tuple(int(n) for n in p.adding_replicas),
                tuple(int(n) for n in p.removing_replicas))
            for t in answer.topics for p in t.partitions}


DESCRIBE_QUOTAS, ALTER_QUOTAS = 48, 49
QUOTA_KEYS: Final = ("producer_byte_rate", "consumer_byte_rate", "request_percentage",
                     "controller_mutation_rate", "connection_creation_rate")
EXACT, DEFAULT, SPECIFIED = 0, 1, 2  # DescribeClientQuotas' match types
Entity = Sequence[tuple[str, str | None]]  # (entity type, name; None: the default)
Quotas = dict[tuple[tuple[str, str | None], ...], dict[str, float]]


def entity_label(entity: Entity) -> str:
    """user=alice, client-id=<default>"""
    return ", ".join(f"{kind}={'<default>' if name is None else name}" for kind, name in entity)


async def describe_quotas(connection: KafkaConnection,
                          components: Sequence[tuple[str, int, str | None]],
                          strict: bool = False) -> Quotas:
    """DescribeClientQuotas: entity -> values; components are (entity type, match type
    0 exact / 1 default / 2 any specified, name)."""
    b = RequestBuilder(DESCRIBE_QUOTAS, _version(connection, DESCRIBE_QUOTAS, 1))
    answer = await connection.request(b.make(
        "DescribeClientQuotasRequest", strict=strict, components=tuple(
            b.make("ComponentData", entity_type=kind, match_type=match_type, match=name)
            for kind, match_type, name in components)))
    if answer.error_code != ErrorCode.none:
        raise CliError(f"describing quotas failed: {answer.error_message or ''} "
                       f"({ErrorCode(answer.error_code).name})")
    return {tuple((str(e.entity_type), e.entity_name) for e in entry.entity):
            {str(v.key): float(v.value) for v in entry.values}
            for entry in answer.entries or ()}


async def alter_quotas(connection: KafkaConnection, entity: Sequence[tuple[str, str | None]],
                       ops: dict[str, float | None]) -> None:
    """AlterClientQuotas of one entity: set (a value) or remove (None) each key."""
    b = RequestBuilder(ALTER_QUOTAS, _version(connection, ALTER_QUOTAS, 1))
    answer = await connection.request(b.make(
        "AlterClientQuotasRequest", validate_only=False, entries=(b.make(
            "EntryData",
            entity=tuple(b.make("EntityData", entity_type=k, entity_name=n) for k, n in entity),
            ops=tuple(b.make("OpData", key=key, value=0.0 if value is None else value,
                             remove=value is None) for key, value in ops.items())),)))
    for entry in answer.entries:
        if entry.error_code != ErrorCode.none:
            raise CliError(f"changing quotas failed: {entry.error_message or ''} "
                           f"({ErrorCode(entry.error_code).name})")


async def remove_quotas(connection: KafkaConnection, entity: Entity,
                        keys: Sequence[str] = ()) -> list[str]:
    """Removes the entity's quotas (only `keys`, if given); the keys it had and lost."""
    components = [(kind, DEFAULT if name is None else EXACT, name) for kind, name in entity]
    found = await describe_quotas(connection, components, strict=True)
    wanted = sorted(entity, key=str)
    current = next((values for key, values in found.items()
                    if sorted(key, key=str) == wanted), {})
    removed = [k for k in current if not keys or k in keys]
    if removed:
        await alter_quotas(connection, entity, dict.fromkeys(removed))
    return removed


def list_quotas(client: ClientOptions,
                components: Sequence[tuple[str, int, str | None]] = ()) -> Quotas:
    """Every quota (or those matching `components`), blocking."""
    async def session(connection: KafkaConnection) -> Quotas:
        return await describe_quotas(connection, components)

    return run(client, session)


def set_quotas(client: ClientOptions, entity: Entity, ops: dict[str, float | None]) -> None:
    """Sets (a value) or removes (None) quotas of one entity, blocking."""
    async def session(connection: KafkaConnection) -> None:
        await alter_quotas(connection, entity, ops)

    run(client, session)


def delete_quotas(client: ClientOptions, entity: Entity, keys: Sequence[str] = ()) -> list[str]:
    """remove_quotas, blocking."""
    async def session(connection: KafkaConnection) -> list[str]:
        return await remove_quotas(connection, entity, keys)

    return run(client, session)


# --- DescribeLogDirs: sizes on storage -------------------------------------------------------

DESCRIBE_LOG_DIRS: Final = 35
Sizes = dict[tuple[str, int], int]


async def log_dir_sizes(connection: KafkaConnection, topics: Sequence[str] | None = None
                        ) -> Sizes:
    """DescribeLogDirs of one broker: the size in bytes of each partition replica it holds
    (of `topics`' partitions, or all for None); unknown sizes (-1) are left out."""
    b = RequestBuilder(DESCRIBE_LOG_DIRS, _version(connection, DESCRIBE_LOG_DIRS, 4, 1))
    wanted: Any = None
    if topics is not None:
        cluster = await leaders(connection, topics)
        by_topic: dict[str, list[int]] = {}
        for p in cluster.partitions:
            by_topic.setdefault(p.topic, []).append(p.partition)
        wanted = tuple(b.make("DescribableLogDirTopic", topic=name, partitions=tuple(parts))
                       for name, parts in by_topic.items())
        if not wanted:
            return {}
    answer = await connection.request(b.make("DescribeLogDirsRequest", topics=wanted))
    code = ErrorCode(getattr(answer, "error_code", ErrorCode.none))
    if code != ErrorCode.none:
        raise CliError(f"describing log directories failed: {code.name}")
    sizes: Sizes = {}
    for result in answer.results:
        if result.error_code != ErrorCode.none:
            continue
        for t in result.topics:
            for p in t.partitions:
                if int(p.partition_size) >= 0 and not p.is_future_key:
                    key = (str(t.name), int(p.partition_index))
                    sizes[key] = sizes.get(key, 0) + int(p.partition_size)
    return sizes


def merge_sizes(per_broker: Sequence[Sizes]) -> Sizes:
    """Each partition's size on storage: its largest replica (replicas hold the same log, and
    brokers sharing one storage all report it: a sum would count it once per broker)."""
    merged: Sizes = {}
    for sizes in per_broker:
        for key, size in sizes.items():
            merged[key] = max(size, merged.get(key, 0))
    return merged


def partition_sizes(client: ClientOptions, topics: Sequence[str] | None = None) -> Sizes:
    """Each partition's size in bytes on storage, from DescribeLogDirs of every broker
    Metadata names (merge_sizes); blocking. Brokers that do not answer are left out."""
    async def session(connection: KafkaConnection) -> Sizes:
        cluster = await leaders(connection, ())
        found = []
        for node in cluster.brokers or (BrokerNode(-1, "", 0, None),):
            if node.node_id < 0 or connection.peer == f"{node.host}:{node.port}":
                found.append(await log_dir_sizes(connection, topics))
                continue
            try:
                other = await _connect(node.host, node.port, client)
            except PeerUnavailable:
                continue
            try:
                found.append(await log_dir_sizes(other, topics))
            finally:
                await other.close()
        return merge_sizes(found)

    return run(client, session)
