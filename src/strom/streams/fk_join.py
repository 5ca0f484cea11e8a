"""Foreign-key table-table joins (KIP-213: Kafka's foreignkeyjoin package).

A left row (k, v) joins the right row whose key is `foreign_key_extractor(v)`. The two tables
are partitioned by different keys, so the join talks through two internal topics:

1. Each change of a left row sends *subscriptions* keyed by foreign key to
   `<app>-<name>-subscription-registration-topic` (co-partitioned with the right table): the
   left key, the left partition, a hash of the new left value and an instruction (unsubscribe
   quietly, unsubscribe and answer, answer even without a right row, answer only with one).
2. The right side keeps the subscriptions in a store keyed by (foreign key, left key), looks up
   the right row and answers through `<app>-<name>-subscription-response-topic`, to the left
   row's partition; a change of a right row answers every subscription to its key.
3. The left side compares the answer's hash with the hash of the left row's *current* value:
   an answer about a value the row no longer has is stale and dropped (counted in `stale`);
   otherwise it emits `joiner(left, right)`, or a tombstone when there is no right row (inner
   join) or no left row. A left join answers every left row, with None for a missing right row
   or a None foreign key; an inner join drops a row whose foreign key is None.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from strom.streams.aggregate import TableSourceProcessor
from strom.streams.fk_messages import (
    Instruction,
    Subscription,
    SubscriptionResponse,
    SubscriptionResponseSerde,
    SubscriptionSerde,
    value_hash,
)
from strom.streams.joins import copartition
from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Record
from strom.streams.serdes import BYTES, Serde
from strom.streams.stores.api import serialized
from strom.streams.stores.kv import KeyValueStoreBuilder, TimestampedKeyValueStore
from strom.streams.stream_join import ValueJoiner
from strom.streams.table_joins import TableJoinResult, materialized_store, store_builder
from strom.streams.topology import InternalTopic

if TYPE_CHECKING:
    from strom.streams.dsl import KTable, Materialized

log = logging.getLogger(__name__)

ForeignKeyExtractor = Callable[[Any], Any]  # left value -> right key

_LEN: Final = struct.Struct(">I")  # subscription store keys: foreign key length, key, left key


def _or_none(serde: Serde[Any], topic: str, value: Any) -> bytes | None:
    return None if value is None else serialized(serde, topic, value)


class SubscriptionSendProcessor(Processor):
    """Left side: each change of a left row becomes subscriptions keyed by foreign key
    (Kafka's SubscriptionSendProcessorSupplier)."""

    def __init__(self, left_store: str, extractor: ForeignKeyExtractor,
                 foreign_key_serde: Serde[Any] | None, left_join: bool) -> None:
        self.left_store = left_store
        self.extractor = extractor
        self.given_foreign_key_serde = foreign_key_serde
        self.left_join = left_join
        self.dropped = 0  # inner join: rows whose foreign key is None

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.left_store, TimestampedKeyValueStore)
        self.foreign_key_serde = self.given_foreign_key_serde or context.key_serde

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        old, new = record.value.old, record.value.new
        old_fk = None if old is None else self._foreign_key(old)
        new_fk = None if new is None else self._foreign_key(new)
        digest = value_hash(self.store.value_serde, self.left_store, new)
        send = [] if self.left_join else self._inner(old_fk, new_fk, new is not None)
        if self.left_join and (old is not None or new is not None):
            if old_fk is not None and old_fk != new_fk:  # the old subscription is elsewhere
                send.append((old_fk, Instruction.DELETE_KEY_NO_PROPAGATE))
            send.append((new_fk, Instruction.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        meta = self.context.record_metadata
        primary_key = serialized(self.store.key_serde, self.left_store, record.key)
        for foreign_key, instruction in send:
            self.context.forward(Record(foreign_key, Subscription(
                digest, instruction, primary_key, meta.partition if meta else -1),
                record.timestamp, record.headers))

    def _foreign_key(self, value: Any) -> bytes | None:
        return _or_none(self.foreign_key_serde, self.left_store, self.extractor(value))

    def _inner(self, old_fk: bytes | None, new_fk: bytes | None, has_new: bool
               ) -> list[tuple[bytes | None, Instruction]]:
        if not has_new:  # deleted: the result goes
            return [] if old_fk is None else [(old_fk, Instruction.DELETE_KEY_AND_PROPAGATE)]
        if new_fk is None:
            self.dropped += 1
            log.warning("foreign-key join: skipping a row whose foreign key is None at %s",
                        self.context.record_metadata)
            return [] if old_fk is None else [(old_fk, Instruction.DELETE_KEY_AND_PROPAGATE)]
        if old_fk is None or old_fk == new_fk:  # a new row, or the same foreign key
            return [(new_fk, Instruction.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE)]
        return [(old_fk, Instruction.DELETE_KEY_NO_PROPAGATE),
                (new_fk, Instruction.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE)]


class _RightSideProcessor(Processor):
    """A processor of the right side, with the subscription store and the right table's."""

    def __init__(self, subscription_store: str, right_store: str) -> None:
        self.subscription_store = subscription_store
        self.right_store = right_store

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.subscriptions = typed_store(context, self.subscription_store,
                                         TimestampedKeyValueStore)
        self.right = typed_store(context, self.right_store, TimestampedKeyValueStore)


class SubscriptionReceiveProcessor(_RightSideProcessor):
    """Right side: keeps (or forgets) each subscription and answers it as its instruction says
    (Kafka's SubscriptionReceiveProcessorSupplier and SubscriptionJoinProcessorSupplier)."""

    def process(self, record: Record) -> None:
        foreign_key, subscription = record.key, record.value
        instruction = subscription.instruction
        found = None
        if foreign_key is not None:
            key = _LEN.pack(len(foreign_key)) + foreign_key + subscription.primary_key
            if instruction in (Instruction.DELETE_KEY_NO_PROPAGATE,
                               Instruction.DELETE_KEY_AND_PROPAGATE):
                self.subscriptions.delete(key, record.timestamp)
            else:
                self.subscriptions.put(key, subscription, record.timestamp)
            right = self.right
            found = right.get_with_timestamp(right.key_serde.deserialize(right.name, foreign_key))
        if instruction is Instruction.DELETE_KEY_NO_PROPAGATE or (
                found is None and instruction is Instruction.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE):
            return
        value = None if instruction is Instruction.DELETE_KEY_AND_PROPAGATE or found is None \
            else serialized(self.right.value_serde, self.right_store, found[0])
        self.context.forward(Record(
            subscription.primary_key,
            SubscriptionResponse(subscription.value_hash, value, subscription.primary_partition),
            record.timestamp if found is None else max(record.timestamp, found[1])))


class ForeignTableJoinProcessor(_RightSideProcessor):
    """Right side: a change of a right row answers every subscription to its key (Kafka's
    ForeignTableJoinProcessorSupplier), at the change's timestamp."""

    def __init__(self, subscription_store: str, right_store: str) -> None:
        super().__init__(subscription_store, right_store)
        self.dropped = 0

    def process(self, record: Record) -> None:
        if record.key is None:
            self.dropped += 1
            return
        foreign_key = serialized(self.right.key_serde, self.right_store, record.key)
        prefix = _LEN.pack(len(foreign_key)) + foreign_key
        value = _or_none(self.right.value_serde, self.right_store, record.value.new)
        for key, subscription in self.subscriptions.range(prefix):
            if not key.startswith(prefix):
                break
            self.context.forward(Record(key[len(prefix):], SubscriptionResponse(
                subscription.value_hash, value, subscription.primary_partition),
                record.timestamp, record.headers))


class ResponseJoinProcessor(Processor):
    """Left side: joins an answer with the left row's current value, unless the answer is
    stale (Kafka's ResponseJoinProcessorSupplier)."""

    def __init__(self, left_store: str, right_value_serde: Serde[Any] | None,
                 joiner: ValueJoiner, left_join: bool) -> None:
        self.left_store = left_store
        self.given_right_value_serde = right_value_serde
        self.joiner = joiner
        self.left_join = left_join
        self.stale = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.left_store, TimestampedKeyValueStore)
        self.right_value_serde = self.given_right_value_serde or context.value_serde

    def process(self, record: Record) -> None:
        response = record.value
        key = self.store.key_serde.deserialize(self.left_store, record.key)
        current = self.store.get(key)
        if response.value_hash != value_hash(self.store.value_serde, self.left_store, current):
            self.stale += 1
            return
        if response.foreign_value is None and (not self.left_join or current is None):
            result = None
        else:
            right = None if response.foreign_value is None else \
                self.right_value_serde.deserialize(self.left_store, response.foreign_value)
            result = self.joiner(current, right)
        self.context.forward(Record(key, result, record.timestamp))


def _response_partition(topic: str, key: Any, value: Any, count: int) -> int | None:
    return value.primary_partition if value.primary_partition >= 0 else None


def _serdes(table_store: KeyValueStoreBuilder | Any) -> tuple[Serde[Any] | None,
                                                                Serde[Any] | None]:
    assert isinstance(table_store, KeyValueStoreBuilder)
    return table_store.key_serde, table_store.value_serde


def foreign_key_join(left: KTable, right: KTable, foreign_key_extractor: ForeignKeyExtractor,
                     joiner: ValueJoiner, materialized: Materialized | None = None,
                     named: str | None = None, *, left_join: bool) -> TableJoinResult:
    """Adds a foreign-key join of two tables (`named` names its internal topics, stores and
    processors); returns where its results come from."""
    extractor = foreign_key_extractor
    builder, topology = left.builder, left.builder.topology
    left_store, right_store = materialized_store(left), materialized_store(right)
    right_key_serde, right_value_serde = _serdes(topology.stores[right_store])

    def name(suffix: str, prefix: str) -> str:
        return f"{named}-{suffix}" if named else builder.new_name(prefix)

    registration = name("subscription-registration", "KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-")
    response = name("subscription-response", "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-")
    subscription_store = name("subscription-store", "KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE-")
    receive = name("subscription-receive", "KTABLE-FK-JOIN-SUBSCRIPTION-PROCESSOR-")
    foreign = name("foreign-table-join", "KTABLE-FK-JOIN-SUBSCRIPTION-PROCESSOR-")
    resolve = name("response-join", "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-RESOLVER-PROCESSOR-")
    output = name("output", "KTABLE-FK-JOIN-OUTPUT-")
    for topic in (f"{registration}-topic", f"{response}-topic"):
        topology.add_internal_topic(InternalTopic(topic, "repartition"))

    topology.add_processor(registration, lambda: SubscriptionSendProcessor(
        left_store, extractor, right_key_serde, left_join), left.node)
    topology.connect_processor_and_state_stores(registration, stores=[left_store])
    topology.add_sink(f"{registration}-sink", f"{registration}-topic", registration,
                      key_serde=BYTES, value_serde=SubscriptionSerde())
    topology.add_source(f"{registration}-source", f"{registration}-topic", key_serde=BYTES,
                        value_serde=SubscriptionSerde())
    topology.add_processor(receive, lambda: SubscriptionReceiveProcessor(
        subscription_store, right_store), f"{registration}-source")
    topology.add_state_store(KeyValueStoreBuilder(
        subscription_store, BYTES, SubscriptionSerde(), timestamped=True), receive)
    topology.connect_processor_and_state_stores(receive, stores=[right_store])
    topology.add_processor(foreign, lambda: ForeignTableJoinProcessor(
        subscription_store, right_store), right.node)
    topology.connect_processor_and_state_stores(foreign,
                                                stores=[subscription_store, right_store])
    topology.add_sink(f"{response}-sink", f"{response}-topic", receive, foreign,
                      key_serde=BYTES, value_serde=SubscriptionResponseSerde(),
                      partitioner=_response_partition)
    topology.add_source(f"{response}-source", f"{response}-topic", key_serde=BYTES,
                        value_serde=SubscriptionResponseSerde())
    topology.add_processor(resolve, lambda: ResponseJoinProcessor(
        left_store, right_value_serde, joiner, left_join), f"{response}-source")
    topology.connect_processor_and_state_stores(resolve, stores=[left_store])

    store = None
    if materialized is not None:
        store = materialized.name or builder.new_name("KTABLE-FK-JOIN-OUTPUT-STATE-STORE-")
    topology.add_processor(output, lambda: TableSourceProcessor(store), resolve)
    key_serde = (materialized and materialized.key_serde) or left.key_serde
    if store is not None:
        topology.add_state_store(store_builder(store, materialized, key_serde, None), output)
    copartition(topology, f"{registration}-source", right.node)
    copartition(topology, f"{response}-source", left.node)
    return TableJoinResult(output, store, key_serde,
                           materialized.value_serde if materialized else None)
