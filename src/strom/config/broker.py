"""Broker settings: typed, with Kafka's dotted names at the boundary and every default here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from strom.config.listeners import (
    DEFAULT_PROTOCOL_MAP,
    ListenerAddress,
    check_ports,
    parse_http_listeners,
    parse_listeners,
    parse_protocol_map,
)
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
    # Connections one client address may hold (Kafka's); overrides: HOST:N,... (a host
    # name or IP address).
    "max.connections.per.ip": str(2**31 - 1),
    "max.connections.per.ip.overrides": "",
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
    # Listeners (config/listeners.py): which security protocol each listener name speaks,
    # and the one brokers use to reach each other (empty: the first listener).
    "listener.security.protocol.map": DEFAULT_PROTOCOL_MAP,
    "inter.broker.listener.name": "",
    # How a broker logs in at the inter-broker listener when it is a SASL one: the mechanism
    # (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; Kafka's name) and the broker's user in the
    # listener's listener.name.NAME.MECHANISM.sasl.jaas.config (or sasl.jaas.config).
    "sasl.mechanism.inter.broker.protocol": "",
    "sasl.jaas.config": "",
    # A broker reaching another over TLS checks the host name against its certificate
    # ("https", Kafka's default) or not ("").
    "ssl.endpoint.identification.algorithm": "https",
    # TLS (SSL and SASL_SSL listeners; each may be prefixed listener.name.NAME. for one
    # listener): Kafka's names, PEM files only.
    "ssl.keystore.type": "PEM",
    "ssl.keystore.location": "",
    "ssl.keystore.key": "",
    "ssl.keystore.certificate.chain": "",
    "ssl.key.password": "",
    # Kafka's JKS/PKCS12 store passwords: PEM stores have none (refused when set).
    "ssl.keystore.password": "",
    "ssl.truststore.password": "",
    "ssl.truststore.type": "PEM",
    "ssl.truststore.location": "",
    "ssl.truststore.certificates": "",
    "ssl.client.auth": "none",
    "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
    "ssl.protocol": "TLSv1.3",
    "ssl.cipher.suites": "",
    "ssl.principal.mapping.rules": "DEFAULT",
    # How often the key and trust store files are checked for a new certificate (strom's).
    "ssl.reload.check.interval.ms": "10000",
    # SASL (SASL_PLAINTEXT and SASL_SSL listeners). PLAIN checks the SCRAM credentials.
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    "connections.max.reauth.ms": "0",
    # OAUTHBEARER tokens are JWTs checked against these keys (KIP-768).
    "sasl.oauthbearer.jwks.endpoint.url": "",
    "sasl.oauthbearer.jwks.endpoint.refresh.ms": "3600000",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": "100",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "10000",
    "sasl.oauthbearer.expected.audience": "",
    "sasl.oauthbearer.expected.issuer": "",
    "sasl.oauthbearer.scope.claim.name": "scope",
    "sasl.oauthbearer.sub.claim.name": "sub",
    "sasl.oauthbearer.clock.skew.seconds": "30",
    # Authorization (docs/security.md): Kafka's authorizer class names enable the ACLs.
    "authorizer.class.name": "",
    "super.users": "",
    "allow.everyone.if.no.acl.found": "false",
    # How often a broker checks whether another one changed the ACLs (strom's).
    "acl.refresh.interval.ms": "1000",
    # Client quotas: rates are measured over quota.window.num windows of this many seconds
    # (Kafka's); quota.refresh.interval.ms is strom's, as acl.refresh.interval.ms.
    "quota.window.num": "11",
    "quota.window.size.seconds": "1",
    "quota.refresh.interval.ms": "1000",
    # Where /metrics, /healthz and /readyz are served over HTTP (docs/metrics.md): HOST:PORT,
    # comma separated (strom's); empty: nowhere, and no metrics are kept.
    "http.listeners": "",
    # Consumer-lag health (docs/operations.md): commits kept per group partition, and how close
    # (ms) a commit may follow the previous one before it replaces it (strom's, after Burrow's).
    "lag.health.window.commits": "10",
    "lag.health.min.distance.ms": "1000",
}

# Kafka's authorizer class names (and strom's own) all mean the standard ACL authorizer.
AUTHORIZER_NAMES: Final = frozenset({
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
    "strom",
})

# The SASL mechanisms Kafka knows (a listener's JAAS settings may be per mechanism).
SASL_MECHANISMS: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER",
                                    "GSSAPI"})

# Settings whose values are secrets: never shown (DescribeConfigs marks them sensitive).
SENSITIVE: Final = frozenset({"ssl.key.password", "ssl.keystore.key", "ssl.keystore.password",
                              "ssl.truststore.password", "sasl.jaas.config"})
# Settings a listener may override with the prefix listener.name.NAME. (Kafka's per-listener
# configs).
_PER_LISTENER_PREFIXES: Final = ("ssl.", "sasl.", "connections.max.reauth.ms")

# Settings that make no sense below 1 (Kafka's atLeast(1) validators).
_AT_LEAST_ONE: Final = frozenset({"broker.heartbeat.interval.ms", "broker.session.timeout.ms",
                                  "acl.refresh.interval.ms", "quota.window.num",
                                  "quota.window.size.seconds", "quota.refresh.interval.ms",
                                  "storage.statement.timeout.ms",
                                  "socket.connection.setup.timeout.ms", "request.timeout.ms",
                                  "offsets.topic.replication.factor",
                                  "transaction.state.log.replication.factor"})
# Kafka's SHORT settings: at most 32767.
_SHORT: Final = frozenset({"offsets.topic.replication.factor",
                           "transaction.state.log.replication.factor"})
SHORT_MAX: Final = 2**15 - 1

# Settings whose values are free text.
_TEXT: Final = frozenset({"broker.rack", "http.listeners", "inter.broker.listener.name",
                          "authorizer.class.name",
                          "super.users", "max.connections.per.ip.overrides",
                          *(name for name, default in BROKER_SETTINGS.items()
                            if name.startswith(("ssl.", "sasl.", "listener."))
                            and not default.isdigit())})

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


def _check_broker_value(name: str, broker_name: str, value: str) -> None:
    if broker_name == "listener.security.protocol.map":
        parse_protocol_map(value)
    elif broker_name == "authorizer.class.name" and value.strip() and (
            value.strip() not in AUTHORIZER_NAMES):
        raise ConfigError(f"authorizer.class.name {value.strip()!r}: strom's authorizer "
                          f"answers to {', '.join(sorted(AUTHORIZER_NAMES))}")
    elif broker_name == "max.connections.per.ip.overrides":
        parse_ip_overrides(value)
    elif broker_name == "http.listeners":
        parse_http_listeners(value)
    elif broker_name in _TEXT:
        pass
    elif BROKER_SETTINGS[broker_name] in ("true", "false"):
        _bool(value)
    elif broker_name == "lag.health.window.commits" and _int(value) < 2:
        raise ConfigError(f"{name}: must be at least 2 (a trend needs two commits), not "
                          f"{value.strip()}")
    elif _int(value) < 1 and broker_name in _AT_LEAST_ONE:
        raise ConfigError(f"{name}: must be at least 1, not {value.strip()}")
    elif _int(value) > SHORT_MAX and broker_name in _SHORT:
        raise ConfigError(f"{name}: must be at most {SHORT_MAX}, not {value.strip()}")


def parse_ip_overrides(value: str) -> dict[str, int]:
    """max.connections.per.ip.overrides: HOST:N pairs, comma separated."""
    found: dict[str, int] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        host, sep, count = part.strip().rpartition(":")
        if not sep or not host or not count.strip().isdigit():
            raise ConfigError(f"max.connections.per.ip.overrides {value!r}: expected HOST:N "
                              "pairs, e.g. 10.0.0.1:100,admin.example:5")
        found[host.strip("[]")] = int(count)
    return found


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{text!r} is not an integer") from None


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
    # From `listeners` (empty: one PLAINTEXT listener at host:port) and `advertised.listeners`.
    listener_addresses: list[ListenerAddress] = field(default_factory=list)
    advertised_addresses: dict[str, ListenerAddress] = field(default_factory=dict)

    @classmethod
    def build(cls, data_dir: Path, host: str, port: int,
              overrides: Mapping[str, str] | None = None, storage: str = "") -> BrokerConfig:
        config = cls(data_dir=data_dir, storage=storage, host=host, port=port)
        for name, value in (overrides or {}).items():
            config.set(name, value)
        config.check_listeners()
        first = config.advertised_addresses.get(config.listeners()[0].name)
        if first is not None:  # what `advertised` and `advertised_port` name
            config.advertised_host, config.advertised_port = first.host, first.port
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

    @property
    def storage_engine(self) -> str:
        """The storage engine's name: `file`, `memory` or `postgresql` (never its URL)."""
        storage = self.storage.strip()
        if storage.startswith("memory:"):
            return "memory"
        if storage.startswith(("postgresql:", "postgres:")):
            return "postgresql"
        return "file"

    def set(self, name: str, value: str) -> None:
        """Sets one setting by its Kafka name; raises ConfigError for unknown names or values."""
        name = name.strip()
        if name in ("listeners", "advertised.listeners", "advertised.host"):
            self._set_address(name, value)
            return
        if name == "broker.id":  # Kafka's older name of node.id
            name = "node.id"
        if name.startswith("listener.name."):
            self._set_per_listener(name, value)
            return
        broker_name = _TOPIC_ALIASES.get(name, name)
        if broker_name in _BROKER_TOPIC_DEFAULTS:
            topic_name = next(k for k, v in _TOPIC_ALIASES.items() if v == broker_name)
            try:
                TOPIC_CONFIGS[topic_name].parse(value)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        elif broker_name in BROKER_SETTINGS:
            _check_broker_value(name, broker_name, value)
        else:
            raise ConfigError(f"unknown setting {name!r}; the settings are listed in README.md "
                              "(`strom serve`) and docs/security.md")
        self.settings[broker_name] = value.strip()

    def _set_per_listener(self, name: str, value: str) -> None:
        """listener.name.NAME.SETTING: SETTING for that listener only."""
        rest = name[len("listener.name."):]
        listener, dot, setting = rest.partition(".")
        mechanism, _, jaas = setting.partition(".")
        if jaas == "sasl.jaas.config" and mechanism.upper() in SASL_MECHANISMS:
            # Kafka's listener.name.NAME.MECHANISM.sasl.jaas.config
            key = f"listener.name.{listener.lower()}.{mechanism.lower()}.{jaas}"
            self.settings[key] = value.strip()
            return
        if not dot or not listener or setting not in BROKER_SETTINGS or not setting.startswith(
                _PER_LISTENER_PREFIXES):
            raise ConfigError(f"unknown setting {name!r}: listener.name.NAME. prefixes a TLS "
                              "or SASL setting (ssl.*, sasl.*, connections.max.reauth.ms)")
        _check_broker_value(name, setting, value)
        self.settings[f"listener.name.{listener.lower()}.{setting}"] = value.strip()

    def _set_address(self, name: str, value: str) -> None:
        """Where clients reach this broker: `listeners` / `advertised.listeners`
        (NAME://HOST:PORT,..., an empty host meaning all interfaces), or `advertised.host`.
        The first listener is the one `host` and `port` name."""
        if name == "advertised.host":
            self.advertised_host = self.settings[name] = value.strip()
            return
        addresses = parse_listeners(name, value)
        if name == "listeners":
            check_ports(addresses)
            self.listener_addresses = addresses
            self.host, self.port = addresses[0].host or "0.0.0.0", addresses[0].port
        else:
            for address in addresses:
                if not address.host:
                    raise ConfigError(f"advertised.listeners {value!r}: {address.name} needs "
                                      "a host clients can reach")
            self.advertised_addresses = {a.name: a for a in addresses}
        self.settings[name] = value.strip()

    def listeners(self) -> list[ListenerAddress]:
        """Every listener this broker serves (the first: `host` and `port`)."""
        if self.listener_addresses:
            first = self.listener_addresses[0]
            return [ListenerAddress(first.name, self.host, self.port),
                    *self.listener_addresses[1:]]
        return [ListenerAddress("PLAINTEXT", self.host, self.port)]

    def protocol_of(self, listener: str) -> str:
        """The security protocol of a listener, from listener.security.protocol.map."""
        protocols = parse_protocol_map(self.get("listener.security.protocol.map"))
        if listener not in protocols:
            raise ConfigError(f"listener {listener} has no security protocol: add "
                              f"{listener}:PROTOCOL to listener.security.protocol.map")
        return protocols[listener]

    def inter_broker_listener(self) -> str:
        name = self.get("inter.broker.listener.name").strip().upper()
        return name or self.listeners()[0].name

    def check_listeners(self) -> None:
        names = [listener.name for listener in self.listeners()]
        for name in names:
            self.protocol_of(name)
        for name in self.advertised_addresses:
            if name not in names:
                raise ConfigError(f"advertised.listeners names {name}, which is not in "
                                  f"listeners ({', '.join(names)})")
        if self.inter_broker_listener() not in names:
            raise ConfigError(f"inter.broker.listener.name {self.inter_broker_listener()} is "
                              f"not in listeners ({', '.join(names)})")

    def advertised_address(self, listener: str, bound_port: int) -> tuple[str, int]:
        """Where clients of `listener` are told to connect, given the port it is bound to."""
        address = self.advertised_addresses.get(listener)
        if address is not None:
            return address.host, address.port
        host = self.settings.get("advertised.host") or next(
            a.host for a in self.listeners() if a.name == listener)
        return host, bound_port

    def for_listener(self, listener: str, name: str) -> str:
        """A TLS or SASL setting as one listener sees it: listener.name.NAME.SETTING if set,
        else SETTING."""
        prefixed = f"listener.name.{listener.lower()}.{name}"
        if prefixed in self.settings:
            return self.settings[prefixed]
        return self.settings.get(name, BROKER_SETTINGS.get(name, ""))  # "": not a setting

    def get(self, name: str) -> str:
        if name in self.settings:
            return self.settings[name]
        if name in BROKER_SETTINGS:
            return BROKER_SETTINGS[name]
        return _BROKER_TOPIC_DEFAULTS[name]

    def http_listeners(self) -> list[tuple[str, int]]:
        """(host, port) of each HTTP listener (metrics, health); empty: none."""
        return parse_http_listeners(self.get("http.listeners"))

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
