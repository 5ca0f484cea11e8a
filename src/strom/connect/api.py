"""The connector and task API, Python counterparts of Kafka Connect's
org.apache.kafka.connect.connector / source / sink classes.

A connector implements `SourceConnector` or `SinkConnector` and names its task class; the worker
starts `task_configs(max_tasks)` tasks of that class. Task methods may be plain or `async def`:
the worker awaits whatever is awaitable (`poll`, `put`, `flush`, `pre_commit`, `commit`,
`commit_record`, `start`, `stop`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from strom.connect.config import ConfigDef, ConfigValue
    from strom.connect.records import SinkRecord, SourceRecord

T = TypeVar("T")


async def maybe_await(value: T | Awaitable[T]) -> T:
    """`value`, awaited if a task method returned an awaitable (an `async def` method)."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True)
class RecordMetadata:
    """What `SourceTask.commit_record` receives about the record as written."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


# ---------------------------------------------------------------------------------------------
# Contexts


class ConnectorContext(ABC):
    @abstractmethod
    def request_task_reconfiguration(self) -> None:
        """Ask the runtime to call `task_configs` again and restart the tasks with the result."""

    @abstractmethod
    def raise_error(self, error: BaseException) -> None:
        """Fail the connector (its status becomes FAILED with this error's trace)."""


class OffsetStorageReader(ABC):
    @abstractmethod
    def offset(self, partition: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The last committed source offset of `partition`, or None."""

    def offsets(self, partitions: Sequence[Mapping[str, Any]]
                ) -> dict[tuple[tuple[str, Any], ...], Mapping[str, Any] | None]:
        return {tuple(sorted(p.items())): self.offset(p) for p in partitions}


class TransactionContext(ABC):
    """KIP-618: how a source task with `transaction.boundary=connector` defines its
    transactions (exactly-once source support on the worker)."""

    @abstractmethod
    def commit_transaction(self, record: SourceRecord | None = None) -> None:
        """Commit the transaction after `record` is sent, or (no record) after the records of
        the current poll() batch."""

    @abstractmethod
    def abort_transaction(self, record: SourceRecord | None = None) -> None:
        """Abort the transaction after `record` is sent (it and the records before it in the
        transaction are dropped), or (no record) after the current poll() batch. The offsets
        of the dropped records are still committed, as Kafka's."""


class SourceTaskContext(ABC):
    @abstractmethod
    def offset_storage_reader(self) -> OffsetStorageReader: ...

    def configs(self) -> Mapping[str, str]:
        return {}

    def transaction_context(self) -> TransactionContext | None:
        """The transaction context when the connector defines its own transaction boundaries
        (exactly-once source support and `transaction.boundary=connector`), else None."""
        return None


class ErrantRecordReporter(Protocol):
    def report(self, record: SinkRecord, error: BaseException) -> Any: ...


class SinkTaskContext(ABC):
    @abstractmethod
    def offset(self, offsets: Mapping[TopicPartition, int] | TopicPartition,
               offset: int | None = None) -> None:
        """Reset the consumer position of partitions (Kafka's two overloads)."""

    @abstractmethod
    def timeout(self, timeout_ms: int) -> None:
        """Redeliver the current batch after `timeout_ms` (`put` raised RetriableException)."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]: ...

    @abstractmethod
    def pause(self, *partitions: TopicPartition) -> None: ...

    @abstractmethod
    def resume(self, *partitions: TopicPartition) -> None: ...

    @abstractmethod
    def request_commit(self) -> None: ...

    @abstractmethod
    def errant_record_reporter(self) -> ErrantRecordReporter | None: ...

    def configs(self) -> Mapping[str, str]:
        return {}


# ---------------------------------------------------------------------------------------------
# Connectors and tasks


class Task(ABC):
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def start(self, props: Mapping[str, str]) -> Any: ...

    @abstractmethod
    def stop(self) -> Any: ...


class Connector(ABC):
    context: ConnectorContext | None = None

    def initialize(self, context: ConnectorContext,
                   task_configs: Sequence[Mapping[str, str]] | None = None) -> None:
        self.context = context

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def start(self, props: Mapping[str, str]) -> Any: ...

    @abstractmethod
    def task_class(self) -> type[Task]: ...

    @abstractmethod
    def task_configs(self, max_tasks: int) -> list[dict[str, str]]: ...

    @abstractmethod
    def stop(self) -> Any: ...

    def config(self) -> ConfigDef:
        """This connector's own settings (the worker adds the common ones: name, tasks.max...)."""
        from strom.connect.config import ConfigDef
        return ConfigDef()

    def validate(self, connector_configs: Mapping[str, str]) -> list[ConfigValue]:
        """Kafka's Connector.validate: each defined setting's value and errors."""
        return list(self.config().validate(dict(connector_configs)))

    def connector_type(self) -> str:
        raise NotImplementedError


class SourceTask(Task):
    context: SourceTaskContext | None = None

    def initialize(self, context: SourceTaskContext) -> None:
        self.context = context

    @abstractmethod
    def poll(self) -> list[SourceRecord] | Awaitable[list[SourceRecord] | None] | None:
        """New records, or None/[] when there are none yet (may be `async def`)."""

    def commit(self) -> Any:
        """Called after the offsets of the records polled so far were committed."""
        return None

    def commit_record(self, record: SourceRecord, metadata: RecordMetadata | None) -> Any:
        """Called for each record once it is acknowledged (metadata None when a transform
        dropped it or it was skipped as an error)."""
        return None


class SinkTask(Task):
    context: SinkTaskContext | None = None

    def initialize(self, context: SinkTaskContext) -> None:
        self.context = context

    @abstractmethod
    def put(self, records: Sequence[SinkRecord]) -> Any: ...

    def flush(self, current_offsets: Mapping[TopicPartition, int]) -> Any:
        return None

    def pre_commit(self, current_offsets: Mapping[TopicPartition, int]
                   ) -> Mapping[TopicPartition, int] | Awaitable[Mapping[TopicPartition, int]]:
        """The offsets safe to commit (by default: flush, then all of `current_offsets`).
        Offsets are those of the next record to consume, as Kafka's."""
        result = self.flush(current_offsets)
        if inspect.isawaitable(result):
            async def flushed() -> Mapping[TopicPartition, int]:
                await result
                return current_offsets
            return flushed()
        return current_offsets

    def open(self, partitions: Sequence[TopicPartition]) -> Any:
        return None

    def close(self, partitions: Sequence[TopicPartition]) -> Any:
        return None


class SourceConnector(Connector):
    def connector_type(self) -> str:
        return "source"

    def exactly_once_support(self) -> str | None:
        """KIP-618: "SUPPORTED", "UNSUPPORTED" or None (unknown) for this connector's
        configuration; `exactly.once.support=required` needs "SUPPORTED"."""
        return None

    def can_define_transaction_boundaries(self) -> str:
        """KIP-618: "SUPPORTED" when its tasks use the TransactionContext
        (`transaction.boundary=connector`); "UNSUPPORTED" by default."""
        return "UNSUPPORTED"


class SinkConnector(Connector):
    def connector_type(self) -> str:
        return "sink"

    # Kafka's sink connectors take their topics from the common `topics` / `topics.regex`.
