"""MemoryPartitionLog: one partition's batches in a Python list, for tests and notebooks.

Batches are kept as received (the base offset and partition leader epoch set at append), in
offset order; compaction may leave gaps between them, as Kafka's log has. Every change
happens in a synchronous stretch, so an append is atomic and `produce` checks and appends
with nothing in between (strom.storage.producer_checks).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from strom.config.topic import LogConfig
from strom.protocol.batch_header import BatchHeader, read_batch_header
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    OffsetOutOfRange,
    PartitionOffsets,
    Placed,
    ProduceOutcome,
    ReadResult,
    UnknownTopic,
)
from strom.storage.batch_offsets import with_offsets
from strom.storage.local.retention import (
    count_size_breached,
    deletes_by_policy,
    retention_ms_breached,
)
from strom.storage.local.timestamps import batch_first_at_or_after
from strom.storage.producer_checks import append_checked_marker, checked_append
from strom.storage.producer_state import ProducerStateManager, VerificationGuard


class MemoryPartitionLog:
    def __init__(self, topic: str, partition: int, config: LogConfig,
                 producer_id_expiration_ms: int, appended: Callable[[str, int], None]) -> None:
        self.topic = topic
        self.partition = partition
        self.config = config
        self.batches: list[bytes] = []
        self.headers: list[BatchHeader] = []
        self._lasts: list[int] = []  # each batch's last offset, for bisecting
        self._log_start = 0
        self._log_end = 0
        self._producer_state = ProducerStateManager(producer_id_expiration_ms)
        self._appended = appended
        self.appended_records = 0  # strom.storage.api.PartitionLog
        self.appended_bytes = 0
        self.closed = False

    # -- state -----------------------------------------------------------------------------

    @property
    def producer_state(self) -> ProducerStateManager:
        return self._producer_state

    @property
    def log_end_offset(self) -> int:
        return self._log_end

    @property
    def size_bytes(self) -> int:
        return sum(len(b) for b in self.batches)

    def _last_stable(self) -> int:
        first_unstable = self._producer_state.first_unstable_offset()
        if first_unstable is None:
            return self._log_end
        return min(max(first_unstable, self._log_start), self._log_end)

    async def offsets(self) -> PartitionOffsets:
        return PartitionOffsets(self._log_start, self._log_end, self._last_stable(),
                                self._log_end)

    def _check_open(self) -> None:
        if self.closed:
            raise UnknownTopic(f"{self.topic}-{self.partition} was deleted or closed")

    # -- appends ---------------------------------------------------------------------------

    async def produce(self, batches: Sequence[AppendBatch],
                      verification: VerificationGuard | None = None,
                      placed: Placed | None = None) -> ProduceOutcome:
        self._check_open()
        return await checked_append(self, batches, verification, placed)

    async def append(self, batches: Sequence[AppendBatch],
                     placed: Placed | None = None) -> AppendResult:
        self._check_open()
        base = self._log_end
        if not batches:
            return AppendResult(base, base - 1, self._log_start)
        offset = base
        size = 0
        for data, header, kind in with_offsets(batches, base):
            size += len(data)
            self.batches.append(data)
            self.headers.append(header)
            self._lasts.append(header.last_offset)
            self._producer_state.apply_batch(header, kind)
            offset = header.last_offset + 1
        self._log_end = offset
        self.appended_records += offset - base
        self.appended_bytes += size
        if placed is not None:
            placed()
        self._appended(self.topic, self.partition)
        return AppendResult(base, offset - 1, self._log_start)

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        self._check_open()
        return await append_checked_marker(self, producer_id, producer_epoch, commit,
                                           coordinator_epoch)

    async def wait_durable(self, offset: int) -> None:
        self._check_open()  # memory is as durable as it gets

    # -- reads -----------------------------------------------------------------------------

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        self._check_open()
        if not self._log_start <= offset <= self._log_end:
            raise OffsetOutOfRange(f"offset {offset} is outside [{self._log_start}, "
                                   f"{self._log_end}] in {self.topic}-{self.partition}")
        stable = self._last_stable()
        limit = stable if committed else self._log_end
        chunks: list[bytes] = []
        total = 0
        for i in range(bisect_left(self._lasts, offset), len(self.batches)):
            batch = self.batches[i]
            if self.headers[i].base_offset >= limit:
                break
            if total + len(batch) > max_bytes and (chunks or not min_one_batch):
                break
            chunks.append(batch)
            total += len(batch)
        return ReadResult(chunks, total, self._log_end, self._log_start, stable)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        return self._producer_state.aborted_transactions(fetch_offset, upper_bound)

    async def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        self._check_open()
        for i in range(bisect_left(self._lasts, self._log_start), len(self.batches)):
            h = self.headers[i]
            if h.max_timestamp < timestamp_ms:
                continue
            found = batch_first_at_or_after(h, self.batches[i], timestamp_ms, self._log_start)
            if found is not None:
                return found
        return None

    async def max_timestamp(self) -> tuple[int, int] | None:
        self._check_open()
        best: tuple[int, int] | None = None  # (timestamp, offset)
        for i in range(bisect_left(self._lasts, self._log_start), len(self.batches)):
            h = self.headers[i]
            if h.max_timestamp >= 0 and (best is None or h.max_timestamp > best[0]):
                found = batch_first_at_or_after(h, self.batches[i], h.max_timestamp,
                                           self._log_start)
                best = (h.max_timestamp, h.base_offset if found is None else found[0])
        return None if best is None else (best[1], best[0])

    # -- log start, retention --------------------------------------------------------------

    async def delete_records_before(self, offset: int) -> int:
        self._check_open()
        if offset == -1:  # Kafka's DeleteRecords: -1 means the high watermark
            offset = self._log_end
        if offset < 0 or offset > self._log_end:
            raise OffsetOutOfRange(f"cannot delete records before {offset}: the log ends at "
                                   f"{self._log_end} in {self.topic}-{self.partition}")
        self._advance_log_start(offset)
        return self._log_start

    def _advance_log_start(self, offset: int) -> None:
        if offset <= self._log_start:
            return
        self._log_start = offset
        cut = bisect_left(self._lasts, offset)  # batches wholly below the new start go
        del self.batches[:cut], self.headers[:cut], self._lasts[:cut]
        self._producer_state.prune_aborted(offset)

    def run_retention(self, now: int) -> int:
        """Drops the oldest batches past retention.ms / retention.bytes, never the newest
        (as Kafka never deletes the active segment); returns how many."""
        if self.closed or not deletes_by_policy(self.config.cleanup_policy):
            return 0
        self._producer_state.expire(now)
        by_size = count_size_breached([len(b) for b in self.batches],
                                      self.config.retention_bytes)
        by_time = 0
        retention_ms = self.config.retention_ms
        while (retention_ms >= 0 and by_time < len(self.batches) - 1
               and retention_ms_breached(self.headers[by_time].max_timestamp, now,
                                         retention_ms)):
            by_time += 1
        count = min(max(by_size, by_time), len(self.batches) - 1)
        if count > 0:
            self._advance_log_start(self.headers[count].base_offset)
        return max(count, 0)

    def replace_batches(self, kept: list[bytes]) -> None:
        """The compactor's result: every batch of the log, in offset order."""
        headers = [read_batch_header(b) for b in kept]
        self.batches, self.headers = kept, headers
        self._lasts = [h.last_offset for h in headers]

