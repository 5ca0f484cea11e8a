"""Listeners, as Kafka names them: `listeners=NAME://HOST:PORT,...` (each listener its own
server), `advertised.listeners` (what Metadata tells clients of that listener),
`listener.security.protocol.map=NAME:PROTOCOL,...` (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL) and `inter.broker.listener.name` (the listener brokers use to reach each other).

A listener's name is its protocol unless the map says otherwise (Kafka's default map names
the four protocols after themselves). An empty host means every interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from strom.config.topic import ConfigError

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_PROTOCOL_MAP: Final = ",".join(f"{p}:{p}" for p in PROTOCOLS)
_NAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True, slots=True)
class ListenerAddress:
    name: str  # upper case, as Kafka normalizes listener names
    host: str  # "" in `listeners`: every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


def parse_listeners(setting: str, value: str) -> list[ListenerAddress]:
    """NAME://HOST:PORT entries, comma separated; names unique."""
    found: list[ListenerAddress] = []
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        name, sep, address = text.partition("://")
        if not sep:
            name, address = "PLAINTEXT", text
        name = name.strip().upper()
        if not name or not set(name) <= _NAME_CHARS:
            raise ConfigError(f"{setting} {value!r}: {name!r} is not a listener name "
                              "(letters, digits, '_' and '-')")
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{setting} {value!r}: expected NAME://HOST:PORT, e.g. "
                              "PLAINTEXT://localhost:9092")
        if any(f.name == name for f in found):
            raise ConfigError(f"{setting} {value!r}: listener {name} appears twice")
        found.append(ListenerAddress(name, host.strip("[]"), int(port)))
    if not found:
        raise ConfigError(f"{setting} {value!r}: no listener given")
    return found


def parse_protocol_map(value: str) -> dict[str, str]:
    """`listener.security.protocol.map`: NAME:PROTOCOL pairs."""
    result: dict[str, str] = {}
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        name, sep, protocol = text.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name:
            raise ConfigError(f"listener.security.protocol.map {value!r}: expected "
                              "NAME:PROTOCOL pairs, e.g. CLIENT:SASL_SSL,BROKER:PLAINTEXT")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"listener.security.protocol.map: {protocol!r} for {name} is not "
                              f"one of {', '.join(PROTOCOLS)}")
        result[name] = protocol
    return result


def check_ports(listeners: list[ListenerAddress]) -> None:
    seen: dict[int, str] = {}
    for listener in listeners:
        if listener.port and listener.port in seen:
            raise ConfigError(f"listeners: {listener.name} and {seen[listener.port]} both use "
                              f"port {listener.port}")
        seen[listener.port] = listener.name


def parse_http_listeners(value: str) -> list[tuple[str, int]]:
    """`http.listeners`: HOST:PORT entries, comma separated, where the metrics and health
    endpoints listen (an empty host: every interface; port 0: any free port). Empty: none."""
    found: list[tuple[str, int]] = []
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        host, colon, port = text.rpartition(":")
        if not colon or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"http.listeners {value!r}: expected HOST:PORT, e.g. "
                              "localhost:9644")
        found.append((host.strip("[]"), int(port)))
    return found
