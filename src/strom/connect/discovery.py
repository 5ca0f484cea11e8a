"""Connector plugins: the built-in ones and those installed packages declare in the entry point
group `strom.connect.connectors` (``name = "package.module:ConnectorClass"``). A connector answers
to its class name (Kafka's Java name for the built-ins), its Python path, its simple name and its
alias (the simple name without the Connector suffix), as Kafka's plugin loader does."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from strom.connect.api import Connector, SinkConnector, SourceConnector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "strom.connect.connectors"

# Kafka's class name -> the built-in implementing it.
BUILTINS: dict[str, str] = {
    "org.apache.kafka.connect.file.FileStreamSourceConnector":
        "strom.connect.file:FileStreamSourceConnector",
    "org.apache.kafka.connect.file.FileStreamSinkConnector":
        "strom.connect.file:FileStreamSinkConnector",
    "strom.connect.postgres_sink.PostgresSinkConnector":
        "strom.connect.postgres_sink:PostgresSinkConnector",
    "io.confluent.connect.http.HttpSinkConnector": "strom.connect.http_sink:HttpSinkConnector",
    "io.confluent.connect.s3.S3SinkConnector": "strom.connect.s3_sink:S3SinkConnector",
    "io.debezium.connector.postgresql.PostgresConnector":
        "strom.connect.postgres:PostgresCdcSourceConnector",
    "io.confluent.connect.jdbc.JdbcSourceConnector":
        "strom.connect.postgres:PostgresQuerySourceConnector",
}

# Further names a built-in answers to (besides its simple name and alias).
EXTRA_ALIASES: dict[str, tuple[str, ...]] = {
    # Confluent's JDBC sink, whose configs and semantics the PostgreSQL sink keeps.
    "strom.connect.postgres_sink.PostgresSinkConnector": (
        "io.confluent.connect.jdbc.JdbcSinkConnector", "JdbcSinkConnector", "JdbcSink"),
}


class PluginNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ConnectorPlugin:
    class_name: str  # the name /connector-plugins lists (Kafka's for the built-ins)
    cls: type[Connector]
    aliases: tuple[str, ...] = field(default=())

    @property
    def type(self) -> str:
        if issubclass(self.cls, SourceConnector):
            return "source"
        if issubclass(self.cls, SinkConnector):
            return "sink"
        return "unknown"

    def version(self) -> str:
        try:
            return self.cls.__new__(self.cls).version()
        except Exception:
            return "unknown"


def _load(target: str) -> type[Connector]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"{target} is not a Connector class")
    return cls


def _plugin(class_name: str, cls: type[Connector]) -> ConnectorPlugin:
    simple = class_name.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    aliases = {simple, f"{cls.__module__}.{cls.__qualname__}",
               f"{cls.__module__}:{cls.__qualname__}"}
    for name in (simple, cls.__qualname__):  # the Python class's own names too
        aliases.add(name)
        if name.endswith("Connector"):
            aliases.add(name[: -len("Connector")])
    aliases.update(EXTRA_ALIASES.get(class_name, ()))
    aliases.discard(class_name)
    return ConnectorPlugin(class_name, cls, tuple(sorted(aliases)))


def connector_plugins() -> list[ConnectorPlugin]:
    """Every connector plugin: the built-ins, then the installed entry points."""
    plugins = [_plugin(name, _load(target)) for name, target in BUILTINS.items()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception:
            log.exception("cannot load connector plugin %s", ep.value)
            continue
        if isinstance(cls, type) and issubclass(cls, Connector):
            plugins.append(_plugin(f"{cls.__module__}.{cls.__qualname__}", cls))
        else:
            log.warning("entry point %s is not a Connector class", ep.value)
    return sorted(plugins, key=lambda p: p.class_name)


def find_connector(name: str) -> ConnectorPlugin:
    """The plugin answering to `name`, or a `module:Class` / `module.Class` path imported."""
    plugins = connector_plugins()
    for plugin in plugins:
        if name == plugin.class_name:
            return plugin
    matches = [p for p in plugins if name in p.aliases]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise PluginNotFound(f"connector name {name} is ambiguous: "
                             + ", ".join(p.class_name for p in matches))
    target = name if ":" in name else ":".join(name.rsplit(".", 1))
    if ":" in target:
        try:
            return _plugin(name, _load(target))
        except (ImportError, AttributeError, TypeError, ValueError):
            pass
    raise PluginNotFound(f"Failed to find any class that implements Connector and which name "
                         f"matches {name}")
