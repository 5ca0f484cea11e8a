"""The worker: runs connectors and their tasks as asyncio tasks of one event loop.

Source task loop: poll (in a thread unless `async def poll`) -> transforms -> converters ->
produce; a record's source offset is committed to the offset store once it and every record
polled before it are acknowledged (every `offset.flush.interval.ms` and at stop), then
`SourceTask.commit()`; `commit_record` follows each acknowledgement.
Sink task loop: consume (group `connect-<connector>`) -> converters -> transforms -> put; the
offsets `pre_commit` returns are committed to the group every `offset.flush.interval.ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from strom.connect import topic_creation
from strom.connect.api import (
    Connector,
    ConnectorContext,
    ErrantRecordReporter,
    OffsetStorageReader,
    RecordMetadata,
    SinkConnector,
    SinkTask,
    SinkTaskContext,
    SourceTask,
    SourceTaskContext,
    Task,
    TopicPartition,
    TransactionContext,
    maybe_await,
)
from strom.connect.errors import ConnectException, RetriableException
from strom.connect.metrics import (
    ConnectCollector,
    PartitionNumbers,
    SinkTaskMetrics,
    SourceTaskMetrics,
    TaskMetrics,
    WorkerCounts,
    make_registry,
)
from strom.connect.offsets import ConnectorOffsetReader, OffsetBackingStore, offset_key
from strom.connect.override_policy import override_errors, policy_name
from strom.connect.states import State, Status, trace_of
from strom.connect.tolerance import (
    DeadLetterQueueReporter,
    ErrorSettings,
    ProcessingContext,
    RetryStopped,
    RetryWithToleranceOperator,
    Stage,
    ToleranceExceeded,
    log_error,
)
from strom.connect.topic_creation import TopicCreation, TopicCreationGroup
from strom.connect.transforms import TransformationChain

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_KEY_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
DEFAULT_VALUE_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
DEFAULT_HEADER_CONVERTER = "org.apache.kafka.connect.storage.SimpleHeaderConverter"
SINK_POLL_S = 0.5
SINK_BATCH = 500
# How long /metrics waits for a paused partition's high watermark from the broker.
LAG_QUERY_TIMEOUT_S = 2.0


@dataclass
class WorkerConfig:
    """The worker's properties (Kafka's names), as read from WORKER.properties."""

    props: dict[str, str]
    worker_id: str = "localhost:8083"

    @property
    def bootstrap_servers(self) -> str:
        return self.props.get("bootstrap.servers", "localhost:9092")

    @property
    def exactly_once_source(self) -> bool:
        """KIP-618 `exactly.once.source.support=enabled` (distributed mode only)."""
        return (self.props.get("exactly.once.source.support", "disabled").strip().lower()
                == "enabled")

    @property
    def override_policy(self) -> str:
        """KIP-458 `connector.client.config.override.policy`: All (the default), None or
        Principal (strom.connect.override_policy)."""
        return policy_name(self.props)

    @property
    def offset_flush_interval_s(self) -> float:
        return int(self.props.get("offset.flush.interval.ms", "60000")) / 1000

    def prefixed(self, prefix: str) -> dict[str, str]:
        return {k[len(prefix):]: v for k, v in self.props.items() if k.startswith(prefix)}

    def transactional_id(self, connector: str, task: int) -> str:
        """KIP-618: the transactional.id of an exactly-once source task (Kafka's
        `<group.id>-<connector>-<task>`)."""
        return f"{self.props.get('group.id', 'connect-cluster')}-{connector}-{task}"

    def connector_client_config(self, role: str,
                                connector_config: Mapping[str, str]) -> dict[str, Any]:
        """A connector's producer/consumer/admin settings: the worker's (`client_config`),
        then the connector's `<role>.override.*`."""
        prefix = f"{role}.override."
        return {**self.client_config(role),
                **{k[len(prefix):]: v for k, v in connector_config.items()
                   if k.startswith(prefix)}}

    def client_config(self, role: str) -> dict[str, Any]:
        """librdkafka settings for a producer/consumer/admin: bootstrap.servers and the worker's
        security settings, then its `producer.` / `consumer.` / `admin.` overrides."""
        base: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.props.items():
            if key.startswith(("security.", "sasl.", "ssl.")) and "." in key:
                base[key] = value
        base.update(self.prefixed(role + "."))
        return base


# ---------------------------------------------------------------------------------------------
# Converters and transforms (A's plugin lookup)


def _converter_configs(worker: WorkerConfig, connector_config: Mapping[str, str],
                       key: str) -> tuple[str, dict[str, str]]:
    """The converter class and settings for `key` ("key.converter" ...): the connector's when
    it names one, the worker's otherwise."""
    defaults = {"key.converter": DEFAULT_KEY_CONVERTER,
                "value.converter": DEFAULT_VALUE_CONVERTER,
                "header.converter": DEFAULT_HEADER_CONVERTER}
    source: Mapping[str, str] = connector_config if key in connector_config else worker.props
    class_name = source.get(key, defaults[key])
    configs = {k[len(key) + 1:]: v for k, v in source.items() if k.startswith(key + ".")}
    return class_name, configs


def make_converter(worker: WorkerConfig, connector_config: Mapping[str, str], key: str) -> Any:
    from strom.connect import plugins
    class_name, configs = _converter_configs(worker, connector_config, key)
    if key == "header.converter":
        header_converter = plugins.header_converter(class_name)()
        header_converter.configure(configs)
        return header_converter
    converter = plugins.converter(class_name)()
    converter.configure(configs, key == "key.converter")
    return converter


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


async def transform(errors: RetryWithToleranceOperator, chain: TransformationChain,
                    record: Any, context: ProcessingContext) -> Any:
    """The record through each transformation (None: dropped, or failed and tolerated); a
    failure is reported with the failing transformation's class, as Kafka's."""
    for stage in chain.stages:
        apply = functools.partial(stage.apply, record)
        ok, out = await errors.execute(Stage.TRANSFORMATION, type(stage.transformation),
                                       apply, context)
        if not ok or out is None:
            return None
        record = out
    return record


# ---------------------------------------------------------------------------------------------
# Tasks


class WorkerTask:
    """One task: its status, and the asyncio task running its loop."""

    def __init__(self, worker: Worker, connector: str, task_id: int, task_cls: type[Task],
                 task_config: Mapping[str, str], connector_config: Mapping[str, str],
                 paused: bool = False) -> None:
        self.worker = worker
        self.connector = connector
        self.task_id = task_id
        self.task_cls = task_cls
        self.task_config = dict(task_config)
        self.connector_config = dict(connector_config)
        self.status = Status(State.UNASSIGNED, worker.config.worker_id)
        self.paused = paused
        self._resumed = asyncio.Event()
        if not paused:
            self._resumed.set()
        self.stopping = False
        self.runner: asyncio.Task[None] | None = None
        self.errors = RetryWithToleranceOperator(
            ErrorSettings.from_config(connector_config), connector, task_id)
        self.metrics: TaskMetrics = TaskMetrics()
        self._started = False

    @property
    def id(self) -> tuple[str, int]:
        return (self.connector, self.task_id)

    @property
    def state(self) -> str:
        return self.status.state.value

    def partition_numbers(self) -> Mapping[tuple[str, int], PartitionNumbers]:
        return {}

    def records_active(self) -> int:
        return 0

    def start(self) -> None:
        self.worker.counts.task_startup_attempts += 1
        self.runner = asyncio.get_running_loop().create_task(
            self._run(), name=f"connect-task-{self.connector}-{self.task_id}")

    def _check_overrides(self) -> None:
        """As Kafka's Worker: a task whose connector config overrides client settings that the
        worker's connector.client.config.override.policy forbids (a config written before the
        policy was tightened) fails at start."""
        forbidden = override_errors(self.worker.config.override_policy, self.connector_config)
        if forbidden:
            raise ConnectException("Client Config Overrides not allowed: "
                                   + " ".join(m for ms in forbidden.values() for m in ms))

    async def _run(self) -> None:
        try:
            self._check_overrides()
            await self.execute()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("task %s-%d failed", self.connector, self.task_id, exc_info=error)
            self.status = Status(State.FAILED, self.worker.config.worker_id, trace_of(error))
            if not self._started:
                self.worker.counts.task_startup_failures += 1

    async def execute(self) -> None:
        raise NotImplementedError

    def set_running(self) -> None:
        self._started = True
        self.status = Status(State.PAUSED if self.paused else State.RUNNING,
                             self.worker.config.worker_id)

    def pause(self) -> None:
        self.paused = True
        self._resumed.clear()
        if self.status.state == State.RUNNING:
            self.status = Status(State.PAUSED, self.worker.config.worker_id)

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()
        if self.status.state == State.PAUSED:
            self.status = Status(State.RUNNING, self.worker.config.worker_id)

    async def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping = True
        self._resumed.set()
        if self.runner is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.runner), timeout_s)
        except TimeoutError:
            log.warning("task %s-%d did not stop in %.0f s: cancelling it", self.connector,
                        self.task_id, timeout_s)
            self.runner.cancel()
            with contextlib.suppress(BaseException):
                await self.runner
        except Exception:
            pass


async def _call(method: Callable[..., Any], *args: Any) -> Any:
    """Await an `async def` task method; run a plain one in a thread (it may block)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    return await maybe_await(await asyncio.to_thread(method, *args))


class _TransactionContext(TransactionContext):
    """Kafka's WorkerTransactionContext: the commits and aborts the task asks for, read by the
    worker after each record it sends and after each poll() batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commit_batch = False
        self._abort_batch = False
        # by identity, holding the record so its id is not reused meanwhile
        self._commit_records: dict[int, Any] = {}
        self._abort_records: dict[int, Any] = {}

    def commit_transaction(self, record: Any = None) -> None:
        with self._lock:
            if record is None:
                self._commit_batch = True
            else:
                self._commit_records[id(record)] = record

    def abort_transaction(self, record: Any = None) -> None:
        with self._lock:
            if record is None:
                self._abort_batch = True
            else:
                self._abort_records[id(record)] = record

    def batch_request(self) -> str | None:
        """"commit", "abort" or None for the batch just sent (the request is consumed)."""
        with self._lock:
            commit, abort = self._commit_batch, self._abort_batch
            self._commit_batch = self._abort_batch = False
        return _one_request(commit, abort)

    def record_request(self, record: Any) -> str | None:
        with self._lock:
            commit = self._commit_records.pop(id(record), None) is not None
            abort = self._abort_records.pop(id(record), None) is not None
        return _one_request(commit, abort)


def _one_request(commit: bool, abort: bool) -> str | None:
    if commit and abort:
        raise ConnectException("Connector requested both commit and abort of the same "
                               "transaction")
    return "commit" if commit else "abort" if abort else None


class _SourceContext(SourceTaskContext):
    def __init__(self, reader: OffsetStorageReader, config: Mapping[str, str],
                 transactions: TransactionContext | None = None) -> None:
        self._reader = reader
        self._config = config
        self._transactions = transactions

    def offset_storage_reader(self) -> OffsetStorageReader:
        return self._reader

    def configs(self) -> Mapping[str, str]:
        return self._config

    def transaction_context(self) -> TransactionContext | None:
        return self._transactions


@dataclass
class _Submitted:
    record: Any
    key: str | None
    offset: Mapping[str, Any] | None
    done: bool = False
    metadata: RecordMetadata | None = None
    aborted: bool = False  # in a transaction the connector aborted: no delivery expected


def _retriable_poll_error(error: BaseException) -> bool:
    """Connect's RetriableException, or a retriable Kafka client error (Kafka retries the poll
    on both)."""
    if isinstance(error, RetriableException):
        return True
    from confluent_kafka import KafkaException
    if isinstance(error, KafkaException) and error.args:
        retriable = getattr(error.args[0], "retriable", None)
        return bool(retriable()) if callable(retriable) else False
    return False


# A poll() that raised a RetriableException is retried after this long.
POLL_RETRY_BACKOFF_S = 0.1
TRANSACTION_BOUNDARIES = ("poll", "interval", "connector")


class WorkerSourceTask(WorkerTask):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = self.source_metrics = SourceTaskMetrics()
        self.producer: Any = None
        self.admin: Any = None
        self.chain: TransformationChain | None = None
        self.offsets_topic: str | None = None
        self.in_transaction = False
        self.submitted: deque[_Submitted] = deque()
        self.acked: list[_Submitted] = []
        self.failures: list[str] = []
        self._last_partition: tuple[Mapping[str, Any], dict[str, Any], str] | None = None
        # Offsets taken off `submitted` whose write failed: written with the next commit.
        self.unwritten: dict[str, Mapping[str, Any] | None] = {}
        # KIP-618 transaction boundaries (exactly-once source support only).
        exactly_once = (self.worker.config.exactly_once_source
                        and self.worker.offsets.transactional_topic() is not None)
        self.boundary = self.connector_config.get("transaction.boundary", "poll").strip().lower()
        if self.boundary not in TRANSACTION_BOUNDARIES:
            self.boundary = "poll"
        interval = self.connector_config.get("transaction.boundary.interval.ms", "").strip()
        self.boundary_interval_s = (int(interval) / 1000 if interval
                                    else self.worker.config.offset_flush_interval_s)
        self.transactions = (_TransactionContext()
                             if exactly_once and self.boundary == "connector" else None)
        self.last_transaction_commit = time.monotonic()
        self.last_commit = time.monotonic()
        # KIP-158: the connector's topic creation groups, and the topics known to exist.
        self.topic_creation: TopicCreation | None = None
        self.known_topics: set[str] = set()

    def _setup(self) -> None:
        from confluent_kafka import Producer
        self.chain = TransformationChain.from_config(self.connector_config)
        self.key_conv = make_converter(self.worker.config, self.connector_config,
                                       "key.converter")
        self.value_conv = make_converter(self.worker.config, self.connector_config,
                                         "value.converter")
        self.header_conv = make_converter(self.worker.config, self.connector_config,
                                          "header.converter")
        if topic_creation.enabled_for(self.worker.config.props, self.connector_config):
            from confluent_kafka.admin import AdminClient
            self.topic_creation = TopicCreation.from_config(self.connector_config)
            self.admin = AdminClient(
                self.worker.config.connector_client_config("admin", self.connector_config))
        settings: dict[str, Any] = {
            "acks": "all", "linger.ms": 5, "enable.idempotence": True,
            **self.worker.config.connector_client_config("producer", self.connector_config)}
        # KIP-618: records and their source offsets in one transaction of a producer whose
        # transactional.id is the task's (Kafka's `<group.id>-<connector>-<task>`), so a new
        # incarnation of the task fences (and aborts the open transaction of) an older one.
        self.offsets_topic = (self.worker.offsets.transactional_topic()
                              if self.worker.config.exactly_once_source else None)
        if self.offsets_topic is not None:
            settings["transactional.id"] = self.worker.config.transactional_id(self.connector,
                                                                               self.task_id)
            settings["partitioner"] = "murmur2_random"  # offset keys as the store writes them
        self.producer = Producer(settings)

    async def _close_clients(self) -> None:
        """Close what `_setup` created, whatever part of it succeeded (Kafka's
        WorkerSourceTask.close)."""
        if self.chain is not None:
            try:
                self.chain.close()
            except Exception:
                log.exception("task %s-%d: closing the transformations failed", self.connector,
                              self.task_id)
            self.chain = None
        producer, self.producer = self.producer, None
        self.admin = None
        if producer is not None:
            def close() -> None:
                # Whatever is still queued was not committed and is polled again: don't wait.
                producer.purge()
                closing = getattr(producer, "close", None)  # not in older confluent-kafka
                if closing is not None:
                    closing()
            try:
                await asyncio.to_thread(close)
            except Exception:
                log.exception("task %s-%d: closing the producer failed", self.connector,
                              self.task_id)

    async def execute(self) -> None:
        task = self.task_cls()
        assert isinstance(task, SourceTask)
        reader = ConnectorOffsetReader(self.worker.offsets, self.connector)
        task.initialize(_SourceContext(reader, self.task_config, self.transactions))
        try:
            self._setup()
            if self.offsets_topic is not None:
                await asyncio.to_thread(self.producer.init_transactions, 30)
                # The offsets the fenced incarnation committed last, now that it cannot add any.
                await asyncio.to_thread(self.worker.offsets.read_to_end)
            await _call(task.start, self.task_config)
        except BaseException:
            await self._close_clients()
            raise
        self.set_running()
        failed = False
        try:
            await self._loop(task)
        except BaseException:
            failed = True
            raise
        finally:
            try:
                await self._final_commit(task, failed)
            finally:
                await self._close_clients()
                await _call(task.stop)

    async def _loop(self, task: SourceTask) -> None:
        interval = self.worker.config.offset_flush_interval_s
        self.last_commit = time.monotonic()
        was_paused = False
        self.last_transaction_commit = time.monotonic()
        while not self.stopping:
            if self.paused:
                await self._while_paused(task, first=not was_paused)
                was_paused = True
                continue
            if was_paused:
                was_paused = False
                self.last_transaction_commit = time.monotonic()
            records = await self._poll(task)
            await self._send_batch(task, records or [])
            self.producer.poll(0)
            if self.failures:
                raise RuntimeError(f"producer failed to send a record: {self.failures[0]}")
            await self._ack(task)
            if self.offsets_topic is not None:
                await self._commit_transaction_if(task, await self._batch_boundary())
            elif time.monotonic() - self.last_commit >= interval:
                await self._periodic_commit(task)
            if not records:
                await asyncio.sleep(0)

    async def _send_batch(self, task: SourceTask, records: list[Any]) -> None:
        for record in records:
            await self._send(record)
            if self.transactions is not None:
                # Kafka's shouldCommitTransactionForRecord: a commit or abort the connector
                # asked for at this record.
                request = self.transactions.record_request(record)
                if request == "abort":
                    await self._abort_transaction()
                await self._commit_transaction_if(task, request is not None)

    async def _while_paused(self, task: SourceTask, first: bool) -> None:
        if first and self.offsets_topic is not None:
            # Kafka's onPause: no transaction stays open while paused.
            await self._commit_transaction_if(task, await self._final_boundary())
        # Kafka's SourceTaskOffsetCommitter keeps committing what was acknowledged before the
        # pause.
        interval = self.worker.config.offset_flush_interval_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._resumed.wait(),
                                   max(0.0, self.last_commit + interval - time.monotonic()))
        if (self.offsets_topic is None and not self.stopping
                and time.monotonic() - self.last_commit >= interval):
            await self._periodic_commit(task)

    async def _poll(self, task: SourceTask) -> list[Any] | None:
        started = time.monotonic()
        try:
            records: list[Any] | None = await _call(task.poll)
        except Exception as error:
            if not _retriable_poll_error(error):
                raise
            # Kafka's AbstractWorkerSourceTask.poll: logged, and polled again.
            log.warning("task %s-%d failed to poll records from SourceTask. Will retry "
                        "operation.", self.connector, self.task_id, exc_info=error)
            await asyncio.sleep(POLL_RETRY_BACKOFF_S)
            return None
        if records is not None:
            metrics = self.source_metrics
            metrics.poll_batch_seconds.observe(time.monotonic() - started)
            metrics.records_polled += len(records)
        return records

    async def _batch_boundary(self) -> bool:
        """Whether the transaction ends after this poll() batch (Kafka's
        shouldCommitTransactionForBatch)."""
        if self.boundary == "interval":
            if time.monotonic() >= self.last_transaction_commit + self.boundary_interval_s:
                self.last_transaction_commit = time.monotonic()
                return True
            return False
        if self.boundary == "connector":
            assert self.transactions is not None
            request = self.transactions.batch_request()
            if request == "abort":
                await self._abort_transaction()
            return request is not None
        return True

    async def _final_boundary(self) -> bool:
        """Whether the open transaction is committed at stop or pause: always, except with
        connector-defined boundaries where only when the connector asked for it."""
        if self.boundary != "connector":
            return True
        assert self.transactions is not None
        request = self.transactions.batch_request()
        if request == "abort":
            await self._abort_transaction()
        return request is not None

    async def _abort_transaction(self) -> None:
        log.info("task %s-%d: aborting the transaction as the connector requested",
                 self.connector, self.task_id)
        await asyncio.to_thread(self._abort_now)

    def _abort_now(self) -> None:
        # The records of the transaction are dropped; their offsets are still committed (in
        # the next transaction), so the task does not see them again, as Kafka's.
        for entry in self.submitted:
            if not entry.done:
                entry.aborted = entry.done = True
                self.acked.append(entry)
        if self.in_transaction:
            self.producer.abort_transaction(30)
            self.in_transaction = False

    def _pending_offsets(self) -> bool:
        return bool(self.unwritten) or any(e.key is not None for e in self.submitted)

    async def _commit_transaction_if(self, task: SourceTask, boundary: bool) -> None:
        if boundary and (self.in_transaction or self._pending_offsets()):
            await self._commit(task, flush=True)

    async def _periodic_commit(self, task: SourceTask) -> None:
        """Kafka's SourceTaskOffsetCommitter: a failed periodic commit is logged and retried at
        the next one, not fatal."""
        try:
            await self._commit(task, flush=False)
        except Exception:
            log.exception("task %s-%d: committing source offsets failed; retrying at the next "
                          "commit", self.connector, self.task_id)
        self.last_commit = time.monotonic()

    async def _final_commit(self, task: SourceTask, failed: bool) -> None:
        if self.producer is None:
            return
        if self.offsets_topic is not None:
            # Kafka: a failed exactly-once task commits nothing more; a stopping one ends its
            # transaction as its boundary says (the producer's close aborts one left open).
            if not failed:
                await self._commit_transaction_if(task, await self._final_boundary())
            return
        if not failed:
            await self._commit(task, flush=True)
            return
        # The acknowledged prefix is safe to commit even though the task failed (Kafka's
        # WorkerSourceTask.finalOffsetCommit); the task's own error is the one reported.
        try:
            await self._commit(task, flush=True)
        except Exception:
            log.exception("task %s-%d: the final offset commit failed", self.connector,
                          self.task_id)

    async def _maybe_create_topic(self, topic: str) -> None:
        """Kafka's WorkerSourceTask.maybeCreateTopic: before the first record to a topic, create
        it with its topic creation group's settings unless it exists."""
        if self.topic_creation is None or topic in self.known_topics:
            return
        group = self.topic_creation.group_for(topic)
        created = await asyncio.to_thread(self._create_topic, topic, group)
        self.known_topics.add(topic)
        if created:
            log.info("task %s-%d created topic %s (topic creation group %s: %d partitions, "
                     "replication factor %d, %s)", self.connector, self.task_id, topic,
                     group.name, group.partitions, group.replication_factor, group.configs)

    def _create_topic(self, topic: str, group: TopicCreationGroup) -> bool:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic
        assert self.admin is not None
        if topic in self.admin.list_topics(timeout=30).topics:
            return False
        new = NewTopic(topic, num_partitions=group.partitions,
                       replication_factor=group.replication_factor, config=dict(group.configs))
        try:
            self.admin.create_topics([new], request_timeout=30)[topic].result(60)
        except KafkaException as error:
            code = error.args[0].code() if error.args else None
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise ConnectException(
                f"Task failed to create new topic {topic} (partitions={group.partitions}, "
                f"replication factor={group.replication_factor}, configs={group.configs}): "
                f"{error}. Ensure that the task is authorized to create topics or that the "
                "topic exists and restart the task") from error
        return True

    def _offset_key(self, partition: Mapping[str, Any]) -> str:
        """offset_key of the connector and `partition`, remembered for the last partition:
        a task usually hands the same partition object to many records in a row."""
        last = self._last_partition
        if last is None or last[0] is not partition or last[1] != partition:
            last = self._last_partition = (partition, dict(partition),
                                           offset_key(self.connector, partition))
        return last[2]

    async def _send(self, record: Any) -> None:
        entry = _Submitted(
            record, self._offset_key(record.source_partition)
            if record.source_partition else None,
            record.source_offset if record.source_partition else None)
        self.submitted.append(entry)
        assert self.chain is not None
        produced = await self._convert(record, self.chain, self.key_conv, self.value_conv,
                                       self.header_conv)
        if produced is None:
            entry.done = True
            self.acked.append(entry)
            self.source_metrics.records_dropped += 1
            return
        topic, partition, key, value, headers, timestamp = produced
        await self._maybe_create_topic(topic)
        self.worker.record_topic(self.connector, topic)
        kwargs: dict[str, Any] = {"key": key, "value": value,
                                  "on_delivery": self._on_delivery(entry, topic)}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        if self.offsets_topic is not None and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:
                await asyncio.to_thread(self.producer.poll, 0.1)

    def _on_delivery(self, entry: _Submitted, topic: str) -> Callable[[Any, Any], None]:
        tolerate = self.offsets_topic is None and self.errors.settings.tolerance_all

        def on_delivery(err: Any, msg: Any) -> None:
            if entry.aborted:
                return
            if err is not None:
                if tolerate:
                    self._send_failed_tolerated(entry, topic, err)
                else:
                    self.failures.append(str(err))
                return
            entry.metadata = RecordMetadata(msg.topic(), msg.partition(), msg.offset(),
                                            msg.timestamp()[1])
            entry.done = True
            self.acked.append(entry)
            self.source_metrics.records_written += 1
        return on_delivery

    def _send_failed_tolerated(self, entry: _Submitted, topic: str, err: Any) -> None:
        """KIP-779: under errors.tolerance=all a record the producer failed to send is logged,
        counted (task-error-metrics) and acknowledged, so the offsets after it commit."""
        errors = self.errors
        errors.record_failures += 1
        errors.record_errors += 1
        errors.records_skipped += 1
        log.warning("task %s-%d failed to send a record to topic %s: %s; skipping it "
                    "(errors.tolerance=all)", self.connector, self.task_id, topic, err)
        if errors.settings.log_enable:
            from confluent_kafka import KafkaException
            context = ProcessingContext(self.connector, self.task_id, Stage.KAFKA_PRODUCE,
                                        f"{type(self).__module__}.{type(self).__qualname__}",
                                        KafkaException(err), topic=topic,
                                        source_record=entry.record)
            log_error(context, errors.settings.log_include_messages)
            errors.errors_logged += 1
        entry.done = True
        self.acked.append(entry)

    async def _convert(self, record: Any, chain: TransformationChain, key_conv: Any,
                       value_conv: Any, header_conv: Any
                       ) -> tuple[str, int | None, bytes | None, bytes | None,
                                  list[tuple[str, bytes | None]], int | None] | None:
        context = ProcessingContext(self.connector, self.task_id, source_record=record)
        out = await transform(self.errors, chain, record, context)
        if out is None:
            return None
        headers: list[tuple[str, bytes | None]] = []
        if out.headers:  # most records have none: no header stage to run
            ok, _ = await self.errors.execute(
                Stage.HEADER_CONVERTER, type(header_conv),
                lambda: headers.extend(
                    (h.key, header_conv.from_connect_header(out.topic, h.key, h.schema,
                                                            h.value))
                    for h in out.headers), context)
            if not ok:
                return None
        ok, key = await self.errors.execute(
            Stage.KEY_CONVERTER, type(key_conv),
            lambda: key_conv.from_connect_data(out.topic, out.key_schema, out.key, out.headers),
            context)
        if not ok:
            return None
        ok, value = await self.errors.execute(
            Stage.VALUE_CONVERTER, type(value_conv),
            lambda: value_conv.from_connect_data(out.topic, out.value_schema, out.value,
                                                 out.headers), context)
        if not ok:
            return None
        return out.topic, out.kafka_partition, key, value, headers, out.timestamp

    async def _ack(self, task: SourceTask) -> None:
        """commit_record for each acknowledged record, in order; skipped when the task keeps
        SourceTask's (a no-op): a plain method runs in a thread, a round trip per record."""
        if not self.acked:
            return
        acked, self.acked = self.acked, []
        if type(task).commit_record is SourceTask.commit_record:
            return
        for entry in acked:
            try:
                await _call(task.commit_record, entry.record, entry.metadata)
            except Exception:
                # Kafka's commitTaskRecord: logged, not fatal.
                log.exception("task %s-%d: exception thrown while calling "
                              "task.commit_record()", self.connector, self.task_id)

    async def _commit(self, task: SourceTask, flush: bool) -> None:
        started = time.monotonic()
        try:
            await self._commit_offsets(task, flush)
        except Exception:
            self.metrics.commit_failures += 1
            raise
        self.metrics.commits += 1
        self.metrics.commit_seconds.observe(time.monotonic() - started)

    async def _commit_offsets(self, task: SourceTask, flush: bool) -> None:
        if flush or self.in_transaction:
            await asyncio.to_thread(self.producer.flush, 30)
        else:
            self.producer.poll(0)
        await self._ack(task)
        offsets = self.unwritten
        self.unwritten = {}
        while self.submitted and self.submitted[0].done:
            entry = self.submitted.popleft()
            if entry.key is not None:
                offsets[entry.key] = entry.offset
        try:
            await self._write_offsets(offsets)
        except BaseException:
            if self.offsets_topic is None:
                self.unwritten = {**offsets, **self.unwritten}
            raise
        try:
            await _call(task.commit)
        except Exception:
            # Kafka's commitSourceTask: logged, not fatal.
            log.exception("task %s-%d: exception thrown while calling task.commit()",
                          self.connector, self.task_id)

    async def _write_offsets(self, offsets: dict[str, Mapping[str, Any] | None]) -> None:
        if self.offsets_topic is None:
            if offsets:
                await asyncio.to_thread(self.worker.offsets.set, offsets)
            return
        if not self.in_transaction:
            # Offsets of dropped or aborted records only: a transaction of their own.
            self.producer.begin_transaction()
            self.in_transaction = True
        for key, value in offsets.items():
            self.producer.produce(self.offsets_topic, key=key.encode(),
                                  value=None if value is None else json.dumps(
                                      value, separators=(",", ":")).encode())
        await asyncio.to_thread(self.producer.commit_transaction, 30)
        self.in_transaction = False


class _ErrantReporter:
    def __init__(self, owner: WorkerSinkTask, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        # The reports not yet awaited before a commit; a failure not tolerated (the task fails
        # with it even if put() swallowed it, as Kafka's).
        self.pending: list[Future[None]] = []
        self.exceeded: ToleranceExceeded | None = None

    def report(self, record: Any, error: BaseException) -> Future[None]:
        self.owner.errors.record_failures += 1
        self.owner.errors.record_errors += 1
        if not self.owner.errors.settings.tolerance_all:
            # Kafka's WorkerErrantRecordReporter under errors.tolerance=none: the report
            # itself fails (the task with it); nothing goes to the dead letter queue.
            exceeded = ToleranceExceeded("Tolerance exceeded in error handler")
            exceeded.__cause__ = error
            self.exceeded = exceeded
            raise exceeded
        future = self._report(record, error)
        self.pending.append(future)
        return future

    async def completed(self) -> None:
        """Wait for the reports made so far (Kafka's awaitFutures before a commit): a record
        is not committed past before it is in the dead letter queue."""
        pending, self.pending = self.pending, []
        for future in pending:
            try:
                await asyncio.wrap_future(future)
            except Exception as error:
                raise ConnectException("could not report an errant record") from error

    def _report(self, record: Any, error: BaseException) -> Future[None]:
        raw = self.owner.raw.get((record.original_topic, record.original_kafka_partition,
                                  record.original_kafka_offset))
        context = ProcessingContext(
            self.owner.connector, self.owner.task_id, Stage.TASK_PUT,
            f"{self.owner.task_cls.__module__}.{self.owner.task_cls.__qualname__}", error,
            record.original_topic, record.original_kafka_partition,
            record.original_kafka_offset,
            raw[0] if raw else None, raw[1] if raw else None, raw[2] if raw else None)
        coro = self.owner.errors.report(context)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            done: Future[None] = Future()
            task = self.loop.create_task(coro)

            def finished(t: asyncio.Task[None]) -> None:
                if t.cancelled():
                    done.cancel()
                elif t.exception() is not None:
                    done.set_exception(t.exception())
                else:
                    done.set_result(None)

            task.add_done_callback(finished)
            return done
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class _SinkContext(SinkTaskContext):
    def __init__(self, owner: WorkerSinkTask) -> None:
        self.owner = owner
        self.resets: dict[TopicPartition, int] = {}
        self.timeout_ms = 0
        self.commit_requested = False
        self.paused: set[TopicPartition] = set()
        self.reporter: _ErrantReporter | None = None

    def offset(self, offsets: Mapping[TopicPartition, int] | TopicPartition,
               offset: int | None = None) -> None:
        if isinstance(offsets, TopicPartition):
            assert offset is not None
            self.resets[offsets] = offset
        else:
            self.resets.update(offsets)

    def timeout(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms

    def assignment(self) -> set[TopicPartition]:
        return set(self.owner.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)
        self.owner.apply_pauses()

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)
        self.owner.apply_pauses()

    def request_commit(self) -> None:
        self.commit_requested = True

    def errant_record_reporter(self) -> ErrantRecordReporter | None:
        return self.reporter

    def configs(self) -> Mapping[str, str]:
        return self.owner.task_config


class WorkerSinkTask(WorkerTask):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assigned: set[TopicPartition] = set()
        self.raw: dict[tuple[str, int, int], tuple[bytes | None, bytes | None,
                                                   list[tuple[str, bytes | None]]]] = {}
        self.consumer: Any = None
        self.context = _SinkContext(self)
        self._events: list[tuple[str, list[TopicPartition]]] = []
        self._lock = threading.Lock()
        self.metrics = self.sink_metrics = SinkTaskMetrics()
        # Per partition: the next offset to read (what was consumed), the offset read first
        # since the assignment (until a commit), the last one committed, the lag /metrics
        # read last; the consumer's lock keeps /metrics from using it while it closes.
        self.current: dict[TopicPartition, int] = {}
        self.consumed_from: dict[TopicPartition, int] = {}
        self.unbased: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.lag: dict[TopicPartition, int] = {}
        self._consumer_lock = threading.Lock()
        self._consumer_closed = False
        # A batch put() refused with a RetriableException, and its offsets: redelivered (all
        # partitions paused meanwhile, the consumer still polled) from `_retry_at` on.
        self._redelivery: tuple[list[Any], dict[TopicPartition, int]] | None = None
        self._retry_at = 0.0
        # The task, while the consumer's rebalance callbacks may call into it; what one of them
        # raised (raised again by the loop).
        self._rebalance_task: SinkTask | None = None
        self._rebalance_error: BaseException | None = None

    def partition_numbers(self) -> Mapping[tuple[str, int], PartitionNumbers]:
        return {(tp.topic, tp.partition): PartitionNumbers(self.lag.get(tp),
                                                           self.committed.get(tp))
                for tp in self.assigned}

    def records_active(self) -> int:
        """Kafka's sink-record-active-count: read and not yet committed."""
        active = 0
        for tp, consumed in self.current.items():
            base = self.committed.get(tp, self.consumed_from.get(tp))
            if base is not None:
                active += max(0, consumed - base)
        return active

    async def refresh_lag(self) -> None:
        """The lag of each assigned partition, for /metrics: the consumer's position against
        the high watermark it cached from its last fetch, or (a paused partition, which is
        not fetched) the broker's."""
        if self.consumer is None or not self.assigned:
            self.lag = {}
            return
        parts = sorted(self.assigned)
        paused = set(parts) if self.paused else set(self.context.paused)
        fallback = {tp: self.current.get(tp, self.committed.get(tp)) for tp in parts}
        self.lag = await asyncio.to_thread(self._read_lag, parts, paused, fallback)

    def _read_lag(self, parts: list[TopicPartition], paused: set[TopicPartition],
                  fallback: Mapping[TopicPartition, int | None]) -> dict[TopicPartition, int]:
        from confluent_kafka import TopicPartition as KafkaTP
        out: dict[TopicPartition, int] = {}
        with self._consumer_lock:
            if self._consumer_closed:
                return out
            try:
                positions = self.consumer.position([KafkaTP(tp.topic, tp.partition)
                                                    for tp in parts])
            except Exception as error:
                log.debug("positions of %s-%d: %s", self.connector, self.task_id, error)
                return out
            for tp, position in zip(parts, positions, strict=True):
                offset = position.offset if position.offset >= 0 else fallback.get(tp)
                if offset is None:
                    continue
                kafka_tp = KafkaTP(tp.topic, tp.partition)
                try:
                    high = -1
                    if tp not in paused:
                        high = self.consumer.get_watermark_offsets(kafka_tp, cached=True)[1]
                    if high < 0:
                        high = self.consumer.get_watermark_offsets(
                            kafka_tp, timeout=LAG_QUERY_TIMEOUT_S, cached=False)[1]
                except Exception as error:
                    log.debug("high watermark of %s: %s", tp, error)
                    continue
                if high >= 0:
                    out[tp] = max(0, high - offset)
        return out

    def _close_consumer(self) -> None:
        with self._consumer_lock:
            self._consumer_closed = True
            self.consumer.close()

    def apply_pauses(self) -> None:
        from confluent_kafka import TopicPartition as KafkaTP
        if self.consumer is None:
            return
        paused = (self.assigned if self.paused or self._redelivery is not None
                  else (self.context.paused & self.assigned))
        running = self.assigned - paused
        if paused:
            self.consumer.pause([KafkaTP(tp.topic, tp.partition) for tp in paused])
        if running:
            self.consumer.resume([KafkaTP(tp.topic, tp.partition) for tp in running])

    async def stop(self, timeout_s: float = 5.0) -> None:
        self.errors.trigger_stop()  # a conversion being retried gives up at once
        await super().stop(timeout_s)

    def pause(self) -> None:
        super().pause()
        self.apply_pauses()

    def resume(self) -> None:
        super().resume()
        self.apply_pauses()

    def _setup(self, loop: asyncio.AbstractEventLoop) -> None:
        from confluent_kafka import Consumer
        settings = self.errors.settings
        if settings.dlq_topic:
            self.dlq: DeadLetterQueueReporter | None = DeadLetterQueueReporter(
                settings, self.worker.config.client_config("producer"),
                self.worker.config.client_config("admin"), self.errors)
            self.errors.reporters.append(self.dlq)
        else:
            self.dlq = None
        self.context.reporter = _ErrantReporter(self, loop)
        self.chain = TransformationChain.from_config(self.connector_config)
        self.key_conv = make_converter(self.worker.config, self.connector_config,
                                       "key.converter")
        self.value_conv = make_converter(self.worker.config, self.connector_config,
                                         "value.converter")
        self.header_conv = make_converter(self.worker.config, self.connector_config,
                                          "header.converter")
        group = self.connector_config.get("consumer.override.group.id",
                                          f"connect-{self.connector}")
        consumer_config = {
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            # Kafka's consumer default before 3.0 (now 45 s): a worker killed without leaving
            # its group holds its partitions this long.
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 3000,
            **self.worker.config.connector_client_config("consumer", self.connector_config)}
        # Kafka's max.poll.records (not a librdkafka setting): the most records a batch holds.
        self.batch_size = int(consumer_config.pop("max.poll.records", SINK_BATCH))
        self.consumer = Consumer(consumer_config)
        topics = _split(self.task_config.get("topics"))
        regex = self.task_config.get("topics.regex", "").strip()

        def on_assign(_c: Any, parts: list[Any]) -> None:
            with self._lock:
                self._events.append(("assign", [TopicPartition(p.topic, p.partition)
                                                 for p in parts]))

        def on_revoke(_c: Any, parts: list[Any]) -> None:
            self._revoked("revoke", parts, loop)

        def on_lost(_c: Any, parts: list[Any]) -> None:
            self._revoked("lost", parts, loop)

        # librdkafka subscribes to the topics a pattern starting with ^ finds in them; Kafka
        # matches topics.regex against whole topic names.
        self.consumer.subscribe(topics if topics else [f"^({regex})$"], on_assign=on_assign,
                                on_revoke=on_revoke, on_lost=on_lost)

    def _revoked(self, kind: str, parts: list[Any], loop: asyncio.AbstractEventLoop) -> None:
        """The consumer's revocation callback (in the thread of consume()): as Kafka's
        onPartitionsRevoked, the revoked partitions' offsets are committed (preCommit) and the
        task closes them before the consumer lets them go; lost ones are only closed."""
        revoked = [TopicPartition(p.topic, p.partition) for p in parts]
        task = self._rebalance_task
        if task is None:
            with self._lock:
                self._events.append((kind, revoked))
            return

        def on_loop(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        try:
            if kind == "revoke" and self.status.state != State.FAILED:
                on_loop(self._rebalance(task, self.current))  # the assignments before it
                commit = on_loop(self._offsets_to_commit(task, self.current, revoked,
                                                         closing=True))
                # In this thread: librdkafka takes a synchronous commit from its rebalance
                # callback (one from another thread meanwhile never completes).
                self._commit_offsets(commit)
            with self._lock:
                self._events.append((kind, revoked))
            on_loop(self._rebalance(task, self.current))
        except BaseException as error:
            self._rebalance_error = error

    async def execute(self) -> None:
        task = self.task_cls()
        assert isinstance(task, SinkTask)
        task.initialize(self.context)
        self._setup(asyncio.get_running_loop())
        await _call(task.start, self.task_config)
        self._rebalance_task = task
        self.set_running()
        current = self.current
        last_commit = time.monotonic()
        try:
            while not self.stopping:
                await self._iteration(task, current)
                due = time.monotonic() - last_commit >= self.worker.config.offset_flush_interval_s
                if current and (due or self.context.commit_requested):
                    await self._commit(task, current)
                    self.context.commit_requested = False
                    last_commit = time.monotonic()
        finally:
            await self._close(task, current)

    async def _consume(self, task: SinkTask, current: dict[TopicPartition, int],
                       timeout_s: float) -> tuple[list[Any], set[TopicPartition]]:
        """Poll (the rebalance callbacks run in it); the messages and the partitions sought
        with context.offset()."""
        messages = await asyncio.to_thread(self.consumer.consume, self.batch_size, timeout_s)
        await self._rebalance(task, current)
        if self._rebalance_error is not None:
            raise self._rebalance_error
        # Offsets the task set (in open(), say) move the consumer before anything is put, as
        # Kafka's rewind() before each poll: what consume() returned of those partitions is
        # stale.
        return messages, await self._apply_resets(current)

    async def _iteration(self, task: SinkTask, current: dict[TopicPartition, int]) -> None:
        if self._redelivery is not None:
            await self._redeliver(task, current)
            return
        messages, rewound = await self._consume(task, current, SINK_POLL_S)
        if self.unbased and messages:
            self._set_bases(messages)
        self.sink_metrics.records_read += len(messages)
        batch = []
        # The offsets move past the batch only once put() took it (Kafka's origOffsets): a
        # batch that fails, or is abandoned at stop, is not committed.
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            if message.error():
                log.warning("consumer error in %s-%d: %s", self.connector, self.task_id,
                            message.error())
                self.sink_metrics.records_read -= 1
                continue
            tp = TopicPartition(message.topic(), message.partition())
            if tp not in self.assigned or tp in rewound:  # revoked while consume() ran
                continue
            offsets[tp] = message.offset() + 1
            try:
                record = await self._record(message, self.chain, self.key_conv,
                                            self.value_conv, self.header_conv)
            except RetryStopped:  # the task stops: the batch is abandoned, not committed
                self.raw.clear()
                return
            if record is not None:
                batch.append(record)
        await self._deliver(task, batch, offsets, current)

    async def _deliver(self, task: SinkTask, batch: list[Any], offsets: dict[TopicPartition, int],
                       current: dict[TopicPartition, int]) -> None:
        """Put the batch and move the offsets past it (Kafka's deliverMessages); after a
        RetriableException, pause all partitions and keep the batch for redelivery after
        `context.timeout` ms (the offsets stay where they were)."""
        from strom.connect.errors import RetriableException
        if batch:
            try:
                await self._put(task, batch)
            except RetriableException as error:
                log.warning("task %s-%d put failed, will retry: %s", self.connector,
                            self.task_id, error)
                self._retry_at = time.monotonic() + max(self.context.timeout_ms, 100) / 1000
                self.context.timeout_ms = 0  # Kafka's: a timeout applies to one retry
                if self._redelivery is None:
                    self._redelivery = (batch, offsets)
                    self.apply_pauses()
                return
        current.update(offsets)
        self.raw.clear()
        if self._redelivery is not None:
            self._redelivery = None
            self.apply_pauses()
        await self._apply_resets(current)

    async def _redeliver(self, task: SinkTask, current: dict[TopicPartition, int]) -> None:
        """Poll the paused consumer until the batch is due (rebalances and commits go on),
        then put it again, without the records of partitions revoked or sought meanwhile."""
        from confluent_kafka import TopicPartition as KafkaTP
        assert self._redelivery is not None
        wait = min(max(0.0, self._retry_at - time.monotonic()), SINK_POLL_S)
        messages, rewound = await self._consume(task, current, wait)
        first: dict[TopicPartition, int] = {}
        for message in messages:  # none while paused; not to be lost if one came
            if not message.error():
                tp = TopicPartition(message.topic(), message.partition())
                first[tp] = min(first.get(tp, message.offset()), message.offset())
        for tp, offset in first.items():
            if tp in self.assigned and tp not in rewound:
                self.consumer.seek(KafkaTP(tp.topic, tp.partition, offset))
        batch, offsets = self._redelivery
        kept = {tp for tp in offsets if tp in self.assigned and tp not in rewound}
        if kept != set(offsets):
            batch = [r for r in batch if TopicPartition(r.original_topic or r.topic,
                                                        r.original_kafka_partition or 0) in kept]
            offsets = {tp: offset for tp, offset in offsets.items() if tp in kept}
            self._redelivery = (batch, offsets)
        if self.stopping or time.monotonic() < self._retry_at:
            return
        await self._deliver(task, batch, offsets, current)

    async def _close(self, task: SinkTask, current: dict[TopicPartition, int]) -> None:
        self._rebalance_task = None  # closing the consumer revokes all: the task is done
        try:
            if self.status.state != State.FAILED and current:
                await self._commit(task, current, closing=True)
            if self.assigned:
                await _call(task.close, sorted(self.assigned))
        finally:
            self.chain.close()
            await _call(task.stop)
            await asyncio.to_thread(self._close_consumer)
            if self.dlq is not None:
                await asyncio.to_thread(self.dlq.close)

    async def _rebalance(self, task: SinkTask, current: dict[TopicPartition, int]) -> None:
        with self._lock:
            events, self._events = self._events, []
        for kind, parts in events:
            if kind == "assign":
                self.assigned.update(parts)
                self.unbased.update(parts)
                for tp in parts:
                    self.worker.record_topic(self.connector, tp.topic)
                await _call(task.open, parts)
                self.apply_pauses()
            else:
                await _call(task.close, parts)
                self.assigned.difference_update(parts)
                self.unbased.difference_update(parts)
                for tp in parts:
                    current.pop(tp, None)
                    for numbers in (self.consumed_from, self.committed, self.lag):
                        numbers.pop(tp, None)

    async def _record(self, message: Any, chain: TransformationChain, key_conv: Any,
                      value_conv: Any, header_conv: Any) -> Any:
        from strom.connect.data import Headers
        from strom.connect.records import SinkRecord
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        raw_headers = list(message.headers() or [])
        self.raw[(topic, partition, offset)] = (message.key(), message.value(), raw_headers)
        context = ProcessingContext(self.connector, self.task_id, topic=topic,
                                    partition=partition, offset=offset, raw_key=message.key(),
                                    raw_value=message.value(), raw_headers=raw_headers)
        headers = Headers()

        def convert_headers() -> None:
            for hkey, hvalue in raw_headers:
                sv = header_conv.to_connect_header(topic, hkey, hvalue)
                headers.add(hkey, sv.value, sv.schema)

        ok, _ = await self.errors.execute(Stage.HEADER_CONVERTER, type(header_conv),
                                          convert_headers, context)
        if not ok:
            return None
        ok, key = await self.errors.execute(
            Stage.KEY_CONVERTER, type(key_conv),
            lambda: key_conv.to_connect_data(topic, message.key(), headers), context)
        if not ok:
            return None
        ok, value = await self.errors.execute(
            Stage.VALUE_CONVERTER, type(value_conv),
            lambda: value_conv.to_connect_data(topic, message.value(), headers), context)
        if not ok or key is None or value is None:
            return None
        ts_type, ts = message.timestamp()
        record = SinkRecord(
            topic=topic, kafka_partition=partition, key_schema=key.schema, key=key.value,
            value_schema=value.schema, value=value.value,
            timestamp=ts if ts_type != 0 else None, headers=headers, kafka_offset=offset,
            timestamp_type={1: "CreateTime", 2: "LogAppendTime"}.get(ts_type,
                                                                      "NoTimestampType"),
            original_topic=topic, original_kafka_partition=partition,
            original_kafka_offset=offset)
        return await transform(self.errors, chain, record, context)

    def _set_bases(self, messages: list[Any]) -> None:
        """The first offset read of each partition since its assignment (Kafka's sink task
        counts its active records from there until it commits)."""
        for message in messages:
            if message.error():
                continue
            tp = TopicPartition(message.topic(), message.partition())
            if tp in self.unbased:
                self.unbased.discard(tp)
                self.consumed_from[tp] = message.offset()
                if not self.unbased:
                    return

    async def _put(self, task: SinkTask, batch: list[Any]) -> None:
        started = time.monotonic()
        await _call(task.put, batch)
        reporter = self.context.reporter
        if reporter is not None and reporter.exceeded is not None:
            # put() swallowed the errant record reporter's failure: the task fails anyway
            # (Kafka's WorkerSinkTask.deliverMessages).
            raise reporter.exceeded
        self.sink_metrics.put_batch_seconds.observe(time.monotonic() - started)
        self.sink_metrics.records_put += len(batch)

    async def _apply_resets(self, current: dict[TopicPartition, int]) -> set[TopicPartition]:
        """Seek to the offsets set with context.offset(); the partitions sought."""
        from confluent_kafka import TopicPartition as KafkaTP
        resets, self.context.resets = self.context.resets, {}
        sought = set()
        for tp, offset in resets.items():
            try:
                self.consumer.seek(KafkaTP(tp.topic, tp.partition, offset))
                current[tp] = offset
                sought.add(tp)
            except Exception as error:
                log.warning("cannot reset %s to %d: %s", tp, offset, error)
        return sought

    async def _commit(self, task: SinkTask, current: dict[TopicPartition, int],
                      closing: bool = False) -> None:
        commit = await self._offsets_to_commit(task, current, closing=closing)
        if commit:
            await asyncio.to_thread(self._commit_offsets, commit)

    async def _offsets_to_commit(self, task: SinkTask, current: dict[TopicPartition, int],
                                 partitions: list[TopicPartition] | None = None,
                                 closing: bool = False) -> list[Any]:
        """What the task's pre_commit accepts of `current` (of `partitions` only, when given:
        those being revoked), once the errant records reported so far are reported. When
        pre_commit fails nothing is committed and, unless the partitions are being closed, the
        consumer goes back to the last committed offsets (Kafka's commitOffsets)."""
        from confluent_kafka import TopicPartition as KafkaTP
        offered = (dict(current) if partitions is None
                   else {tp: current[tp] for tp in partitions if tp in current})
        if not offered:
            return []
        if self.context.reporter is not None:
            await self.context.reporter.completed()
        try:
            offsets = await _call(task.pre_commit, offered)
        except Exception as error:
            self.metrics.commit_failures += 1
            if closing:
                log.warning("offset commit of %s-%d failed during close: %s", self.connector,
                            self.task_id, error)
            else:
                log.error("offset commit of %s-%d failed, rewinding to the last committed "
                          "offsets", self.connector, self.task_id, exc_info=error)
                self._rewind(current)
            return []
        commit = [KafkaTP(tp.topic, tp.partition, off) for tp, off in (offsets or {}).items()
                  if tp in self.assigned and (partitions is None or tp in partitions)]
        if not commit:
            self.metrics.commit_skips += 1
        return commit

    def _rewind(self, current: dict[TopicPartition, int]) -> None:
        """Seek each assigned partition back to its last committed offset (the first read
        since its assignment when none): what was read since is redelivered."""
        from confluent_kafka import TopicPartition as KafkaTP
        for tp in sorted(self.assigned):
            offset = self.committed.get(tp, self.consumed_from.get(tp))
            if offset is None:
                continue
            try:
                self.consumer.seek(KafkaTP(tp.topic, tp.partition, offset))
            except Exception as error:
                log.warning("cannot rewind %s to %d: %s", tp, offset, error)
                continue
            current[tp] = offset
        if self._redelivery is not None:  # its records come again
            self._redelivery = None
            self.raw.clear()
            self.apply_pauses()

    def _commit_offsets(self, commit: list[Any]) -> None:
        if not commit:
            return
        started = time.monotonic()
        try:
            self.consumer.commit(offsets=commit, asynchronous=False)
        except Exception as error:
            self.metrics.commit_failures += 1
            log.warning("offset commit failed for %s-%d: %s", self.connector,
                        self.task_id, error)
            return
        self.metrics.commits += 1
        self.metrics.commit_seconds.observe(time.monotonic() - started)
        for part in commit:
            self.committed[TopicPartition(part.topic, part.partition)] = part.offset


# ---------------------------------------------------------------------------------------------
# Connectors


class _ConnectorContext(ConnectorContext):
    def __init__(self, owner: WorkerConnector) -> None:
        self.owner = owner

    def request_task_reconfiguration(self) -> None:
        self.owner.worker.on_reconfiguration_request(self.owner.name)

    def raise_error(self, error: BaseException) -> None:
        self.owner.status = Status(State.FAILED, self.owner.worker.config.worker_id,
                                   trace_of(error))


class WorkerConnector:
    def __init__(self, worker: Worker, name: str, cls: type[Connector],
                 config: Mapping[str, str]) -> None:
        self.worker = worker
        self.name = name
        self.cls = cls
        self.config = dict(config)
        self.instance: Connector | None = None
        self.status = Status(State.UNASSIGNED, worker.config.worker_id)

    @property
    def is_sink(self) -> bool:
        return issubclass(self.cls, SinkConnector)

    @property
    def state(self) -> str:
        return self.status.state.value

    async def start(self, paused: bool = False) -> bool:
        self.worker.loop = asyncio.get_running_loop()
        self.worker.counts.connector_startup_attempts += 1
        try:
            self.instance = self.cls()
            self.instance.initialize(_ConnectorContext(self))
            await maybe_await(self.instance.start(self.config))
        except Exception as error:
            self.worker.counts.connector_startup_failures += 1
            log.error("connector %s failed to start", self.name, exc_info=error)
            self.status = Status(State.FAILED, self.worker.config.worker_id, trace_of(error))
            return False
        self.status = Status(State.PAUSED if paused else State.RUNNING,
                             self.worker.config.worker_id)
        return True

    def task_configs(self) -> list[dict[str, str]]:
        """Kafka's Worker.connectorTaskConfigs: the connector's, plus task.class and, for sinks,
        the topics."""
        assert self.instance is not None
        max_tasks = int(self.config.get("tasks.max", "1"))
        configs = self.instance.task_configs(max_tasks)
        if len(configs) > max_tasks:
            raise ValueError(f"connector {self.name} produced {len(configs)} task configs, "
                             f"more than tasks.max={max_tasks}")
        task_cls = self.instance.task_class()
        out = []
        for config in configs:
            config = dict(config)
            config["task.class"] = f"{task_cls.__module__}.{task_cls.__qualname__}"
            if self.is_sink:
                for key in ("topics", "topics.regex"):
                    if key in self.config:
                        config[key] = self.config[key]
            out.append(config)
        return out

    async def stop(self) -> None:
        if self.instance is not None:
            try:
                await maybe_await(self.instance.stop())
            except Exception:
                log.exception("connector %s failed to stop", self.name)
        self.instance = None


class Worker:
    """Runs the connectors and tasks the herder assigns it."""

    def __init__(self, config: WorkerConfig, offsets: OffsetBackingStore,
                 reconfigure: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.offsets = offsets
        self.connectors: dict[str, WorkerConnector] = {}
        self.tasks: dict[tuple[str, int], WorkerTask] = {}
        self.active_topics: dict[str, set[str]] = {}
        self._reconfigure = reconfigure
        self.loop: asyncio.AbstractEventLoop | None = None  # the connectors' (set at start)
        self.counts = WorkerCounts()
        self.collector = ConnectCollector(self)
        self.registry = make_registry(self.collector)

    def connector_views(self) -> list[WorkerConnector]:
        return list(self.connectors.values())

    def task_views(self) -> list[WorkerTask]:
        return sorted(self.tasks.values(), key=lambda t: t.id)

    async def scrape(self) -> bytes:
        """/metrics: the Prometheus text exposition of the worker's registry."""
        from prometheus_client.exposition import generate_latest
        sinks = [t for t in self.tasks.values() if isinstance(t, WorkerSinkTask)]
        if sinks:
            await asyncio.gather(*(t.refresh_lag() for t in sinks))
        return generate_latest(self.registry)

    def record_topic(self, connector: str, topic: str) -> None:
        self.active_topics.setdefault(connector, set()).add(topic)

    def on_reconfiguration_request(self, connector: str) -> None:
        """ConnectorContext.request_task_reconfiguration: callable from any thread (a
        connector watching its source from a thread of its own, as Kafka's connectors do)."""
        if self._reconfigure is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not the event loop's thread
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._reconfigure, connector)
            return
        self._reconfigure(connector)

    def start_task(self, connector: WorkerConnector, task_id: int, task_config: Mapping[str, str],
                   paused: bool) -> WorkerTask:
        assert connector.instance is not None
        task_cls = connector.instance.task_class()
        kind = WorkerSinkTask if connector.is_sink else WorkerSourceTask
        task = kind(self, connector.name, task_id, task_cls, task_config, connector.config,
                    paused)
        self.tasks[task.id] = task
        task.start()
        return task

    async def stop_task(self, task_id: tuple[str, int]) -> None:
        task = self.tasks.pop(task_id, None)
        if task is not None:
            await task.stop()

    async def stop_tasks(self, connector: str) -> None:
        ids = [tid for tid in self.tasks if tid[0] == connector]
        await asyncio.gather(*(self.stop_task(tid) for tid in ids))

    def tasks_of(self, connector: str) -> list[WorkerTask]:
        return sorted((t for t in self.tasks.values() if t.connector == connector),
                      key=lambda t: t.task_id)


def matches_topics(config: Mapping[str, str], topic: str) -> bool:
    topics = _split(config.get("topics"))
    if topics:
        return topic in topics
    regex = config.get("topics.regex", "")
    return bool(regex) and re.fullmatch(regex, topic) is not None

