"""The schema registry's ids as the broker knows them, for validation on produce: read by the
broker itself from the `_schemas` topic (Confluent's record format, docs/registry.md).

Only what validation needs is kept: every registered version's (subject, version) -> (id,
soft-deleted), and per id its schema type, text and references. The `_schemas` records are
parsed here with the standard library (json) so that a broker whose topics validate nothing
imports nothing of the registry; parsing a schema (record names of Protobuf, the optional
decode check) imports `strom.registry.schemas` lazily (strom.broker.schema_decode).

Reading is read_committed, as the registry's own consumer reads: up to the last stable offset,
without the batches of aborted transactions (the registry may write in transactions), and
without control batches. `SchemaCatalog.refresh` reads what was appended since the last read;
`SchemaSource` is where the bytes come from (this broker's storage engine, or on a cluster
whose engine cannot read the partition here, its leader).

Soft-deleted versions: an id whose versions under a subject are all soft-deleted (or hard
deleted) is not registered under that subject, as in Confluent's validation; a soft-deleted
version's schema still serves the ids' other subjects and references.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol

from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.protocol.control_batch import ABORT
from strom.protocol.records import iter_records
from strom.storage.api import (
    NotLeader,
    OffsetOutOfRange,
    PartitionLog,
    StorageError,
    StorageUnavailable,
    UnknownTopic,
    batch_control_type,
    chunks_bytes,
)

log = logging.getLogger(__name__)

SCHEMAS_TOPIC: Final = "_schemas"
READ_CHUNK_BYTES: Final = 4 * 2**20
# A refresh that a miss (an unknown id, an id not under the subject) asks for waits until this
# long after the previous one: misses cost at most this many reads of `_schemas` per second.
MIN_REFRESH_INTERVAL_S: Final = 0.1
# Without misses, what validation knows is refreshed in the background this often (so that a
# soft delete is seen).
TAIL_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """One schema id: its type (AVRO, JSON, PROTOBUF), text and references (Confluent's
    JSON objects: name, subject, version)."""

    schema_id: int
    schema_type: str
    schema: str
    references: tuple[tuple[str, str, int], ...] = ()


# (key, value) of one committed `_schemas` record, and the offset after it.
RawRecord = tuple[bytes | None, bytes | None]


class SchemaSource(Protocol):
    """Where `_schemas` is read from."""

    async def read(self, start: int) -> tuple[list[RawRecord], int, bool]:
        """The committed records from `start` (clamped to the log start), the offset to read
        from next, and whether the log was reset under `start` (the topic was recreated, or
        `start` is past its end): the reader then starts over from 0."""
        ...


@dataclass
class SchemaCatalog:
    """The ids and subjects validation checks against, refreshed from a SchemaSource."""

    source: SchemaSource
    versions: dict[tuple[str, int], tuple[int, bool]] = field(default_factory=dict)
    schemas: dict[int, SchemaInfo] = field(default_factory=dict)
    next_offset: int = 0
    generation: int = 0  # bumped when anything changes: cached verdicts are dropped
    skipped: int = 0  # records not understood
    loaded: bool = False
    _subjects: dict[int, frozenset[str]] | None = None
    _last_refresh: float = 0.0
    _refreshing: asyncio.Task[None] | None = None
    _tail: asyncio.Task[None] | None = None
    clock: Callable[[], float] = time.monotonic

    # -- reading -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reads what `_schemas` gained since the last read; concurrent calls share one read."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.ensure_future(self._read())
        await asyncio.shield(task)

    async def _read(self) -> None:
        self._last_refresh = self.clock()
        records, next_offset, reset = await self.source.read(self.next_offset)
        if reset:
            self.versions.clear()
            self.schemas.clear()
            self._changed()
        self.apply_all(records)
        self.next_offset = next_offset
        self.loaded = True

    async def ensure_loaded(self) -> None:
        """Reads `_schemas` up to its last stable offset the first time; later, starts a
        background refresh when the last one is older than TAIL_INTERVAL_S."""
        if not self.loaded:
            await self.refresh()
        elif self.clock() - self._last_refresh >= TAIL_INTERVAL_S and (
                self._tail is None or self._tail.done()):
            self._tail = asyncio.ensure_future(self._background_refresh())

    async def _background_refresh(self) -> None:
        try:
            await self.refresh()
        except (StorageError, OSError) as exc:
            log.debug("reading %s for schema validation failed: %s", SCHEMAS_TOPIC, exc)

    async def refresh_after_miss(self) -> bool:
        """A refresh for an id validation did not find: not sooner than MIN_REFRESH_INTERVAL_S
        after the previous one (it waits for that). Answers whether anything changed."""
        generation = self.generation
        wait = self._last_refresh + MIN_REFRESH_INTERVAL_S - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
            if self.generation != generation:
                return True
        try:
            await self.refresh()
        except (StorageError, OSError) as exc:  # the verdict stands on what is known
            log.debug("reading %s for schema validation failed: %s", SCHEMAS_TOPIC, exc)
        return self.generation != generation

    async def close(self) -> None:
        for task in (self._refreshing, self._tail):
            if task is not None and not task.done():
                task.cancel()

    # -- applying records --------------------------------------------------------------------

    def apply_all(self, records: Iterable[RawRecord]) -> None:
        for key, value in records:
            self.apply(key, value)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One `_schemas` record; records this catalog does not need or understand are
        skipped (CONFIG, MODE, NOOP; malformed ones are counted in `skipped`)."""
        try:
            k = _json_object(key)
            keytype = k.get("keytype")
            if keytype == "SCHEMA":
                self._apply_schema(_text(k, "subject"), _integer(k, "version"), value)
            elif keytype == "DELETE_SUBJECT" and value is not None:
                v = _json_object(value)
                self._delete_subject(_text(v, "subject"), _integer(v, "version"))
            elif keytype == "CLEAR_SUBJECT" and value is not None:
                self._clear_subject(_text(_json_object(value), "subject"))
            elif keytype not in ("CONFIG", "MODE", "NOOP", "DELETE_SUBJECT", "CLEAR_SUBJECT"):
                self.skipped += 1
        except (ValueError, TypeError, KeyError):
            self.skipped += 1

    def _apply_schema(self, subject: str, version: int, value: bytes | None) -> None:
        if value is None:  # hard delete
            if self.versions.pop((subject, version), None) is not None:
                self._changed()
            return
        v = _json_object(value)
        schema_id = _integer(v, "id")
        refs = v.get("references") or []
        if not isinstance(refs, list):
            raise ValueError("references is not a list")
        references = tuple((_text(r, "name"), _text(r, "subject"), _integer(r, "version"))
                           for r in refs)
        if schema_id not in self.schemas:
            self.schemas[schema_id] = SchemaInfo(
                schema_id, str(v.get("schemaType") or "AVRO").upper(), _text(v, "schema"),
                references)
        self.versions[(subject, version)] = (schema_id, bool(v.get("deleted", False)))
        self._changed()

    def _delete_subject(self, subject: str, up_to: int) -> None:
        for (s, version), (schema_id, _) in list(self.versions.items()):
            if s == subject and version <= up_to:
                self.versions[(s, version)] = (schema_id, True)
        self._changed()

    def _clear_subject(self, subject: str) -> None:
        for key, (_, deleted) in list(self.versions.items()):
            if key[0] == subject and deleted:
                del self.versions[key]
        self._changed()

    def _changed(self) -> None:
        self._subjects = None
        self.generation += 1

    # -- lookups -----------------------------------------------------------------------------

    def subjects_of(self, schema_id: int) -> frozenset[str]:
        """The subjects with a live (not soft-deleted) version of `schema_id`."""
        if self._subjects is None:
            index: dict[int, set[str]] = {}
            for (subject, _), (sid, deleted) in self.versions.items():
                if not deleted:
                    index.setdefault(sid, set()).add(subject)
            self._subjects = {sid: frozenset(s) for sid, s in index.items()}
        return self._subjects.get(schema_id, frozenset())

    def version(self, subject: str, version: int) -> SchemaInfo | None:
        """The schema of a subject's version (-1: its latest live one), soft-deleted ones
        included (references may point at them)."""
        if version == -1:
            live = [v for (s, v), (_, deleted) in self.versions.items()
                    if s == subject and not deleted]
            if not live:
                return None
            version = max(live)
        found = self.versions.get((subject, version))
        return None if found is None else self.schemas.get(found[0])


def _json_object(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise ValueError("no JSON")
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _text(obj: Any, name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def _integer(obj: Any, name: str) -> int:
    value = obj[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} is not an integer")
    return value


# -- reading committed records from a partition log ------------------------------------------


def committed_records(data: bytes | bytearray | memoryview, start: int,
                      aborted: Sequence[tuple[int, int]]) -> Iterator[tuple[int, RawRecord]]:
    """(offset, (key, value)) of the data records at or after `start` in the whole batches of
    `data`, as a read_committed consumer sees them: a transactional batch of a producer with
    an aborted transaction (producer id, first offset) begun at or before it is dropped, up to
    that producer's ABORT marker; control batches are dropped."""
    pending = sorted(aborted, key=lambda a: a[1])
    active: set[int] = set()
    view = memoryview(data)
    pos = 0
    while pos + BATCH_HEADER_SIZE <= len(view):
        header = read_batch_header(view, pos)
        if pos + header.size > len(view):  # a fetch's partial last batch
            break
        batch = view[pos: pos + header.size]
        pos += header.size
        while pending and pending[0][1] <= header.base_offset:
            active.add(pending.pop(0)[0])
        control = batch_control_type(batch)
        if control is not None:
            if control == ABORT:
                active.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in active:
            continue
        if header.next_offset <= start:
            continue
        for record in iter_records(batch):
            offset = header.base_offset + record.offset_delta
            if offset >= start:
                yield offset, (record.key, record.value)


@dataclass
class LogSource:
    """`_schemas` partition 0 read from this broker's storage engine (`partition` raises
    UnknownTopic while the topic does not exist: nothing to read yet)."""

    partition: Callable[[], PartitionLog]

    async def read(self, start: int) -> tuple[list[RawRecord], int, bool]:
        try:
            plog = self.partition()
        except UnknownTopic:
            return [], 0, start > 0
        offsets = await plog.offsets()
        reset = start > offsets.log_end
        offset = 0 if reset else max(start, offsets.log_start)
        out: list[RawRecord] = []
        while offset < offsets.last_stable:
            try:
                result = await plog.read(offset, READ_CHUNK_BYTES, True, committed=True)
            except OffsetOutOfRange:  # retention or DeleteRecords moved the log start
                offset = (await plog.offsets()).log_start
                continue
            data = chunks_bytes(result.chunks)
            if not data:
                break
            aborted = plog.aborted_transactions(offset, result.last_stable_offset)
            out.extend(record for _, record in committed_records(data, offset, aborted))
            next_offset = _end_of_batches(data)
            if next_offset <= offset:
                break
            offset = next_offset
        return out, offset, reset


def _end_of_batches(data: bytes) -> int:
    """The offset after the last whole batch of `data`."""
    view = memoryview(data)
    pos, end = 0, -1
    while pos + BATCH_HEADER_SIZE <= len(view):
        header = read_batch_header(view, pos)
        if pos + header.size > len(view):
            break
        pos += header.size
        end = header.next_offset
    return end


# Fetch (1) in versions 4..12 (topics by name, isolation level).
FETCH_KEY: Final = 1
FETCH_VERSIONS: Final = (4, 12)
READ_COMMITTED: Final = 1


@dataclass
class PeerSource:
    """`_schemas` read from this broker's engine, or, where the engine cannot read it here
    (on PostgreSQL only the partition's leader knows its high watermark and transactions), with
    a read_committed Fetch from its leader over the peers' connections."""

    local: LogSource
    leader: Callable[[], int | None]  # the leader of `_schemas`-0, None if unknown
    fetch: Callable[[int, int], Awaitable[Any]]  # (leader, offset) -> a Fetch answer

    async def read(self, start: int) -> tuple[list[RawRecord], int, bool]:
        try:
            return await self.local.read(start)
        except NotLeader:
            pass
        leader = self.leader()
        if leader is None:
            raise StorageUnavailable(f"{SCHEMAS_TOPIC} has no leader")
        out: list[RawRecord] = []
        offset = start
        reset = False
        while True:
            answer = await self.fetch(leader, offset)
            part = next((p for t in answer.responses for p in t.partitions
                         if t.topic == SCHEMAS_TOPIC and p.partition_index == 0), None)
            if part is None or part.error_code == 3:  # UNKNOWN_TOPIC_OR_PARTITION
                return [], 0, start > 0
            if part.error_code == 1:  # OFFSET_OUT_OF_RANGE: recreated, or trimmed
                if offset == 0:
                    raise StorageUnavailable(f"fetching {SCHEMAS_TOPIC}: offset out of range")
                offset, out, reset = 0, [], True
                continue
            if part.error_code != 0:
                raise StorageUnavailable(f"fetching {SCHEMAS_TOPIC} from node {leader}: "
                                         f"error {part.error_code}")
            data = part.records or b""
            aborted = [(int(a.producer_id), int(a.first_offset))
                       for a in (part.aborted_transactions or ())]
            out.extend(record for _, record in committed_records(data, offset, aborted))
            next_offset = _end_of_batches(data)
            if next_offset <= offset:
                offset = max(offset, int(part.log_start_offset))
                break
            offset = next_offset
            if offset >= int(part.last_stable_offset):
                break
        return out, offset, reset


def fetch_request(b: Any, offset: int) -> Any:
    """A read_committed Fetch of `_schemas`-0 from `offset` that answers at once."""
    return b.make(
        "FetchRequest", cluster_id=None, replica_id=-1, max_wait=timedelta(0), min_bytes=0,
        max_bytes=READ_CHUNK_BYTES, isolation_level=READ_COMMITTED, session_id=0,
        session_epoch=-1, forgotten_topics_data=(), rack_id="",
        topics=(b.make("FetchTopic", topic=SCHEMAS_TOPIC, partitions=(b.make(
            "FetchPartition", partition=0, current_leader_epoch=-1, fetch_offset=offset,
            last_fetched_epoch=-1, log_start_offset=-1,
            partition_max_bytes=READ_CHUNK_BYTES),)),))
