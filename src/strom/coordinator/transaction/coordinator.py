"""The transaction coordinator core: Kafka's TransactionCoordinator and TransactionStateManager
without I/O, with transaction version 2 (KIP-890 part 2) semantics.

Every call takes the request and `now_ms` and returns a `Step` (see `model.py` for how a shell
delivers one). Rules worth knowing:

* every end of a transaction bumps the producer epoch: a client EndTxn answers with the new
  epoch; an abort the coordinator starts itself (transaction timeout, InitProducerId meeting an
  Ongoing transaction) bumps it too and so fences the producer that was running it;
* markers carry the bumped epoch; the state becomes CompleteCommit/CompleteAbort when the shell
  reports them written (`markers_written`); until then requests get CONCURRENT_TRANSACTIONS;
* an epoch at Short.MAX - 1 is exhausted: the transaction that uses it up moves the
  transactional id to a freshly allocated producer id at epoch 0;
* a lost EndTxn answer may be retried with the epoch before the bump and gets the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from kio.schema.errors import ErrorCode

from strom.coordinator.hashing import partition_for
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.coordinator.log_codec import LogFormatError
from strom.coordinator.transaction import rules
from strom.coordinator.transaction.log_format import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from strom.coordinator.transaction.metadata import TransactionMetadata, is_epoch_exhausted
from strom.coordinator.transaction.model import (
    IDLE_STATES,
    INT16_MAX,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PREPARE_STATES,
    AddPartitionsResult,
    EndTxnResult,
    InitProducerIdResult,
    MarkerBatch,
    ProducerIdUnavailable,
    Step,
    TopicPartition,
    TransactionConfig,
    TransactionCounts,
    TransactionDescription,
    TransactionListing,
    TransactionSnapshot,
    TxnLogRecord,
    TxnState,
    failed,
)

T = TypeVar("T")


class TransactionCoordinator:
    def __init__(self, config: TransactionConfig, counts: TransactionCounts | None = None
                 ) -> None:
        """`counts`: where ended transactions are counted (the broker's, shared by its
        cores; a core of its own if not given)."""
        self.config = config
        self.counts = counts or TransactionCounts()
        self._txns: dict[str, TransactionMetadata] = {}
        self._records: list[TxnLogRecord] = []
        self._markers: list[MarkerBatch] = []
        self._loaded: set[str] = set()  # replayed in Prepare*: markers must be written again

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.config.transaction_state_partitions)

    # -- InitProducerId -------------------------------------------------------------------

    def init_producer_id(self, transactional_id: str, txn_timeout_ms: int,
                         producer_id: int = NO_PRODUCER_ID,
                         producer_epoch: int = NO_PRODUCER_EPOCH, now_ms: int = 0,
                         ) -> Step[InitProducerIdResult]:
        """InitProducerId of a transactional producer; `producer_id`/`producer_epoch` are the
        ones it had (KIP-360, v3+) or -1. An Ongoing transaction is aborted first and the
        client is told CONCURRENT_TRANSACTIONS, to retry once the abort completes."""
        if not transactional_id:
            return self._step(InitProducerIdResult(ErrorCode.invalid_request))
        if not 0 < txn_timeout_ms <= self.config.transaction_max_timeout_ms:
            return self._step(InitProducerIdResult(ErrorCode.invalid_transaction_timeout))
        meta = self._txns.get(transactional_id)
        try:
            if meta is None:
                meta = TransactionMetadata(transactional_id, self._allocate(), NO_PRODUCER_EPOCH,
                                           txn_timeout_ms, TxnState.EMPTY, now_ms)
            return self._step(self._init(meta, txn_timeout_ms, producer_id, producer_epoch,
                                         now_ms))
        except ProducerIdUnavailable:
            return self._step(InitProducerIdResult(ErrorCode.coordinator_load_in_progress))

    def _init(self, meta: TransactionMetadata, txn_timeout_ms: int, producer_id: int,
              producer_epoch: int, now_ms: int) -> InitProducerIdResult:
        expected = producer_id != NO_PRODUCER_ID
        if expected and not rules.valid_expected_producer(meta, producer_id, producer_epoch):
            return InitProducerIdResult(ErrorCode.producer_fenced)
        if meta.state in PREPARE_STATES:
            return InitProducerIdResult(ErrorCode.concurrent_transactions)
        if meta.state is TxnState.ONGOING:
            self._fence_and_abort(meta, now_ms)
            return InitProducerIdResult(ErrorCode.concurrent_transactions)
        assert meta.state in IDLE_STATES, meta.state
        if is_epoch_exhausted(meta.producer_epoch):
            new_id = self._allocate()
            meta.previous_producer_id, meta.producer_id = meta.producer_id, new_id
            meta.last_producer_epoch = meta.producer_epoch if expected else NO_PRODUCER_EPOCH
            meta.producer_epoch = 0
        elif not expected:
            meta.producer_epoch, meta.last_producer_epoch = meta.producer_epoch + 1, -1
        elif producer_epoch == meta.producer_epoch or meta.producer_epoch == NO_PRODUCER_EPOCH:
            meta.last_producer_epoch = meta.producer_epoch
            meta.producer_epoch += 1
        elif producer_epoch != meta.last_producer_epoch:  # equal: a retry, answered again
            return InitProducerIdResult(ErrorCode.producer_fenced)
        meta.state, meta.txn_timeout_ms = TxnState.EMPTY, txn_timeout_ms
        meta.partitions.clear()
        meta.txn_start_timestamp_ms, meta.txn_last_update_timestamp_ms = -1, now_ms
        self._txns[meta.transactional_id] = meta
        self._persist(meta)
        return InitProducerIdResult(ErrorCode.none, meta.producer_id, meta.producer_epoch)

    # -- AddPartitionsToTxn / AddOffsetsToTxn ---------------------------------------------

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                       partitions: Sequence[TopicPartition], now_ms: int,
                       verify_only: bool = False) -> Step[AddPartitionsResult]:
        """AddPartitionsToTxn; `verify_only` (v4+, KIP-890 part 1) only checks that each
        partition is in the ongoing transaction (INVALID_TXN_STATE where not)."""
        wanted = tuple(dict.fromkeys(partitions))
        meta = self._txns.get(transactional_id)
        error = rules.check_producer(meta, producer_id, producer_epoch)
        if error is not None or meta is None:
            return self._step(failed(error or ErrorCode.invalid_producer_id_mapping, wanted))
        if verify_only:
            ongoing = meta.state is TxnState.ONGOING
            return self._step(AddPartitionsResult(ErrorCode.none, tuple(
                (t, p, ErrorCode.none if ongoing and (t, p) in meta.partitions
                 else ErrorCode.invalid_txn_state) for t, p in wanted)))
        if meta.state is not TxnState.ONGOING or not meta.partitions.issuperset(wanted):
            if meta.state is not TxnState.ONGOING:
                meta.state, meta.txn_start_timestamp_ms = TxnState.ONGOING, now_ms
            meta.partitions.update(wanted)
            meta.txn_last_update_timestamp_ms = now_ms
            self._persist(meta)
        return self._step(failed(ErrorCode.none, wanted))

    def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                    group_id: str, now_ms: int) -> Step[int]:
        """AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction."""
        partition = (OFFSETS_TOPIC, self.config.offsets_partition_for(group_id))
        step = self.add_partitions(transactional_id, producer_id, producer_epoch, (partition,),
                                   now_ms)
        return Step(step.result.error, step.records, step.markers)

    # -- EndTxn ---------------------------------------------------------------------------

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                commit: bool, now_ms: int, bump_epoch: bool = True) -> Step[EndTxnResult]:
        """EndTxn. `bump_epoch` is transaction version 2 (EndTxn v5+, KIP-890 part 2): the
        end bumps the epoch and the answer carries it. Without it (transaction version 1:
        clients that do not read the new epoch, such as librdkafka) the transaction ends at
        the epoch it ran with, as Kafka does for them."""
        meta = self._txns.get(transactional_id)
        if meta is None:
            return self._step(EndTxnResult(ErrorCode.invalid_producer_id_mapping))
        if not bump_epoch:
            return self._step(self._end_txn_v1(meta, producer_id, producer_epoch, commit,
                                               now_ms))
        retry = rules.is_retry(meta, producer_id, producer_epoch)
        if not retry:
            error = rules.check_producer(meta, producer_id, producer_epoch, allow_prepare=True)
            if error is not None:
                return self._step(EndTxnResult(error))
        error = rules.end_txn_error(meta.state, commit, retry)
        if error is not None:
            return self._step(EndTxnResult(error))
        if not retry:
            try:
                self._prepare_end(meta, commit, now_ms, client_epoch=producer_epoch)
            except ProducerIdUnavailable:
                return self._step(EndTxnResult(ErrorCode.coordinator_load_in_progress))
        view_id, view_epoch = rules.client_view(meta)
        return self._step(EndTxnResult(ErrorCode.none, view_id, view_epoch))

    def _end_txn_v1(self, meta: TransactionMetadata, producer_id: int, producer_epoch: int,
                    commit: bool, now_ms: int) -> EndTxnResult:
        """Kafka's endTransaction for transaction version 1: no bump; a retry after the end
        completed gets the same answer; an end with no transaction is INVALID_TXN_STATE."""
        error = rules.check_producer(meta, producer_id, producer_epoch, allow_prepare=True)
        if error is not None:
            return EndTxnResult(error)
        error = rules.end_txn_v1_error(meta.state, commit)
        if error is not None or meta.state is not TxnState.ONGOING:
            return EndTxnResult(error or ErrorCode.none, meta.producer_id, meta.producer_epoch)
        self._prepare_end(meta, commit, now_ms, client_epoch=producer_epoch, bump=False)
        return EndTxnResult(ErrorCode.none, meta.producer_id, meta.producer_epoch)

    def markers_written(self, transactional_id: str, producer_id: int, producer_epoch: int,
                        now_ms: int) -> Step[None]:
        """The shell wrote the markers of a `MarkerBatch`: the transaction completes. A report
        for a transaction that is no longer being completed is ignored."""
        meta = self._txns.get(transactional_id)
        if (meta is not None and meta.state in PREPARE_STATES
                and (meta.producer_id, meta.producer_epoch) == (producer_id, producer_epoch)):
            self._complete(meta, now_ms)
        return self._step(None)

    # -- admin ----------------------------------------------------------------------------

    def describe(self, transactional_ids: Iterable[str]) -> list[TransactionDescription]:
        out = []
        for transactional_id in transactional_ids:
            meta = self._txns.get(transactional_id)
            if meta is None:
                out.append(TransactionDescription(
                    transactional_id, ErrorCode.transactional_id_not_found, "", 0, -1,
                    NO_PRODUCER_ID, NO_PRODUCER_EPOCH, ()))
                continue
            value = meta.to_value()
            out.append(TransactionDescription(
                transactional_id, ErrorCode.none, meta.state.label, meta.txn_timeout_ms,
                meta.txn_start_timestamp_ms, meta.producer_id, meta.producer_epoch,
                value.partitions))
        return out

    def list_transactions(self, state_filters: Iterable[str] = (),
                          producer_id_filters: Iterable[int] = (),
                          duration_filter_ms: int = -1, now_ms: int = 0,
                          ) -> tuple[tuple[str, ...], list[TransactionListing]]:
        """(unknown state filters, matching transactions); empty filters match everything;
        `duration_filter_ms` >= 0 keeps transactions running longer than it (KIP-994)."""
        labels = tuple(state_filters)
        unknown = tuple(s for s in labels if TxnState.from_label(s) is None)
        states = {TxnState.from_label(s) for s in labels} - {None}
        producer_ids = set(producer_id_filters)
        listings = [
            TransactionListing(m.transactional_id, m.producer_id, m.state.label)
            for m in self._txns.values()
            if (not labels or m.state in states)
            and (not producer_ids or m.producer_id in producer_ids)
            and (duration_filter_ms < 0 or (m.state is TxnState.ONGOING and
                                            now_ms - m.txn_start_timestamp_ms
                                            > duration_filter_ms))]
        return unknown, listings

    def open_transactions(self) -> int:
        """Transactions under way: Ongoing, or ending (Prepare*: markers being written)."""
        return sum(1 for m in self._txns.values()
                   if m.state is TxnState.ONGOING or m.state in PREPARE_STATES)

    def snapshot(self) -> dict[str, TransactionSnapshot]:
        """Every transactional id's persisted state (for tests and tools)."""
        return {tid: meta.snapshot() for tid, meta in self._txns.items()}

    # -- time -----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Step[None]:
        """Writes again the markers of transactions loaded in Prepare*, aborts transactions
        past their timeout (fencing their producer) and expires idle transactional ids."""
        for transactional_id in sorted(self._loaded):
            meta = self._txns.get(transactional_id)
            if meta is not None and meta.state in PREPARE_STATES:
                self._request_markers(meta)
        self._loaded.clear()
        for meta in list(self._txns.values()):
            if (meta.state is TxnState.ONGOING
                    and meta.txn_start_timestamp_ms + meta.txn_timeout_ms < now_ms):
                try:
                    self._fence_and_abort(meta, now_ms)
                except ProducerIdUnavailable:
                    continue  # tried again at the next tick
                self.counts.timed_out += 1
            elif (meta.state in IDLE_STATES and meta.txn_last_update_timestamp_ms
                  + self.config.transactional_id_expiration_ms <= now_ms):
                del self._txns[meta.transactional_id]
                self._records.append(TxnLogRecord(self.partition_for(meta.transactional_id),
                                                  encode_key(meta.transactional_id), None))
        return self._step(None)

    def next_deadline_ms(self) -> int | None:
        """When `tick` next has work; a time not after now means "tick now"."""
        if self._loaded:
            return 0
        deadlines = []
        for meta in self._txns.values():
            if meta.state is TxnState.ONGOING:
                deadlines.append(meta.txn_start_timestamp_ms + meta.txn_timeout_ms + 1)
            elif meta.state in IDLE_STATES:
                deadlines.append(meta.txn_last_update_timestamp_ms
                                 + self.config.transactional_id_expiration_ms)
        return min(deadlines, default=None)

    # -- startup --------------------------------------------------------------------------

    def replay(self, record: TxnLogRecord) -> None:
        """Applies one `__transaction_state` record, in log order, before serving requests;
        raises LogFormatError for a record it cannot read."""
        transactional_id = decode_key(record.key)
        if record.value is None:
            self._txns.pop(transactional_id, None)
            self._loaded.discard(transactional_id)
            return
        value = decode_value(record.value)
        try:
            meta = TransactionMetadata.from_value(transactional_id, value)
        except ValueError as exc:
            raise LogFormatError(str(exc)) from None
        if meta.state is TxnState.DEAD:
            self._txns.pop(transactional_id, None)
        else:
            self._txns[transactional_id] = meta
        if meta.state in PREPARE_STATES:
            self._loaded.add(transactional_id)
        else:
            self._loaded.discard(transactional_id)

    # -- transitions ----------------------------------------------------------------------

    def _fence_and_abort(self, meta: TransactionMetadata, now_ms: int) -> None:
        """Kafka's prepareFenceProducerEpoch + abort: the bump fences the running producer."""
        self._prepare_end(meta, False, now_ms, client_epoch=None)

    def _prepare_end(self, meta: TransactionMetadata, commit: bool, now_ms: int,
                     client_epoch: int | None, bump: bool = True) -> None:
        """Ongoing (or, for an abort, idle) -> PrepareCommit/PrepareAbort with a bumped epoch
        (unless `bump` is off: a transaction version 1 client ending its transaction);
        straight on to Complete* when no partition needs a marker."""
        if bump:
            next_id = (self._allocate() if is_epoch_exhausted(meta.producer_epoch)
                       else NO_PRODUCER_ID)
            assert meta.producer_epoch < INT16_MAX, meta
            meta.producer_epoch += 1
            meta.last_producer_epoch = (NO_PRODUCER_EPOCH if client_epoch is None
                                        else client_epoch)
            meta.next_producer_id = next_id
        else:
            meta.last_producer_epoch = NO_PRODUCER_EPOCH
        meta.state = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        meta.txn_last_update_timestamp_ms = now_ms
        self._persist(meta)
        if meta.partitions:
            self._request_markers(meta)
        else:
            self._complete(meta, now_ms)

    def _complete(self, meta: TransactionMetadata, now_ms: int) -> None:
        commit = meta.state is TxnState.PREPARE_COMMIT
        if commit:
            self.counts.committed += 1
        else:
            self.counts.aborted += 1
        meta.state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        meta.partitions.clear()
        meta.txn_last_update_timestamp_ms = now_ms
        if meta.next_producer_id != NO_PRODUCER_ID:
            meta.previous_producer_id, meta.producer_id = meta.producer_id, meta.next_producer_id
            meta.producer_epoch, meta.next_producer_id = 0, NO_PRODUCER_ID
        self._persist(meta)

    def _request_markers(self, meta: TransactionMetadata) -> None:
        self._markers.append(MarkerBatch(
            meta.transactional_id, meta.producer_id, meta.producer_epoch,
            meta.state is TxnState.PREPARE_COMMIT, tuple(sorted(meta.partitions))))

    def _allocate(self) -> int:
        producer_id = self.config.allocate_producer_id()
        assert producer_id >= 0, producer_id
        return producer_id

    def _persist(self, meta: TransactionMetadata) -> None:
        self._records.append(TxnLogRecord(
            self.partition_for(meta.transactional_id), encode_key(meta.transactional_id),
            encode_value(meta.to_value())))

    def _step(self, result: T) -> Step[T]:
        step = Step(result, tuple(self._records), tuple(self._markers))
        self._records.clear()
        self._markers.clear()
        return step
