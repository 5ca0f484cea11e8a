"""KIP-298 error handling: retries with backoff, tolerance, logging and the dead letter queue.

Connector settings: `errors.tolerance` (none|all), `errors.retry.timeout` (ms, 0: no retry, -1:
forever), `errors.retry.delay.max.ms`, `errors.log.enable`, `errors.log.include.messages`,
`errors.deadletterqueue.topic.name`, `.topic.replication.factor`, `.context.headers.enable`.
Failures in the conversion and transformation stages are tolerated under `all`; the dead letter
queue (sink connectors only, as Kafka's) gets the original key and value bytes with Kafka's
``__connect.errors.*`` headers when context headers are enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from strom.connect.errors import RetriableException

log = logging.getLogger("strom.connect.errors.log")

T = TypeVar("T")

HEADER_PREFIX = "__connect.errors."
ERROR_HEADER_ORIG_TOPIC = HEADER_PREFIX + "topic"
ERROR_HEADER_ORIG_PARTITION = HEADER_PREFIX + "partition"
ERROR_HEADER_ORIG_OFFSET = HEADER_PREFIX + "offset"
ERROR_HEADER_CONNECTOR_NAME = HEADER_PREFIX + "connector.name"
ERROR_HEADER_TASK_ID = HEADER_PREFIX + "task.id"
ERROR_HEADER_STAGE = HEADER_PREFIX + "stage"
ERROR_HEADER_EXECUTING_CLASS = HEADER_PREFIX + "class.name"
ERROR_HEADER_EXCEPTION = HEADER_PREFIX + "exception.class.name"
ERROR_HEADER_EXCEPTION_MESSAGE = HEADER_PREFIX + "exception.message"
ERROR_HEADER_EXCEPTION_STACK_TRACE = HEADER_PREFIX + "exception.stacktrace"


class Stage(Enum):
    """Kafka's org.apache.kafka.connect.runtime.errors.Stage."""
    TASK_POLL = "TASK_POLL"
    TASK_PUT = "TASK_PUT"
    TRANSFORMATION = "TRANSFORMATION"
    KEY_CONVERTER = "KEY_CONVERTER"
    VALUE_CONVERTER = "VALUE_CONVERTER"
    HEADER_CONVERTER = "HEADER_CONVERTER"
    KAFKA_PRODUCE = "KAFKA_PRODUCE"
    KAFKA_CONSUME = "KAFKA_CONSUME"


TOLERATED_STAGES = {Stage.TRANSFORMATION, Stage.KEY_CONVERTER, Stage.VALUE_CONVERTER,
                    Stage.HEADER_CONVERTER}


@dataclass(frozen=True)
class ErrorSettings:
    tolerance_all: bool = False
    retry_timeout_ms: int = 0
    retry_delay_max_ms: int = 60000
    log_enable: bool = False
    log_include_messages: bool = False
    dlq_topic: str = ""
    dlq_replication_factor: int = 3
    dlq_context_headers: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ErrorSettings:
        def flag(name: str) -> bool:
            return config.get(name, "false").strip().lower() == "true"
        tolerance = config.get("errors.tolerance", "none").strip().lower()
        if tolerance not in ("none", "all"):
            raise ValueError(f"Invalid value {tolerance} for configuration errors.tolerance: "
                             "String must be one of: none, all")
        return cls(tolerance_all=tolerance == "all",
                   retry_timeout_ms=int(config.get("errors.retry.timeout", "0")),
                   retry_delay_max_ms=int(config.get("errors.retry.delay.max.ms", "60000")),
                   log_enable=flag("errors.log.enable"),
                   log_include_messages=flag("errors.log.include.messages"),
                   dlq_topic=config.get("errors.deadletterqueue.topic.name", "").strip(),
                   dlq_replication_factor=int(config.get(
                       "errors.deadletterqueue.topic.replication.factor", "3")),
                   dlq_context_headers=flag("errors.deadletterqueue.context.headers.enable"))


@dataclass
class ProcessingContext:
    """What an error report knows about the failing record."""
    connector: str
    task_id: int
    stage: Stage | None = None
    executing_class: str = ""
    error: BaseException | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    raw_key: bytes | None = None
    raw_value: bytes | None = None
    raw_headers: list[tuple[str, bytes | None]] | None = None
    record_repr: str | None = None
    source_record: Any = None  # a source record, rendered (repr) only if an error is logged


class ToleranceExceeded(Exception):
    """A failure not tolerated: the task fails with it (Kafka's ConnectException 'Tolerance
    exceeded in error handler')."""


class RetryStopped(Exception):
    """The task was asked to stop while an operation was being retried (Kafka's
    RetryWithToleranceOperator.triggerStop): the record is neither processed nor skipped."""


Reporter = Callable[[ProcessingContext], Awaitable[None]]


def _is_retriable(error: BaseException) -> bool:
    return isinstance(error, RetriableException)


class RetryWithToleranceOperator:
    def __init__(self, settings: ErrorSettings, connector: str, task_id: int,
                 reporters: list[Reporter] | None = None) -> None:
        self.settings = settings
        self.connector = connector
        self.task_id = task_id
        self.reporters = list(reporters or [])
        # task-error-metrics (strom.connect.metrics), bumped only when something fails.
        self.record_failures = 0  # failed attempts, retried ones included
        self.record_errors = 0  # records that failed for good (tolerated or not)
        self.records_skipped = 0
        self.retries = 0
        self.errors_logged = 0
        self.dlq_requests = 0
        self.dlq_failures = 0
        self._stop = asyncio.Event()

    def trigger_stop(self) -> None:
        """End a retry back-off now; retries from now on raise RetryStopped."""
        self._stop.set()

    async def execute(self, stage: Stage, executing_class: type | str,
                      fn: Callable[[], T], context: ProcessingContext) -> tuple[bool, T | None]:
        """(True, fn's result), or (False, None) when it failed and the failure is tolerated;
        raises ToleranceExceeded otherwise."""
        deadline = (None if self.settings.retry_timeout_ms < 0
                    else time.monotonic() + self.settings.retry_timeout_ms / 1000)
        delay = 0.3
        while True:
            try:
                return True, fn()
            except Exception as error:
                self.record_failures += 1
                if _is_retriable(error) and (deadline is None or time.monotonic() < deadline):
                    remaining = 1e9 if deadline is None else deadline - time.monotonic()
                    if not self._stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), max(0.0, min(
                                delay, remaining, self.settings.retry_delay_max_ms / 1000)))
                    if self._stop.is_set():
                        raise RetryStopped(f"{stage.value} stopped while retrying") from error
                    delay *= 2
                    self.retries += 1
                    continue
                self.record_errors += 1
                context.stage = stage
                context.executing_class = (executing_class if isinstance(executing_class, str)
                                           else f"{executing_class.__module__}."
                                                f"{executing_class.__qualname__}")
                context.error = error
                if stage not in TOLERATED_STAGES or not self.settings.tolerance_all:
                    raise ToleranceExceeded("Tolerance exceeded in error handler") from error
                self.records_skipped += 1
                await self.report(context)
                return False, None

    async def report(self, context: ProcessingContext) -> None:
        if self.settings.log_enable:
            log_error(context, self.settings.log_include_messages)
            self.errors_logged += 1
        for reporter in self.reporters:
            await reporter(context)


def log_error(context: ProcessingContext, include_messages: bool) -> None:
    error = context.error
    message = (f"Error encountered in task {context.connector}-{context.task_id}. Executing "
               f"stage '{context.stage.value if context.stage else ''}' with class "
               f"'{context.executing_class}'")
    if context.topic is not None:
        message += (f", where consumed record is {{topic='{context.topic}', partition="
                    f"{context.partition}, offset={context.offset}}}")
        if include_messages:
            message += f", key={context.raw_key!r}, value={context.raw_value!r}"
    elif include_messages and (context.record_repr or context.source_record is not None):
        shown = context.record_repr or repr(context.source_record)
        message += f", where source record is = {shown}"
    log.error(message + ".", exc_info=error)


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def error_headers(context: ProcessingContext) -> list[tuple[str, bytes]]:
    """Kafka's DeadLetterQueueReporter.populateContextHeaders."""
    error = context.error
    headers: list[tuple[str, bytes]] = []

    def add(key: str, value: object) -> None:
        headers.append((key, str(value).encode("utf-8")))

    if context.topic is not None:
        add(ERROR_HEADER_ORIG_TOPIC, context.topic)
        add(ERROR_HEADER_ORIG_PARTITION, context.partition)
        add(ERROR_HEADER_ORIG_OFFSET, context.offset)
    add(ERROR_HEADER_CONNECTOR_NAME, context.connector)
    add(ERROR_HEADER_TASK_ID, context.task_id)
    add(ERROR_HEADER_STAGE, context.stage.value if context.stage else "")
    add(ERROR_HEADER_EXECUTING_CLASS, context.executing_class)
    if error is not None:
        add(ERROR_HEADER_EXCEPTION, exception_class_name(error))
        add(ERROR_HEADER_EXCEPTION_MESSAGE, str(error))
        add(ERROR_HEADER_EXCEPTION_STACK_TRACE,
            "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    return headers


class DeadLetterQueueReporter:
    """Sends the original bytes of failed records to the DLQ topic (creating it if missing)."""

    def __init__(self, settings: ErrorSettings, producer_config: Mapping[str, Any],
                 admin_config: Mapping[str, Any],
                 counts: RetryWithToleranceOperator | None = None) -> None:
        from confluent_kafka import Producer
        self.settings = settings
        self.counts = counts  # where the produce requests and failures are counted
        self.topic = settings.dlq_topic
        self._admin_config = dict(admin_config)
        self._producer = Producer(dict(producer_config))
        self._created = False

    def _ensure_topic(self) -> None:
        if self._created:
            return
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient(self._admin_config)
        metadata = admin.list_topics(timeout=10)
        if self.topic not in metadata.topics:
            futures = admin.create_topics([NewTopic(
                self.topic, num_partitions=1,
                replication_factor=self.settings.dlq_replication_factor)])
            for future in futures.values():
                try:
                    future.result(10)
                except Exception as error:
                    if "already exists" not in str(error).lower() and \
                            "TOPIC_ALREADY_EXISTS" not in str(error):
                        raise
        self._created = True

    async def __call__(self, context: ProcessingContext) -> None:
        if context.topic is None:  # a source record: Kafka has no DLQ for sources
            return
        if context.topic == self.topic:
            log.warning("not sending a record to the dead letter queue topic it came from")
            return
        if self.counts is not None:
            self.counts.dlq_requests += 1
        try:
            failed = await self._send(context)
        except Exception:
            self._count_failure()
            raise
        if failed:
            self._count_failure()
            log.error("could not write to the dead letter queue %s: %s", self.topic, failed[0])

    def _count_failure(self) -> None:
        if self.counts is not None:
            self.counts.dlq_failures += 1

    async def _send(self, context: ProcessingContext) -> list[BaseException]:
        """The record's original bytes to the topic; the delivery errors."""
        await asyncio.to_thread(self._ensure_topic)
        headers: list[tuple[str, str | bytes | None]] = list(context.raw_headers or [])
        if self.settings.dlq_context_headers:
            headers.extend(error_headers(context))
        failed: list[BaseException] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(RuntimeError(str(err)))

        self._producer.produce(self.topic, key=context.raw_key, value=context.raw_value,
                               headers=headers, on_delivery=delivered)
        await asyncio.to_thread(self._producer.flush, 30)
        return failed

    def close(self) -> None:
        self._producer.flush(10)
