"""An application's settings by Kafka Streams' names; everything else (security.protocol,
sasl.*, ssl.*, ...) and settings prefixed `consumer.`, `producer.` or `admin.` go to the
clients (librdkafka's names)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from strom.streams.errors import (
    ErrorHandling,
    continue_processing,
    continue_production,
    fail_processing,
    fail_production,
)
from strom.streams.serdes import (
    BYTES,
    DOUBLE,
    INTEGER,
    JSON,
    LONG,
    STRING,
    Serde,
)
from strom.streams.stores.api import EngineFactory
from strom.streams.task import DeserializationHandler, log_and_continue, log_and_fail

AT_LEAST_ONCE: Final = "at_least_once"
EXACTLY_ONCE_V2: Final = "exactly_once_v2"
GUARANTEES: Final = {AT_LEAST_ONCE: AT_LEAST_ONCE, EXACTLY_ONCE_V2: EXACTLY_ONCE_V2,
                     "exactly_once": EXACTLY_ONCE_V2, "exactly-once": EXACTLY_ONCE_V2,
                     "at-least-once": AT_LEAST_ONCE}
SERDES_BY_NAME: Final[dict[str, Serde[Any]]] = {
    "bytes": BYTES, "bytearray": BYTES, "string": STRING, "integer": INTEGER, "int": INTEGER,
    "long": LONG, "double": DOUBLE, "json": JSON}
H = TypeVar("H")
DESERIALIZATION_HANDLER: Final = ("default.deserialization.exception.handler",
                                  "deserialization.exception.handler")
PROCESSING_HANDLER: Final = ("processing.exception.handler",)
PRODUCTION_HANDLER: Final = ("default.production.exception.handler",
                             "production.exception.handler")
DEAD_LETTER_QUEUE: Final = "errors.dead.letter.queue.topic.name"
STREAMS_SETTINGS: Final = frozenset({
    "application.id", "bootstrap.servers", "default.key.serde", "default.value.serde",
    "processing.guarantee", "commit.interval.ms", "num.stream.threads", "state.dir",
    "num.standby.replicas", "replication.factor", "application.server",
    "statestore.cache.max.bytes", "cache.max.bytes.buffering", "poll.ms", "max.task.idle.ms",
    "default.dsl.store",
    *DESERIALIZATION_HANDLER, *PROCESSING_HANDLER, *PRODUCTION_HANDLER, DEAD_LETTER_QUEUE,
    "application.server.http"})
STORE_TYPES: Final = {"rocksdb": "rocksDB", "in_memory": "in_memory", "in-memory": "in_memory",
                      "memory": "in_memory"}
_APPLICATION_ID: Final = re.compile(r"[A-Za-z0-9._-]+")
_ENDPOINT: Final = re.compile(r"[^\s:/]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")


class StreamsConfigError(ValueError):
    """A setting that cannot be used; says which and what to give."""


class StreamsConfig:
    def __init__(self, settings: Mapping[str, Any], *, require_bootstrap: bool = True,
                 default_store: str = "rocksDB") -> None:
        self.settings = dict(settings)
        self.application_id = str(self.settings.get("application.id", "strom-streams-test"
                                                     if not require_bootstrap else ""))
        if not _APPLICATION_ID.fullmatch(self.application_id):
            raise StreamsConfigError(
                f"application.id={self.application_id!r}: give a name of letters, digits, "
                "'.', '_' and '-' (it names the consumer group and the internal topics)")
        self.bootstrap_servers = str(self.settings.get("bootstrap.servers", ""))
        if require_bootstrap and not self.bootstrap_servers:
            raise StreamsConfigError("bootstrap.servers: give HOST:PORT of a broker")
        self.default_key_serde = self._serde("default.key.serde")
        self.default_value_serde = self._serde("default.value.serde")
        guarantee = str(self.settings.get("processing.guarantee", AT_LEAST_ONCE)).lower()
        if guarantee not in GUARANTEES:
            raise StreamsConfigError(f"processing.guarantee={guarantee}: use {AT_LEAST_ONCE} "
                                     f"or {EXACTLY_ONCE_V2}")
        self.processing_guarantee = GUARANTEES[guarantee]
        self.commit_interval_ms = self._int(
            "commit.interval.ms", 100 if self.exactly_once else 30_000, minimum=0)
        self.num_stream_threads = self._int("num.stream.threads", 1, minimum=1)
        # The record caches' budget (strom.streams.stores.caching), split over the threads;
        # cache.max.bytes.buffering is its deprecated name. 0: no caching.
        cache_setting = "statestore.cache.max.bytes" if "statestore.cache.max.bytes" in \
            self.settings or "cache.max.bytes.buffering" not in self.settings \
            else "cache.max.bytes.buffering"
        self.cache_max_bytes = self._int(cache_setting, 10 * 1024 * 1024, minimum=0)
        self.num_standby_replicas = self._int("num.standby.replicas", 0, minimum=0)
        self.replication_factor = self._int("replication.factor", -1, minimum=-1)
        self.poll_ms = self._int("poll.ms", 100, minimum=0)
        # A task reading several partitions waits for one with no records buffered while it
        # has not caught up with its end (Kafka's KIP-695 rule for 0, the default), at most
        # this long when it is above 0 (else IDLE_WAIT_CAP_MS); -1: never waits.
        self.max_task_idle_ms = self._int("max.task.idle.ms", 0, minimum=-1)
        self.state_dir = str(self.settings.get("state.dir") or os.path.join(
            tempfile.gettempdir(), "strom-streams"))
        self.application_server = str(self.settings.get("application.server", ""))
        if self.application_server and not _ENDPOINT.fullmatch(self.application_server):
            raise StreamsConfigError(f"application.server={self.application_server}: give "
                                     "host:port (where this instance answers queries)")
        http = str(self.settings.get("application.server.http", "false")).lower()
        if http not in ("true", "false"):
            raise StreamsConfigError(f"application.server.http={http}: give true (serve "
                                     "interactive queries over HTTP at application.server) "
                                     "or false")
        self.application_server_http = http == "true"
        if self.application_server_http and not self.application_server:
            raise StreamsConfigError("application.server.http=true needs application.server "
                                     "(the host:port to serve on)")
        self.deserialization_handler: DeserializationHandler = self._handler(
            DESERIALIZATION_HANDLER, log_and_fail, log_and_continue,
            "(error, topic, partition, offset) -> skip")
        dead_letter_queue = self.settings.get(DEAD_LETTER_QUEUE) or None
        self.error_handling = ErrorHandling(
            self._handler(PROCESSING_HANDLER, fail_processing, continue_processing,
                          "(error, topic, partition, offset) -> skip"),
            self._handler(PRODUCTION_HANDLER, fail_production, continue_production,
                          "(error, topic, key, value) -> skip"),
            None if dead_letter_queue is None else str(dead_letter_queue))
        store = str(self.settings.get("default.dsl.store", default_store))
        if store.lower() not in STORE_TYPES:
            raise StreamsConfigError(f"default.dsl.store={store}: use rocksDB (stores on disk, "
                                     "restored from their changelogs only past a checkpoint) "
                                     "or in_memory")
        self.default_dsl_store = STORE_TYPES[store.lower()]

    @property
    def default_engine(self) -> EngineFactory | None:
        """How stores without an engine of their own keep their data (None: in memory)."""
        if self.default_dsl_store == "rocksDB":
            from strom.streams.stores.rocksdb import rocksdb_engine

            return rocksdb_engine
        return None

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == EXACTLY_ONCE_V2

    def _int(self, name: str, default: int, minimum: int) -> int:
        raw = self.settings.get(name, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise StreamsConfigError(f"{name}={raw!r}: give a whole number") from None
        if value < minimum:
            raise StreamsConfigError(f"{name}={value}: give at least {minimum}")
        return value

    def _serde(self, name: str) -> Serde[Any]:
        value = self.settings.get(name, BYTES)
        if isinstance(value, str):
            # "long", "LongSerde", "org.apache.kafka.common.serialization.Serdes$LongSerde"
            key = value.rsplit(".", 1)[-1].rsplit("$", 1)[-1].lower().removesuffix("serde")
            if key not in SERDES_BY_NAME:
                raise StreamsConfigError(f"{name}={value}: use a serde object or one of "
                                         f"{', '.join(sorted(SERDES_BY_NAME))}")
            return SERDES_BY_NAME[key]
        if not (hasattr(value, "serialize") and hasattr(value, "deserialize")):
            raise StreamsConfigError(f"{name}: {value!r} is not a serde")
        return value  # type: ignore[no-any-return]

    def _handler(self, names: tuple[str, ...], fail: H, skip: H, signature: str) -> H:
        """An exception handler by the first of its names given: LogAndFail (the default),
        LogAndContinue (also as Kafka's class names) or a function."""
        name = next((n for n in names if n in self.settings), names[0])
        value = self.settings.get(name, fail)
        if isinstance(value, str):
            key = value.rsplit(".", 1)[-1].lower().removesuffix("exceptionhandler")
            key = key.removesuffix("processing").removesuffix("production")
            chosen = {"logandfail": fail, "default": fail, "logandcontinue": skip}.get(key)
            if chosen is None:
                raise StreamsConfigError(f"{name}={value}: use LogAndFail, LogAndContinue or "
                                         f"a function {signature}")
            return chosen
        if not callable(value):
            raise StreamsConfigError(f"{name}: give a function {signature} or LogAndFail / "
                                     "LogAndContinue")
        return value  # type: ignore[no-any-return]

    def client_settings(self, client: str) -> dict[str, Any]:
        """librdkafka settings for one of the clients ("consumer", "producer", "admin"):
        the settings that are not Kafka Streams' own, then those prefixed `<client>.`."""
        prefixes = ("consumer.", "producer.", "admin.", "main.consumer.", "restore.consumer.")
        out: dict[str, Any] = {k: v for k, v in self.settings.items()
                               if k not in STREAMS_SETTINGS and not k.startswith(prefixes)}
        out["bootstrap.servers"] = self.bootstrap_servers
        prefix = f"{client}."
        out.update({k[len(prefix):]: v for k, v in self.settings.items()
                    if k.startswith(prefix)})
        return out

    def reader_settings(self, role: str, process_id: str) -> dict[str, Any]:
        """Consumer settings for a reader that assigns itself partitions and keeps its own
        positions (the global and standby threads: `role` "global" or "standby"): its group
        is never joined nor committed to; it reads from the beginning, committed records only
        under exactly-once, and is told when it reaches a partition's end."""
        app = self.application_id
        return {
            **self.client_settings("consumer"),
            "group.id": f"{app}-{role}-{process_id}",  # never joined nor committed to
            "client.id": f"{app}-{process_id}-{role}-consumer",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if self.exactly_once else "read_uncommitted"}
