"""KIP-158 topic creation for source connectors: `topic.creation.groups` and the
`topic.creation.<group>.*` settings of a connector decide the partitions, replication factor and
topic configs of a topic its tasks write to that does not exist yet.

The `default` group matches every topic and needs `replication.factor` and `partitions` (-1: the
broker's default); other groups (in the order `topic.creation.groups` lists them) match the topics
one of their `include` regexes matches and none of their `exclude` ones, and take what they don't
set from the default group. Everything else under a group's prefix is a topic config
(`topic.creation.default.cleanup.policy=compact`). The worker's `topic.creation.enable` (default
true) turns it off; a connector without `topic.creation.*` settings leaves topics to the broker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from strom.connect.errors import ConfigException

PREFIX = "topic.creation."
GROUPS = PREFIX + "groups"
DEFAULT_GROUP = "default"
INCLUDE = "include"
EXCLUDE = "exclude"
REPLICATION_FACTOR = "replication.factor"
PARTITIONS = "partitions"
_OWN = {INCLUDE, EXCLUDE, REPLICATION_FACTOR, PARTITIONS}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class TopicCreationConfigError(ConfigException):
    """A bad topic.creation.* setting: `name` and the (Kafka-worded) message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def enabled_for(worker_props: Mapping[str, str], connector_config: Mapping[str, str]) -> bool:
    """Whether the worker creates the connector's topics (Kafka: the worker's
    topic.creation.enable and any topic.creation.* setting of the connector)."""
    enable = worker_props.get("topic.creation.enable", "true").strip().lower() != "false"
    return enable and any(key.startswith(PREFIX) for key in connector_config)


@dataclass
class TopicCreationGroup:
    name: str
    partitions: int
    replication_factor: int
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)

    def matches(self, topic: str) -> bool:
        return (any(p.fullmatch(topic) for p in self.include)
                and not any(p.fullmatch(topic) for p in self.exclude))


def _size(config: Mapping[str, str], name: str, what: str, default: int | None) -> int:
    raw = config.get(name)
    if raw is None or not raw.strip():
        if default is None:
            raise TopicCreationConfigError(name, f'Missing required configuration "{name}" '
                                                 "which has no default value.")
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise TopicCreationConfigError(name, f"Invalid value {raw} for configuration {name}: "
                                             "Not a number of type INT") from None
    if value == 0 or value < -1:
        raise TopicCreationConfigError(name, f"Invalid value {raw} for configuration {name}: "
                                             f"{what} must be a positive integer, or -1 to "
                                             "use the broker's default")
    return value


def _patterns(config: Mapping[str, str], name: str) -> list[re.Pattern[str]]:
    out = []
    for regex in _split(config.get(name)):
        try:
            out.append(re.compile(regex))
        except re.error as error:
            raise TopicCreationConfigError(name, f"Invalid value {regex} for configuration "
                                                 f"{name}: {error}") from None
    return out


def _topic_configs(config: Mapping[str, str], group: str) -> dict[str, str]:
    prefix = f"{PREFIX}{group}."
    return {key[len(prefix):]: value for key, value in config.items()
            if key.startswith(prefix) and key[len(prefix):] not in _OWN}


class TopicCreation:
    """The topic creation groups of one connector (Kafka's TopicCreation)."""

    def __init__(self, groups: list[TopicCreationGroup], default: TopicCreationGroup) -> None:
        self.groups = groups
        self.default = default

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> TopicCreation:
        """Raises ConfigException (Kafka's messages) for missing or bad settings."""
        prefix = f"{PREFIX}{DEFAULT_GROUP}."
        default = TopicCreationGroup(
            DEFAULT_GROUP,
            _size(config, prefix + PARTITIONS, "Number of partitions", None),
            _size(config, prefix + REPLICATION_FACTOR, "Replication factor", None),
            [re.compile(".*")], [], _topic_configs(config, DEFAULT_GROUP))
        groups = []
        for name in dict.fromkeys(_split(config.get(GROUPS))):
            if name == DEFAULT_GROUP:
                continue
            prefix = f"{PREFIX}{name}."
            groups.append(TopicCreationGroup(
                name,
                _size(config, prefix + PARTITIONS, "Number of partitions", default.partitions),
                _size(config, prefix + REPLICATION_FACTOR, "Replication factor",
                      default.replication_factor),
                _patterns(config, prefix + INCLUDE), _patterns(config, prefix + EXCLUDE),
                _topic_configs(config, name)))
        return cls(groups, default)

    def group_for(self, topic: str) -> TopicCreationGroup:
        """The first listed group that matches the topic, else the default group."""
        for group in self.groups:
            if group.matches(topic):
                return group
        return self.default


def validation_errors(config: Mapping[str, str]) -> dict[str, list[str]]:
    """The errors of a connector's topic.creation.* settings, by setting name (none when it has
    none of them)."""
    if not any(key.startswith(PREFIX) for key in config):
        return {}
    try:
        TopicCreation.from_config(config)
    except TopicCreationConfigError as error:
        return {error.name: [error.message]}
    return {}
