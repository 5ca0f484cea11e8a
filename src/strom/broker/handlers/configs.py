"""DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44).

TOPIC resources are described with every topic config strom knows, their value, where the
value comes from and (on request) their synonyms and documentation; they are altered as the
Kafka controller alters them: AlterConfigs replaces a topic's overrides wholesale,
IncrementalAlterConfigs applies SET/DELETE/APPEND/SUBTRACT to them.

BROKER resources are described (the settings the broker was started with, all read-only, and
`strom.version` and `strom.storage.engine`, which a client cannot learn otherwise) but
cannot be altered: strom has no dynamic broker configs, so a change is refused the way Kafka
refuses a config it cannot update dynamically (INVALID_REQUEST).

With an authorizer, as Kafka: describing needs DESCRIBE_CONFIGS, altering ALTER_CONFIGS, on
the topic for a TOPIC resource (else TOPIC_AUTHORIZATION_FAILED), on the cluster for BROKER,
BROKER_LOGGER and CLIENT_METRICS ones (else CLUSTER_AUTHORIZATION_FAILED), on the group for a
GROUP one (else GROUP_AUTHORIZATION_FAILED); a resource refused is neither described nor
changed, and carries the error's own message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from strom import __version__
from strom.broker.authorize import cluster_allowed, group_allowed, topic_allowed
from strom.broker.errors import ApiError, unexpected
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.config.broker import BROKER_SETTINGS, SENSITIVE, BrokerConfig
from strom.config.topic import TOPIC_CONFIGS, ConfigError, ConfigKey, validate_topic_configs
from strom.coordinator.internal_topics import config_refusal
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import TopicInfo, UnknownTopic, format_endpoints

RESOURCE_TOPIC: Final = 2
RESOURCE_BROKER: Final = 4
RESOURCE_BROKER_LOGGER: Final = 8
RESOURCE_CLIENT_METRICS: Final = 16
RESOURCE_GROUP: Final = 32
# Config resources whose configs are the cluster's to guard (Kafka's ConfigHelper and
# ControllerApis.authorizeAlterResource).
CLUSTER_RESOURCES: Final = frozenset({RESOURCE_BROKER, RESOURCE_BROKER_LOGGER,
                                      RESOURCE_CLIENT_METRICS})


class ConfigSource(IntEnum):
    """DescribeConfigsResponse.ConfigSource ids (the ones strom can produce)."""

    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class OpType(IntEnum):
    """AlterConfigOp.OpType ids."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


# Kafka's DescribeConfigsResponse.ConfigType ids.
CONFIG_TYPES: Final[Mapping[str, int]] = {
    "BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4, "LONG": 5, "DOUBLE": 6, "LIST": 7,
    "CLASS": 8, "PASSWORD": 9,
}

_BROKER_DOCS: Final[Mapping[str, str]] = {
    "node.id": "The node id of this broker.",
    "auto.create.topics.enable": "Whether Metadata and Produce requests create unknown topics.",
    "num.partitions": "The default number of partitions of a new topic.",
    "default.replication.factor": "The default replication factor of a new topic.",
    "socket.request.max.bytes": "The largest request the broker reads, in bytes.",
    "socket.request.max.bytes.pre.auth": "The largest request read before the first ApiVersions.",
    "queued.max.requests.per.connection": "Requests read ahead on one connection.",
    "max.connections": "The most client connections the broker accepts at once.",
    "connections.max.idle.ms": "Idle connections are closed after this many milliseconds.",
    "log.retention.check.interval.ms": "How often retention is applied, in milliseconds.",
    "log.flush.scheduler.interval.ms": "How often flush.ms deadlines are checked.",
    "group.initial.rebalance.delay.ms": "How long a new consumer group waits for members.",
    "message.max.decompressed.bytes": "The largest decompressed batch the broker validates.",
    "fetch.max.wait.ms.cap": "The longest a Fetch may wait for data, in milliseconds.",
    "max.incremental.fetch.session.cache.slots": "Fetch sessions kept (strom keeps none).",
    "broker.rack": "The rack of this broker: a partition's replicas are spread over racks.",
    "offsets.topic.replication.factor": "The replication factor of __consumer_offsets when "
                                        "it is created, at most the live brokers then.",
    "transaction.state.log.replication.factor": "The replication factor of "
                                                "__transaction_state when it is created, at "
                                                "most the live brokers then.",
}

_TOPIC_KEY_BY_BROKER_NAME: Final[Mapping[str, ConfigKey]] = {
    key.broker_name: key for key in TOPIC_CONFIGS.values() if key.broker_name
}
_NODE_ID: Final = re.compile(r"-?[0-9]+")
_DUPLICATE_RESOURCE: Final = "Each resource must appear at most once."




@dataclass(frozen=True, slots=True)
class Synonym:
    name: str
    value: str
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigView:
    """One config as DescribeConfigs shows it: synonyms[0] is the value in effect, unless
    `default` is given (the value when no synonym sets it, Kafka's DEFAULT_CONFIG)."""

    name: str
    synonyms: tuple[Synonym, ...]
    kind: str
    read_only: bool
    doc: str
    default: str | None = None

    @property
    def _effective(self) -> Synonym:
        first = self.synonyms[0] if self.synonyms else None
        if self.default is not None and (
                first is None or first.source == ConfigSource.DEFAULT_CONFIG):
            return Synonym(self.name, self.default, ConfigSource.DEFAULT_CONFIG)
        assert first is not None
        return first

    @property
    def value(self) -> str:
        return self._effective.value

    @property
    def source(self) -> int:
        return int(self._effective.source)

    @property
    def type_id(self) -> int:
        return CONFIG_TYPES.get(self.kind, 0)

    @property
    def sensitive(self) -> bool:
        return self.kind == "PASSWORD"


# Broker settings that have no default in Kafka: the topic default comes from another one,
# which Kafka lists as the DEFAULT_CONFIG synonym instead (KafkaConfig.logRetentionTimeMillis).
KAFKA_BROKER_DEFAULTS: Final[Mapping[str, tuple[str, str]]] = {
    "log.retention.ms": ("log.retention.hours", "168"),
    "log.roll.ms": ("log.roll.hours", "168"),
    "log.roll.jitter.ms": ("log.roll.jitter.hours", "0"),
}


def topic_config_views(config: BrokerConfig, overrides: Mapping[str, str]) -> list[ConfigView]:
    """Every topic config, sorted by name: topic override, then broker setting, then default."""
    views = []
    for name in sorted(TOPIC_CONFIGS):
        key = TOPIC_CONFIGS[name]
        synonyms = []
        if name in overrides:
            synonyms.append(Synonym(name, overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG))
        broker_name = key.broker_name
        if broker_name is not None and broker_name in config.settings:
            synonyms.append(Synonym(broker_name, config.settings[broker_name],
                                    ConfigSource.STATIC_BROKER_CONFIG))
        if broker_name is not None:  # Kafka lists the broker setting's default, if it has one
            default_name, default = KAFKA_BROKER_DEFAULTS.get(broker_name,
                                                              (broker_name, key.default))
            synonyms.append(Synonym(default_name, default, ConfigSource.DEFAULT_CONFIG))
        views.append(ConfigView(name, tuple(synonyms), key.kind, False, key.doc, key.default))
    return views


def _broker_default(name: str) -> str:
    if name in BROKER_SETTINGS:
        return BROKER_SETTINGS[name]
    return _TOPIC_KEY_BY_BROKER_NAME[name].default


def _broker_kind(name: str) -> str:
    key = _TOPIC_KEY_BY_BROKER_NAME.get(name)
    if key is not None:
        return key.kind
    if name in SENSITIVE:
        return "PASSWORD"
    if BROKER_SETTINGS[name] in ("true", "false"):
        return "BOOLEAN"
    if name == "broker.rack" or (name.startswith(("ssl.", "sasl.", "listener.", "inter."))
                                 and not BROKER_SETTINGS[name].isdigit()):
        return "LIST" if name.endswith(("mechanisms", "protocols", "suites", ".map",
                                        "audience")) else "STRING"
    if name.endswith(".ms") or name == "message.max.decompressed.bytes":
        return "LONG"
    if name.endswith(".replication.factor") and name != "default.replication.factor":
        return "SHORT"  # Kafka's type for the internal topics' replication factors
    return "INT"


def _broker_doc(name: str) -> str:
    key = _TOPIC_KEY_BY_BROKER_NAME.get(name)
    if key is not None and key.doc:
        return f"The default for topics of {key.name}: {key.doc}"
    return _BROKER_DOCS.get(name, "")


def listener_views(broker: Broker) -> list[ConfigView]:
    """`listeners` (as started: --listen or listeners), `advertised.listeners` (what clients
    are told; Kafka's default is the listener) and `broker.id` (node.id's older name)."""
    config = broker.config
    node = "node.id"
    node_source = (ConfigSource.STATIC_BROKER_CONFIG if node in config.settings
                   else ConfigSource.DEFAULT_CONFIG)
    advertised_source = (ConfigSource.STATIC_BROKER_CONFIG
                         if config.advertised_host is not None or config.advertised_addresses
                         else ConfigSource.DEFAULT_CONFIG)
    listeners = ",".join(f"{a.name}://{a.host}:{broker.bound_ports.get(a.name, a.port)}"
                         for a in config.listeners())
    advertised = format_endpoints(broker.registration().listeners or [
        (config.listeners()[0].name, broker.advertised_host, broker.advertised_port)])
    return [
        ConfigView("listeners", (Synonym("listeners", listeners,
                                         ConfigSource.STATIC_BROKER_CONFIG),),
                   "LIST", True, "Where the broker listens: NAME://HOST:PORT per listener."),
        ConfigView("advertised.listeners", (Synonym(
            "advertised.listeners", advertised,
            advertised_source),), "LIST", True, "Where clients are told to connect."),
        ConfigView("broker.id", (Synonym("broker.id", str(config.node_id), node_source),),
                   "INT", True, "The node id of this broker (node.id's older name)."),
    ]


def strom_views(config: BrokerConfig) -> list[ConfigView]:
    """What a Kafka client cannot learn otherwise (the protocol names no software version):
    `strom.version` and `strom.storage.engine` (`file`, `memory` or `postgresql`: the engine's
    name, never its URL), read-only entries a client such as the console shows."""
    return [
        ConfigView("strom.storage.engine", (Synonym(
            "strom.storage.engine", config.storage_engine,
            ConfigSource.STATIC_BROKER_CONFIG if config.storage.strip()
            else ConfigSource.DEFAULT_CONFIG),), "STRING", True,
            "The storage engine of this broker: file, memory or postgresql."),
        ConfigView("strom.version", (Synonym("strom.version", __version__,
                                             ConfigSource.DEFAULT_CONFIG),),
                   "STRING", True, "The strom version this broker runs."),
    ]


def broker_config_views(broker: Broker) -> list[ConfigView]:
    """The broker's settings and topic defaults, sorted by name; all read-only."""
    config = broker.config
    views = listener_views(broker) + strom_views(config)
    for name in sorted({*BROKER_SETTINGS, *_TOPIC_KEY_BY_BROKER_NAME}):
        synonyms = []
        if name in config.settings:
            synonyms.append(Synonym(name, config.settings[name],
                                    ConfigSource.STATIC_BROKER_CONFIG))
        synonyms.append(Synonym(name, _broker_default(name), ConfigSource.DEFAULT_CONFIG))
        views.append(ConfigView(name, tuple(synonyms), _broker_kind(name), True,
                                _broker_doc(name)))
    return sorted(views, key=lambda v: v.name)


def access_refusal(ctx: RequestContext, operation: Operation, resource_type: int,
                   name: str) -> ApiError | None:
    """The error of a resource the principal may not describe (DESCRIBE_CONFIGS) or alter
    (ALTER_CONFIGS), with the error's own message, as Kafka's `new ApiError(error)`; None
    if allowed, or if the type is not one Kafka guards (it is refused as unsupported)."""
    if resource_type == RESOURCE_TOPIC:
        if not topic_allowed(ctx, operation, name):
            return ApiError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
    elif resource_type in CLUSTER_RESOURCES:
        if not cluster_allowed(ctx, operation):
            return ApiError(ErrorCode.cluster_authorization_failed,
                            "Cluster authorization failed.")
    elif resource_type == RESOURCE_GROUP and not group_allowed(ctx, operation, name):
        return ApiError(ErrorCode.group_authorization_failed, "Group authorization failed.")
    return None


def parse_node_id(name: str) -> int | None:
    return int(name) if _NODE_ID.fullmatch(name) else None


# --- DescribeConfigs -------------------------------------------------------------------------


def described_topic(broker: Broker, name: str) -> TopicInfo:
    error = topic_name_error(name)
    if error is not None:
        raise ApiError(ErrorCode.invalid_topic_exception, error)
    info = broker.engine.topics().get(name)
    if info is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition)
    return info


def resource_views(broker: Broker, resource_type: int, name: str) -> list[ConfigView]:
    if resource_type == RESOURCE_TOPIC:
        info = described_topic(broker, name)
        return topic_config_views(broker.config, info.configs)
    if resource_type == RESOURCE_BROKER:
        if not name:
            return []  # the cluster-wide dynamic defaults: strom has none
        node = parse_node_id(name)
        if node is None:
            raise ApiError(ErrorCode.invalid_request,
                                f"Broker id must be an integer, but it is: {name}")
        if node != broker.node_id:
            raise ApiError(ErrorCode.invalid_request,
                                f"Unexpected broker id, expected {broker.node_id} or empty "
                                f"string, but received {name}")
        return broker_config_views(broker)
    raise ApiError(ErrorCode.invalid_request, f"Unsupported resource type {resource_type}")


def config_entry(b: ResponseBuilder, view: ConfigView, with_synonyms: bool,
                 with_docs: bool) -> Any:
    synonyms = tuple(
        b.make("DescribeConfigsSynonym", name=s.name, value=s.value, source=int(s.source))
        for s in view.synonyms
    ) if with_synonyms else ()
    if view.sensitive:  # Kafka never shows a password, not even its synonyms' values
        synonyms = tuple(
            b.make("DescribeConfigsSynonym", name=s.name, value=None, source=int(s.source))
            for s in view.synonyms) if with_synonyms else ()
    return b.make("DescribeConfigsResourceResult", name=view.name,
                  value=None if view.sensitive else view.value,
                  read_only=view.read_only, config_source=view.source,
                  is_sensitive=view.sensitive,
                  synonyms=synonyms, config_type=view.type_id,
                  documentation=(view.doc or None) if with_docs else None)


def describe_resource(broker: Broker, ctx: RequestContext, b: ResponseBuilder, resource: Any,
                      with_synonyms: bool, with_docs: bool) -> Any:
    def result(error: ErrorCode, message: str | None, configs: tuple[Any, ...]) -> Any:
        return b.make("DescribeConfigsResult", error_code=error, error_message=message,
                      resource_type=resource.resource_type,
                      resource_name=resource.resource_name, configs=configs)

    refused = access_refusal(ctx, Operation.DESCRIBE_CONFIGS, int(resource.resource_type),
                             resource.resource_name)
    if refused is not None:
        return result(refused.code, refused.message, ())
    try:
        views = resource_views(broker, int(resource.resource_type), resource.resource_name)
    except ApiError as exc:
        return result(exc.code, exc.message, ())
    wanted = resource.configuration_keys
    if wanted:
        keys = set(wanted)
        views = [v for v in views if v.name in keys]
    return result(ErrorCode.none, None,
                  tuple(config_entry(b, v, with_synonyms, with_docs) for v in views))


@api(32, "DescribeConfigs", (1, 4),
     "TOPIC and BROKER resources (a broker also names `strom.version` and "
     "`strom.storage.engine`); synonyms, documentation and config types")
async def handle_describe_configs(broker: Broker, ctx: RequestContext, request: Any,
                                  b: ResponseBuilder) -> Any:
    with_synonyms = bool(getattr(request, "include_synonyms", False))
    with_docs = bool(getattr(request, "include_documentation", False))
    results = tuple(describe_resource(broker, ctx, b, r, with_synonyms, with_docs)
                    for r in request.resources)
    return b.make("DescribeConfigsResponse", throttle_time=NO_THROTTLE, results=results)


# --- AlterConfigs and IncrementalAlterConfigs ------------------------------------------------


def check_entries(configs: Iterable[Any], incremental: bool) -> None:
    """The broker-side checks Kafka makes before forwarding to the controller."""
    counts = Counter(c.name for c in configs)
    if any(n > 1 for n in counts.values()):
        raise ApiError(ErrorCode.invalid_request, "Error due to duplicate config keys")
    nulls = [c.name for c in configs if c.value is None
             and not (incremental and int(c.config_operation) == OpType.DELETE)]
    if nulls:
        raise ApiError(ErrorCode.invalid_request,
                            "Null value not supported for : " + ", ".join(nulls))


def check_broker_change(broker: Broker, name: str, configs: Iterable[Any]) -> None:
    if name:
        node = parse_node_id(name)
        if node is None:
            raise ApiError(ErrorCode.invalid_request,
                                f"Node id must be an integer, but it is: {name}")
        if node != broker.node_id:
            raise ApiError(ErrorCode.invalid_request,
                                f"Unexpected broker id, expected {broker.node_id}, "
                                f"but received {name}")
    names = sorted({c.name for c in configs})
    if names:
        raise ApiError(ErrorCode.invalid_request,
                            f"Cannot update these configs dynamically: {', '.join(names)} "
                            "(strom has no dynamic broker configs)")


def _list_parts(value: str) -> list[str]:
    return [part for part in value.split(",") if part]


def apply_list_op(current: Mapping[str, str], name: str, op: OpType, value: str) -> str:
    key = TOPIC_CONFIGS.get(name)
    if key is None or key.kind != "LIST":
        raise ApiError(ErrorCode.invalid_config,
                            f"Can't {op.name} to key {name} because its type is not LIST.")
    # Kafka starts from the config's own default, not the broker's, when there is no override.
    parts = _list_parts(current.get(name, key.default))
    for item in value.split(","):
        if op == OpType.APPEND and item not in parts:
            parts.append(item)
        elif op == OpType.SUBTRACT and item in parts:
            parts.remove(item)
    return ",".join(parts)


def apply_ops(current: Mapping[str, str], ops: Iterable[Any]) -> dict[str, str]:
    """The overrides after `ops` (values already checked non-null except for DELETE)."""
    updated = dict(current)
    for entry in ops:
        code = int(entry.config_operation)
        if code == OpType.SET:
            updated[entry.name] = entry.value
        elif code == OpType.DELETE:
            updated.pop(entry.name, None)
        elif code in (OpType.APPEND, OpType.SUBTRACT):
            updated[entry.name] = apply_list_op(updated, entry.name, OpType(code), entry.value)
        else:
            raise ApiError(ErrorCode.invalid_request, f"Unknown operations type {code}")
    return updated


def check_topic_resource_name(name: str) -> None:
    if not name:
        raise ApiError(ErrorCode.invalid_request, "Default topic resources are not allowed.")
    error = topic_name_error(name)
    if error is not None:
        raise ApiError(ErrorCode.invalid_topic_exception, error)


async def alter_topic(broker: Broker, resource: Any, incremental: bool,
                      validate_only: bool) -> None:
    async with broker.topic_locks.hold(str(resource.resource_name)):
        await _alter_topic(broker, resource, incremental, validate_only)


async def _alter_topic(broker: Broker, resource: Any, incremental: bool,
                       validate_only: bool) -> None:
    name = resource.resource_name
    info = broker.engine.topics().get(name)
    current = dict(info.configs) if info is not None else {}
    if incremental:
        wanted = apply_ops(current, resource.configs)
    else:
        wanted = {c.name: c.value for c in resource.configs}
    check_topic_resource_name(name)
    try:
        overrides = validate_topic_configs(wanted)
    except ConfigError as exc:
        raise ApiError(ErrorCode.invalid_config, str(exc)) from None
    if info is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition,
                            f"The topic '{name}' does not exist.")
    refusal = config_refusal(name, overrides, broker.config.topic_default("cleanup.policy")[0])
    if refusal is not None:
        raise ApiError(ErrorCode.invalid_config, refusal)
    if validate_only or overrides == current:
        return
    try:
        await broker.engine.set_topic_configs(name, overrides)
    except UnknownTopic:
        raise ApiError(ErrorCode.unknown_topic_or_partition,
                            f"The topic '{name}' does not exist.") from None


async def alter_resource(broker: Broker, resource: Any, incremental: bool,
                         validate_only: bool) -> None:
    check_entries(resource.configs, incremental)
    resource_type = int(resource.resource_type)
    if resource_type == RESOURCE_BROKER:
        check_broker_change(broker, resource.resource_name, resource.configs)
    elif resource_type == RESOURCE_TOPIC:
        await alter_topic(broker, resource, incremental, validate_only)
    else:
        raise ApiError(ErrorCode.invalid_request,
                            f"Unsupported resource type {resource_type}")


async def alter_all(broker: Broker, ctx: RequestContext, b: ResponseBuilder, request: Any,
                    incremental: bool) -> tuple[Any, ...]:
    counts = Counter((int(r.resource_type), r.resource_name) for r in request.resources)
    responses = []
    for resource in request.resources:
        error, message = ErrorCode.none, None
        try:
            if counts[(int(resource.resource_type), resource.resource_name)] > 1:
                raise ApiError(ErrorCode.invalid_request, _DUPLICATE_RESOURCE)
            refused = access_refusal(ctx, Operation.ALTER_CONFIGS,
                                     int(resource.resource_type), resource.resource_name)
            if refused is not None:
                raise refused
            await alter_resource(broker, resource, incremental, bool(request.validate_only))
        except ApiError as exc:
            error, message = exc.code, exc.message
        except Exception:
            error = unexpected(f"altering configs of {resource.resource_name!r}").code
        responses.append(b.make("AlterConfigsResourceResponse", error_code=error,
                                error_message=message, resource_type=resource.resource_type,
                                resource_name=resource.resource_name))
    return tuple(responses)


@api(33, "AlterConfigs", (0, 2),
     "replaces a topic's overrides wholesale; broker configs are not dynamic (INVALID_REQUEST)")
async def handle_alter_configs(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    responses = await alter_all(broker, ctx, b, request, incremental=False)
    return b.make("AlterConfigsResponse", throttle_time=NO_THROTTLE, responses=responses)


@api(44, "IncrementalAlterConfigs", (0, 1),
     "SET/DELETE/APPEND/SUBTRACT on topic configs; broker configs are not dynamic")
async def handle_incremental_alter_configs(broker: Broker, ctx: RequestContext, request: Any,
                                           b: ResponseBuilder) -> Any:
    responses = await alter_all(broker, ctx, b, request, incremental=True)
    return b.make("IncrementalAlterConfigsResponse", throttle_time=NO_THROTTLE,
                  responses=responses)
