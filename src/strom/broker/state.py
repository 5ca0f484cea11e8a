"""The broker's shared state: its config, storage engine, cluster identity, coordinators,
connections to the other brokers."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Final

from strom.broker.authz import AclRuntime
from strom.broker.group_runtime import GroupRuntime
from strom.broker.meter import TopicMeter
from strom.broker.peers import Peers
from strom.broker.producer_ids import ProducerIdAllocator
from strom.broker.quotas import QuotaRuntime
from strom.broker.sasl import SaslMechanisms
from strom.broker.schema_validation import SchemaValidator
from strom.broker.topic_locks import TopicLocks
from strom.broker.txn_runtime import TransactionRuntime, transaction_config
from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.config.topic import ConfigError
from strom.coordinator.group.lag_health import HealthRules
from strom.coordinator.group.model import GroupConfig
from strom.coordinator.internal_topics import RESERVED_TOPICS
from strom.security.acl import Authorizer, Operation, ResourceType
from strom.security.client_security import ClientSecurity, inter_broker
from strom.security.session import Session
from strom.storage.api import BrokerRegistration, StorageEngine, TopicExists, TopicInfo
from strom.storage.select import POSTGRES_PREFIXES

log = logging.getLogger(__name__)

MAX_TOPIC_NAME_LENGTH: Final = 249
_LEGAL_TOPIC_NAME: Final = re.compile(r"^[a-zA-Z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class RequestContext:
    client_id: str | None
    client_host: str
    api_version: int
    correlation_id: int
    # The connection's security session (listener, principal); a PLAINTEXT one by default.
    session: Session = field(default_factory=Session.plaintext)
    authorizer: Authorizer | None = None  # None: authorization is off, everything allowed

    def allowed(self, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        """Whether the session's principal may do `operation` on the resource."""
        if self.authorizer is None:
            return True
        return self.authorizer.authorize(str(self.session.principal), self.session.client_host,
                                         operation, resource_type, name)

    def operations(self, resource_type: ResourceType, name: str) -> int | None:
        """Kafka's authorized_operations bit field of the resource; None without an
        authorizer (the caller answers with everything the resource supports)."""
        if self.authorizer is None:
            return None
        return self.authorizer.authorized_operations(
            str(self.session.principal), self.session.client_host, resource_type, name)


def topic_name_error(name: str | None) -> str | None:
    """Why Kafka would refuse this topic name, or None if it is legal."""
    if not name:
        return "Topic name is empty"
    if name in (".", ".."):
        return f"Topic name cannot be {name!r}"
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"Topic name is longer than {MAX_TOPIC_NAME_LENGTH} characters"
    if not _LEGAL_TOPIC_NAME.match(name):
        return f"Topic name {name!r} has characters other than ASCII alphanumerics, '.', '_', '-'"
    return None


def group_config(config: BrokerConfig) -> GroupConfig:
    return GroupConfig(
        min_session_timeout_ms=config.get_int("group.min.session.timeout.ms"),
        max_session_timeout_ms=config.get_int("group.max.session.timeout.ms"),
        initial_rebalance_delay_ms=config.get_int("group.initial.rebalance.delay.ms"),
        max_group_size=config.get_int("group.max.size"),
        offsets_retention_ms=config.get_int("offsets.retention.minutes") * 60_000,
        offsets_topic_partitions=config.get_int("offsets.topic.num.partitions"),
        consumer_session_timeout_ms=config.get_int("group.consumer.session.timeout.ms"),
        consumer_heartbeat_interval_ms=config.get_int("group.consumer.heartbeat.interval.ms"),
    )


def lag_rules(config: BrokerConfig) -> HealthRules:
    """The consumer-lag health windows (lag.health.*; the window is checked at least 2)."""
    return HealthRules(window=config.get_int("lag.health.window.commits"),
                       min_distance_ms=max(config.get_int("lag.health.min.distance.ms"), 0))


def peer_security(config: BrokerConfig) -> ClientSecurity | None:
    """How this broker reaches the others (strom.security.client_security.inter_broker). A
    broker whose storage no other broker shares (a data directory, memory) never does: a
    SASL inter-broker listener without the broker's own login is then no error."""
    try:
        return inter_broker(config)
    except ConfigError:
        if config.storage.strip().startswith(POSTGRES_PREFIXES):
            raise
        return None

class Broker:
    """What every handler needs; one per process."""

    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        """`engine` is open."""
        self.config = config
        self.engine = engine
        self.cluster_id = engine.cluster_id()
        self.node_id = config.node_id
        self.advertised_host = config.advertised
        self.listen_port = config.port  # the bound port once the server listens
        self.advertised_port = config.advertised_port or config.port
        # listener name -> the port it is bound to (the server sets them once listening)
        self.bound_ports: dict[str, int] = {a.name: a.port for a in config.listeners()}
        self.sasl = SaslMechanisms(config, engine)
        self.acls = AclRuntime(config, engine)
        self.quotas = QuotaRuntime(config, engine)
        self.topic_locks = TopicLocks()
        self.meter: TopicMeter | None = None  # per-topic counts; None: metrics are off
        # Validation on produce against the schema registry: made when a topic first asks
        # (strom.broker.handlers.produce.schema_validator).
        self.schema_validator: SchemaValidator | None = None
        self.groups = GroupRuntime(
            engine, group_config(config), config.node_id,
            replication_factor=config.get_int("offsets.topic.replication.factor"),
            lag_rules=lag_rules(config))
        self.producer_ids = ProducerIdAllocator(engine)
        self.peers = Peers(
            engine, config.node_id,
            connect_timeout_s=config.get_int("socket.connection.setup.timeout.ms") / 1000,
            request_timeout_s=config.get_int("request.timeout.ms") / 1000,
            security=peer_security(config))
        self.transactions = TransactionRuntime(
            engine, transaction_config(config, self.groups, self.producer_ids),
            self.producer_ids, self.groups, self.peers,
            replication_factor=config.get_int("transaction.state.log.replication.factor"))

    def registration(self) -> BrokerRegistration:
        """This broker as Metadata lists it: every listener's advertised address; host and
        port are the inter-broker listener's."""
        first = self.config.listeners()[0].name
        endpoints = []
        for name, port in self.bound_ports.items():
            if name == first:  # `advertised_host` / `advertised_port` (tests set them)
                endpoints.append((name, self.advertised_host, self.advertised_port))
            else:
                endpoints.append((name, *self.config.advertised_address(name, port)))
        inter = self.config.inter_broker_listener()
        _, host, port = next(e for e in endpoints if e[0] == inter)
        return BrokerRegistration(self.node_id, host, port, self.config.rack,
                                  tuple(endpoints) if len(endpoints) > 1 else ())

    async def register(self) -> None:
        """Lists this broker in the engine, with its advertised host and port."""
        await self.engine.register_broker(self.registration())

    def resolve_topic(self, name: str | None, topic_id: uuid.UUID | None) -> str | None:
        """The topic a request names, by name or (newer versions) by id; None if unknown."""
        if name:
            return name
        if topic_id is None:
            return None
        info = self.engine.topic_by_id(topic_id)
        return None if info is None else info.name

    async def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Creates `name` with the broker defaults if auto.create.topics.enable allows it;
        never an internal topic (only its coordinator creates it). Raises StorageError or
        OSError if the engine cannot create it."""
        if not self.config.get_bool("auto.create.topics.enable"):
            return None
        if topic_name_error(name) is not None or name in RESERVED_TOPICS:
            return None
        async with self.topic_locks.hold(name):
            existing = self.engine.topics().get(name)
            if existing is not None:
                return existing
            try:
                info = await self.engine.create_topic(
                    name, self.config.get_int("num.partitions"), {}
                )
            except TopicExists:
                return self.engine.topics().get(name)
            log.info("auto-created topic %s with %s", name, plural(info.partitions, "partition"))
            return info
