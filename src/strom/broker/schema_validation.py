"""Validation on produce against the schema registry (issue 14; docs/registry.md, "Validation on
produce"): a topic with `confluent.value.schema.validation=true` (or `.key.`) takes only
records whose value (key) carries Confluent's wire format, magic byte 0 and a 4-byte schema id,
with an id registered under the subject its strategy names:

    TopicNameStrategy        <topic>-value / <topic>-key (the default)
    RecordNameStrategy       the schema's record name (Avro: the named type's full name; JSON
                             Schema: its title; Protobuf: the message at the message indexes)
    TopicRecordNameStrategy  <topic>-<record name>

and with `strom.schema.validation.decode=true`, whose payload decodes with that schema. Null
keys and values (tombstones) pass. A batch with any failing record is refused whole with
INVALID_RECORD, each failing record in `record_errors` (batch_index, message), as Kafka's
LogValidator reports per-record errors.

Cost. The produce path reads one attribute (LogConfig.schema_validation) when a topic
validates nothing. When it does, a C walk (record_heads) collects the distinct 5-byte heads of
the batch's keys or values, a set that is usually one element (one schema id), and each head's
verdict is cached until `_schemas` changes: per record, a varint walk and a memcmp. Records
are parsed one by one only when a record may fail, or for what needs more than the head
(Protobuf message indexes under a record-name strategy, the decode check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from strom.broker.schema_catalog import SchemaCatalog, SchemaInfo
from strom.config.topic import LogConfig
from strom.protocol import compression
from strom.protocol.batch_header import BATCH_HEADER_SIZE
from strom.protocol.record_errors import RecordError, RecordsError, RecordsErrorCode
from strom.protocol.record_walk import record_heads
from strom.protocol.records import ValidatedBatch, iter_records
from strom.registry import wire

# A head's verdict: None (every record with this head passes), an error message (every record
# with it fails), or NEEDS_RECORD (the rest of the record decides).
NEEDS_RECORD: Final = "needs the record"
# A verdict that the id is unknown (or not under the subject) is believed this long before a
# record with that id refreshes the catalog again.
RECHECK_AFTER_S: Final = 0.1
MAX_CACHED_VERDICTS: Final = 10_000
Verdict = str | None


@dataclass(frozen=True, slots=True)
class Side:
    """What one of key and value is checked for."""

    is_key: bool
    strategy: str  # TopicNameStrategy, RecordNameStrategy, TopicRecordNameStrategy
    decode: bool

    @property
    def what(self) -> str:
        return "key" if self.is_key else "value"


def sides(cfg: LogConfig) -> list[Side]:
    out = []
    if cfg.confluent_key_schema_validation:
        out.append(Side(True, cfg.confluent_key_subject_name_strategy,
                        cfg.strom_schema_validation_decode))
    if cfg.confluent_value_schema_validation:
        out.append(Side(False, cfg.confluent_value_subject_name_strategy,
                        cfg.strom_schema_validation_decode))
    return out


@dataclass
class SchemaValidator:
    """Checks produced batches against the catalog; one per broker, made on first use."""

    catalog: SchemaCatalog
    # head -> (verdict, when a verdict that a refresh may change was made; None: final)
    _verdicts: dict[tuple[str, Side, bytes | None], tuple[Verdict, float | None]] = field(
        default_factory=dict)
    _generation: int = -1
    _names: dict[tuple[int, tuple[int, ...]], str | None] = field(default_factory=dict)
    _decoders: dict[tuple[int, tuple[int, ...]], Callable[[bytes], str | None]] = field(
        default_factory=dict)
    checked_batches: int = 0
    refused_batches: int = 0

    async def check(self, topic: str, cfg: LogConfig, batches: list[ValidatedBatch],
                    max_decompressed_bytes: int) -> RecordsError | None:
        """None when every record passes, else the partition's INVALID_RECORD answer."""
        await self.catalog.ensure_loaded()
        for batch in batches:
            error = await self._check_batch(topic, sides(cfg), batch, max_decompressed_bytes)
            self.checked_batches += 1
            if error is not None:
                self.refused_batches += 1
                return error
        return None

    async def _check_batch(self, topic: str, checked: list[Side], batch: ValidatedBatch,
                           max_decompressed_bytes: int) -> RecordsError | None:
        header = batch.header
        if header.compression == compression.NONE:
            buf: bytes | bytearray | memoryview = batch.data
            pos = BATCH_HEADER_SIZE
        else:
            buf = compression.decompress(header.compression,
                                         memoryview(batch.data)[BATCH_HEADER_SIZE:],
                                         max_decompressed_bytes)
            pos = 0
        count = header.records_count
        slow = False
        for side in checked:
            heads = record_heads(buf, pos, count, not side.is_key, wire.HEADER_SIZE)
            verdicts = [await self._verdict(topic, side, head) for head in heads]
            if any(v is not None for v in verdicts):
                slow = True
        if not slow:
            return None
        errors = await self._record_errors(topic, checked, batch, max_decompressed_bytes)
        if not errors:
            return None
        return RecordsError(
            RecordsErrorCode.INVALID_RECORD,
            f"One or more records have been rejected due to {len(errors)} record errors in "
            f"total, and only showing the first three errors at most: {errors[:3]}",
            tuple(errors))

    async def _record_errors(self, topic: str, checked: list[Side], batch: ValidatedBatch,
                             max_decompressed_bytes: int) -> list[RecordError]:
        """The slow pass: every record parsed and checked."""
        errors: list[RecordError] = []
        for i, record in enumerate(iter_records(batch,
                                                max_decompressed_bytes=max_decompressed_bytes)):
            for side in checked:
                data = record.key if side.is_key else record.value
                message = await self.check_one(topic, side, data)
                if message is not None:
                    errors.append((i, message))
                    break
        return errors

    # -- one key or value --------------------------------------------------------------------

    async def _verdict(self, topic: str, side: Side, head: bytes | None) -> Verdict:
        """The cached verdict of a head. An id that the catalog does not know (or not under
        the subject) refreshes the catalog (rate bounded) before it is believed; such a
        verdict is believed again without refreshing for RECHECK_AFTER_S."""
        catalog = self.catalog
        self._follow_catalog()
        key = (topic, side, head)
        cached = self._verdicts.get(key)
        now = catalog.clock()
        if cached is not None and (cached[1] is None or now - cached[1] < RECHECK_AFTER_S):
            return cached[0]
        verdict = self.head_verdict(topic, side, head)
        missed = (verdict is not None and verdict is not NEEDS_RECORD and head is not None
                  and wire.has_magic_byte(head))
        if missed and await catalog.refresh_after_miss():
            self._follow_catalog()
            verdict = self.head_verdict(topic, side, head)
        if len(self._verdicts) >= MAX_CACHED_VERDICTS:  # garbage ids must not grow it forever
            self._verdicts.clear()
        self._verdicts[key] = (verdict, catalog.clock() if missed else None)
        return verdict

    def _follow_catalog(self) -> None:
        """Drops what the cached verdicts, names and decoders knew of an older catalog."""
        if self._generation != self.catalog.generation:
            self._verdicts.clear()
            self._names.clear()
            self._decoders.clear()
            self._generation = self.catalog.generation

    def head_verdict(self, topic: str, side: Side, head: bytes | None) -> Verdict:
        """The verdict that the first 5 bytes allow."""
        if head is None:
            return None
        try:
            schema_id = wire.decode_header(head)
        except wire.WireFormatError:
            return (f"The record's {side.what} is not in the schema registry's wire format "
                    f"(magic byte 0 and a 4-byte schema id)")
        info = self.catalog.schemas.get(schema_id)
        if info is None:
            return f"Schema id {schema_id} of the record's {side.what} is not registered"
        if side.decode or (info.schema_type == "PROTOBUF"
                           and side.strategy != "TopicNameStrategy"):
            return NEEDS_RECORD
        return self._subject_verdict(topic, side, info, [0])

    def _subject_verdict(self, topic: str, side: Side, info: SchemaInfo,
                         indexes: list[int]) -> Verdict:
        if side.strategy == "TopicNameStrategy":
            subject: str | None = f"{topic}-{side.what}"
        else:
            name = self.record_name(info, indexes)
            if name is None:
                return (f"Schema id {info.schema_id} ({info.schema_type}) of the record's "
                        f"{side.what} has no record name for {side.strategy}")
            subject = name if side.strategy == "RecordNameStrategy" else f"{topic}-{name}"
        if subject not in self.catalog.subjects_of(info.schema_id):
            return (f"Schema id {info.schema_id} of the record's {side.what} is not registered "
                    f"under subject {subject!r} ({side.strategy})")
        return None

    def record_name(self, info: SchemaInfo, indexes: list[int]) -> str | None:
        from strom.broker import schema_decode

        key = (info.schema_id, tuple(indexes) if info.schema_type == "PROTOBUF" else ())
        if key not in self._names:
            if info.schema_type == "PROTOBUF":
                try:
                    name = schema_decode.protobuf_message_name(self.catalog, info, indexes)
                except schema_decode.SchemaUnusable:
                    name = None
            else:
                name = schema_decode.avro_or_json_record_name(info)
            self._names[key] = name
        return self._names[key]

    async def check_one(self, topic: str, side: Side, data: bytes | None) -> str | None:
        """None if the key or value passes, else why not."""
        head = None if data is None else data[:wire.HEADER_SIZE]
        verdict = await self._verdict(topic, side, head)
        if verdict is not NEEDS_RECORD or data is None:
            return verdict
        info = self.catalog.schemas[wire.decode_header(data)]
        payload_at = wire.HEADER_SIZE
        indexes = [0]
        if info.schema_type == "PROTOBUF":
            try:
                indexes, payload_at = wire.decode_message_indexes(data, wire.HEADER_SIZE)
            except wire.WireFormatError as exc:
                return f"The record's {side.what} has invalid Protobuf message indexes: {exc}"
        verdict = self._subject_verdict(topic, side, info, indexes)
        if verdict is not None or not side.decode:
            return verdict
        return self._decode(side, info, indexes, bytes(data[payload_at:]))

    def _decode(self, side: Side, info: SchemaInfo, indexes: list[int],
                payload: bytes) -> str | None:
        from strom.broker import schema_decode

        key = (info.schema_id, tuple(indexes) if info.schema_type == "PROTOBUF" else ())
        decode = self._decoders.get(key)
        if decode is None:
            try:
                decode = schema_decode.decoder(self.catalog, info, indexes)
            except schema_decode.SchemaUnusable as exc:
                return (f"Schema id {info.schema_id} of the record's {side.what} cannot be "
                        f"used to decode: {exc}")
            self._decoders[key] = decode
        problem = decode(payload)
        if problem is None:
            return None
        return (f"The record's {side.what} does not decode with schema id {info.schema_id} "
                f"({info.schema_type}): {problem}")
