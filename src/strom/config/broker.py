"""Broker settings: typed, with Kafka's dotted names at the boundary and every default here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from strom.config.topic import TOPIC_CONFIGS, ConfigError, LogConfig

MIB: Final = 1024 * 1024

# Names a broker accepts besides the topic-level defaults (log.*), with their defaults.
BROKER_SETTINGS: Final[Mapping[str, str]] = {
    "node.id": "1",
    "auto.create.topics.enable": "true",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "socket.request.max.bytes": str(100 * MIB),
    "socket.request.max.bytes.pre.auth": str(64 * 1024),
    "queued.max.requests.per.connection": "100",
    "max.connections": "10000",
    "connections.max.idle.ms": "600000",
    "log.retention.check.interval.ms": "300000",
    "log.flush.scheduler.interval.ms": "1000",
    "log.cleaner.backoff.ms": "15000",
    "log.cleaner.dedupe.buffer.size": str(128 * MIB),
    "group.initial.rebalance.delay.ms": "3000",
    "group.min.session.timeout.ms": "6000",
    "group.max.session.timeout.ms": "1800000",
    "group.max.size": str(2**31 - 1),
    "group.consumer.session.timeout.ms": "45000",
    "group.consumer.heartbeat.interval.ms": "5000",
    "offsets.retention.minutes": "10080",
    "offsets.topic.num.partitions": "50",
    "transaction.state.log.num.partitions": "50",
    # The internal topics are created with min(this, the live brokers): Kafka refuses to
    # create them until that many brokers are live, strom must also work alone.
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.max.timeout.ms": "900000",
    "transactional.id.expiration.ms": "604800000",
    "message.max.decompressed.bytes": str(256 * MIB),
    "producer.id.expiration.ms": "86400000",
    "fetch.max.wait.ms.cap": "30000",
    "max.incremental.fetch.session.cache.slots": "1000",
    # Brokers sharing a storage (PostgreSQL) register there and renew their session (KRaft's
    # names and defaults); a broker whose session expired is no longer listed.
    "broker.heartbeat.interval.ms": "2000",
    "broker.session.timeout.ms": "9000",
    # The broker's rack (Kafka's broker.rack; empty: none): Metadata lists it, and replicas
    # are reported spread over racks.
    "broker.rack": "",
    # How long a statement to the storage's database (PostgreSQL) may go unanswered before it
    # counts as failed and the broker reconnects (a frozen or cut-off server): also the
    # server's statement_timeout for the broker's sessions.
    "storage.statement.timeout.ms": "30000",
    # A broker's requests to another (transaction markers, KIP-890 verification): Kafka's
    # inter-broker client settings.
    "socket.connection.setup.timeout.ms": "10000",
    "request.timeout.ms": "30000",
}

# Settings that make no sense below 1 (Kafka's atLeast(1) validators).
_AT_LEAST_ONE: Final = frozenset({"broker.heartbeat.interval.ms", "broker.session.timeout.ms",
                                  "storage.statement.timeout.ms",
                                  "socket.connection.setup.timeout.ms", "request.timeout.ms",
                                  "offsets.topic.replication.factor",
                                  "transaction.state.log.replication.factor"})
# Kafka's SHORT settings: at most 32767.
_SHORT: Final = frozenset({"offsets.topic.replication.factor",
                           "transaction.state.log.replication.factor"})
SHORT_MAX: Final = 2**15 - 1

# Settings whose values are free text.
_TEXT: Final = frozenset({"broker.rack"})

# Topic configs may be given to the broker by their topic-level name too (--set flush.messages=1).
_TOPIC_ALIASES: Final[Mapping[str, str]] = {
    key.name: key.broker_name for key in TOPIC_CONFIGS.values() if key.broker_name
}
_BROKER_TOPIC_DEFAULTS: Final[Mapping[str, str]] = {
    key.broker_name: key.default for key in TOPIC_CONFIGS.values() if key.broker_name
}


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ConfigError(f"{text!r} is not true or false")
    return lowered == "true"


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{text!r} is not an integer") from None


def parse_listener(name: str, value: str) -> tuple[str, int]:
    """(host, port) of a one-listener `listeners` value: [PLAINTEXT://]HOST:PORT."""
    text = value.strip()
    if "," in text:
        raise ConfigError(f"{name} {value!r}: strom serves one listener; several come with "
                          "security (TLS, SASL)")
    listener, sep, address = text.partition("://")
    if not sep:
        listener, address = "PLAINTEXT", text
    if listener.upper() != "PLAINTEXT":
        raise ConfigError(f"{name} {value!r}: only PLAINTEXT listeners are served so far")
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{name} {value!r}: expected PLAINTEXT://HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(slots=True)
class BrokerConfig:
    """Everything a broker is told at start; `settings` keeps the dotted names it was given."""

    data_dir: Path = Path("./data")
    storage: str = ""  # a storage URL (strom.storage.select); empty: file:<data_dir>
    host: str = "localhost"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None  # None: the port the broker listens on
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, data_dir: Path, host: str, port: int,
              overrides: Mapping[str, str] | None = None, storage: str = "") -> BrokerConfig:
        config = cls(data_dir=data_dir, storage=storage, host=host, port=port)
        for name, value in (overrides or {}).items():
            config.set(name, value)
        heartbeat = config.get_int("broker.heartbeat.interval.ms")
        if config.get_int("broker.session.timeout.ms") <= heartbeat:
            raise ConfigError("broker.session.timeout.ms must be longer than "
                              f"broker.heartbeat.interval.ms ({heartbeat}): a broker stops "
                              "acknowledging one heartbeat before its session can expire")
        return config

    @property
    def log_dir(self) -> str:
        """Where the log lives, as DescribeLogDirs and messages name it."""
        storage = self.storage.strip()
        if storage.startswith("memory:"):
            return "memory:"
        if storage.startswith(("postgresql:", "postgres:")):  # the URL without its password
            return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", storage)
        return str(self.data_dir.resolve())

    def set(self, name: str, value: str) -> None:
        """Sets one setting by its Kafka name; raises ConfigError for unknown names or values."""
        name = name.strip()
        if name in ("listeners", "advertised.listeners", "advertised.host"):
            self._set_address(name, value)
            return
        if name == "broker.id":  # Kafka's older name of node.id
            name = "node.id"
        broker_name = _TOPIC_ALIASES.get(name, name)
        if broker_name in _BROKER_TOPIC_DEFAULTS:
            topic_name = next(k for k, v in _TOPIC_ALIASES.items() if v == broker_name)
            try:
                TOPIC_CONFIGS[topic_name].parse(value)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        elif broker_name in BROKER_SETTINGS:
            if broker_name in _TEXT:
                pass
            elif BROKER_SETTINGS[broker_name] in ("true", "false"):
                _bool(value)
            elif _int(value) < 1 and broker_name in _AT_LEAST_ONE:
                raise ConfigError(f"{name}: must be at least 1, not {value.strip()}")
            elif _int(value) > SHORT_MAX and broker_name in _SHORT:
                raise ConfigError(f"{name}: must be at most {SHORT_MAX}, not {value.strip()}")
        else:
            raise ConfigError(f"unknown setting {name!r}; see docs/configuration.md")
        self.settings[broker_name] = value.strip()

    def _set_address(self, name: str, value: str) -> None:
        """Where clients reach this broker: `listeners` / `advertised.listeners` with one
        PLAINTEXT listener (strom serves one today): NAME://HOST:PORT, an empty host meaning
        all interfaces; or `advertised.host`."""
        if name == "advertised.host":
            self.advertised_host = value.strip()
            return
        host, port = parse_listener(name, value)
        if name == "listeners":
            self.host, self.port = host or "0.0.0.0", port
        else:
            if not host:
                raise ConfigError(f"advertised.listeners {value!r}: needs a host clients can "
                                  "reach")
            self.advertised_host, self.advertised_port = host, port
        self.settings[name] = value.strip()

    def get(self, name: str) -> str:
        if name in self.settings:
            return self.settings[name]
        if name in BROKER_SETTINGS:
            return BROKER_SETTINGS[name]
        return _BROKER_TOPIC_DEFAULTS[name]

    def get_int(self, name: str) -> int:
        return _int(self.get(name))

    def get_bool(self, name: str) -> bool:
        return _bool(self.get(name))

    @property
    def node_id(self) -> int:
        return self.get_int("node.id")

    @property
    def rack(self) -> str | None:
        return self.get("broker.rack").strip() or None

    @property
    def advertised(self) -> str:
        return self.advertised_host or self.host

    def topic_default(self, topic_name: str) -> tuple[str, bool]:
        """The broker's value for a topic config and whether it was set (not Kafka's default)."""
        key = TOPIC_CONFIGS[topic_name]
        if key.broker_name is not None and key.broker_name in self.settings:
            return self.settings[key.broker_name], True
        return key.default, False

    def effective_topic_configs(self, overrides: Mapping[str, str]) -> dict[str, str]:
        values = {name: self.topic_default(name)[0] for name in TOPIC_CONFIGS}
        values.update(overrides)
        return values

    def log_config(self, overrides: Mapping[str, str]) -> LogConfig:
        return LogConfig.from_effective(self.effective_topic_configs(overrides))
